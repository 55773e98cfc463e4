"""`mspn train`: one library function, ``train``, for both stages."""
from __future__ import annotations

from pathlib import Path

from mspn.config import Config, load_config
from mspn.errors import MSPNError
from mspn.options import TrainOptions


def train(config: Config, data: str | Path, out: str | Path, resume: bool = False,
          init: str | Path | None = None) -> dict:
    """Train one stage into the run folder ``out`` (last.pt, best.pt, log.csv, steps.csv, run.json).

    The adversarial stage runs when config.adv.enabled; it starts from ``init`` (a pixel
    checkpoint, or a reference adversarial one) unless resuming. Returns the final counters.
    """
    from mspn.train.loop import Trainer

    if config.adv.enabled:
        from mspn.train.adversarial import AdversarialStage as stage
        if init is None and not resume:
            raise MSPNError("the adversarial stage starts from a pixel checkpoint: pass --init RUN/best.pt")
    else:
        from mspn.train.pixel import PixelStage as stage
    if init is not None and resume:
        print(f"note: --resume continues from {Path(out) / 'last.pt'}; --init {init} is not used")
        init = None
    return Trainer(config, data, out, stage, resume=resume, init=init).run()


def run_train(options: TrainOptions) -> int:
    """`mspn train`: the config from the preset or file plus overrides, then ``train``."""
    overrides = list(options.overrides)
    if options.adv:
        overrides.append("adv.enabled=true")
    config = load_config(options.config, overrides)
    result = train(config, options.data, options.out, resume=options.resume, init=options.init)
    print(f"done: {result['step']} steps, {result['epoch']} epochs"
          f"{', ' + str(result['nan_skipped']) + ' batches skipped (non-finite loss)' if result['nan_skipped'] else ''}"
          "; "
          f"{result['last']}, {result['best']}")
    return 0
