"""The project's user-facing error type. The CLI turns these into a one-line message and exit 2.

Torch-free, so the runtime can share it.
"""


class MSPNError(Exception):
    """Bad input or an unusable file: the message alone tells the user what to fix."""
