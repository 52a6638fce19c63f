"""One exception type for user-facing failures.

The CLI turns a ``NegationClipError`` into one line on stderr and exit code 2, without a
traceback: the message must name the file (and line, where there is one) and what is wrong.
"""


class NegationClipError(Exception):
    """A problem with the user's input or environment, explained in the message."""
