"""One base for every error a user can fix: the CLI prints these without a traceback."""


class GanlabError(Exception):
    """A problem with the user's input (config, data, checkpoint, flags); the message says what."""
