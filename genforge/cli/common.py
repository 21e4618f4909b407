"""What every command shares: the one way a user-facing failure is shown."""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator

import typer

from genforge.errors import GenforgeError

# what a user can fix: one line on stderr, exit code 2 (a missing or existing file the user
# named is the user's to fix too)
EXPECTED_ERRORS = (GenforgeError, FileExistsError, FileNotFoundError)
# the machine's, not genforge's: a full disk, a file size limit, a read-only or foreign place
MACHINE_ERRNOS = {
    errno.ENOSPC: "free some space and run it again",
    errno.EDQUOT: "free some space and run it again",
    errno.EFBIG: "the file size limit (ulimit -f) or the file system's is too small",
    errno.EROFS: "choose a writable place",
    errno.EACCES: "choose a place you may write to",
    errno.EPERM: "choose a place you may write to",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "the path is a folder, not a file",
    errno.ENAMETOOLONG: "choose a shorter path",
}


def user_message(err: BaseException) -> str | None:
    """The one line for an error the user can fix, or None for an internal failure."""
    if isinstance(err, EXPECTED_ERRORS):
        return " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, OSError) and err.errno in MACHINE_ERRNOS:
        where = f"{err.filename}: " if err.filename else ""
        return f"{where}{err.strerror}; {MACHINE_ERRNOS[err.errno]}"
    return None


def fail(err: BaseException) -> None:
    """One line naming what is wrong, on stderr, and exit code 2."""
    message = user_message(err) or " ".join(str(err).split()) or type(err).__name__
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn the errors a user can fix into their one-line message and exit code 2."""
    try:
        yield
    except OSError as err:
        if user_message(err) is None:
            raise
        fail(err)
    except EXPECTED_ERRORS as err:
        fail(err)
