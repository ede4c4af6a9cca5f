"""A bake's compose.yaml, run with podman as `docker compose` runs it, for the container
tests. podman-compose cannot stand in: without systemd it ignores healthchecks and
`condition: service_healthy`. So this reads the compose file and does what compose does
with it, for the parts a bake uses: `${VAR:?...}` and `${VAR:-...}` taken from `.env`;
one image built from `build: .` (compose builds each such service from the same context,
the later ones from its cache); `depends_on` with its three conditions, started in that
order; healthchecks, run as compose's engine runs them (`exec` in the container);
`environment`, `volumes` (named), `configs` (their `content` as a read-only file),
`command`, `init`, `restart`, `stop_grace_period`.

Where it differs, on purpose: each container is a host of its own in a network namespace
the test made (tests/netns.py), its service's name resolving to that host's address, as
compose's network does; `ports` are not published, the test's client host reaching the
containers by their addresses (as other containers do, not as the machine's loopback
does); `extra_environment` stands for a compose.override.yaml that adds settings to the
services built from the Dockerfile.
"""

import json
import re
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.netns import Host, Network
from tests.podman import ULIMITS, logs, podman

VARIABLE = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?])([^}]*))?\}")
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def read_env(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def interpolate(value: Any, variables: Mapping[str, str]) -> Any:
    """Compose's interpolation, over every string of the file."""
    if isinstance(value, dict):
        return {key: interpolate(item, variables) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, variables) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        name, kind, argument = match[1], match[2], match[3]
        found = variables.get(name)
        empty = found is None or (found == "" and kind and kind.startswith(":"))
        if kind and kind.endswith("?") and empty:
            raise ValueError(f"required variable {name} is missing a value: {argument}")
        if kind and kind.endswith("-") and empty:
            return argument
        return found or ""

    return VARIABLE.sub(substitute, value)


def seconds(duration: str | int | float | None, default: float) -> float:
    """A compose duration ("40s", "1m30s", "500ms") in seconds."""
    if duration is None:
        return default
    if isinstance(duration, int | float):
        return float(duration)
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"([\d.]+)(ms|s|m|h)", duration))


@dataclass
class Container:
    service: str
    name: str
    host: Host


