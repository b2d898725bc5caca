"""The error a user can cause on the command line (an argument, a path): told in one line, exit 2.

Apart from the modules that raise it, so that the command can catch it without importing them.
"""


class BadInput(Exception):
    """An argument or path the user must fix; one line."""
