"""ClipDataset: clip counting and content with and without frame_interval, errors, config checks."""
import pickle

import numpy as np
import pytest
import torch

from mspn.config import load_config
from mspn.data.clips import ClipDataset, check_frames, clip_dataset
from mspn.data.video import save_video
from mspn.errors import MSPNError


def _indexed_video(length, offset=0, c=1, h=4, w=6):
    """Every pixel of frame t holds offset + t, so a clip tells which frames it took."""
    values = (offset + np.arange(length, dtype=np.uint8))[:, None, None, None]
    return np.broadcast_to(values, (length, c, h, w)).copy()


@pytest.fixture
def root(tmp_path):
    save_video(tmp_path / "train" / "a.npy", _indexed_video(25))
    torch.save(torch.from_numpy(_indexed_video(13, offset=100)), tmp_path / "train" / "b.pth")
    return tmp_path


def _frame_ids(clip):
    return [round(v) for v in (clip[:, 0, 0, 0] * 255).tolist()]


def _reference_count(lengths, clip_length, interval):
    # the reference loader's count for its first phase: (T + k - 1) // (L * k)
    return sum((t + interval - 1) // (clip_length * interval) for t in lengths)


def test_clips_interval_1(root):
    ds = ClipDataset(root, "train", clip_length=5)
    assert len(ds) == 5 + 2 == _reference_count([25, 13], 5, 1)
    assert ds.frame_size == (4, 6) and ds.channels == 1
    clip = ds[0]
    assert clip.dtype == torch.float32 and clip.shape == (5, 1, 4, 6)
    assert _frame_ids(ds[0]) == [0, 1, 2, 3, 4]
    assert _frame_ids(ds[4]) == [20, 21, 22, 23, 24]
    assert _frame_ids(ds[6]) == [105, 106, 107, 108, 109]  # second video (.pth), no overlap
    assert float(clip.min()) >= 0.0 and float(max(ds[i].max() for i in range(len(ds)))) <= 1.0


def test_clips_with_frame_interval(root):
    ds = ClipDataset(root, "train", clip_length=5, frame_interval=2)
    # a clip needs 9 raw frames and spans 10: starts 0 and 10 in the 25-frame video, 0 in the 13-frame one
    assert len(ds) == 3 == _reference_count([25, 13], 5, 2)
    assert _frame_ids(ds[0]) == [0, 2, 4, 6, 8]
    assert _frame_ids(ds[1]) == [10, 12, 14, 16, 18]
    assert _frame_ids(ds[2]) == [100, 102, 104, 106, 108]


def test_authors_nested_pth_folders_load_as_is(tmp_path):
    # their prepared data: one sub-folder per person (KTH) or set (Caltech) inside each split
    for person, offset in (("person02", 100), ("person01", 0)):
        folder = tmp_path / "train" / person
        folder.mkdir(parents=True)
        torch.save(torch.from_numpy(_indexed_video(10, offset=offset)), folder / f"{person}_boxing.pth")
    (tmp_path / "train" / ".cache").mkdir()
    torch.save(torch.zeros(3, 1, 4, 6, dtype=torch.uint8), tmp_path / "train" / ".cache" / "x.pth")
    ds = ClipDataset(tmp_path, "train", clip_length=5)
    assert [p.parent.name for p in ds.paths] == ["person01", "person02"]   # sorted by path, hidden left out
    assert len(ds) == 4 and _frame_ids(ds[2]) == [100, 101, 102, 103, 104]


@pytest.mark.parametrize("length, clip_length, interval", [(20, 10, 1), (19, 10, 2), (41, 7, 3), (9, 3, 4)])
def test_count_matches_reference_formula(tmp_path, length, clip_length, interval):
    save_video(tmp_path / "s" / "v.npy", _indexed_video(length))
    dataset = ClipDataset(tmp_path, "s", clip_length, interval)
    assert len(dataset) == _reference_count([length], clip_length, interval)


def test_batches_through_a_dataloader(root):
    ds = ClipDataset(root, "train", clip_length=4)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=3)))
    assert batch.shape == (3, 4, 1, 4, 6)
    # worker processes get the paths, not copies of the videos
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._videos == {} and torch.equal(clone[5], ds[5])


def test_missing_and_empty_split(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(MSPNError, match=r"split folder .*val not found \(it has: train\)"):
        ClipDataset(tmp_path, "val", 5)
    with pytest.raises(MSPNError, match=r"split folder .*train holds no videos"):
        ClipDataset(tmp_path, "train", 5)


def test_clips_longer_than_every_video(root):
    with pytest.raises(MSPNError, match=r"clips of 26 frames are longer than every video .*longest has 25 fr"):
        ClipDataset(root, "train", 26)
    with pytest.raises(MSPNError, match=r"clips of 14 frames \(1 frame in 2: 27 raw frames\).*longest has 25"):
        ClipDataset(root, "train", 14, frame_interval=2)


def test_mixed_frame_sizes(root):
    save_video(root / "train" / "c.npy", _indexed_video(10, h=8))
    with pytest.raises(MSPNError, match=r"different frame shapes .*a\.npy has 1x4x6, c\.npy has 1x8x6"):
        ClipDataset(root, "train", 5)


def test_check_frames_against_config(tmp_path):
    config = load_config("tiny")  # 1 x 32 x 32
    save_video(tmp_path / "train" / "v.npy", _indexed_video(12, h=32, w=32))
    save_video(tmp_path / "val" / "v.npy", _indexed_video(12, c=3, h=32, w=48))
    assert len(clip_dataset(config, tmp_path, "train")) == 1  # tiny's clips: 5 + 5 frames
    with pytest.raises(MSPNError, match=r"are 3x32x48 \(C x H x W\) but config 'tiny' expects 1x32x32"):
        check_frames(config, ClipDataset(tmp_path, "val", 10))
