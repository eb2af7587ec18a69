"""Errors that tell the user what to do, not just what went wrong."""

from __future__ import annotations

SETUP_COMMAND = "make setup"


class SetupError(RuntimeError):
    """A required system package, data file or model is missing.

    The message always names the command that installs it, so CLIs can print it
    without a traceback.
    """

    def __init__(self, what: str, hint: str = SETUP_COMMAND) -> None:
        super().__init__(f"{what}. Run `{hint}` in the ie_env repository to install it.")
        self.what = what
        self.hint = hint
