"""`mspn export`: checkpoint -> verified model folder (docs/model-folder.md).

Everything is written into a temporary folder next to the target and renamed onto it only after
every check passed, so a failure leaves no half-written model folder.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mspn.errors import MSPNError
from mspn.export.budget import BudgetMissed
from mspn.export.spec import ExportSpec
from mspn.options import ExportOptions  # noqa: F401  (re-exported: export_model takes it)

GRAPHS = ("rollout", "step")
# How rollout.onnx is made (ExportOptions.rollout): "unrolled" exports the open- and closed-loop
# steps and wires copies of them in ONNX (seconds, at any horizon); "traced" exports the whole
# unrolled PyTorch loop (its export time grows faster than the horizon: minutes to hours for the
# paper configs).


# --- inputs ---------------------------------------------------------------------------------------

def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not force:
        raise MSPNError(f"output folder {out} already exists (use --force to replace it)")
    if out.exists() and not out.is_dir():
        raise MSPNError(f"output path {out} exists and is not a folder")


def make_spec(options: ExportOptions, checkpoint) -> ExportSpec:
    """The ExportSpec from the checkpoint's config and the user's options (validated)."""
    config = checkpoint.config
    model = config.model
    height, width = options.size or tuple(checkpoint.frame_size)
    order = options.channel_order or ("gray" if model.frame_channels == 1 else "bgr")
    return ExportSpec(
        name=config.name,
        context=config.data.context if options.context is None else options.context,
        horizon=config.data.pred_steps if options.horizon is None else options.horizon,
        height=int(height), width=int(width), channels=model.frame_channels, levels=model.levels,
        hidden=model.hidden, size_multiple=model.size_multiple, channel_order=order,
        opset=options.opset, static_batch=options.static_batch,
        batch_max=max(1, options.max_batch), batch_opt=1,
        precisions=tuple(options.variants), fp32_max_abs=options.tolerance,
        psnr_floor=options.psnr_floor, verify_seed=options.seed, config=config.to_dict(),
    ).validate()


def load_clips(root: str, splits: tuple[str, ...], spec: ExportSpec, count: int, what: str) -> tuple[np.ndarray, str]:
    """Up to ``count`` clips of T_ctx + T_pred frames, evenly spread over the first split found.

    Returns ((N, T_ctx, C, H, W) float32 context frames, split name). Refuses clips of another
    channel count or frame size than the spec's.
    """
    clips, used = read_clips(root, splits, spec, count, what)
    return check_clips(clips, spec, f"{what} {root} ({used})"), used


def read_clips(root: str, splits: tuple[str, ...], spec: ExportSpec, count: int, what: str) -> tuple[np.ndarray, str]:
    """As load_clips, but whole clips: ((N, T_ctx + T_pred, C, H, W) float32, split name)."""
    if not Path(root).is_dir():
        raise MSPNError(f"{what} folder not found: {root}")
    try:
        from mspn.data.clips import ClipDataset
    except ImportError as exc:
        raise MSPNError(f"{what}: mspn.data.clips is not available ({exc})") from None
    dataset, used, reasons = None, None, []
    for split in splits:
        try:
            dataset, used = ClipDataset(root, split, spec.context + spec.horizon), split
            if len(dataset):
                break
            reasons.append(f"{split}: no clips")
            dataset = None
        except (MSPNError, FileNotFoundError, OSError, ValueError) as exc:
            reasons.append(f"{split}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
    if dataset is None:
        raise MSPNError(f"{what} {root}: no usable split ({'; '.join(reasons)})")
    index = np.unique(np.linspace(0, len(dataset) - 1, num=min(count, len(dataset))).round().astype(int))
    clips = np.stack([np.asarray(dataset[int(i)], dtype=np.float32) for i in index])
    check_clips(clips, spec, f"{what} {root} ({used})")
    return clips, used


def check_clips(clips: np.ndarray, spec: ExportSpec, what: str) -> np.ndarray:
    """(N, T, C, H, W) with T >= T_ctx, matching channels and size -> (N, T_ctx, C, H, W) float32."""
    if clips.ndim != 5:
        raise MSPNError(f"{what}: clips must be (N, T, C, H, W), got shape {clips.shape}")
    _, t, c, h, w = clips.shape
    if c != spec.channels or (h, w) != (spec.height, spec.width):
        raise MSPNError(f"{what}: clips have {c} channel(s) at {h}x{w}; the model takes "
                        f"{spec.channels} channel(s) at {spec.height}x{spec.width}")
    if t < spec.context:
        raise MSPNError(f"{what}: clips have {t} frames, fewer than the context {spec.context}")
    return np.ascontiguousarray(clips[:, :spec.context], dtype=np.float32)


def _chunks(frames: np.ndarray, spec: ExportSpec):
    """Split a clip batch into batches the graphs accept (a static batch is padded by repetition)."""
    size = spec.static_batch or spec.batch_max
    for start in range(0, len(frames), size):
        chunk = frames[start:start + size]
        valid = len(chunk)
        if spec.static_batch and valid < size:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], size - valid, axis=0)])
        yield chunk, valid


def _batched(fn, frames: np.ndarray, spec: ExportSpec) -> np.ndarray:
    return np.concatenate([fn(chunk)[:valid] for chunk, valid in _chunks(frames, spec)])


# --- checks ---------------------------------------------------------------------------------------

def _graph_parity(path: Path, graph: str, spec: ExportSpec, initial: dict, inputs: dict,
                  reference: dict) -> dict:
    """{set name: compare()} for one graph file against the PyTorch rollout."""
    from mspn.export import verify
    session = verify.ort_session(path)
    if graph == "rollout":
        run = lambda x: verify.rollout_outputs(session, x)  # noqa: E731
    else:
        step = verify.session_step(session)
        run = lambda x: verify.run_step_loop(step, initial, x, spec.horizon, spec.state_names())  # noqa: E731
    return {name: verify.compare(_batched(run, frames, spec), reference[name])
            for name, frames in inputs.items()}


def _summary(results: dict) -> tuple[float, float]:
    """(worst max abs, smallest PSNR) over input sets."""
    return (max(r["worst_max_abs"] for r in results.values()),
            min(r["min_psnr"] for r in results.values()))


def _export_verified(build, path: Path, graph: str, spec: ExportSpec, exporter: str,
                     initial: dict, inputs: dict, reference: dict) -> tuple[dict, dict]:
    """Export one graph, dynamo first; fall back to TorchScript when it fails or misses parity.

    build(exporter name) writes ``path`` and returns an ExportedGraph.
    Returns (export record, fp32 parity results). Raises MSPNError when no exporter passes.
    """
    from mspn.export import verify
    order = ["dynamo", "torchscript"] if exporter == "auto" else [exporter]
    failures = []
    for name in order:
        try:
            done = build(name)
            verify.check_model(path)
            results = _graph_parity(path, graph, spec, initial, inputs, reference)
        except MSPNError as exc:
            failures.append(f"{name}: {exc}")
            continue
        except Exception as exc:  # noqa: BLE001 - any exporter crash means: try the next one
            first_line = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            failures.append(f"{name}: {type(exc).__name__}: {first_line}")
            continue
        worst, _ = _summary(results)
        if worst > spec.fp32_max_abs:
            failures.append(f"{name}: max abs error vs PyTorch {worst:.3g} > tolerance {spec.fp32_max_abs:g}")
            continue
        record = {"exporter": name, "seconds": round(done.seconds, 2),
                  "fallback_reason": "; ".join(failures) or None}
        return record, results
    if path.exists():
        path.unlink()
    label = "step-loop" if graph == "step" else "rollout"
    raise MSPNError(f"fp32 {path.name} failed its {label} check against PyTorch: {' | '.join(failures)}")


# --- orchestration --------------------------------------------------------------------------------

def export_model(options: ExportOptions) -> dict:
    """Write and verify a model folder; returns the manifest. See docs/model-folder.md."""
    out = Path(options.out)
    _check_out(out, options.force)
    for label, folder in (("--data", options.data), ("--calib", options.calib)):
        if folder is not None and not Path(folder).is_dir():
            raise MSPNError(f"{label} folder not found: {folder}")

    if "int8" in options.variants:  # before any work: an explicit nncf without nncf fails here
        from mspn.export.openvino_int8 import resolve_method
        method = resolve_method(options.openvino_int8, logging.getLogger("mspn.export").info)
        if method == "qdq":  # auto keeps its name otherwise: it ships NNCF only where it is as accurate
            options = dataclasses.replace(options, openvino_int8=method)

    from mspn.checkpoint import load_checkpoint
    checkpoint = load_checkpoint(options.ckpt)
    spec = make_spec(options, checkpoint)
    inputs, data_info, calib, heldout = _load_inputs(spec, options)

    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(work, 0o777 & ~umask)  # mkdtemp's 0700 would make the model folder private
    try:
        manifest = _export_into(work, spec, options, checkpoint, inputs, data_info, calib, heldout)
        _replace(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return manifest


def _replace(work: Path, out: Path) -> None:
    """Put the finished folder at the target. A --force replacement swaps the two folders in one
    atomic rename (Linux renameat2 RENAME_EXCHANGE), so a kill at any moment leaves the old or the
    new folder at ``out``, never a mix or nothing; where the kernel or file system cannot swap,
    the old folder is moved aside first (then a kill between the two renames leaves it aside)."""
    if not out.exists():
        os.replace(work, out)
        return
    if _exchange(work, out):
        shutil.rmtree(work, ignore_errors=True)  # now holds the old folder
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    os.rmdir(old)
    os.replace(out, old)
    os.replace(work, out)
    shutil.rmtree(old, ignore_errors=True)


RENAME_EXCHANGE = 2  # linux/fs.h
AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths; False where renameat2 or RENAME_EXCHANGE is unavailable."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0


def heldout_splits(options: ExportOptions) -> tuple[str, ...]:
    """Splits parity and budget clips come from: test first, and never the calibration split."""
    calib_split = options.calib_split if options.calib and "int8" in options.variants else None
    return tuple(s for s in ("test", "val") if s != calib_split)


def _load_inputs(spec: ExportSpec, options: ExportOptions):
    """Parity inputs (seeded random clips, plus real clips with --data), int8 calibration clips
    and the held-out clips of the accuracy budget (whole clips: context and ground truth).

    Loaded before anything is written, so bad data fails fast with nothing to clean up.
    """
    rng = np.random.default_rng(spec.verify_seed)
    inputs = {"random": rng.random((spec.check_batch(), spec.context, spec.channels, spec.height,
                                    spec.width), dtype=np.float32)}
    data_info, heldout = None, None
    if options.data:
        splits = heldout_splits(options)
        inputs["data"], split = load_clips(options.data, splits, spec, options.verify_clips, "--data")
        data_info = {"root": str(options.data), "split": split, "clips": len(inputs["data"])}
        if len(spec.precisions) > 1:
            heldout = read_clips(options.data, (split,), spec, options.budget_clips, "--data")[0]
    calib = None
    if "int8" in spec.precisions and options.calib:
        calib, _ = load_clips(options.calib, (options.calib_split,), spec, options.calib_clips, "--calib")
    return inputs, data_info, calib, heldout


def _export_into(work: Path, spec: ExportSpec, options: ExportOptions, checkpoint, inputs: dict,
                 data_info: dict | None, calib: np.ndarray | None, heldout: np.ndarray | None) -> dict:
    from mspn.progress import tqdm

    stages = 5 + 2 * (len(spec.precisions) - 1)
    # Closed on failure too, so the error line is the last thing printed.
    with tqdm(total=stages, desc=f"export {spec.name}", unit="stage", disable=not options.progress,
              file=sys.stderr) as bar:
        return _stages(bar, work, spec, options, checkpoint, inputs, data_info, calib, heldout)


@dataclass
class _Run:
    """What the export's steps share: the working folder, spec, options, progress bar, the
    PyTorch model, its t = 0 state and the parity inputs with their PyTorch reference."""

    bar: Any
    work: Path
    spec: ExportSpec
    options: ExportOptions
    model: Any
    init: dict        # {state name: (1, ...) float32}
    inputs: dict      # {set name: (B, T_ctx, C, H, W) float32}
    reference: dict   # {set name: (B, T_pred, C, H, W) float32}, PyTorch's rollout
    held: Any = None  # budget.HeldOut: the clips the variants' accuracy budget is measured on
    budget: Any = None  # budget.Budget
    int8_feeds: dict = field(default_factory=dict)  # {graph: calibration feeds} of the int8 variant
    warnings: list = field(default_factory=list)

    def stage(self, text: str) -> None:
        self.bar.set_postfix_str(text)

    def done(self) -> None:
        self.bar.update()


def _stages(bar, work: Path, spec: ExportSpec, options: ExportOptions, checkpoint, inputs: dict,
            data_info: dict | None, calib: np.ndarray | None, heldout: np.ndarray | None) -> dict:
    """The export, step by step: reference, fp32 graphs, each variant, pre-flight, manifest."""
    started = time.perf_counter()
    run = _reference(bar, work, spec, options, checkpoint, inputs)
    export_records, fp32 = _fp32_graphs(run)
    verification = _fp32_verification(run, fp32, data_info)
    if len(spec.precisions) > 1:
        verification["budget"] = _heldout(run, heldout, data_info)
    graphs = {g: {"fp32": spec.graph_entry(g, "fp32")} for g in GRAPHS}
    rng = np.random.default_rng(spec.verify_seed + 1)
    refused = {}
    for variant in (v for v in spec.precisions if v != "fp32"):
        try:
            if variant == "fp16":
                record = _fp16_variant(run)
            else:
                record = _int8_variant(run, calib, rng)
            record["budget"].update(_budget_check(run, variant))
        except BudgetMissed as missed:  # the folder is still written, without this variant
            refused[variant] = _drop_variant(run, variant, missed)
            continue
        _check_floor(run, variant, record)
        verification["variants"][variant] = record
        for graph in GRAPHS:
            graphs[graph][variant] = spec.graph_entry(graph, variant)
        if variant == "int8":
            _openvino_int8(run, record, graphs)
    if refused:
        verification["refused"] = refused
        run.spec = dataclasses.replace(spec, precisions=tuple(v for v in spec.precisions if v not in refused))
    _finalize_graphs(run, graphs, export_records)
    trt = _preflight(run)
    manifest = _write_manifest(run, export_records, graphs, verification, trt, started)
    bar.close()  # before the warnings, so they are not interleaved with the bar
    _print_warnings(run.warnings, trt)
    return manifest


def _drop_variant(run: _Run, variant: str, missed: MSPNError) -> str:
    """Remove what a refused variant left in the working folder; its reason, for the manifest."""
    for graph in GRAPHS:
        (run.work / run.spec.graph_file(graph, variant)).unlink(missing_ok=True)
    return str(missed)


def _reference(bar, work: Path, spec: ExportSpec, options: ExportOptions, checkpoint, inputs: dict) -> _Run:
    """The t = 0 state (written to the folder) and PyTorch's rollout on every parity input."""
    from mspn.export import verify
    from mspn.export.wrappers import initial_state

    bar.set_postfix_str("initial state, PyTorch reference")
    model = checkpoint.build_model().float()
    init = {k: v.numpy().astype(np.float32) for k, v in initial_state(model, spec.height, spec.width).items()}
    np.savez(work / "initial_state.npz", **init)
    reference = {k: _batched(lambda x: verify.torch_rollout(model, x, spec.horizon), v, spec)
                 for k, v in inputs.items()}
    bar.update()
    return _Run(bar, work, spec, options, model, init, inputs, reference)


