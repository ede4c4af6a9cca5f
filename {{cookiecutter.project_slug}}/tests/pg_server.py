"""A throwaway PostgreSQL server for the tests, started from the local binaries."""

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


class ServerUnavailable(Exception):
    """The server binaries are not installed here."""


def find_bindir() -> Path | None:
    # Debian keeps the server binaries off PATH, in a versioned folder.
    candidates: list[Path] = []
    if pg_config := shutil.which("pg_config"):
        bindir = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True).stdout
        candidates.append(Path(bindir.strip()))
    if postgres := shutil.which("postgres"):
        candidates.append(Path(postgres).parent)
    versioned = Path("/usr/lib/postgresql").glob("*/bin")
    candidates += sorted(versioned, key=lambda path: int(path.parent.name), reverse=True)
    return next((path for path in candidates if (path / "initdb").is_file()), None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class PostgresServer:
    """A server on a data directory of its own, which a test may stop and start again."""

    bindir: Path
    data: Path
    port: int
    run_as: list[str]
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = ["-p", str(self.port), "-h", "127.0.0.1", "-k", str(self.data), "-c", "fsync=off"]
        log = self.data / "server.log"
        with log.open("ab") as log_file:
            self.process = subprocess.Popen(
                [*self.run_as, str(self.bindir / "postgres"), "-D", str(self.data), *options],
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        wait_until_ready(self.bindir, self.port, self.process, log)

    def stop(self, immediate: bool = False) -> None:
        """Fast shutdown (clients disconnected), or immediate: as if the server crashed."""
        if self.process is not None:
            self.process.send_signal(signal.SIGQUIT if immediate else signal.SIGINT)
            self.process.wait(timeout=30)
            self.process = None


@contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """Run a fresh server on 127.0.0.1; stop it and delete its data on exit."""
    bindir = find_bindir()
    if bindir is None:
        raise ServerUnavailable("PostgreSQL server binaries (initdb, postgres) are not installed")
    data = Path(tempfile.mkdtemp(prefix="pg-test-"))
    run_as: list[str] = []
    if os.geteuid() == 0:
        # PostgreSQL refuses to run as root: run it as the postgres user instead.
        user = pwd.getpwnam("postgres")
        os.chown(data, user.pw_uid, user.pw_gid)
        run_as = ["setpriv", "--reuid=postgres", "--regid=postgres", "--clear-groups"]
    server = PostgresServer(bindir, data, free_port(), run_as)
    try:
        initdb = [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"]
        subprocess.run([*run_as, *initdb, "--no-sync"], check=True, capture_output=True)
        server.start()
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(data, ignore_errors=True)


@contextmanager
def postgres_server() -> Iterator[str]:
    """Run a fresh server on 127.0.0.1 and yield its URL; stop it and delete its data on exit."""
    with running_postgres() as server:
        yield server.url


def wait_until_ready(bindir: Path, port: int, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"PostgreSQL exited at start-up:\n{log.read_text()}")
        ready = subprocess.run(
            [bindir / "pg_isready", "-q", "-h", "127.0.0.1", "-p", str(port)], check=False
        )
        if ready.returncode == 0:
            return
        time.sleep(0.1)
    server.kill()
    raise RuntimeError(f"PostgreSQL did not accept connections within 30 s:\n{log.read_text()}")
