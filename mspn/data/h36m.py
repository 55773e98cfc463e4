"""Human3.6M: the original ``S<n>/Videos/<Action>.<camera>.mp4`` files -> train/val/test .npy videos.

As the authors prepare it: every frame is cropped to rows and columns 120 .. 880 (the 760x760
middle of the 1000-pixel frames, where the person is) and resized to 128x128 with cv2.resize's
default bilinear interpolation, BGR as OpenCV reads it. One video per subject, action and camera;
the ``_ALL`` concatenations some subject folders hold are skipped. Protocol 10 -> 10.

Split by subject: S1, S5, S6, S7 and S8 train, S9 and S11 test (the split of the video-prediction
literature; the authors' code encodes none); val is carved from train by subject (default S8).
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

SUBJECT = re.compile(r"^S(\d+)$")
VIDEO_NAME = re.compile(r"^(?P<action>[^.]+)\.(?P<camera>\d+)\.mp4$", re.IGNORECASE)
# The authors' window: rows and columns 120 .. 880.
CROP = (120, 880)


def find_videos(src: Path) -> list[tuple[int, str, str, Path]]:
    """(subject, action, camera, path) of every ``S<n>/.../<Action>.<camera>.mp4`` under src,
    sorted; ``_ALL`` files are left out."""
    found = []
    for path in sorted(src.rglob("*")):
        match = VIDEO_NAME.match(path.name)
        if not path.is_file() or not match or match["action"].startswith("_ALL"):
            continue
        folders = path.relative_to(src).parts[:-1]
        subjects = [int(m.group(1)) for part in folders if (m := SUBJECT.match(part))]
        if subjects:
            found.append((subjects[-1], match["action"], match["camera"], path))
    return found


def crop_frame(frame, path):
    """The authors' window of a frame (H, W, 3): [120:880, 120:880]."""
    low, high = CROP
    if min(frame.shape[:2]) < high:
        raise MSPNError(f"{path}: {frame.shape[0]}x{frame.shape[1]} frames are too small for the "
                        f"[{low}:{high}, {low}:{high}] crop of Human3.6M")
    return frame[low:high, low:high]


def convert_h36m(src: str | Path, out: str | Path, size: tuple[int, int] = (128, 128),
                 train_subjects=(1, 5, 6, 7, 8), val_subjects=(8,), test_subjects=(9, 11),
                 interpolation: str = "linear", overwrite: bool = False) -> dict:
    """Convert the Human3.6M videos under ``src``; returns the info.json dict.

    Videos (T, 3, H, W) uint8 BGR. Subjects in none of the lists are skipped; a subject in
    val_subjects leaves train.
    """
    src = require_dir(src, "Human3.6M source")
    size = check_size(size)
    check_interpolation(interpolation)
    check_disjoint(test_subjects, val_subjects, "subject(s)")
    videos = find_videos(src)
    if not videos:
        raise MSPNError(f"no Human3.6M videos (S<n>/Videos/<Action>.<camera>.mp4) under {src}")
    writer = DatasetWriter(out, overwrite=overwrite)
    skipped = []
    for subject, action, camera, path in tqdm(videos, desc="Human3.6M", unit="video"):
        split = assign_split(subject, test_subjects, val_subjects, train_subjects)
        if split is None:
            skipped.append(str(path.relative_to(src)))
            continue
        frames = [resize(crop_frame(f, path), size, interpolation) for f in read_video(path)]
        writer.write(split, f"S{subject}_{action.replace(' ', '_')}_{camera}", to_chw(frames, 3, str(path)))
    return writer.finish(
        dataset="human3.6m", source=str(src), channel_order="bgr",
        resize=f"crop [{CROP[0]}:{CROP[1]}, {CROP[0]}:{CROP[1]}], {resize_note(interpolation)}",
        split={"by": "subject", "train": sorted(set(train_subjects) - set(val_subjects) - set(test_subjects)),
               "val": sorted(val_subjects), "test": sorted(test_subjects)},
        skipped=skipped)