def _fp32_graphs(run: _Run) -> tuple[dict, dict]:
    """Both fp32 graphs, each verified the moment it is written: (export records, parity)."""
    spec, options = run.spec, run.options
    builders = _graph_builders(run.model, spec, run.init, options.rollout, run.work)
    export_records, fp32 = {}, {}
    for graph in GRAPHS:
        run.stage(f"fp32 {graph}")
        export_records[graph], fp32[graph] = _export_verified(
            builders[graph], run.work / spec.graph_file(graph, "fp32"), graph, spec, options.exporter,
            run.init, run.inputs, run.reference)
        run.done()
    export_records["rollout"]["build"] = options.rollout
    return export_records, fp32


def _fp32_verification(run: _Run, fp32: dict, data_info: dict | None) -> dict:
    spec = run.spec
    return {
        "reference": "PyTorch MSPN.rollout, float32",
        "inputs": {"random": {"clips": spec.check_batch(), "seed": spec.verify_seed}, "data": data_info},
        "fp32": {"tolerance_max_abs": spec.fp32_max_abs, "passed": True,
                 "rollout": fp32["rollout"], "step_loop": fp32["step"],
                 "worst_max_abs": _summary(fp32["rollout"])[0],
                 "step_loop_worst_max_abs": _summary(fp32["step"])[0]},
        "variants": {},
        "psnr_floor": spec.psnr_floor,
    }


