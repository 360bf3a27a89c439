"""The one error type for user mistakes: bad config or bad input files."""

from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix; the message names the setting or file and what to do.

    `python -m experiments` prints it as one line and exits non-zero (HYDRA_FULL_ERROR=1 shows the
    traceback). Internal bugs are any other exception and keep their traceback.
    """


def one_line(error: BaseException) -> str:
    """The message of a UserError, unwrapped from Hydra's InstantiationException when a constructor raised
    it, on one line whatever the library wrote."""
    cause = error.__cause__ if isinstance(error.__cause__, UserError) else error
    return " ".join(str(cause).split())
