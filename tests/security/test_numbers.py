"""Bad numbers and truthful messages: one-line refusals, never a traceback or a silent NaN."""
from __future__ import annotations

import pickle
import re

import numpy as np
import pytest

from mspn.errors import MSPNError
from mspn.runtime import Predictor

from .conftest import edit_manifest, refuse, snapshot


def test_a_text_file_given_as_checkpoint_is_refused(tmp_path, npy_input, capsys):
    (tmp_path / "hello.pt").write_text("hello\n")
    err = refuse(["predict", "--ckpt", tmp_path / "hello.pt", "--input", npy_input, "--out", tmp_path / "o.npy"],
                 capsys)
    assert "hello.pt: not a readable checkpoint (truncated, corrupt or another kind of file)" in err
    assert not (tmp_path / "o.npy").exists()


def test_a_pickle_is_refused_without_torchs_advice(tmp_path, npy_input, capsys):
    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"x": print}))  # a global: not weights-only loadable
    err = refuse(["predict", "--ckpt", tmp_path / "evil.pt", "--input", npy_input, "--out", tmp_path / "o.npy"],
                 capsys)
    assert "mspn never unpickles" in err and "weights_only" not in err


def test_nan_weights_are_refused_with_the_tensors_name(tiny, tmp_path, npy_input, capsys):
    import torch

    from mspn.checkpoint import load_raw, save_checkpoint
    from mspn.config import Config

    raw = load_raw(tiny["ckpt"])
    name = sorted(raw["model"])[5]
    raw["model"][name] = raw["model"][name].clone()
    raw["model"][name].view(-1)[0] = float("inf")
    save_checkpoint(tmp_path / "nan.pt", Config.from_dict(raw["config"]), raw["model"])
    assert torch.isinf(load_raw(tmp_path / "nan.pt")["model"][name]).any()
    err = refuse(["predict", "--ckpt", tmp_path / "nan.pt", "--input", npy_input, "--out", tmp_path / "o.npy"],
                 capsys)
    assert f"weight {name} holds 1 NaN or infinite value(s)" in err and not (tmp_path / "o.npy").exists()


def test_a_masked_array_hiding_nan_is_refused_like_nan(tiny, clips):
    frames = clips[:1].copy()
    frames[0, 0, 0, 0, 0] = np.nan
    masked = np.ma.masked_invalid(frames)
    assert np.isfinite(masked).all()  # the mask hides it from a naive check
    with Predictor.load(tiny["model"]) as predictor, pytest.raises(MSPNError, match=r"contains NaN or inf"):
        predictor.predict(masked)


@pytest.mark.parametrize("override, match", [
    ("train.lr=-1", r"train.lr must be > 0, got -1.0"),
    ("train.lr=.nan", r"train.lr must be a finite number, got nan"),
    ("train.lr=.inf", r"train.lr must be a finite number, got inf"),
    ("adv.d_lr=0", r"adv.d_lr must be > 0, got 0.0"),
    ("train.weight_decay=-0.1", r"train.weight_decay must be >= 0"),
], ids=["negative", "nan", "inf", "zero", "decay"])
def test_bad_learning_rates_are_refused(tmp_path, capsys, override, match):
    err = refuse(["train", "--data", tmp_path, "--out", tmp_path / "run", "--set", override], capsys)
    assert re.search(match, err), err
    assert not (tmp_path / "run").exists()


def test_export_with_zero_calibration_clips_is_refused(tiny, tmp_path, capsys):
    err = refuse(["export", "--ckpt", tiny["ckpt"], "--out", tmp_path / "m", "--variants", "int8",
                  "--calib-clips", "0"], capsys)
    assert "--calib-clips must be >= 1, got 0" in err and not (tmp_path / "m").exists()


@pytest.mark.parametrize("options, match", [
    ({"threads": "abc"}, r"onnxruntime option threads must be a whole number >= 0, got 'abc'"),
    ({"threads": -2}, r"option threads must be a whole number >= 0, got -2"),
    ({"backend": "openvino", "threads": 1.5}, r"openvino option threads must be a whole number >= 0, got 1.5"),
    ({"trt_fp16": "yes"}, r"onnxruntime option trt_fp16 must be True or False, got 'yes'"),
], ids=["text", "negative", "float", "bool"])
def test_backend_options_of_the_wrong_type_are_refused(tiny, options, match):
    with pytest.raises(MSPNError, match=match):
        Predictor.load(tiny["model"], **options)


def test_input_with_batch_zero_is_refused(tiny, tmp_path, capsys):
    np.save(tmp_path / "empty.npy", np.zeros((0, 5, 1, 32, 32), np.float32))
    err = refuse(["predict", "--model", tiny["model"], "--input", tmp_path / "empty.npy",
                  "--out", tmp_path / "o.npy", "--horizon", "3"], capsys)
    assert "input is empty: shape (0, 5, 1, 32, 32)" in err and not (tmp_path / "o.npy").exists()


def test_manifest_with_batch_max_zero_is_refused(model_copy):
    edit_manifest(model_copy, lambda raw: raw["batch"].update(max=0))
    with pytest.raises(MSPNError, match=r"batch.max must lie in 1..65536, got 0"):
        Predictor.load(model_copy)


def test_bench_exits_non_zero_when_nothing_was_measured(tiny, tmp_path, capsys):
    before = snapshot(tiny["model"])
    code = __import__("mspn.cli", fromlist=["main"]).main(
        ["bench", "--model", str(tiny["model"]), "--backends", "tensorrt", "--variants", "fp32", "--no-charts",
         "--clips", "1", "--report", str(tmp_path / "bench.json")])
    err = capsys.readouterr().err
    assert code == 1 and "no measurement succeeded (0 failed, 1 skipped or other)" in err
    assert (tmp_path / "bench.json").is_file() and snapshot(tiny["model"]) == before


def test_range_messages_say_what_is_true(tiny, clips):
    frames = clips[:1].copy()
    frames[0, 1, 0, 2, 3] = np.float32(1.0000001)
    with Predictor.load(tiny["model"]) as predictor, pytest.raises(MSPNError, match=r"max 1.0000001 is above 1"):
        predictor.predict(frames)


def test_negative_max_frames_is_called_invalid(tiny, video, tmp_path, capsys):
    err = refuse(["predict", "--model", tiny["model"], "--video", video, "--out", tmp_path / "o.avi",
                  "--max-frames", "-1"], capsys)
    assert "--max-frames must be >= 0, got -1" in err and "no frames could be decoded" not in err
