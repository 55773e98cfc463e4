"""ONNX Runtime runner: CPU, CUDA or TensorRT execution provider, chosen by name.

ONNX Runtime silently falls back to CPU when a GPU provider cannot be created (missing CUDA
libraries, a driver mismatch); that fallback is detected here by comparing the session's providers
with the one asked for, and refused. On a GPU provider the streaming state stays on the device
between steps through IO binding; only the frame goes up and the predicted frame comes back.

Loads on the CPU provider keep the optimised graph ONNX Runtime makes (``optimized_model_filepath``)
in a cache folder keyed by the graph's SHA-256 (mspn.runtime.cache), with a record of the
optimisation level and the optimised file's own SHA-256; later loads open that file with graph
optimisation off instead of optimising the graph again.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from mspn import extras
from mspn.errors import MSPNError
from mspn.fileio import atomic_write_json, sha256_file

from .base import Runner, require, split_options
from .cache import graph_cache_dir
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
    "cache": True,              # CPU: keep the optimised graph per graph and machine (mspn.runtime.cache)
}
OPTIMIZED, RECORD = "optimized.onnx", "optimized.json"  # the files of one cache folder


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
        self.loaded_from_cache = False

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

    def check_available(self):
        """onnxruntime with the provider asked for, or a one-line error. Returns the module."""
        ort = require("onnxruntime", "gpu" if self.on_gpu else "runtime", "the onnxruntime backend")
        wanted = PROVIDERS[self.options["provider"]]
        if wanted not in ort.get_available_providers():
            if extras.both_onnxruntimes():
                raise MSPNError(f"onnxruntime and onnxruntime-gpu are both installed, which hides {wanted}; "
                                f"{extras.ONNXRUNTIME_FIX}")
            raise MSPNError(f"this onnxruntime build has no {wanted} (available: "
                            f"{', '.join(ort.get_available_providers())}); for GPUs: "
                            f"pip install 'mspn[gpu]' (onnxruntime-gpu instead of onnxruntime)")
        return ort

    def _activate(self) -> None:
        ort = self.check_available()
        wanted = PROVIDERS[self.options["provider"]]
        session = self._load(ort)
        active = session.get_providers()
        if wanted not in active:
            raise MSPNError(f"onnxruntime fell back to {', '.join(active)} although {wanted} was asked for "
                            f"(CUDA/cuDNN/TensorRT libraries not found or not matching this onnxruntime build?)")
        self.check_graph(_io(session.get_inputs()), _io(session.get_outputs()))
        self.check_metadata(dict(session.get_modelmeta().custom_metadata_map))
        self.session = session

    def _load(self, ort):
        """The session: from the cached optimised graph when there is a valid one, else from the
        graph (saving its optimised form into the cache for next time)."""
        opts = self.options
        load = dict(providers=self._providers(ort), threads=int(opts["threads"]), name=self.path)
        cache = None
        if opts["cache"] and not self.on_gpu and opts["optimization"] != "disable":
            cache = graph_cache_dir(self.manifest, self.graph, "onnxruntime", ort.__version__,
                                    optimization=opts["optimization"])
        graph_sha = self.manifest.files.get(self.graph.file)
        cached = cached_optimized(cache, graph_sha, opts["optimization"]) if cache else None
        self.loaded_from_cache = cached is not None
        if cached is not None:
            return load_session(cached, optimization="disable", **load)
        scratch = cache / f".{OPTIMIZED}.{os.getpid()}.tmp" if cache else None
        try:
            session = load_session(self.model_source(), optimization=opts["optimization"],
                                   optimized_path=scratch, **load)
            if scratch is not None and scratch.is_file():
                publish_optimized(scratch, cache, graph_sha, opts["optimization"], ort.__version__)
        finally:
            if scratch is not None and scratch.exists():
                scratch.unlink()
        return session

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
    ort = require("onnxruntime", "runtime", "the onnxruntime backend")
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
        # One self-contained file: without this, initializers the graph kept in an external weights
        # file stay references to it, relative to the optimised file's folder, where it is not.
        so.add_session_config_entry("session.optimized_model_external_initializers_file_name",
                                    Path(optimized_path).name + ".weights")
        so.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes",
                                    str(1 << 40))
    try:
        return ort.InferenceSession(str(source) if isinstance(source, Path) else source, sess_options=so,
                                    providers=list(providers))
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
        what = name or (source if not isinstance(source, bytes) else "the graph")
        raise MSPNError(f"{what}: onnxruntime cannot load it: {str(exc).splitlines()[0][:300]}") from None


def cached_optimized(folder: Path, graph_sha256: str | None, optimization: str) -> Path | None:
    """The optimised graph kept in a cache folder when its record says it was made from this graph
    (SHA-256) at this optimisation level and the file still has the SHA-256 recorded; else None."""
    model, record_path = folder / OPTIMIZED, folder / RECORD
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("graph_sha256") != graph_sha256 or graph_sha256 is None:
        return None
    if record.get("optimization") != optimization or not model.is_file():
        return None
    return model if sha256_file(model) == record.get("sha256") else None


def publish_optimized(scratch: Path, folder: Path, graph_sha256: str | None, optimization: str,
                      version: str) -> None:
    """Move a freshly saved optimised graph into its cache folder, then write its record (so a
    reader never finds a record vouching for a half-written file)."""
    os.replace(scratch, folder / OPTIMIZED)
    atomic_write_json(folder / RECORD, {"graph_sha256": graph_sha256, "optimization": optimization,
                                        "onnxruntime": version, "sha256": sha256_file(folder / OPTIMIZED)})


def build_runner(manifest: Manifest, kind: str, variant: str, **options) -> OnnxRuntimeRunner:
    graph = manifest.graph(kind, variant)
    return OnnxRuntimeRunner(manifest, graph, manifest.verified_graph(graph), **options)
