"""Hosts on one machine: network namespaces joined by a bridge, for tests that cross a network.

    with Network("ct") as network:
        db = network.host("db")                  # 10.201.0.2, a namespace of its own
        web = network.host("web")
        network.start(db, ["postgres", ...], log)  # runs inside db's namespace
        network.cut(web)                          # its link down: nothing reaches it
        network.restore(web)

The bridge lives in a namespace of its own too, so nothing here touches the machine's own
interfaces, and no host has a route anywhere but to the other hosts. Everything started is
stopped and every namespace deleted on the way out, also when the test fails.
"""

import os
import shutil
import signal
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import pytest

SUBNET = "10.201.0"


@dataclass(frozen=True)
class Host:
    name: str
    namespace: str
    address: str
    # The bridge's end of its link.
    port: str


def ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


def require_namespaces() -> None:
    """Skip where namespaces cannot be made (not root, no iproute2), except in CI."""
    reason = None
    if shutil.which("ip") is None:
        reason = "iproute2 (ip) is not installed"
    elif os.geteuid() != 0:
        reason = "network namespaces need root"
    else:
        probe = f"probe-{os.getpid()}"
        made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
        if made.returncode != 0:
            reason = f"ip netns add is refused here: {made.stderr.strip()}"
        else:
            ip("netns", "del", probe)
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must run the multi-host tests")
        pytest.skip(reason)


class Network:
    def __init__(self, name: str) -> None:
        # Unique per test process: parallel tests each get namespaces of their own.
        self._prefix = f"{name}{os.getpid()}"
        self._switch = f"{self._prefix}-sw"
        self._hosts: list[Host] = []
        self._processes: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> "Network":
        require_namespaces()
        ip("netns", "add", self._switch)
        ip("-n", self._switch, "link", "add", "br0", "type", "bridge")
        ip("-n", self._switch, "link", "set", "br0", "up")
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for process in reversed(self._processes):
            stop(process)
        for namespace in [host.namespace for host in self._hosts] + [self._switch]:
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False)

    def host(self, name: str) -> Host:
        """A new host on the bridge, with the next address of the subnet."""
        number = len(self._hosts) + 2
        host = Host(name, f"{self._prefix}-{name}", f"{SUBNET}.{number}", f"p{number}")
        self._hosts.append(host)
        ip("netns", "add", host.namespace)
        ip("-n", host.namespace, "link", "set", "lo", "up")
        # Both ends are made inside the namespaces: the machine's own stay untouched.
        ip("-n", self._switch, "link", "add", host.port, "type", "veth", "peer", "name", "eth0")
        ip("-n", self._switch, "link", "set", "eth0", "netns", host.namespace)
        ip("-n", self._switch, "link", "set", host.port, "master", "br0", "up")
        ip("-n", host.namespace, "addr", "add", f"{host.address}/24", "dev", "eth0")
        ip("-n", host.namespace, "link", "set", "eth0", "up")
        return host

    def start(
        self,
        host: Host,
        command: list[str],
        log: Path,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Run `command` inside the host's namespace, logging to `log`; stopped on exit."""
        with log.open("ab") as output:
            process = subprocess.Popen(
                ["ip", "netns", "exec", host.namespace, *command],
                cwd=cwd,
                env={**os.environ, **(env or {})},
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._processes.append(process)
        return process

    def run(
        self, host: Host, command: list[str], cwd: Path | None = None, timeout: float = 120
    ) -> str:
        """Run `command` inside the host's namespace to its end; its output, or a failure."""
        result = subprocess.run(
            ["ip", "netns", "exec", host.namespace, *command],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert result.returncode == 0, f"{' '.join(command)} on {host.name}:\n{result.stderr}"
        return result.stdout

    def cut(self, host: Host) -> None:
        """Take the host's link down at the bridge: its packets go nowhere, as when a cable
        is pulled; its processes run on."""
        ip("-n", self._switch, "link", "set", host.port, "down")

    def restore(self, host: Host) -> None:
        ip("-n", self._switch, "link", "set", host.port, "up")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process's group, then SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass
