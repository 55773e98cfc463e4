"""One backend x variant, measured in its own process: ``python -m mspn.bench.worker SPEC.json``.

A process of its own per backend keeps the peak resident memory and the cold start of one
backend from mixing with another's (and with torch's, which the parent process has loaded).
For the ONNX backends nothing here imports torch.

SPEC.json: {model, backend, variant, threads, runs, warmup, max_seconds, stream_runs, batch,
ckpt, inputs (npz: "latency" (B, T_ctx, C, H, W), "parity" (N, T_ctx, C, H, W)), out (folder),
profile (bool)}. Writes OUT/result.json and OUT/outputs.npz ("parity": (N, T_pred, C, H, W)).
"""
from __future__ import annotations

import importlib
import json
import resource
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

from mspn.bench.stats import summarize
from mspn.errors import MSPNError
from mspn.extras import MissingExtra, require

MIN_RUNS = 3


def _timed_runs(fn, runs: int, max_seconds: float) -> list[float]:
    """Up to ``runs`` timings, stopping early (after MIN_RUNS) once ``max_seconds`` are spent."""
    samples, start = [], time.perf_counter()
    for _ in range(max(runs, 1)):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
        if len(samples) >= MIN_RUNS and time.perf_counter() - start > max_seconds:
            break
    return samples


def _peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB.

    VmHWM of /proc/self/status, not getrusage's ru_maxrss: Linux carries ru_maxrss over an
    exec, so a worker forked from the parent (which holds torch) would report the parent's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux


def measure(spec: dict) -> tuple[dict, dict]:
    """Everything one (backend, variant) is measured for, in this process: cold start, rollout
    latency, parity outputs, streaming, the convolution ceiling, the profile, peak memory."""
    backend, variant, threads = spec["backend"], spec["variant"], int(spec["threads"])
    with np.load(spec["inputs"]) as data:
        latency_input = np.ascontiguousarray(data["latency"], np.float32)
        parity_input = np.ascontiguousarray(data["parity"], np.float32)
    result: dict = {"backend": backend, "variant": variant, "threads": threads,
                    "rss_before_import_mb": _peak_rss_mb()}
    predictor, first = _cold_start(spec, latency_input, result)
    # OpenVINO's int8: the folder's NNCF model or the ONNX QDQ graph (runtime/openvino_backend.py)
    result["int8_method"] = getattr(predictor.rollout_runner, "int8_method", None)
    for _ in range(int(spec["warmup"])):
        predictor.predict(latency_input)
    # The ceiling is measured before and after the model and the faster kept: the machine's speed
    # drifts, and the ceiling is the best this backend reached in this process.
    ceilings = [measure_ceiling(backend, variant, threads, float(spec["max_seconds"]) / 8)]
    samples = _timed_runs(lambda: predictor.predict(latency_input), int(spec["runs"]), float(spec["max_seconds"]))
    result["rollout"] = summarize(samples)
    result["throughput_fps"] = latency_input.shape[0] * first.shape[1] / float(np.median(samples))
    chunk = int(spec["batch"])
    if np.array_equal(parity_input, latency_input):
        parity_out = first.astype(np.float32)  # the same frames: the cold run's output serves
    else:
        outputs = [predictor.predict(parity_input[i:i + chunk]) for i in range(0, len(parity_input), chunk)]
        parity_out = np.concatenate(outputs).astype(np.float32)
    result["stream"] = _streaming(predictor, latency_input, first, samples, spec)
    predictor.close()
    ceilings.append(measure_ceiling(backend, variant, threads, float(spec["max_seconds"]) / 8))
    measured = [c for c in ceilings if c["status"] == "ok"]
    result["ceiling"] = (dict(max(measured, key=lambda c: c["gflops"]),
                              gflops_measured=[c["gflops"] for c in measured]) if measured else ceilings[0])
    if spec.get("profile"):
        result["profile"] = profile(spec, latency_input)
    result["peak_rss_mb"] = _peak_rss_mb()
    return result, {"parity": parity_out}


