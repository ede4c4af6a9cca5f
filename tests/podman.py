"""podman, as the container tests run it, and the stand-in images they run on.

No Docker engine runs on the machines these tests run on, and no image registry is
reachable from them; podman runs containers as root. So the base images a bake names are
built here, from Debian's packages (debootstrap) and PyPI, under the exact names the bake
uses, each imitating what the bake relies on:

    python:3.12-slim       Debian bookworm's python3 (3.11, not 3.12) as `python` too,
                           with useradd and groupadd
    ghcr.io/astral-sh/uv:V the `uv` binary of the uv wheel of that version on PyPI, at /uv
    redis:7-alpine         Debian's redis-server 7.0 and redis-cli, behind an entrypoint
                           that does what the official one does: arguments that start with
                           `-` or a `.conf` file go to redis-server, which runs as the
                           redis user with protected mode off
    postgres:16-alpine     Debian's PostgreSQL 15 behind an entrypoint that does what the
                           official one does on a first start: initdb with POSTGRES_USER and
                           POSTGRES_PASSWORD, POSTGRES_DB created, the *.sql and *.sh of
                           /docker-entrypoint-initdb.d run against a server that listens on
                           its socket only; then the server on every address; pg_isready
    ubuntu-latest          GitHub's runner: python3, git, make, gcc, curl, sudo and a
                           Chromium (GitHub's image has one), and the user `runner` (1001)
                           with passwordless sudo; no PostgreSQL, Redis or libfaketime

They live in a podman store of the tests' own (the machine's images are never touched),
kept between runs and rebuilt when their recipe here changes. Every container is started
with the flags this machine needs (runc, cgroupfs, a file for events, ulimits no higher
than the machine's).
"""

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

STORE = Path(os.environ.get("TEMPLATE_PODMAN_STORE", "/var/tmp/fastapi-jobs-template/podman"))
GLOBAL_FLAGS = [
    f"--root={STORE / 'root'}",
    # Run-time state belongs on tmpfs: a reboot clears it, as podman expects.
    "--runroot=/run/fastapi-jobs-template-podman",
    "--runtime=runc",  # crun refuses this machine's cgroups ("hybrid mode")
    "--cgroup-manager=cgroupfs",
    "--events-backend=file",
]
# Raising a limit above the machine's is refused here (no CAP_SYS_RESOURCE).
ULIMITS = ["--ulimit=nofile=1024:1024", "--ulimit=nproc=4096:4096"]
BASE = "localhost/standin/debian:bookworm"
RUNNER = "localhost/standin/ubuntu-latest"
MIRROR = "http://deb.debian.org/debian"


