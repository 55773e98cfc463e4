"""`mspn serve`: write the Python-backend repository of a model folder and run Triton on it."""
from __future__ import annotations

import shutil
import signal
import tempfile
from pathlib import Path

from mspn.options import ServeOptions

from .repository import write_python_repository
from .triton import Ports, TritonServer


def start_server(options: ServeOptions, workspace: str | Path | None = None) -> tuple[TritonServer, dict]:
    """Write the repository, start Triton and wait until both models are ready.

    Returns the running server (stop() it) and {"rollout": name, "stream": name}. Used by the
    command, the tests and the load benchmark alike.
    """
    workspace = Path(workspace or tempfile.mkdtemp(prefix="mspn-serve-"))
    repository = Path(options.repository) if options.repository else workspace / "repository"
    names = write_python_repository(options, repository)
    server = TritonServer(repository, Ports(options.http_port, options.grpc_port, options.metrics_port),
                          workspace=workspace, verbose=options.triton_verbose)
    server.start().wait_ready()
    return server, names


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def serve(options: ServeOptions) -> None:
    """Run until interrupted (Ctrl-C or SIGTERM stop Triton gracefully; it runs in its own session,
    so it must be stopped by us, not by the terminal)."""
    signal.signal(signal.SIGTERM, _interrupt)
    server, names = start_server(options)
    print(f"serving {options.model} ({options.backend}, {options.variant}) as {names['rollout']} and "
          f"{names['stream']}: HTTP {server.http_url}, gRPC {server.grpc_url}, metrics "
          f"http://127.0.0.1:{options.metrics_port}/metrics; log {server.log_path}", flush=True)
    try:
        server.process.wait()
    except KeyboardInterrupt:
        print("stopping Triton", flush=True)
    finally:
        server.stop()
    if server.process.returncode not in (0, None, -2):
        print(f"tritonserver exited with status {server.process.returncode}: {server.log_tail()}")
    else:
        shutil.rmtree(server.workspace, ignore_errors=True)  # keeps the log only when Triton failed
