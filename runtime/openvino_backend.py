"""OpenVINO runner (CPU by default).

Precision is pinned: on CPUs with bf16 units OpenVINO silently runs f32 graphs in bf16, which
changes results, so INFERENCE_PRECISION_HINT is always set (f32 unless precision='bf16') and read
back after compiling. The int8 variant runs the folder's OpenVINO model when it has one
(``graphs.<kind>.int8.openvino``: NNCF's quantization, written by `mspn export --openvino-int8`),
else the ONNX QDQ graph as exported (OpenVINO fuses the Q/DQ pairs); option ``int8`` picks one.
Threads: one InferRequest per thread, so one compiled model serves several threads at once.
Loads: compiled once per graph and machine into OpenVINO's model cache (``CACHE_DIR``, a folder
from mspn.runtime.cache keyed by the graph's SHA-256), then imported from there by later loads.
"""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from mspn.errors import MSPNError

from .base import Runner, require, split_options
from .cache import graph_cache_dir
from .manifest import Manifest

DEFAULTS = {
    "device": "CPU",
    "precision": "f32",         # f32 | bf16 (explicit only; OpenVINO's silent CPU default differs)
    "threads": 0,               # 0: OpenVINO's default
    "hint": "LATENCY",          # PERFORMANCE_HINT: LATENCY | THROUGHPUT
    "cache": True,              # compile once per graph and machine (mspn.runtime.cache)
    "int8": "auto",             # int8 variant: auto (the OpenVINO model when present) | nncf | qdq
}
INT8_METHODS = ("auto", "nncf", "qdq")
PRECISIONS = {"f32": "f32", "fp32": "f32", "bf16": "bf16"}


class OpenVINORunner(Runner):
    backend = "openvino"

    def __init__(self, manifest: Manifest, graph, path: Path, **options):
        super().__init__(manifest, graph)
        self.path = path
        self.options = split_options(options, DEFAULTS, self.backend)
        if self.options["precision"] not in PRECISIONS:
            raise MSPNError(f"unknown openvino precision {self.options['precision']!r}; choose f32 or bf16")
        # which int8 runs: "nncf" (the folder's OpenVINO model) or "qdq" (the ONNX graph); None: not int8
        ir = graph.openvino is not None and graph.file == graph.openvino.file
        self.int8_method = None if graph.variant != "int8" else "nncf" if ir else "qdq"
        self.compiled = None
        self.loaded_from_cache = False
        self._requests = threading.local()

    def _activate(self) -> None:
        opts = self.options
        cache = None
        if opts["cache"]:
            ov = require("openvino", "openvino", "the openvino backend")
            cache = graph_cache_dir(self.manifest, self.graph, "openvino", ov.__version__, device=opts["device"],
                                    precision=PRECISIONS[opts["precision"]], hint=opts["hint"],
                                    threads=int(opts["threads"]))
        self.compiled = compile_model(self.path, device=opts["device"], precision=opts["precision"],
                                      threads=int(opts["threads"]), hint=opts["hint"], cache_dir=cache)
        self.loaded_from_cache = loaded_from_cache(self.compiled)
        declared = {t.name for t in (*self.graph.inputs, *self.graph.outputs)}
        self.check_graph(_io(self.compiled.inputs, declared), _io(self.compiled.outputs, declared))
        self._ports = {name: self.compiled.output(name) for name in self.output_names}
        self._requests = threading.local()

    def check_available(self) -> None:
        require("openvino", "openvino", "the openvino backend")

    def _deactivate(self) -> None:
        self.compiled = None
        self._requests = threading.local()

    def _request(self):
        request = getattr(self._requests, "request", None)
        if request is None:
            request = self._requests.request = self.compiled.create_infer_request()
        return request

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = self._request().infer(feed)
        # Copies: the request's output tensors are overwritten by its next inference.
        return {name: np.array(results[port], copy=True) for name, port in self._ports.items()}


_OV_TYPES = {"f32": "float32", "f16": "float16", "i64": "int64", "i32": "int32"}


