"""Cold start and peak memory of a model folder, per backend and variant, first load and again.

Each measurement is a fresh Python process (so imports, file checks and session creation are
counted) that imports mspn.runtime, loads the folder, runs one prediction and reports:
  import_s      importing mspn.runtime (+ the backend's packages, imported by load)
  load_s        Predictor.load: manifest, SHA-256 checks (graphs load on first use)
  first_s       the first predict() of one (1, T_ctx, C, H, W) clip: the rollout graph's session
                (compiled, or taken from the load cache) and its first run
  cold_s        load_s + first_s (the figure of interest)
  peak_rss_mib  the process's peak resident memory (ru_maxrss)
  from_cache    whether the rollout runner reports a load-cache hit (null: a runtime without one)
For every backend x variant the load caches are emptied first (the folder's .cache and a private
user cache), then one process measures the first load ("first") and --repeats more the loads
after it ("again", medians). The torch-free runs block torch imports and fail if torch loads.

    python benchmarks/cold_start.py [--model DIR] [--variants fp32,fp16,int8] [--repeats 3]
                                    [--src CHECKOUT] [--ckpt CKPT]

--src runs the children on another checkout's mspn (e.g. the main branch, for a before figure).
Without --model a random tiny-config checkpoint is exported into a temporary folder (needs torch).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
start = time.perf_counter()
if sys.argv[2] != "torch":
    class _NoTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError("torch blocked: the runtime must not need it")
    sys.meta_path.insert(0, _NoTorch())
import numpy as np
from mspn.runtime import Predictor
imported = time.perf_counter()
options = {"ckpt": sys.argv[4]} if sys.argv[2] == "torch" else {}
predictor = Predictor.load(sys.argv[1], backend=sys.argv[2], variant=sys.argv[3], **options)
loaded = time.perf_counter()
m = predictor.manifest
x = np.random.default_rng(0).random((1, m.context, m.channels, *m.frame_size), dtype=np.float32)
predictor.predict(x)
done = time.perf_counter()
print(json.dumps({"import_s": imported - start, "load_s": loaded - imported, "first_s": done - loaded,
                  "cold_s": done - imported, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "from_cache": getattr(predictor.rollout_runner, "loaded_from_cache", None),
                  "torch_loaded": "torch" in sys.modules, "mspn": __import__("mspn").__file__}))
"""
KEYS = ["import_s", "load_s", "first_s", "cold_s", "peak_rss_mib"]


def make_tiny(folder: Path) -> tuple[Path, Path]:
    import torch

    from mspn.checkpoint import save_checkpoint
    from mspn.config import load_config
    from mspn.export.pipeline import ExportOptions, export_model
    from mspn.models.mspn import MSPN

    torch.manual_seed(0)
    config = load_config("tiny")
    ckpt = folder / "tiny.pt"
    save_checkpoint(ckpt, config, MSPN(config.model).state_dict())
    export_model(ExportOptions(ckpt=str(ckpt), out=str(folder / "model"), exporter="torchscript",
                               variants=("fp32", "fp16", "int8"), progress=False))
    return folder / "model", ckpt


def run_child(model: Path, backend: str, variant: str, ckpt, env: dict) -> dict:
    result = subprocess.run([sys.executable, "-c", CHILD, str(model), backend, variant, str(ckpt)],
                            capture_output=True, text=True, timeout=900, env=env, cwd=env["PYTHONPATH"])
    if result.returncode != 0:
        raise SystemExit(f"{backend} {variant} run failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def summarise(runs: list[dict]) -> dict:
    out = {k: round(statistics.median(r[k] for r in runs), 4) for k in KEYS}
    out["from_cache"] = [r["from_cache"] for r in runs]
    out["torch_loaded"] = any(r["torch_loaded"] for r in runs)
    out["processes"] = len(runs)
    return out


def measure(model: Path, backend: str, variant: str, ckpt, repeats: int, env: dict) -> dict:
    """First load with empty caches, then ``repeats`` loads after it, each a fresh process."""
    with tempfile.TemporaryDirectory(prefix="mspn-user-cache-") as user_cache:
        shutil.rmtree(model / ".cache", ignore_errors=True)
        env = {**env, "MSPN_CACHE_DIR": user_cache}
        first = run_child(model, backend, variant, ckpt, env)
        again = [run_child(model, backend, variant, ckpt, env) for _ in range(repeats)]
    result = {"first": summarise([first]), "again": summarise(again), "mspn": first["mspn"]}
    result["speedup_cold"] = round(result["first"]["cold_s"] / max(result["again"]["cold_s"], 1e-9), 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder (default: a random tiny export)")
    parser.add_argument("--ckpt", help="checkpoint of the folder, for the torch backend")
    parser.add_argument("--backends", default="onnxruntime,openvino,torch")
    parser.add_argument("--variants", default="fp32,fp16,int8")
    parser.add_argument("--repeats", type=int, default=2, help="processes after the first load")
    parser.add_argument("--src", help="checkout whose mspn the children import (default: this one)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "cold_start.json"))
    args = parser.parse_args()
    src = Path(args.src or Path(__file__).resolve().parent.parent).resolve()
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    with tempfile.TemporaryDirectory() as tmp:
        model, ckpt = (Path(args.model), args.ckpt) if args.model else make_tiny(Path(tmp))
        manifest = json.loads((model / "manifest.json").read_text())
        results: dict = {}
        for backend in args.backends.split(","):
            if backend == "torch" and not ckpt:
                print("torch: skipped (no --ckpt)")
                continue
            for variant in ["fp32"] if backend == "torch" else args.variants.split(","):
                r = results.setdefault(backend, {})[variant] = measure(model, backend, variant, ckpt,
                                                                       args.repeats, env)
                print(f"{backend:12s} {variant}  first: load {r['first']['load_s']:.2f} s + first prediction "
                      f"{r['first']['first_s']:.2f} s = {r['first']['cold_s']:.2f} s  again: "
                      f"{r['again']['cold_s']:.2f} s (x{r['speedup_cold']})  peak RSS "
                      f"{r['again']['peak_rss_mib']:.0f} MiB  cache hits {r['again']['from_cache']}", flush=True)
    from mspn.fileio import atomic_write_json

    atomic_write_json(args.out, {"model": manifest.get("name"), "folder": str(model), "src": str(src),
                                 "frame_size": manifest.get("frame_size"), "context": manifest.get("context"),
                                 "horizon": manifest.get("horizon"), "results": results})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
