"""back-knee-cds: a CDS Hooks 2.0 service for lower back and knee pain."""

__all__ = ["__version__"]

__version__ = "0.1.0"
