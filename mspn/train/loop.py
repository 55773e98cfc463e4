"""The machinery both training stages share: epochs and steps over a (sharded) split, resume,
the non-finite loss guard, mixed precision, checkpoints, validation, model selection and logs.

A stage (``PixelStage``, ``AdversarialStage``) owns its networks, optimizers and the work of one
batch; ``Trainer`` owns everything else. Counters (checkpointed in ``train_state``):
  epoch           completed epochs
  batch_in_epoch  batches consumed in the current epoch (a resume skips exactly these)
  step            batches consumed in total, trained or skipped; max_steps and checkpoint_every
                  count these
Each epoch's batch order is a pure function of (train.seed, epoch) (DistributedSampler), so a
resumed run sees the same batches an uninterrupted one would.
"""
from __future__ import annotations

import contextlib
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from mspn.baselines import BASELINES
from mspn.checkpoint import load_checkpoint, load_weights, save_checkpoint
from mspn.config import Config
from mspn.data.clips import clip_dataset
from mspn.errors import MSPNError
from mspn.fileio import atomic_write_json
from mspn.metrics import StepMetrics, load_lpips
from mspn.models.mspn import MSPN
from mspn.progress import tqdm
from mspn.train import distributed as dist_utils
from mspn.train.distributed import DistEnv
from mspn.train.losses import ClipUnroller
from mspn.train.runlog import CSVLog, TensorBoard, plot_val_curve

LAST, BEST = "last.pt", "best.pt"
EVAL_FIELDS = ["stage", "epoch", "step", "train_loss", "val_psnr", "val_ssim", "val_lpips", "score",
               "beats_blank", "best", "copy_psnr", "copy_ssim", "blank_psnr", "blank_ssim", "nan_skipped",
               "seconds"]
CURVE = "val_curve.png"
# The baselines every validation is shown against (log.csv, the validation line, the curve).
VAL_BASELINES = {"copy": "copy_last", "blank": "blank"}


@dataclass
class Progress:
    epoch: int = 0
    batch_in_epoch: int = 0
    step: int = 0
    nan_skipped: int = 0
    best_score: float | None = None     # the reference score of the selection (see select())
    best_beats_blank: bool = False      # whether best.pt beat the blank frame (see select_checkpoint())
    evaluated_step: int = -1


# --- selection -----------------------------------------------------------------------------------

def selection_score(means: dict, kind: str) -> tuple[float, str]:
    """(score, description). kind: 'psnr', 'ssim' or 'paper' (SSIM + PSNR/100 - LPIPS; without
    LPIPS, SSIM + PSNR/100, and the description says so)."""
    if kind == "psnr":
        return float(means["psnr"]), "val PSNR"
    if kind == "ssim":
        return float(means["ssim"]), "val SSIM"
    if "lpips" in means:
        return float(means["ssim"] + means["psnr"] / 100 - means["lpips"]), "val SSIM + PSNR/100 - LPIPS"
    return float(means["ssim"] + means["psnr"] / 100), "val SSIM + PSNR/100 (LPIPS unavailable)"


def select(score: float, best: float | None, slack: float) -> tuple[bool, float]:
    """(take this checkpoint as best.pt, new reference best).

    The authors' rule: taken when score > best / (1 + slack). Slack 0 (their pixel stage) is a
    strict ``>``, so a tie keeps the earlier checkpoint; their adversarial stage uses 0.02, which
    prefers later checkpoints of nearly the best score because adversarial scores are volatile.
    The reference stays the highest score seen, so a slow decline cannot drift below it.
    """
    if not math.isfinite(score):
        return False, best
    if best is None:
        return True, score
    return score > best / (1 + slack), max(best, score)


SELECTION_RULE = ("an evaluation that beats the blank frame on both val PSNR and SSIM ranks above every "
                  "one that does not; within each group the selection score decides (select()); the "
                  "starting point is never selected")


def select_checkpoint(score: float, beats_blank: bool, progress: Progress, slack: float) -> bool:
    """Whether this evaluation becomes best.pt under SELECTION_RULE; updates progress' best.

    So best.pt never keeps weights that merely predict near-blank frames once any evaluation did
    better than the blank frame.
    """
    if beats_blank and not progress.best_beats_blank:
        progress.best_beats_blank, progress.best_score = True, None
    elif progress.best_beats_blank and not beats_blank:
        return False
    take, progress.best_score = select(score, progress.best_score, slack)
    return take


