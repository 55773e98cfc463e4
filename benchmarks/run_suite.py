#!/usr/bin/env python
"""The standard benchmark suite: every config x horizon of the matrix below through `mspn bench`.

    .venv/bin/python benchmarks/run_suite.py            # the standard matrix
    .venv/bin/python benchmarks/run_suite.py --quick    # smoke run: tiny + paper-mnist 10->10, 2 runs

Writes benchmarks/results/<date>-<machine>.md (tables, goals, charts) and, beside it, the folder
<date>-<machine>/ with one JSON report and two PNG charts per entry. Everything slow to make is
cached in benchmarks/.cache/ (git-ignored) and reused: synthetic data, the trained models
(tiny and mnist-small: the trained models shipped in models/, measured on real-digit Moving MNIST;
paper-mnist: 150 steps of batch 2 on synthetic 64x64 data, about 40 minutes at 15.5 s a step on 2
cores), random paper-rgb weights (speed only: their accuracy figures mean nothing) and the exported
model folders.

Run it on a quiet machine: every other process steals time from the measurements.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

from mspn.fileio import sha256_file

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "benchmarks" / ".cache"
RESULTS = ROOT / "benchmarks" / "results"
PY = sys.executable
CONTEXT = 10

RGB_NOTE = ("fp16 left out to fit the suite's time: this CPU has no fp16 arithmetic, and on paper-mnist "
            "fp16 runs no faster than fp32 on either backend; warm-up 0 and the minimum of runs, since one "
            "rollout takes seconds")

# The matrix. runs / max_seconds (a measurement stops after it, with at least 3 runs) / clips /
# stream (streaming sessions) / ab (alternating pairs) size the entries for 45-60 minutes of
# measuring on a 2-core machine; each entry's time is written to the results file.
# calib: int8 calibration clips (each calibrates the rollout and, through its step loop, the step graph).
MATRIX = [
    dict(name="tiny-h10", config="tiny", horizon=10, runs=50, max_seconds=15, clips=8, stream=5, ab=50, calib=8),
    dict(name="tiny-h30", config="tiny", horizon=30, runs=30, max_seconds=15, clips=8, stream=3, ab=30, calib=8),
    dict(name="mnist-small-h10", config="mnist-small", horizon=10, runs=30, max_seconds=15, clips=8, stream=3,
         ab=30, calib=8),
    dict(name="mnist-small-h30", config="mnist-small", horizon=30, runs=10, max_seconds=15, clips=4, stream=2,
         ab=10, calib=8),
    # the goals' entry: more runs, and the op profile
    dict(name="paper-mnist-h10", config="paper-mnist", horizon=10, runs=10, max_seconds=25, clips=2,
         stream=2, ab=8, profile=True, calib=2),
    dict(name="paper-mnist-h30", config="paper-mnist", horizon=30, runs=3, max_seconds=15, clips=1,
         stream=1, ab=3, calib=1),
    # paper-rgb: ~1.4 / ~2.9 TFLOP per rollout (10 / 30 frames), tens of seconds each on 2 cores:
    # the minimum of runs, and fp16 (no fp16 units on this CPU) left out to fit the budget
    dict(name="paper-rgb-h10", config="paper-rgb", horizon=10, runs=3, max_seconds=10, clips=1,
         stream=1, ab=3, warmup=0, variants="fp32,int8,bf16", precision="fp32,int8", calib=1,
         note=RGB_NOTE),
    dict(name="paper-rgb-h30", config="paper-rgb", horizon=30, runs=3, max_seconds=10, clips=1,
         stream=1, ab=2, warmup=0, variants="fp32,int8,bf16", precision="fp32,int8", calib=1,
         note=RGB_NOTE),
]
# Part of every cached model folder's stamp: bump it when the export changes what it writes
# (2: rollout unrolled from the step pieces; int8 on convolutions only, with int32 biases;
# 3: int8 on the convolution networks with uint8 activations, its rollout unrolled from int8 pieces).
EXPORT_VERSION = 3
DATA = {"tiny": ("32x32", 1), "mnist-small": ("64x64", 1), "paper-mnist": ("64x64", 1), "paper-rgb": ("96x128", 3)}
# Configs whose trained weights ship with the project, measured on real-digit Moving MNIST.
SHIPPED = {"tiny": ROOT / "models" / "tiny" / "best.pt", "mnist-small": ROOT / "models" / "mnist-small" / "best.pt"}
GOALS = {"fp32": 2.0, "reduced": 6.0, "reduced_psnr_db": 40.0, "tiny_ort": 3.0, "stream": 0.05}


def log(text: str) -> None:
    print(f"[suite {time.strftime('%H:%M:%S')}] {text}", flush=True)


def mspn(*args: str) -> None:
    cmd = [PY, "-m", "mspn", *args]
    log("$ mspn " + " ".join(args))
    subprocess.run(cmd, check=True, cwd=ROOT)


def dataset(config: str) -> Path:
    size, channels = DATA[config]
    if config in SHIPPED:  # the shipped models' own protocol: Moving MNIST from the bundled real digits
        out = CACHE / f"mmnist-{size}"
        if not (out / "info.json").is_file():
            mspn("data", "mmnist-generate", "--out", str(out), "--size", size.split("x")[0],
                 "--frames", "40", "--videos", "200,40,40", "--overwrite")
        return out
    out = CACHE / f"data-{size}-c{channels}"
    if not (out / "info.json").is_file():
        # 40-frame videos: clips of 10 context + 30 predicted frames for the 10 -> 30 entries
        videos = "200,40,40" if config != "paper-rgb" else "8,8,8"
        mspn("data", "synth", "--out", str(out), "--size", size, "--channels", str(channels),
             "--frames", "40", "--videos", videos, "--overwrite")
    return out


# What the results file says about each entry's weights.
WEIGHTS = {
    "tiny": "trained (the shipped models/tiny, real-digit Moving MNIST 32x32)",
    "mnist-small": "trained (the shipped models/mnist-small, real-digit Moving MNIST 64x64)",
    "paper-mnist": "trained briefly (paper-mnist, 150 steps of batch 2 on synthetic 64x64 data)",
    "random": "RANDOM (speed only; parity figures are indicative, accuracy figures meaningless)",
}


def checkpoint(config: str) -> tuple[Path, str]:
    """(checkpoint, how its weights were made)."""
    if config in SHIPPED:
        return SHIPPED[config], WEIGHTS[config]
    if config == "paper-mnist":
        run = CACHE / "runs" / "paper-mnist"
        if not (run / "best.pt").is_file():
            mspn("train", "--config", "paper-mnist", "--data", str(dataset("paper-mnist")), "--out", str(run),
                 "--set", "train.max_steps=150", "--set", "train.batch_size=2",
                 "--set", "train.steps_per_epoch=150", "--set", "train.epochs=1",
                 "--set", "train.val_clips=8", *(["--resume"] if (run / "last.pt").is_file() else []))
        best = run / "best.pt" if (run / "best.pt").is_file() else run / "last.pt"
        return best, WEIGHTS["paper-mnist"]
    path = CACHE / "runs" / f"{config}-random.pt"
    if not path.is_file():
        log(f"random {config} weights (speed only) -> {path}")
        code = ("import sys, torch; from mspn.config import load_config; from mspn.models.mspn import MSPN; "
                "from mspn.checkpoint import save_checkpoint; torch.manual_seed(0); "
                f"c = load_config('{config}'); save_checkpoint(sys.argv[1], c, MSPN(c.model).state_dict())")
        subprocess.run([PY, "-c", code, str(path)], check=True, cwd=ROOT)
    return path, WEIGHTS["random"]


def checkpoint_label(config: str) -> str:
    """How checkpoint() makes this config's weights, without making them."""
    return WEIGHTS.get(config, WEIGHTS["random"])


