"""Serve `mspn export-triton`'s repository on a full Triton install (native ONNX Runtime backend,
GPU) and check both models against Predictor on ONNX Runtime (CPU). Part of gpu_check.sh.

    python benchmarks/triton_check.py [--model DIR] [--tritonserver /opt/tritonserver/bin/tritonserver]

Skips (exit 0, saying why) where no full Triton install is found: the nvidia-pytriton wheel has
the Python backend only, so `mspn serve` works there but this repository does not.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

TOLERANCE = 1e-4  # GPU kernels (cuDNN, TF32 off) against ONNX Runtime CPU


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder (default: the shipped tiny model, exported here)")
    parser.add_argument("--tritonserver", default=os.environ.get("TRITONSERVER", "/opt/tritonserver/bin/tritonserver"))
    args, _ = parser.parse_known_args()  # gpu_check.sh passes its own flags too
    if not Path(args.tritonserver).is_file():
        print(f"triton_check: skipped: no full Triton install at {args.tritonserver} (set TRITONSERVER)")
        return 0
    from mspn.options import ExportOptions, ExportTritonOptions
    from mspn.runtime import Predictor
    from mspn.serve import client as tc
    from mspn.serve.export_triton import export_triton
    from mspn.serve.triton import Ports, TritonServer

    work = Path(tempfile.mkdtemp(prefix="triton-check-"))
    model = args.model
    if model is None:
        from mspn.export.pipeline import export_model
        model = str(work / "tiny")
        export_model(ExportOptions(ckpt="models/tiny/best.pt", out=model, progress=False))
    names = export_triton(ExportTritonOptions(model=model, out=str(work / "repo"), name="tiny"))
    rng = np.random.default_rng(0)
    server = TritonServer(work / "repo", Ports.free(), binary=args.tritonserver)
    with Predictor.load(model) as predictor, server:
        m = predictor.manifest
        clips = rng.random((3, m.context, m.channels, *m.frame_size), dtype=np.float32)
        client = tc.connect(server.grpc_url)
        worst = float(np.abs(tc.rollout(client, names[0], clips) - predictor.predict(clips)).max())
        with predictor.stream() as session:
            for t in range(m.context):
                got = tc.step(client, names[1], clips[:1, t], 1, start=t == 0, end=t == m.context - 1,
                              open_loop=1.0)
                worst = max(worst, float(np.abs(got - session.push(clips[:1, t])).max()))
    shutil.rmtree(work, ignore_errors=True)
    ok = worst <= TOLERANCE
    print(f"triton_check: native onnxruntime backend, rollout + stream (implicit state): worst max abs "
          f"{worst:.2e} vs ONNX Runtime CPU ({'ok' if ok else 'FAILED'}, tolerance {TOLERANCE:g})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
