"""Predictor: one API over every backend, with checked inputs and streaming sessions.

    from mspn.runtime import Predictor
    p = Predictor.load("model_dir", backend="onnxruntime", variant="fp32", threads=2)
    future = p.predict(frames)        # (B, T_ctx, C, H, W) uint8 or float32 in [0, 1]
                                      # -> (B, T_pred, C, H, W) float32 (not clamped)
    s = p.stream()
    nxt = s.push(frame)               # (B, C, H, W) -> prediction of the next frame (B, C, H, W)
    ahead = s.rollout(n)              # -> the next n frames (B, n, C, H, W), closed loop
    any_len = p.predict(frames, horizon=12)  # any T and horizon; batches above the max are split
    for nxt in p.stream().feed(frames_iter):  # (C, H, W) frames one at a time, flat memory
        ...

One predictor serves several threads at once; each thread uses its own stream sessions.
"""
from __future__ import annotations

import contextlib
import threading
import zipfile
import zlib
from pathlib import Path

import numpy as np

from mspn.errors import MSPNError
from mspn.fileio import check_fits_memory

from .base import Runner, make_runner
from .manifest import Manifest


class Predictor:
    """A model folder loaded on one backend: the rollout graph and the step graph."""

    def __init__(self, manifest: Manifest, rollout: Runner, step: Runner, initial_state: dict,
                 backend: str, variant: str):
        self.manifest = manifest
        self.rollout_runner = rollout
        self.step_runner = step
        self.initial_state = initial_state
        self.backend = backend
        self.variant = variant
        self.closed = False
        self._activating = threading.Lock()

    @classmethod
    def load(cls, model_dir: str | Path, backend: str = "onnxruntime", variant: str = "fp32",
             **backend_options) -> Predictor:
        """Load a model folder, checking its format version and the SHA-256 of every file used.

        backend_options go to the backend (e.g. onnxruntime: provider, threads, optimization;
        openvino: precision, threads; tensorrt: device_id; torch: ckpt, device).
        """
        manifest = Manifest.load(model_dir)
        rollout = make_runner(backend, manifest, "rollout", variant, **backend_options)
        step = make_runner(backend, manifest, "step", variant, **backend_options)
        initial = load_initial_state(manifest, step.graph)
        # Both graphs load on first use (predict: rollout, stream: step): a predictor used for one
        # of them never spends the time or memory of the other.
        rollout.check_available()
        return cls(manifest, rollout, step, initial, backend, variant)

    # --- model facts ------------------------------------------------------------------------------
    @property
    def context(self) -> int:
        return self.manifest.context

    @property
    def horizon(self) -> int:
        return self.manifest.horizon

    @property
    def channels(self) -> int:
        return self.manifest.channels

    @property
    def frame_size(self) -> tuple[int, int]:
        return self.manifest.frame_size

    @property
    def max_batch(self) -> int:
        return self.manifest.batch_max

    # --- inference --------------------------------------------------------------------------------
    def predict(self, frames: np.ndarray, horizon: int | None = None) -> np.ndarray:
        """frames: (B, T_ctx, C, H, W) uint8, or float32 in [0, 1] -> (B, T_pred, C, H, W) float32.

        With ``horizon``: (B, T, C, H, W), any T >= 1 -> (B, horizon, C, H, W) through the step
        graph (push every frame, then roll out); batches above the model's max are split.
        T == T_ctx and horizon == T_pred still use the rollout graph.
        """
        if horizon is not None:
            return self._predict_any(frames, horizon)
        self._check_open()
        x = self.check_frames(frames, "frames", clip=True)
        with self._activating:
            self.rollout_runner.activate()
        feed = {"frames": x.astype(self.rollout_runner.dtype_of("frames"), copy=False)}
        return np.asarray(self.rollout_runner.infer(feed)["future"], dtype=np.float32)

    def _predict_any(self, frames: np.ndarray, horizon: int) -> np.ndarray:
        """Any context length and horizon, in chunks of the model's max batch."""
        if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 1:
            raise MSPNError(f"horizon must be a whole number >= 1, got {horizon!r}")
        if not isinstance(frames, np.ndarray) or frames.ndim != 5 or min(frames.shape) < 1:
            raise MSPNError(f"frames must be (B, T, C, H, W) with T >= 1, got shape {getattr(frames, 'shape', None)}")
        parts = []
        for start in range(0, len(frames), self.max_batch):
            chunk = frames[start:start + self.max_batch]
            if chunk.shape[1] == self.context and horizon == self.horizon:
                parts.append(self.predict(chunk))
                continue
            with self.stream() as session:
                for t in range(chunk.shape[1]):
                    session.push(chunk[:, t])
                parts.append(session.rollout(int(horizon)))
        return np.concatenate(parts)

    def stream(self) -> StreamSession:
        """A new streaming session (its own recurrent state); one per thread or video stream.
        The first one activates the step graph (a predictor used only for rollouts never loads it)."""
        self._check_open()
        with self._activating:
            self.step_runner.activate()
        return StreamSession(self)

    def close(self) -> None:
        if not self.closed:
            self.rollout_runner.deactivate()
            self.step_runner.deactivate()
            self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _check_open(self) -> None:
        if self.closed:
            raise MSPNError("this predictor was closed; load the model folder again")

    # --- input validation -------------------------------------------------------------------------
    def check_frames(self, frames, what: str, clip: bool) -> np.ndarray:
        """Validate a clip (clip=True: (B, T_ctx, C, H, W)) or a frame ((B, C, H, W)).

        Accepts uint8 (0..255, scaled by 1/255) or float32 in [0, 1]; returns contiguous float32.
        """
        m = self.manifest
        if isinstance(frames, np.ma.MaskedArray):
            frames = frames.data  # what a mask hides is still what the graph would be fed
        (height, width), c = m.frame_size, m.channels
        layout = f"(B, {m.context}, {c}, {height}, {width})" if clip else f"(B, {c}, {height}, {width})"
        names = "(B, T_ctx, C, H, W)" if clip else "(B, C, H, W)"
        if not isinstance(frames, np.ndarray):
            raise MSPNError(f"{what} must be a numpy array {names}, got {type(frames).__name__}")
        if frames.dtype not in (np.uint8, np.float32):
            raise MSPNError(f"{what} must be uint8 (0..255) or float32 in [0, 1], got {frames.dtype}"
                            f"{'; cast with .astype(np.float32)' if frames.dtype.kind == 'f' else ''}")
        if frames.ndim != (5 if clip else 4):
            raise MSPNError(f"{what} must be {names} = {layout}, got shape {frames.shape}")
        if frames.shape[-3] != c:
            raise MSPNError(f"{what} has {frames.shape[-3]} channels (axis {frames.ndim - 3}) but this "
                            f"model takes {c} ({m.channel_order}); shape {frames.shape}, expected {layout}")
        if tuple(frames.shape[-2:]) != (height, width):
            raise MSPNError(f"{what} frame size {frames.shape[-2]}x{frames.shape[-1]} (HxW) does not match "
                            f"the model's {height}x{width}; resize the frames")
        if clip and frames.shape[1] != m.context:
            raise MSPNError(f"{what} has {frames.shape[1]} context frames (axis 1) but this model takes "
                            f"exactly {m.context}; shape {frames.shape}, expected {layout}")
        batch = frames.shape[0]
        if not m.batch_min <= batch <= m.batch_max:
            raise MSPNError(f"{what} batch {batch} is outside the model's range {m.batch_min}..{m.batch_max}; "
                            f"split the input")
        if frames.dtype == np.uint8:
            return np.ascontiguousarray(frames, dtype=np.float32) / np.float32(255.0)
        finite = np.isfinite(frames)
        if not finite.all():
            where = tuple(int(i) for i in np.argwhere(~finite)[0])
            raise MSPNError(f"{what} contains NaN or inf ({int((~finite).sum())} values, first at index {where})")
        low, high = frames.min(), frames.max()
        if low < 0.0 or high > 1.0:
            raise MSPNError(f"{what} values must lie in [0, 1] for float32 input: {range_problem(low, high)}"
                            f"{' (0..255 values? pass uint8 or divide by 255)' if high > 1.5 else ''}")
        return np.ascontiguousarray(frames)


