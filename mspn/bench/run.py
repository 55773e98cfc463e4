"""`mspn bench`: parity and speed of every backend x variant of a model folder, in one run.

Order of work:
1. inputs: clips (real with --data, else synthetic) -> context frames for latency and parity;
2. the fp32 PyTorch eager reference predicts the parity clips (in this process);
3. every backend x variant is measured in its own subprocess (cold start, rollout latency,
   streaming, peak memory, the convolution ceiling, parity outputs) - mspn.bench.worker;
4. speed ratios against PyTorch eager, taken in this one process, runs alternating A B A B;
5. FLOPs from the ONNX graphs; the JSON report, a markdown table, PNG charts.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from mspn.bench.engines import BACKENDS, VARIANTS, cpu_flags, open_predictor, why_not
from mspn.bench.stats import paired_ratios, parity, summarize
from mspn.errors import MSPNError, UsageError
from mspn.extras import MissingExtra, require
from mspn.fileio import atomic_write_json
from mspn.options import BenchOptions

REPORT_FORMAT = "mspn-bench"
REPORT_VERSION = 1
# Pause between alternating runs: the thread pools of the engine that just ran (ONNX Runtime,
# OpenMP, TBB) spin for a few milliseconds after their work and would slow the next engine.
SETTLE_S = 0.02


def _names(text: str | list, allowed: tuple, what: str) -> list[str]:
    items = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    unknown = [t for t in items if t not in allowed]
    if unknown or not items:
        raise UsageError(f"--{what}: unknown {', '.join(unknown) or '(empty)'}; choose from {', '.join(allowed)}")
    return list(dict.fromkeys(items))


def machine_info() -> dict:
    flags = cpu_flags()
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {"python": platform.python_version(), "numpy": np.__version__}
    for name in ("torch", "onnx", "onnxruntime", "openvino", "tensorrt"):
        try:
            module = __import__(name)
            versions[name] = getattr(module, "__version__", None) or getattr(
                getattr(module, "runtime", None), "get_version", lambda: "?")()
        except Exception:  # noqa: BLE001 - a missing backend is simply absent here
            pass
    return {"host": platform.node(), "cpu": cpu, "logical_cpus": os.cpu_count(),
            "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "isa": sorted(flags & {"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16",
                                   "amx_int8", "avx_vnni"}),
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "versions": versions}


def resolve_checkpoint(manifest, ckpt: str | None) -> tuple[str | None, str]:
    """The checkpoint of the torch reference: --ckpt, or one the folder carries."""
    if ckpt is not None:
        if not Path(ckpt).is_file():
            raise MSPNError(f"--ckpt: checkpoint not found: {ckpt}")
        return str(ckpt), "--ckpt"
    carried = manifest.raw.get("checkpoint")
    for name in ([carried] if isinstance(carried, str) else []) + ["checkpoint.pt"]:
        path = manifest.path_inside(name, "checkpoint")  # never a file outside the folder
        if path.is_file():
            return str(path), "model folder"
    return None, "none"


def _check_checkpoint_fits(manifest, ckpt: str) -> None:
    from mspn.checkpoint import load_checkpoint
    from mspn.config import Config

    checkpoint = load_checkpoint(ckpt)
    folder_model = Config.from_dict(manifest.raw["config"]).model
    if checkpoint.config.model != folder_model:
        raise MSPNError(f"{ckpt}: its model config ({checkpoint.config.model}) is not the model "
                        f"folder's ({folder_model}); pass the checkpoint the folder was exported from")


def _run_worker(spec: dict, workdir: Path, timeout: float) -> tuple[dict, np.ndarray | None]:
    out = workdir / f"{spec['backend']}-{spec['variant']}"
    spec = {**spec, "out": str(out)}
    out.mkdir(parents=True, exist_ok=True)
    spec_path = out / "spec.json"
    spec_path.write_text(json.dumps(spec))
    env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"])}
    try:
        proc = subprocess.run([sys.executable, "-m", "mspn.bench.worker", str(spec_path)],
                              capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"status": "failed", "reason": f"timed out after {timeout:.0f} s"}, None
    result_path = out / "result.json"
    if not result_path.is_file():
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()
        return {"status": "failed", "reason": f"worker exited with {proc.returncode}: "
                                              f"{tail[-1][:300] if tail else 'no output'}"}, None
    result = json.loads(result_path.read_text())
    if result.get("status") != "ok":
        return result, None
    with np.load(out / "outputs.npz") as data:
        return result, np.array(data["parity"])


def _ground_truth_metrics(prediction: np.ndarray, truth: np.ndarray) -> dict:
    """SSIM and PSNR against the ground-truth frames per predicted step (unclipped predictions,
    skimage, data range 1, 7x7 window), averaged over clips."""
    from mspn.frame_metrics import frame_psnr_ssim

    if min(truth.shape[-2:]) < 7:
        return {"status": "skipped", "reason": "frames smaller than SSIM's 7x7 window"}
    try:
        require("skimage.metrics", "bench", purpose="SSIM and PSNR against the truth")
    except MissingExtra as exc:
        return {"status": "skipped", "reason": str(exc)}
    steps = truth.shape[1]
    ssim, psnr = np.zeros(steps), np.zeros(steps)
    for n in range(truth.shape[0]):
        for t in range(steps):
            p, s = frame_psnr_ssim(prediction[n, t].astype(np.float64), truth[n, t].astype(np.float64))
            psnr[t] += min(p, 100.0)
            ssim[t] += s
    ssim /= truth.shape[0]
    psnr /= truth.shape[0]
    return {"status": "ok", "ssim_per_step": ssim.tolist(), "psnr_per_step": psnr.tolist(),
            "ssim_mean": float(ssim.mean()), "psnr_mean": float(psnr.mean()), "clipped": False}


def _alternate(reference, candidate, frames: np.ndarray, runs: int, warmup: int,
               max_seconds: float) -> dict:
    """Ratio of PyTorch eager to a predictor, runs taken alternately A B A B in this process."""
    # warmup 0 is allowed for rollouts of tens of seconds: the median of the pairs absorbs the
    # one slower first pair
    for _ in range(warmup):
        reference.predict(frames)
        candidate.predict(frames)
    a, b, start = [], [], time.perf_counter()
    for _ in range(runs):
        time.sleep(SETTLE_S)
        t = time.perf_counter()
        reference.predict(frames)
        a.append(time.perf_counter() - t)
        time.sleep(SETTLE_S)
        t = time.perf_counter()
        candidate.predict(frames)
        b.append(time.perf_counter() - t)
        if len(a) >= 3 and time.perf_counter() - start > max_seconds:
            break
    return {**paired_ratios(a, b), "reference": summarize(a), "candidate": summarize(b)}


def flops_info(manifest) -> dict:
    from mspn.bench.flops import count_flops

    out = {"counted": "Conv/ConvTranspose/MatMul/Gemm from ONNX shape inference, batch 1, 2 FLOPs per MAC"}
    try:
        require("onnx", "bench", purpose="FLOP counts")
    except MissingExtra as exc:
        return {**out, "status": "unavailable", "reason": str(exc)}
    for kind in ("rollout", "step"):
        try:
            path = manifest.verified_graph(manifest.graph(kind, "fp32"))
            out[kind] = count_flops(path)
        except MSPNError as exc:
            out[kind] = {"status": "unavailable", "reason": str(exc)}
    return out


@dataclass
class Plan:
    """What one bench run measures: the folder, its inputs and the runnable (backend, variant)s."""

    options: BenchOptions
    manifest: object
    threads: int
    ckpt: str | None
    ckpt_source: str
    contexts: np.ndarray       # (N, T_ctx, C, H, W): the parity clips' context frames
    truth: np.ndarray          # (N, T_pred, C, H, W): their ground truth
    latency_input: np.ndarray  # (batch, T_ctx, C, H, W)
    inputs_info: dict
    runnable: list
    skipped: list
    flops: dict = field(default_factory=dict)  # filled by _compare


def run_bench(options: BenchOptions, log=None) -> dict:
    """Measure a model folder; write the JSON report (and charts beside it); return the report.
    Progress goes to ``log`` (default: the "mspn.bench" logger at INFO)."""
    log = log or logging.getLogger("mspn.bench").info
    plan = _plan(options, log)
    reference = _reference(plan)
    entries, outputs = _measure(plan, log)
    _compare(plan, entries, outputs, reference, log)
    return _report(plan, entries, outputs, reference, log)


def _plan(options: BenchOptions, log) -> Plan:
    from mspn.runtime.manifest import Manifest

    manifest = Manifest.load(options.model)
    backends = _names(options.backends, BACKENDS, "backends")
    variants = _names(options.variants or ",".join(manifest.variants + ["bf16"]), VARIANTS, "variants")
    threads = options.threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                  else os.cpu_count())
    if not manifest.batch_min <= options.batch <= manifest.batch_max:
        raise MSPNError(f"--batch {options.batch} is outside the model folder's batch range "
                        f"{manifest.batch_min}..{manifest.batch_max}")
    ckpt, ckpt_source = resolve_checkpoint(manifest, options.ckpt)
    if ckpt_source == "model folder" and importlib.util.find_spec("torch") is None:
        ckpt, ckpt_source = None, "model folder (unused: torch is not installed, pip install 'mspn[train]')"
    if ckpt is not None:
        _check_checkpoint_fits(manifest, ckpt)
    clip_array, inputs_info = load_clips_for(manifest, options.clips, options.data)
    contexts = np.ascontiguousarray(clip_array[:, :manifest.context])
    latency_input = np.ascontiguousarray(np.resize(contexts, (options.batch, *contexts.shape[1:])))
    runnable, skipped = [], []
    for backend in backends:
        for variant in variants:
            reason = why_not(backend, variant, manifest, ckpt)
            if reason is None:
                runnable.append((backend, variant))
            else:
                skipped.append({"backend": backend, "variant": variant, "status": "skipped", "reason": reason})
                log(f"skip {backend}/{variant}: {reason}")
    return Plan(options, manifest, threads, ckpt, ckpt_source, contexts, clip_array[:, manifest.context:],
                latency_input, inputs_info, runnable, skipped)


def _reference(plan: Plan):
    """The fp32 PyTorch eager predictor (in this process) and its parity outputs, or Nones."""
    if plan.ckpt is None:
        return None, None, None
    predictor = open_predictor(plan.options.model, "torch", "fp32", plan.threads, ckpt=plan.ckpt)
    batch = plan.options.batch
    out = np.concatenate([predictor.predict(plan.contexts[i:i + batch]) for i in range(0, len(plan.contexts), batch)])
    return predictor, out, "torch/fp32 (PyTorch eager: the export wrappers run on the checkpoint)"


def _measure(plan: Plan, log) -> tuple[list, dict]:
    """Every runnable (backend, variant) in its own worker process: entries and parity outputs."""
    o = plan.options
    entries, outputs = list(plan.skipped), {}
    with tempfile.TemporaryDirectory(prefix="mspn-bench-") as tmp:
        workdir = Path(tmp)
        inputs_path = workdir / "inputs.npz"
        np.savez(inputs_path, latency=plan.latency_input, parity=plan.contexts)
        base_spec = {"model": str(Path(o.model).resolve()), "threads": plan.threads, "runs": o.runs,
                     "warmup": o.warmup, "max_seconds": o.max_seconds, "stream_runs": o.stream_runs,
                     "batch": o.batch, "ckpt": plan.ckpt, "inputs": str(inputs_path), "profile": o.profile}
        for backend, variant in plan.runnable:
            log(f"measure {backend}/{variant} (own process) ...")
            start = time.perf_counter()
            result, out = _run_worker({**base_spec, "backend": backend, "variant": variant}, workdir,
                                      o.worker_timeout)
            result.update(backend=backend, variant=variant, measure_s=time.perf_counter() - start)
            if result["status"] == "ok":
                outputs[(backend, variant)] = out
                log(f"  rollout p50 {result['rollout']['p50']:.1f} ms, cold start "
                    f"{result['cold_start_s']:.2f} s, peak RSS {result['peak_rss_mb']:.0f} MB")
            else:
                log(f"  failed: {result['reason']}")
            entries.append(result)
    return entries, outputs


def _compare(plan: Plan, entries: list, outputs: dict, reference, log) -> None:
    """Parity, accuracy and FLOP efficiency per entry; speed ratios against PyTorch eager."""
    predictor, reference_out, _ = reference
    if reference_out is None:
        reference_out = _fallback_reference(outputs)[0]
    flops = flops_info(plan.manifest)
    rollout_flops = flops.get("rollout", {}).get("flops")
    graph_steps = plan.manifest.context + plan.manifest.horizon - 1
    for entry in (e for e in entries if e["status"] == "ok"):
        out = outputs[(entry["backend"], entry["variant"])]
        entry["parity"] = parity(out, reference_out) if reference_out is not None else {"status": "no reference"}
        entry["accuracy"] = _ground_truth_metrics(out, plan.truth)
        ceiling = entry.get("ceiling", {})
        if rollout_flops:
            achieved = plan.options.batch * rollout_flops / (entry["rollout"]["p50"] / 1e3) / 1e9
            fraction = achieved / ceiling["gflops"] if ceiling.get("gflops") else None
            entry["efficiency"] = {"gflops": achieved, "ceiling_gflops": ceiling.get("gflops"),
                                   "fraction_of_ceiling": fraction,
                                   "flops_per_rollout": rollout_flops, "flops_per_step": rollout_flops / graph_steps}
    plan.flops = flops
    if predictor is not None:
        _ratios_against(predictor, plan, entries, log)
        predictor.close()


def _fallback_reference(outputs: dict) -> tuple:
    """Without a checkpoint: the fp32 ONNX Runtime (else OpenVINO) outputs serve as the reference."""
    for key in (("onnxruntime", "fp32"), ("openvino", "fp32")):
        if key in outputs:
            return outputs[key], f"{key[0]}/{key[1]} (no checkpoint for PyTorch)"
    return None, None


def _ratios_against(reference, plan: Plan, entries: list, log) -> None:
    """Ratios against PyTorch eager: runs alternating A B A B in this one process."""
    o = plan.options
    for entry in entries:
        if entry["status"] != "ok" or entry["backend"] == "torch":
            continue
        log(f"A/B torch vs {entry['backend']}/{entry['variant']} ...")
        try:
            candidate = open_predictor(o.model, entry["backend"], entry["variant"], plan.threads)
        except MSPNError as exc:
            entry["vs_torch"] = {"status": "failed", "reason": str(exc)}
            continue
        try:
            entry["vs_torch"] = _alternate(reference, candidate, plan.latency_input, o.ab_runs or o.runs,
                                           o.warmup, o.max_seconds)
        finally:
            candidate.close()
        log(f"  {entry['vs_torch']['median_of_pairs']:.2f}x faster than PyTorch eager")


def _report(plan: Plan, entries: list, outputs: dict, reference, log) -> dict:
    o, manifest = plan.options, plan.manifest
    _, reference_out, reference_name = reference
    if reference_out is None:
        reference_out, reference_name = _fallback_reference(outputs)
    report_obj = {
        "format": REPORT_FORMAT, "version": REPORT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": {"folder": str(o.model), "name": manifest.raw.get("name"),
                  "context": manifest.context, "horizon": manifest.horizon,
                  "frame_size": list(manifest.frame_size), "channels": manifest.channels,
                  "variants": manifest.variants, "exporter": manifest.raw.get("exporter")},
        "machine": machine_info(),
        "settings": {"batch": o.batch, "threads": plan.threads, "runs": o.runs, "warmup": o.warmup,
                     "max_seconds": o.max_seconds, "stream_runs": o.stream_runs,
                     "ab_runs": o.ab_runs or o.runs, "settle_s": SETTLE_S},
        "inputs": plan.inputs_info,
        "reference": {"name": reference_name, "checkpoint": plan.ckpt, "checkpoint_source": plan.ckpt_source},
        "reference_accuracy": _ground_truth_metrics(reference_out, plan.truth) if reference_out is not None else None,
        "flops": plan.flops,
        "results": entries,
        "notes": REPORT_NOTES,
    }
    report_obj["recommendation"] = recommend(entries, report_obj["reference_accuracy"], _budget_of(manifest))
    report_path = Path(o.report)
    if o.charts:
        from mspn.bench.report import write_charts
        try:
            report_obj["charts"] = write_charts(report_obj, report_path)
        except MissingExtra as exc:  # the measurements stand without their pictures
            report_obj["charts"], report_obj["charts_skipped"] = [], str(exc)
            log(f"no charts: {exc}")
    atomic_write_json(report_path, report_obj)
    return report_obj


REPORT_NOTES = [
    "latency: one full rollout call (context in, horizon out) through Predictor.predict; ms; n = runs taken",
    "parity: against the reference on the same clips, per predicted step; psnr 200 = identical",
    "accuracy: SSIM/PSNR against the ground-truth frames, predictions not clipped",
    "vs_torch: PyTorch eager time / backend time, runs alternating in one process",
    "efficiency: the rollout graph's FLOPs / p50 latency against one large conv on the same backend",
    "stream.overhead_vs_rollout: median over sessions of (session mean cost per call) / (rollout "
    "timed just before it / graph steps) - 1",
]


def _budget_of(manifest) -> dict:
    """The accuracy budget the folder was exported under (the default one for older folders)."""
    from mspn.export.budget import DEFAULT_PSNR_DB, DEFAULT_SSIM_DROP
    recorded = manifest.raw.get("verification", {}).get("budget") or {}
    return {"psnr_db": recorded.get("psnr_db_vs_fp32_every_step", DEFAULT_PSNR_DB),
            "ssim_drop": recorded.get("ssim_drop_vs_fp32_every_step", DEFAULT_SSIM_DROP)}


def recommend(entries: list, reference_accuracy: dict | None, budget: dict) -> dict:
    """The fastest backend x variant within the accuracy budget on the bench's clips (by the A/B
    ratio to PyTorch eager where every candidate has one, else by rollout p50):
    min per-step PSNR vs the reference >= budget["psnr_db"], and (with ground truth) per-step SSIM
    at most budget["ssim_drop"] below the reference's. PyTorch eager itself is not a candidate."""
    ref_ssim = (reference_accuracy or {}).get("ssim_per_step")
    within, rejected = [], []
    for entry in (e for e in entries if e["status"] == "ok" and e["backend"] != "torch"):
        name = f"{entry['backend']}/{entry['variant']}"
        par, acc = entry.get("parity", {}), entry.get("accuracy", {})
        if not par.get("finite") or par.get("min_psnr", 0.0) < budget["psnr_db"]:
            rejected.append(f"{name}: min per-step PSNR {par.get('min_psnr', float('nan')):.1f} dB")
            continue
        if ref_ssim and acc.get("status") == "ok":
            drop = min(a - b for a, b in zip(acc["ssim_per_step"], ref_ssim, strict=True))
            if drop < -budget["ssim_drop"]:
                rejected.append(f"{name}: SSIM {drop:+.4f} vs reference")
                continue
        within.append(entry)
    out = {"budget": budget, "outside_budget": rejected}
    if not within:
        return {**out, "status": "none", "reason": "no measured backend x variant meets the budget"}
    ratios = [e.get("vs_torch", {}).get("median_of_pairs") for e in within]
    if all(ratios):  # alternating A/B runs in one process: steadier than p50s taken in turn
        best, ranked_by = within[int(np.argmax(ratios))], "A/B ratio to PyTorch eager"
    else:
        best, ranked_by = min(within, key=lambda e: e["rollout"]["p50"]), "rollout p50"
    return {**out, "status": "ok", "backend": best["backend"], "variant": best["variant"],
            "ranked_by": ranked_by, "rollout_p50_ms": best["rollout"]["p50"],
            "vs_torch": best.get("vs_torch", {}).get("median_of_pairs")}


def load_clips_for(manifest, clips: int, data):
    from mspn.bench.inputs import load_clips
    return load_clips(manifest, clips, data)
