"""Training logs: CSV files (one row per step / per evaluation) and TensorBoard when installed.

Rows are appended and flushed one at a time, so a kill loses at most the row being written.
On resume, rows logged after the resumed checkpoint (work that is about to be redone) are
dropped first, so each step appears once.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

from mspn.fileio import atomic_write_figure, atomic_write_text


class CSVLog:
    def __init__(self, path: str | Path, fields: list[str]):
        self.path = Path(path)
        self.fields = list(fields)

    def truncate_after(self, step: int) -> None:
        """Keep only the rows whose ``step`` is <= step (resume)."""
        if not self.path.is_file():
            return
        with open(self.path, newline="") as handle:
            rows = [r for r in csv.DictReader(handle) if _step_of(r) <= step]
        lines = [",".join(self.fields)]
        for row in rows:
            lines.append(",".join(_cell(row.get(f, "")) for f in self.fields))
        atomic_write_text(self.path, "\n".join(lines) + "\n")

    def write(self, row: dict) -> None:
        new = not self.path.is_file() or self.path.stat().st_size == 0
        with open(self.path, "a", newline="") as handle:
            if new:
                handle.write(",".join(self.fields) + "\n")
            handle.write(",".join(_cell(row.get(f, "")) for f in self.fields) + "\n")
            handle.flush()


def _step_of(row: dict) -> float:
    try:
        return float(row.get("step", 0))
    except (TypeError, ValueError):
        return math.inf


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    text = str(value)
    return f'"{text}"' if "," in text else text


def read_csv(path: str | Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


class TensorBoard:
    """Scalars to TensorBoard when ``torch.utils.tensorboard`` imports; a no-op otherwise."""

    def __init__(self, folder: str | Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard not installed
            self.writer = None
        else:
            self.writer = SummaryWriter(str(folder))

    def scalars(self, prefix: str, values: dict, step: int) -> None:
        if self.writer is None:
            return
        for key, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                self.writer.add_scalar(f"{prefix}/{key}", value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def plot_val_curve(log_path: str | Path, out: str | Path, title: str) -> None:
    """Validation PSNR and SSIM per evaluation (log.csv) against the copy-last and blank-frame
    baselines, the evaluations written to best.pt marked; a PNG written atomically."""
    import matplotlib
    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    rows = [r for r in read_csv(log_path) if r.get("val_psnr")]
    if not rows:
        return
    steps = [float(r["step"]) for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, metric in zip(axes, ("psnr", "ssim"), strict=True):
        ax.plot(steps, [_number(r[f"val_{metric}"]) for r in rows], "o-", label="model (val)", markersize=3)
        for prefix, label in (("copy", "copy-last"), ("blank", "blank frame")):
            ax.plot(steps, [_number(r.get(f"{prefix}_{metric}")) for r in rows], "--", label=label)
        best = [(s, _number(r[f"val_{metric}"])) for s, r in zip(steps, rows, strict=True) if r.get("best") == "1"]
        if best:
            ax.plot(*zip(*best, strict=True), "*", color="gold", markeredgecolor="black", markersize=10,
                    label="best.pt")
        ax.set_title(f"val {metric.upper()}")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    atomic_write_figure(fig, out)


def _number(text) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan
