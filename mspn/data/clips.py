"""Clip datasets: non-overlapping windows of frames cut from every video of a split folder."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from mspn.data.video import load_video, video_files
from mspn.errors import MSPNError


class ClipDataset(Dataset):
    """Clips of ``clip_length`` frames from every video in ``root/split/`` (sorted .npy/.pth files).

    A clip takes every ``frame_interval``-th frame, so it covers ``clip_length * frame_interval``
    raw frames; clips follow each other without overlap from the first frame of each video, and a
    video's tail too short for one more clip is left out. (The reference's loader also adds the
    windows shifted by 1 .. frame_interval-1 frames; here one phase only, so clips never overlap.)

    Item: float32 tensor (T, C, H, W) in [0, 1] (the uint8 frames / 255), T = clip_length.
    Videos stay memory-mapped: only the frames of the requested clip are read.
    """

    def __init__(self, root: str | Path, split: str, clip_length: int, frame_interval: int = 1):
        if clip_length < 1 or frame_interval < 1:
            raise MSPNError(f"clip_length and frame_interval must be >= 1, got {clip_length} "
                            f"and {frame_interval}")
        self.root = Path(root)
        self.split = split
        self.folder = self.root / split
        self.clip_length = clip_length
        self.frame_interval = frame_interval
        if not self.folder.is_dir():
            present = sorted(p.name for p in self.root.iterdir() if p.is_dir()) if self.root.is_dir() else []
            where = f" (it has: {', '.join(present)})" if present else (
                "" if self.root.is_dir() else f" ({self.root} does not exist)")
            raise MSPNError(f"split folder {self.folder} not found{where}")
        self.paths = video_files(self.folder)
        if not self.paths:
            raise MSPNError(f"split folder {self.folder} holds no videos (.npy or .pth files)")

        self._videos: dict[int, np.ndarray] = {}
        self.lengths: list[int] = []
        frame_shape = None
        for i, path in enumerate(self.paths):
            video = load_video(path)
            if frame_shape is None:
                frame_shape, first = tuple(video.shape[1:]), path
            elif tuple(video.shape[1:]) != frame_shape:
                raise MSPNError(f"videos of different frame shapes in {self.folder}: {first.name} has "
                                f"{_chw(frame_shape)}, {path.name} has {_chw(video.shape[1:])} (C x H x W)")
            self.lengths.append(int(video.shape[0]))
            self._videos[i] = video
        self.channels, height, width = frame_shape
        self.frame_size = (height, width)

        # a clip's last frame is (clip_length - 1) * interval after its first
        self.needed = (clip_length - 1) * frame_interval + 1
        span = clip_length * frame_interval
        self.index: list[tuple[int, int]] = [
            (v, start) for v, length in enumerate(self.lengths)
            for start in range(0, length - self.needed + 1, span)]
        if not self.index:
            every = (f" (1 frame in {frame_interval}: {self.needed} raw frames)"
                     if frame_interval > 1 else "")
            raise MSPNError(f"clips of {clip_length} frames{every} are longer than every video in "
                            f"{self.folder}: the longest has {max(self.lengths)} frames")

    def __len__(self) -> int:
        return len(self.index)

    def _video(self, v: int) -> np.ndarray:
        video = self._videos.get(v)
        if video is None:
            video = self._videos[v] = load_video(self.paths[v])
        return video

    def __getitem__(self, item: int) -> torch.Tensor:
        v, start = self.index[item]
        frames = self._video(v)[start:start + self.needed:self.frame_interval]
        return torch.from_numpy(frames.astype(np.float32)).div_(255.0)

    def __getstate__(self):
        # Worker processes reopen the memory maps; pickling them would copy every video.
        state = self.__dict__.copy()
        state["_videos"] = {}
        return state

    def __repr__(self) -> str:
        return (f"ClipDataset({self.folder}, {len(self)} clips of {self.clip_length} frames, "
                f"interval {self.frame_interval}, {self.channels}x{self.frame_size[0]}x{self.frame_size[1]})")


def _chw(shape) -> str:
    return "x".join(str(int(s)) for s in shape)


def check_frames(config, dataset: ClipDataset) -> None:
    """Refuse data whose frame size or channel count differs from the config's.

    config: a mspn.config.Config; compares ``config.data.size`` (H, W) and
    ``config.model.frame_channels`` with the dataset's frames.
    """
    want_size = tuple(config.data.size)
    want_c = config.model.frame_channels
    if dataset.frame_size == want_size and dataset.channels == want_c:
        return
    have = f"{dataset.channels}x{dataset.frame_size[0]}x{dataset.frame_size[1]}"
    want = f"{want_c}x{want_size[0]}x{want_size[1]}"
    raise MSPNError(
        f"the frames in {dataset.folder} are {have} (C x H x W) but config {config.name!r} expects "
        f"{want} (model.frame_channels x data.size): convert the data at that size or set "
        f"data.size=[{dataset.frame_size[0]},{dataset.frame_size[1]}] and "
        f"model.frame_channels={dataset.channels}")


def clip_dataset(config, root: str | Path, split: str) -> ClipDataset:
    """The split's clips for a config: clip length context + pred_steps, its frame_interval,
    with the frame size and channels checked against the config."""
    dataset = ClipDataset(root, split, config.data.clip_length, config.data.frame_interval)
    check_frames(config, dataset)
    return dataset