# --- RNG state as tensors and plain lists (weights_only loading) ---------------------------------

def rng_state() -> dict:
    keys, pos, has_gauss, gauss = np.random.get_state()[1:]
    version, internal, gauss_next = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "gauss": float(gauss)},
             "python": {"version": int(version), "internal": list(internal), "gauss_next": gauss_next}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# --- the stage interface ---------------------------------------------------------------------------

class Stage:
    """One training stage. Subclasses set name, step_fields and the hyper-parameter properties,
    build their optimizers and implement train_step."""

    name = ""
    step_fields: tuple[str, ...] = ()

    def __init__(self, config: Config, env: DistEnv, model: MSPN, frame_size: tuple[int, int]):
        self.config, self.env, self.model, self.frame_size = config, env, model, frame_size
        self.unroller = ClipUnroller(model, config.data.pred_steps)
        self.ddp_unroller = wrap_ddp(self.unroller, env)

    # hyper-parameters of the stage
    batch_size: int
    epochs: int
    selection: str
    slack: float = 0.0
    # True: each epoch hands over one video's clips in a row (video_batches) and calls
    # start_video() before a video's first batch
    by_video: bool = False

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def extra_modules(self) -> dict[str, nn.Module]:
        """Networks besides the generator saved in checkpoints (e.g. the discriminator)."""
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def sync(self) -> None:
        """Make every rank's state identical before a checkpoint (e.g. BatchNorm statistics)."""

    def start_video(self) -> None:
        """Called before the first batch of each video when by_video is set."""

    def init_from(self, path: str | Path) -> None:
        """Start from the weights of a checkpoint (--init)."""
        raise MSPNError(f"--init is for the adversarial stage (add --adv); the {self.name} stage "
                        f"starts from scratch")

    def train_step(self, clip: torch.Tensor, ctx: Trainer) -> dict | None:
        """Train on one batch (B, T, C, H, W); the step's log values, or None if it was skipped."""
        raise NotImplementedError


def video_batches(index: list[tuple[int, int]], batch_size: int, seed: int, epoch: int,
                  world_size: int = 1, rank: int = 0) -> list[tuple[list[int], bool]]:
    """One rank's batches of an epoch with clips grouped by video: (clip indices, whether this
    step starts a video on any rank).

    index: the dataset's (video, start) of each clip. Videos come in file-name order (the
    stand-in for the authors' directory walk); each video's clips are shuffled by (seed, epoch),
    as the authors' per-video DataLoader(shuffle=True) does; a batch never mixes videos. Under
    DDP step s gives rank r the global batch s * world_size + r (the list wraps around to fill
    the last step, like DistributedSampler), and every rank flags the step when any of its
    global batches starts a video, so all ranks re-seed at the same step.
    """
    clips: dict[int, list[int]] = {}
    for i, (video, _) in enumerate(index):
        clips.setdefault(video, []).append(i)
    generator = torch.Generator().manual_seed(seed + epoch)
    plan = []
    for video in sorted(clips):
        order = [clips[video][j] for j in torch.randperm(len(clips[video]), generator=generator).tolist()]
        plan += [(order[k:k + batch_size], k == 0) for k in range(0, len(order), batch_size)]
    steps = math.ceil(len(plan) / world_size)
    plan = (plan * world_size)[:steps * world_size]
    rank_plan = []
    for s in range(steps):
        step_batches = plan[s * world_size:(s + 1) * world_size]
        rank_plan.append((step_batches[rank][0], any(starts for _, starts in step_batches)))
    return rank_plan


def wrap_ddp(module: nn.Module, env: DistEnv) -> nn.Module:
    if not env.distributed:
        return module
    ids = [env.device.index] if env.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids)


# --- the trainer ------------------------------------------------------------------------------------