@dataclass
class Stack:
    project: Path
    network: Network
    name: str
    extra_environment: dict[str, str] = field(default_factory=dict)
    # Each service's replicas: a container, and a host of its own, apiece.
    replicas: dict[str, int] = field(default_factory=dict)
    services: dict[str, dict[str, Any]] = field(init=False)
    compose: dict[str, Any] = field(init=False)
    containers: dict[str, list[Container]] = field(init=False)
    image: str = field(init=False)

    def __post_init__(self) -> None:
        raw = yaml.safe_load((self.project / "compose.yaml").read_text())
        self.compose = interpolate(raw, read_env(self.project / ".env"))
        self.services = self.compose["services"]
        self.image = f"localhost/{self.name}-app"
        self.containers = {
            service: [
                Container(
                    service,
                    f"{self.name}-{service}-{n}",
                    self.network.host(f"{service[:6]}{n}"),
                )
                for n in range(1, self.replicas.get(service, 1) + 1)
            ]
            for service in self.services
        }

    # ---- what `docker compose build` does ------------------------------------------

    def build(self, work: Path) -> float:
        """The image of the services built from the Dockerfile; how long it took."""
        # The machine's TLS-inspecting egress: its CA, and uv told to trust the system's
        # certificates, for the build only (mounted, so the image keeps neither).
        config = work / "uv.toml"
        config.write_text("system-certs = true\n")
        started = time.monotonic()
        podman(
            "build",
            "--network=host",
            "--pull=never",
            "--layers=false",
            f"--volume={CA_BUNDLE}:{CA_BUNDLE}:ro",
            f"--volume={config}:/etc/uv/uv.toml:ro",
            "-t",
            self.image,
            str(self.project),
            timeout=900,
        )
        return time.monotonic() - started

    # ---- what `docker compose up` does ---------------------------------------------

    def up(
        self,
        work: Path,
        timeout: float = 180,
        order: Callable[[list[str]], list[str]] = sorted,
    ) -> float:
        """Start every service once the conditions of its `depends_on` hold (those that
        can start at the same moment, in `order`), then wait until each is healthy,
        running or, for a one-shot, done; how long it took."""
        started = time.monotonic()
        waiting = list(self.services)
        while waiting:
            ready = [name for name in waiting if self._dependencies_met(name)]
            for name in order(ready):
                for container in self.containers[name]:
                    self.start(container, work)
                waiting.remove(name)
            if not ready:
                self._fail_if_stuck(started, timeout, waiting)
                time.sleep(0.2)
        while not all(self._settled(name) for name in self.services):
            self._fail_if_stuck(started, timeout, [])
            time.sleep(0.2)
        return time.monotonic() - started

    def start(self, container: Container, work: Path) -> None:
        spec = self.services[container.service]
        podman("rm", "--force", "--ignore", container.name)
        args = ["run", "--detach", f"--name={container.name}", *ULIMITS]
        args.append(f"--network=ns:/run/netns/{container.host.namespace}")
        for other, peers in self.containers.items():
            args.append(f"--add-host={other}:{peers[0].host.address}")
        environment = dict(spec.get("environment") or {})
        if "build" in spec:
            environment |= self.extra_environment
        args += [f"--env={key}={value}" for key, value in environment.items()]
        for volume in spec.get("volumes") or []:
            source, target = volume.split(":", 1)
            args.append(f"--volume={self.name}_{source}:{target}")
        for config in spec.get("configs") or []:
            path = work / "configs" / config["source"]
            path.parent.mkdir(exist_ok=True)
            path.write_text(self.compose["configs"][config["source"]]["content"])
            path.chmod(0o444)
            args.append(f"--volume={path}:{config['target']}:ro")
        if spec.get("init"):
            args.append("--init")
        if "restart" in spec:
            args.append(f"--restart={spec['restart']}")
        grace = seconds(spec.get("stop_grace_period"), 10)
        args.append(f"--stop-timeout={round(grace)}")
        image = self.image if "build" in spec else spec["image"]
        podman(*args, image, *(spec.get("command") or []))

    def _dependencies_met(self, name: str) -> bool:
        for other, needs in (self.services[name].get("depends_on") or {}).items():
            condition = needs["condition"] if isinstance(needs, dict) else "service_started"
            for container in self.containers[other]:
                state = self.state(container)
                if state is None:
                    return False
                if condition == "service_started" and not state["Running"]:
                    return False
                if condition == "service_healthy" and not self.healthy(container):
                    return False
                if condition == "service_completed_successfully" and (
                    state["Running"] or state["ExitCode"] != 0
                ):
                    return False
        return True

    def _settled(self, name: str) -> bool:
        """Healthy (with a healthcheck), running, or done (a one-shot others wait for)."""
        spec = self.services[name]
        for container in self.containers[name]:
            state = self.state(container)
            if state is None:
                return False
            if spec.get("restart") == "no":
                if state["Running"] or state["ExitCode"] != 0:
                    return False
            elif not state["Running"] or ("healthcheck" in spec and not self.healthy(container)):
                return False
        return True

    def _fail_if_stuck(self, started: float, timeout: float, waiting: list[str]) -> None:
        if time.monotonic() - started > timeout:
            raise AssertionError(
                f"the stack was not up within {timeout} s (waiting to start: {waiting})\n"
                + self.logs()
            )

    def state(self, container: Container) -> dict[str, Any] | None:
        found = json.loads(podman("container", "inspect", container.name, check=False) or "[]")
        return found[0]["State"] if found else None

    def healthy(self, container: Container) -> bool:
        """The service's healthcheck, run as the engine runs it: in the container."""
        test = self.services[container.service]["healthcheck"]["test"]
        if isinstance(test, str):
            command = ["sh", "-c", test]
        elif test[0] == "CMD-SHELL":
            command = ["sh", "-c", test[1]]
        else:
            command = test[1:]
        timeout = seconds(self.services[container.service]["healthcheck"].get("timeout"), 30)
        try:
            podman("exec", container.name, *command, timeout=timeout)
        except (AssertionError, subprocess.TimeoutExpired):
            return False
        return True

    # ---- the rest of compose's commands ----------------------------------------------

    def kill(self, container: Container) -> None:
        podman("kill", "--signal=KILL", container.name)

    def stop(self, container: Container) -> float:
        """`docker compose stop`: SIGTERM, SIGKILL after the grace; how long it took."""
        started = time.monotonic()
        podman("stop", container.name, timeout=120)
        return time.monotonic() - started

    def restart(self, container: Container) -> None:
        podman("start", container.name)

    def down(self, volumes: bool = False) -> None:
        for containers in self.containers.values():
            for container in containers:
                podman("rm", "--force", "--ignore", "--time=0", container.name)
        if volumes:
            for volume in self.compose.get("volumes") or {}:
                podman("volume", "rm", "--force", f"{self.name}_{volume}", check=False)

    def remove_image(self) -> None:
        podman("rmi", "--force", self.image, check=False)

    def logs(self, *services: str) -> str:
        out = []
        for name in services or tuple(self.services):
            for container in self.containers[name]:
                text = logs(container.name)
                out.append(f"== {container.name}\n{text[-6000:]}")
        return "\n".join(out)

    def exec(self, container: Container, *command: str) -> str:
        return podman("exec", container.name, *command)

    def users(self, container: Container) -> set[str]:
        """The user each process of the container runs as, by number."""
        return set(podman("top", container.name, "huser").split()[1:])
