"""The clips every backend is measured on: real test clips (--data) or synthetic bouncing shapes.

clips: (N, T_ctx + T_pred, C, H, W) float32 in [0, 1]; the context part feeds the models, the
rest is the ground truth for SSIM / PSNR per predicted step.
"""
from __future__ import annotations

import numpy as np

from mspn.errors import MSPNError


def load_clips(manifest, count: int, data: str | None = None, split: str = "test",
               seed: int = 0) -> tuple[np.ndarray, dict]:
    """(clips, description) with the manifest's frame size, channels, context and horizon."""
    length = manifest.context + manifest.horizon
    height, width = manifest.frame_size
    if count < 1:
        raise MSPNError(f"--clips must be >= 1, got {count}")
    if data is not None:
        from mspn.data.clips import ClipDataset

        dataset = ClipDataset(data, split, length)
        if dataset.frame_size != (height, width) or dataset.channels != manifest.channels:
            raise MSPNError(
                f"the clips in {dataset.folder} are {dataset.channels}x{dataset.frame_size[0]}x"
                f"{dataset.frame_size[1]} (C x H x W) but the model takes {manifest.channels}x{height}x{width}")
        n = min(count, len(dataset))
        # spread over the split rather than the first video only
        picks = np.linspace(0, len(dataset) - 1, n).round().astype(int)
        clips = np.stack([dataset[int(i)].numpy() for i in picks]).astype(np.float32)
        return clips, {"source": f"{data} ({split} split)", "clips": n, "clip_length": length,
                       "available": len(dataset)}
    from mspn.data.synth import bouncing_video

    clips = np.stack([bouncing_video(np.random.default_rng([seed, 7, i]), (height, width),
                                     manifest.channels, length).astype(np.float32) / 255.0
                      for i in range(count)])
    return clips, {"source": "synthetic bouncing shapes (mspn.data.synth, seed "
                             f"{seed}); pass --data for real clips", "clips": count, "clip_length": length}
