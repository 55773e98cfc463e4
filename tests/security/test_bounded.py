"""Bounded work: requests that would run for hours or exhaust memory are refused up front."""
from __future__ import annotations

import gzip
import io
import threading

import numpy as np
import pytest

from mspn.errors import MSPNError
from mspn.runtime import Predictor

from .conftest import refuse, snapshot


def test_horizon_above_max_horizon_is_refused(tiny, npy_input, tmp_path, capsys):
    before = snapshot(tmp_path)
    err = refuse(["predict", "--model", tiny["model"], "--input", npy_input, "--out", tmp_path / "o.npy",
                  "--horizon", 10**6], capsys)
    assert "--horizon 1000000 is above --max-horizon 1000; raise --max-horizon if you mean it" in err
    assert snapshot(tmp_path) == before


def test_horizon_beyond_memory_is_refused_with_the_size(tiny, npy_input, tmp_path, capsys):
    err = refuse(["predict", "--model", tiny["model"], "--input", npy_input, "--out", tmp_path / "o.npy",
                  "--horizon", 10**9, "--max-horizon", 10**9], capsys)
    assert "--horizon 1000000000 needs" in err and "GiB of memory available" in err


def test_npy_header_claiming_petabytes_is_refused_unread(tiny, tmp_path, capsys):
    path = tmp_path / "huge.npy"
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (10**6, 10**6, 1, 32, 32)})
    path.write_bytes(header.getvalue() + bytes(64))
    err = refuse(["predict", "--model", tiny["model"], "--input", path, "--out", tmp_path / "o.npy"], capsys)
    assert "its header declares shape (1000000, 1000000, 1, 32, 32)" in err and "truncated or not a real" in err


def test_synth_with_a_huge_size_is_refused(tmp_path, capsys):
    err = refuse(["data", "synth", "--out", tmp_path / "d", "--size", "100000x100000"], capsys)
    assert "synthetic frames are at most 4096x4096" in err and not (tmp_path / "d").exists()
    err = refuse(["data", "synth", "--out", tmp_path / "d", "--seed", "-1"], capsys)
    assert "--seed must be >= 0, got -1" in err and not (tmp_path / "d").exists()


def _idx(count: int, pixels: bytes, side: int = 28) -> bytes:
    return np.array([2051, count, side, side], ">i4").tobytes() + pixels


def test_gzip_bomb_given_to_the_mnist_reader_is_refused_without_inflating_it(tmp_path):
    from mspn.data.mmnist import read_idx_images

    bomb = tmp_path / "bomb-idx3-ubyte.gz"
    with gzip.open(bomb, "wb", compresslevel=9) as handle:  # declares 2 digits, inflates to 200 MB
        handle.write(_idx(2, bytes(2 * 28 * 28)))
        for _ in range(200):
            handle.write(bytes(1 << 20))
    assert bomb.stat().st_size < 1 << 20
    with pytest.raises(MSPNError, match=r"holds more data than its header declares"):
        read_idx_images(bomb)
    claims = tmp_path / "claims-idx3-ubyte.gz"
    claims.write_bytes(gzip.compress(_idx(2**31 - 1, b"")))
    with pytest.raises(MSPNError, match=r"header declares 2147483647 images of 28x28, beyond any MNIST file"):
        read_idx_images(claims)
    wrong = tmp_path / "wrong.gz"
    wrong.write_bytes(gzip.compress(np.array([1, 2, 3, 4], ">i4").tobytes() + bytes(10**6)))
    with pytest.raises(MSPNError, match=r"not an idx image file \(magic 1"):
        read_idx_images(wrong)


def test_stream_rollout_of_a_million_frames_is_refused(tiny, clips):
    with Predictor.load(tiny["model"]) as predictor:
        session = predictor.stream()
        session.push(clips[:1, 0])
        with pytest.raises(MSPNError, match=r"rollout\(1000000\) asks for more than 10000 frames in one call"):
            session.rollout(10**6)
        assert session.rollout(2).shape == (1, 2, 1, 32, 32)  # the session still works


def test_reset_during_a_rollout_in_another_thread_is_refused(tiny, clips, monkeypatch):
    with Predictor.load(tiny["model"]) as predictor:
        session = predictor.stream()
        session.push(clips[:1, 0])
        inside, release = threading.Event(), threading.Event()
        step = session._runner.step

        def slow_step(*args, **kwargs):  # holds the rollout inside a step until the test says so
            inside.set()
            release.wait(10)
            return step(*args, **kwargs)

        monkeypatch.setattr(session._runner, "step", slow_step)
        results = {}
        worker = threading.Thread(target=lambda: results.update(out=session.rollout(3)))
        worker.start()
        assert inside.wait(10)
        with pytest.raises(MSPNError, match=r"in use by another thread"):
            session.reset()
        release.set()
        worker.join(10)
        monkeypatch.undo()
        assert results["out"].shape == (1, 3, 1, 32, 32) and np.isfinite(results["out"]).all()
        session.reset()
        assert session.batch is None
