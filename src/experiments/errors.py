"""The one error type for user mistakes: bad config or bad input files."""

from __future__ import annotations

import re


class UserError(Exception):
    """A mistake the user can fix; the message names the setting or file and what to do.

    `python -m experiments` prints it as one line and exits non-zero (HYDRA_FULL_ERROR=1 shows the
    traceback). Internal bugs are any other exception and keep their traceback.
    """


def one_line(error: BaseException, name_target: bool = False) -> str:
    """An error's message on one line, whatever the library wrote; unwrapped from Hydra's InstantiationException
    (which wraps what a constructor raised in "Error in call to target ..."). With `name_target`, a
    constructor's own error (not a UserError, which names its setting) keeps the name of the class being built
    and its type ("ConvAutoencoder: TypeError: ..."): the command line's last word on it."""
    target = None
    while type(error).__name__ == "InstantiationException" and error.__cause__ is not None:
        found = re.search(r"target '([\w.]+)'", str(error))
        target = found.group(1) if found else target
        error = error.__cause__
    message = " ".join(str(error).split())
    if name_target and target is not None and not isinstance(error, UserError):
        message = f"{target.rsplit('.', 1)[-1]}: {type(error).__name__}: {message}"
    return message
