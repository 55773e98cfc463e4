"""The micro checkpoint the export tests share."""
from pathlib import Path

import torch

from mspn.checkpoint import save_checkpoint
from mspn.config import PRESETS


def save_scaled_micro_checkpoint(path: Path) -> Path:
    """A micro checkpoint with random weights (seed 0). The prediction convs are scaled up so the
    predictions are of order 0.1-1 rather than 1e-4, which makes parity figures meaningful."""
    from mspn.models.mspn import MSPN

    torch.manual_seed(0)
    config = PRESETS["micro"]()
    model = MSPN(config.model)
    with torch.no_grad():
        for cell in model.levels:
            cell.predict.weight.mul_(30.0)
    save_checkpoint(path, config, model.state_dict())
    return path
