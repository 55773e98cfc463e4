#!/usr/bin/env python
"""What each float32 block of an int8 plan costs: the step loop's latency on ONNX Runtime (CPU,
batch 1) for fp32 and for int8 plans that keep different blocks in float32, timed alternately in one
process (A B C A B C ...), with the median and p90 of every plan and its ratio to fp32.

    python benchmarks/plan_speed.py --model FP32_FOLDER --data DATA --threads 1 \
        --plans "levels.0.gates.decoders.1,levels.1.gates.decoders.0" \
                "levels.0.gates.decoders.1,levels.0.gates.encoders.0,levels.0.gates.encoders.1,..."

FP32_FOLDER: an `mspn export` folder (its step.onnx, initial_state.npz and manifest); DATA: a dataset
whose val split calibrates (Percentile, as the exporter chose for the trained tiny model) and whose
test split gives the timed clips. Each plan is a comma-separated list of blocks (precision.quant_blocks
names); "" is int8 everywhere. Layouts: clips (N, T, C, H, W) float32 in [0, 1].
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from mspn.export import precision as prec
from mspn.export import verify


def clips(data: Path, split: str, count: int, frames: int) -> np.ndarray:
    files = sorted((data / split).glob("*.npy"))[:count]
    return np.stack([np.load(f)[:frames] for f in files]).astype(np.float32) / 255.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--plans", nargs="+", required=True, help="comma-separated float32 blocks per plan")
    parser.add_argument("--method", default="Percentile")
    parser.add_argument("--calib-clips", type=int, default=8)
    parser.add_argument("--clips", type=int, default=4, help="timed test clips (one rollout each per round)")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, help="JSON with every timing")
    args = parser.parse_args()

    manifest = json.loads((args.model / "manifest.json").read_text())
    context, horizon = manifest["spec"]["context"], manifest["spec"]["horizon"]
    init = dict(np.load(args.model / "initial_state.npz"))
    names = sorted(init)
    fp32_step = args.model / "step.onnx"
    step = verify.session_step(verify.ort_session(fp32_step))
    feeds = [f for clip in clips(args.data, "val", args.calib_clips, context)
             for f in verify.record_step_feeds(step, init, clip[None], horizon, names)]
    timed = clips(args.data, "test", args.clips, context)

    with tempfile.TemporaryDirectory() as tmp:
        sessions = {"fp32": verify.ort_session(fp32_step, args.threads)}
        for plan in args.plans:
            blocks = tuple(b for b in plan.split(",") if b)
            path = Path(tmp) / f"int8-{len(sessions)}.onnx"
            prec.to_int8(fp32_step, path, feeds, args.method, blocks)
            label = f"int8, {len(blocks)} float32: {', '.join(blocks) or 'none'}"
            sessions[label] = verify.ort_session(path, args.threads)
        loops = {label: verify.session_step(s) for label, s in sessions.items()}
        for loop in loops.values():  # warm-up
            verify.run_step_loop(loop, init, timed[:1], horizon, names)
        times: dict[str, list[float]] = {label: [] for label in loops}
        for _ in range(args.rounds):
            for label, loop in loops.items():
                start = time.perf_counter()
                for clip in timed:
                    verify.run_step_loop(loop, init, clip[None], horizon, names)
                times[label].append((time.perf_counter() - start) * 1000 / len(timed))
    fp32 = np.median(times["fp32"])
    print(f"{context} -> {horizon}, batch 1, {args.threads} thread(s), {args.rounds} alternating rounds of "
          f"{len(timed)} clips; ms per rollout")
    for label, values in times.items():
        median, p90 = np.median(values), np.percentile(values, 90)
        print(f"  {label}: median {median:.1f} ms, p90 {p90:.1f} ms, {fp32 / median:.2f}x fp32")
    if args.out:
        args.out.write_text(json.dumps({"model": str(args.model), "threads": args.threads, "ms": times}, indent=1))


if __name__ == "__main__":
    main()