def _cold_start(spec: dict, frames: np.ndarray, result: dict):
    """Import the backend, load the folder (parse, optimise, compile) and predict once, timed
    into result; returns the predictor and its first output."""
    from mspn.bench.engines import open_predictor

    backend = spec["backend"]
    t = time.perf_counter()
    importlib.import_module({"torch": "torch", "onnxruntime": "onnxruntime", "openvino": "openvino",
                             "tensorrt": "tensorrt"}[backend])
    result["import_s"] = time.perf_counter() - t
    t = time.perf_counter()
    predictor = open_predictor(spec["model"], backend, spec["variant"], int(spec["threads"]), ckpt=spec.get("ckpt"))
    result["load_s"] = time.perf_counter() - t
    first = predictor.predict(frames)
    result["cold_start_s"] = time.perf_counter() - t
    result["first_prediction_s"] = result["cold_start_s"] - result["load_s"]
    return predictor, first


def _streaming(predictor, frames: np.ndarray, first: np.ndarray, rollout_samples: list, spec: dict) -> dict:
    """Streaming through a StreamSession: push the context frames one by one, then closed-loop
    steps (rollout(1) each). Each session is paired with a whole-rollout call just before it, so
    the per-frame cost is compared with a rollout timed at the same machine speed (a noisy VM
    drifts by 10-30% between the latency runs and these)."""
    context, horizon = frames.shape[1], first.shape[1]
    graph_steps = context + horizon - 1  # steps the rollout graph runs
    push_s, step_s, streamed, paired = [], [], None, []
    session = predictor.stream()
    stream_start = time.perf_counter()
    for rep in range(max(int(spec["stream_runs"]), 1)):
        t = time.perf_counter()
        predictor.predict(frames)
        paired_rollout = time.perf_counter() - t
        session.reset()
        for t_ in range(context):
            frame = np.ascontiguousarray(frames[:, t_])
            t = time.perf_counter()
            session.push(frame)
            push_s.append(time.perf_counter() - t)
        emitted = []
        for _ in range(horizon):
            t = time.perf_counter()
            emitted.append(session.rollout(1)[:, 0])
            step_s.append(time.perf_counter() - t)
        if streamed is None:
            streamed = np.stack(emitted, axis=1)
        session_mean = (sum(push_s[-context:]) + sum(step_s[-horizon:])) / (context + horizon)
        paired.append(session_mean / (paired_rollout / graph_steps) - 1.0)
        if rep + 1 >= 2 and time.perf_counter() - stream_start > float(spec["max_seconds"]):
            break
    session.close()
    return {
        "push": summarize(push_s), "closed_step": summarize(step_s), "all_steps": summarize(push_s + step_s),
        "repetitions": rep + 1,
        "rollout_mean_per_step_ms": float(np.mean(rollout_samples)) / graph_steps * 1e3,
        # > 0: a streamed frame costs more than its share of a whole-rollout call; the median over
        # sessions of (session's mean cost per call) / (paired rollout / graph steps) - 1
        "overhead_vs_rollout": float(np.median(paired)),
        "overhead_pairs": [float(v) for v in paired],
        "vs_rollout_max_abs": float(np.abs(streamed - first).max()),
    }


