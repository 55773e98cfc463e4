"""The bench report as a markdown table and PNG charts (latency percentiles, per-step parity)."""
from __future__ import annotations

from pathlib import Path

from mspn.extras import require
from mspn.fileio import atomic_path
from mspn.runtime.parity import PSNR_CAP


def _f(value, fmt: str = "{:.1f}", missing: str = "-") -> str:
    return missing if value is None else fmt.format(value)


def variant_label(entry: dict) -> str:
    """"int8 (nncf)" / "int8 (qdq)" for OpenVINO's int8 (which model it ran), else the variant."""
    method = entry.get("int8_method")
    return f"{entry['variant']} ({method})" if method else entry["variant"]


def markdown_table(report: dict) -> str:
    """One row per backend x variant, then one line per skipped or failed combination."""
    model = report["model"]
    settings = report["settings"]
    lines = [f"### {model.get('name')} {model['frame_size'][0]}x{model['frame_size'][1]}, "
             f"{model['context']} -> {model['horizon']}, batch {settings['batch']}, "
             f"{settings['threads']} threads",
             "",
             "| backend | variant | p50 ms | p90 ms | p99 ms | n | frames/s | x torch (A/B) | cold s "
             "| peak MB | push p50 ms | step p50 ms | stream vs rollout | min PSNR dB vs ref | max abs "
             "| SSIM vs truth | % of conv ceiling |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    notes = []
    for e in report["results"]:
        if e["status"] != "ok":
            notes.append(f"- {e['backend']}/{e['variant']}: {e['status']}: {e.get('reason', '')}")
            continue
        r, s = e["rollout"], e["stream"]
        ratio = e.get("vs_torch", {}).get("median_of_pairs")
        par = e.get("parity", {})
        min_psnr = par.get("min_psnr")
        psnr_text = ("exact" if par.get("finite") and min_psnr is not None and min_psnr >= PSNR_CAP
                     else _f(min_psnr))
        acc = e.get("accuracy", {})
        eff = e.get("efficiency", {})
        frac = eff.get("fraction_of_ceiling")
        lines.append(
            f"| {e['backend']} | {variant_label(e)} | {_f(r['p50'])} | {_f(r['p90'])} | {_f(r['p99'])} "
            f"| {r['n']} | {_f(e['throughput_fps'])} | {_f(ratio, '{:.2f}x')} | {_f(e['cold_start_s'], '{:.2f}')} "
            f"| {_f(e['peak_rss_mb'], '{:.0f}')} | {_f(s['push']['p50'], '{:.2f}')} "
            f"| {_f(s['closed_step']['p50'], '{:.2f}')} | {_f(100 * s['overhead_vs_rollout'], '{:+.1f}%')} "
            f"| {psnr_text} | {_f(par.get('max_abs'), '{:.1e}')} | {_f(acc.get('ssim_mean'), '{:.3f}')} "
            f"| {_f(None if frac is None else 100 * frac, '{:.0f}%')} |")
    ref = report.get("reference", {}).get("name")
    lines.append("")
    lines.append(f"Reference: {ref or 'none'}; inputs: {report['inputs']['source']}, "
                 f"{report['inputs']['clips']} clips.")
    machine = report.get("machine", {})
    lines.append(f"CPU: {machine.get('cpu', '?')}; capabilities: {', '.join(machine.get('isa', [])) or 'none listed'}.")
    lines.append(recommendation_line(report.get("recommendation")))
    return "\n".join(lines + notes)


def recommendation_line(rec: dict | None) -> str:
    """'Recommendation: openvino/int8 ...' from mspn.bench.run.recommend's record."""
    if not rec:
        return "Recommendation: none (no budget figures)."
    budget = f">= {rec['budget']['psnr_db']:g} dB vs reference, SSIM within {rec['budget']['ssim_drop']:g}"
    if rec["status"] != "ok":
        return f"Recommendation: none - {rec['reason']} ({budget})."
    ratio = f", {rec['vs_torch']:.2f}x PyTorch eager (A/B)" if rec.get("vs_torch") else ""
    return (f"Recommendation: {rec['backend']}/{rec['variant']} - the fastest within budget ({budget}): "
            f"rollout p50 {rec['rollout_p50_ms']:.1f} ms{ratio}.")


def write_charts(report: dict, report_path: str | Path) -> list[str]:
    """PNGs beside the report: <stem>-latency.png and <stem>-parity.png. Returns their paths."""
    matplotlib = require("matplotlib", "bench", purpose="charts")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    report_path = Path(report_path)
    ok = [e for e in report["results"] if e["status"] == "ok"]
    written = []
    if not ok:
        return written
    model = report["model"]
    title = (f"{model.get('name')} {model['frame_size'][0]}x{model['frame_size'][1]}, "
             f"{model['context']}->{model['horizon']}, {report['settings']['threads']} threads")

    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(ok) + 2), 4))
    labels = [f"{e['backend']}\n{e['variant']}" for e in ok]
    x = np.arange(len(ok))
    for i, (key, colour) in enumerate((("p50", "#4c72b0"), ("p90", "#dd8452"), ("p99", "#c44e52"))):
        ax.bar(x + (i - 1) * 0.27, [e["rollout"][key] for e in ok], 0.27, label=key, color=colour)
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("rollout latency (ms)")
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    written.append(_save(fig, report_path.with_name(report_path.stem + "-latency.png")))
    plt.close(fig)

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for e in ok:
        par = e.get("parity", {})
        steps = par.get("per_step")
        label = f"{e['backend']}/{e['variant']}"
        if steps:
            t = np.arange(1, len(steps["max_abs"]) + 1)
            psnr = [np.nan if v is None or v >= PSNR_CAP else v for v in steps["psnr"]]
            left.plot(t, psnr, marker="o", ms=3, label=label)
            right.plot(t, np.maximum(steps["max_abs"], 1e-9), marker="o", ms=3, label=label)
    budget_db = (report.get("recommendation") or {}).get("budget", {}).get("psnr_db")
    if budget_db:  # the budget applies at every step: each curve must stay above this line
        left.axhline(budget_db, color="grey", linestyle="--", linewidth=1, label=f"budget {budget_db:g} dB")
    left.set_xlabel("predicted step")
    left.set_ylabel("PSNR vs reference (dB; gap = identical)")
    right.set_xlabel("predicted step")
    right.set_ylabel("max |error| vs reference")
    right.set_yscale("log")
    left.legend(fontsize=7)
    fig.suptitle(title + f" - reference: {report['reference'].get('name')}", fontsize=9)
    fig.tight_layout()
    written.append(_save(fig, report_path.with_name(report_path.stem + "-parity.png")))
    plt.close(fig)
    return written


def _save(fig, path: Path) -> str:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return str(path)
