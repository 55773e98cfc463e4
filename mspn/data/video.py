"""Video files: one uint8 array (T, C, H, W) per file, and the dataset folder layout.

A dataset folder holds ``train/``, ``val/`` and ``test/`` with one ``.npy`` video per file, plus an
``info.json`` saying where the videos came from (source, frame size, channel order, split rule).
``.pth`` files as the authors' reference code saved them (one (T, C, H, W) uint8 tensor per file,
in per-person or per-set sub-folders of each split) are read too, so their preprocessed data can be
used as is.

Torch is imported only to read ``.pth`` files.
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np

from mspn.errors import MSPNError
from mspn.fileio import atomic_path, atomic_write_json

VIDEO_SUFFIXES = (".npy", ".pth")
SPLITS = ("train", "val", "test")
INFO_FORMAT = "mspn-videos"


def _check_video(array, path) -> None:
    if array.ndim != 4 or array.dtype != np.uint8:
        raise MSPNError(f"{path}: a video must be a uint8 array (T, C, H, W); got shape "
                        f"{tuple(array.shape)} dtype {array.dtype}")
    if min(array.shape) < 1:
        raise MSPNError(f"{path}: empty video, shape {tuple(array.shape)} (T, C, H, W)")


def save_video(path: str | Path, array: np.ndarray) -> Path:
    """Write a video atomically as ``.npy``. array: (T, C, H, W) uint8."""
    path = Path(path)
    if path.suffix != ".npy":
        raise MSPNError(f"{path}: videos are written as .npy files")
    array = np.asarray(array)
    _check_video(array, path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:  # a file object, so np.save does not append another .npy
            np.save(handle, np.ascontiguousarray(array), allow_pickle=False)
    return path


def _channels_last(shape) -> bool:
    """True for a (T, H, W, C) array: C in {1, 3} and both other axes larger (and not 1 or 3)."""
    _, a, b, c = shape
    return c in (1, 3) and a not in (1, 3) and a > c and b > c


def _load_pth(path: Path) -> np.ndarray:
    import torch
    try:
        try:
            # mmap keeps a long video on disk; the legacy (non-zip) format cannot be mapped
            tensor = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc).lower() and "zip" not in str(exc).lower():
                raise
            tensor = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError, ValueError,
            OSError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MSPNError(f"{path}: not a readable .pth video: {reason[:200]}") from None
    if not isinstance(tensor, torch.Tensor):
        raise MSPNError(f"{path}: a .pth video must hold one tensor (T, C, H, W), "
                        f"found {type(tensor).__name__}")
    if tensor.dtype != torch.uint8:
        raise MSPNError(f"{path}: a video must be a uint8 array (T, C, H, W); got shape "
                        f"{tuple(tensor.shape)} dtype {str(tensor.dtype).replace('torch.', '')}")
    array = tensor.numpy()
    if array.ndim == 4 and _channels_last(array.shape):
        # a (T, H, W, C) tensor saved straight from OpenCV frames; the model wants (T, C, H, W)
        array = array.transpose(0, 3, 1, 2)
    return array


def load_video(path: str | Path) -> np.ndarray:
    """Read a video as a uint8 array (T, C, H, W).

    ``.npy`` files are memory-mapped (read-only), so only the frames used are read from disk.
    ``.pth`` files hold one uint8 tensor as the reference code saved it; a tensor in (T, H, W, C)
    layout (last axis 1 or 3 and both middle axes larger) is transposed to (T, C, H, W).
    """
    path = Path(path)
    if not path.is_file():
        raise MSPNError(f"video not found: {path}")
    if path.suffix == ".npy":
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise MSPNError(f"{path}: not a readable .npy video: {reason[:200]}") from None
    elif path.suffix == ".pth":
        array = _load_pth(path)
    else:
        raise MSPNError(f"{path}: unknown video file type (expected {' or '.join(VIDEO_SUFFIXES)})")
    _check_video(array, path)
    return array


def video_files(folder: str | Path) -> list[Path]:
    """The video files of a split folder and of its sub-folders at any depth (the authors' own
    data keeps one sub-folder per person or set), sorted by path; hidden files and folders are
    left out."""
    folder = Path(folder)
    found = []
    for path in folder.rglob("*"):
        relative = path.relative_to(folder)
        if path.suffix in VIDEO_SUFFIXES and not any(part.startswith(".") for part in relative.parts) \
                and path.is_file():
            found.append((relative.as_posix(), path))
    return [path for _, path in sorted(found)]


class DatasetWriter:
    """Writes a dataset folder: ``out/{train,val,test}/NAME.npy``, then ``out/info.json`` last.

    info.json is written only once every video is in place, so its presence marks a complete
    conversion. A folder that already holds videos is refused unless ``overwrite`` is set, in which
    case the new splits are built beside the old ones (in a hidden staging folder inside ``out``)
    and swapped in by ``finish``: a conversion that fails leaves the old dataset intact.
    """

    def __init__(self, out: str | Path, overwrite: bool = False):
        self.out = Path(out)
        if self.out.exists() and not self.out.is_dir():
            raise MSPNError(f"output {self.out} exists and is not a folder")
        old = [p for split in SPLITS if (self.out / split).is_dir()
               for p in video_files(self.out / split)]
        if old and not overwrite:
            raise MSPNError(f"output folder {self.out} already holds {len(old)} video(s); "
                            f"choose an empty folder or pass --overwrite")
        for stale in self.out.glob(f"{STAGING}*"):  # left by a conversion that failed
            shutil.rmtree(stale, ignore_errors=True)
        self.root = self.out / f"{STAGING}{os.getpid()}" if old else self.out  # where videos go
        if not old and (self.out / "info.json").exists():
            (self.out / "info.json").unlink()
        self.counts = {split: 0 for split in SPLITS}
        self.frames = {split: 0 for split in SPLITS}
        self.shape: tuple[int, int, int] | None = None

    def write(self, split: str, name: str, video: np.ndarray) -> Path:
        """video: (T, C, H, W) uint8. Every video of a dataset must share (C, H, W)."""
        if split not in SPLITS:
            raise MSPNError(f"unknown split {split!r} (expected one of {', '.join(SPLITS)})")
        shape = tuple(int(s) for s in np.shape(video)[1:])
        if self.shape is None:
            self.shape = shape
        elif shape != self.shape:
            raise MSPNError(f"{name}: frames of shape {shape} (C, H, W) differ from the dataset's "
                            f"{self.shape}")
        path = save_video(self.root / split / f"{name}.npy", video)
        self.counts[split] += 1
        self.frames[split] += int(np.shape(video)[0])
        return path

    def finish(self, **info) -> dict:
        """Write info.json (counts, frame shape and the caller's fields) and return it."""
        for split in SPLITS:
            (self.root / split).mkdir(parents=True, exist_ok=True)
        if self.root != self.out:
            self._swap_in()
        channels, height, width = self.shape or (0, 0, 0)
        record = {"format": INFO_FORMAT, "format_version": 1, **info,
                  "size": [height, width], "channels": channels,
                  "videos": dict(self.counts), "frames": dict(self.frames)}
        atomic_write_json(self.out / "info.json", record)
        return record


    def _swap_in(self) -> None:
        """Replace the old splits by the staged ones. Without info.json in between, a kill here
        leaves a folder marked incomplete, never a silent mix of two conversions."""
        (self.out / "info.json").unlink(missing_ok=True)
        trash = self.out / f"{STAGING}old-{os.getpid()}"
        trash.mkdir()
        for split in SPLITS:
            if (self.out / split).exists():
                os.replace(self.out / split, trash / split)
            os.replace(self.root / split, self.out / split)
        shutil.rmtree(trash)
        shutil.rmtree(self.root)
        self.root = self.out


STAGING = ".staging-"  # prefix of the folder a --overwrite conversion is built in


def read_info(root: str | Path) -> dict | None:
    """The dataset's info.json, or None when the folder has none (e.g. the reference's .pth data)."""
    path = Path(root) / "info.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (ValueError, OSError) as exc:
        raise MSPNError(f"{path}: not valid JSON ({exc})") from None
