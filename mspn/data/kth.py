"""KTH actions: ``personNN_action_dN_uncomp.avi`` files -> train/val/test .npy videos.

Split by person as in the paper: persons 1-16 train, 17-25 test; val carved from train by person
(default persons 15 and 16). One .avi becomes one video. Frames are decoded by OpenCV (BGR),
resized bilinearly as the authors do (INTER_LINEAR; area with interpolation="area"; default 128
wide x 96 high) and kept as OpenCV's 3 channels (the paper's choice; KTH is gray footage, so the
channels are equal up to codec noise) or reduced to 1 gray channel.
"""
from __future__ import annotations

import re
from pathlib import Path

from mspn.data.frames import (
    assign_split,
    check_disjoint,
    check_interpolation,
    check_size,
    read_video,
    require_dir,
    resize,
    resize_note,
    to_chw,
)
from mspn.data.video import DatasetWriter
from mspn.errors import MSPNError
from mspn.progress import tqdm

KTH_NAME = re.compile(r"^person(\d+)_([a-z]+)_d(\d+)_uncomp\.avi$", re.IGNORECASE)


def convert_kth(src: str | Path, out: str | Path, size: tuple[int, int] = (96, 128),
                gray_to_rgb: bool = True, train_persons=range(1, 17), val_persons=(15, 16),
                test_persons=range(17, 26), interpolation: str = "linear", overwrite: bool = False) -> dict:
    """Convert the KTH .avi files found anywhere under ``src``; returns the info.json dict.

    Videos: (T, C, H, W) uint8, C = 3 (BGR) with ``gray_to_rgb`` else 1. Persons in none of the
    lists are skipped.
    """
    src = require_dir(src, "KTH source")
    size = check_size(size)
    check_interpolation(interpolation)
    check_disjoint(test_persons, val_persons, "person(s)")
    files = sorted((p for p in src.rglob("*") if p.is_file() and KTH_NAME.match(p.name)),
                   key=lambda p: p.name)
    if not files:
        raise MSPNError(f"no KTH videos (personNN_action_dN_uncomp.avi) under {src}")
    writer = DatasetWriter(out, overwrite=overwrite)
    skipped = []
    for path in tqdm(files, desc="KTH", unit="video"):
        person = int(KTH_NAME.match(path.name).group(1))
        split = assign_split(person, test_persons, val_persons, train_persons)
        if split is None:
            skipped.append(path.name)
            continue
        frames = [resize(f, size, interpolation) for f in read_video(path)]
        name = path.name[: -len("_uncomp.avi")]
        writer.write(split, name, to_chw(frames, 3 if gray_to_rgb else 1, str(path)))
    return writer.finish(
        dataset="kth", source=str(src), channel_order="bgr" if gray_to_rgb else "gray",
        resize=resize_note(interpolation),
        split={"by": "person", "train": sorted(set(train_persons) - set(val_persons) - set(test_persons)),
               "val": sorted(val_persons), "test": sorted(test_persons)},
        skipped=skipped)
