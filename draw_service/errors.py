"""Errors that are the user's to fix: a dataset, storage, a checkpoint, an option. Every entry point (the
command line, a Ray Train run, a search's trial) says them in one line instead of a traceback."""

from __future__ import annotations


class UserError(Exception):
    """Base of this package's own errors about a run's inputs; the message says what to do."""


# What bad input raises here: this package's own errors, and the built-in ones its checks raise (an option
# out of range, a run folder that already holds a run, a file that is not there).
USER_ERRORS: tuple[type[Exception], ...] = (UserError, ValueError, FileExistsError, FileNotFoundError)


def user_error(err: BaseException) -> Exception | None:
    """`err`, or the first error of the user's kind in its chain of causes (a worker's error, out of Ray's
    wrapping: a RayTaskError holds it as `.cause`), rebuilt as its own kind with its message; None if none."""
    seen, cause = set(), err
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        inner = getattr(cause, "cause", None)
        if isinstance(inner, BaseException):
            cause = inner
            continue
        if isinstance(cause, USER_ERRORS):
            # a subclass of a built-in (JSONDecodeError) may need more arguments than a message: its base
            kind = type(cause) if isinstance(cause, UserError) else next(k for k in USER_ERRORS if isinstance(cause, k))
            return kind(str(cause).strip() or type(cause).__name__)
        cause = cause.__cause__
    return None
