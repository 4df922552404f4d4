"""The project's error type.

Library code raises :class:`CurateError` for anything a user can fix (a bad path, a typo in a
config, a file with the wrong schema). The CLI turns it into a one-line message and an exit
code; it never shows a traceback for these.
"""


class CurateError(Exception):
    """A user-facing error: ``str(err)`` is the one-line message, ``exit_code`` the status."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


class ConfigError(CurateError):
    """A config file or option that cannot be used as given."""


class InputError(CurateError):
    """An input that cannot be read at all (missing file, wrong schema, unreachable URL)."""


class OutputError(CurateError):
    """An output that cannot be written (disk full, read-only file system, no permission):
    exit 1, the path named, whatever was half written removed."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message, exit_code)
