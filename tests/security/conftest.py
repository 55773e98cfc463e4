"""Helpers for the hostile-input tests: the tiny model folder, one-line CLI refusals, snapshots.

Every hostile file, folder, FIFO or device node is made inside the test's temporary folder.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from mspn.cli import main
from tests.runtime.conftest import clips, model_copy, tiny, video  # noqa: F401  (shared fixtures)


def refuse(argv: list[str], capsys) -> str:
    """Run `mspn ARGV`: exit 1 (error) or 2 (usage error), exactly one message line on stderr
    (progress bars aside), no traceback; returns the line."""
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = [line for line in err.split("\n") if line and "\r" not in line]  # tqdm redraws with \r
    assert code in (1, 2) and len(lines) == 1 and "Traceback" not in err, (code, err)
    return lines[0]


def snapshot(folder: Path) -> dict:
    """{relative path: (file kind, mode, size, content digest)} of everything below ``folder``."""
    state = {}
    for path in sorted(folder.rglob("*")):
        info = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if stat.S_ISREG(info.st_mode) else None
        state[str(path.relative_to(folder))] = (stat.S_IFMT(info.st_mode), stat.S_IMODE(info.st_mode),
                                                info.st_size if digest else None, digest,
                                                os.readlink(path) if path.is_symlink() else None)
    return state


def edit_manifest(folder: Path, change) -> None:
    """Apply ``change(raw)`` to the folder's manifest.json (raw is the parsed dict)."""
    path = folder / "manifest.json"
    raw = json.loads(path.read_text())
    change(raw)
    path.write_text(json.dumps(raw))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def npy_input(tmp_path, clips):  # noqa: F811
    """A valid (3, 5, 1, 32, 32) float32 input file for `mspn predict --model`."""
    import numpy as np

    path = tmp_path / "in.npy"
    np.save(path, clips)
    return path