def _heldout(run: _Run, heldout: np.ndarray | None, data_info: dict | None) -> dict:
    """Set run.held / run.budget: the budget's clips with the fp32 PyTorch rollout on them (real
    held-out clips with --data; without it the seeded random clips, PSNR only). Returns the
    manifest's budget record."""
    from mspn.export import budget, verify

    spec = run.spec
    run.budget = budget.Budget(psnr_db=run.options.budget_db)
    if heldout is None:
        context, truth = run.inputs["random"], None
        source = {"source": "synthetic random clips (no --data): SSIM not checked", "clips": len(context)}
        run.warnings.append("accuracy budget measured on synthetic random clips (no --data): pass held-out "
                            "real clips with --data")
    else:
        context = np.ascontiguousarray(heldout[:, :spec.context])
        truth = np.ascontiguousarray(heldout[:, spec.context:spec.context + spec.horizon])
        source = {"source": f"{data_info['root']} ({data_info['split']} split)", "clips": len(context)}
    reference = _batched(lambda x: verify.torch_rollout(run.model, x, spec.horizon), context, spec)
    run.held = budget.HeldOut(context, reference, truth, source)
    return {**run.budget.to_dict(), "clips": source, "horizon": spec.horizon,
            "fp32_ssim": None if truth is None else [round(float(v), 5) for v in run.held.reference_ssim]}


