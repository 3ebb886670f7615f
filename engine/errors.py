"""User-facing errors.

A `UserError` is a mistake in what the user gave us (a path, a file, an option). The CLI
prints its message as one line and exits with code 2; library callers get the exception.
Messages name the file / line / field / option and what was expected.
"""


class UserError(Exception):
    """Bad input from the user: printed as one line by the CLI, exit code 2."""
