"""Live sources in, predictions out, one frame at a time (memory stays flat whatever the length).

A source is a video file, a camera index ("0"), an RTSP/HTTP URL, a folder of images, or "-" for
raw frames on stdin (uint8, H x W x C interleaved at the model's size and channel order, as
``ffmpeg -f rawvideo -pix_fmt gray|bgr24 -s WxH -`` writes them). Frames come out as (C, H, W)
uint8 at the model's size. A sink is a video file (real | predicted side by side), a folder of
such PNGs, or a .npy of the raw predictions (T, C, H, W) float32.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from mspn.errors import MSPNError
from mspn.fileio import atomic_path

from .video import CODECS, _cv2, side_by_side, to_model

IMAGES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
H264 = "avc1"  # the H.264 fourcc of OpenCV's FFmpeg writer
DEFAULT_FPS = 25.0


def open_source(source: str, size: tuple[int, int], channels: int, order: str = "bgr",
                max_frames: int = 0) -> tuple[Iterator[np.ndarray], float]:
    """(frames, fps): an iterator of (C, H, W) uint8 frames at the model's size, read lazily."""
    if source == "-":
        frames: Iterator[np.ndarray] = _stdin_frames(size, channels)
        fps = DEFAULT_FPS
    elif Path(source).is_dir():
        frames, fps = _folder_frames(Path(source), size, channels, order), DEFAULT_FPS
    else:
        frames, fps = _capture_frames(source, size, channels, order)
    if max_frames:
        frames = (frame for _, frame in zip(range(max_frames), frames, strict=False))
    return frames, fps


def _stdin_frames(size: tuple[int, int], channels: int) -> Iterator[np.ndarray]:
    height, width = size
    frame_bytes = height * width * channels
    stream = sys.stdin.buffer
    while True:
        data = stream.read(frame_bytes)
        if not data:
            return
        if len(data) != frame_bytes:
            raise MSPNError(f"stdin: a partial frame of {len(data)} bytes at the end; raw frames are "
                            f"{height}x{width}x{channels} uint8 = {frame_bytes} bytes each")
        yield np.frombuffer(data, np.uint8).reshape(height, width, channels).transpose(2, 0, 1).copy()


def _folder_frames(folder: Path, size, channels: int, order: str) -> Iterator[np.ndarray]:
    cv2 = _cv2()
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGES)
    if not paths:
        raise MSPNError(f"{folder}: no images ({', '.join(IMAGES)}) in this folder")
    for path in paths:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise MSPNError(f"{path}: OpenCV cannot read this image")
        yield to_model(image, size, channels, order)


def _capture_frames(source: str, size, channels: int, order: str) -> tuple[Iterator[np.ndarray], float]:
    """A video file, a camera index or a stream URL through OpenCV's VideoCapture."""
    cv2 = _cv2()
    is_url = "://" in source
    if not (source.isdigit() or is_url or Path(source).is_file()):
        raise MSPNError(f"source not found: {source} (a video file, camera index, URL, image folder or -)")
    capture = cv2.VideoCapture(int(source) if source.isdigit() else source)
    if not capture.isOpened():
        what = "camera" if source.isdigit() else "stream" if is_url else "video (unsupported container or codec?)"
        raise MSPNError(f"{source}: OpenCV cannot open this {what}")
    fps = capture.get(cv2.CAP_PROP_FPS) or DEFAULT_FPS

    def frames() -> Iterator[np.ndarray]:
        try:
            while True:
                ok, image = capture.read()
                if not ok:
                    return
                yield to_model(image, size, channels, order)
        finally:
            capture.release()
    return frames(), float(fps)


class Sink:
    """Where predictions go: ``pair(real, predicted)`` for each predicted frame that was then seen,
    ``prediction(p)`` for every prediction made; ``close()`` finishes the file atomically."""

    codec: str | None = None

    def __init__(self, order: str):
        self.order = order

    def pair(self, real: np.ndarray, predicted: np.ndarray) -> None:  # noqa: B027 - optional
        pass

    def prediction(self, predicted: np.ndarray) -> None:  # noqa: B027 - optional
        pass

    def close(self, ok: bool = True) -> None:  # noqa: B027 - optional
        pass


def _temporary(path: Path) -> Path:
    """A hidden sibling that keeps the extension (codecs pick by it); os.replace'd at the end."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")


def _finish(tmp: Path, path: Path, ok: bool) -> None:
    if ok:
        os.replace(tmp, path)
    elif tmp.is_dir():
        shutil.rmtree(tmp, ignore_errors=True)
    elif tmp.exists():
        tmp.unlink()


@contextlib.contextmanager
def _quiet_stderr():
    """Silence file descriptor 2 (FFmpeg writes there directly, below Python's sys.stderr)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class VideoSink(Sink):
    """real | predicted side by side, H.264 where this OpenCV build encodes it (.mp4, .mov, .mkv)."""

    def __init__(self, path: Path, fps: float, order: str):
        super().__init__(order)
        if path.suffix.lower() not in CODECS:
            raise MSPNError(f"{path}: unsupported video extension; use one of {', '.join(CODECS)}")
        self.path, self.fps, self.writer = path, fps, None
        self.tmp = _temporary(path)

    def _open(self, width: int, height: int):
        cv2 = _cv2()
        fallback = CODECS[self.path.suffix.lower()]
        candidates = (fallback,) if self.path.suffix.lower() == ".avi" else (H264, fallback)
        for codec in candidates:
            with _quiet_stderr():  # FFmpeg prints a page of errors for each encoder it cannot open
                writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*codec), self.fps, (width, height))
            if writer.isOpened():
                self.codec = codec
                return writer
            writer.release()
        raise MSPNError(f"{self.path}: OpenCV cannot write {'/'.join(candidates)} video here; try .avi")

    def pair(self, real, predicted):
        image = side_by_side(real, predicted, self.order)
        if self.writer is None:
            self.writer = self._open(image.shape[1], image.shape[0])
        self.writer.write(image)

    def close(self, ok: bool = True):
        if self.writer is not None:
            self.writer.release()
        _finish(self.tmp, self.path, ok and self.writer is not None)
        if ok and self.writer is None:
            raise MSPNError("no frames to write: the source ended before the first prediction was seen")