def _variant_rollout(path: Path, graph: str, run: _Run) -> np.ndarray:
    """One graph file's prediction on the held-out clips through ONNX Runtime: (N, T_pred, C, H, W)."""
    from mspn.export import verify

    session = verify.ort_session(path)
    return _heldout_prediction(graph, verify.session_step(session), lambda x: verify.rollout_outputs(session, x), run)


def _heldout_prediction(graph: str, step, rollout, run: _Run) -> np.ndarray:
    """The held-out clips' prediction (N, T_pred, C, H, W) of the rollout graph (``rollout``:
    frames -> future) or of the step graph looped closed (``step``: feed -> outputs)."""
    from mspn.export import verify

    if graph == "rollout":
        return _batched(rollout, run.held.context, run.spec)
    return _batched(lambda x: verify.run_step_loop(step, run.init, x, run.spec.horizon, run.spec.state_names()),
                    run.held.context, run.spec)


def _budget_figures(path: Path, graph: str, run: _Run) -> dict:
    from mspn.export import budget
    return budget.figures(_variant_rollout(path, graph, run), run.held, run.budget)


def _openvino_figures(path, graph: str, run: _Run) -> dict:
    """budget.figures of one graph (an ONNX or OpenVINO IR file, or an openvino.Model) run by
    OpenVINO as the runtime runs it."""
    from mspn.export import budget
    from mspn.export.openvino_int8 import compiled_runs

    return budget.figures(_heldout_prediction(graph, *compiled_runs(path), run), run.held, run.budget)


