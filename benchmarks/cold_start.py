"""Cold start and peak memory: the torch-free runtime vs the torch backend on one model folder.

Each measurement is a fresh Python process (so imports, file checks and session creation are
counted) that imports mspn.runtime, loads the folder, runs one prediction and reports:
  import_s      importing mspn.runtime (+ the backend's packages, imported by load)
  load_s        Predictor.load: manifest, SHA-256 checks, both graphs' sessions
  first_s       the first predict() of one (1, T_ctx, C, H, W) clip
  cold_s        load_s + first_s (the figure of interest)
  peak_rss_mib  the process's peak resident memory (ru_maxrss)
Medians over --repeats processes. The torch-free runs block torch imports and fail if torch loads.

    python benchmarks/cold_start.py [--model DIR --ckpt CKPT] [--repeats 3]

Without --model a random tiny-config checkpoint is exported into a temporary folder (needs torch).
"""
from __future__ import annotations

import argparse
import json
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
options = {"ckpt": sys.argv[3]} if sys.argv[2] == "torch" else {}
predictor = Predictor.load(sys.argv[1], backend=sys.argv[2], **options)
loaded = time.perf_counter()
m = predictor.manifest
x = np.random.default_rng(0).random((1, m.context, m.channels, *m.frame_size), dtype=np.float32)
predictor.predict(x)
done = time.perf_counter()
print(json.dumps({"import_s": imported - start, "load_s": loaded - imported, "first_s": done - loaded,
                  "cold_s": done - imported, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "torch_loaded": "torch" in sys.modules}))
"""


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
    export_model(ExportOptions(ckpt=str(ckpt), out=str(folder / "model"), exporter="torchscript", progress=False))
    return folder / "model", ckpt


def measure(model: Path, backend: str, ckpt: Path | None, repeats: int) -> dict:
    runs = []
    for _ in range(repeats):
        result = subprocess.run([sys.executable, "-c", CHILD, str(model), backend, str(ckpt)],
                                capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            raise SystemExit(f"{backend} run failed:\n{result.stderr[-2000:]}")
        runs.append(json.loads(result.stdout.strip().splitlines()[-1]))
    keys = ["import_s", "load_s", "first_s", "cold_s", "peak_rss_mib"]
    summary = {k: round(statistics.median(r[k] for r in runs), 4) for k in keys}
    summary["torch_loaded"] = any(r["torch_loaded"] for r in runs)
    summary["repeats"] = repeats
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--ckpt", help="checkpoint of the folder, for the torch backend")
    parser.add_argument("--backends", default="onnxruntime,openvino,torch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "cold_start.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model, ckpt = (Path(args.model), args.ckpt) if args.model else make_tiny(Path(tmp))
        results = {}
        for backend in args.backends.split(","):
            if backend == "torch" and not ckpt:
                print("torch: skipped (no --ckpt)")
                continue
            results[backend] = measure(model, backend, ckpt, args.repeats)
            r = results[backend]
            print(f"{backend:12s} import {r['import_s']:.2f} s  load {r['load_s']:.2f} s  first prediction "
                  f"{r['first_s'] * 1000:.1f} ms  cold (load+first) {r['cold_s']:.2f} s  peak RSS "
                  f"{r['peak_rss_mib']:.0f} MiB  torch loaded: {r['torch_loaded']}")
        manifest = json.loads((model / "manifest.json").read_text())
    from mspn.fileio import atomic_write_json

    atomic_write_json(args.out, {"model": manifest.get("name"), "frame_size": manifest.get("frame_size"),
                                 "context": manifest.get("context"), "horizon": manifest.get("horizon"),
                                 "results": results})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
