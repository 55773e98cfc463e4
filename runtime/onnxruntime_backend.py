"""ONNX Runtime runner: CPU, CUDA or TensorRT execution provider, chosen by name.

ONNX Runtime silently falls back to CPU when a GPU provider cannot be created (missing CUDA
libraries, a driver mismatch); that fallback is detected here by comparing the session's providers
with the one asked for, and refused. On a GPU provider the streaming state stays on the device
between steps through IO binding; only the frame goes up and the predicted frame comes back.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mspn.errors import MSPNError

from .base import Runner, require, split_options
from .manifest import Manifest

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
             "tensorrt": "TensorrtExecutionProvider"}
OPTIMIZATION = ("disable", "basic", "extended", "all")
DEFAULTS = {
    "provider": "cpu",          # cpu | cuda | tensorrt
    "threads": 0,               # intra-op threads; 0: ONNX Runtime's default (all cores)
    "optimization": "all",      # graph optimisation level: disable | basic | extended | all
    "device_id": 0,
    "trt_cache_dir": None,      # TensorRT EP: folder for its engine and timing caches
    "trt_fp16": False,          # TensorRT EP: allow fp16 kernels
    "io_binding": None,         # streaming state as OrtValues bound in place; None: on GPU only
}


class OnnxRuntimeRunner(Runner):
    backend = "onnxruntime"

    def __init__(self, manifest: Manifest, graph, path: Path, **options):
        super().__init__(manifest, graph)
        self.path = path
        self.options = split_options(options, DEFAULTS, self.backend)
        provider = self.options["provider"]
        if provider not in PROVIDERS:
            raise MSPNError(f"unknown onnxruntime provider {provider!r}; choose one of {', '.join(PROVIDERS)}")
        if self.options["optimization"] not in OPTIMIZATION:
            raise MSPNError(f"unknown optimization level {self.options['optimization']!r}; choose one of "
                            f"{', '.join(OPTIMIZATION)}")
        self.on_gpu = provider != "cpu"
        io_binding = self.options["io_binding"]
        self.io_binding = self.on_gpu if io_binding is None else bool(io_binding)
        self._device = "cuda" if self.on_gpu else "cpu"
        self.session = None

    def _providers(self, ort) -> list:
        name, opts = self.options["provider"], self.options
        if name == "cpu":
            return ["CPUExecutionProvider"]
        device = {"device_id": str(opts["device_id"])}
        cuda = ("CUDAExecutionProvider", device)
        if name == "cuda":
            return [cuda, "CPUExecutionProvider"]
        trt = {**device, "trt_fp16_enable": "1" if opts["trt_fp16"] else "0"}
        if opts["trt_cache_dir"]:
            Path(opts["trt_cache_dir"]).mkdir(parents=True, exist_ok=True)
            trt.update(trt_engine_cache_enable="1", trt_engine_cache_path=str(opts["trt_cache_dir"]),
                       trt_timing_cache_enable="1", trt_timing_cache_path=str(opts["trt_cache_dir"]))
        # CUDA after TensorRT: nodes TensorRT cannot take still run on the GPU, not on the CPU.
        return [("TensorrtExecutionProvider", trt), cuda, "CPUExecutionProvider"]

    def _activate(self) -> None:
        ort = require("onnxruntime", "gpu" if self.on_gpu else "runtime", "onnxruntime")
        wanted = PROVIDERS[self.options["provider"]]
        if wanted not in ort.get_available_providers():
            raise MSPNError(f"this onnxruntime build has no {wanted} (available: "
                            f"{', '.join(ort.get_available_providers())}); for GPUs: "
                            f"pip install 'mspn[gpu]' (onnxruntime-gpu instead of onnxruntime)")
        session = load_session(self.model_source(), providers=self._providers(ort),
                               threads=int(self.options["threads"]), optimization=self.options["optimization"],
                               name=self.path)
        active = session.get_providers()
        if wanted not in active:
            raise MSPNError(f"onnxruntime fell back to {', '.join(active)} although {wanted} was asked for "
                            f"(CUDA/cuDNN/TensorRT libraries not found or not matching this onnxruntime build?)")
        self.check_graph(_io(session.get_inputs()), _io(session.get_outputs()))
        self.session = session

    def model_source(self) -> str | bytes:
        """What the session loads: the graph's path, or for int8 on the TensorRT provider the graph
        rewritten into the symmetric int8 with float biases TensorRT takes (mspn.runtime.qdq)."""
        if self.options["provider"] == "tensorrt" and self.graph.variant == "int8":
            from mspn.runtime.qdq import tensorrt_ready_bytes
            return tensorrt_ready_bytes(self.path)
        return str(self.path)

    def _deactivate(self) -> None:
        self.session = None

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self.session.run(self.output_names, feed)  # thread-safe per ONNX Runtime's docs
        return dict(zip(self.output_names, outputs, strict=True))

    # --- device-resident streaming state (GPU providers) ---------------------------------------
    def new_state(self, state: dict[str, np.ndarray]) -> Any:
        host = super().new_state(state)
        if not self.io_binding:
            return host
        import onnxruntime as ort
        return {k: ort.OrtValue.ortvalue_from_numpy(v, self._device, int(self.options["device_id"]))
                for k, v in host.items()}

    def _step(self, handle: Any, feed: dict[str, np.ndarray]):
        if not self.io_binding:
            return super()._step(handle, feed)
        binding = self.session.io_binding()  # one binding per call: threads never share one
        for name, value in feed.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(value))
        for name, value in handle.items():
            binding.bind_ortvalue_input(name, value)
        device_id = int(self.options["device_id"])
        host_outputs = [n for n in self.output_names if not n.endswith("_out")]
        for name in host_outputs:
            binding.bind_output(name, "cpu")
        names = self.manifest.state_names
        for name in names:
            binding.bind_output(f"{name}_out", self._device, device_id)
        self.session.run_with_iobinding(binding)
        values = binding.get_outputs()  # in the order bound above
        host = {n: v.numpy() for n, v in zip(host_outputs, values[: len(host_outputs)], strict=True)}
        return host, dict(zip(names, values[len(host_outputs):], strict=True))


_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int64)": "int64",
              "tensor(int32)": "int32"}


def _io(args) -> dict[str, tuple[str, tuple]]:
    """ONNX Runtime NodeArgs -> {name: (dtype, shape)} for Runner.check_graph."""
    return {a.name: (_ORT_TYPES.get(a.type, a.type), tuple(a.shape)) for a in args}


def load_session(source: str | Path | bytes, providers=("CPUExecutionProvider",), threads: int = 0,
                 optimization: str = "all", profile_prefix: str | None = None,
                 optimized_path: str | None = None, name: str | Path | None = None):
    """The ONNX Runtime loader: an InferenceSession from a graph file (or its bytes).

    threads: intra-op threads (0: ONNX Runtime's default); optimization: one of OPTIMIZATION;
    profile_prefix: turn on ORT's profiler, writing there; optimized_path: save the optimised
    graph there. A graph ONNX Runtime cannot load is refused in one line naming ``name``.
    """
    ort = require("onnxruntime", "runtime", "onnxruntime")
    so = ort.SessionOptions()
    so.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[optimization]
    if threads:
        so.intra_op_num_threads = int(threads)
    so.log_severity_level = 3  # warnings about unused initialisers etc. are noise to users
    if profile_prefix:
        so.enable_profiling, so.profile_file_prefix = True, str(profile_prefix)
    if optimized_path:
        so.optimized_model_filepath = str(optimized_path)
    try:
        return ort.InferenceSession(str(source) if isinstance(source, Path) else source, sess_options=so,
                                    providers=list(providers))
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
        what = name or (source if not isinstance(source, bytes) else "the graph")
        raise MSPNError(f"{what}: onnxruntime cannot load it: {str(exc).splitlines()[0][:300]}") from None


def build_runner(manifest: Manifest, kind: str, variant: str, **options) -> OnnxRuntimeRunner:
    graph = manifest.graph(kind, variant)
    return OnnxRuntimeRunner(manifest, graph, manifest.verified_path(graph.file), **options)
