"""One exception type for mistakes the user can fix; its message says what and how."""


class ColabkitError(Exception):
    """A problem with the user's input or environment, with the fix in the message.

    The CLI and notebooks print these without a traceback: they are answers, not crashes.
    """