def model_folder(entry: dict, ckpt: Path) -> Path:
    out = CACHE / "models" / entry["name"]
    stamp = {"ckpt": sha256_file(ckpt), "context": CONTEXT, "horizon": entry["horizon"],
             "precision": entry.get("precision", "fp32,fp16,int8"), "calib_clips": entry["calib"],
             "export_version": EXPORT_VERSION}
    stamp_file = CACHE / "models" / f"{entry['name']}.stamp.json"
    if (out / "manifest.json").is_file() and stamp_file.is_file() and json.loads(stamp_file.read_text()) == stamp:
        return out
    data = dataset(entry["config"])
    mspn("export", "--ckpt", str(ckpt), "--out", str(out), "--context", str(CONTEXT),
         "--horizon", str(entry["horizon"]), "--variants", stamp["precision"], "--calib", str(data),
         "--calib-clips", str(entry["calib"]), "--data", str(data), "--force")
    stamp_file.write_text(json.dumps(stamp))
    return out


def backends() -> str:
    import importlib.util
    names = ["torch", "onnxruntime", "openvino"]
    if importlib.util.find_spec("tensorrt") is not None:
        names.append("tensorrt")
    return ",".join(names)


def best(report: dict, pred) -> tuple[float | None, dict | None]:
    found = [(e["vs_torch"]["median_of_pairs"], e) for e in report["results"]
             if e["status"] == "ok" and "median_of_pairs" in e.get("vs_torch", {}) and pred(e)]
    return max(found, key=lambda x: x[0]) if found else (None, None)


