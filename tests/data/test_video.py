"""Video files: .npy round trips, reference .pth tensors, layout and dtype errors, DatasetWriter."""
import json

import numpy as np
import pytest
import torch

from mspn.data.video import DatasetWriter, load_video, read_info, save_video
from mspn.errors import MSPNError


def _video(t=4, c=3, h=6, w=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (t, c, h, w), dtype=np.uint8)


def test_npy_round_trip_is_memory_mapped(tmp_path):
    video = _video()
    path = save_video(tmp_path / "a" / "v.npy", video)
    loaded = load_video(path)
    assert isinstance(loaded, np.memmap)
    assert not loaded.flags.writeable
    np.testing.assert_array_equal(loaded, video)
    assert [p.name for p in path.parent.iterdir()] == ["v.npy"]  # no temporary left behind


@pytest.mark.parametrize("array, what", [
    (np.zeros((4, 6, 8), np.uint8), r"shape \(4, 6, 8\)"),
    (np.zeros((2, 1, 6, 8), np.float32), r"dtype float32"),
])
def test_save_refuses_bad_arrays(tmp_path, array, what):
    with pytest.raises(MSPNError, match=what):
        save_video(tmp_path / "v.npy", array)
    assert not (tmp_path / "v.npy").exists()


def test_load_names_file_and_shape(tmp_path):
    np.save(tmp_path / "flat.npy", np.zeros((5, 6, 7), np.uint8))
    np.save(tmp_path / "float.npy", np.zeros((2, 1, 4, 4), np.float64))
    with pytest.raises(MSPNError, match=r"flat\.npy: .*shape \(5, 6, 7\)"):
        load_video(tmp_path / "flat.npy")
    with pytest.raises(MSPNError, match=r"float\.npy: .*dtype float64"):
        load_video(tmp_path / "float.npy")


def test_load_corrupt_or_missing(tmp_path):
    (tmp_path / "bad.npy").write_bytes(b"not numpy at all")
    with pytest.raises(MSPNError, match=r"bad\.npy: not a readable \.npy video"):
        load_video(tmp_path / "bad.npy")
    with pytest.raises(MSPNError, match="video not found"):
        load_video(tmp_path / "missing.npy")
    (tmp_path / "v.avi").write_bytes(b"x")
    with pytest.raises(MSPNError, match="unknown video file type"):
        load_video(tmp_path / "v.avi")


def test_reference_pth_tchw(tmp_path):
    video = _video()
    torch.save(torch.from_numpy(video), tmp_path / "ref.pth")
    np.testing.assert_array_equal(load_video(tmp_path / "ref.pth"), video)


def test_reference_pth_channels_last_is_transposed(tmp_path):
    video = _video(c=3, h=10, w=12)
    torch.save(torch.from_numpy(video.transpose(0, 2, 3, 1).copy()), tmp_path / "hwc.pth")
    loaded = load_video(tmp_path / "hwc.pth")
    assert loaded.shape == (4, 3, 10, 12)
    np.testing.assert_array_equal(loaded, video)


def test_reference_pth_errors(tmp_path):
    torch.save(torch.zeros(2, 1, 4, 4), tmp_path / "float.pth")
    torch.save({"video": torch.zeros(2, 1, 4, 4, dtype=torch.uint8)}, tmp_path / "dict.pth")
    (tmp_path / "junk.pth").write_bytes(b"\x00" * 40)
    with pytest.raises(MSPNError, match=r"float\.pth: .*shape \(2, 1, 4, 4\) dtype float32"):
        load_video(tmp_path / "float.pth")
    with pytest.raises(MSPNError, match=r"dict\.pth: .*one tensor .* found dict"):
        load_video(tmp_path / "dict.pth")
    with pytest.raises(MSPNError, match=r"junk\.pth: not a readable \.pth video"):
        load_video(tmp_path / "junk.pth")


def test_dataset_writer_refuses_mixing_and_overwrites(tmp_path):
    writer = DatasetWriter(tmp_path / "ds")
    writer.write("train", "a", _video())
    with pytest.raises(MSPNError, match=r"b: frames of shape \(1, 6, 8\)"):
        writer.write("val", "b", _video(c=1))
    info = writer.finish(dataset="x", channel_order="bgr")
    assert info["videos"] == {"train": 1, "val": 0, "test": 0} and info["size"] == [6, 8]
    assert read_info(tmp_path / "ds") == json.loads((tmp_path / "ds" / "info.json").read_text()) == info
    with pytest.raises(MSPNError, match="already holds 1 video.*--overwrite"):
        DatasetWriter(tmp_path / "ds")
    replacing = DatasetWriter(tmp_path / "ds", overwrite=True)
    replacing.write("test", "c", _video())
    assert (tmp_path / "ds" / "train" / "a.npy").exists() and read_info(tmp_path / "ds") == info  # not yet
    replacing.finish(dataset="y", channel_order="bgr")
    assert not (tmp_path / "ds" / "train" / "a.npy").exists() and (tmp_path / "ds" / "test" / "c.npy").exists()
    assert read_info(tmp_path / "ds")["dataset"] == "y"
    assert sorted(p.name for p in (tmp_path / "ds").iterdir()) == ["info.json", "test", "train", "val"]
