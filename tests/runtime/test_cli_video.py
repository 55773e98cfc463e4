"""`mspn predict --model`: .npy and video in, side-by-side video and GIF out; CLI errors exit 2."""
from __future__ import annotations

import numpy as np
import pytest

from mspn.cli import main
from mspn.runtime import Predictor


def _frame_count(path) -> int:
    import cv2

    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


def test_npy_in_npy_out_matches_predict(tiny, clips, tmp_path, capsys):
    np.save(tmp_path / "x.npy", clips)
    assert main(["predict", "--model", str(tiny["model"]), "--input", str(tmp_path / "x.npy"),
                 "--out", str(tmp_path / "y.npy")]) == 0
    with Predictor.load(tiny["model"]) as predictor:
        np.testing.assert_allclose(np.load(tmp_path / "y.npy"), predictor.predict(clips), atol=1e-5)
    # Any context length and horizon: streamed through the step graph.
    np.save(tmp_path / "x7.npy", np.concatenate([clips, clips[:, :2]], axis=1))
    assert main(["predict", "--model", str(tiny["model"]), "--backend", "openvino", "--input",
                 str(tmp_path / "x7.npy"), "--horizon", "8", "--out", str(tmp_path / "y8.npy")]) == 0
    assert np.load(tmp_path / "y8.npy").shape == (3, 8, 1, 32, 32)
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("stream", [False, True])
def test_video_in_side_by_side_out(tiny, video, tmp_path, stream):
    out, gif = tmp_path / "out.mp4", tmp_path / "out.gif"
    args = ["predict", "--model", str(tiny["model"]), "--video", str(video), "--out", str(out)]
    if stream:
        args += ["--stream", "--gif", str(gif)]
    else:
        args += ["--lead", "2"]
    assert main(args) == 0
    # 24 frames in; the window mode starts at context + lead - 1 = 6, the stream at frame 1.
    assert _frame_count(out) == (23 if stream else 18)
    import cv2

    capture = cv2.VideoCapture(str(out))
    ok, image = capture.read()
    capture.release()
    assert ok and image.shape == (128, 4 * 2 + 128 * 2 - 4, 3)  # 32x32 enlarged 4x, 4 px gap
    assert not list(tmp_path.glob(".*tmp*"))  # atomic writes leave no temporaries
    if stream:
        import imageio.v2 as imageio

        assert len(imageio.mimread(gif)) == 23


@pytest.mark.parametrize("args, message, status", [
    (["--input", "x.npy", "--video", "v.mp4"], "give exactly one of --input X.npy or --video VIDEO", 2),
    (["--video", "missing.mp4"], "video not found: missing.mp4", 1),
    (["--input", "missing.npy"], "input not found: missing.npy", 1),
    (["--backend", "tensorrt", "--input", "x.npy"], "no TensorRT engine for the fp32 rollout graph", 1),
])
def test_cli_errors_are_one_line(tiny, args, message, status, capsys, tmp_path, monkeypatch):
    # 2: the command line itself is wrong; 1: an error during the run
    monkeypatch.chdir(tmp_path)
    code = main(["predict", "--model", str(tiny["model"]), "--out", "o.mp4", *args])
    err = capsys.readouterr().err
    assert code == status and message in err and len(err.strip().splitlines()) == 1


def test_video_too_short_and_bad_lead(tiny, video, tmp_path, capsys):
    base = ["predict", "--model", str(tiny["model"]), "--video", str(video), "--out", str(tmp_path / "o.mp4")]
    assert main(base + ["--max-frames", "5"]) == 1
    assert "5 frame(s) decoded; at least 6 are needed" in capsys.readouterr().err
    assert main(base + ["--lead", "9"]) == 1
    assert "--lead must be between 1 and the model's horizon 5" in capsys.readouterr().err
    assert main(base[:-1] + [str(tmp_path / "o.webm")]) == 1
    assert "unsupported video extension" in capsys.readouterr().err
