"""The one exception type that the CLI reports as a one-line error."""


class UserError(Exception):
    """Bad input from the user (a file, a flag, a checkpoint): message names it and what was expected."""
