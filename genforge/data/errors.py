"""The one error type data loading raises: its message names the file and what to do."""


class DataError(RuntimeError):
    """Data that cannot be read; the message is one line naming the file and the fix."""
