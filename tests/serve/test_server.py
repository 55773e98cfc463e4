"""`mspn serve` end to end: a real Triton server (the pytriton wheel's binary and Python backend) on
free ports, real requests with tritonclient over gRPC and HTTP, answers checked against Predictor."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from mspn.errors import MSPNError
from mspn.runtime import Predictor
from mspn.serve import client as tc


def _session_predictions(predictor, frames: np.ndarray) -> np.ndarray:
    """frames (T, C, H, W) pushed alone through a StreamSession -> predictions (T, C, H, W)."""
    with predictor.stream() as session:
        return np.stack([session.push(f[None])[0] for f in frames])


@pytest.fixture(scope="module")
def predictor(tiny):
    with Predictor.load(tiny["model"]) as p:
        yield p


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_rollout_equals_predictor(server, predictor, clips, protocol):
    running, names = server
    url = running.grpc_url if protocol == "grpc" else running.http_url
    future = tc.rollout(tc.connect(url, protocol), names["rollout"], clips)
    np.testing.assert_allclose(future, predictor.predict(clips), atol=1e-5)


def test_interleaved_streams_keep_their_own_state(server, predictor, clips):
    running, names = server
    client = tc.connect(running.grpc_url)
    got = {1: [], 2: []}
    for t in range(clips.shape[1]):  # two sequences, steps interleaved on one connection
        for seq, clip in ((1, clips[0]), (2, clips[1])):
            got[seq].append(tc.step(client, names["stream"], clip[t][None], seq, start=t == 0,
                                    end=t == clips.shape[1] - 1)[0])
    for seq, clip in ((1, clips[0]), (2, clips[1])):
        np.testing.assert_allclose(np.stack(got[seq]), _session_predictions(predictor, clip), atol=1e-5)


def test_concurrent_streams_are_batched_and_unmixed(server, predictor, clips):
    """Five streams at once: every one equals its solo run, and Triton formed batches above 1."""
    running, names = server
    rng = np.random.default_rng(1)
    videos = [np.clip(clips[i % 3] + rng.random(clips[0].shape, dtype=np.float32) * 0.05, 0, 1)
              for i in range(5)]
    results: dict[int, np.ndarray] = {}

    def run(index: int):
        client = tc.connect(running.grpc_url)
        results[index] = np.stack(list(tc.stream_frames(client, names["stream"], videos[index], 100 + index)))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i, video in enumerate(videos):
        np.testing.assert_allclose(results[i], _session_predictions(predictor, video), atol=1e-5)
    stats = tc.connect(running.grpc_url).get_inference_statistics(names["stream"], as_json=True)
    sizes = [int(b["batch_size"]) for b in stats["model_stats"][0]["batch_stats"]]
    assert max(sizes) > 1, f"no batch above 1 formed: {sizes}"


def test_bad_requests_get_errors_while_streams_continue(server, predictor, clips):
    running, names = server
    client = tc.connect(running.grpc_url)
    model, frame = names["stream"], clips[0, 0][None]
    first = tc.step(client, model, frame, 500, start=True)
    with pytest.raises(MSPNError, match="unexpected shape|shape"):
        tc.step(client, model, clips[0, 0, :, :16][None], 500)
    with pytest.raises(MSPNError, match="FP64|data-type|datatype"):
        tc.step(client, model, frame.astype(np.float64), 500)
    with pytest.raises(MSPNError, match=r"values must lie in \[0, 1\]"):
        tc.step(client, model, frame * 3, 500)
    with pytest.raises(MSPNError, match="START"):
        tc.step(client, model, frame, 9999)  # never started
    second = tc.step(client, model, clips[0, 1][None], 500, end=True)
    expected = _session_predictions(predictor, clips[0, :2])
    np.testing.assert_allclose(np.concatenate([first, second]), expected, atol=1e-5)


def test_live_sequence_limit(server, clips):
    running, names = server
    client = tc.connect(running.grpc_url)
    model, frame = names["stream"], clips[0, 0][None]
    opened = list(range(700, 706))  # the server's limit is 6
    for seq in opened:
        tc.step(client, model, frame, seq, start=True)
    with pytest.raises(MSPNError, match="live-sequence limit reached: 6"):
        tc.step(client, model, frame, 799, start=True)
    tc.step(client, model, frame, opened[0])  # the open ones continue
    for seq in opened:
        tc.step(client, model, frame, seq, end=True)
    tc.step(client, model, frame, 800, start=True, end=True)  # room again


@pytest.mark.parametrize("scheme", ["", "http://"])
def test_predict_server_streams_a_video(server, predictor, video, tmp_path, capsys, scheme):
    from mspn.cli import main
    from mspn.runtime.video import read_video

    running, names = server
    url = scheme + (running.http_url if scheme else running.grpc_url)
    assert main(["predict", "--server", url, "--video", str(video), "--out", str(tmp_path / "p.npy")]) == 0
    assert f"model {names['stream']}" in capsys.readouterr().out
    frames, _ = read_video(video, (32, 32), 1, "gray")
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), _session_predictions(predictor, frames), atol=1e-5)


def test_predict_server_unreachable(tmp_path, video, capsys):
    from mspn.cli import main
    from mspn.serve.triton import free_port

    assert main(["predict", "--server", f"127.0.0.1:{free_port()}", "--video", str(video), "--out",
                 str(tmp_path / "p.npy")]) == 1
    assert "cannot reach a Triton server" in capsys.readouterr().err


def test_serve_cli_errors(tiny, tmp_path, capsys):
    from mspn.cli import main

    assert main(["serve", "--model", str(tiny["model"]), "--max-batch", "64"]) == 1
    assert "--max-batch 64 exceeds the model folder's batch range 1..8" in capsys.readouterr().err
    assert main(["serve", "--model", str(tmp_path / "none")]) == 1
    assert "model folder not found" in capsys.readouterr().err
    assert main(["serve", "--model", str(tiny["model"]), "--variant", "int8"]) == 1
    assert "no int8 rollout graph" in capsys.readouterr().err


def test_serve_command_serves_until_sigterm(triton_ok, tiny, clips, predictor, subprocess_env):
    """`mspn serve` as users run it: prints where it serves, answers, and stops Triton on SIGTERM."""
    import signal
    import subprocess
    import sys

    from mspn.serve.triton import Ports

    ports = Ports.free()
    command = [sys.executable, "-m", "mspn", "serve", "--model", str(tiny["model"]), "--name", "cli",
               "--http-port", str(ports.http), "--grpc-port", str(ports.grpc), "--metrics-port", str(ports.metrics)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=subprocess_env)
    try:
        line = process.stdout.readline()
        assert "as cli_rollout and cli_stream" in line and f"gRPC 127.0.0.1:{ports.grpc}" in line
        future = tc.rollout(tc.connect(f"127.0.0.1:{ports.http}", "http"), "cli_rollout", clips[:1])
        np.testing.assert_allclose(future, predictor.predict(clips[:1]), atol=1e-5)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        process.kill()
    with pytest.raises(MSPNError, match="cannot reach the server"):
        tc.rollout(tc.connect(f"127.0.0.1:{ports.http}", "http"), "cli_rollout", clips[:1])
