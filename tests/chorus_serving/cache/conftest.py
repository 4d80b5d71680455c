"""Fixtures for the Chorus cache tests: a real ``redis-server`` on loopback.

Debian's ``redis-server`` package provides the binary (``.ci/run`` installs it). A missing binary
fails the Redis tests with a clear message rather than skipping them.
"""

from __future__ import annotations

import hashlib
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A ``redis-server`` process on 127.0.0.1 with no persistence; can be killed and restarted."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail(
                "redis-server is not installed: the Chorus cache tests need Debian's redis-server "
                "package (apt-get install -y redis-server; .ci/run installs it)",
                pytrace=False,
            )
        self.binary = binary
        self.workdir = workdir
        self.port = _free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir)]
        args += ["--save", "", "--appendonly", "no", "--enable-debug-command", "local", "--loglevel", "warning"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                pytest.fail(f"redis-server exited with {self.proc.returncode}: {err}", pytrace=False)
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        self.stop()
        pytest.fail(f"redis-server did not answer on port {self.port} within 10 s", pytrace=False)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A redis-server shared by the session's tests (each test uses its own namespace)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def private_redis_server(tmp_path):
    """A redis-server of this test alone (to kill, restart or stall)."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


BACKENDS = ("memory", "disk", "redis")


@pytest.fixture(params=BACKENDS)
def backend_factory(request, tmp_path):
    """``make()`` -> a new backend instance on this test's storage (the same storage each call,
    so a second instance sees the first one's entries, except for the in-memory backend)."""
    from npu_ops.chorus.cache import DiskBackend, InMemoryBackend, RedisBackend

    made = []
    if request.param == "memory":
        backend = InMemoryBackend()

        def make():
            return backend

    elif request.param == "disk":

        def make():
            return DiskBackend(tmp_path / "cache")

    else:
        server = request.getfixturevalue("redis_server")
        namespace = "t" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:16]

        def make():
            b = RedisBackend(server.url, namespace=namespace, socket_timeout=2.0)
            made.append(b)
            return b

        make().client.flushdb()  # namespaces are unique, but start from a clean server anyway
    make.kind = request.param
    yield make
    for b in made:
        b.close()
