"""The one exception type users see as a clean one-line message (no traceback) from the CLI."""


class SposError(Exception):
    """A user error: bad input, missing file, incompatible checkpoint. The message says the fix."""
