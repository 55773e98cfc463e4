"""Everything TensorRT: engine build (``mspn build-engine``) and the native TensorRT runner.

Imported lazily (only when backend="tensorrt" or build-engine is used); needs the gpu extra:
tensorrt >= 10 and cuda-python, plus an NVIDIA GPU. TensorRT 10+ API only:

* build: strongly typed network (precision comes from the exported graph itself: the fp16 graph
  or the int8 QDQ graph, no builder precision flags), every ONNX parser error surfaced, one
  optimisation profile from the manifest's batch range, optional timing cache, atomic write;
  the engine's GPU name, compute capability and TensorRT version go into the manifest.
* run: name-based tensor API (num_io_tensors, get_tensor_name, set_input_shape,
  set_tensor_address) and execute_async_v3 on a CUDA stream; device buffers allocated once at
  the profile's max batch and freed on deactivate. An engine built for another GPU or TensorRT
  version is refused before TensorRT is asked to deserialize it.

Streaming keeps the recurrent state on the device: each session owns two sets of state buffers
used ping-pong (inputs of one step are the outputs of the previous), so only the frame goes up
and the predicted frame comes back per step.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mspn.errors import MSPNError
from mspn.fileio import atomic_write_bytes, atomic_write_json

from .base import Runner, require, split_options
from .manifest import GRAPHS, Manifest, sha256_file


# --- imports and CUDA helpers -----------------------------------------------------------------

def _trt():
    trt = require("tensorrt", "gpu", "TensorRT")
    major = int(trt.__version__.split(".")[0])
    if major < 10:
        raise MSPNError(f"TensorRT {trt.__version__} is too old: this runtime uses the TensorRT 10+ API; "
                        f"pip install 'mspn[gpu]'")
    return trt


def _cudart():
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError as exc:
            raise MSPNError(f"cuda-python is not installed ({exc}); pip install 'mspn[gpu]'") from None
    return cudart


def _check(result, what: str):
    """cuda-python calls return (error, values...): raise on an error, return the values."""
    err, *values = result if isinstance(result, tuple) else (result,)
    cudart = _cudart()
    if err != cudart.cudaError_t.cudaSuccess:
        _, text = cudart.cudaGetErrorString(err)
        name = getattr(err, "name", str(err))
        detail = text.decode() if isinstance(text, bytes) else str(text)
        raise MSPNError(f"CUDA error in {what}: {name} ({detail})")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def gpu_info(device_id: int = 0) -> dict:
    """{"gpu": name, "compute_capability": "9.0"} of a CUDA device; a clear error without one."""
    cudart = _cudart()
    count = _check(cudart.cudaGetDeviceCount(), "cudaGetDeviceCount (is an NVIDIA driver installed?)")
    if device_id >= count:
        raise MSPNError(f"CUDA device {device_id} does not exist ({count} device(s) found)")
    prop = _check(cudart.cudaGetDeviceProperties(device_id), "cudaGetDeviceProperties")
    name = prop.name.decode(errors="replace") if isinstance(prop.name, bytes) else str(prop.name)
    return {"gpu": name.rstrip("\x00").strip(), "compute_capability": f"{prop.major}.{prop.minor}"}


class _Device:
    """Device allocations of one runner, freed together."""

    def __init__(self):
        self.cudart = _cudart()
        self.pointers: list[int] = []

    def malloc(self, nbytes: int) -> int:
        ptr = _check(self.cudart.cudaMalloc(max(int(nbytes), 1)), f"cudaMalloc({nbytes} bytes)")
        self.pointers.append(ptr)
        return ptr

    def free(self, ptr: int) -> None:
        if ptr in self.pointers:
            self.pointers.remove(ptr)
            _check(self.cudart.cudaFree(ptr), "cudaFree")

    def free_all(self) -> None:
        for ptr in list(self.pointers):
            self.free(ptr)

    def upload(self, ptr: int, array: np.ndarray, stream) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        _check(self.cudart.cudaMemcpyAsync(ptr, array.ctypes.data, array.nbytes, kind, stream), "cudaMemcpyAsync H2D")

    def download(self, array: np.ndarray, ptr: int, stream) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        _check(self.cudart.cudaMemcpyAsync(array.ctypes.data, ptr, array.nbytes, kind, stream), "cudaMemcpyAsync D2H")


# --- engine build ---------------------------------------------------------------------------------

def _profile_shapes(spec_shape, batch: tuple[int, int, int]) -> tuple[list, list, list]:
    """min/opt/max shapes of an input from its manifest shape (ints and the "batch" symbol)."""
    out = []
    for b in batch:
        dims = []
        for dim in spec_shape:
            if isinstance(dim, int) and dim >= 0:
                dims.append(dim)
            elif dim == "batch":
                dims.append(b)
            else:
                raise MSPNError(f"dynamic axis {dim!r} other than batch has no profile; re-export with a fixed size")
        out.append(dims)
    return out[0], out[1], out[2]


def build_engine(model_dir: str | Path, variant: str = "fp32", workspace_gib: float = 4.0,
                 timing_cache: str | Path | None = None, batch: tuple[int, int, int] | None = None,
                 graphs: tuple[str, ...] = GRAPHS, device_id: int = 0, log=print) -> list[str]:
    """Build ``{graph}.{variant}.engine`` for each graph into the folder and record them.

    batch: (min, opt, max) of the optimisation profile, inside the manifest's batch range;
    default: the manifest's. Returns the engine file names written.
    """
    manifest = Manifest.load(model_dir)
    folder = manifest.folder
    bmin, bopt, bmax = batch or (manifest.batch_min, manifest.batch_opt, manifest.batch_max)
    if not (manifest.batch_min <= bmin <= bopt <= bmax <= manifest.batch_max):
        raise MSPNError(f"batch profile {bmin}/{bopt}/{bmax} (min/opt/max) must satisfy min <= opt <= max "
                        f"inside the model's batch range {manifest.batch_min}..{manifest.batch_max}")
    if workspace_gib <= 0:
        raise MSPNError(f"--workspace must be a positive number of GiB, got {workspace_gib}")
    specs = {kind: manifest.graph(kind, variant) for kind in graphs}
    paths = {kind: manifest.verified_path(spec.file) for kind, spec in specs.items()}
    trt = _trt()
    device = gpu_info(device_id)
    _check(_cudart().cudaSetDevice(device_id), "cudaSetDevice")
    logger = trt.Logger(trt.Logger.WARNING)
    written = {}
    for kind, spec in specs.items():
        builder = trt.Builder(logger)
        # Strongly typed: TensorRT keeps the graph's own types (fp16 graph, int8 QDQ) instead of
        # choosing precisions itself, so the engine computes what the verified ONNX computes.
        network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
        parser = trt.OnnxParser(network, logger)
        if variant == "int8":
            # Its int32 bias DequantizeLinear (for ONNX Runtime's fusion) are folded to float first.
            from mspn.runtime.qdq import tensorrt_ready_bytes
            parsed = parser.parse(tensorrt_ready_bytes(paths[kind]), str(paths[kind]))
        else:
            parsed = parser.parse_from_file(str(paths[kind]))
        if not parsed:
            errors = [str(parser.get_error(i)).strip().replace("\n", " ") for i in range(parser.num_errors)]
            raise MSPNError(f"{paths[kind]}: TensorRT's ONNX parser failed with {len(errors)} error(s): "
                            + " | ".join(errors))
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
        profile = builder.create_optimization_profile()
        shapes = {t.name: t.shape for t in spec.inputs}
        for i in range(network.num_inputs):
            name = network.get_input(i).name
            if name not in shapes:
                raise MSPNError(f"{paths[kind]}: graph input {name!r} is not in the manifest")
            profile.set_shape(name, *_profile_shapes(shapes[name], (bmin, bopt, bmax)))
        config.add_optimization_profile(profile)
        cache = None
        if timing_cache is not None:
            cache_path = Path(timing_cache)
            cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
            config.set_timing_cache(cache, ignore_mismatch=False)
        log(f"building {kind} {variant} engine (batch {bmin}/{bopt}/{bmax}) on {device['gpu']} ...")
        start = time.perf_counter()
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise MSPNError(f"TensorRT could not build the {variant} {kind} engine from {spec.file} "
                            f"(its log above says why)")
        if cache is not None:
            atomic_write_bytes(timing_cache, bytes(config.get_timing_cache().serialize()))
        name = f"{kind}.{variant}.engine"
        atomic_write_bytes(folder / name, bytes(serialized))
        (folder / name).chmod(0o644)  # the atomic writer's temporary is private; a model folder is not
        log(f"wrote {folder / name} in {time.perf_counter() - start:.1f} s")
        written[name] = {"graph": kind, "variant": variant, "source": spec.file, **device,
                         "tensorrt_version": trt.__version__,
                         "profile": {"min": bmin, "opt": bopt, "max": bmax}}
    _record_engines(folder, written)
    return list(written)


def build_engine_from_args(args) -> list[str]:
    """`mspn build-engine MODEL_DIR ...`: unset batch bounds default to the manifest's."""
    manifest = Manifest.load(args.model_dir)
    bmin = args.min_batch or manifest.batch_min
    bmax = args.max_batch or manifest.batch_max
    bopt = args.opt_batch or min(max(manifest.batch_opt, bmin), bmax)
    return build_engine(args.model_dir, variant=args.variant, workspace_gib=args.workspace,
                        timing_cache=args.timing_cache, batch=(bmin, bopt, bmax),
                        graphs=tuple(args.graphs or GRAPHS))