def load_initial_state(manifest: Manifest, step_graph) -> dict[str, np.ndarray]:
    """initial_state.npz -> {state name: (1, ...) float32}, checked against the step graph's inputs.

    The archive's declared sizes are read before any array, so a member claiming gigabytes (a zip
    bomb) is refused unread; a truncated archive, a wrong shape or a NaN is refused by name.
    """
    path = manifest.verified_path(manifest.state_file)
    shapes = {t.name: t.concrete(1) for t in step_graph.inputs}
    unknown = [n for n in manifest.state_names if n not in shapes]
    if unknown:
        raise MSPNError(f"{manifest.folder}: state names {', '.join(unknown)} are not inputs of the step graph")
    try:
        with zipfile.ZipFile(path) as archive:
            declared = {info.filename: info.file_size for info in archive.infolist()}
        state = {}
        with np.load(path, allow_pickle=False) as npz:
            for name in manifest.state_names:
                limit = int(np.prod(shapes[name])) * 8 + 4096  # float64 at most, plus the .npy header
                if declared.get(f"{name}.npy", 0) > limit:
                    raise MSPNError(f"{path}: state {name} declares {declared[f'{name}.npy']} bytes, more than "
                                    f"its shape {list(shapes[name])} needs")
                state[name] = np.asarray(npz[name], dtype=np.float32)
    except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise MSPNError(f"{path}: unreadable initial state ({type(exc).__name__}: {str(exc)[:200]})") from None
    for name, value in state.items():
        if value.shape != shapes[name]:
            raise MSPNError(f"{path}: state {name} has shape {value.shape}, the step graph takes {shapes[name]}")
        if not np.isfinite(value).all():
            raise MSPNError(f"{path}: state {name} holds NaN or infinite values")
    return state


