"""OpenVINO int8: the exporter's ONNX Runtime QDQ graph vs NNCF post-training quantization, side by side.

Both run the step graph closed-loop through OpenVINO (f32 inference precision for the float parts)
on held-out clips; accuracy is the accuracy budget's figure (min per-step PSNR vs the fp32 graph,
SSIM vs ground truth), speed the median of alternating step-loop rollouts.

    python benchmarks/nncf_compare.py MODEL_FOLDER DATASET [--clips 16] [--calib-clips 8]
    python benchmarks/nncf_compare.py MODEL_FOLDER DATASET --shipped [--clips 16] [--runs 15]

--shipped: what the model folder ships, through Predictor on OpenVINO (1 thread): the int8
variant's NNCF model (openvino/*.int8.xml, `mspn export --openvino-int8`) against the ONNX QDQ
graph (int8="qdq"), both graphs (rollout graph and step loop), alternating timed runs.

NNCF: nncf.quantize on the OpenVINO model (calibrated on the val split's step-loop feeds), and
nncf.quantize_with_accuracy_control (validation = min per-step PSNR vs fp32,
200 dB for fp32 itself; max drop 160 dB = the 40 dB budget).
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from mspn.data.clips import ClipDataset
from mspn.export import verify
from mspn.export.budget import Budget, HeldOut, figures


def _ov_step(compiled):
    names = [o.get_any_name() for o in compiled.outputs]
    request = compiled.create_infer_request()

    def step(feeds):
        result = request.infer(feeds)
        return {n: np.asarray(result[o]) for n, o in zip(names, compiled.outputs, strict=True)}
    return step


def _compile(core, model):
    import openvino.properties.hint as hints
    return core.compile_model(model, "CPU", {hints.inference_precision: "f32", "INFERENCE_NUM_THREADS": 1})


def _clips(root, split, count, length):
    data = ClipDataset(root, split, length)
    index = np.unique(np.linspace(0, len(data) - 1, count).round().astype(int))
    return np.stack([np.asarray(data[int(i)], np.float32) for i in index])


def _timed(step, init, context, horizon, names, runs=7):
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        verify.run_step_loop(step, init, context[:1], horizon, names)
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1e3)


def _stream(predictor, context: np.ndarray, horizon: int) -> np.ndarray:
    """The step graph looped closed through StreamSession: (N, T_ctx, ...) -> (N, horizon, ...)."""
    parts = []
    for start in range(0, len(context), predictor.max_batch):
        with predictor.stream() as session:
            for t in range(context.shape[1]):
                session.push(context[start:start + predictor.max_batch, t])
            parts.append(session.rollout(horizon))
    return np.concatenate(parts)


def shipped(args) -> None:
    """The folder's OpenVINO int8 (NNCF) vs its QDQ graph, through Predictor as users run them."""
    from mspn.runtime import Predictor

    manifest = json.load(open(f"{args.model}/manifest.json"))
    ctx, horizon = manifest["context"], manifest["horizon"]
    clips = _clips(args.data, "test", args.clips, ctx + horizon)
    context, truth = clips[:, :ctx], clips[:, ctx:]
    options = {"fp32": {"variant": "fp32"}, "int8 QDQ graph (int8='qdq')": {"variant": "int8", "int8": "qdq"},
               "int8 NNCF model (shipped)": {"variant": "int8", "int8": "nncf"}}
    predictors = {name: Predictor.load(args.model, backend="openvino", threads=1, **o) for name, o in options.items()}
    runs = {"rollout graph": lambda p, x: np.concatenate([p.predict(x[i:i + p.max_batch])
                                                         for i in range(0, len(x), p.max_batch)]),
            "step loop": lambda p, x: _stream(p, x, horizon)}
    held = {g: HeldOut(context, run(predictors["fp32"], context), truth, {}) for g, run in runs.items()}
    times = {(name, g): [] for name in predictors for g in runs}
    for rep in range(args.runs + 2):  # alternating: every model timed at the same machine speed
        for name, predictor in predictors.items():
            for g, run in runs.items():
                start = time.perf_counter()
                run(predictor, context[:1])
                if rep >= 2:  # the first two load (compile) the graph and warm up
                    times[name, g].append(time.perf_counter() - start)
    print(f"| OpenVINO, {ctx} -> {horizon}, {len(context)} held-out clips, batch 1, 1 thread | graph "
          f"| min PSNR vs fp32 dB | worst SSIM delta | meets budget | ms / rollout (median of {args.runs}) |")
    print("|---|---|---|---|---|---|")
    for name, predictor in predictors.items():
        for g, run in runs.items():
            fig = figures(run(predictor, context), held[g], Budget())
            psnr = "-" if name == "fp32" else f"{fig['min_psnr']:.1f}"
            ssim = "-" if name == "fp32" else f"{fig['worst_ssim_delta']:+.4f}"
            meets = "-" if name == "fp32" else ("yes" if fig["meets"] else "no")
            print(f"| {name} | {g} | {psnr} | {ssim} | {meets} | {np.median(times[name, g]) * 1e3:.1f} |")
        predictor.close()
    nncf = manifest["verification"]["variants"]["int8"].get("openvino", {}).get("nncf", {})
    print(f"float32 blocks of the NNCF model: {', '.join(nncf.get('float_blocks', [])) or '-'} "
          f"(beyond the ONNX plan: {', '.join(nncf.get('float_blocks_beyond_plan', [])) or 'none'}); "
          f"NNCF at export: {nncf.get('seconds', '?')} s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("data")
    ap.add_argument("--clips", type=int, default=16)
    ap.add_argument("--calib-clips", type=int, default=8)
    ap.add_argument("--shipped", action="store_true", help="the folder's NNCF model vs its QDQ graph")
    ap.add_argument("--runs", type=int, default=15, help="--shipped: timed runs per model and graph")
    args = ap.parse_args()
    if args.shipped:
        shipped(args)
        return
    import nncf
    import openvino as ov

    manifest = json.load(open(f"{args.model}/manifest.json"))
    ctx, horizon, names = manifest["context"], manifest["horizon"], manifest["state"]["names"]
    init = dict(np.load(f"{args.model}/initial_state.npz"))
    held_clips = _clips(args.data, "test", args.clips, ctx + horizon)
    calib_clips = _clips(args.data, "val", args.calib_clips, ctx + horizon)
    core = ov.Core()
    fp32_model = core.read_model(f"{args.model}/step.onnx")
    fp32 = _ov_step(_compile(core, fp32_model))
    context, truth = held_clips[:, :ctx], held_clips[:, ctx:]
    reference = verify.run_step_loop(fp32, init, context, horizon, names)
    held = HeldOut(context, reference, truth, {})
    feeds = []
    for clip in calib_clips:
        feeds += verify.record_step_feeds(fp32, init, clip[None, :ctx], horizon, names)
    variants = {"fp32": fp32,
                "ort-qdq int8 (exported)": _ov_step(_compile(core, core.read_model(f"{args.model}/step.int8.onnx")))}
    start = time.perf_counter()
    nncf_model = nncf.quantize(fp32_model, nncf.Dataset(feeds), subset_size=len(feeds))
    variants["nncf.quantize"] = _ov_step(_compile(core, nncf_model))
    nncf_s = time.perf_counter() - start

    def validate(compiled, _data) -> float:
        """The budget's own metric: min per-step PSNR vs fp32 (200 = identical)."""
        out = verify.run_step_loop(_ov_step(compiled), init, context, horizon, names)
        return verify.compare(out, reference)["min_psnr"]

    try:
        start = time.perf_counter()
        ac_model = nncf.quantize_with_accuracy_control(
            fp32_model, nncf.Dataset(feeds), nncf.Dataset([0]), validation_fn=validate,
            max_drop=200.0 - Budget().psnr_db, drop_type=nncf.DropType.ABSOLUTE, subset_size=len(feeds))
        variants["nncf accuracy control"] = _ov_step(_compile(core, ac_model))
        ac_s = time.perf_counter() - start
    except Exception as exc:  # noqa: BLE001 - report why it could not run
        print(f"nncf.quantize_with_accuracy_control failed: {type(exc).__name__}: {str(exc)[:300]}")
        ac_s = None
    rule = Budget()
    print(f"| OpenVINO step loop, {ctx} -> {horizon}, {len(context)} held-out clips | min PSNR vs fp32 dB "
          f"| worst SSIM delta | meets 40 dB budget | ms per rollout (batch 1, 1 thread) |")
    print("|---|---|---|---|---|")
    for name, step in variants.items():
        fig = figures(verify.run_step_loop(step, init, context, horizon, names), held, rule)
        print(f"| {name} | {fig['min_psnr']:.1f} | {fig['worst_ssim_delta']:+.4f} | {fig['meets']} "
              f"| {_timed(step, init, context, horizon, names):.2f} |")
    print(f"nncf.quantize took {nncf_s:.1f} s; accuracy control {ac_s if ac_s is None else round(ac_s, 1)} s")


if __name__ == "__main__":
    main()
