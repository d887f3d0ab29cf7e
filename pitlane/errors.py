"""Errors every pitlane module may raise towards the user."""


class UserError(Exception):
    """A problem with the user's input (a file, a flag, a model): printed as one clear line, no traceback."""
