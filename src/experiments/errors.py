"""The one error type for user mistakes: bad config or bad input files."""


class UserError(Exception):
    """A mistake the user can fix; the message names the setting or file and what to do.

    `python -m experiments` prints it as one line and exits non-zero (HYDRA_FULL_ERROR=1 shows the
    traceback). Internal bugs are any other exception and keep their traceback.
    """