def _openvino_int8(run: _Run, record: dict, graphs: dict) -> None:
    """The int8 variant on OpenVINO (--openvino-int8): NNCF's OpenVINO-native int8 of both graphs
    (export/openvino_int8.py), written to openvino/ and named in the int8 graph entries as
    OpenVINO's override when it meets the budget run by OpenVINO; otherwise OpenVINO runs the ONNX
    QDQ graph. ``record["openvino"]``: the method OpenVINO runs, why, and both methods' figures."""
    import importlib.util

    from mspn.export import budget

    requested = run.options.openvino_int8
    out = record["openvino"] = {"requested": requested, "method": "qdq", "reason": None}
    if importlib.util.find_spec("openvino") is not None:
        run.stage("int8 QDQ graphs on openvino")
        out["qdq_budget"] = {g: _openvino_figures(run.work / run.spec.graph_file(g, "int8"), g, run) for g in GRAPHS}
    if requested == "qdq":  # resolved by export_model: auto without nncf became qdq
        out["reason"] = "--openvino-int8 qdq (or auto without nncf and openvino installed)"
        return
    started = time.perf_counter()
    nncf, models = _nncf_models(run, record["budget"]["plan"])
    out["nncf"] = dict(nncf, seconds=round(time.perf_counter() - started, 1))
    reason, note = _nncf_verdict(requested, nncf, out.get("qdq_budget"))
    if note:
        out["note"] = note
    if reason:
        out["reason"] = reason
        logging.getLogger("mspn.export").info(f"info: OpenVINO int8 runs the ONNX QDQ graph: {reason}")
        return
    from mspn.export.openvino_int8 import save_ir
    files = {graph: save_ir(model, run.work, graph) for graph, model in models.items()}
    out["method"] = "nncf"
    for graph, (xml, weights) in files.items():
        graphs[graph]["int8"]["openvino"] = {"file": xml, "weights": weights, "method": "nncf"}
    run.stage(f"openvino int8: nncf, {budget.describe(nncf['budget']['step'])}")


def _nncf_verdict(requested: str, nncf: dict, qdq: dict | None) -> tuple[str | None, str | None]:
    """(why OpenVINO runs the QDQ graph instead, or None to ship NNCF's model; a note, or None).

    Which of two models within the budget is more accurate can turn on a tenth of a dB and differ
    between CPUs (measured: NNCF ahead on an AVX2 VM, 0.16 dB behind on an AVX-512 VNNI one), so
    ``requested`` "auto" lets accuracy decide and an explicit "nncf" is honoured, the comparison
    noted. ``nncf``: _nncf_models' record (its "reason" when it misses the budget)."""
    if nncf.get("reason"):
        return nncf["reason"], None
    comparison = _less_accurate(nncf["budget"], qdq)
    if requested == "auto" or not comparison:
        return comparison, None
    return None, comparison.replace("the more accurate is kept", "NNCF kept: --openvino-int8 nncf")


def _less_accurate(nncf: dict, qdq: dict | None) -> str | None:
    """Why NNCF's int8 is not kept although within the budget: OpenVINO runs the QDQ graph more
    accurately (worst per-step PSNR vs fp32 over both graphs). The two run at about the same speed
    on OpenVINO (benchmarks/results/2026-12-01-issue13-budget.md), so accuracy decides."""
    if not qdq:
        return None
    nncf_db, qdq_db = (min(r["min_psnr"] for r in figures.values()) for figures in (nncf, qdq))
    if nncf_db >= qdq_db:
        return None
    return (f"NNCF's int8 meets the budget but OpenVINO runs the QDQ graph more accurately "
            f"({nncf_db:.2f} vs {qdq_db:.2f} dB min per-step PSNR vs fp32); the more accurate is kept")


def _nncf_models(run: _Run, plan: dict) -> tuple[dict, dict | None]:
    """NNCF int8 of the step graph, the ONNX plan's float32 blocks in NNCF's ignored scope; more
    blocks kept float32 only if the budget needs them (openvino_int8.search; blocks put back to
    float by openvino_int8.keep_float: no new quantization per try). The rollout is the fp32 step
    graph unrolled with the step model's FakeQuantize ops in every copy (openvino_int8.
    rollout_from_step), so it computes what the step loop computes, like the QDQ rollout.
    Returns (record, {graph: openvino.Model}) or (record with "reason", None)."""
    from mspn.export import budget
    from mspn.export import openvino_int8 as ovi

    base = list(plan["float_blocks"])
    record: dict = {"settings": {}, "budget": {}}
    run.stage("openvino int8 (nncf) step")
    step, block_of, record["settings"]["step"] = ovi.nncf_int8(
        run.work / run.spec.graph_file("step", "fp32"), run.int8_feeds["step"], base)
    found = ovi.search(lambda extra: ovi.keep_float(step, block_of, extra),
                       lambda model: _openvino_figures(model, "step", run),
                       [b for b in plan["blocks"] if b not in base], run.stage)
    extra = list(found["float_blocks"])
    record.update(float_blocks=base + extra, float_blocks_beyond_plan=extra, tries=found["tries"],
                  plan_scope=found["calibration_methods"]["nncf"], sensitivity=found["sensitivity"])
    record["budget"]["step"] = found["figures"]
    models = {}
    if found["ok"]:
        run.stage("openvino int8 (nncf) rollout")
        models = {"step": ovi.keep_float(step, block_of, extra), "rollout": _fp32_rollout_from_step(run)}
        record["settings"]["rollout"] = dict(ovi.rollout_from_step(*models.values()),
                                             build="the fp32 step graph unrolled, the step model's "
                                                   "FakeQuantize ops in every copy (its ranges shared)")
        for graph, model in models.items():  # what is measured is what is written
            ovi.compress_weights(model)
            record["settings"][graph]["fake_quantize_ops"] = ovi.fake_quantize_count(model)
            record["budget"][graph] = _openvino_figures(model, graph, run)
    missed = [f"{g} {budget.describe(r)}" for g, r in record["budget"].items() if not r["meets"]]
    if missed:
        record["reason"] = (f"NNCF's int8 misses the accuracy budget run by OpenVINO: {'; '.join(missed)} "
                            f"(float32 blocks {', '.join(base + extra) or 'none'})")
        return record, None
    return record, models


