"""What the benchmark can measure, and how it opens it: through ``Predictor`` as users do.

Every backend, the PyTorch eager reference included (the torch runner: the export wrappers run
eagerly on the checkpoint), is opened with ``Predictor.load`` and measured through
``Predictor.predict`` and ``StreamSession`` - what is benchmarked is what users run. Importing
this module stays torch-free.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from mspn.errors import MSPNError
from mspn.extras import missing_message

BACKENDS = ("torch", "onnxruntime", "openvino", "tensorrt")
# bf16 is not a file of the folder: OpenVINO compiles the fp32 graphs with bf16 inference precision.
VARIANTS = ("fp32", "fp16", "int8", "bf16")


def graph_variant(variant: str) -> str:
    """The folder's graph files a bench variant runs on."""
    return "fp32" if variant == "bf16" else variant


def why_not(backend: str, variant: str, manifest, ckpt: str | None) -> str | None:
    """None when (backend, variant) can run here, otherwise one line saying why not."""
    if backend not in BACKENDS:
        return f"unknown backend (known: {', '.join(BACKENDS)})"
    if variant not in VARIANTS:
        return f"unknown variant (known: {', '.join(VARIANTS)})"
    if backend == "torch":
        if variant != "fp32":
            return "the PyTorch eager reference is measured in fp32 only"
        if ckpt is None:
            return "no checkpoint: the model folder carries none; pass --ckpt"
        if importlib.util.find_spec("torch") is None:
            return missing_message("torch", "train", "the PyTorch reference")
        return None
    if variant == "bf16" and backend != "openvino":
        return "bf16 is an OpenVINO compile option on CPUs with bf16 units (fp32 graph, bf16 precision)"
    if graph_variant(variant) not in manifest.variants:
        return (f"the model folder has no {graph_variant(variant)} graphs (exported: "
                f"{', '.join(manifest.variants) or 'none'}); re-export with --variants {graph_variant(variant)}")
    if backend == "onnxruntime" and importlib.util.find_spec("onnxruntime") is None:
        return missing_message("onnxruntime", "runtime", "the onnxruntime backend")
    if backend == "openvino":
        if importlib.util.find_spec("openvino") is None:
            return missing_message("openvino", "openvino", "the openvino backend")
        if variant == "bf16" and not openvino_bf16():
            return ("this CPU has no bf16 units (OpenVINO's CPU capabilities lack BF16; "
                    "avx512_bf16 / amx_bf16 absent)")
    if backend == "tensorrt":
        if importlib.util.find_spec("tensorrt") is None:
            return "TensorRT is not installed (needs an NVIDIA GPU and pip install 'mspn[gpu]')"
        try:
            manifest.engine_for("rollout", graph_variant(variant))
        except MSPNError:
            return f"no TensorRT engine for the {variant} graphs; build one with `mspn build-engine`"
    return None


def openvino_bf16() -> bool:
    """Whether OpenVINO's CPU plugin runs bf16 here (it decides from CPUID, not from a hint)."""
    try:
        import openvino as ov
        return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception:  # noqa: BLE001 - an unusual build: judge from the CPU flags instead
        return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def runner_options(backend: str, variant: str, threads: int, ckpt=None) -> dict:
    """The Predictor.load options of a bench (backend, variant) at a thread count."""
    if backend == "onnxruntime":
        return {"threads": threads}
    if backend == "openvino":
        return {"threads": threads, "precision": "bf16" if variant == "bf16" else "f32"}
    if backend == "torch":
        return {"threads": threads, "ckpt": ckpt}
    return {}


def open_predictor(model_dir: str | Path, backend: str, variant: str, threads: int, ckpt=None):
    """A loaded Predictor of a bench (backend, variant); torch needs the checkpoint."""
    from mspn.runtime.predictor import Predictor

    if backend == "torch" and ckpt is None:
        raise MSPNError("the torch backend needs a checkpoint (--ckpt)")
    return Predictor.load(model_dir, backend=backend, variant=graph_variant(variant),
                          **runner_options(backend, variant, threads, ckpt))
