"""The one exception type for mistakes a user can fix, and the exit codes the commands end with.

Anything raised as `UserError` reaches the command line as a single line on stderr and a non-zero
exit; anything else is a bug and keeps its traceback.
"""

# Exit code of a run stopped by Ctrl-C or SIGTERM (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """Bad input or environment: the message names the value and the fix, in one line."""

    exit_code = 2


def first_line(exc: BaseException) -> str:
    """An exception's message in one line (its type's name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
