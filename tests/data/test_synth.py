"""Synthetic bouncing shapes: layout, determinism, motion, and the `mspn data synth` command."""
import json

import numpy as np
import pytest

from mspn.cli import main
from mspn.data.clips import ClipDataset
from mspn.data.synth import bouncing_video, write_synthetic
from mspn.errors import MSPNError


def test_layout_and_info(tmp_path):
    info = write_synthetic(tmp_path / "ds", size=(16, 20), channels=3, videos=(3, 1, 2), frames=6)
    for split, count in (("train", 3), ("val", 1), ("test", 2)):
        files = sorted((tmp_path / "ds" / split).glob("*.npy"))
        assert len(files) == count
        video = np.load(files[0])
        assert video.shape == (6, 3, 16, 20) and video.dtype == np.uint8
        assert video.max() > 80 and np.median(video) == 0  # bright shapes on a dark background
    on_disk = json.loads((tmp_path / "ds" / "info.json").read_text())
    assert on_disk == info
    assert info["size"] == [16, 20] and info["channels"] == 3 and info["channel_order"] == "bgr"
    assert info["videos"] == {"train": 3, "val": 1, "test": 2}


def test_deterministic_per_seed(tmp_path):
    write_synthetic(tmp_path / "a", videos=(2, 1, 1), frames=5, seed=3)
    write_synthetic(tmp_path / "b", videos=(5, 1, 1), frames=5, seed=3)  # other counts, same video 1
    write_synthetic(tmp_path / "c", videos=(2, 1, 1), frames=5, seed=4)
    a, b, c = (np.load(tmp_path / x / "train" / "000001.npy") for x in "abc")
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_motion_is_constant_and_bounces(tmp_path):
    rng = np.random.default_rng(7)
    size = 24
    for _ in range(6):
        video = bouncing_video(rng, (size, size), 1, 40, objects=1)
        boxes = []
        for frame in video[:, 0]:
            rows, cols = np.nonzero(frame)
            assert rows.size, "the shape must stay inside the frame"
            boxes.append((rows.min(), rows.max(), cols.min(), cols.max()))
        boxes = np.array(boxes)
        bounces = 0
        for lo, hi in ((0, 1), (2, 3)):
            d = np.diff(boxes[:, lo])
            assert np.abs(d).max() <= 2  # at most 2 px per axis and frame
            for t in range(1, len(d)):
                if d[t] != d[t - 1]:  # the velocity only changes by reflection at a border
                    assert boxes[t, lo] <= 2 or boxes[t, hi] >= size - 3, (t, boxes[t], d[t - 1:t + 1])
                    bounces += 1
        assert np.abs(np.diff(boxes[:, [0, 2]], axis=0)).sum(axis=1).max() >= 1
        assert bounces >= 1  # >= 1 px/frame for 40 frames crosses the 24 px frame


def test_frames_change_so_copy_last_frame_is_not_perfect(tmp_path):
    write_synthetic(tmp_path / "ds", videos=(4, 1, 1), frames=20)
    ds = ClipDataset(tmp_path / "ds", "train", 10)
    assert len(ds) == 8
    clip = ds[0]
    assert float((clip[1:] - clip[:-1]).abs().mean()) > 0.005


def test_bad_arguments(tmp_path):
    with pytest.raises(MSPNError, match="at least 12x12"):
        write_synthetic(tmp_path / "x", size=(8, 8))
    with pytest.raises(MSPNError, match=r"videos must be a count N or \(train, val, test\)"):
        write_synthetic(tmp_path / "x", videos=(1, 2))


def test_cli_synth_and_error_exit(tmp_path, capsys):
    out = tmp_path / "ds"
    args = ["data", "synth", "--out", str(out), "--size", "16x16", "--videos", "2,1,1", "--frames", "5"]
    assert main(args) == 0
    assert "wrote 2 train, 1 val, 1 test videos of 1x16x16" in capsys.readouterr().out
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("mspn data: error: output folder") and "--overwrite" in err
    assert len(err.splitlines()) == 1
    assert main(args + ["--overwrite", "--seed", "1"]) == 0
