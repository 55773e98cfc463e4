"""The accuracy budget of a reduced-precision variant, and the search for an int8 plan within it.

A variant meets the budget on held-out clips (never the calibration clips) when, at EVERY
predicted step of the closed-loop rollout:
- its PSNR against the fp32 model's rollout is at least ``psnr_db`` (MSE over the clips), and
- its SSIM against the ground-truth frames is at most ``ssim_drop`` below fp32's (mean over clips).

When quantizing every block misses it, ``search_int8_plan`` keeps the most sensitive blocks in
float32, greedily, until the budget holds (see its docstring).

Layouts: clips and predictions are (N, T, C, H, W) float32 in [0, 1].
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from mspn.errors import MSPNError


class BudgetMissed(MSPNError):
    """A variant misses the accuracy budget: it is not written (the rest of the folder is)."""


DEFAULT_PSNR_DB = 40.0
DEFAULT_SSIM_DROP = 0.005


@dataclass(frozen=True)
class Budget:
    psnr_db: float = DEFAULT_PSNR_DB     # min per-step PSNR of the variant vs the fp32 rollout
    ssim_drop: float = DEFAULT_SSIM_DROP  # largest per-step SSIM loss vs fp32, against ground truth

    def to_dict(self) -> dict:
        return {"psnr_db_vs_fp32_every_step": self.psnr_db,
                "ssim_drop_vs_fp32_every_step": self.ssim_drop}


@dataclass
class HeldOut:
    """Clips the budget is measured on.

    context: (N, T_ctx, C, H, W); reference: (N, T_pred, C, H, W), the fp32 model's rollout;
    truth: (N, T_pred, C, H, W) ground truth, or None (synthetic clips: SSIM is not checked).
    """

    context: np.ndarray
    reference: np.ndarray
    truth: np.ndarray | None
    source: dict

    def __post_init__(self):
        self.reference_ssim = None if self.truth is None else per_step_ssim(self.reference, self.truth)


def per_step_ssim(prediction: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(T,) SSIM against the ground truth per predicted step, averaged over clips (skimage, data
    range 1, predictions unclipped: mspn.metrics.frame_psnr_ssim)."""
    from mspn.metrics import frame_psnr_ssim

    steps = truth.shape[1]
    ssim = np.zeros(steps)
    for clip in range(truth.shape[0]):
        for t in range(steps):
            ssim[t] += frame_psnr_ssim(prediction[clip, t].astype(np.float64),
                                       truth[clip, t].astype(np.float64))[1]
    return ssim / truth.shape[0]


def figures(prediction: np.ndarray, held: HeldOut, budget: Budget) -> dict:
    """The budget figures of one variant's rollout on the held-out clips (JSON-able)."""
    from mspn.export.verify import compare

    parity = compare(prediction, held.reference)
    out = {"psnr_vs_fp32": parity["psnr"], "min_psnr": parity["min_psnr"],
           "ssim": None, "ssim_fp32": None, "ssim_delta": None, "worst_ssim_delta": None}
    ssim_ok = True
    if held.truth is not None:
        ssim = per_step_ssim(prediction, held.truth)
        delta = ssim - held.reference_ssim
        out.update(ssim=[round(float(v), 5) for v in ssim],
                   ssim_fp32=[round(float(v), 5) for v in held.reference_ssim],
                   ssim_delta=[round(float(v), 5) for v in delta], worst_ssim_delta=round(float(delta.min()), 5))
        ssim_ok = bool(delta.min() >= -budget.ssim_drop)
    out["meets"] = bool(parity["min_psnr"] >= budget.psnr_db and ssim_ok)
    return out


def describe(result: dict) -> str:
    """'38.2 dB min per-step PSNR vs fp32, SSIM -0.0012 vs fp32' for messages."""
    text = f"{result['min_psnr']:.1f} dB min per-step PSNR vs fp32"
    if result.get("worst_ssim_delta") is not None:
        text += f", worst per-step SSIM {result['worst_ssim_delta']:+.4f} vs fp32"
    return text


def _score(result: dict) -> tuple:
    """Order of preference between plans: within budget first, then the higher worst-step PSNR."""
    return (result["meets"], result["min_psnr"])


Quantize = Callable[[str, tuple[str, ...]], object]   # (method, float blocks) -> graph (path)
Evaluate = Callable[[object], dict]                   # graph -> figures()