class Trainer:
    def __init__(self, config: Config, data: str | Path, out: str | Path, stage_factory,
                 resume: bool = False, init: str | Path | None = None):
        self.config, self.out, self.resume = config, Path(out), resume
        self.env = dist_utils.setup(config.train.device)
        try:
            self._prepare(data, stage_factory, init)
        except BaseException:
            dist_utils.cleanup(self.env)
            raise

    # set-up ---------------------------------------------------------------------------------------
    def _prepare(self, data, stage_factory, init) -> None:
        config, env = self.config, self.env
        self.last_path, self.best_path = self.out / LAST, self.out / BEST
        resumed = self._resume_checkpoint() if self.resume else None
        if not self.resume and self.last_path.exists():
            raise MSPNError(f"{self.last_path} exists: pass --resume to continue that run, or "
                            f"choose another --out")
        amp = config.train.amp
        if amp == "fp16" and env.device.type != "cuda":
            raise MSPNError("train.amp=fp16 needs a CUDA device (use bf16 or off on CPU)")
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp == "fp16")

        self.train_set = clip_dataset(config, data, "train")
        self.val_set = clip_dataset(config, data, "val")
        self.frame_size = tuple(self.train_set.frame_size)

        seed_everything(config.train.seed)
        self.model = MSPN(config.model).to(env.device)
        self.stage = stage_factory(config, env, self.model, self.frame_size)
        if init is not None and resumed is None:
            self.stage.init_from(init)
        self.progress = Progress()
        if resumed is not None:
            self._load_resumed(resumed)

        self.sampler = DistributedSampler(self.train_set, num_replicas=env.world_size, rank=env.rank,
                                          shuffle=True, seed=config.train.seed, drop_last=False)
        per_epoch = (len(self._video_plan(0)) if self.stage.by_video
                     else math.ceil(len(self.sampler) / self.stage.batch_size))
        if config.train.steps_per_epoch:
            per_epoch = min(per_epoch, config.train.steps_per_epoch)
        self.batches_per_epoch = per_epoch
        self.total_steps = per_epoch * self.stage.epochs
        if config.train.max_steps:
            self.total_steps = min(self.total_steps, config.train.max_steps)

        self.step_log = CSVLog(self.out / "steps.csv", ["stage", "epoch", "step", *self.stage.step_fields])
        self.eval_log = CSVLog(self.out / "log.csv", EVAL_FIELDS)
        self.tb = None
        self.lpips, self.lpips_status = None, {"status": "skipped", "reason": "not rank 0"}
        if env.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            if resumed is not None:
                self.step_log.truncate_after(self.progress.step)
                self.eval_log.truncate_after(self.progress.step)
            self.tb = TensorBoard(self.out / "tensorboard")
            self.lpips, self.lpips_status = load_lpips(None, frame_size=self.frame_size)

    def _resume_checkpoint(self):
        if not self.last_path.is_file():
            raise MSPNError(f"--resume: no checkpoint to resume from at {self.last_path}")
        ckpt = load_checkpoint(self.last_path)
        for section in ("model", "data"):
            if getattr(ckpt.config, section) != getattr(self.config, section):
                raise MSPNError(f"--resume: {self.last_path} was trained with another {section} config "
                                f"({ckpt.config.name}: {getattr(ckpt.config, section)}); pass its config "
                                f"(--config {ckpt.config.name})")
        if "train_state" not in ckpt.extra:
            raise MSPNError(f"--resume: {self.last_path} holds no training state")
        return ckpt

    def _load_resumed(self, ckpt) -> None:
        extra = ckpt.extra
        if extra.get("stage") != self.stage.name:
            raise MSPNError(f"--resume: {self.last_path} is a {extra.get('stage')} stage checkpoint, "
                            f"this run is the {self.stage.name} stage")
        load_weights(self.model, ckpt.model, f"{self.last_path} (generator)")
        for name, module in self.stage.extra_modules().items():
            if name not in extra:
                raise MSPNError(f"--resume: {self.last_path} holds no {name}")
            load_weights(module, extra[name], f"{self.last_path} ({name})")
        for name, optimizer in self.stage.optimizers().items():
            configured = [(group["lr"], group["weight_decay"]) for group in optimizer.param_groups]
            optimizer.load_state_dict(extra["optimizers"][name])
            self._apply_configured_rates(name, optimizer, configured)
        if extra.get("scaler"):
            self.scaler.load_state_dict(extra["scaler"])
        state = extra["train_state"]
        self.stage.load_state_dict(state.get("stage", {}))
        self.progress = Progress(**state["progress"])
        set_rng_state(state["rng"])
        self._saved_step = self.progress.step

    @staticmethod
    def _apply_configured_rates(name: str, optimizer, configured: list[tuple[float, float]]) -> None:
        # Optimizer.load_state_dict restores the saved lr and weight decay; a resume with
        # --set train.lr=... (the usual way out of a plateau) must run at the rate it asked for.
        for group, (lr, weight_decay) in zip(optimizer.param_groups, configured, strict=True):
            if (group["lr"], group["weight_decay"]) != (lr, weight_decay):
                print(f"note: --resume: {name} optimizer lr {group['lr']:g} -> {lr:g}, "
                      f"weight decay {group['weight_decay']:g} -> {weight_decay:g} (from the config)")
            group["lr"], group["weight_decay"] = lr, weight_decay

    # helpers the stages call ----------------------------------------------------------------------
    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.env.device.type, dtype=self.amp_dtype)

    def guard(self, loss: torch.Tensor, what: str, module: nn.Module) -> bool:
        """True: go on. A non-finite loss (on any rank) raises (nan_policy stop, nothing written)
        or skips the batch (nan_policy skip: counted, no optimizer step)."""
        bad = dist_utils.any_rank(not bool(torch.isfinite(loss.detach()).all()), self.env)
        if not bad:
            return True
        step = self.progress.step + 1
        if self.config.train.nan_policy == "stop":
            kept = (f"{self.last_path} (step {self._saved_step}) is kept intact" if self._saved_step is not None
                    else "no checkpoint was written yet")
            raise MSPNError(f"non-finite {what} ({loss.item()}) at step {step} (epoch "
                            f"{self.progress.epoch + 1}): training stopped; {kept}; set "
                            f"train.nan_policy=skip to skip such batches")
        self.progress.nan_skipped += 1
        if self.env.distributed:
            # DDP expects a gradient for every parameter after its forward: give zeros, step nothing
            sum((p * 0).sum() for p in module.parameters() if p.requires_grad).backward()
            for p in module.parameters():
                p.grad = None
        return False

    def backward_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()

    # checkpoints ----------------------------------------------------------------------------------
    _saved_step: int | None = None

    def _check_weights_finite(self) -> None:
        for name, module in {"generator": self.model, **self.stage.extra_modules()}.items():
            if not all(bool(torch.isfinite(p).all()) for p in module.parameters()):
                raise MSPNError(f"non-finite {name} weights at step {self.progress.step}: training "
                                f"stopped without writing; {self.last_path} is kept intact")

    def save_last(self) -> None:
        self.stage.sync()
        self._check_weights_finite()
        if self.env.is_main:
            extra = {name: m.state_dict() for name, m in self.stage.extra_modules().items()}
            save_checkpoint(
                self.last_path, self.config, self.model.state_dict(), self.frame_size,
                stage=self.stage.name, **extra,
                optimizers={k: o.state_dict() for k, o in self.stage.optimizers().items()},
                scaler=self.scaler.state_dict() if self.scaler.is_enabled() else {},
                train_state={"progress": asdict(self.progress), "stage": self.stage.state_dict(),
                             "rng": rng_state()})
        self._saved_step = self.progress.step

    def save_best(self, metrics: dict) -> None:
        if self.env.is_main:
            extra = {name: m.state_dict() for name, m in self.stage.extra_modules().items()}
            save_checkpoint(self.best_path, self.config, self.model.state_dict(), self.frame_size,
                            stage=self.stage.name, **extra, val=metrics,
                            train_state={"progress": asdict(self.progress)})

    # validation -----------------------------------------------------------------------------------
    def _val_loader(self) -> DataLoader:
        count = len(self.val_set) if not self.config.train.val_clips else min(
            len(self.val_set), self.config.train.val_clips)
        return DataLoader(torch.utils.data.Subset(self.val_set, range(count)),
                          batch_size=self.config.train.batch_size)

    @torch.no_grad()
    def evaluate(self) -> dict:
        """Val-split means of PSNR/SSIM (LPIPS when available) of the rollout, unclipped as in
        the reference; rank 0 only."""
        context, horizon = self.config.data.context, self.config.data.pred_steps
        metrics = StepMetrics(horizon, clip=False, lpips=self.lpips, lpips_status=self.lpips_status)
        was_training = self.model.training
        self.model.eval()
        for clip in self._val_loader():
            clip = clip.to(self.env.device)
            with self.autocast():
                future = self.model.rollout(clip[:, :context], horizon)
            metrics.update(future.float(), clip[:, context:])
        self.model.train(was_training)
        return metrics.means()

    def baseline_means(self) -> dict[str, dict]:
        """Val means of the VAL_BASELINES, keyed by their log.csv prefix."""
        context, horizon = self.config.data.context, self.config.data.pred_steps
        metrics = {prefix: StepMetrics(horizon) for prefix in VAL_BASELINES}
        for clip in self._val_loader():
            for prefix, name in VAL_BASELINES.items():
                metrics[prefix].update(BASELINES[name](clip[:, :context], horizon), clip[:, context:])
        return {prefix: m.means() for prefix, m in metrics.items()}

    def validate_and_select(self, train_loss: float | None, eligible: bool = True) -> None:
        """Evaluate on val (rank 0), log, and write best.pt when select_checkpoint() takes it.
        ``eligible=False`` (the starting point) only logs: best.pt always holds trained weights."""
        if self.progress.evaluated_step == self.progress.step:
            return
        self.progress.evaluated_step = self.progress.step
        if not self.env.is_main:
            return
        means = self.evaluate()
        score, self.score_name = selection_score(means, self.stage.selection)
        blank = self.baselines["blank"]
        beats_blank = means["psnr"] > blank["psnr"] and means["ssim"] > blank["ssim"]
        take = eligible and select_checkpoint(score, beats_blank, self.progress, self.stage.slack)
        row = {"stage": self.stage.name, "epoch": self.progress.epoch, "step": self.progress.step,
               "train_loss": train_loss, "val_psnr": means["psnr"], "val_ssim": means["ssim"],
               "val_lpips": means.get("lpips"), "score": score, "beats_blank": int(beats_blank),
               "best": int(take) if eligible else "",
               **{f"{prefix}_{k}": self.baselines[prefix][k] for prefix in VAL_BASELINES for k in ("psnr", "ssim")},
               "nan_skipped": self.progress.nan_skipped, "seconds": round(time.time() - self.t0, 1)}
        self.eval_log.write(row)
        plot_val_curve(self.eval_log.path, self.out / CURVE, title=f"{self.config.name}: {self.stage.name} stage")
        self.tb.scalars("val", {k: v for k, v in row.items() if k.startswith("val_") or k == "score"},
                        self.progress.step)
        copy = self.baselines["copy"]
        tqdm.write(f"[{self.stage.name}] epoch {self.progress.epoch} step {self.progress.step}: val PSNR "
                   f"{means['psnr']:.3f} SSIM {means['ssim']:.4f} (copy-last {copy['psnr']:.3f} / "
                   f"{copy['ssim']:.4f}, blank {blank['psnr']:.3f} / {blank['ssim']:.4f}) score {score:.4f}"
                   f"{'' if beats_blank else ' (below the blank frame)'}{' -> best.pt' if take else ''}")
        if take:
            self.save_best({k: float(v) for k, v in means.items()} | {"score": score, "beats_blank": beats_blank})

    # the loop ---------------------------------------------------------------------------------------
    def _video_plan(self, epoch: int) -> list[tuple[list[int], bool]]:
        plan = video_batches(self.train_set.index, self.stage.batch_size, self.config.train.seed, epoch,
                             self.env.world_size, self.env.rank)
        if all(starts for _, starts in plan):
            raise MSPNError(f"adv.alternation=per-video: every batch of {self.train_set.folder} starts a "
                            f"new video (videos of at most {self.stage.batch_size} clip(s) at batch "
                            f"{self.stage.batch_size}), so the generator would never train; set "
                            f"adv.alternation=continuous or a smaller adv.batch_size")
        return plan

    def _epoch_batches(self, epoch: int) -> tuple[list[list[int]], list[bool]]:
        """This rank's batches of an epoch and, for each, whether it starts a video."""
        if self.stage.by_video:
            plan = self._video_plan(epoch)[:self.batches_per_epoch]
            return [batch for batch, _ in plan], [starts for _, starts in plan]
        self.sampler.set_epoch(epoch)
        indices = list(self.sampler)
        size = self.stage.batch_size
        batches = [indices[i:i + size] for i in range(0, len(indices), size)][:self.batches_per_epoch]
        return batches, [False] * len(batches)

    def run(self) -> dict:
        try:
            return self._run()
        finally:
            if self.tb is not None:
                self.tb.close()
            dist_utils.cleanup(self.env)

    def _announce(self) -> None:
        """Rank 0, before the first step: the baselines, run.json and what this run will do."""
        env = self.env
        self.baselines = self.baseline_means()
        atomic_write_json(self.out / "run.json", {
            "stage": self.stage.name, "config": self.config.to_dict(), "frame_size": list(self.frame_size),
            "world_size": env.world_size, "device": str(env.device), "selection": self.score_name,
            "selection_slack": self.stage.slack, "selection_rule": SELECTION_RULE,
            "lpips": self.lpips_status,
            "train_clips": len(self.train_set), "val_clips": len(self.val_set),
            "total_steps": self.total_steps})
        tqdm.write(f"[{self.stage.name}] {len(self.train_set)} train clips, {env.world_size} process(es) "
                   f"on {env.device}; {self.total_steps} steps; best.pt chosen by {self.score_name}")
        if self.lpips is None:
            tqdm.write(f"[{self.stage.name}] LPIPS skipped: {self.lpips_status.get('reason')}")

    def _log_step(self, logs: dict, losses: list, bar) -> None:
        """One trained step's values: the epoch's loss list, steps.csv and TensorBoard, the bar."""
        p = self.progress
        main_loss = logs.get("loss", logs.get("g_loss", logs.get("d_loss")))
        if main_loss is not None:
            losses.append(float(main_loss))
        if self.env.is_main:
            self.step_log.write({"stage": self.stage.name, "epoch": p.epoch, "step": p.step, **logs})
            self.tb.scalars(f"train/{self.stage.name}", {k: v for k, v in logs.items() if k != "phase"}, p.step)
        bar.set_postfix({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in logs.items() if v is not None},
                        refresh=False)

    def _run(self) -> dict:
        config, env, p = self.config, self.env, self.progress
        self.t0 = time.time()
        self.score_name = selection_score({"psnr": 0, "ssim": 0, **({"lpips": 0} if self.lpips else {})},
                                          self.stage.selection)[1]
        if env.is_main:
            self._announce()
        if p.step == 0 and not self.resume:
            self.validate_and_select(None, eligible=False)   # the start (for --adv: the pixel checkpoint)
        bar = tqdm(total=self.total_steps, initial=p.step, desc=self.stage.name, disable=not env.is_main,
                   dynamic_ncols=True)
        losses: list[float] = []
        while p.step < self.total_steps and p.epoch < self.stage.epochs:
            batches, starts = (part[p.batch_in_epoch:] for part in self._epoch_batches(p.epoch))
            loader = DataLoader(self.train_set, batch_sampler=batches, num_workers=config.train.num_workers)
            for clip, new_video in zip(loader, starts, strict=True):
                if new_video:
                    self.stage.start_video()
                logs = self.stage.train_step(clip.to(env.device, non_blocking=True), self)
                p.step += 1
                p.batch_in_epoch += 1
                bar.update(1)
                if logs is not None:
                    self._log_step(logs, losses, bar)
                if p.step % config.train.checkpoint_every == 0:
                    self.save_last()
                if p.step >= self.total_steps:
                    break
            if p.batch_in_epoch >= self.batches_per_epoch:
                p.epoch += 1
                p.batch_in_epoch = 0
                self.validate_and_select(sum(losses) / len(losses) if losses else None)
                losses = []
                self.save_last()
        bar.close()
        self.validate_and_select(sum(losses) / len(losses) if losses else None)
        self.save_last()
        if env.is_main and not p.best_beats_blank:
            tqdm.write(f"[{self.stage.name}] warning: no validation beat the blank frame on both PSNR and "
                       f"SSIM; {self.best_path} holds the best score among those that did not")
        dist_utils.barrier(env)
        return {"step": p.step, "epoch": p.epoch, "nan_skipped": p.nan_skipped,
                "last": str(self.last_path), "best": str(self.best_path)}