def measure_ceiling(backend: str, variant: str, threads: int, max_seconds: float) -> dict:
    """GFLOP/s of one large 3x3 convolution on this backend, variant and thread count."""
    from mspn.bench.flops import CEILING_SHAPE, ceiling_flops, ceiling_model

    s = CEILING_SHAPE
    x = np.random.default_rng(0).random((1, s["channels"], s["height"], s["width"]), np.float32)
    if backend == "torch":
        import torch
        from torch.nn import functional as F
        weight = torch.randn(s["channels"], s["channels"], s["kernel"], s["kernel"]) * 0.02
        xt = torch.from_numpy(x)

        def run():
            with torch.inference_mode():
                y = xt
                for _ in range(s["depth"]):
                    y = F.conv2d(y, weight, padding=s["kernel"] // 2)
    elif backend in ("onnxruntime", "openvino"):
        try:
            require("onnx", "bench", purpose="the convolution ceiling")
        except MissingExtra as exc:
            return {"status": "not measured", "reason": str(exc)}
        tmp = tempfile.TemporaryDirectory()
        path = ceiling_model(Path(tmp.name) / "ceiling.onnx", variant)
        if backend == "onnxruntime":
            from mspn.runtime.onnxruntime_backend import load_session
            session = load_session(path, threads=threads)
            run = lambda: session.run(None, {"x": x})  # noqa: E731
        else:
            from mspn.runtime.openvino_backend import compile_model
            request = compile_model(path, threads=threads, precision="bf16" if variant == "bf16" else "f32"
                                    ).create_infer_request()
            run = lambda: request.infer({"x": x})  # noqa: E731
    else:
        return {"status": "not measured", "reason": f"no ceiling kernel for {backend}"}
    for _ in range(3):
        run()
    samples = _timed_runs(run, 50, max_seconds)
    p50 = float(np.median(samples))
    return {"status": "ok", "shape": dict(s), "flops": ceiling_flops(), "p50_ms": p50 * 1e3,
            "gflops": ceiling_flops() / p50 / 1e9}


def profile(spec: dict, frames: np.ndarray) -> dict:
    """Where the time goes in one rollout: ORT's profiler or OpenVINO's per-layer counters,
    summed per op type, plus (ORT) the op types of the optimised graph (are int8 convs fused?)."""
    from mspn.bench.engines import graph_variant
    from mspn.runtime.manifest import Manifest

    manifest = Manifest.load(spec["model"])
    graph = manifest.graph("rollout", graph_variant(spec["variant"]))
    backend, threads = spec["backend"], int(spec["threads"])
    # OpenVINO's int8 is the folder's NNCF model when it has one (what the timed runs ran)
    openvino_model = backend == "openvino" and graph.openvino is not None
    path = manifest.verified_openvino(graph) if openvino_model else manifest.verified_graph(graph)
    totals: dict[str, float] = {}
    out: dict = {"graph": graph.openvino.file if openvino_model else graph.file}
    if backend == "onnxruntime":
        try:
            onnx = require("onnx", "bench", purpose="--profile")
        except MissingExtra as exc:
            return {"status": "not available", "reason": str(exc)}

        from mspn.runtime.onnxruntime_backend import load_session
        tmp = tempfile.TemporaryDirectory()
        optimized_path = Path(tmp.name) / "optimized.onnx"
        session = load_session(path, threads=threads, profile_prefix=str(Path(tmp.name) / "ort"),
                               optimized_path=str(optimized_path))
        session.run(None, {"frames": frames})
        trace = json.loads(Path(session.end_profiling()).read_text())
        for event in trace:
            if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
                op = event.get("args", {}).get("op_name", "?")
                totals[op] = totals.get(op, 0.0) + event.get("dur", 0) / 1e6
        optimized = onnx.load(str(optimized_path), load_external_data=False)
        counts: dict[str, int] = {}
        for node in optimized.graph.node:
            key = f"{node.domain + '.' if node.domain else ''}{node.op_type}"
            counts[key] = counts.get(key, 0) + 1
        out["optimized_op_counts"] = dict(sorted(counts.items(), key=lambda kv: -kv[1]))
    elif backend == "openvino":
        from mspn.runtime.openvino_backend import compile_model
        request = compile_model(path, threads=threads, perf_count=True,
                                precision="bf16" if spec["variant"] == "bf16" else "f32").create_infer_request()
        request.infer({"frames": frames})
        kernels: dict[str, int] = {}
        for info in request.profiling_info:
            seconds = info.real_time.total_seconds()
            totals[info.node_type] = totals.get(info.node_type, 0.0) + seconds
            if info.node_type == "Convolution":
                kernels[info.exec_type] = kernels.get(info.exec_type, 0) + 1
        out["convolution_kernels"] = kernels
    else:
        return {"status": "not available", "reason": f"no profiler hooked up for {backend}"}
    total = sum(totals.values()) or 1.0
    out["status"] = "ok"
    out["total_s"] = total
    out["by_op"] = [{"op": op, "seconds": s, "share": s / total}
                    for op, s in sorted(totals.items(), key=lambda kv: -kv[1])[:12]]
    return out


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    out = Path(spec["out"])
    out.mkdir(parents=True, exist_ok=True)
    try:
        result, arrays = measure(spec)
        np.savez(out / "outputs.npz", **arrays)
        result["status"] = "ok"
    except MSPNError as exc:
        result = {"status": "failed", "reason": str(exc)}
    except Exception as exc:  # noqa: BLE001 - a backend failing must not stop the other backends
        last = traceback.format_exc().strip().splitlines()[-1]
        result = {"status": "failed", "reason": f"{type(exc).__name__}: {str(exc)[:300] or last}"}
        (out / "traceback.txt").write_text(traceback.format_exc())
    (out / "result.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
