"""Errors the user can fix; the command line turns them into one line and exit code 2."""


class UserError(Exception):
    """Bad input or environment: the message says what is wrong and what to do."""


class BackendUnavailable(UserError):
    """A backend cannot run on this machine (missing weights, package or hub access)."""
