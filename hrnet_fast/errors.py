"""The one exception type for user mistakes: the CLI prints its message as one line, no traceback."""


class UserError(Exception):
    """Bad input (path, flag, file, checkpoint) that the user can fix; the message says how."""