def _record_engines(folder: Path, engines: dict) -> None:
    """Add the engines and their SHA-256 to the manifest (re-read, so nothing else is lost)."""
    path = folder / "manifest.json"
    raw = json.loads(path.read_text())
    raw.setdefault("engines", {}).update(engines)
    for name in engines:
        raw["files"][name] = sha256_file(folder / name)
    atomic_write_json(path, raw)
    path.chmod(0o644)


# --- runner -----------------------------------------------------------------------------------

@dataclass
class _StateBuffers:
    """A stream session's device state: ``current`` feeds the next step, ``spare`` receives it."""

    batch: int
    current: dict[str, int]
    spare: dict[str, int]


class TensorRTRunner(Runner):
    """One engine, one execution context (TensorRT contexts are not thread-safe: a lock)."""

    backend = "tensorrt"

    def __init__(self, manifest: Manifest, graph, path: Path, record: dict, device_id: int = 0):
        super().__init__(manifest, graph)
        self.path = path
        self.record = record
        self.device_id = int(device_id)
        self._lock = threading.Lock()
        self.engine = self.context = self.stream = self._device = None

    def check_compatible(self, trt_version: str, device: dict) -> None:
        """Refuse an engine built for another GPU or TensorRT version (TensorRT would fail later)."""
        built = self.record
        if built.get("tensorrt_version") != trt_version:
            raise MSPNError(f"{self.path.name} was built with TensorRT {built.get('tensorrt_version')} but this is "
                            f"TensorRT {trt_version}; rebuild it with `mspn build-engine`")
        if (built.get("gpu"), built.get("compute_capability")) != (device["gpu"], device["compute_capability"]):
            raise MSPNError(f"{self.path.name} was built for {built.get('gpu')} (compute capability "
                            f"{built.get('compute_capability')}) but this GPU is {device['gpu']} "
                            f"({device['compute_capability']}); rebuild it with `mspn build-engine`")

    def _activate(self) -> None:
        trt = _trt()
        self.check_compatible(trt.__version__, gpu_info(self.device_id))
        cudart = _cudart()
        _check(cudart.cudaSetDevice(self.device_id), "cudaSetDevice")
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._trt_runtime = trt.Runtime(self._logger)
        self.engine = self._trt_runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise MSPNError(f"{self.path}: TensorRT could not deserialize the engine (see its log above)")
        self.context = self.engine.create_execution_context()
        self.stream = _check(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self._device = _Device()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self._inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._outputs = [n for n in names if n not in self._inputs]
        self._dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        expected = {t.name for t in self.graph.inputs} | set(self.output_names)
        if set(names) != expected:
            raise MSPNError(f"{self.path.name}: engine tensors {sorted(names)} do not match the manifest's "
                            f"{sorted(expected)}; rebuild the engine")
        self.max_batch = int(self.record.get("profile", {}).get("max", self.manifest.batch_max))
        # Buffers for every tensor at the profile's max batch, allocated once. Stream sessions
        # bring their own state buffers; the shared ones serve infer() and the step's frame I/O.
        specs = {t.name: t.shape for t in (*self.graph.inputs, *self.graph.outputs)}
        self._buffers = {n: self._device.malloc(self._nbytes(specs[n], self.max_batch, n)) for n in names}

    def _nbytes(self, shape, batch: int, name: str) -> int:
        dims = [batch if d == "batch" else int(d) for d in shape]
        return int(np.prod(dims)) * self._dtypes[name].itemsize

    def _deactivate(self) -> None:
        with self._lock:
            if self._device is not None:
                self._device.free_all()
            if self.stream is not None:
                _check(_cudart().cudaStreamDestroy(self.stream), "cudaStreamDestroy")
            self.context = self.engine = self.stream = self._device = None

    def dtype_of(self, name: str):
        return self._dtypes.get(name, np.dtype(np.float32)) if self._device else super().dtype_of(name)

    def _run(self, feed: dict[str, np.ndarray], addresses: dict[str, int],
             fetch: list[str]) -> dict[str, np.ndarray]:
        """Upload feed, bind every tensor's address, execute, download ``fetch``. Holds the lock."""
        batch = next(iter(feed.values())).shape[0]
        if batch > self.max_batch:
            raise MSPNError(f"batch {batch} exceeds the engine's profile max {self.max_batch}; rebuild with --max-batch")
        for name, value in feed.items():
            host = np.ascontiguousarray(value, dtype=self._dtypes[name])
            self._device.upload(addresses[name], host, self.stream)
        for name in self._inputs:
            if name not in feed:  # device-resident state: same shape as its host original
                continue
            if not self.context.set_input_shape(name, tuple(feed[name].shape)):
                raise MSPNError(f"{self.path.name}: TensorRT refused input shape {feed[name].shape} for {name}")
        for name in self._inputs + self._outputs:
            self.context.set_tensor_address(name, int(addresses[name]))
        if not self.context.execute_async_v3(int(self.stream)):
            raise MSPNError(f"{self.path.name}: TensorRT execute_async_v3 failed (see its log)")
        out = {}
        for name in fetch:
            host = np.empty(tuple(self.context.get_tensor_shape(name)), dtype=self._dtypes[name])
            self._device.download(host, addresses[name], self.stream)
            out[name] = host
        _check(_cudart().cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
        return {k: v.astype(np.float32, copy=False) for k, v in out.items()}

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self._lock:
            return self._run(feed, self._buffers, self._outputs)

    # --- device-resident streaming state ---------------------------------------------------------
    def new_state(self, state: dict[str, np.ndarray]) -> Any:
        batch = next(iter(state.values())).shape[0]
        if batch > self.max_batch:
            raise MSPNError(f"batch {batch} exceeds the engine's profile max {self.max_batch}")
        with self._lock:
            current, spare = {}, {}
            for name, value in state.items():
                host = np.ascontiguousarray(value, dtype=self._dtypes[name])
                current[name] = self._device.malloc(host.nbytes)
                spare[name] = self._device.malloc(host.nbytes)
                self._device.upload(current[name], host, self.stream)
            self._state_shapes = {n: v.shape for n, v in state.items()}
            _check(_cudart().cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
        return _StateBuffers(batch, current, spare)

    def step(self, handle: _StateBuffers, feed: dict[str, np.ndarray]):
        if not self.is_active:
            raise MSPNError("tensorrt runner is not active; call activate() first")
        self.check_feed(feed, names=list(feed))
        start = time.perf_counter()
        names = self.manifest.state_names
        with self._lock:
            for name in names:  # state shapes: (batch, ...) of the session
                shape = (handle.batch, *self._state_shapes[name][1:])
                if not self.context.set_input_shape(name, shape):
                    raise MSPNError(f"{self.path.name}: TensorRT refused state shape {shape} for {name}")
            addresses = dict(self._buffers)
            addresses.update(handle.current)
            addresses.update({f"{n}_out": handle.spare[n] for n in names})
            host_outputs = [n for n in self._outputs if not n.endswith("_out")]
            out = self._run(feed, addresses, host_outputs)
        handle.current, handle.spare = handle.spare, handle.current
        self._local.latency = time.perf_counter() - start
        return out, handle

    def free_state(self, handle: _StateBuffers) -> None:
        if self._device is None:
            return
        with self._lock:
            for ptr in (*handle.current.values(), *handle.spare.values()):
                self._device.free(ptr)


DEFAULTS = {"device_id": 0}


def build_runner(manifest: Manifest, kind: str, variant: str, **options) -> TensorRTRunner:
    options = split_options(options, DEFAULTS, "tensorrt")
    name, record = manifest.engine_for(kind, variant)
    return TensorRTRunner(manifest, manifest.graph(kind, variant), manifest.verified_path(name), record,
                          options["device_id"])
