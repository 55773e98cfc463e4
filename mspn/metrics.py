"""Per-predicted-step metrics, as in the paper: SSIM, PSNR, MSE (two conventions) and LPIPS.

Every metric is computed per clip and per predicted step, then averaged over clips, so each
result is an array of shape (horizon,) plus its mean over steps.

- SSIM: ``skimage.metrics.structural_similarity``, 7x7 window, data_range 1, channel axis for
  colour (frames are converted (C, H, W) -> (H, W, C)).
- PSNR: ``skimage.metrics.peak_signal_noise_ratio`` with data_range 1. A frame predicted exactly
  gives +inf (skimage's answer); the JSON report writes non-finite numbers as null.
- MSE: ``mse`` is the per-pixel mean over C, H, W; ``mse_sum`` is the per-frame sum of squared
  error (the Moving MNIST convention the paper prints). mse_sum = mse * C * H * W.
- LPIPS: AlexNet backbone of the ``lpips`` package, inputs mapped [0, 1] -> [-1, 1], grayscale
  repeated to 3 channels. Stored raw; the paper prints it x100. The ImageNet AlexNet weights are
  never downloaded: they are read from torchvision's cache or a user-given file, and when neither
  exists LPIPS is reported as skipped with the reason, never as a number from a random backbone.

The reference does not clip predictions to [0, 1] before the metrics; ``StepMetrics(clip=...)``
records which choice was made. skimage's PSNR and SSIM with data_range 1 accept values outside
[0, 1], so unclipped predictions are measured as they are.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from mspn.errors import MSPNError
from mspn.frame_metrics import SSIM_WINDOW, frame_psnr_ssim  # noqa: F401  (re-exported)

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"  # torchvision's name for the ImageNet AlexNet weights
# AlexNet's second max-pool needs a 3x3 input, which a side shorter than 31 pixels cannot give
# (conv 11/4 pad 2 -> pool 3/2 -> conv 5 pad 2 -> pool 3/2).
LPIPS_MIN_SIDE = 31
# Torchvision's AlexNet feature indices of the five convolutions -> lpips' slice names.
_ALEX_CONVS = {0: "slice1", 3: "slice2", 6: "slice3", 8: "slice4", 10: "slice5"}

METRICS = ("psnr", "ssim", "mse", "mse_sum", "lpips")


def default_alexnet_path() -> Path:
    """Where torchvision caches the ImageNet AlexNet weights: <torch hub dir>/checkpoints/."""
    return Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE


class LPIPSScorer:
    """LPIPS with the AlexNet backbone, built without any download.

    ``lpips.LPIPS(net='alex', pretrained=True, pnet_rand=True)`` builds the backbone with random
    weights (so torchvision fetches nothing) and loads the linear layers shipped inside the lpips
    package; the ImageNet AlexNet weights are then loaded from ``alexnet_weights``.
    ``random_backbone`` keeps the random backbone (to exercise the code path where no weights
    exist): its numbers are not LPIPS and ``reportable`` is False.
    """

    def __init__(self, alexnet_weights: str | Path | None, random_backbone: bool = False,
                 batch: int = 64):
        import lpips

        if alexnet_weights is None and not random_backbone:
            raise MSPNError("LPIPS needs the ImageNet AlexNet weights (a .pth file)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchvision's "pretrained is deprecated" warning
            net = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False)
        if not random_backbone:
            _load_alexnet(net.net, Path(alexnet_weights))
        self.net = net.eval()
        self.batch = batch
        self.reportable = not random_backbone

    @torch.no_grad()
    def __call__(self, prediction: np.ndarray, target: np.ndarray) -> np.ndarray:
        """prediction, target: (N, C, H, W) in [0, 1], C = 1 or 3 -> (N,) LPIPS distances."""
        if prediction.shape[-1] < LPIPS_MIN_SIDE or prediction.shape[-2] < LPIPS_MIN_SIDE:
            raise MSPNError(f"LPIPS (AlexNet) needs frames of at least {LPIPS_MIN_SIDE}x"
                            f"{LPIPS_MIN_SIDE}, got {prediction.shape[-2]}x{prediction.shape[-1]}")
        out = []
        for start in range(0, len(prediction), self.batch):
            p = _to_lpips_input(prediction[start:start + self.batch])
            t = _to_lpips_input(target[start:start + self.batch])
            out.append(self.net(p, t).reshape(-1).double().numpy())
        return np.concatenate(out) if out else np.zeros(0)


def _to_lpips_input(frames: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32)) * 2 - 1
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    return x


def _load_alexnet(backbone: torch.nn.Module, path: Path) -> None:
    """Torchvision AlexNet state_dict (features.K.weight/bias) -> lpips' slices (sliceN.K.*)."""
    if not path.is_file():
        raise MSPNError(f"AlexNet weights not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same one-line answer
        raise MSPNError(f"{path}: not readable AlexNet weights ({type(exc).__name__})") from None
    mapped = {}
    for index, slice_name in _ALEX_CONVS.items():
        for kind in ("weight", "bias"):
            key = f"features.{index}.{kind}"
            if not isinstance(state, dict) or key not in state:
                raise MSPNError(f"{path}: not torchvision AlexNet weights (no {key})")
            mapped[f"{slice_name}.{index}.{kind}"] = state[key]
    try:
        backbone.load_state_dict(mapped, strict=True)
    except RuntimeError as exc:
        raise MSPNError(f"{path}: AlexNet weights of the wrong shape: "
                        f"{str(exc).splitlines()[-1].strip()[:200]}") from None


def load_lpips(weights: str | Path | None = None,
               frame_size: tuple[int, int] | None = None) -> tuple[LPIPSScorer | None, dict]:
    """An LPIPS scorer (or None) and a JSON-able status telling why.

    weights: a user-given AlexNet .pth (must exist); None looks in torchvision's cache.
    frame_size: (H, W) of the frames to score; too small for AlexNet -> skipped with the reason.
    status: {"status": "ok" | "skipped", "reason", "weights", "reportable", "scale"}.
    """
    status = {"weights": None, "scale": "raw (the paper prints LPIPS x100)"}
    if frame_size is not None and min(frame_size) < LPIPS_MIN_SIDE:
        return None, {**status, "status": "skipped", "reportable": False,
                      "reason": f"frames {frame_size[0]}x{frame_size[1]} are smaller than AlexNet's "
                                f"minimum {LPIPS_MIN_SIDE}x{LPIPS_MIN_SIDE}"}
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise MSPNError(f"--lpips-weights: file not found: {path}")
    else:
        path = default_alexnet_path()
        if not path.is_file():
            return None, {**status, "status": "skipped", "reportable": False,
                          "reason": f"ImageNet AlexNet weights not found at {path} "
                                    f"(give them with --lpips-weights; nothing is downloaded)"}
    scorer = LPIPSScorer(path)
    return scorer, {**status, "status": "ok", "reportable": True, "reason": "",
                    "weights": str(path)}


def _as_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


class StepMetrics:
    """Accumulates per-step metrics over batches of clips.

    update(prediction, target): both (B, T, C, H, W) floats, target in [0, 1], T = horizon.
    per_step(): name -> (horizon,) array averaged over clips; means(): name -> mean over steps.
    LPIPS appears only when a scorer is given; lpips_status says why it is absent or whether
    its values are reportable.
    """

    def __init__(self, horizon: int, clip: bool = False, lpips: LPIPSScorer | None = None,
                 lpips_status: dict | None = None):
        if horizon < 1:
            raise MSPNError(f"horizon must be >= 1, got {horizon}")
        self.horizon = horizon
        self.clip = clip
        self.lpips = lpips
        self.lpips_status = lpips_status or {
            "status": "ok" if lpips is not None and lpips.reportable else
            ("random-backbone" if lpips is not None else "skipped"),
            "reportable": bool(lpips is not None and lpips.reportable),
            "reason": "" if lpips is not None else "no LPIPS scorer given"}
        self.names = [m for m in METRICS if m != "lpips" or lpips is not None]
        self._sums = {name: np.zeros(horizon) for name in self.names}
        self.clips = 0
        self._out_of_range = 0
        self._pixels = 0

    def update(self, prediction, target) -> None:
        pred, true = _as_numpy(prediction), _as_numpy(target)
        if pred.shape != true.shape or pred.ndim != 5 or pred.shape[1] != self.horizon:
            raise MSPNError(f"prediction and target must both be (B, {self.horizon}, C, H, W), "
                            f"got {pred.shape} and {true.shape}")
        # Counted before clipping: tells how much clipping (or not clipping) matters.
        self._out_of_range += int(np.count_nonzero((pred < 0) | (pred > 1)))
        self._pixels += pred.size
        if self.clip:
            pred = np.clip(pred, 0.0, 1.0)
        batch, steps = pred.shape[:2]
        sq = (pred - true) ** 2
        self._sums["mse"] += sq.mean(axis=(2, 3, 4)).sum(axis=0)
        self._sums["mse_sum"] += sq.sum(axis=(2, 3, 4)).sum(axis=0)
        for b in range(batch):
            for t in range(steps):
                psnr, ssim = frame_psnr_ssim(pred[b, t], true[b, t])
                self._sums["psnr"][t] += psnr
                self._sums["ssim"][t] += ssim
        if self.lpips is not None:
            flat = self.lpips(pred.reshape(-1, *pred.shape[2:]), true.reshape(-1, *true.shape[2:]))
            self._sums["lpips"] += flat.reshape(batch, steps).sum(axis=0)
        self.clips += batch

    def per_step(self) -> dict[str, np.ndarray]:
        if self.clips == 0:
            raise MSPNError("no clip was measured")
        return {name: total / self.clips for name, total in self._sums.items()}

    def means(self) -> dict[str, float]:
        return {name: float(values.mean()) for name, values in self.per_step().items()}

    def summary(self) -> dict:
        """JSON-able: per-step lists, means, clip count, clipping choice, LPIPS status."""
        return {
            "per_step": {k: [_finite_or_none(v) for v in vals] for k, vals in self.per_step().items()},
            "mean": {k: _finite_or_none(v) for k, v in self.means().items()},
            "clips": self.clips,
            "clipped": self.clip,
            "out_of_range_fraction": self._out_of_range / max(self._pixels, 1),
            "lpips": dict(self.lpips_status),
        }


def _finite_or_none(value: float) -> float | None:
    """JSON has no inf/nan: an exact prediction's PSNR (+inf) is written as null."""
    value = float(value)
    return value if np.isfinite(value) else None
