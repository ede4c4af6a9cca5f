"""A throwaway PostgreSQL server for the benchmark, started from the local binaries."""

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness import free_port


def bindir() -> Path:
    # Debian keeps the server binaries off PATH, in a versioned folder.
    candidates: list[Path] = []
    if pg_config := shutil.which("pg_config"):
        found = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True).stdout
        candidates.append(Path(found.strip()))
    versioned = Path("/usr/lib/postgresql").glob("*/bin")
    candidates += sorted(versioned, key=lambda path: int(path.parent.name), reverse=True)
    if initdb := shutil.which("initdb"):
        candidates.append(Path(initdb).resolve().parent)
    for path in candidates:
        if (path / "initdb").is_file() and (path / "postgres").is_file():
            return path
    raise RuntimeError("the PostgreSQL server binaries (initdb, postgres) are not installed")


def unprivileged(folder: Path) -> list[str]:
    """The prefix that runs a command as an unprivileged user when we are root (PostgreSQL
    refuses to run as root), with `folder` handed to that user; empty otherwise."""
    if os.geteuid() != 0:
        return []
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        user = pwd.getpwnam("nobody")
    os.chown(folder, user.pw_uid, user.pw_gid)
    # The user must reach the folder: temporary folders above it (mkdtemp makes them
    # 0700) are opened for traversal only, not listing.
    temp = Path(tempfile.gettempdir()).resolve()
    for parent in folder.resolve().parents:
        if parent == temp or temp not in parent.parents:
            break
        parent.chmod(parent.stat().st_mode | 0o001)
    return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]


def wait_until_ready(binaries: Path, port: int, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"PostgreSQL exited at start-up:\n{log.read_text()[-3000:]}")
        ready = [str(binaries / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)]
        if subprocess.run(ready, check=False).returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeError(f"PostgreSQL did not accept connections:\n{log.read_text()[-3000:]}")


@contextmanager
def postgres_server(folder: Path, log: Path) -> Iterator[str]:
    """A fresh server with its data in `folder`, on 127.0.0.1 only; yields its URL, and on
    the way out stops it (fast shutdown, then kill) and deletes its data."""
    binaries = bindir()
    folder.mkdir(parents=True, exist_ok=True)
    run_as = unprivileged(folder)
    data = folder / "data"
    initdb = [str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"]
    done = subprocess.run([*run_as, *initdb], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"initdb failed:\n{done.stderr[-3000:]}")
    port = free_port()
    # fsync stays on (the default): the peers' commits cost what they cost in production.
    options = ["-c", "listen_addresses=127.0.0.1", "-p", str(port), "-k", str(folder)]
    with log.open("ab") as output:
        server = subprocess.Popen(
            [*run_as, str(binaries / "postgres"), "-D", str(data), *options],
            stdout=output,
            stderr=output,
        )
    try:
        wait_until_ready(binaries, port, server, log)
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(data, ignore_errors=True)