def podman(*args: str, timeout: float = 600, check: bool = True) -> str:
    """Run podman with this machine's flags; its output, or a failure that shows it."""
    result = subprocess.run(
        ["podman", *GLOBAL_FLAGS, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def logs(container: str) -> str:
    """What the container wrote, to stdout and stderr, in order."""
    result = subprocess.run(
        ["podman", *GLOBAL_FLAGS, "logs", container],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=60,
        check=False,
    )
    return result.stdout


def require_podman() -> None:
    """Skip where containers cannot run (not root, no podman), except in CI."""
    missing = [tool for tool in ("podman", "runc", "debootstrap") if shutil.which(tool) is None]
    reason = None
    if missing:
        reason = f"{', '.join(missing)} not installed"
    elif os.geteuid() != 0:
        reason = "the container tests run podman as root"
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; .ci/run must provide it")
        pytest.skip(reason)


@contextlib.contextmanager
def store_lock() -> Iterator[None]:
    """One test process at a time builds stand-ins (the others wait, then find them)."""
    STORE.mkdir(parents=True, exist_ok=True)
    with (STORE / "build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def image_label(name: str) -> str | None:
    found = json.loads(podman("image", "inspect", name, check=False) or "[]")
    if not found:
        return None
    labels = found[0].get("Labels") or {}
    return labels.get("standin-recipe")


# Each recipe: the Containerfile, and the files its context holds.
PYTHON = """\
FROM {base}
RUN apt-get update && apt-get install -y --no-install-recommends python3 python-is-python3 \\
    && rm -rf /var/lib/apt/lists/*
ENV LANG=C.UTF-8
CMD ["python3"]
"""

REDIS = """\
FROM {base}
RUN apt-get update && apt-get install -y --no-install-recommends redis-server \\
    && rm -rf /var/lib/apt/lists/* && mkdir /data && chown redis:redis /data
COPY entrypoint.sh /usr/local/bin/docker-entrypoint.sh
WORKDIR /data
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["redis-server"]
"""
REDIS_ENTRYPOINT = """\
#!/bin/sh
set -e
# As the official image's: options or a config file are redis-server's arguments.
case "$1" in -*|*.conf) set -- redis-server "$@" ;; esac
if [ "$1" = redis-server ] && [ "$(id -u)" = 0 ]; then
    chown -R redis: /data
    exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi
# The official image turns protected mode off (the container's network is its guard).
if [ "$1" = redis-server ]; then set -- "$@" --protected-mode no; fi
exec "$@"
"""

POSTGRES = """\
FROM {base}
RUN apt-get update && apt-get install -y --no-install-recommends postgresql-15 \\
    && rm -rf /var/lib/apt/lists/* \\
    && mkdir -p /docker-entrypoint-initdb.d /var/run/postgresql \\
    && chown postgres:postgres /var/run/postgresql
COPY entrypoint.sh /usr/local/bin/docker-entrypoint.sh
ENV PATH=/usr/lib/postgresql/15/bin:$PATH PGDATA=/var/lib/postgresql/data
VOLUME /var/lib/postgresql/data
STOPSIGNAL SIGINT
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
"""
POSTGRES_ENTRYPOINT = """\
#!/bin/bash
set -Eeuo pipefail
if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" && chown postgres:postgres "$PGDATA" && chmod 700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi
: "${POSTGRES_USER:=postgres}" "${POSTGRES_DB:=$POSTGRES_USER}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ]; then
        echo "Database is uninitialized and superuser password is not specified." >&2
        exit 1
    fi
    initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\\n' "$POSTGRES_PASSWORD") \\
        --auth-local=trust --auth-host=scram-sha-256 -D "$PGDATA"
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    # The first start's set-up talks to a server on its socket only, as the official
    # image's does: a check over TCP (pg_isready -h) fails until it is done.
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start
    psql=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password)
    if [ "$POSTGRES_DB" != postgres ]; then
        "${psql[@]}" --dbname postgres -c "CREATE DATABASE \\"$POSTGRES_DB\\""
    fi
    for f in /docker-entrypoint-initdb.d/*; do
        case "$f" in
            *.sql) echo "running $f"; "${psql[@]}" --dbname "$POSTGRES_DB" -f "$f" ;;
            *.sh) echo "running $f"; . "$f" ;;
        esac
    done
    pg_ctl -D "$PGDATA" -m fast -w stop
    echo "PostgreSQL init process complete; ready for start up."
fi
if [ "$1" = postgres ]; then set -- "$@" -c listen_addresses='*'; fi
exec "$@"
"""

RUNNER_RECIPE = """\
FROM {base}
RUN apt-get update && apt-get install -y --no-install-recommends \\
        python3 python3-venv git make gcc libc6-dev curl ca-certificates sudo procps \\
        chromium fonts-dejavu-core \\
    && rm -rf /var/lib/apt/lists/*
RUN useradd --uid 1001 --create-home --shell /bin/bash runner \\
    && echo 'runner ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/runner
"""

UV = """\
FROM scratch
COPY uv /uv
"""

RECIPES: dict[str, tuple[str, dict[str, str]]] = {
    "python:3.12-slim": (PYTHON, {}),
    "redis:7-alpine": (REDIS, {"entrypoint.sh": REDIS_ENTRYPOINT}),
    "postgres:16-alpine": (POSTGRES, {"entrypoint.sh": POSTGRES_ENTRYPOINT}),
    RUNNER: (RUNNER_RECIPE, {}),
}


def full_name(name: str) -> str:
    """The name podman stores an image under (short names are docker.io/library's)."""
    if "/" not in name.split(":")[0]:
        return f"docker.io/library/{name}"
    return name


def ensure(*names: str) -> None:
    """Build the stand-ins named (as the bake names them) that are missing or stale."""
    with store_lock():
        for name in names:
            if name.startswith("ghcr.io/astral-sh/uv:"):
                recipe, files = UV, dict[str, str]()
            else:
                recipe, files = RECIPES[name]
            digest = hashlib.sha256(json.dumps([recipe, files]).encode()).hexdigest()[:16]
            if image_label(full_name(name)) == digest:
                continue
            ensure_base()
            with tempfile.TemporaryDirectory() as folder:
                context = Path(folder)
                for file, text in files.items():
                    (context / file).write_text(text)
                    (context / file).chmod(0o755)
                if recipe is UV:
                    uv_binary(name.rsplit(":", 1)[1], context / "uv")
                (context / "Containerfile").write_text(recipe.format(base=BASE))
                podman(
                    "build",
                    "--network=host",  # apt reaches Debian's mirror through the machine's
                    "--pull=never",
                    f"--label=standin-recipe={digest}",
                    "-t",
                    full_name(name),
                    str(context),
                    timeout=1800,
                )


def ensure_base() -> None:
    """Debian bookworm's minimal base system, imported as an image (1-2 minutes cold)."""
    if image_label(BASE) == "debootstrap":
        return
    with tempfile.TemporaryDirectory(dir=STORE) as folder:
        root = Path(folder) / "root"
        subprocess.run(
            ["debootstrap", "--variant=minbase", "bookworm", str(root), MIRROR],
            check=True,
            capture_output=True,
            timeout=1200,
        )
        shutil.rmtree(root / "var" / "cache" / "apt" / "archives", ignore_errors=True)
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        label = "--change=LABEL standin-recipe=debootstrap"
        imported = subprocess.run(
            ["podman", *GLOBAL_FLAGS, "import", label, "-", BASE],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
            check=False,
        )
        assert tar.wait() == 0, "tar of the base system failed"
        assert imported.returncode == 0, imported.stderr


def uv_binary(version: str, target: Path) -> None:
    """The `uv` binary from the manylinux x86_64 wheel of `version` on PyPI."""
    index = urllib.request.Request(
        "https://pypi.org/simple/uv/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    with urllib.request.urlopen(index, timeout=60) as answer:
        files = json.load(answer)["files"]
    (wheel,) = [
        file
        for file in files
        if file["filename"].startswith(f"uv-{version}-")
        and "manylinux" in file["filename"]
        and file["filename"].endswith("x86_64.whl")
    ]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / wheel["filename"]
        urllib.request.urlretrieve(wheel["url"], path)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == wheel["hashes"]["sha256"]
        with zipfile.ZipFile(path) as archive:
            target.write_bytes(archive.read(f"uv-{version}.data/scripts/uv"))
    target.chmod(0o755)


def ensure_all() -> None:
    """Every stand-in the tests use: the bakes' base images, and GitHub's runner."""
    dockerfile = Path(__file__).parent.parent / "{{cookiecutter.project_slug}}" / "Dockerfile"
    uv = re.search(r"--from=(ghcr\.io/astral-sh/uv:\S+)", dockerfile.read_text())
    assert uv is not None, "the Dockerfile copies uv from no image"
    ensure("python:3.12-slim", uv[1], "redis:7-alpine", "postgres:16-alpine", RUNNER)


if __name__ == "__main__":  # `make standins`
    ensure_all()
