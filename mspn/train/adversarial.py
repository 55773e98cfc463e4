"""The paper's second stage: least-squares GAN with a frame discriminator and the adaptive
alternation (mspn.train.alternation), starting from a pixel-trained generator.

Each step trains one side on one batch (the alternation decides which), as the authors'
adv_train.py does:
- D step (D in train mode, G frozen): G predicts under no_grad; D judges the real frames of steps
  context//2 .. T-1 (stacked along the batch), then the predicted ones, in two separate calls
  (``JudgeApart``: each set gets its own standardisation and BatchNorm batch statistics);
  loss mean((D(real)-1)^2) + mean((D(fake)+1)^2).
- G step (D frozen and in eval mode: BatchNorm uses its running statistics and G steps never
  update them): pixel loss + adv.adv_weight * mean((D(fake)-1)^2); D judges real and fake
  apart again, the real scores feeding the alternation windows.
D's mean scores on real and fake are all-reduced over ranks before the alternation rule. With
adv.alternation=per-video the trainer hands over one video's clips in a row and the windows are
re-seeded at each video (``start_video``).
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from mspn.checkpoint import load_checkpoint, load_raw, load_weights
from mspn.errors import MSPNError
from mspn.models.discriminator import JudgeApart, build_discriminator, map_reference_discriminator_state
from mspn.train import distributed as dist_utils
from mspn.train.alternation import Alternation, D
from mspn.train.loop import Stage, wrap_ddp
from mspn.train.losses import frames_for_discriminator, lsgan_d_loss, lsgan_g_loss, pixel_loss


@contextlib.contextmanager
def frozen(module: torch.nn.Module):
    """No gradients for the module's parameters (gradients still flow through it) and eval mode,
    so BatchNorm normalises with its running statistics and leaves them unchanged."""
    flags = [p.requires_grad for p in module.parameters()]
    was_training = module.training
    for p in module.parameters():
        p.requires_grad_(False)
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)
        for p, flag in zip(module.parameters(), flags, strict=True):
            p.requires_grad_(flag)


class AdversarialStage(Stage):
    name = "adversarial"
    step_fields = ("phase", "g_loss", "pixel_loss", "adv_loss", "d_loss", "d_real", "d_fake")

    def __init__(self, config, env, model, frame_size):
        super().__init__(config, env, model, frame_size)
        a = config.adv
        self.batch_size, self.epochs = a.batch_size, a.epochs
        self.selection, self.slack = a.selection, a.selection_slack
        self.disc = build_discriminator(config, frame_size).to(env.device)
        self.judge = JudgeApart(self.disc)
        self.ddp_judge = wrap_ddp(self.judge, env)
        self.g_opt = torch.optim.Adam(model.parameters(), lr=a.g_lr, weight_decay=a.weight_decay)
        self.d_opt = torch.optim.Adam(self.disc.parameters(), lr=a.d_lr, weight_decay=a.weight_decay)
        self.by_video = a.alternation == "per-video"
        self.alternation = Alternation.for_video(a.window) if self.by_video else Alternation(a.window)

    def start_video(self):
        """The authors re-seed the windows at each video, so every video starts with a D phase."""
        if self.by_video:
            self.alternation = Alternation.for_video(self.config.adv.window)

    def optimizers(self):
        return {"generator": self.g_opt, "discriminator": self.d_opt}

    def extra_modules(self):
        return {"discriminator": self.disc}

    def state_dict(self):
        return {"alternation": self.alternation.state_dict()}

    def load_state_dict(self, state):
        self.alternation = Alternation.from_state(state["alternation"])

    def sync(self):
        dist_utils.average_buffers(self.disc, self.env)

    def init_from(self, path: str | Path) -> None:
        """Generator (and discriminator, when present) from a pixel/adversarial mspn checkpoint or
        a reference adversarial checkpoint (``g_model`` / ``d_img_model``)."""
        raw = load_raw(path)
        if isinstance(raw, dict) and raw.get("format") == "mspn-checkpoint":
            ckpt = load_checkpoint(path, expect=self.config)
            generator, disc = ckpt.model, ckpt.extra.get("discriminator")
        elif isinstance(raw, dict) and "g_model" in raw:
            try:
                from mspn.models.reference import map_reference_state
            except ImportError:
                raise MSPNError("importing a reference checkpoint needs mspn.models.reference") from None
            generator = map_reference_state(raw["g_model"], self.config.model)
            disc = (map_reference_discriminator_state(raw["d_img_model"], self.config, self.frame_size)
                    if "d_img_model" in raw else None)
        else:
            raise MSPNError(f"--init {path}: neither an mspn checkpoint nor a reference adversarial "
                            f"checkpoint (g_model / d_img_model)")
        load_weights(self.model, generator, f"--init {path} (generator)")
        if disc is not None:
            try:
                load_weights(self.disc, disc, f"--init {path} (discriminator)")
            except MSPNError as exc:
                raise MSPNError(f"{exc} (adv.disc_channels={list(self.config.adv.disc_channels)} at "
                                f"{self.frame_size[0]}x{self.frame_size[1]})") from None

    def train_step(self, clip, ctx):
        """clip: (B, T, C, H, W) in [0, 1]; trains the side the alternation picks."""
        logs = {"phase": self.alternation.phase}
        if self.alternation.phase == D:
            scored = self._d_step(clip, ctx)
        else:
            scored = self._g_step(clip, ctx, logs)
        if scored is None:
            return None
        s_real, s_fake, d_loss = scored
        mean_fake, mean_real = dist_utils.all_mean([s_fake.mean().item(), s_real.mean().item()], self.env)
        self.alternation.update(mean_fake, mean_real)
        logs.update(d_loss=d_loss.item(), d_real=mean_real, d_fake=mean_fake)
        return logs

    def _d_step(self, clip, ctx):
        """One D update; (real scores, fake scores, D loss) or None when the batch was skipped."""
        self.disc.train()
        with torch.no_grad(), ctx.autocast():
            predictions = self.unroller(clip)
        real, fake = frames_for_discriminator(predictions, clip, self.config.data.context)
        with ctx.autocast():
            s_real, s_fake = (s.float() for s in self.ddp_judge(real, fake))
        d_loss = lsgan_d_loss(s_real, s_fake)
        if not ctx.guard(d_loss, "discriminator loss", self.ddp_judge):
            return None
        ctx.backward_step(d_loss, self.d_opt)
        return s_real, s_fake, d_loss

    def _g_step(self, clip, ctx, logs):
        """One G update through the frozen, eval-mode D; (real scores, fake scores, D loss of
        those scores) or None when the batch was skipped."""
        with frozen(self.disc):
            with ctx.autocast():
                predictions = self.ddp_unroller(clip)
            pix = pixel_loss(predictions, clip)
            real, fake = frames_for_discriminator(predictions, clip, self.config.data.context)
            with ctx.autocast():
                s_real, s_fake = (s.float() for s in self.judge(real, fake))
            adv = lsgan_g_loss(s_fake)
            g_loss = pix + self.config.adv.adv_weight * adv
            if not ctx.guard(g_loss, "generator loss", self.ddp_unroller):
                return None
            ctx.backward_step(g_loss, self.g_opt)
        logs.update(g_loss=g_loss.item(), pixel_loss=pix.item(), adv_loss=adv.item())
        return s_real, s_fake, lsgan_d_loss(s_real.detach(), s_fake.detach())