def _fp32_rollout_from_step(run: _Run):
    """The fp32 rollout as an openvino.Model, unrolled from the fp32 step graph (its ops named
    "t<k>/<step op>", "h<k>/<step op>"; unroll.pieces_from_step), whatever --rollout built rollout.onnx."""
    import tempfile

    import onnx
    import openvino as ov

    from mspn.export.unroll import pieces_from_step

    step = onnx.load(str(run.work / run.spec.graph_file("step", "fp32")))
    with tempfile.TemporaryDirectory(dir=run.work, prefix=".nncf-rollout-") as tmp:
        path = Path(tmp) / "rollout.onnx"  # weights embedded: the converted model keeps no reference to it
        _save_unrolled(*pieces_from_step(step, run.spec.state_names()), run.init, run.spec, path)
        return ov.convert_model(str(path))


def _budget_check(run: _Run, variant: str) -> dict:
    """Both graphs of a written variant against the budget; refuses the variant when one misses."""
    from mspn.export import budget

    result = {g: _budget_figures(run.work / run.spec.graph_file(g, variant), g, run) for g in GRAPHS}
    missed = [f"{g} {budget.describe(r)}" for g, r in result.items() if not r["meets"]]
    if missed:
        raise budget.BudgetMissed(f"{variant} variant not written: it misses the accuracy budget (>= "
                        f"{run.budget.psnr_db:g} dB vs fp32 and SSIM within {run.budget.ssim_drop:g} of fp32 "
                        f"at every step) on held-out clips: achieved {'; '.join(missed)}")
    return result


def _fp16_variant(run: _Run) -> dict:
    record = {"budget": {}}
    for graph in GRAPHS:
        run.stage(f"fp16 {graph}")
        src, dst = run.work / run.spec.graph_file(graph, "fp32"), run.work / run.spec.graph_file(graph, "fp16")
        record[graph] = _fp16_graph(src, dst, graph, run)
        run.done()
    record["budget"]["fp16_blocked_ops"] = sorted({op for g in GRAPHS for op in record[g]["blocked_ops"]})
    return record


def _int8_variant(run: _Run, calib: np.ndarray | None, rng) -> dict:
    """Calibrate, quantize both graphs (the rollout unrolled from the int8 step graph when the
    fp32 rollout was unrolled), verify each against PyTorch."""
    from mspn.export import precision as prec
    from mspn.export import verify

    spec = run.spec
    record = {"calibration": _int8_calibration(calib, run.options, spec, run.init, rng, run.work)}
    if record["calibration"]["synthetic"]:
        run.warnings.append("int8 calibrated on synthetic random clips (no --calib): its accuracy on "
                            "real video is unknown")
    feeds = run.int8_feeds = record["calibration"].pop("feeds")
    plan = _int8_plan(run, feeds["step"])
    record["budget"] = {"plan": plan}
    method, float_blocks = plan["calibration_method"], plan["float_blocks"]
    for graph in ("step", "rollout"):  # an unrolled int8 rollout is made of the int8 step graph
        run.stage(f"int8 {graph}")
        src, dst = run.work / spec.graph_file(graph, "fp32"), run.work / spec.graph_file(graph, "int8")
        if graph == "rollout" and run.options.rollout == "unrolled":
            settings = _int8_unrolled_rollout(run.work / spec.graph_file("step", "int8"), record["step"]["settings"],
                                              run.init, spec, dst)
        else:
            settings = prec.to_int8(src, dst, feeds[graph], method, float_blocks)
        verify.check_model(dst)
        results = _graph_parity(dst, graph, spec, run.init, run.inputs, run.reference)
        record[graph] = {"settings": settings, "parity": results, "min_psnr": _summary(results)[1]}
        run.done()
    return record


def _int8_plan(run: _Run, step_feeds: list[dict]) -> dict:
    """Calibration method and float32 blocks of the int8 variant (budget.search_int8_plan on the
    step graph, looped closed on the held-out clips); refuses int8 when no plan meets the budget."""
    from mspn.export import budget
    from mspn.export import precision as prec

    run.stage("int8 plan search")
    src = run.work / run.spec.graph_file("step", "fp32")
    trial = run.work / ".int8-search.onnx"
    blocks = prec.graph_blocks(src)

    def quantize(method: str, float_blocks: tuple[str, ...]) -> Path:
        prec.to_int8(src, trial, step_feeds, method, float_blocks)
        return trial

    try:
        plan = budget.search_int8_plan(quantize, lambda path: _budget_figures(path, "step", run), list(blocks),
                                       run.options.calib_methods, log=run.stage)
    finally:
        trial.unlink(missing_ok=True)
    plan["blocks"] = {b: len(nodes) for b, nodes in blocks.items()}
    if not plan["ok"]:
        raise budget.BudgetMissed(
            f"int8 variant not written: no plan meets the accuracy budget (>= {run.budget.psnr_db:g} dB "
            f"vs fp32 and SSIM within {run.budget.ssim_drop:g} of fp32 at every step) on held-out "
            f"clips: best achieved {budget.describe(plan['figures'])} with "
            f"{len(plan['float_blocks'])} of {len(blocks)} blocks in float32 "
            f"({plan['calibration_method']} calibration)")
    return plan


