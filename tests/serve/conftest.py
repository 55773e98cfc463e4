"""Fixtures: the runtime tests' tiny model folder and clips, and one Triton server per module."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.runtime.conftest import clips, tiny, video  # noqa: F401  (shared session fixtures)


def triton_unusable() -> str | None:
    """Why the wheel's tritonserver cannot run on this machine, or None when it can."""
    from mspn.errors import MSPNError
    try:
        from mspn.serve.triton import find_triton, server_env
        dist = find_triton()
    except MSPNError as exc:
        return str(exc)
    try:
        probe = subprocess.run([str(dist.binary), "--help"], env=server_env(dist), capture_output=True,
                               timeout=60)
    except OSError as exc:
        return f"tritonserver cannot execute here: {exc}"
    if b"Usage: tritonserver" not in probe.stdout + probe.stderr:
        return f"tritonserver does not run here (exit {probe.returncode})"
    return None


@pytest.fixture(scope="session")
def triton_ok() -> None:
    reason = triton_unusable()
    if reason:
        pytest.skip(f"Triton Inference Server unavailable: {reason}")


@pytest.fixture(scope="module")
def server(triton_ok, tiny, tmp_path_factory):  # noqa: F811 - the imported fixture
    """A running `mspn serve` of the tiny folder on free ports, a small live-sequence limit and a
    queue delay long enough for concurrent streams to be batched: (server, model names)."""
    from mspn.options import ServeOptions
    from mspn.serve.command import start_server
    from mspn.serve.triton import Ports

    ports = Ports.free()
    options = ServeOptions(model=str(tiny["model"]), http_port=ports.http, grpc_port=ports.grpc,
                           metrics_port=ports.metrics, max_sequences=6, max_queue_delay_us=20000,
                           idle_timeout_s=30.0)
    workspace = tmp_path_factory.mktemp("serve")
    running, names = start_server(options, workspace=workspace)
    yield running, names
    running.stop()
    shutil.rmtree(workspace, ignore_errors=True)
