"""The runner contract every backend implements, input validation, and the backend factory.

A runner wraps one graph (rollout or step) of a model folder on one backend:
``activate()`` loads it, ``input_metadata()`` describes its inputs, ``infer({name: array})``
returns ``{name: array}``, ``deactivate()`` frees it, ``last_latency`` is the last infer's wall
time in seconds. ``infer`` and ``step`` are templates: the checks (active, inputs) and the timing
happen here, once, and backends implement ``_infer`` / ``_step`` only.

Streaming goes through ``new_state`` / ``step``: the recurrent state is an opaque handle owned by
the runner, so GPU backends keep it on the device between steps; the default keeps numpy arrays.

Each backend module also has a loader (``load_session``, ``compile_model``, ...): the one
function that turns a graph file into a backend session, used by its runner and by the
benchmark's ceiling and profiler alike.
"""
from __future__ import annotations

import importlib
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import numpy as np

from mspn import extras
from mspn.errors import MSPNError

from .manifest import GraphSpec, Manifest, TensorSpec  # noqa: F401  (re-exported)

_DTYPES = {"float32": np.float32, "float16": np.float16, "int64": np.int64, "int32": np.int32}


class Runner(ABC):
    """One graph on one backend. Thread-safe ``infer`` unless a subclass says otherwise."""

    backend = "base"

    def __init__(self, manifest: Manifest, graph: GraphSpec):
        self.manifest = manifest
        self.graph = graph
        self.is_active = False
        self._local = threading.local()  # last_latency per thread: threads share one runner

    # --- contract ------------------------------------------------------------------------------
    def activate(self) -> Runner:
        if not self.is_active:
            self._activate()
            self.is_active = True
        return self

    def deactivate(self) -> None:
        if self.is_active:
            self._deactivate()
            self.is_active = False

    def check_available(self) -> Any:  # noqa: B027 - optional: most backends check on activate
        """A cheap check that this backend can run here (package, provider), raising MSPNError;
        Predictor.load calls it, so a missing package fails the load although graphs load lazily."""

    def input_metadata(self) -> dict[str, TensorSpec]:
        """{name: TensorSpec} in graph order; dynamic axes are named symbols (e.g. "batch")."""
        return {t.name: t for t in self.graph.inputs}

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.graph.outputs]

    @property
    def last_latency(self) -> float | None:
        """Wall time in seconds of this thread's last ``infer`` or ``step``."""
        return getattr(self._local, "latency", None)

    def infer(self, feed: dict[str, np.ndarray], check: bool = True) -> dict[str, np.ndarray]:
        """feed: {input name: array} -> {output name: float32 array}, after validating the feed."""
        self._check_active()
        if check:
            self.check_feed(feed)
        start = time.perf_counter()
        out = self._infer(feed)
        self._local.latency = time.perf_counter() - start
        self.check_outputs(out, self._batch_of(feed))
        return out

    def _check_active(self) -> None:
        if not self.is_active:
            raise MSPNError(f"{self.backend} runner for {self.graph.file} is not active; call activate() first")

    def __enter__(self):
        return self.activate()

    def __exit__(self, *exc):
        self.deactivate()

    # --- validation (once, for every backend) ---------------------------------------------------
    def check_feed(self, feed: dict[str, np.ndarray], names: list[str] | None = None) -> None:
        """Names, dtypes, ranks, fixed dims, one consistent value per symbolic dim, batch range."""
        meta = self.input_metadata()
        names = list(meta) if names is None else names
        missing = [n for n in names if n not in feed]
        extra = [n for n in feed if n not in meta]
        if missing or extra:
            raise MSPNError(f"{self.graph.file}: inputs do not match the graph (missing: "
                            f"{', '.join(missing) or 'none'}; unexpected: {', '.join(extra) or 'none'})")
        symbols: dict[str, int] = {}
        for name in names:
            spec, value = meta[name], feed[name]
            want = _DTYPES.get(spec.dtype)
            if not isinstance(value, np.ndarray) or (want is not None and value.dtype != want):
                got = value.dtype if isinstance(value, np.ndarray) else type(value).__name__
                raise MSPNError(f"{self.graph.file}: input {name} must be a {spec.dtype} array, got {got}")
            if value.ndim != len(spec.shape):
                raise MSPNError(f"{self.graph.file}: input {name} must have {len(spec.shape)} dims "
                                f"{list(spec.shape)}, got shape {value.shape}")
            for axis, (dim, size) in enumerate(zip(spec.shape, value.shape, strict=True)):
                if isinstance(dim, int) and dim >= 0:
                    if size != dim:
                        raise MSPNError(f"{self.graph.file}: input {name} axis {axis} must be {dim} "
                                        f"(shape {list(spec.shape)}), got shape {value.shape}")
                elif symbols.setdefault(str(dim), size) != size:
                    raise MSPNError(f"{self.graph.file}: axis {dim!r} is {symbols[str(dim)]} in one input "
                                    f"but {size} in {name}")
        batch = symbols.get("batch")
        m = self.manifest
        if batch is not None and not m.batch_min <= batch <= m.batch_max:
            raise MSPNError(f"batch {batch} is outside the model's range {m.batch_min}..{m.batch_max} "
                            f"(manifest batch); split the input")

    def check_graph(self, inputs: dict[str, tuple[str, tuple]], outputs: dict[str, tuple[str, tuple]]) -> None:
        """The loaded graph is what the manifest says: {name: (dtype, shape)} of its real inputs and
        outputs (shape: ints for fixed dims, anything else for dynamic ones) against the manifest's
        names, element types, ranks and fixed dims. Backends call this once, at activation."""
        for role, real, declared in (("inputs", inputs, self.graph.inputs), ("outputs", outputs, self.graph.outputs)):
            names = [t.name for t in declared]
            if sorted(real) != sorted(names):
                raise MSPNError(f"{self.graph.file}: the graph's {role} {sorted(real)} are not the manifest's "
                                f"{sorted(names)} for the {self.graph.variant} {self.graph.kind} graph; "
                                f"refusing a graph the manifest does not describe")
            for spec in declared:
                dtype, shape = real[spec.name]
                fixed = [(a, b) for a, b in zip(shape, spec.shape, strict=False) if isinstance(a, int)
                         and isinstance(b, int) and a >= 0]
                if dtype != spec.dtype or len(shape) != len(spec.shape) or any(a != b for a, b in fixed):
                    raise MSPNError(f"{self.graph.file}: {role[:-1]} {spec.name} is {dtype} {list(shape)} in the "
                                    f"graph but {spec.dtype} {list(spec.shape)} in the manifest")

    def check_metadata(self, metadata: dict[str, str]) -> None:
        """The graph's own ``mspn.graph`` / ``mspn.variant`` metadata_props (written by export) agree
        with the manifest entry that names it: an int8 file is never served as fp32. Graphs
        without them (exported before they existed) pass."""
        for key, expected in (("mspn.graph", self.graph.kind), ("mspn.variant", self.graph.variant)):
            found = metadata.get(key)
            if found is not None and found != expected:
                raise MSPNError(f"{self.graph.file}: the graph says it is {key.split('.')[1]} {found!r} but the "
                                f"manifest serves it as the {self.graph.variant} {self.graph.kind} graph")

    def _batch_of(self, feed: dict[str, np.ndarray]) -> int | None:
        for spec in self.graph.inputs:
            if spec.shape and isinstance(spec.shape[0], str) and spec.name in feed:
                return int(np.shape(feed[spec.name])[0])
        return None

    def check_outputs(self, out: dict[str, np.ndarray], batch: int | None) -> None:
        """Host outputs have the manifest's shape at this batch and hold only finite values."""
        for spec in self.graph.outputs:
            if spec.name not in out or not isinstance(out[spec.name], np.ndarray):
                continue  # device-resident state (GPU runners) stays unchecked on the host
            value = out[spec.name]
            if batch is not None and value.shape != spec.concrete(batch):
                raise MSPNError(f"{self.graph.file}: output {spec.name} came back with shape {value.shape}, "
                                f"not the manifest's {list(spec.concrete(batch))}; the graph is not what the "
                                f"manifest says")
            if value.dtype.kind == "f" and not np.isfinite(value).all():
                bad = int(np.count_nonzero(~np.isfinite(value)))
                raise MSPNError(f"{self.graph.file}: output {spec.name} holds {bad} NaN or infinite value(s); "
                                f"the graph or its weights are broken")

    # --- streaming state: numpy by default, device-resident in GPU runners ------------------------
    def dtype_of(self, name: str):
        """The numpy dtype the graph declares for an input (float16 in some fp16 exports)."""
        return _DTYPES.get(self.input_metadata()[name].dtype, np.float32)

    def new_state(self, state: dict[str, np.ndarray]) -> Any:
        """A state handle from host arrays {state name: (B, ...) float32}."""
        return {k: np.ascontiguousarray(v, dtype=self.dtype_of(k)) for k, v in state.items()}

    def step(self, handle: Any, feed: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], Any]:
        """One step of the step graph. feed: the non-state inputs (frame, open_loop).

        Returns the non-state outputs on the host ({"next_frame": (B, C, H, W)}) and the new handle.
        A host-side state (numpy arrays) is validated with the feed; a device handle was made by
        ``new_state`` from validated arrays.
        """
        self._check_active()
        host_state = isinstance(handle, dict) and all(isinstance(v, np.ndarray) for v in handle.values())
        self.check_feed({**feed, **handle} if host_state else feed,
                        names=None if host_state else list(feed))
        start = time.perf_counter()
        out = self._step(handle, feed)
        self._local.latency = time.perf_counter() - start
        self.check_outputs(out[0], self._batch_of(feed))
        return out

    def _step(self, handle: Any, feed: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], Any]:
        """The backend's step; by default one ``_infer`` with the state as plain inputs."""
        out = self._infer({**feed, **handle})
        names = self.manifest.state_names
        return ({k: v for k, v in out.items() if not k.endswith("_out")},
                {n: out[f"{n}_out"] for n in names})

    def free_state(self, handle: Any) -> None:  # noqa: B027 - optional: host state needs no freeing
        """Release a state handle (device memory in GPU runners)."""

    # --- backend hooks ----------------------------------------------------------------------------
    @abstractmethod
    def _activate(self) -> None: ...

    @abstractmethod
    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def _deactivate(self) -> None:  # noqa: B027 - optional: most sessions are freed with the runner
        pass


