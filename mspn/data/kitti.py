"""KITTI raw: ``<date>/<drive>_sync/image_02/data/*.png`` folders -> train/val/test .npy videos.

One drive becomes one video. Each frame is centre-cropped to the target aspect (2:1 for the
default 256 wide x 128 high) and resized with INTER_AREA, BGR as OpenCV reads it.

Split by drive. Default: PredNet's split (val 2011_09_26_drive_0005, test 2011_09_26_drive_0070,
0079 and 0104) when those drives are all present; otherwise, over the drives sorted by name, the
last tenth (at least one) test and the one before val. Explicit lists override the default.
"""
from __future__ import annotations

from pathlib import Path

import cv2
from tqdm import tqdm

from mspn.errors import MSPNError
from mspn.data.frames import centre_crop, check_disjoint, check_size, require_dir, resize, to_chw
from mspn.data.video import DatasetWriter

PREDNET_VAL = ("2011_09_26_drive_0005",)
PREDNET_TEST = ("2011_09_26_drive_0070", "2011_09_26_drive_0079", "2011_09_26_drive_0104")


def _drive_name(name: str) -> str:
    return name[: -len("_sync")] if name.endswith("_sync") else name


def find_drives(src: Path, camera: str = "image_02") -> dict[str, Path]:
    """Drive name (without ``_sync``) -> its folder of PNG frames, for every drive under src."""
    drives = {}
    for folder in sorted(src.rglob(f"*_sync/{camera}/data")):
        if folder.is_dir() and any(folder.glob("*.png")):
            drives[_drive_name(folder.parent.parent.name)] = folder
    return drives


def default_split(drives: list[str]) -> tuple[list[str], list[str], str]:
    """(val, test, rule) for the drives, as described in the module docstring."""
    if all(d in drives for d in PREDNET_VAL + PREDNET_TEST):
        return list(PREDNET_VAL), list(PREDNET_TEST), "prednet"
    ordered = sorted(drives)
    if len(ordered) < 3:
        raise MSPNError(f"only {len(ordered)} KITTI drive(s) found: the default split needs 3 or more; "
                        f"name the splits with --val-drives / --test-drives")
    n_test = max(1, len(ordered) // 10)
    return ordered[-n_test - 1:-n_test], ordered[-n_test:], "last drives by name"


def convert_kitti(src: str | Path, out: str | Path, size: tuple[int, int] = (128, 256),
                  val_drives=None, test_drives=None, camera: str = "image_02",
                  overwrite: bool = False) -> dict:
    """Convert every KITTI raw drive under ``src``; returns the info.json dict.

    Videos (T, 3, H, W) uint8 BGR. val_drives / test_drives: drive names (with or without
    ``_sync``); both None selects the default split; every other drive is train.
    """
    src = require_dir(src, "KITTI source")
    size = check_size(size)
    drives = find_drives(src, camera)
    if not drives:
        raise MSPNError(f"no KITTI drives (<date>/<drive>_sync/{camera}/data/*.png) under {src}")
    if val_drives is None and test_drives is None:
        val, test, rule = default_split(list(drives))
    else:
        val = [_drive_name(d) for d in val_drives or ()]
        test = [_drive_name(d) for d in test_drives or ()]
        rule = "given"
        unknown = sorted(set(val + test) - set(drives))
        if unknown:
            raise MSPNError(f"KITTI drive(s) not found under {src}: {', '.join(unknown)}")
    check_disjoint(test, val, "drive(s)")
    writer = DatasetWriter(out, overwrite=overwrite)
    aspect = size[1] / size[0]
    for drive, folder in tqdm(drives.items(), desc="KITTI", unit="drive"):
        split = "test" if drive in test else "val" if drive in val else "train"
        frames = []
        for png in sorted(folder.glob("*.png")):
            frame = cv2.imread(str(png), cv2.IMREAD_COLOR)
            if frame is None:
                raise MSPNError(f"{png}: cannot be read as an image")
            frames.append(resize(centre_crop(frame, aspect), size))
        writer.write(split, drive, to_chw(frames, 3, str(folder)))
    return writer.finish(
        dataset="kitti-raw", source=str(src), camera=camera, channel_order="bgr",
        resize="centre crop to the target aspect, cv2.INTER_AREA",
        split={"by": "drive", "rule": rule, "val": sorted(val), "test": sorted(test),
               "train": sorted(set(drives) - set(val) - set(test))})