def goal_lines(reports: dict) -> list[str]:
    lines = ["## Goals", ""]

    def verdict(value, goal, what):
        if value is None:
            return f"- {what}: not measured"
        ok = value >= goal
        return (f"- {what}: {value:.2f}x (goal {goal:.1f}x) - " +
                ("met" if ok else f"**missed by {goal - value:.2f}x ({100 * (1 - value / goal):.0f}%)**"))

    mnist = reports.get("paper-mnist-h10")
    if mnist:
        value, e = best(mnist, lambda e: e["variant"] == "fp32" and e["backend"] != "torch")
        lines.append(verdict(value, GOALS["fp32"], "paper-mnist 10->10 best fp32 path vs PyTorch eager"
                             + (f" ({e['backend']})" if e else "")))
        def reduced(e):
            par = e.get("parity", {})
            # min_psnr None with finite parity: identical to fp32 (infinite PSNR)
            psnr = par.get("min_psnr") if par.get("min_psnr") is not None else float("inf")
            return (e["variant"] in ("int8", "bf16", "fp16") and par.get("finite", False)
                    and psnr >= GOALS["reduced_psnr_db"])
        value, e = best(mnist, reduced)
        lines.append(verdict(value, GOALS["reduced"], f"paper-mnist best reduced precision with >= "
                             f"{GOALS['reduced_psnr_db']:.0f} dB vs fp32" +
                             (f" ({e['backend']}/{e['variant']}, min PSNR "
                              f"{e['parity']['min_psnr'] or float('inf'):.1f} dB)" if e else "")))
        for e in mnist["results"]:
            if e["status"] == "ok":
                over = e["stream"]["overhead_vs_rollout"]
                lines.append(f"- streaming {e['backend']}/{e['variant']}: per-frame cost {100 * over:+.1f}% vs "
                             f"rollout/steps (goal within {100 * GOALS['stream']:.0f}%) - "
                             + ("met" if abs(over) <= GOALS["stream"] else "**missed**"))
        where = ["", "Where the time goes (paper-mnist 10->10, one rollout, profiler):", ""]
        for e in mnist["results"]:
            prof = e.get("profile") or {}
            eff = e.get("efficiency") or {}
            if e["status"] == "ok":
                frac = eff.get("fraction_of_ceiling")
                ops = ", ".join(f"{o['op']} {100 * o['share']:.0f}%" for o in prof.get("by_op", [])[:4])
                where.append(f"- {e['backend']}/{e['variant']}: {eff.get('gflops', 0):.0f} GFLOP/s = "
                             f"{'-' if frac is None else f'{100 * frac:.0f}%'} of its large-conv ceiling "
                             f"({(eff.get('ceiling_gflops') or 0):.0f} GFLOP/s)" + (f"; {ops}" if ops else ""))
    tiny = reports.get("tiny-h10")
    if tiny:
        value, _ = best(tiny, lambda e: e["backend"] == "onnxruntime")
        lines.append(verdict(value, GOALS["tiny_ort"], "tiny 10->10 ONNX Runtime vs PyTorch eager"))
    return lines + (where if mnist else [])


