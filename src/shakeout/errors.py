"""Errors a user can act on. The CLI turns each into one line on stderr and an exit code."""


class ShakeoutError(Exception):
    """Something the user asked for cannot be done; str(exc) is the one-line explanation."""

    exit_code = 2


class UsageError(ShakeoutError):
    """The command line names something that does not exist or a value out of range."""


class CatalogError(ShakeoutError):
    """A catalog file is malformed (a defect of the installation, not of the user's input)."""
