"""Plain HTTP endpoints beside CDS Hooks: health, metrics and the rule catalogue pages."""

__all__: list[str] = []
