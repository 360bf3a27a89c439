"""The one error type for user mistakes: bad config or bad input files."""

from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix; the message names the setting or file and what to do.

    `python -m experiments` prints it as one line and exits non-zero (HYDRA_FULL_ERROR=1 shows the
    traceback). Internal bugs are any other exception and keep their traceback.
    """


def one_line(error: BaseException) -> str:
    """An error's message on one line, whatever the library wrote; unwrapped from Hydra's InstantiationException
    (which wraps what a constructor raised in "Error in call to target ...")."""
    while type(error).__name__ == "InstantiationException" and error.__cause__ is not None:
        error = error.__cause__
    return " ".join(str(error).split())
