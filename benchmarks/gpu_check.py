"""The GPU check behind benchmarks/gpu_check.sh: engines, parity, timings, with what was skipped.

Reference: the fp32 rollout/step ONNX graphs on ONNX Runtime's CPU provider. Every other path
(PyTorch on CPU and CUDA, ONNX Runtime CUDA and TensorRT providers, native TensorRT fp32 / fp16 /
int8 engines) is compared with it on the same clips, for predict() (rollout graph) and for a
stream (push T_ctx frames, then rollout(T_pred + 3) on the step graph, state on the device).
A step engine built with `build-engine --hardware-compat` (Ampere plus) must stream the same.
The graphs read their weights from the folder's shared external file (weights*.bin), so the
engine build also checks that TensorRT's ONNX parser finds it.
PyTorch CPU vs the reference is the ONNX == PyTorch check. Each path is then timed: predict()
of batch 1 and one streaming step (median and p90 after warm-up).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TOLERANCE = {"fp32": 2e-3, "fp16": 5e-2, "int8": None}  # int8: reported, not judged


def log(text: str) -> None:
    print(text, flush=True)


class Check:
    def __init__(self, budget: float):
        self.deadline = time.monotonic() + budget
        self.skipped: list[str] = []
        self.failed: list[str] = []
        self.results: dict = {"parity": {}, "timing": {}, "engines": {}, "environment": {}}

    def time_left(self) -> float:
        return self.deadline - time.monotonic()

    def skip(self, what: str, why: str) -> None:
        self.skipped.append(f"{what}: {why}")
        log(f"SKIPPED {what}: {why}")


def environment(check: Check) -> dict:
    env = {"python": sys.version.split()[0]}
    for name in ("torch", "onnxruntime", "tensorrt", "openvino"):
        env[name] = None
        if importlib.util.find_spec(name):
            try:
                env[name] = __import__(name).__version__
            except Exception as exc:  # a broken install is a finding, not a crash
                env[name] = f"import failed: {exc}"
    try:
        import onnxruntime
        env["ort_providers"] = onnxruntime.get_available_providers()
    except ImportError:
        env["ort_providers"] = []
    try:
        from mspn.runtime.tensorrt_backend import gpu_info
        env.update(gpu_info(0))
    except Exception as exc:
        env["gpu"] = None
        env["gpu_error"] = str(exc)
    try:
        import torch
        env["torch_cuda"] = torch.cuda.is_available()
    except ImportError:
        env["torch_cuda"] = False
    check.results["environment"] = env
    log("environment: " + json.dumps(env))
    return env


def make_model(folder: Path) -> tuple[Path, Path]:
    """A tiny random checkpoint (weights scaled so its predictions move) exported fp32/fp16/int8."""
    import torch

    from mspn.checkpoint import save_checkpoint
    from mspn.config import load_config
    from mspn.export.pipeline import ExportOptions, export_model
    from mspn.models.mspn import MSPN

    torch.manual_seed(0)
    config = load_config("tiny")
    model = MSPN(config.model)
    with torch.no_grad():  # see tests/runtime/runtime_ckpt.py: fresh weights predict ~constants
        for param in model.parameters():
            param.mul_(2.0) if param.dim() > 1 else param.add_(0.3 * torch.randn_like(param))
    ckpt = folder / "tiny.pt"
    save_checkpoint(ckpt, config, model.state_dict())
    log("exporting tiny model (fp32, fp16, int8) ...")
    export_model(ExportOptions(ckpt=str(ckpt), out=str(folder / "model"), variants=("fp32", "fp16", "int8"),
                               progress=False))
    return folder / "model", ckpt


def run_path(predictor, clips: np.ndarray) -> dict:
    future = predictor.predict(clips)
    session = predictor.stream()
    for t in range(clips.shape[1]):
        session.push(clips[:, t])
    ahead = session.rollout(predictor.horizon + 3)
    session.close()
    return {"predict": future, "stream": ahead}


def time_path(predictor, clips: np.ndarray, seconds: float) -> dict:
    one = clips[:1]
    for _ in range(5):
        predictor.predict(one)
    times, end = [], time.perf_counter() + seconds / 2
    while time.perf_counter() < end or len(times) < 5:
        start = time.perf_counter()
        predictor.predict(one)
        times.append(time.perf_counter() - start)
    session = predictor.stream()
    for _ in range(5):
        session.push(one[:, 0])
    steps, end = [], time.perf_counter() + seconds / 2
    while time.perf_counter() < end or len(steps) < 5:
        start = time.perf_counter()
        session.push(one[:, 0])
        steps.append(time.perf_counter() - start)
    session.close()
    q = lambda xs, p: float(np.percentile(xs, p) * 1000)  # noqa: E731
    return {"predict_ms_median": q(times, 50), "predict_ms_p90": q(times, 90), "predict_runs": len(times),
            "step_ms_median": q(steps, 50), "step_ms_p90": q(steps, 90), "step_runs": len(steps)}


def hardware_compat_check(check, model: Path, tmp: Path, clips: np.ndarray) -> None:
    """`build-engine --hardware-compat`: an Ampere-plus fp32 step engine, recorded as such in the
    manifest, loaded here and streaming what the plain fp32 step engine streams."""
    from mspn.runtime import Manifest, Predictor
    from mspn.runtime.tensorrt_build import build_engine

    if check.time_left() < 200:
        check.skip("build-engine --hardware-compat", "time budget used up")
        return
    label = "tensorrt fp32 step, --hardware-compat engine"
    compat = tmp / "model-hardware-compat"
    shutil.copytree(model, compat, ignore=shutil.ignore_patterns("*.engine", ".cache"))
    try:
        build_engine(compat, "fp32", workspace_gib=2, graphs=("step",), hardware_compat=True, log=log)
        shutil.copy(model / "rollout.fp32.engine", compat / "rollout.fp32.engine")  # only loaded, never run
        from mspn.runtime.tensorrt_build import _record_engines
        _record_engines(compat, {"rollout.fp32.engine": Manifest.load(model).engines["rollout.fp32.engine"]})
        record = Manifest.load(compat).engines["step.fp32.engine"]
        outputs = {}
        for name, folder in (("plain", model), ("compat", compat)):
            with Predictor.load(folder, backend="tensorrt", variant="fp32") as predictor:
                outputs[name] = run_path(predictor, clips)["stream"]
        gap = float(np.abs(outputs["plain"] - outputs["compat"]).max())
        ok = record.get("hardware_compatibility") == "ampere_plus" and gap <= TOLERANCE["fp32"]
        check.results["parity"][label] = {"max_abs_vs_plain_engine": gap, "record": record, "ok": ok}
        log(f"--- {label}: recorded {record.get('hardware_compatibility')}, stream max abs vs the plain engine "
            f"{gap:.2e} {'OK' if ok else 'FAILED'}")
        if not ok:
            check.failed.append(f"{label}: {record.get('hardware_compatibility')}, max abs {gap:.2e}")
    except Exception as exc:
        check.failed.append(f"{label}: {exc}")
        check.results["parity"][label] = {"ok": False, "error": str(exc)[:1000]}
        log(f"FAILED {label}: {exc}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder (default: export a tiny random one)")
    parser.add_argument("--ckpt", help="its checkpoint, for the PyTorch comparison")
    parser.add_argument("--budget", type=float, default=540, help="seconds for the whole check")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gpu_check.json"))
    args = parser.parse_args()
    check = Check(args.budget)
    env = environment(check)
    from mspn.runtime import Predictor

    tmp = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    try:
        if args.model:
            model = tmp / "model"
            shutil.copytree(args.model, model)  # engines go into a copy, the original stays as it was
            ckpt = args.ckpt
        else:
            if not env["torch"]:
                log("torch is not installed: cannot export a model; pass --model DIR")
                return 1
            model, ckpt = make_model(tmp)
        from mspn.runtime import Manifest

        manifest = Manifest.load(model)
        variants = manifest.variants
        rng = np.random.default_rng(0)
        clips = rng.random((2, manifest.context, manifest.channels, *manifest.frame_size), dtype=np.float32)

        # --- engines ---------------------------------------------------------------------------
        has_gpu = bool(env.get("gpu"))
        trt_ok = bool(env["tensorrt"]) and has_gpu
        if not trt_ok:
            check.skip("TensorRT engine build and native runs",
                       "TensorRT not installed" if not env["tensorrt"] else f"no CUDA GPU ({env.get('gpu_error')})")
        else:
            from mspn.runtime.tensorrt_build import build_engine
            for variant in variants:
                if check.time_left() < 150:  # leave time for the parity and timing runs
                    check.skip(f"build-engine {variant}", "time budget used up")
                    continue
                start = time.perf_counter()
                try:
                    build_engine(model, variant, workspace_gib=2, timing_cache=tmp / "timing.cache", log=log)
                    check.results["engines"][variant] = {"ok": True, "build_s": round(time.perf_counter() - start, 1)}
                except Exception as exc:
                    check.results["engines"][variant] = {"ok": False, "error": str(exc)[:1000]}
                    check.failed.append(f"build-engine {variant}: {exc}")
                    log(f"FAILED build-engine {variant}: {exc}")

        if trt_ok and check.results["engines"].get("fp32", {}).get("ok"):
            hardware_compat_check(check, model, tmp, clips)

        # --- paths -----------------------------------------------------------------------------
        paths = [("onnxruntime-cpu fp32 (reference)", "onnxruntime", "fp32", {})]
        if ckpt and env["torch"]:
            paths.append(("torch cpu fp32", "torch", "fp32", {"ckpt": ckpt}))
            if env.get("torch_cuda"):
                paths.append(("torch cuda fp32", "torch", "fp32", {"ckpt": ckpt, "device": "cuda"}))
            else:
                check.skip("torch cuda", "torch has no CUDA")
        else:
            check.skip("torch", "no checkpoint (--ckpt) or torch not installed")
        providers = env.get("ort_providers", [])
        for provider, name in (("cuda", "CUDAExecutionProvider"), ("tensorrt", "TensorrtExecutionProvider")):
            if name in providers and has_gpu:
                for variant in variants:
                    if provider == "cuda" or variant != "int8":
                        paths.append((f"onnxruntime-{provider} {variant}", "onnxruntime", variant,
                                      {"provider": provider, **({"trt_cache_dir": str(tmp / "ort_trt")}
                                                                if provider == "tensorrt" else {})}))
            else:
                check.skip(f"onnxruntime {provider} provider", f"{name} not available (providers: {providers})")
        if trt_ok:
            for variant in variants:
                if check.results["engines"].get(variant, {}).get("ok"):
                    paths.append((f"tensorrt {variant}", "tensorrt", variant, {}))
        for variant in variants:
            if variant != "fp32":
                paths.append((f"onnxruntime-cpu {variant}", "onnxruntime", variant, {}))

        reference = None
        for label, backend, variant, options in paths:
            if check.time_left() < 20:
                check.skip(label, "time budget used up")
                continue
            log(f"--- {label}")
            try:
                start = time.perf_counter()
                predictor = Predictor.load(model, backend=backend, variant=variant, **options)
                load_s = time.perf_counter() - start
                outputs = run_path(predictor, clips)
                if reference is None:
                    reference = outputs
                parity = {k: float(np.abs(outputs[k] - reference[k]).max()) for k in outputs}
                tol = TOLERANCE[variant]
                ok = tol is None or max(parity.values()) <= tol
                check.results["parity"][label] = {"max_abs": parity, "tolerance": tol, "ok": ok,
                                                  "load_s": round(load_s, 3)}
                log(f"    parity vs reference max abs: predict {parity['predict']:.2e}, stream "
                    f"{parity['stream']:.2e} (tolerance {tol}) {'OK' if ok else 'FAILED'}")
                if not ok:
                    check.failed.append(f"{label} parity {parity}")
                timing = time_path(predictor, clips, seconds=min(6.0, max(1.0, check.time_left() / 20)))
                check.results["timing"][label] = timing
                log(f"    predict(batch 1) median {timing['predict_ms_median']:.2f} ms, p90 "
                    f"{timing['predict_ms_p90']:.2f} ms; stream step median {timing['step_ms_median']:.2f} ms")
                predictor.close()
            except Exception as exc:
                check.failed.append(f"{label}: {exc}")
                check.results["parity"][label] = {"ok": False, "error": str(exc)[:1000]}
                log(f"FAILED {label}: {exc}")
                traceback.print_exc(limit=3)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    check.results["skipped"] = check.skipped
    check.results["failed"] = check.failed
    from mspn.fileio import atomic_write_json

    atomic_write_json(args.out, check.results)
    log("\n=== summary ===")
    for line in check.skipped:
        log(f"SKIPPED  {line}")
    for line in check.failed:
        log(f"FAILED   {line}")
    log(f"{len(check.results['parity'])} path(s) run, {len(check.failed)} failure(s), "
        f"{len(check.skipped)} skip(s); results in {args.out}")
    return 1 if check.failed else 0


if __name__ == "__main__":
    sys.exit(main())
