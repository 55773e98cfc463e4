#!/usr/bin/env python
"""How noisy is the accuracy budget's SSIM criterion? Per-step SSIM delta of an int8 step loop
against the fp32 one (both against the truth), its mean and standard error over 16 and over all
held-out clips, for a few int8 plans.

    python benchmarks/budget_noise.py --model FP32_FOLDER --data DATA --horizon 30 \
        --plans "" levels.0.gates.decoders.1

FP32_FOLDER: an `mspn export` folder (its step.onnx and initial_state.npz); DATA: a dataset whose val
split calibrates and whose test split (context + horizon frames per video) is measured.
Layouts: clips (N, T, C, H, W) float32 in [0, 1].
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from mspn.export import precision as prec
from mspn.export import verify
from mspn.metrics import frame_psnr_ssim


def clips(data: Path, split: str, count: int, frames: int) -> np.ndarray:
    files = sorted((data / split).glob("*.npy"))[:count]
    return np.stack([np.load(f)[:frames] for f in files]).astype(np.float32) / 255.0


def per_clip_ssim(prediction: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(N, T) SSIM of every clip and step (channel 0)."""
    return np.array([[frame_psnr_ssim(p[0].astype(np.float64), t[0].astype(np.float64))[1]
                      for p, t in zip(pc, tc, strict=True)] for pc, tc in zip(prediction, truth, strict=True)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--context", type=int, default=10)
    parser.add_argument("--horizon", type=int, default=30)
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--calib-clips", type=int, default=8)
    parser.add_argument("--method", default="Percentile")
    parser.add_argument("--plans", nargs="+", default=["", "levels.0.gates.decoders.1"],
                        help="comma-separated float32 blocks per plan ('' = all int8)")
    args = parser.parse_args()
    frames = args.context + args.horizon
    names = json.loads((args.model / "manifest.json").read_text())["state"]["names"]
    init = dict(np.load(args.model / "initial_state.npz"))
    step32 = verify.session_step(verify.ort_session(args.model / "step.onnx", threads=1))
    feeds = []
    for clip in clips(args.data, "val", args.calib_clips, frames):
        feeds += verify.record_step_feeds(step32, init, clip[None, :args.context], args.horizon, names)
    test = clips(args.data, "test", args.clips, frames)
    truth = test[:, args.context:]

    def rollout(step):
        return np.concatenate([verify.run_step_loop(step, init, test[i:i + 8, :args.context], args.horizon, names)
                               for i in range(0, len(test), 8)])

    reference = rollout(step32)
    ssim32 = per_clip_ssim(reference, truth)
    print(f"fp32 SSIM per step (mean over {len(test)} clips): {np.round(ssim32.mean(0), 3).tolist()}")
    trial = args.model / ".budget-noise.int8.onnx"
    for plan in args.plans:
        blocks = [b for b in plan.split(",") if b]
        prec.to_int8(args.model / "step.onnx", trial, feeds, args.method, blocks)
        quantized = rollout(verify.session_step(verify.ort_session(trial, threads=1)))
        psnr = 10 * np.log10(1.0 / ((quantized - reference) ** 2).mean(axis=(0, 2, 3, 4)))
        delta = per_clip_ssim(quantized, truth) - ssim32
        print(f"float32 blocks {blocks or 'none'}: min per-step PSNR vs fp32 {psnr.min():.1f} dB")
        for n in sorted({16, len(test)}):
            mean, se = delta[:n].mean(0), delta[:n].std(0, ddof=1) / np.sqrt(n)
            worst = int(mean.argmin())
            print(f"  {n} clips: worst mean SSIM delta {mean[worst]:+.4f} at step {worst + 1} "
                  f"(standard error {se[worst]:.4f}); per-clip spread there {delta[:n, worst].std():.4f}")
    trial.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
