"""KITTI raw: ``<date>/<drive>_sync/image_02/data/*.png`` folders -> train/val/test .npy videos.

One drive becomes one video, BGR as OpenCV reads it. By default as the authors prepare it:
- category "road": only the drives of KITTI raw's 'road' category (ROAD_DRIVES, the drives the
  KITTI raw download page lists under Road, or any drive inside a folder named ``road``);
  category "all" takes every drive found.
- crop "reference": columns 184 .. 184 + 1024 of the 1242-wide frame, all rows, squeezed to the
  target size (default 256 wide x 128 high) with cv2.resize's default bilinear interpolation.
  crop "centre" is the aspect-preserving alternative: the largest centred window of the target
  aspect (2:1 by default), then resized.

Split by drive. Default: PredNet's split (val 2011_09_26_drive_0005, test 2011_09_26_drive_0070,
0079 and 0104) when those drives are all present; otherwise, over the drives sorted by name, the
last tenth (at least one) test and the one before val. Explicit lists override the default.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from mspn.data.frames import (
    centre_crop,
    check_disjoint,
    check_interpolation,
    check_size,
    require_dir,
    resize,
    resize_note,
    to_chw,
)
from mspn.data.video import DatasetWriter
from mspn.errors import MSPNError
from mspn.progress import tqdm

ROAD_DRIVES = ("2011_09_26_drive_0015", "2011_09_26_drive_0027", "2011_09_26_drive_0028",
               "2011_09_26_drive_0029", "2011_09_26_drive_0032", "2011_09_26_drive_0052",
               "2011_09_26_drive_0070", "2011_09_26_drive_0101", "2011_09_29_drive_0004",
               "2011_09_30_drive_0016", "2011_10_03_drive_0042", "2011_10_03_drive_0047")
CATEGORIES = ("road", "all")
# The authors' window: 1024 of the 1242 columns, about centred, every row.
REFERENCE_LEFT, REFERENCE_WIDTH = 184, 1024
CROPS = ("reference", "centre")
PREDNET_VAL = ("2011_09_26_drive_0005",)
PREDNET_TEST = ("2011_09_26_drive_0070", "2011_09_26_drive_0079", "2011_09_26_drive_0104")


def _drive_name(name: str) -> str:
    return name[: -len("_sync")] if name.endswith("_sync") else name


def find_drives(src: Path, camera: str = "image_02", category: str = "all") -> dict[str, Path]:
    """Drive name (without ``_sync``) -> its folder of PNG frames, for every drive under src
    (category "road": only ROAD_DRIVES and drives inside a folder named ``road``)."""
    drives = {}
    for folder in sorted(src.rglob(f"*_sync/{camera}/data")):
        name = _drive_name(folder.parent.parent.name)
        in_road = name in ROAD_DRIVES or "road" in (p.lower() for p in folder.relative_to(src).parts)
        if folder.is_dir() and any(folder.glob("*.png")) and (category == "all" or in_road):
            drives[name] = folder
    return drives


def reference_crop(frame: np.ndarray, path) -> np.ndarray:
    """The authors' window of a KITTI frame (H, W, 3): columns 184 .. 1208, every row."""
    if frame.shape[1] < REFERENCE_LEFT + REFERENCE_WIDTH:
        raise MSPNError(f"{path}: {frame.shape[1]} pixels wide, the reference crop needs columns "
                        f"{REFERENCE_LEFT}..{REFERENCE_LEFT + REFERENCE_WIDTH} (use crop 'centre')")
    return frame[:, REFERENCE_LEFT:REFERENCE_LEFT + REFERENCE_WIDTH]


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


def _check_options(category: str, crop: str) -> None:
    if category not in CATEGORIES:
        raise MSPNError(f"KITTI category must be {' or '.join(CATEGORIES)}, got {category!r}")
    if crop not in CROPS:
        raise MSPNError(f"KITTI crop must be {' or '.join(CROPS)}, got {crop!r}")


def _split(drives: dict, src: Path, val_drives, test_drives) -> tuple[list[str], list[str], str]:
    if val_drives is None and test_drives is None:
        return default_split(list(drives))
    val = [_drive_name(d) for d in val_drives or ()]
    test = [_drive_name(d) for d in test_drives or ()]
    unknown = sorted(set(val + test) - set(drives))
    if unknown:
        raise MSPNError(f"KITTI drive(s) not found under {src}: {', '.join(unknown)}")
    return val, test, "given"


def _read_drive(folder: Path, size, crop: str, interpolation: str) -> list[np.ndarray]:
    frames, aspect = [], size[1] / size[0]
    for png in sorted(folder.glob("*.png")):
        frame = cv2.imread(str(png), cv2.IMREAD_COLOR)
        if frame is None:
            raise MSPNError(f"{png}: cannot be read as an image")
        window = reference_crop(frame, png) if crop == "reference" else centre_crop(frame, aspect)
        frames.append(resize(window, size, interpolation))
    return frames


def convert_kitti(src: str | Path, out: str | Path, size: tuple[int, int] = (128, 256),
                  val_drives=None, test_drives=None, camera: str = "image_02", category: str = "road",
                  crop: str = "reference", interpolation: str = "linear", overwrite: bool = False) -> dict:
    """Convert the KITTI raw drives under ``src`` (see the module docstring); returns the
    info.json dict.

    Videos (T, 3, H, W) uint8 BGR. val_drives / test_drives: drive names (with or without
    ``_sync``); both None selects the default split; every other drive is train.
    """
    src = require_dir(src, "KITTI source")
    size = check_size(size)
    _check_options(category, crop)
    check_interpolation(interpolation)
    drives = find_drives(src, camera, category)
    if not drives:
        where = "" if category == "all" else " in the 'road' category (category 'all' takes every drive)"
        raise MSPNError(f"no KITTI drives (<date>/<drive>_sync/{camera}/data/*.png){where} under {src}")
    val, test, rule = _split(drives, src, val_drives, test_drives)
    check_disjoint(test, val, "drive(s)")
    writer = DatasetWriter(out, overwrite=overwrite)
    for drive, folder in tqdm(drives.items(), desc="KITTI", unit="drive"):
        split = "test" if drive in test else "val" if drive in val else "train"
        writer.write(split, drive, to_chw(_read_drive(folder, size, crop, interpolation), 3, str(folder)))
    window = (f"columns {REFERENCE_LEFT}..{REFERENCE_LEFT + REFERENCE_WIDTH}, squeezed" if crop == "reference"
              else "centre crop to the target aspect")
    return writer.finish(
        dataset="kitti-raw", source=str(src), camera=camera, category=category, channel_order="bgr",
        resize=f"{window}, {resize_note(interpolation)}",
        split={"by": "drive", "rule": rule, "val": sorted(val), "test": sorted(test),
               "train": sorted(set(drives) - set(val) - set(test))})
