"""Evaluate a checkpoint: per-step metrics against trivial baselines, plots and strips.

For every clip of a split (context + horizon frames), the model sees the context and predicts
``horizon`` frames closed loop. The same clips are measured for the baselines of
mspn.baselines (copy-last, blank frame, context mean) and, with ``untrained``, for the same
architecture at the initialisation its training run started from. Outputs, beside the report:
  REPORT.json               per-step and mean of every metric for the model and each baseline,
                            which baselines the model beats (mean and per step), settings
  REPORT_metrics.png        each metric against the predicted step, model vs every baseline
  REPORT_strip.png          a few clips: context | ground truth (top row), prediction (bottom row)
  REPORT_rollout.gif        the same clips animated: ground truth | prediction side by side
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from mspn.baselines import BASELINES, compare
from mspn.checkpoint import load_checkpoint
from mspn.errors import MSPNError
from mspn.fileio import atomic_path, atomic_write_figure, atomic_write_json, check_output
from mspn.metrics import StepMetrics, load_lpips
from mspn.options import EvalOptions
from mspn.progress import tqdm

SHOWN_CLIPS = 4  # clips drawn in the strip and the GIF
# Table columns: (metric, header, format); LPIPS is added when it was measured.
_TABLE = [("psnr", "PSNR", "{:.3f}"), ("ssim", "SSIM", "{:.4f}"), ("mse", "MSE/px", "{:.5f}"),
          ("mse_sum", "MSE/frame", "{:.2f}"), ("lpips", "LPIPS", "{:.4f}")]
METRICS_NOTE = ("per predicted step, averaged over clips; psnr/ssim: scikit-image, data_range 1, SSIM 7x7 "
                "window; mse: per-pixel mean; mse_sum: per-frame sum (Moving MNIST convention); lpips: "
                "AlexNet, raw (the paper prints x100); PSNR +inf written as null")


def evaluate(options: EvalOptions) -> dict:
    """Measure a checkpoint and the baselines on a split; write the report, plot, strip and GIF;
    return the report.

    context / horizon default to the checkpoint's config.data.context / pred_steps.
    max_clips: 0 measures every clip of the split. clip: clip predictions to [0, 1] first.
    untrained: also measure the network the checkpoint's training started from (its config's
    seed, its initialisation).
    """
    from mspn.data.clips import ClipDataset  # the data layer is imported only when evaluating

    o = options
    report_path = Path(o.report)
    for suffix in ("", "_metrics.png", "_strip.png", "_rollout.gif"):  # every output, before any work
        path = report_path if not suffix else report_path.with_name(f"{report_path.stem}{suffix}")
        check_output(path, inputs=(o.ckpt,), what="--report" if not suffix else "--report's picture")
    checkpoint = load_checkpoint(o.ckpt)
    predictors = _predictors(checkpoint, o.untrained)  # a checkpoint that does not fit fails here, first
    config = checkpoint.config
    context = config.data.context if o.context is None else o.context
    horizon = config.data.pred_steps if o.horizon is None else o.horizon
    ckpt, data, split, report, quiet = o.ckpt, o.data, o.split, o.report, o.quiet
    dataset = ClipDataset(data, split, context + horizon, frame_interval=config.data.frame_interval)
    _check_data(dataset, checkpoint, data, split)
    count = len(dataset) if o.max_clips == 0 else min(o.max_clips, len(dataset))
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, range(count)),
                                         batch_size=o.batch, shuffle=False)
    lpips, lpips_status = load_lpips(o.lpips_weights, frame_size=tuple(dataset.frame_size))
    results = {name: StepMetrics(horizon, clip=o.clip, lpips=lpips, lpips_status=lpips_status)
               for name in predictors}
    shown = _measure(loader, context, horizon, predictors, results, desc=f"eval {split}", quiet=quiet)

    record = _record(ckpt, config, data, split, context, horizon, dataset, count, o.clip, lpips_status,
                     results, Path(report))
    if not quiet:
        print(format_table(results, lpips_status))
        print(format_beats(record["beats"]))
    _plot_metrics(results, Path(record["files"]["plot"]), title=f"{config.name} on {split} ({count} clips)")
    if _is_bgr(data):  # the pictures are for people: show colour videos stored BGR as RGB
        shown = [tuple(x[:, ::-1] for x in clip_) for clip_ in shown]
    _write_strip(shown, Path(record["files"]["strip"]))
    _write_gif(shown, Path(record["files"]["gif"]))
    atomic_write_json(report, record)  # last, so a report always comes with its pictures
    if not quiet:
        print(f"wrote {report} (+ {', '.join(Path(p).name for p in record['files'].values())})")
    return record


def _predictors(checkpoint, untrained: bool) -> dict:
    """name -> function(context, horizon) -> prediction; "model" first, then the baselines."""
    predictors = {"model": checkpoint.build_model().rollout, **BASELINES}
    if untrained:
        from mspn.models.mspn import MSPN
        from mspn.train.loop import seed_everything

        # exactly what Trainer builds before its first step: seed, then the network
        seed_everything(checkpoint.config.train.seed)
        predictors["untrained"] = MSPN(checkpoint.config.model).eval().rollout
    return predictors


@torch.no_grad()
def _measure(loader, context: int, horizon: int, predictors: dict, results: dict, desc: str,
             quiet: bool) -> list:
    """Run every predictor on every batch into results; return (context, truth, prediction)
    of the model on the first SHOWN_CLIPS clips."""
    shown: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for clips in tqdm(loader, desc=desc, unit="batch", disable=quiet):
        past, future = clips[:, :context], clips[:, context:]
        for name, predict in predictors.items():
            prediction = predict(past, horizon)
            results[name].update(prediction, future)
            if name == "model":
                for b in range(min(len(clips), SHOWN_CLIPS - len(shown))):
                    shown.append((past[b].numpy(), future[b].numpy(), prediction[b].numpy()))
    return shown


def _record(ckpt, config, data, split, context, horizon, dataset, count, clip, lpips_status, results,
            report: Path) -> dict:
    summaries = {name: acc.summary() for name, acc in results.items()}
    model = {k: summaries["model"][k] for k in ("per_step", "mean", "out_of_range_fraction")}
    baselines = {name: {k: s[k] for k in ("per_step", "mean")} for name, s in summaries.items()
                 if name != "model"}
    return {
        "checkpoint": str(ckpt), "config": config.name, "data": str(data), "split": split,
        "context": context, "horizon": horizon, "frame_size": list(dataset.frame_size),
        "channels": dataset.channels, "clips": count, "clipped": clip, "metrics": METRICS_NOTE,
        "lpips": lpips_status, "model": model, "baselines": baselines,
        "beats": compare(model, baselines),
        "files": {"plot": str(report.with_name(f"{report.stem}_metrics.png")),
                  "strip": str(report.with_name(f"{report.stem}_strip.png")),
                  "gif": str(report.with_name(f"{report.stem}_rollout.gif"))},
    }


def _check_data(dataset, checkpoint, data, split) -> None:
    """One-line refusals for data the checkpoint cannot be measured on (ClipDataset itself
    refuses videos shorter than a clip)."""
    model_channels = checkpoint.config.model.frame_channels
    if dataset.channels != model_channels:
        raise MSPNError(f"{data}/{split}: videos have {dataset.channels} channel(s) but checkpoint "
                        f"{checkpoint.config.name} predicts {model_channels}")
    if tuple(dataset.frame_size) != tuple(checkpoint.frame_size):
        h, w = dataset.frame_size
        ch, cw = checkpoint.frame_size
        raise MSPNError(f"{data}/{split}: frames are {h}x{w} (HxW) but the checkpoint was trained "
                        f"on {ch}x{cw}; convert the data to that size")


def _is_bgr(data) -> bool:
    from mspn.data.video import read_info

    info = read_info(data) or {}
    return str(info.get("channel_order", "")).lower() == "bgr"


def format_table(results: dict[str, StepMetrics], lpips_status: dict) -> str:
    """Means of every metric for the model and each baseline, then PSNR and SSIM per step."""
    names = list(results)
    columns = [c for c in _TABLE if c[0] in results["model"].names]
    means = {name: acc.means() for name, acc in results.items()}
    width = max(len(n) for n in names) + 2
    lines = [f"{'':{width}}" + "".join(f"{title:>11}" for _, title, _ in columns)]
    for name in names:
        lines.append(f"{name.replace('_', '-'):{width}}" +
                     "".join(f"{fmt.format(means[name][key]):>11}" for key, _, fmt in columns))
    steps = {name: acc.per_step() for name, acc in results.items()}
    for key, title, fmt in columns[:2]:
        lines.append(f"\n{title} per predicted step")
        lines.append(f"{'step':>4} " + "".join(f"{n.replace('_', '-'):>14}" for n in names))
        for t in range(results["model"].horizon):
            lines.append(f"{t + 1:>4} " + "".join(f"{fmt.format(steps[n][key][t]):>14}" for n in names))
    clipped = "clipped to [0, 1]" if results["model"].clip else "not clipped (as the reference)"
    lines.append(f"{results['model'].clips} clips; predictions {clipped}")
    if lpips_status["status"] != "ok":
        lines.append(f"LPIPS {lpips_status['status']}: {lpips_status['reason']}")
    return "\n".join(lines)


def format_beats(beats: dict) -> str:
    """One line per metric: the baselines the model beats on the mean, and those it does not."""
    lines = []
    metrics = next(iter(beats.values())).keys() if beats else []
    for metric in metrics:
        won = [n.replace("_", "-") for n, m in beats.items() if m[metric]["mean"]]
        lost = [n.replace("_", "-") for n, m in beats.items() if not m[metric]["mean"]]
        lines.append(f"{metric}: beats {', '.join(won) or 'no baseline'}"
                     + (f"; does not beat {', '.join(lost)}" if lost else ""))
    return "\n".join(lines)


def _plot_metrics(results: dict[str, StepMetrics], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    names = results["model"].names
    steps = {name: acc.per_step() for name, acc in results.items()}
    x = np.arange(1, results["model"].horizon + 1)
    fig, axes = plt.subplots(1, len(names), figsize=(3.4 * len(names), 3.2), squeeze=False)
    for ax, metric in zip(axes[0], names, strict=True):
        for name in results:
            style = {"linewidth": 2.2, "marker": "o"} if name == "model" else {"linestyle": "--", "marker": "."}
            ax.plot(x, steps[name][metric], label=name.replace("_", "-"), markersize=4, **style)
        ax.set_title(metric)
        ax.set_xlabel("predicted step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    atomic_write_figure(fig, path)


def _to_rgb(frames: np.ndarray, scale: int) -> np.ndarray:
    """(T, C, H, W) floats -> (T, H*scale, W*scale, 3) uint8; predictions clipped for display only."""
    x = np.clip(frames, 0.0, 1.0)
    if x.shape[1] == 1:
        x = np.repeat(x, 3, axis=1)
    x = (x.transpose(0, 2, 3, 1) * 255 + 0.5).astype(np.uint8)
    return x.repeat(scale, axis=1).repeat(scale, axis=2)


def _scale_for(frame_side: int) -> int:
    return max(1, 64 // frame_side)  # small frames are enlarged (nearest) to be visible


def _write_strip(shown, path: Path) -> None:
    """Per clip two rows: context then ground truth; blank under the context then prediction."""
    from PIL import Image

    past, future, _ = shown[0]
    scale = _scale_for(min(past.shape[-2:]))
    h, w = past.shape[-2] * scale, past.shape[-1] * scale
    gap = 2
    columns = len(past) + len(future)
    canvas = np.full((len(shown) * (2 * h + gap) + (len(shown) - 1) * 3 * gap,
                      columns * (w + gap) - gap, 3), 255, np.uint8)
    for i, (past, future, prediction) in enumerate(shown):
        top = i * (2 * h + 4 * gap)
        rows = [np.concatenate([_to_rgb(past, scale), _to_rgb(future, scale)]),
                _to_rgb(prediction, scale)]
        for r, frames in enumerate(rows):
            offset = 0 if r == 0 else len(past)
            for j, frame in enumerate(frames):
                x = (offset + j) * (w + gap)
                y = top + r * (h + gap)
                canvas[y:y + h, x:x + w] = frame
    buffer = io.BytesIO()
    Image.fromarray(canvas).save(buffer, format="PNG")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())


def _write_gif(shown, path: Path) -> None:
    """Ground truth | prediction per clip, over context + horizon steps. A bar over each panel is
    green while the model sees real frames and red while it predicts."""
    from PIL import Image

    past, future, _ = shown[0]
    scale = _scale_for(min(past.shape[-2:]))
    h, w = past.shape[-2] * scale, past.shape[-1] * scale
    bar, gap = 3, 2
    frames = []
    for t in range(len(past) + len(future)):
        predicting = t >= len(past)
        canvas = np.full((len(shown) * (h + bar + gap) - gap, 2 * w + 3 * gap, 3), 255, np.uint8)
        for i, (past_i, future_i, prediction_i) in enumerate(shown):
            truth = np.concatenate([past_i, future_i])[t:t + 1]
            guess = prediction_i[t - len(past_i):t - len(past_i) + 1] if predicting else truth
            y = i * (h + bar + gap)
            canvas[y:y + bar] = (200, 40, 40) if predicting else (40, 160, 40)
            canvas[y + bar:y + bar + h, :w] = _to_rgb(truth, scale)[0]
            canvas[y + bar:y + bar + h, w + 3 * gap:] = _to_rgb(guess, scale)[0]
        frames.append(Image.fromarray(canvas))
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=250,
                   loop=0)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())
