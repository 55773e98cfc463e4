#!/usr/bin/env python
"""Does a folder's variant hold the accuracy budget past the horizon it was exported (and
searched) for? Runs every variant through `Predictor` for `--horizon` steps on the first N held-out
test clips and reports the budget figures per step against fp32 run the same way (the rollout graph
at the exported horizon, the step graph looped for any other).

    python benchmarks/horizon_budget.py --model FOLDER --data DATA --horizon 30 --clips 64 \
        --report out.json

FOLDER: an `mspn export` folder; DATA: a dataset whose test split has at least context + horizon
frames per video (`mspn data mmnist-generate --frames 40`). Clips (N, T, C, H, W) float32 in [0, 1].
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mspn.errors import MSPNError
from mspn.export import budget
from mspn.fileio import atomic_write_figure, atomic_write_json
from mspn.runtime import Predictor


def held_out_clips(data: Path, count: int, frames: int) -> np.ndarray:
    files = sorted((data / "test").glob("*.npy"))[:count]
    clips = [np.load(f) for f in files]
    if not clips or min(len(c) for c in clips) < frames:
        raise SystemExit(f"error: {data}/test needs {count} videos of >= {frames} frames")
    return np.stack([c[:frames] for c in clips]).astype(np.float32) / 255.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--horizon", type=int, default=30)
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--variants", default="fp16,int8")
    parser.add_argument("--report", type=Path)
    args = parser.parse_args()

    reference_model = Predictor.load(args.model, backend=args.backend, variant="fp32")
    context = reference_model.context
    clips = held_out_clips(args.data, args.clips, context + args.horizon)
    reference = reference_model.predict(clips[:, :context], horizon=args.horizon)
    held = budget.HeldOut(clips[:, :context], reference, clips[:, context:], {"source": str(args.data)})
    rule = budget.Budget()
    report = {"model": str(args.model), "backend": args.backend, "exported_horizon": reference_model.horizon,
              "horizon": args.horizon, "clips": len(clips), "budget": rule.to_dict(),
              "fp32_ssim": [round(float(v), 5) for v in held.reference_ssim], "variants": {}}
    for variant in args.variants.split(","):
        prediction = Predictor.load(args.model, backend=args.backend, variant=variant).predict(
            clips[:, :context], horizon=args.horizon)
        result = budget.figures(prediction, held, rule)
        report["variants"][variant] = result
        worst = int(np.argmin(result["psnr_vs_fp32"])) + 1
        first_miss = next((t + 1 for t, v in enumerate(result["psnr_vs_fp32"]) if v < rule.psnr_db), None)
        print(f"{variant}: {budget.describe(result)} (worst step {worst}); "
              f"{'meets' if result['meets'] else 'misses'} the budget over {args.horizon} steps"
              + (f", first step below {rule.psnr_db:g} dB: {first_miss}" if first_miss else ""))
    if args.report:
        atomic_write_json(args.report, report)
        atomic_write_figure(curve_chart(report), args.report.with_suffix(".png"))


def curve_chart(report: dict):
    """Per-step PSNR vs fp32 of every variant, the budget line and the exported horizon."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    steps = np.arange(1, report["horizon"] + 1)
    for variant, result in report["variants"].items():
        ax.plot(steps, result["psnr_vs_fp32"], marker=".", label=variant)
    ax.axhline(report["budget"]["psnr_db_vs_fp32_every_step"], color="red", linestyle="--", label="budget")
    ax.axvline(report["exported_horizon"], color="gray", linestyle=":", label="exported horizon")
    ax.set(xlabel="predicted step", ylabel="PSNR vs fp32 (dB)",
           title=f"{Path(report['model']).name}: {report['backend']}, {report['clips']} held-out clips")
    ax.legend()
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    try:
        main()
    except MSPNError as exc:
        raise SystemExit(f"error: {exc}") from None
