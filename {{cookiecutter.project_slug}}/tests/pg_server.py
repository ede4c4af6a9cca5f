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


@contextmanager
def postgres_server() -> Iterator[str]:
    """Run a fresh server on 127.0.0.1 and yield its URL; stop it and delete its data on exit."""
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
    try:
        initdb = [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"]
        subprocess.run(
            [*run_as, *initdb, "--no-sync"],
            check=True,
            capture_output=True,
        )
        port = free_port()
        log = data / "server.log"
        options = ["-p", str(port), "-h", "127.0.0.1", "-k", str(data), "-c", "fsync=off"]
        with log.open("wb") as log_file:
            server = subprocess.Popen(
                [*run_as, str(bindir / "postgres"), "-D", str(data), *options],
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_until_ready(bindir, port, server, log)
            yield f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres"
        finally:
            server.send_signal(signal.SIGINT)  # fast shutdown: disconnects clients
            server.wait(timeout=30)
    finally:
        shutil.rmtree(data, ignore_errors=True)


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
