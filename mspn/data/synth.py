"""Bouncing shapes: the offline synthetic dataset of the demo (no downloads).

Each video shows a few bright shapes (squares, discs, crosses, rings and 5x7 bitmap digits) on a
black background. Every shape moves with a constant integer velocity (each component in -2..2, not
both zero: a speed of 1 to 2.8 px/frame) and bounces off the borders by exact reflection, so the
motion is fully predictable from two frames and a small model learns it quickly.

Deterministic: video i of a split depends only on (seed, split, i), not on the other counts.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from mspn.data.video import SPLITS, DatasetWriter
from mspn.errors import MSPNError
from mspn.fileio import check_fits_memory

# 5x7 bitmaps of the digits 0-9, one string of 5 pixels per row
_DIGITS = [
    ["01110", "10001", "10011", "10101", "11001", "10001", "01110"],
    ["00100", "01100", "00100", "00100", "00100", "00100", "01110"],
    ["01110", "10001", "00001", "00010", "00100", "01000", "11111"],
    ["11111", "00010", "00100", "00010", "00001", "10001", "01110"],
    ["00010", "00110", "01010", "10010", "11111", "00010", "00010"],
    ["11111", "10000", "11110", "00001", "00001", "10001", "01110"],
    ["00110", "01000", "10000", "11110", "10001", "10001", "01110"],
    ["11111", "00001", "00010", "00100", "01000", "01000", "01000"],
    ["01110", "10001", "10001", "01110", "10001", "10001", "01110"],
    ["01110", "10001", "10001", "01111", "00001", "00010", "01100"],
]
DIGIT_BITMAPS = [np.array([[c == "1" for c in row] for row in rows]) for rows in _DIGITS]
SHAPES = ("square", "disc", "cross", "ring", "digit")
_MAX_SPEED = 2


def shape_mask(kind: str, side: int, rng: np.random.Generator) -> np.ndarray:
    """A boolean (h, w) mask of one shape about ``side`` pixels across."""
    yy, xx = np.mgrid[:side, :side]
    centre = (side - 1) / 2
    radius = np.hypot(yy - centre, xx - centre)
    if kind == "square":
        return np.ones((side, side), bool)
    if kind == "disc":
        return radius <= side / 2
    if kind == "ring":
        return (radius <= side / 2) & (radius >= side / 2 - max(1.5, side / 5))
    if kind == "cross":
        bar = max(1, side // 3)
        lo = (side - bar) // 2
        mask = np.zeros((side, side), bool)
        mask[lo:lo + bar, :] = True
        mask[:, lo:lo + bar] = True
        return mask
    if kind == "digit":
        scale = max(1, side // 7)
        bitmap = DIGIT_BITMAPS[int(rng.integers(10))]
        return np.kron(bitmap, np.ones((scale, scale), bool))
    raise ValueError(kind)


def _bounce(pos: int, vel: int, limit: int) -> tuple[int, int]:
    pos += vel
    if pos < 0:
        pos, vel = -pos, -vel
    elif pos > limit:
        pos, vel = 2 * limit - pos, -vel
    return pos, vel


def bouncing_video(rng: np.random.Generator, size: tuple[int, int], channels: int, frames: int,
                   objects: int = 2) -> np.ndarray:
    """One video (T, C, H, W) uint8 of ``objects`` shapes bouncing on a black background."""
    height, width = size
    side = max(5, round(min(height, width) * 7 / 32))
    video = np.zeros((frames, channels, height, width), np.uint8)
    for _ in range(objects):
        mask = shape_mask(SHAPES[int(rng.integers(len(SHAPES)))], side, rng)
        h, w = mask.shape
        if channels == 3:
            colour = rng.integers(90, 256, 3)
            colour[rng.integers(3)] = 255  # at least one saturated channel keeps every colour bright
        else:
            colour = np.full(channels, rng.integers(170, 256))
        y, x = int(rng.integers(height - h + 1)), int(rng.integers(width - w + 1))
        vy, vx = 0, 0
        while vy == 0 and vx == 0:
            vy, vx = (int(v) for v in rng.integers(-_MAX_SPEED, _MAX_SPEED + 1, 2))
        for t in range(frames):
            patch = video[t, :, y:y + h, x:x + w]
            stamp = mask[None] * colour[:, None, None].astype(np.uint8)
            np.maximum(patch, stamp, out=patch)  # overlapping shapes: the brighter wins
            y, vy = _bounce(y, vy, height - h)
            x, vx = _bounce(x, vx, width - w)
    return video


def _split_counts(videos) -> tuple[int, int, int]:
    if isinstance(videos, int):
        videos = (videos, max(1, videos // 5), max(1, videos // 5))
    counts = tuple(int(v) for v in videos)
    if len(counts) != 3 or min(counts) < 0 or counts[0] < 1:
        raise MSPNError(f"videos must be a count N or (train, val, test) counts with train >= 1, "
                        f"got {videos!r}")
    return counts


MAX_SIDE = 4096      # synthetic frames larger than this are a typo, not a dataset
MAX_CHANNELS = 4


def _check_bounds(out, size: tuple[int, int], channels: int, frames: int, counts, seed: int) -> None:
    """Refuse up front a dataset that could not be held (one video) or stored (all of them)."""
    height, width = size
    if max(height, width) > MAX_SIDE or channels > MAX_CHANNELS:
        raise MSPNError(f"synthetic frames are at most {MAX_SIDE}x{MAX_SIDE} with {MAX_CHANNELS} channels, "
                        f"got {height}x{width} with {channels}")
    if seed < 0:
        raise MSPNError(f"--seed must be >= 0, got {seed}")
    video_bytes = frames * channels * height * width
    check_fits_memory(video_bytes * 4, f"a {frames}-frame {height}x{width} video")  # uint8 + float work
    folder = Path(out).resolve()
    while not folder.exists():
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    if video_bytes * sum(counts) > free:
        raise MSPNError(f"the dataset needs {video_bytes * sum(counts) / 2**30:.3g} GiB, more than the "
                        f"{free / 2**30:.3g} GiB free at {folder}")


def write_synthetic(out: str | Path, size: tuple[int, int] = (32, 32), channels: int = 1,
                    videos=(200, 40, 40), frames: int = 20, seed: int = 0, objects: int = 2,
                    overwrite: bool = False) -> dict:
    """Write a bouncing-shapes dataset: ``out/{train,val,test}/NNNNNN.npy`` (T, C, H, W) uint8 and
    ``out/info.json``. videos: (train, val, test) counts, or one count N for (N, N // 5, N // 5).
    Returns the info dict."""
    counts = _split_counts(videos)
    height, width = (int(s) for s in size)
    if min(height, width) < 12:
        raise MSPNError(f"synthetic frames must be at least 12x12, got {height}x{width}")
    if channels < 1 or frames < 1 or objects < 1:
        raise MSPNError(f"channels, frames and objects must be >= 1, got {channels}, {frames}, {objects}")
    _check_bounds(out, (height, width), channels, frames, counts, seed)
    from mspn.progress import tqdm

    writer = DatasetWriter(out, overwrite=overwrite)
    with tqdm(total=sum(counts), desc="synthetic videos", unit="video") as bar:
        for split_id, (split, count) in enumerate(zip(SPLITS, counts, strict=True)):
            for i in range(count):
                rng = np.random.default_rng([seed, split_id, i])
                video = bouncing_video(rng, (height, width), channels, frames, objects)
                writer.write(split, f"{i:06d}", video)
                bar.update()
    return writer.finish(
        dataset="synthetic", source="mspn.data.synth (bouncing shapes)",
        channel_order="gray" if channels == 1 else "bgr",
        generator={"seed": seed, "objects": objects, "frames_per_video": frames,
                   "shapes": list(SHAPES), "speed_px_per_frame": [1.0, round(2 ** 0.5 * _MAX_SPEED, 2)]})
