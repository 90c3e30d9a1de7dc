"""The one base class of errors a user can fix: the CLI prints their message and exits 1."""


class UserError(Exception):
    """Bad input or an unusable environment; the message names the problem and the fix."""


class DatasetError(UserError):
    """The dataset root cannot be used; the message says why and what to do."""
