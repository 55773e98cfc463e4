"""The native TensorRT runner and the CUDA helpers it shares with the engine builder
(mspn.runtime.tensorrt_build, ``mspn build-engine``).

Imported lazily (only when backend="tensorrt" or build-engine is used); needs the gpu extra:
tensorrt >= 10 and cuda-python, plus an NVIDIA GPU. TensorRT 10+ API only:

* run: name-based tensor API (num_io_tensors, get_tensor_name, set_input_shape,
  set_tensor_address) and execute_async_v3 on a CUDA stream; device buffers allocated once at
  the profile's max batch and freed on deactivate. An engine built for another GPU or TensorRT
  version is refused before TensorRT is asked to deserialize it.

Streaming keeps the recurrent state on the device: each session owns two sets of state buffers
used ping-pong (inputs of one step are the outputs of the previous), so only the frame goes up
and the predicted frame comes back per step.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mspn.errors import MSPNError

from .base import Runner, require, split_options
from .manifest import Manifest

# --- imports and CUDA helpers -----------------------------------------------------------------

def _trt():
    trt = require("tensorrt", "gpu", "the TensorRT backend")
    major = int(trt.__version__.split(".")[0])
    if major < 10:
        raise MSPNError(f"TensorRT {trt.__version__} is too old: this runtime uses the TensorRT 10+ API; "
                        f"pip install 'mspn[gpu]'")
    return trt


def _cudart():
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        cudart = require("cuda.cudart", "gpu", "the TensorRT backend (cuda-python)")  # older cuda-python
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

# --- runner -----------------------------------------------------------------------------------

@dataclass
class _StateBuffers:
    """A stream session's device state: ``current`` feeds the next step, ``spare`` receives it."""

    batch: int
    current: dict[str, int]
    spare: dict[str, int]


HARDWARE_COMPAT = {"none": None, "ampere_plus": (8, 0)}  # recorded level -> lowest compute capability


def _capability(text) -> tuple[int, int] | None:
    try:
        major, minor = str(text).split(".")
        return int(major), int(minor)
    except ValueError:
        return None


def engine_incompatibility(record: dict, trt_version: str, compute_capability: str) -> str | None:
    """Why TensorRT ``trt_version`` cannot run an engine (its manifest record) on a GPU of
    ``compute_capability`` ("8.9"), or None when it can.

    What TensorRT itself checks: the exact TensorRT version (engines are not version-compatible
    unless built so, which build-engine does not do) and the compute capability, which must equal
    the builder GPU's unless the engine was built hardware-compatible ("ampere_plus": any GPU of
    compute capability 8.0 or later). The GPU's marketing name does not matter: an engine built on
    one 8.9 card runs on another.
    """
    built_version = record.get("tensorrt_version")
    if built_version != trt_version:
        return f"was built with TensorRT {built_version} but this is TensorRT {trt_version}"
    level = record.get("hardware_compatibility") or "none"
    if level not in HARDWARE_COMPAT:
        return f"has hardware compatibility {level!r}, unknown to this runtime"
    built, here = record.get("compute_capability"), compute_capability
    lowest = HARDWARE_COMPAT[level]
    if lowest is None:
        if _capability(built) is None or _capability(built) != _capability(here):
            return (f"was built for compute capability {built} ({record.get('gpu')}) but this GPU has "
                    f"{here}; build with --hardware-compat for engines that run on later GPUs")
        return None
    if _capability(here) is None or _capability(here) < lowest:
        return (f"was built hardware-compatible ({level}) for compute capability "
                f"{lowest[0]}.{lowest[1]} and later, but this GPU has {here}")
    return None


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
        """Refuse an engine this TensorRT cannot run on this GPU (see engine_incompatibility)."""
        reason = engine_incompatibility(self.record, trt_version, device["compute_capability"])
        if reason:
            raise MSPNError(f"{self.path.name} {reason}; rebuild it with `mspn build-engine`")

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
            raise MSPNError(f"batch {batch} exceeds the engine's profile max {self.max_batch}; "
                            f"rebuild with --max-batch")
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

    def _step(self, handle: _StateBuffers, feed: dict[str, np.ndarray]):
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
