"""The one exception type for mistakes a user can fix.

Anything raised as `UserError` reaches the command line as a single line on stderr and a non-zero
exit; anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input or environment: the message names the value and the fix, in one line."""

    exit_code = 2
