"""Moving MNIST: the standard ``mnist_test_seq.npy``, or new sequences made from MNIST digits.

``mnist_test_seq.npy`` is (20, N, 64, 64) uint8 (time first); each sequence becomes one video
(20, 1, 64, 64). The generator bounces digits from an MNIST idx image file inside a 64x64 canvas
like the standard generator (Srivastava et al. 2015): random start, random direction, constant speed,
reflection at the borders, overlapping digits combined by maximum.
"""
from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mspn.errors import MSPNError
from mspn.data.frames import check_size, resize
from mspn.data.video import SPLITS, DatasetWriter

IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions


def convert_mmnist(src: str | Path, out: str | Path, test: int = 2000, val: int = 1000,
                   size: tuple[int, int] | None = None, overwrite: bool = False) -> dict:
    """Split ``mnist_test_seq.npy`` by index: the last ``test`` sequences test, the ``val`` before
    them val, the rest train. Videos: (T, 1, H, W) uint8 (resized with INTER_AREA when ``size``)."""
    src = Path(src)
    if not src.is_file():
        raise MSPNError(f"Moving MNIST file not found: {src}")
    try:
        seqs = np.load(src, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise MSPNError(f"{src}: not a readable .npy file ({str(exc).splitlines()[0][:200]})") from None
    if seqs.ndim != 4 or seqs.dtype != np.uint8:
        raise MSPNError(f"{src}: expected Moving MNIST sequences (T, N, H, W) uint8 like "
                        f"mnist_test_seq.npy's (20, 10000, 64, 64); got {seqs.shape} {seqs.dtype}")
    count = seqs.shape[1]
    if test < 0 or val < 0 or test + val >= count:
        raise MSPNError(f"{src} has {count} sequences: test={test} + val={val} leaves none for train")
    size = check_size(size) if size else None
    writer = DatasetWriter(out, overwrite=overwrite)
    first_val, first_test = count - test - val, count - test
    for i in tqdm(range(count), desc="Moving MNIST", unit="video"):
        split = "test" if i >= first_test else "val" if i >= first_val else "train"
        video = np.asarray(seqs[:, i])
        if size:
            video = np.stack([resize(f, size) for f in video])
        writer.write(split, f"{i:05d}", video[:, None])
    return writer.finish(
        dataset="moving-mnist", source=str(src), channel_order="gray",
        split={"by": "index", "train": [0, first_val], "val": [first_val, first_test],
               "test": [first_test, count]})


def read_idx_images(path: str | Path) -> np.ndarray:
    """An MNIST idx3 image file (optionally gzipped) -> (N, rows, cols) uint8.

    Format: big-endian int32 magic 2051, then N, rows, cols as big-endian int32, then the pixels.
    """
    path = Path(path)
    if not path.is_file():
        raise MSPNError(f"MNIST digit file not found: {path}")
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":  # gzip magic, whatever the file is called
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise MSPNError(f"{path}: broken gzip file ({exc})") from None
    if len(data) < 16:
        raise MSPNError(f"{path}: too short for an idx image file ({len(data)} bytes)")
    magic, count, rows, cols = (int(v) for v in np.frombuffer(data[:16], ">i4"))
    if magic != IDX_IMAGES_MAGIC:
        raise MSPNError(f"{path}: not an idx image file (magic {magic}, expected {IDX_IMAGES_MAGIC}: "
                        f"train-images-idx3-ubyte)")
    expected = count * rows * cols
    if count < 1 or rows < 1 or cols < 1 or len(data) - 16 != expected:
        raise MSPNError(f"{path}: header says {count} images of {rows}x{cols} ({expected} bytes) but "
                        f"{len(data) - 16} bytes follow (truncated?)")
    return np.frombuffer(data, np.uint8, offset=16).reshape(count, rows, cols)


def bouncing_digits(rng: np.random.Generator, digits: np.ndarray, frames: int, canvas: int,
                    per_video: int, speed: float) -> np.ndarray:
    """One sequence (T, canvas, canvas) uint8 of ``per_video`` random digits from (N, h, w)."""
    video = np.zeros((frames, canvas, canvas), np.uint8)
    for _ in range(per_video):
        digit = digits[int(rng.integers(len(digits)))]
        h, w = digit.shape
        lim_y, lim_x = canvas - h, canvas - w
        y, x = rng.uniform(0, lim_y), rng.uniform(0, lim_x)
        theta = rng.uniform(0, 2 * math.pi)
        vy, vx = speed * math.sin(theta), speed * math.cos(theta)
        for t in range(frames):
            top, left = int(round(y)), int(round(x))
            patch = video[t, top:top + h, left:left + w]
            np.maximum(patch, digit, out=patch)
            y, vy = _reflect(y + vy, vy, lim_y)
            x, vx = _reflect(x + vx, vx, lim_x)
    return video


def _reflect(pos: float, vel: float, limit: float) -> tuple[float, float]:
    if pos < 0:
        return -pos, -vel
    if pos > limit:
        return 2 * limit - pos, -vel
    return pos, vel


def generate_mmnist(digits: str | Path, out: str | Path, videos=(10000, 1000, 2000), frames: int = 20,
                    canvas: int = 64, per_video: int = 2, speed: float = 3.6, seed: int = 0,
                    overwrite: bool = False) -> dict:
    """Write bouncing-digit videos (T, 1, canvas, canvas) uint8 from an idx image file.

    videos: (train, val, test) counts or one count N for (N, N // 10, N // 5). The default speed is
    the standard generator's (a step of 0.1 of the free range 64 - 28 = 36 px). Train videos use the
    first 90% of the digits, val and test the last 10%, so no digit image is seen in both.
    """
    if isinstance(videos, int):
        videos = (videos, max(1, videos // 10), max(1, videos // 5))
    counts = tuple(int(v) for v in videos)
    if len(counts) != 3 or min(counts) < 0 or counts[0] < 1:
        raise MSPNError(f"videos must be a count N or (train, val, test) counts, got {videos!r}")
    images = read_idx_images(digits)
    if images.shape[1] >= canvas or images.shape[2] >= canvas:
        raise MSPNError(f"digits of {images.shape[1]}x{images.shape[2]} do not fit a "
                        f"{canvas}x{canvas} canvas")
    if len(images) < 2:
        raise MSPNError(f"{digits}: needs at least 2 digit images, has {len(images)}")
    if frames < 1 or per_video < 1:
        raise MSPNError(f"frames and per_video must be >= 1, got {frames} and {per_video}")
    held_out = max(1, len(images) // 10)
    pools = {"train": images[:-held_out], "val": images[-held_out:], "test": images[-held_out:]}
    writer = DatasetWriter(out, overwrite=overwrite)
    with tqdm(total=sum(counts), desc="Moving MNIST", unit="video") as bar:
        for split_id, (split, count) in enumerate(zip(SPLITS, counts)):
            for i in range(count):
                rng = np.random.default_rng([seed, split_id, i])
                video = bouncing_digits(rng, pools[split], frames, canvas, per_video, speed)
                writer.write(split, f"{i:06d}", video[:, None])
                bar.update()
    return writer.finish(
        dataset="moving-mnist-generated", source=str(digits), channel_order="gray",
        generator={"seed": seed, "digits_per_video": per_video, "speed_px_per_frame": speed,
                   "frames_per_video": frames, "digit_pool": {"train": len(images) - held_out,
                                                              "val_test": held_out}})