def range_problem(low, high) -> str:
    """What lies outside [0, 1], with float32 values shown exactly ('max 1.0000001 is above 1')."""
    show = np.format_float_positional
    problems = ([f"min {show(low)} is below 0"] if low < 0 else []) + \
        ([f"max {show(high)} is above 1"] if high > 1 else [])
    return " and ".join(problems)


MAX_ROLLOUT = 10_000  # frames per StreamSession.rollout call; longer runs take several calls


class StreamSession:
    """Frame-by-frame prediction with the recurrent state held between calls.

    The state holds the pending prediction of the next unseen frame. ``push(frame)`` corrects the
    state with a real frame and returns the prediction of the frame after it; ``rollout(n)``
    emits the pending prediction and advances one closed-loop step, n times. After pushing the
    T_ctx context frames into a fresh session, ``rollout(T_pred)`` equals ``predict`` on them.
    A session is not shared between threads; open one per thread.
    """

    def __init__(self, predictor: Predictor):
        self._predictor = predictor
        self._runner = predictor.step_runner
        self._handle = None
        self._pending: np.ndarray | None = None
        self._batch: int | None = None
        self._lock = threading.Lock()  # refuses, rather than corrupts, concurrent use by threads

    @property
    def batch(self) -> int | None:
        """The batch set by the first push, or None before it."""
        return self._batch

    @property
    def frames_pushed(self) -> bool:
        return self._handle is not None

    def reset(self) -> None:
        """Forget everything: the next push starts from the initial state (any batch). Takes the
        session's lock like push and rollout: a reset never frees state a running step uses."""
        with self._guard(check_open=False):  # close() resets after the predictor closed
            if self._handle is not None:
                self._runner.free_state(self._handle)
            self._handle, self._pending, self._batch = None, None, None

    def push(self, frame: np.ndarray) -> np.ndarray:
        """frame: (B, C, H, W) uint8 or float32 in [0, 1] -> the next frame's prediction (B, C, H, W)."""
        with self._guard():
            x = self._predictor.check_frames(frame, "frame", clip=False)
            batch = x.shape[0]
            if self._handle is None:
                initial = {k: np.repeat(v, batch, axis=0) for k, v in self._predictor.initial_state.items()}
                self._handle = self._runner.new_state(initial)
                self._batch = batch
            elif batch != self._batch:
                raise MSPNError(f"this stream session holds batch {self._batch} (set by its first push) but "
                                f"the frame has batch {batch}; call reset() first to change it")
            self._advance(x, np.ones(batch, np.float32))
            return self._pending.copy()

    def feed(self, frames):
        """Push frames from an iterable one at a time, yielding each next-frame prediction.

        frames: (C, H, W) or (B, C, H, W) arrays (uint8, or float32 in [0, 1]); yields float32 of
        the same layout. Nothing is buffered: memory stays flat whatever the stream's length.
        """
        for frame in frames:
            single = isinstance(frame, np.ndarray) and frame.ndim == 3
            prediction = self.push(frame[None] if single else frame)
            yield prediction[0] if single else prediction

    def rollout(self, n: int) -> np.ndarray:
        """The next n frames, closed loop: (B, n, C, H, W) float32. Needs at least one push first."""
        with self._guard():
            if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
                raise MSPNError(f"rollout(n) needs a whole number n >= 1, got {n!r}")
            if n > MAX_ROLLOUT:
                raise MSPNError(f"rollout({n}) asks for more than {MAX_ROLLOUT} frames in one call; "
                                f"roll out in several calls")
            if self._handle is None:
                raise MSPNError("rollout() before any push(): push the context frames first "
                                "(the session has no state yet)")
            check_fits_memory(int(n) * self._pending.nbytes, f"rollout({n})")
            zeros = np.zeros_like(self._pending)
            off = np.zeros(self._batch, np.float32)
            future = []
            for _ in range(int(n)):
                future.append(self._pending)
                self._advance(zeros, off)
            return np.stack(future, axis=1)

    def _advance(self, frame: np.ndarray, open_loop: np.ndarray) -> None:
        runner = self._runner
        feed = {"frame": frame.astype(runner.dtype_of("frame"), copy=False),
                "open_loop": open_loop.astype(runner.dtype_of("open_loop"), copy=False)}
        out, self._handle = runner.step(self._handle, feed)
        self._pending = np.asarray(out["next_frame"], dtype=np.float32)

    @contextlib.contextmanager
    def _guard(self, check_open: bool = True):
        if check_open:
            self._predictor._check_open()
        if not self._lock.acquire(blocking=False):
            raise MSPNError("this stream session is in use by another thread; open one session per thread")
        try:
            yield
        finally:
            self._lock.release()

    def close(self) -> None:
        self.reset()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