# --- factory: backend name -> builder(manifest, graph kind, variant, **options) -> Runner --------

def _lazy(module: str, function: str) -> Callable[..., Runner]:
    """A builder that imports its backend module only when used, keeping imports torch-free."""
    def build(*args, **kwargs):
        return getattr(importlib.import_module(module), function)(*args, **kwargs)
    return build


REGISTRY: dict[str, Callable[..., Runner]] = {
    "onnxruntime": _lazy("mspn.runtime.onnxruntime_backend", "build_runner"),
    "openvino": _lazy("mspn.runtime.openvino_backend", "build_runner"),
    "tensorrt": _lazy("mspn.runtime.tensorrt_backend", "build_runner"),
    # The reference backend needs torch and the model code, so it lives in mspn, not in runtime.
    "torch": _lazy("mspn.torch_backend", "build_runner"),
}


def make_runner(backend: str, manifest: Manifest, kind: str, variant: str, **options) -> Runner:
    """The runner of a graph ("rollout" | "step") of a variant on a backend, not yet activated."""
    builder = REGISTRY.get(backend)
    if builder is None:
        raise MSPNError(f"unknown backend {backend!r}; choose one of {', '.join(REGISTRY)}")
    return builder(manifest, kind, variant, **options)


def require(module: str, extra: str, what: str):
    """Import a backend's package or fail with the extra that installs it (mspn.extras)."""
    return extras.require(module, extra, purpose=what)


def split_options(options: dict, known: dict, backend: str) -> dict:
    """Refuse options a backend does not know (typos would otherwise be silently ignored)."""
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise MSPNError(f"unknown {backend} option(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    for name, value in options.items():  # the defaults' types: threads=0 takes whole numbers >= 0
        default = known[name]
        if isinstance(default, bool) and not isinstance(value, bool | None):
            raise MSPNError(f"{backend} option {name} must be True or False, got {value!r}")
        if type(default) is int and (isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0):
            raise MSPNError(f"{backend} option {name} must be a whole number >= 0, got {value!r}")
    return {**known, **options}