def _check_floor(run: _Run, variant: str, record: dict) -> None:
    record["min_psnr"] = min(record[g]["min_psnr"] for g in GRAPHS)
    record["below_floor"] = record["min_psnr"] < run.spec.psnr_floor
    if record["below_floor"]:
        run.warnings.append(f"{variant} variant PSNR {record['min_psnr']:.1f} dB against fp32 PyTorch "
                            f"is below the floor {run.spec.psnr_floor:g} dB")


def _finalize_graphs(run: _Run, graphs: dict, export_records: dict) -> None:
    """Each variant's graphs rewritten with their facts in metadata_props and their weights in one
    shared external file (export/finalize.py), listed in the manifest's graph entries."""
    from mspn.export.finalize import finalize_variant
    from mspn.export.manifest import package_versions

    run.stage("shared weights, metadata")
    spec = run.spec
    common = {"format": "mspn-model", "config": spec.name, "mspn_version": package_versions()["mspn"],
              "context": spec.context, "horizon": spec.horizon, "frame_size": f"{spec.height}x{spec.width}",
              "channels": spec.channels, "channel_order": spec.channel_order, "opset": spec.opset,
              "batch": "{min}..{max}".format(**spec.batch_profile()), "state_names": spec.state_names()}
    facts = {g: {**common, "exporter": export_records[g]["exporter"]} for g in GRAPHS}
    for variant in spec.precisions:
        paths = {g: run.work / spec.graph_file(g, variant) for g in GRAPHS}
        external = finalize_variant(paths, variant, facts)
        for graph in GRAPHS:
            graphs[graph][variant]["external"] = external


def _preflight(run: _Run) -> dict:
    """TensorRT's pre-flight of every graph file, as TensorRT would parse it."""
    from mspn.export.preflight import preflight

    run.stage("tensorrt pre-flight")
    spec = run.spec
    trt = {spec.graph_file(graph, variant): preflight(run.work / spec.graph_file(graph, variant), spec.dynamic_batch)
           for graph in GRAPHS for variant in spec.precisions}
    run.done()
    return trt


def _write_manifest(run: _Run, export_records: dict, graphs: dict, verification: dict, trt: dict,
                    started: float) -> dict:
    from mspn.export import manifest as manifest_io

    run.stage("manifest")
    spec = run.spec
    exporters = {r["exporter"] for r in export_records.values()}
    manifest = manifest_io.write_manifest(run.work, {
        "format": manifest_io.FORMAT, "format_version": manifest_io.FORMAT_VERSION,
        "name": spec.name, "config": spec.config,
        "context": spec.context, "horizon": spec.horizon, "frame_size": [spec.height, spec.width],
        "channels": spec.channels, "channel_order": spec.channel_order,
        "value_range": list(spec.value_range), "batch": spec.batch_profile(),
        "opset": spec.opset, "exporter": exporters.pop() if len(exporters) == 1 else "mixed",
        "export": {**export_records, "total_seconds": round(time.perf_counter() - started, 2)},
        "graphs": graphs,
        "state": {"file": "initial_state.npz", "names": spec.state_names()},
        "spec": spec.to_dict(),
        "versions": manifest_io.package_versions(),
        "verification": verification,
        "tensorrt_preflight": trt,
        "warnings": run.warnings,
        "engines": {},
    })
    run.done()
    return manifest


def _print_warnings(warnings: list, trt: dict) -> None:
    log = logging.getLogger("mspn.export")
    for text in warnings:
        log.warning(f"WARNING: {text}")
    for name, result in trt.items():
        if not result["ok"]:
            log.warning(f"WARNING: TensorRT pre-flight of {name}: unsupported ops {result['unsupported_ops']}, "
                        f"dynamic dims {result['dynamic_dims']}, Q/DQ issues {result['qdq_issues']['count']}")


def _graph_builders(model, spec: ExportSpec, init: dict, rollout: str, work: Path) -> dict:
    """{graph: build(exporter) -> ExportedGraph writing work/<graph>.onnx}."""
    import torch

    from mspn.export.onnx_export import ExportedGraph, export_graph, export_proto
    from mspn.export.wrappers import ClosedLoopStep, OpenLoopStep, RolloutGraph, StepGraph

    names = spec.state_names()
    batch = spec.example_batch()
    frame = torch.rand(batch, spec.channels, spec.height, spec.width)
    state = tuple(torch.from_numpy(init[n]).expand(batch, -1, -1, -1).contiguous() for n in names)
    rollout_path, step_path = work / spec.graph_file("rollout", "fp32"), work / spec.graph_file("step", "fp32")

    def step(exporter):
        return export_graph(StepGraph(model).eval(), (frame, torch.ones(batch)) + state, step_path, spec,
                            "step", exporter)

    def traced_rollout(exporter):
        frames = torch.rand(batch, spec.context, spec.channels, spec.height, spec.width)
        return export_graph(RolloutGraph(model, spec.horizon, spec.height, spec.width).eval(), (frames,),
                            rollout_path, spec, "rollout", exporter)

    def unrolled_rollout(exporter):
        start = time.perf_counter()
        open_step = export_proto(OpenLoopStep(model), (frame,) + state, spec, "open_step", exporter)
        closed_step = export_proto(ClosedLoopStep(model), state, spec, "closed_step", exporter)
        _save_unrolled(open_step, closed_step, init, spec, rollout_path)
        return ExportedGraph(rollout_path, exporter, time.perf_counter() - start)

    return {"rollout": unrolled_rollout if rollout == "unrolled" else traced_rollout, "step": step}