class PngSink(Sink):
    """A folder of real | predicted PNGs, 000000.png, ...; the folder appears when complete."""

    def __init__(self, path: Path, order: str):
        super().__init__(order)
        self.path, self.count = path, 0
        self.tmp = _temporary(path)
        self.tmp.mkdir()

    def pair(self, real, predicted):
        if not _cv2().imwrite(str(self.tmp / f"{self.count:06d}.png"), side_by_side(real, predicted, self.order)):
            raise MSPNError(f"{self.path}: OpenCV could not write a PNG")
        self.count += 1

    def close(self, ok: bool = True):
        if ok and self.path.exists():
            shutil.rmtree(self.path)
        _finish(self.tmp, self.path, ok)


class NpySink(Sink):
    """Every prediction as (T, C, H, W) float32 in a .npy; streamed to a scratch file, then the
    header (which needs T) and the data are copied into place in chunks."""

    def __init__(self, path: Path, order: str):
        super().__init__(order)
        self.path, self.shape, self.count = path, None, 0
        self.scratch = tempfile.TemporaryFile(dir=path.parent if path.parent.is_dir() else None)

    def prediction(self, predicted):
        predicted = np.ascontiguousarray(predicted, np.float32)
        self.shape = predicted.shape
        self.scratch.write(predicted.tobytes())
        self.count += 1

    def close(self, ok: bool = True):
        try:
            if ok:
                if not self.count:
                    raise MSPNError("no predictions to write: the source had no frames")
                self.scratch.seek(0)
                header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False,
                          "shape": (self.count, *self.shape)}
                with atomic_path(self.path) as tmp, open(tmp, "wb") as out:
                    np.lib.format.write_array_header_1_0(out, header)
                    shutil.copyfileobj(self.scratch, out, 1 << 20)
        finally:
            self.scratch.close()


def open_sink(out: str | Path, fps: float, order: str) -> Sink:
    """.npy -> raw predictions; a video extension -> side-by-side video; else a PNG folder."""
    path = Path(out)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return NpySink(path, order)
    if suffix in CODECS:
        return VideoSink(path, fps, order)
    if suffix and suffix not in ("",) and not path.is_dir():
        raise MSPNError(f"{out}: unknown output kind; use .npy, a video ({', '.join(CODECS)}) or a folder for PNGs")
    return PngSink(path, order)


def window_predictions(predictor, frames: Iterable[np.ndarray], lead: int) -> Iterator[np.ndarray | None]:
    """Per frame t: the rollout from the T_ctx frames ending at t, its step ``lead`` (frame t + lead);
    None until T_ctx frames were seen. Keeps only the window."""
    window: deque = deque(maxlen=predictor.context)
    for frame in frames:
        window.append(frame)
        yield predictor.predict(np.stack(window)[None])[0, lead - 1] if len(window) == window.maxlen else None


def run_source(frames: Iterable[np.ndarray], predict: Callable[[Iterator], Iterator], sink: Sink,
               lead: int = 1) -> dict:
    """Feed frames through ``predict`` (a generator: one prediction, or None, per frame, made
    ``lead`` frames ahead) into ``sink``; each prediction meets its real frame when that arrives.

    Holds at most lead + 2 frames. Returns {"frames", "predictions", "compared", "mse", "codec"}.
    """
    seen: deque = deque()

    def tap(source):
        for frame in source:
            seen.append(frame)
            yield frame
    waiting: deque = deque()  # the last ``lead`` predictions, oldest first
    counts = {"frames": 0, "predictions": 0, "compared": 0}
    squared = 0.0
    ok = False
    try:
        for prediction in predict(tap(frames)):
            frame = seen.popleft()  # the frame this prediction was made after
            counts["frames"] += 1
            if len(waiting) == lead:
                due = waiting.popleft()
                if due is not None:
                    sink.pair(frame, due)
                    squared += float(np.mean((due - frame.astype(np.float32) / 255.0) ** 2))
                    counts["compared"] += 1
            waiting.append(prediction)
            if prediction is not None:
                sink.prediction(prediction)
                counts["predictions"] += 1
        ok = True
    finally:
        sink.close(ok)
    return {**counts, "mse": squared / counts["compared"] if counts["compared"] else None, "codec": sink.codec}


def predict_source(predictor, source: str, out: str | Path, stream: bool = False, lead: int = 1,
                   max_frames: int = 0) -> dict:
    """`mspn predict --model DIR --source SRC --out OUT [--stream]` on a loaded Predictor."""
    if stream and lead != 1:
        raise MSPNError("--stream predicts one frame ahead; --lead needs the sliding-window mode")
    if not 1 <= lead <= predictor.horizon:
        raise MSPNError(f"--lead must be between 1 and the model's horizon {predictor.horizon}, got {lead}")
    m = predictor.manifest
    frames, fps = open_source(source, m.frame_size, m.channels, m.channel_order, max_frames)
    sink = open_sink(out, fps, m.channel_order)
    if stream:
        with predictor.stream() as session:
            return run_source(frames, session.feed, sink)
    return run_source(frames, lambda tapped: window_predictions(predictor, tapped, lead), sink, lead)