def _io(ports, declared: set[str]) -> dict[str, tuple[str, tuple]]:
    """OpenVINO ports -> {name: (dtype, shape)} for Runner.check_graph (dynamic dims as None).
    A port may carry several names; the one the manifest uses stands for it."""
    result = {}
    for port in ports:
        kind = port.get_element_type().get_type_name()
        shape = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
        names = sorted(port.get_names() & declared) or [port.get_any_name()]
        result[names[0]] = (_OV_TYPES.get(kind, kind), shape)
    return result


def compile_model(path: str | Path, device: str = "CPU", precision: str = "f32", threads: int = 0,
                  hint: str = "LATENCY", perf_count: bool = False, cache_dir: str | Path | None = None):
    """The OpenVINO loader: a compiled model from a graph file, its inference precision pinned
    and read back. threads: 0 for OpenVINO's default; perf_count: per-layer counters; cache_dir:
    OpenVINO's model cache (one folder per graph content: see graph_cache_dir), None for none.

    The graph is compiled from its path, not from a read model: with a cache hit OpenVINO then
    imports the blob without converting the ONNX graph at all."""
    ov = require("openvino", "openvino", "the openvino backend")
    if precision not in PRECISIONS:
        raise MSPNError(f"unknown openvino precision {precision!r}; choose f32 or bf16")
    wanted = PRECISIONS[precision]
    config = {"INFERENCE_PRECISION_HINT": wanted, "PERFORMANCE_HINT": hint}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    if perf_count:
        config["PERF_COUNT"] = True
    if cache_dir is not None:
        config["CACHE_DIR"] = str(cache_dir)
    core = ov.Core()
    is_file = isinstance(path, (str, Path))  # else an openvino.Model (the exporter's checks)
    name = Path(path).name if is_file else "the model"
    try:
        compiled = core.compile_model(str(path) if is_file else path, device, config)
    except RuntimeError as exc:
        raise MSPNError(f"{path if is_file else name}: openvino cannot compile it for {device}: "
                        f"{str(exc).strip().splitlines()[0][:300]}") from None
    actual = compiled.get_property("INFERENCE_PRECISION_HINT")
    if actual != getattr(ov.Type, wanted):
        raise MSPNError(f"openvino compiled {name} with inference precision {actual} where "
                        f"{wanted} was asked for (this device does not support it?)")
    return compiled


def loaded_from_cache(compiled) -> bool:
    """Whether OpenVINO imported this compiled model from its cache instead of compiling it."""
    try:
        return bool(compiled.get_property("LOADED_FROM_CACHE"))
    except RuntimeError:  # a device plugin without the property
        return False


def build_runner(manifest: Manifest, kind: str, variant: str, **options) -> OpenVINORunner:
    """The runner of a graph; for the int8 variant, of the folder's OpenVINO model (NNCF) when it has
    one and ``int8`` is auto or nncf, else of the ONNX QDQ graph. The OpenVINO model is served
    under its own file names (so the load cache is keyed by its SHA-256) and checked against the
    manifest's I/O of the graph like any graph."""
    import dataclasses

    graph = manifest.graph(kind, variant)
    method = options.get("int8", DEFAULTS["int8"])
    if method not in INT8_METHODS:
        raise MSPNError(f"unknown openvino int8 option {method!r}; choose from {', '.join(INT8_METHODS)}")
    if variant == "int8" and method == "nncf" and graph.openvino is None:
        raise MSPNError(f"{manifest.folder}: no NNCF OpenVINO int8 model of the {kind} graph in this folder; "
                        f"re-export with --openvino-int8 nncf, or load with int8='qdq'")
    if variant == "int8" and method != "qdq" and graph.openvino is not None:
        path = manifest.verified_openvino(graph)
        served = dataclasses.replace(graph, file=graph.openvino.file, external=(graph.openvino.weights,))
        return OpenVINORunner(manifest, served, path, **options)
    return OpenVINORunner(manifest, graph, manifest.verified_graph(graph), **options)
