"""The paper's first stage: the pixel loss of every level and step, closed loop over the last
pred_steps steps, Adam (train.lr, train.weight_decay; the paper: 1e-5, 1e-5, batch 3, 40 epochs)."""
from __future__ import annotations

import torch

from mspn.train.loop import Stage
from mspn.train.losses import pixel_loss


class PixelStage(Stage):
    name = "pixel"
    step_fields = ("loss",)

    def __init__(self, config, env, model, frame_size):
        super().__init__(config, env, model, frame_size)
        t = config.train
        self.batch_size, self.epochs, self.selection = t.batch_size, t.epochs, t.selection
        self.optimizer = torch.optim.Adam(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)

    def optimizers(self):
        return {"generator": self.optimizer}

    def train_step(self, clip, ctx):
        """clip: (B, T, C, H, W) in [0, 1] -> {"loss": summed squared error of the batch}."""
        with ctx.autocast():
            predictions = self.ddp_unroller(clip)
        loss = pixel_loss(predictions, clip)
        if not ctx.guard(loss, "pixel loss", self.ddp_unroller):
            return None
        ctx.backward_step(loss, self.optimizer)
        return {"loss": loss.item()}
