"""Atomic file writes (temporary file in the same folder, fsync, rename). Torch-free.

A kill at any moment leaves either the old file or the complete new one, never a truncated one.
An output path that exists and is not a regular file (a symbolic link, FIFO, device node or
folder) is refused rather than replaced; a replaced file keeps its permissions, a new one gets the
user's umask (not the private 0600 of a temporary file).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from mspn.errors import MSPNError

_UMASK_LOCK = threading.Lock()


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def check_output(path: str | os.PathLike, inputs: tuple = (), what: str = "--out") -> Path:
    """Refuse, before any work starts, an output path that cannot or must not be written: empty, a
    folder, an existing non-regular file, one of ``inputs``, below a file, or in a folder that
    cannot be created or written. Returns the path."""
    if not str(path).strip():
        raise MSPNError(f"{what}: empty output path")
    target = Path(path)
    if target.is_symlink() or (target.exists() and not target.is_file()):
        kind = "a folder" if target.is_dir() and not target.is_symlink() else _kind(target)
        raise MSPNError(f"{what} {target} exists and is {kind}, not a regular file; refusing to replace it")
    for other in inputs:
        if other is not None and (target.resolve() == Path(other).resolve() or (
                target.exists() and Path(other).exists() and os.path.samefile(target, other))):
            raise MSPNError(f"{what} {target} is the input file {other}; choose another output path")
    folder = target.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise MSPNError(f"{what} {target}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise MSPNError(f"{what} {target}: folder {folder} is not writable")
    return target


def _kind(path: Path) -> str:
    if path.is_symlink():
        return "a symbolic link"
    mode = path.stat().st_mode
    return ("a FIFO" if stat.S_ISFIFO(mode) else "a device node" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")


def _new_file_mode(target: Path) -> int:
    """An existing file's permissions, or what the umask gives a new file."""
    if target.is_file():
        return stat.S_IMODE(target.stat().st_mode)
    with _UMASK_LOCK:  # os.umask can only be read by setting it
        umask = os.umask(0o022)
        os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, keep_suffix: bool = False) -> Iterator[Path]:
    """Yields a temporary path next to ``path``; on success it is fsynced and renamed onto it.

    keep_suffix: the temporary ends in ``path``'s extension (video writers pick codecs by it).
    """
    target = check_output(path, what="output")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent,
                                        suffix=f".tmp{target.suffix}" if keep_suffix else ".tmp")
    except OSError as exc:
        raise MSPNError(f"cannot write {target}: {exc.strerror or exc}") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, _new_file_mode(target))
        check_output(target, what="output")  # nothing replaced it with a link or FIFO meanwhile
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_figure(fig, path: str | os.PathLike, dpi: int = 100) -> None:
    """A matplotlib figure as a PNG, written atomically; the figure is closed."""
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation now (Linux MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits_memory(nbytes: int, what: str) -> None:
    """Refuse up front work whose arrays would not fit in the memory available now."""
    available = available_memory()
    if available is not None and nbytes > available:
        raise MSPNError(f"{what} needs {nbytes / 2**30:.3g} GiB, more than the {available / 2**30:.3g} GiB of "
                        f"memory available; ask for less")


def read_npy(path: str | os.PathLike):
    """One .npy array, its header checked before any data is read: a header that declares more
    bytes than the file holds (truncated or forged) or than memory can take is refused in one line.
    Object arrays are never unpickled."""
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise MSPNError(f"input not found: {path}" if not path.exists() else f"{path}: not a regular file")
    try:
        with open(path, "rb") as handle:
            if handle.read(2) == b"PK":
                raise MSPNError(f"{path}: expected one .npy array (B, T, C, H, W), got an archive")
            handle.seek(0)
            version = np.lib.format.read_magic(handle)
            fmt = np.lib.format
            reader = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, _, dtype = reader(handle)
            header_end = handle.tell()
    except (ValueError, OSError, EOFError, SyntaxError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MSPNError(f"{path}: not a readable .npy array: {reason[:200]}") from None
    if dtype.hasobject:
        raise MSPNError(f"{path}: holds Python objects (dtype {dtype}); only numeric arrays are read")
    declared = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    held = path.stat().st_size - header_end
    if declared > held:
        raise MSPNError(f"{path}: its header declares shape {shape} ({declared} bytes) but the file holds "
                        f"{held}; truncated or not a real .npy file")
    check_fits_memory(declared, f"{path}: reading shape {shape}")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise MSPNError(f"{path}: not a readable .npy array: {str(exc).strip()[:200]}") from None
