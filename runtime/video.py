"""Video in and video out for a predictor: OpenCV reading and writing, side-by-side frames, GIF.

Frames read here are resized to the model's size and converted to its channel order
(grayscale when C == 1); they come out as (T, C, H, W) uint8. The output shows, per time step,
the real frame (left) next to the model's prediction of it (right), enlarged for viewing.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from mspn.errors import MSPNError
from mspn.fileio import atomic_path

from .base import require

CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".avi": "MJPG", ".mkv": "mp4v", ".mov": "mp4v"}
MIN_DISPLAY = 128  # small models (32x32) are enlarged to at least this height for viewing


def _cv2():
    return require("cv2", "runtime", "reading and writing videos")


def to_model(image: np.ndarray, size: tuple[int, int], channels: int, order: str) -> np.ndarray:
    """An OpenCV BGR (H', W', 3) uint8 image -> (C, H, W) uint8 at the model's size and channel order."""
    cv2 = _cv2()
    height, width = size
    # INTER_AREA: the right filter for shrinking, which is the usual direction here.
    image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    if channels == 1:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)[..., None]
    elif channels == 3:
        if order == "rgb":
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    else:
        raise MSPNError(f"video input needs a model with 1 or 3 channels, this one has {channels}")
    return np.ascontiguousarray(image.transpose(2, 0, 1))


def read_video(path: str | Path, size: tuple[int, int], channels: int, order: str = "bgr",
               max_frames: int = 0) -> tuple[np.ndarray, float]:
    """Frames of a video as (T, C, H, W) uint8 at the model's size, and the video's fps."""
    cv2 = _cv2()
    path = Path(path)
    if isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 0:
        raise MSPNError(f"max_frames must be a whole number >= 0 (0: all frames), got {max_frames!r}")
    if not path.is_file():
        raise MSPNError(f"video not found: {path}")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise MSPNError(f"{path}: OpenCV cannot open this video (unsupported container or codec?)")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    frames = []
    try:
        while not max_frames or len(frames) < max_frames:
            ok, image = capture.read()
            if not ok:
                break
            frames.append(to_model(image, size, channels, order))
    finally:
        capture.release()
    if not frames:
        raise MSPNError(f"{path}: no frames could be decoded")
    return np.stack(frames), float(fps)


def to_bgr(frame: np.ndarray, order: str, scale: int) -> np.ndarray:
    """(C, H, W) float in [0, 1] (clipped) or uint8 -> (H*scale, W*scale, 3) uint8 BGR."""
    if frame.dtype != np.uint8:
        frame = (np.clip(frame, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    image = frame.transpose(1, 2, 0)
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    elif order == "rgb":
        image = image[..., ::-1]
    if scale > 1:  # nearest: keeps pixels visible instead of blurring a small frame
        image = image.repeat(scale, axis=0).repeat(scale, axis=1)
    return np.ascontiguousarray(image)


def side_by_side(real: np.ndarray, predicted: np.ndarray, order: str) -> np.ndarray:
    """(C, H, W) real and predicted -> one BGR image: real | 4 px white gap | predicted."""
    scale = max(1, -(-MIN_DISPLAY // real.shape[1]))
    left, right = to_bgr(real, order, scale), to_bgr(predicted, order, scale)
    gap = np.full((left.shape[0], 4, 3), 255, np.uint8)
    return np.concatenate([left, gap, right], axis=1)


def write_video(path: str | Path, images: list[np.ndarray], fps: float) -> None:
    """Write BGR uint8 images (all one size) as a video; the codec follows the extension."""
    cv2 = _cv2()
    path = Path(path)
    codec = CODECS.get(path.suffix.lower())
    if codec is None:
        raise MSPNError(f"{path}: unsupported video extension; use one of {', '.join(CODECS)}")
    if not images:
        raise MSPNError("no frames to write: the video is shorter than the model's context")
    height, width = images[0].shape[:2]
    with atomic_path(path, keep_suffix=True) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*codec), fps, (width, height))
        if not writer.isOpened():
            raise MSPNError(f"{path}: OpenCV cannot write {codec} video here (codec missing?); try .avi")
        try:
            for image in images:
                writer.write(image)
        finally:
            writer.release()


def write_gif(path: str | Path, images: list[np.ndarray], fps: float) -> None:
    """Write BGR uint8 images as an animated GIF (needs imageio)."""
    imageio = require("imageio.v2", "runtime", "--gif")
    path = Path(path)
    with atomic_path(path, keep_suffix=True) as tmp:
        imageio.mimsave(tmp, [image[..., ::-1] for image in images], format="GIF",
                        duration=1.0 / max(fps, 1.0), loop=0)


def _progress(iterable: Iterable, total: int, desc: str):
    """tqdm when installed (it is not a runtime dependency) and the video is long enough to wait for."""
    try:
        import tqdm as _installed  # noqa: F401  (not a runtime dependency)

        from mspn.progress import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, total=total, desc=desc, unit="frame", disable=total < 64)


def predict_video(predictor, video: str | Path, out: str | Path, stream: bool = False,
                  lead: int = 1, gif: str | Path | None = None, max_frames: int = 0) -> dict:
    """Predict a video and write real | predicted side by side.

    Sliding window (default): frame t is predicted ``lead`` steps ahead from the T_ctx frames
    ending at t - lead; windows are batched up to the model's max batch.
    Stream (``stream=True``): frames are pushed one by one; frame t is the prediction made after
    pushing frame t - 1 (lead 1). Returns a summary {"frames", "fps", "mse", ...}.
    """
    m = predictor.manifest
    frames, fps = read_video(video, m.frame_size, m.channels, m.channel_order, max_frames)
    if stream and lead != 1:
        raise MSPNError("--stream predicts one frame ahead; --lead needs the sliding-window mode")
    if not 1 <= lead <= predictor.horizon:
        raise MSPNError(f"--lead must be between 1 and the model's horizon {predictor.horizon}, got {lead}")
    first = 1 if stream else predictor.context + lead - 1
    if len(frames) <= first:
        raise MSPNError(f"{video}: {len(frames)} frame(s) decoded; at least {first + 1} are needed "
                        f"(context {predictor.context}, lead {lead})")
    targets = list(range(first, len(frames)))
    predicted: dict[int, np.ndarray] = {}
    bar = _progress(range(len(targets)), len(targets), "predict")
    progress = iter(bar)
    if stream:
        session = predictor.stream()
        for t in targets:
            predicted[t] = session.push(frames[t - 1][None])[0]
            next(progress, None)
    else:
        for start in range(0, len(targets), predictor.max_batch):
            chunk = targets[start:start + predictor.max_batch]
            windows = np.stack([frames[t - lead - predictor.context + 1: t - lead + 1] for t in chunk])
            future = predictor.predict(windows)
            for i, t in enumerate(chunk):
                predicted[t] = future[i, lead - 1]
                next(progress, None)
    if hasattr(bar, "close"):
        bar.close()
    images = [side_by_side(frames[t], predicted[t], m.channel_order) for t in targets]
    write_video(out, images, fps)
    if gif:
        write_gif(gif, images, fps)
    real = np.stack([frames[t] for t in targets]).astype(np.float32) / 255.0
    mse = float(np.mean((np.stack([predicted[t] for t in targets]) - real) ** 2))
    return {"frames": len(targets), "fps": fps, "mse": mse, "mode": "stream" if stream else "window"}
