"""Cost of `mspn export` per config: wall time, per-graph export time, peak memory, file sizes and
the parity figures, each config in its own subprocess (so peak RSS is that export's alone).

    python benchmarks/export_cost.py --runs tiny:5:5 paper-mnist:10:10 paper-rgb:10:10
    python benchmarks/export_cost.py --runs paper-rgb:10:30 --variants fp32
    python benchmarks/export_cost.py --runs tiny:10:30 --rollout traced      # the old, traced rollout

A run is CONFIG:CONTEXT:HORIZON[:SIZE]. Weights are random (seeded), with the prediction convs
scaled x30 so predictions are not ~1e-4 and the parity figures mean something. Results are
merged into benchmarks/results/export_cost.json (keyed by run) and printed as a table.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "export_cost.json"


def child(run: str, precision: str, exporter: str, rollout: str, work: str) -> dict:
    import torch

    from mspn.checkpoint import save_checkpoint
    from mspn.config import PRESETS
    from mspn.export.pipeline import ExportOptions, export_model
    from mspn.models.mspn import MSPN

    name, context, horizon, *size = run.split(":")
    config = PRESETS[name]()
    if size:
        config.data.size = tuple(int(v) for v in size[0].split("x"))
    torch.manual_seed(0)
    model = MSPN(config.model)
    with torch.no_grad():
        for cell in model.levels:
            cell.predict.weight.mul_(30.0)
    ckpt = Path(work) / "model.pt"
    save_checkpoint(ckpt, config, model.state_dict())
    del model
    out = Path(work) / "folder"
    start = time.perf_counter()
    manifest = export_model(ExportOptions(ckpt=str(ckpt), out=str(out), context=int(context),
                                          horizon=int(horizon), variants=precision,
                                          exporter=exporter, rollout=rollout, verify_clips=1))
    wall = time.perf_counter() - start
    fp32 = manifest["verification"]["fp32"]
    return {
        "run": run, "precision": precision, "wall_s": round(wall, 1),
        "export": manifest["export"],
        "sizes_mb": {f: round((out / f).stat().st_size / 2**20, 2) for f in manifest["files"]},
        "fp32_rollout_max_abs": fp32["worst_max_abs"],
        "fp32_step_loop_max_abs": fp32["step_loop_worst_max_abs"],
        "fp32_min_psnr": min(fp32["rollout"]["random"]["min_psnr"], fp32["step_loop"]["random"]["min_psnr"]),
        "variants_min_psnr": {k: v["min_psnr"] for k, v in manifest["verification"]["variants"].items()},
        "preflight_ok": {k: v["ok"] for k, v in manifest["tensorrt_preflight"].items()},
        "threads": torch.get_num_threads(),
    }


def parent(runs: list[str], precision: str, exporter: str, rollout: str) -> None:
    for run in runs:
        with tempfile.TemporaryDirectory(prefix="export_cost.") as work:
            proc = subprocess.Popen([sys.executable, __file__, "--child", run, "--variants", precision,
                                     "--exporter", exporter, "--rollout", rollout, "--work", work],
                                    stdout=subprocess.PIPE, text=True)
            output = proc.stdout.read()
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            print(f"{run}: export failed (exit {proc.returncode})", file=sys.stderr)
            continue
        record = json.loads(output.strip().splitlines()[-1])
        record["peak_rss_gb"] = round(usage.ru_maxrss / 2**20, 2)  # ru_maxrss is in KiB on Linux
        # Re-read just before writing: another run of this script may have added results meanwhile.
        results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
        results[f"{run}/{precision}" + ("" if rollout == "unrolled" else f"/{rollout}")] = record
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
        ex = record["export"]
        print(f"{run:22s} {precision:14s} wall {record['wall_s']:7.1f} s  "
              f"rollout {rollout} {ex['rollout']['exporter']} "
              f"{ex['rollout']['seconds']:7.1f} s  step {ex['step']['exporter']} {ex['step']['seconds']:6.1f} s  "
              f"peak {record['peak_rss_gb']:5.2f} GB  rollout.onnx {record['sizes_mb']['rollout.onnx']:7.1f} MB  "
              f"max abs {record['fp32_rollout_max_abs']:.1e} / step loop {record['fp32_step_loop_max_abs']:.1e}",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=["tiny:5:5", "paper-mnist:10:10"])
    parser.add_argument("--variants", default="fp32", help="model folder variants to export, comma-separated")
    parser.add_argument("--exporter", default="auto")
    parser.add_argument("--rollout", default="unrolled", choices=["unrolled", "traced"])
    parser.add_argument("--child")
    parser.add_argument("--work")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.variants, args.exporter, args.rollout, args.work)))
    else:
        parent(args.runs, args.variants, args.exporter, args.rollout)


if __name__ == "__main__":
    main()
