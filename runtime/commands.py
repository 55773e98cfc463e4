"""Library side of `mspn predict --model`: .npy or video in, .npy or video out. Torch-free."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mspn.errors import MSPNError, UsageError
from mspn.fileio import atomic_path, check_fits_memory, check_output, read_npy
from mspn.options import PredictOptions

from .predictor import Predictor


def predict_array(predictor: Predictor, frames: np.ndarray, horizon: int | None = None,
                  max_horizon: int = 1000) -> np.ndarray:
    """frames (B, T, C, H, W) -> (B, horizon, C, H, W) float32, whole T as context.

    T == T_ctx and horizon == T_pred use the rollout graph; any other T or horizon streams
    (push every frame, then roll out), which the step graph allows. Batches above the model's
    max are split.
    """
    horizon = predictor.horizon if horizon is None else horizon
    if horizon < 1:
        raise MSPNError(f"--horizon must be >= 1, got {horizon}")
    if horizon > max_horizon:
        raise MSPNError(f"--horizon {horizon} is above --max-horizon {max_horizon}; raise --max-horizon "
                        f"if you mean it")
    if not isinstance(frames, np.ndarray) or frames.ndim != 5:
        raise MSPNError(f"input must be (B, T, C, H, W), got shape {getattr(frames, 'shape', None)}")
    if min(frames.shape) < 1:
        raise MSPNError(f"input is empty: shape {frames.shape} (B, T, C, H, W)")
    check_fits_memory(4 * len(frames) * horizon * int(np.prod(frames.shape[2:])), f"--horizon {horizon}")
    return predictor.predict(frames, horizon=horizon)


def predict_model(args: PredictOptions) -> None:
    """`mspn predict --model DIR --backend B (--input X.npy | --video V) --out OUT`."""
    if sum(x is not None for x in (args.input, args.video, args.source)) != 1:
        raise UsageError("give exactly one of --input X.npy or --video VIDEO (or --source SRC for live sources)")
    if args.source is None:  # a live source's --out may also be a folder of PNGs (sources.py checks it)
        check_output(args.out, inputs=(args.input, args.video))
    if args.gif:
        check_output(args.gif, inputs=(args.input, args.video, args.source, args.out), what="--gif")
    with Predictor.load(args.model, backend=args.backend, variant=args.variant, **args.backend_options()) as predictor:
        if args.source is not None:
            return _predict_source(predictor, args)
        if args.video is not None:
            from .video import predict_video
            if args.horizon is not None:
                raise UsageError("--horizon applies to --input; for videos use --lead (1..horizon)")
            summary = predict_video(predictor, args.video, args.out, stream=args.stream, lead=args.lead,
                                    gif=args.gif, max_frames=args.max_frames)
            extra = f" and {args.gif}" if args.gif else ""
            print(f"wrote {args.out}{extra}: {summary['frames']} frames ({summary['mode']}), "
                  f"mean squared error {summary['mse']:.5f}")
            return
        if args.stream or args.gif:
            raise UsageError("--stream and --gif apply to --video")
        frames = read_npy(Path(args.input))
        predictions = predict_array(predictor, frames, args.horizon, args.max_horizon)
        with atomic_path(args.out) as tmp:
            with open(tmp, "wb") as handle:  # a file object, so np.save does not append ".npy"
                np.save(handle, predictions, allow_pickle=False)
        print(f"wrote {args.out} {tuple(predictions.shape)} float32")


def _predict_source(predictor: Predictor, args: PredictOptions) -> None:
    from .sources import predict_source
    if args.horizon is not None or args.gif:
        raise MSPNError("--horizon and --gif do not apply to --source (use --lead; GIFs need the whole video)")
    summary = predict_source(predictor, args.source, args.out, stream=args.stream, lead=args.lead,
                             max_frames=args.max_frames)
    print(source_summary(args.out, summary))


def source_summary(out, summary: dict) -> str:
    codec = f", codec {summary['codec']}" if summary["codec"] else ""
    mse = f", mean squared error {summary['mse']:.5f}" if summary["mse"] is not None else ""
    return (f"wrote {out}: {summary['frames']} frames read, {summary['predictions']} predictions, "
            f"{summary['compared']} compared with the frame that followed{mse}{codec}")
