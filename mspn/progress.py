"""Progress bars: tqdm's, switched off for a whole command by `mspn CMD -q`.

tqdm is imported when a bar is made, not when a module using one is imported, so modules with
bars stay importable without it (a runtime-only install has no tqdm).
"""
from __future__ import annotations

import contextlib

_quiet = False


def tqdm(*args, **kwargs):
    """A tqdm bar (same arguments); disabled while quiet() is in force."""
    from tqdm import tqdm as bar

    if _quiet:
        kwargs["disable"] = True
    return bar(*args, **kwargs)


def write(text: str, **kwargs) -> None:
    """tqdm.write (a message that does not break a running bar); nothing while quiet()."""
    from tqdm import tqdm as bar

    if not _quiet:
        bar.write(text, **kwargs)


tqdm.write = write  # call sites keep tqdm's spelling, tqdm.write(...)


@contextlib.contextmanager
def quiet(on: bool = True):
    """No progress bars (nor tqdm.write messages) inside; the CLI's -q."""
    global _quiet
    previous, _quiet = _quiet, on
    try:
        yield
    finally:
        _quiet = previous
