"""mspn.predict and `mspn predict`: shapes, dtypes and every refusal of bad input."""
import numpy as np
import pytest
import torch

from mspn.checkpoint import save_checkpoint
from mspn.cli import main
from mspn.config import load_config
from mspn.errors import MSPNError
from mspn.models.mspn import MSPN
from mspn.predict import predict_file


@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    torch.manual_seed(0)
    config = load_config("micro")  # 1 channel, 16x16
    model = MSPN(config.model).eval()
    path = tmp_path_factory.mktemp("ckpt") / "micro.pt"
    save_checkpoint(path, config, model.state_dict())
    return path, model


def _frames(shape=(3, 4, 1, 16, 16), seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_predict_shape_dtype_and_values(tmp_path, micro, dtype):
    ckpt, model = micro
    frames = _frames()
    data = frames if dtype == "uint8" else frames.astype(np.float32) / 255
    np.save(tmp_path / "x.npy", data)
    out = tmp_path / "y.npy"
    returned = predict_file(ckpt, tmp_path / "x.npy", 3, out, quiet=True)
    saved = np.load(out)
    assert saved.shape == (3, 3, 1, 16, 16) and saved.dtype == np.float32
    np.testing.assert_array_equal(saved, returned)
    with torch.no_grad():
        expected = model.rollout(torch.from_numpy(frames.astype(np.float32) / 255), 3).numpy()
    np.testing.assert_allclose(saved, expected, rtol=1e-5, atol=1e-6)


def _bad(kind):
    good = _frames().astype(np.float32) / 255
    if kind == "rank":
        return good[0]
    if kind == "dtype":
        return good.astype(np.float64)
    if kind == "range":
        return good * 2
    if kind == "nan":
        good[0, 0, 0, 0, 0] = np.nan
        return good
    if kind == "inf":
        good[1, 2, 0, 3, 3] = np.inf
        return good
    if kind == "channels":
        return np.repeat(good, 3, axis=2)
    if kind == "size":
        return np.zeros((1, 2, 1, 32, 32), np.float32)
    if kind == "empty":
        return np.zeros((0, 2, 1, 16, 16), np.uint8)
    raise AssertionError(kind)


BAD_INPUTS = [
    ("rank", r"expected a 5-D array \(B, T, C, H, W\), got shape \(4, 1, 16, 16\)"),
    ("dtype", r"dtype float64 not supported: use uint8 .* or float32 in \[0, 1\]"),
    ("range", r"float32 frames must lie in \[0, 1\]: max 2\.? is above 1"),
    ("nan", r"holds 1 NaN or infinite value"),
    ("inf", r"holds 1 NaN or infinite value"),
    ("channels", r"frames have 3 channel\(s\) but checkpoint micro predicts 1"),
    ("size", r"frames are 32x32 \(HxW\) but the checkpoint was trained on 16x16"),
    ("empty", r"empty array"),
]


@pytest.mark.parametrize("kind,message", BAD_INPUTS, ids=[k for k, _ in BAD_INPUTS])
def test_bad_input_is_refused_with_a_clear_message(tmp_path, micro, kind, message):
    np.save(tmp_path / "x.npy", _bad(kind))
    with pytest.raises(MSPNError, match=message):
        predict_file(micro[0], tmp_path / "x.npy", 2, tmp_path / "y.npy")
    assert not (tmp_path / "y.npy").exists()


def test_bad_arguments_and_files(tmp_path, micro):
    np.save(tmp_path / "x.npy", _frames())
    with pytest.raises(MSPNError, match="--ckpt is required"):
        predict_file(None, tmp_path / "x.npy", 2, tmp_path / "y.npy")
    with pytest.raises(MSPNError, match="--horizon must be >= 1, got 0"):
        predict_file(micro[0], tmp_path / "x.npy", 0, tmp_path / "y.npy")
    with pytest.raises(MSPNError, match="input not found"):
        predict_file(micro[0], tmp_path / "nope.npy", 2, tmp_path / "y.npy")
    (tmp_path / "junk.npy").write_bytes(b"not numpy at all")
    with pytest.raises(MSPNError, match="not a readable .npy array"):
        predict_file(micro[0], tmp_path / "junk.npy", 2, tmp_path / "y.npy")


def test_cli_predict(tmp_path, micro, capsys):
    np.save(tmp_path / "x.npy", _frames((2, 3, 1, 16, 16)))
    code = main(["predict", "--ckpt", str(micro[0]), "--input", str(tmp_path / "x.npy"),
                 "--horizon", "2", "--out", str(tmp_path / "y.npy")])
    assert code == 0 and "(2, 2, 1, 16, 16)" in capsys.readouterr().out
    assert np.load(tmp_path / "y.npy").shape == (2, 2, 1, 16, 16)

    # without --horizon: the config's horizon (micro: data.pred_steps = 2), not "got None"
    code = main(["predict", "--ckpt", str(micro[0]), "--input", str(tmp_path / "x.npy"),
                 "--out", str(tmp_path / "h.npy")])
    assert code == 0 and np.load(tmp_path / "h.npy").shape == (2, load_config("micro").data.pred_steps, 1, 16, 16)

    np.save(tmp_path / "bad.npy", _bad("nan"))
    for argv, message, status in (
            (["--ckpt", str(micro[0]), "--input", str(tmp_path / "bad.npy")], "NaN or infinite", 1),
            (["--input", str(tmp_path / "x.npy")], "--ckpt is required", 2)):
        code = main(["predict", *argv, "--horizon", "2", "--out", str(tmp_path / "z.npy")])
        err = capsys.readouterr().err
        assert code == status, err
        assert err.startswith("mspn predict: error: ") and message in err
        assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "z.npy").exists()