def _save_unrolled(open_step, closed_step, init: dict, spec: ExportSpec, path: Path) -> None:
    """Unroll the two step pieces into the rollout graph of ``spec`` and write it to ``path``."""
    import onnx

    from mspn.export.onnx_export import stamp_signature
    from mspn.export.unroll import unroll
    rollout_model = unroll(open_step, closed_step, init, spec.context, spec.horizon, spec.state_names())
    inputs, outputs = spec.signature("rollout")
    stamp_signature(rollout_model, inputs, outputs)
    rollout_model.producer_name = open_step.producer_name
    onnx.save_model(rollout_model, str(path), save_as_external_data=False)


def _int8_unrolled_rollout(int8_step: Path, step_settings: dict, init: dict, spec: ExportSpec,
                           dst: Path) -> dict:
    """The int8 rollout as unrolled copies of the int8 step graph (unroll.pieces_from_step).

    Quantizing the whole unrolled graph costs ONNX Runtime's quantizer time quadratic in its node
    count (paper-mnist 10 -> 10: 340 s for one clip; 10 -> 30 several times that). Quantizing the
    open- and closed-loop pieces each on its own part of the step loop's feeds gave them other
    ranges than the step graph's: the two graphs of one variant then differ (tiny 10 -> 30, one
    block int8: 44.2 dB on the step loop, the rollout missing the SSIM budget). Made of the int8
    step graph, the rollout shares its scales and computes what the step loop computes.
    """
    import onnx

    from mspn.export.unroll import pieces_from_step
    open_step, closed_step = pieces_from_step(onnx.load(str(int8_step)), spec.state_names())
    _save_unrolled(open_step, closed_step, init, spec, dst)
    return dict(step_settings, build="unrolled from the int8 step graph (its scales shared)")


def _fp16_graph(src: Path, dst: Path, graph: str, run: _Run) -> dict:
    """Plain conversion first; precision-sensitive ops kept in fp32 only if the budget requires it."""
    from mspn.export import precision as prec
    from mspn.export import verify
    best = None
    for blocked in ((), prec.FP16_SENSITIVE_OPS):
        prec.to_fp16(src, dst, blocked)
        verify.check_model(dst)
        results = _graph_parity(dst, graph, run.spec, run.init, run.inputs, run.reference)
        held = _budget_figures(dst, graph, run)
        record = {"blocked_ops": list(blocked), "parity": results, "min_psnr": _summary(results)[1],
                  "heldout_min_psnr": held["min_psnr"], "meets_budget": held["meets"]}
        if best is None or (held["meets"], held["min_psnr"]) > (best["meets_budget"], best["heldout_min_psnr"]):
            best = record
        if held["meets"]:
            break
    if best["blocked_ops"] != record["blocked_ops"]:
        prec.to_fp16(src, dst, best["blocked_ops"])  # the better of the two tries is the one kept
    return best


def _int8_calibration(calib, options: ExportOptions, spec: ExportSpec, init, rng, work: Path) -> dict:
    """Calibration feeds for both graphs.

    step: every feed of fp32 step-loop rollouts on the clips, so the recurrent state inputs are
    calibrated on states the model really reaches; the unrolled rollout's int8 pieces are calibrated
    on the same feeds (_int8_unrolled_rollout). rollout: the context frames of each clip (used
    only for a traced rollout, quantized whole).
    Without --calib: seeded uniform random clips (recorded as synthetic).
    """
    from mspn.export import verify
    synthetic = calib is None
    if synthetic:
        calib = rng.random((options.calib_clips, spec.context, spec.channels, spec.height, spec.width),
                           dtype=np.float32)
    step = verify.session_step(verify.ort_session(work / spec.graph_file("step", "fp32")))
    rollout_feeds, step_feeds = [], []
    for chunk, _ in _chunks(calib, _calib_spec(spec)):
        rollout_feeds.append({"frames": chunk})
        step_feeds += verify.record_step_feeds(step, init, chunk, spec.horizon, spec.state_names())
    return {"synthetic": synthetic, "source": None if synthetic else str(options.calib),
            "split": None if synthetic else options.calib_split, "clips": int(len(calib)),
            "rollout_samples": len(rollout_feeds), "step_samples": len(step_feeds),
            "feeds": {"rollout": rollout_feeds, "step": step_feeds}}


def _calib_spec(spec: ExportSpec) -> ExportSpec:
    """Calibration runs one clip per feed (a static batch needs exactly N)."""
    import dataclasses
    return dataclasses.replace(spec, batch_max=1) if spec.dynamic_batch else spec