def search_int8_plan(quantize: Quantize, evaluate: Evaluate, blocks: Sequence[str],
                     methods: Sequence[str], log: Callable[[str], None] = lambda _: None,
                     prune: bool = True) -> dict:
    """The fastest int8 plan found within the budget: (calibration method, blocks kept float32).

    1. every calibration method with every block quantized; the best (``_score``) is kept;
    2. if that misses the budget: each block's sensitivity = the figures with that block alone
       kept in float32 (everything else int8);
    3. greedy: keep the most sensitive blocks in float32, one more at a time, until the budget
       holds; at least one block stays int8 (otherwise it is the fp32 model, not an int8 one);
    4. prune: each float32 block of that plan, least sensitive first, goes back to int8 when the
       plan still meets the budget without it. The greedy order counts each block alone; blocks
       that gain nothing alone (or only with another one) are added on the way and would
       otherwise stay float32 and cost speed. ``prune=False`` skips it (a plan that competes on
       accuracy, not speed, keeps the greedy plan's margin).
    Cost: len(methods) + 3 * len(blocks) quantize-and-evaluate rounds at most.
    Returns {"ok", "calibration_method", "calibration_methods", "float_blocks", "sensitivity",
    "returned_to_int8", "figures", "tries"}; with ok False, "figures" are the best achieved.
    """
    if not blocks:
        raise MSPNError("int8: the graph has no quantizable block")
    tried = {}

    def attempt(method: str, float_blocks: tuple[str, ...]) -> dict:
        key = (method, tuple(sorted(float_blocks)))
        if key not in tried:
            tried[key] = evaluate(quantize(method, float_blocks))
            log(f"int8 {method} float={list(float_blocks) or 'none'}: {describe(tried[key])}")
        return tried[key]

    by_method = {m: attempt(m, ()) for m in methods}
    method = max(methods, key=lambda m: _score(by_method[m]))
    plan = {"calibration_method": method,
            "calibration_methods": {m: _brief(r) for m, r in by_method.items()},
            "float_blocks": [], "sensitivity": {}, "returned_to_int8": [], "figures": by_method[method]}
    if by_method[method]["meets"]:
        return dict(plan, ok=True, tries=len(tried))
    full = by_method[method]["min_psnr"]
    alone = {b: attempt(method, (b,)) for b in blocks}
    plan["sensitivity"] = {b: {"min_psnr_with_block_float": r["min_psnr"],
                               "gain_db": round(r["min_psnr"] - full, 3),
                               "worst_ssim_delta_with_block_float": r.get("worst_ssim_delta"),
                               "meets_alone": r["meets"]} for b, r in alone.items()}
    order = sorted(blocks, key=lambda b: _score(alone[b]), reverse=True)
    best, best_float = by_method[method], []
    for count in range(1, len(order)):
        result = attempt(method, tuple(order[:count]))
        if _score(result) > _score(best):
            best, best_float = result, order[:count]
        if result["meets"]:
            break
    returned = []
    if best["meets"] and prune:
        for block in reversed(list(best_float)):
            if len(best_float) == 1:
                break
            fewer = [b for b in best_float if b != block]
            result = attempt(method, tuple(fewer))
            if result["meets"]:
                best, best_float = result, fewer
                returned.append(block)
    return dict(plan, ok=best["meets"], float_blocks=list(best_float), returned_to_int8=returned,
                figures=best, tries=len(tried))


def _brief(result: dict) -> dict:
    return {"min_psnr": result["min_psnr"], "worst_ssim_delta": result.get("worst_ssim_delta"),
            "meets": result["meets"]}


def summary_lines(manifest: dict) -> list[str]:
    """What `mspn export` prints about each variant's budget."""
    verification = manifest.get("verification", {})
    budget = verification.get("budget")
    if not budget:
        return []
    lines = [f"budget: >= {budget['psnr_db_vs_fp32_every_step']:g} dB vs fp32 and SSIM >= fp32 - "
             f"{budget['ssim_drop_vs_fp32_every_step']:g} at every step, on {budget['clips']['clips']} "
             f"held-out clips ({budget['clips']['source']})"]
    for variant, record in verification.get("variants", {}).items():
        check = record.get("budget")
        if not check:
            continue
        parts = [f"{g} {describe(check[g])}" for g in ("step", "rollout") if g in check]
        lines.append(f"  {variant}: " + "; ".join(parts))
        plan = check.get("plan")
        if plan:
            methods = ", ".join(f"{m} {r['min_psnr']:.1f} dB" for m, r in plan["calibration_methods"].items())
            lines.append(f"    calibration: {plan['calibration_method']} (all blocks int8: {methods})")
            returned = plan.get("returned_to_int8")
            lines.append(f"    float32 blocks: {', '.join(plan['float_blocks']) or 'none'} "
                         f"({plan['tries']} plans tried"
                         + (f"; back to int8 after the greedy pass: {', '.join(returned)}" if returned else "")
                         + ")")
            for block, sens in sorted(plan["sensitivity"].items(), key=lambda kv: -kv[1]["gain_db"]):
                alone = " (meets the budget alone)" if sens.get("meets_alone") else ""
                lines.append(f"      sensitivity {block}: {sens['gain_db']:+.2f} dB when kept float32{alone}")
        lines += _openvino_lines(record.get("openvino"))
        blocked = check.get("fp16_blocked_ops")
        if blocked is not None:
            lines.append(f"    ops kept float32: {', '.join(blocked) or 'none'}")
    return lines


def _openvino_lines(record: dict | None) -> list[str]:
    """What `mspn export` prints about the int8 variant on OpenVINO (pipeline._openvino_int8)."""
    if not record:
        return []
    qdq = record.get("qdq_budget", {})
    nncf = record.get("nncf", {}).get("budget", {})
    parts = [f"{g} nncf {nncf[g]['min_psnr']:.1f} dB" + (f" / qdq {qdq[g]['min_psnr']:.1f} dB" if g in qdq else "")
             for g in ("step", "rollout") if g in nncf]
    if record["method"] == "nncf":
        extra = record["nncf"].get("float_blocks_beyond_plan") or []
        return [f"    openvino: NNCF int8 model (min per-step PSNR vs fp32: {'; '.join(parts)}; float32 blocks "
                f"beyond the ONNX plan: {', '.join(extra) or 'none'})"] + (
                    [f"    openvino: {record['note']}"] if record.get("note") else [])
    return [f"    openvino: the ONNX QDQ graph ({record.get('reason')})"]
