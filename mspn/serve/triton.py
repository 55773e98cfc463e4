"""The Triton Inference Server process: the binary and Python backend shipped in the
``nvidia-pytriton`` wheel, started on a model repository, waited for, and stopped.

No container is needed: the wheel holds ``tritonserver``, its libraries and a Python-backend stub per
Python version. The stub embeds Python, so the environment handed to it names this interpreter's
``libpython`` first (an older system ``libpython3.11`` otherwise fails the stub at start-up with
``'_thread.RLock' object has no attribute '_recursion_count'``) and this interpreter's import path,
so that ``model.py`` imports ``mspn.runtime`` from the same install as the caller.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from mspn.errors import MSPNError

READY_TIMEOUT = 120.0  # seconds: loading two models on a busy 2-core machine takes ~10 s


@dataclass(frozen=True)
class TritonDist:
    """Where the wheel keeps the server: binary, backends folder, Python-backend stub, libraries."""

    binary: Path
    python_backend: Path
    stub: Path
    libs: Path


def find_triton() -> TritonDist:
    """The ``tritonserver`` of the installed ``nvidia-pytriton`` wheel, or a one-line error."""
    try:
        import pytriton
    except ImportError:
        raise MSPNError("Triton Inference Server is not installed; install it with "
                        "pip install 'mspn[serve]' (the nvidia-pytriton wheel ships tritonserver)") from None
    root = Path(pytriton.__file__).parent
    dist = root / "tritonserver"
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    found = TritonDist(binary=dist / "bin" / "tritonserver", python_backend=dist / "backends" / "python",
                       stub=dist / "python_backend_stubs" / version / "triton_python_backend_stub",
                       libs=root.parent / "nvidia_pytriton.libs")
    for path in (found.binary, found.python_backend, found.stub):
        if not path.exists():
            raise MSPNError(f"the nvidia-pytriton wheel lacks {path} (Python {version} stub?); "
                            f"reinstall it with pip install 'mspn[serve]'")
    return found


def free_port() -> int:
    """A TCP port nothing listens on now (tests and benchmarks run several servers)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def backend_directory(dist: TritonDist, workspace: Path) -> Path:
    """A backends folder whose Python backend has the stub of this interpreter's version
    (the wheel keeps one stub per version aside; Triton looks for it next to the backend)."""
    python = workspace / "backends" / "python"
    python.mkdir(parents=True, exist_ok=True)
    for item in dist.python_backend.iterdir():
        if item.is_file() and not (python / item.name).exists():
            (python / item.name).symlink_to(item)
    stub = python / "triton_python_backend_stub"
    if not stub.exists():
        shutil.copy2(dist.stub, stub)
    return workspace / "backends"


def server_env(dist: TritonDist) -> dict[str, str]:
    """The server's environment: this interpreter's libpython first, its import path for model.py."""
    env = dict(os.environ)
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (libdir, str(dist.libs), env.get("LD_LIBRARY_PATH"))
                                             if p)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p and Path(p).is_dir())
    env["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), env.get("PATH", "")))
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


@dataclass(frozen=True)
class Ports:
    http: int = 8000
    grpc: int = 8001
    metrics: int = 8002

    @classmethod
    def free(cls) -> Ports:
        return cls(free_port(), free_port(), free_port())


class TritonServer:
    """A running ``tritonserver`` on a model repository: ``start()``, ``wait_ready()``, ``stop()``.

    Its log goes to ``workspace/tritonserver.log`` unless ``log`` is given (a file object), and
    the last lines of it are quoted when the server fails to come up.
    """

    def __init__(self, repository: str | Path, ports: Ports, workspace: str | Path | None = None,
                 log=None, verbose: bool = False, binary: str | Path | None = None):
        """binary: a full Triton install's ``tritonserver`` (its own backends, e.g. the NGC
        container's /opt/tritonserver/bin/tritonserver) instead of the pytriton wheel's."""
        self.binary = Path(binary) if binary else None
        self.repository = Path(repository)
        self.ports = ports
        self._own_workspace = workspace is None
        self.workspace = Path(workspace or tempfile.mkdtemp(prefix="mspn-triton-"))
        self.workspace.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workspace / "tritonserver.log"
        self._log = log
        self.verbose = verbose
        self.process: subprocess.Popen | None = None

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.ports.http}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.ports.grpc}"

    def command(self, dist: TritonDist | None) -> list[str]:
        backends = [f"--backend-directory={backend_directory(dist, self.workspace)}"] if dist else []
        return [str(dist.binary if dist else self.binary), f"--model-repository={self.repository}", *backends,
                f"--http-port={self.ports.http}", f"--grpc-port={self.ports.grpc}",
                f"--metrics-port={self.ports.metrics}", "--allow-metrics=true",
                f"--log-verbose={1 if self.verbose else 0}", "--exit-timeout-secs=5"]

    def start(self) -> TritonServer:
        if self.binary is None:
            dist = find_triton()
            command, env = self.command(dist), server_env(dist)
        else:  # a full install finds its own backends
            command, env = [str(self.binary), *self.command(None)[1:]], dict(os.environ)
        out = self._log or open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self._out = out
        self.process = subprocess.Popen(command, env=env, stdout=out,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> TritonServer:
        """Block until /v2/health/ready answers 200; a one-line error (with the log's tail) if the
        server exits or does not come up in time."""
        deadline = time.monotonic() + timeout
        url = f"http://{self.http_url}/v2/health/ready"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise MSPNError(f"tritonserver exited with status {self.process.returncode} while "
                                f"starting: {self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=1.0) as reply:
                    if reply.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        self.stop()
        raise MSPNError(f"tritonserver did not become ready within {timeout:.0f} s: {self.log_tail()}")

    def log_tail(self, lines: int = 6) -> str:
        """The last lines of the server's log, as one line (for error messages)."""
        if self._log is not None or not self.log_path.is_file():
            return "(see the server log)"
        text = self.log_path.read_text(errors="replace").strip().splitlines()
        return " | ".join(line.strip() for line in text[-lines:]) or "(empty log)"

    def stop(self) -> None:
        """SIGINT (Triton's graceful shutdown), then SIGKILL after a grace period."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if getattr(self, "_out", None) is not None and self._log is None:
            self._out.close()
            self._out = None

    def __enter__(self):
        return self.start().wait_ready()

    def __exit__(self, *exc):
        self.stop()
        if self._own_workspace:
            shutil.rmtree(self.workspace, ignore_errors=True)
