"""Live sources frame by frame: a generated video, an image folder and stdin in; .npy, PNG folder
and video out; predictions equal Predictor's; memory stays flat on a long video. Also the
Predictor API behind it: predict(frames, horizon=N) and StreamSession.feed."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from mspn.cli import main
from mspn.runtime import Predictor
from mspn.runtime.video import read_video


@pytest.fixture(scope="module")
def predictor(tiny):
    with Predictor.load(tiny["model"]) as p:
        yield p


def _write_video(path, frames: int, size=(48, 64)):
    import cv2
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (size[1], size[0]))
    for t in range(frames):
        image = np.full((*size, 3), 90, np.uint8)
        x = (2 * t) % (size[1] - 16)
        image[16:32, x:x + 16] = (0, 0, 230)
        writer.write(image)
    writer.release()
    return path


def _feed(predictor, frames) -> np.ndarray:
    with predictor.stream() as session:
        return np.stack(list(session.feed(iter(frames))))


def test_predict_any_horizon_and_feed_match_sessions(predictor, clips):
    long = np.concatenate([clips, clips[:, :2]], axis=1)  # 7 context frames
    with predictor.stream() as session:
        for t in range(long.shape[1]):
            session.push(long[:, t])
        expected = session.rollout(9)
    np.testing.assert_allclose(predictor.predict(long, horizon=9), expected, atol=1e-6)
    np.testing.assert_allclose(predictor.predict(clips, horizon=predictor.horizon), predictor.predict(clips), atol=1e-5)
    batch = np.concatenate([clips] * 4)  # 12 > max batch 8: split
    assert predictor.predict(batch, horizon=2).shape == (12, 2, 1, 32, 32)
    fed = _feed(predictor, clips[0])
    with predictor.stream() as session:
        pushed = np.stack([session.push(clips[0, t][None])[0] for t in range(clips.shape[1])])
    np.testing.assert_array_equal(fed, pushed)


def test_video_source_stream_to_npy_and_video(predictor, tiny, video, tmp_path, capsys):
    frames, _ = read_video(video, (32, 32), 1, "gray")
    assert main(["predict", "--model", str(tiny["model"]), "--source", str(video), "--stream",
                 "--out", str(tmp_path / "p.npy")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), _feed(predictor, frames), atol=1e-6)
    assert main(["predict", "--model", str(tiny["model"]), "--source", str(video), "--stream",
                 "--out", str(tmp_path / "p.mp4")]) == 0
    out = capsys.readouterr().out
    assert f"{len(frames)} frames read" in out and "codec" in out
    assert read_video(tmp_path / "p.mp4", (32, 32), 1, "gray")[0].shape[0] == len(frames) - 1


def test_image_folder_window_mode_to_pngs_and_npy(predictor, tiny, clips, tmp_path):
    import cv2
    folder = tmp_path / "images"
    folder.mkdir()
    images = (clips[0, :, 0] * 255).astype(np.uint8)  # 5 gray 32x32 frames
    images = np.concatenate([images, images[::-1]])   # 10 frames
    for t, image in enumerate(images):
        cv2.imwrite(str(folder / f"{t:03d}.png"), image)
    args = ["predict", "--model", str(tiny["model"]), "--source", str(folder), "--lead", "2"]
    assert main([*args, "--out", str(tmp_path / "w.npy")]) == 0
    frames = images[:, None]
    windows = np.stack([frames[t - 4:t + 1] for t in range(4, len(frames))])
    np.testing.assert_allclose(np.load(tmp_path / "w.npy"), predictor.predict(windows)[:, 1], atol=1e-5)
    assert main([*args, "--out", str(tmp_path / "pngs")]) == 0
    assert len(list((tmp_path / "pngs").glob("*.png"))) == len(frames) - 4 - 2  # predicted frames 6..9


def test_stdin_raw_frames(predictor, tiny, clips, tmp_path, subprocess_env):
    raw = (clips[1, :, 0, :, :, None] * 255).astype(np.uint8)  # (T, H, W, 1)
    run = subprocess.run([sys.executable, "-m", "mspn", "predict", "--model", str(tiny["model"]), "--source", "-",
                          "--stream", "--out", str(tmp_path / "s.npy")], input=raw.tobytes(),
                         capture_output=True, env=subprocess_env, timeout=300)
    assert run.returncode == 0, run.stderr.decode()
    np.testing.assert_allclose(np.load(tmp_path / "s.npy"), _feed(predictor, raw.transpose(0, 3, 1, 2)), atol=1e-6)
    partial = subprocess.run([sys.executable, "-m", "mspn", "predict", "--model", str(tiny["model"]), "--source",
                              "-", "--stream", "--out", str(tmp_path / "t.npy")], input=raw.tobytes()[:-7],
                             capture_output=True, env=subprocess_env, timeout=300)
    assert partial.returncode == 1 and b"partial frame of 1017 bytes" in partial.stderr
    assert not (tmp_path / "t.npy").exists()


def test_source_errors(tiny, tmp_path, capsys):
    model = ["predict", "--model", str(tiny["model"])]
    assert main([*model, "--source", str(tmp_path / "none.mp4"), "--out", str(tmp_path / "o.npy")]) == 1
    assert "source not found" in capsys.readouterr().err
    assert main([*model, "--source", str(tmp_path), "--out", str(tmp_path / "o.npy")]) == 1
    assert "no images" in capsys.readouterr().err
    assert main([*model, "--source", "-", "--out", str(tmp_path / "o.txt")]) == 1
    assert "unknown output kind" in capsys.readouterr().err


_PEAK = """
import resource, subprocess, sys
run = subprocess.run(sys.argv[1:], capture_output=True)
assert run.returncode == 0, run.stderr.decode()
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def test_memory_stays_flat_on_a_long_video(tiny, tmp_path, subprocess_env):
    """Peak RSS of `mspn predict --source` on 40 vs 400 frames: a 400-frame 240x320 video decoded
    at once would take 92 MB more (its predictions alone 1.6 MB)."""
    peaks = {}
    for frames in (40, 400):
        path = _write_video(tmp_path / f"v{frames}.avi", frames, size=(240, 320))
        command = [sys.executable, "-m", "mspn", "predict", "--model", str(tiny["model"]), "--source", str(path),
                   "--stream", "--out", str(tmp_path / f"v{frames}.mp4")]
        run = subprocess.run([sys.executable, "-c", _PEAK, *command], capture_output=True, text=True,
                             env=subprocess_env, timeout=600)
        assert run.returncode == 0, run.stderr
        peaks[frames] = int(run.stdout.strip()) / 1024  # KiB -> MiB
    assert peaks[400] - peaks[40] < 20, peaks
    print(f"peak RSS (MiB): {peaks}")
