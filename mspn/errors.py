"""The project's user-facing error type. The CLI turns these into a one-line message and exit 1 (UsageError: 2).

Torch-free, so the runtime can share it.
"""


class MSPNError(Exception):
    """Bad input or an unusable file: the message alone tells the user what to fix."""


class UsageError(MSPNError):
    """The command line itself is wrong (a value out of range, options that exclude each other):
    the CLI exits 2, as for argparse's own usage errors, instead of 1 for errors during a run."""
