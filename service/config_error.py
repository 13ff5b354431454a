"""The error for a setting, or a file a setting names, that the service cannot start with."""

from __future__ import annotations

__all__ = ["ConfigError"]


class ConfigError(Exception):
    """Invalid configuration found at start; the message names the variable or file, what is wrong and the fix.

    The CLI prints it as one ``error: ...`` line with exit code 2, like a bad rule file.
    """
