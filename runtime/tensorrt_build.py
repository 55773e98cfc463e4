"""TensorRT engine build (``mspn build-engine``): a model folder's graphs -> serialized engines.

TensorRT 10+ API only: strongly typed network (precision comes from the exported graph itself:
the fp16 graph or the int8 QDQ graph, no builder precision flags), every ONNX parser error
surfaced, one optimisation profile from the manifest's batch range, optional timing cache,
atomic write; the engine's GPU name, compute capability, TensorRT version and hardware
compatibility level go into the manifest through its one writer. Imported lazily; needs the gpu
extra and an NVIDIA GPU.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from mspn.errors import MSPNError
from mspn.fileio import atomic_write_bytes
from mspn.options import BuildEngineOptions

from .manifest import GRAPHS, Manifest, write_manifest
from .tensorrt_backend import HARDWARE_COMPAT, _capability, _check, _cudart, _trt, gpu_info


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
                 graphs: tuple[str, ...] = GRAPHS, device_id: int = 0, log=None,
                 hardware_compat: bool = False) -> list[str]:
    """Build ``{graph}.{variant}.engine`` for each graph into the folder and record them.

    batch: (min, opt, max) of the optimisation profile, inside the manifest's batch range;
    default: the manifest's. hardware_compat: engines TensorRT runs on any GPU of compute
    capability 8.0 (Ampere) or later (HardwareCompatibilityLevel.AMPERE_PLUS; fewer tactics, so
    possibly slower); needs an Ampere or later GPU to build on. Returns the engine file names written.
    """
    log = log or logging.getLogger("mspn.build_engine").info
    manifest = Manifest.load(model_dir)
    folder = manifest.folder
    bmin, bopt, bmax = batch or (manifest.batch_min, manifest.batch_opt, manifest.batch_max)
    if not (manifest.batch_min <= bmin <= bopt <= bmax <= manifest.batch_max):
        raise MSPNError(f"batch profile {bmin}/{bopt}/{bmax} (min/opt/max) must satisfy min <= opt <= max "
                        f"inside the model's batch range {manifest.batch_min}..{manifest.batch_max}")
    if workspace_gib <= 0:
        raise MSPNError(f"--workspace must be a positive number of GiB, got {workspace_gib}")
    specs = {kind: manifest.graph(kind, variant) for kind in graphs}
    paths = {kind: manifest.verified_graph(spec) for kind, spec in specs.items()}
    trt = _trt()
    device = gpu_info(device_id)
    level = "ampere_plus" if hardware_compat else "none"
    if hardware_compat and (_capability(device["compute_capability"]) or (0, 0)) < HARDWARE_COMPAT[level]:
        raise MSPNError(f"--hardware-compat builds on Ampere or later GPUs (compute capability 8.0+); "
                        f"{device['gpu']} has {device['compute_capability']}")
    _check(_cudart().cudaSetDevice(device_id), "cudaSetDevice")
    logger = trt.Logger(trt.Logger.WARNING)
    written = {}
    for kind, spec in specs.items():
        network, builder, _parser = _parse(trt, logger, paths[kind], variant)
        config = _builder_config(trt, builder, network, spec, paths[kind], (bmin, bopt, bmax), workspace_gib)
        if hardware_compat:
            config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS
        cache = _attach_timing_cache(config, timing_cache)
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
                         "tensorrt_version": trt.__version__, "hardware_compatibility": level,
                         "profile": {"min": bmin, "opt": bopt, "max": bmax}}
    _record_engines(folder, written)
    return list(written)


def _parse(trt, logger, path: Path, variant: str):
    """A strongly typed TensorRT network parsed from a graph file: (network, builder, parser);
    the parser owns the weights the network points to, so callers keep it while building.

    Strongly typed: TensorRT keeps the graph's own types (fp16 graph, int8 QDQ) instead of choosing
    precisions itself, so the engine computes what the verified ONNX computes.
    """
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if variant == "int8":
        # Its int32 bias DequantizeLinear (for ONNX Runtime's fusion) are folded to float first.
        from mspn.runtime.qdq import tensorrt_ready_bytes
        parsed = parser.parse(tensorrt_ready_bytes(path), str(path))
    else:
        parsed = parser.parse_from_file(str(path))
    if not parsed:
        errors = [str(parser.get_error(i)).strip().replace("\n", " ") for i in range(parser.num_errors)]
        raise MSPNError(f"{path}: TensorRT's ONNX parser failed with {len(errors)} error(s): " + " | ".join(errors))
    return network, builder, parser


def _builder_config(trt, builder, network, spec, path: Path, batch: tuple[int, int, int], workspace_gib: float):
    """Workspace limit and one optimisation profile over the batch range for every input."""
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    profile = builder.create_optimization_profile()
    shapes = {t.name: t.shape for t in spec.inputs}
    for i in range(network.num_inputs):
        name = network.get_input(i).name
        if name not in shapes:
            raise MSPNError(f"{path}: graph input {name!r} is not in the manifest")
        profile.set_shape(name, *_profile_shapes(shapes[name], batch))
    config.add_optimization_profile(profile)
    return config


def _attach_timing_cache(config, timing_cache):
    """Load (or start) the timing cache file into the config; None without one."""
    if timing_cache is None:
        return None
    cache_path = Path(timing_cache)
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    return cache


def build_engine_command(args: BuildEngineOptions) -> list[str]:
    """`mspn build-engine --model DIR ...`: unset batch bounds default to the manifest's."""
    manifest = Manifest.load(args.model)
    bmin = args.min_batch or manifest.batch_min
    bmax = args.max_batch or manifest.batch_max
    bopt = args.opt_batch or min(max(manifest.batch_opt, bmin), bmax)
    return build_engine(args.model, variant=args.variant, workspace_gib=args.workspace,
                        timing_cache=args.timing_cache, batch=(bmin, bopt, bmax),
                        graphs=tuple(args.graphs or GRAPHS), hardware_compat=args.hardware_compat)


def _record_engines(folder: Path, engines: dict) -> None:
    """Add the engines to the manifest (re-read, so nothing else is lost) and re-hash the folder."""
    raw = json.loads((folder / "manifest.json").read_text())
    raw.setdefault("engines", {}).update(engines)
    write_manifest(folder, raw)
