"""Base class of every user-facing plasticore error.

The CLI prints these as ``plasticore: error: <message>`` (exit status 2) without a traceback;
each message names what is wrong (field, file, port, frame, ...).
"""


class PlasticoreError(Exception):
    """A user-facing error with a message that names the problem."""
