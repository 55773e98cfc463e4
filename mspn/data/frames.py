"""Helpers shared by the dataset converters: video reading, frame resizing and cropping, split
assignment."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from mspn.errors import MSPNError


def require_dir(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise MSPNError(f"{what} folder not found: {path}")
    return path


def check_size(size, what: str = "size") -> tuple[int, int]:
    height, width = (int(s) for s in size)
    if height < 1 or width < 1:
        raise MSPNError(f"{what} must be positive HxW, got {height}x{width}")
    return height, width


# "linear" is what every one of the authors' preparation scripts uses: cv2.resize's default.
# "area" averages every source pixel, which makes large shrinks (Caltech's 4x) smoother than the
# authors' data and the metrics on it optimistic; at exactly 2x the two give the same frames.
INTERPOLATIONS = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA}


def check_interpolation(interpolation: str) -> str:
    if interpolation not in INTERPOLATIONS:
        raise MSPNError(f"interpolation must be {' or '.join(INTERPOLATIONS)}, got {interpolation!r}")
    return interpolation


def resize(frame: np.ndarray, size: tuple[int, int], interpolation: str = "linear") -> np.ndarray:
    """frame: (H, W) or (H, W, 3) uint8 -> size (H', W'); interpolation: a key of INTERPOLATIONS,
    default bilinear as the authors' cv2.resize calls."""
    height, width = size
    if frame.shape[:2] == (height, width):
        return frame
    flag = INTERPOLATIONS[check_interpolation(interpolation)]
    return cv2.resize(frame, (width, height), interpolation=flag)


def resize_note(interpolation: str) -> str:
    """How info.json names the resize: the OpenCV flag."""
    return {"linear": "cv2.INTER_LINEAR", "area": "cv2.INTER_AREA"}[interpolation]


def read_video(path: str | Path) -> list[np.ndarray]:
    """Every frame of a video file as OpenCV decodes it: a list of (H, W, 3) uint8 BGR arrays."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise MSPNError(f"{path}: OpenCV cannot open this video")
    frames = []
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        capture.release()
    if not frames:
        raise MSPNError(f"{path}: no frames could be decoded (corrupt or empty video)")
    return frames


def centre_crop(frame: np.ndarray, aspect: float) -> np.ndarray:
    """The largest centred window of ``frame`` (H, W[, C]) with width / height = aspect."""
    height, width = frame.shape[:2]
    if width > height * aspect:
        new_w = max(1, round(height * aspect))
        left = (width - new_w) // 2
        return frame[:, left:left + new_w]
    new_h = max(1, round(width / aspect))
    top = (height - new_h) // 2
    return frame[top:top + new_h]


def to_chw(frames: list[np.ndarray], channels: int, name: str) -> np.ndarray:
    """OpenCV frames (H, W, 3) BGR or (H, W) gray -> video (T, C, H, W) uint8 with C = 1 (gray)
    or 3 (BGR, OpenCV's channel order, as the reference stored it)."""
    if not frames:
        raise MSPNError(f"{name}: no frames")
    out = []
    for frame in frames:
        if channels == 1:
            if frame.ndim == 3:
                frame = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            out.append(frame[None])
        else:
            if frame.ndim == 2:
                frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
            out.append(frame.transpose(2, 0, 1))
    return np.ascontiguousarray(np.stack(out))


def assign_split(key, test: Iterable, val: Iterable, train: Iterable | None) -> str | None:
    """test, then val, then train (None: everything else); None when the key is in no split."""
    if key in set(test):
        return "test"
    if key in set(val):
        return "val"
    if train is None or key in set(train):
        return "train"
    return None


def check_disjoint(test: Iterable, val: Iterable, what: str) -> None:
    both = sorted(set(test) & set(val))
    if both:
        raise MSPNError(f"{what} {', '.join(str(b) for b in both)} listed for both val and test")