def _note(entry: dict) -> str:
    return f" Variants: {entry['note']}." if entry.get("note") else ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny-h10 and paper-mnist-h10, 2 runs")
    parser.add_argument("--only", help="comma list of entry names (" + ", ".join(e["name"] for e in MATRIX) + ")")
    parser.add_argument("--threads", type=int, help="default: every usable CPU")
    parser.add_argument("--tag", help="results name (default <date>-<machine>)")
    parser.add_argument("--report-only", action="store_true",
                        help="measure nothing: rewrite the results file from the entries' JSON reports "
                             "already in the results folder (e.g. after an interrupted run)")
    args = parser.parse_args()

    entries = MATRIX
    if args.only:
        wanted = set(args.only.split(","))
        entries = [e for e in MATRIX if e["name"] in wanted]
        if unknown := wanted - {e["name"] for e in entries}:
            parser.error(f"unknown entries: {', '.join(sorted(unknown))}")
    if args.quick:
        entries = [dict(e, runs=2, ab=2, stream=1, clips=1, max_seconds=5) for e in entries
                   if e["name"] in ("tiny-h10", "paper-mnist-h10")]
    tag = args.tag or f"{date.today().isoformat()}-{platform.node() or 'machine'}"
    out_dir = RESULTS / tag
    out_dir.mkdir(parents=True, exist_ok=True)

    started = time.time()
    reports, sections, timings = {}, [], []
    for entry in entries:
        t0 = time.time()
        if args.report_only:
            report = out_dir / f"{entry['name']}.json"
            if not report.is_file():
                log(f"{entry['name']}: no report at {report}; left out")
                continue
            data = json.loads(report.read_text())
            reports[entry["name"]] = data
            from mspn.bench.report import markdown_table
            charts = "".join(f"\n![{Path(c).stem}]({tag}/{Path(c).name})" for c in data.get("charts", []))
            sections.append(f"## {entry['name']}\n\nWeights: {checkpoint_label(entry['config'])}.{_note(entry)}\n\n"
                            f"{markdown_table(data)}\n{charts}\n")
            timings.append(f"- {entry['name']}: from the report written {time.ctime(report.stat().st_mtime)}")
            continue
        try:
            ckpt, weights = checkpoint(entry["config"])
            prepared = time.time()
            model = model_folder(entry, ckpt)
            exported = time.time()
            report = out_dir / f"{entry['name']}.json"
            cmd = ["bench", "--model", str(model), "--ckpt", str(ckpt), "--data", str(dataset(entry["config"])),
                   "--backends", backends(), "--variants", entry.get("variants", "fp32,fp16,int8,bf16"),
                   "--runs", str(entry["runs"]), "--warmup", str(entry.get("warmup", 1)),
                   "--max-seconds", str(entry["max_seconds"]), "--clips", str(entry["clips"]),
                   "--stream-runs", str(entry["stream"]), "--ab-runs", str(entry["ab"]), "--report", str(report)]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            if entry.get("profile"):
                cmd.append("--profile")
            mspn(*cmd)
            data = json.loads(report.read_text())
            reports[entry["name"]] = data
            from mspn.bench.report import markdown_table
            charts = "".join(f"\n![{Path(c).stem}]({tag}/{Path(c).name})" for c in data.get("charts", []))
            sections.append(f"## {entry['name']}\n\nWeights: {weights}.{_note(entry)}\n\n"
                            f"{markdown_table(data)}\n{charts}\n")
            timings.append(f"- {entry['name']}: {time.time() - t0:.0f} s (train/weights {prepared - t0:.0f} s, "
                           f"export {exported - prepared:.0f} s, bench {time.time() - exported:.0f} s)")
        except subprocess.CalledProcessError as exc:
            command = " ".join(map(str, exc.cmd[2:]))
            sections.append(f"## {entry['name']}\n\nfailed: `{command}` exited {exc.returncode}\n")
            timings.append(f"- {entry['name']}: failed after {time.time() - t0:.0f} s")
            log(f"{entry['name']} failed; continuing")

    machine = next(iter(reports.values()))["machine"] if reports else {}
    head = [f"# MSPN benchmarks {tag}", "",
            f"Machine: {machine.get('cpu', '?')}, {machine.get('usable_cpus', '?')} usable CPUs, "
            f"ISA {', '.join(machine.get('isa', []))}; versions {json.dumps(machine.get('versions', {}))}.",
            f"Command: `{Path(PY).name} benchmarks/run_suite.py{' --quick' if args.quick else ''}"
            f"{' --only ' + args.only if args.only else ''}{' --report-only' if args.report_only else ''}`; "
            + ("tables rewritten from the entries' reports." if args.report_only
               else f"total {(time.time() - started) / 60:.1f} min."),
            "Latency = one full rollout call (context 10 in, horizon out); x torch = PyTorch eager time / "
            "backend time, runs alternating in one process; parity against the fp32 PyTorch output; "
            "SSIM against the ground-truth frames (unclipped predictions).", ""]
    text = "\n".join(head + goal_lines(reports) + [""] + sections + ["## Time per entry", ""] + timings) + "\n"
    from mspn.fileio import atomic_write_text
    md = RESULTS / f"{tag}.md"
    atomic_write_text(md, text)
    log(f"wrote {md}")
    return 0 if len(reports) == len(entries) else 1


if __name__ == "__main__":
    sys.exit(main())
