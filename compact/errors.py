"""User-facing errors.

Anything raised as a `CompactError` is the user's to fix: the CLI prints its message on one line and exits
non-zero, with no traceback. Messages name the problem and the fix. Everything else is a bug and keeps its
traceback.
"""


class CompactError(Exception):
    """A problem with the user's input, configuration or environment."""


class DataError(CompactError):
    """Unreadable or malformed data: images, captions, tables, shards."""


class ModelFormatError(CompactError):
    """A model folder that is missing, corrupt or from a newer version of compact."""


class TeacherError(CompactError):
    """A teacher that cannot be loaded (unknown spec, offline without a local copy, ...)."""


class MissingExtraError(CompactError):
    """An optional backend is not installed; the message names the pip extra."""

    def __init__(self, package: str, extra: str, what: str = ""):
        need = f" for {what}" if what else ""
        super().__init__(f"{package} is not installed{need}; install it with: pip install 'compact-clip[{extra}]'")
