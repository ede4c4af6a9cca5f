"""A fresh bake's Dockerfile and compose.yaml, run: the image builds, the stack comes up
healthy whatever order its services start in, a job submitted through the API succeeds
where jobs run, a killed container loses no job and runs none twice, a stop is graceful,
and a job from before `down` and `up` is still there. podman stands in for Docker, on the
stand-in images of tests/podman.py; tests/compose_stack.py does what compose does, and
says where it differs.

Each stack runs with two web replicas, an SMTP server of the test's on a host of its own
(a slow one, so that jobs are mid-send when their container is killed or stopped) and a
lease of 3 s, set as an operator would (a compose.override.yaml's environment).
"""

import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import podman
from tests.compose_stack import Container, Stack, read_env
from tests.conftest import Combination, bake
from tests.netns import Host, Network

COMBINATIONS = [
    Combination("create_task", "sqlite"),  # the default bake
    Combination("create_task", "postgresql"),
    Combination("aiojobs", "postgresql"),
    Combination("rq", "postgresql"),
    Combination("celery", "postgresql"),
]
SMTP_PORT = 2525
EMAILS = 30
UID = "10001"  # the Dockerfile's unprivileged user
SINK = Path(__file__).with_name("smtp_sink.py")
SLUG = "job_service"


# The client host's one process: each line in is a request (method, URL, API key or "",
# JSON body or ""), each line out its status and body.
CLIENT = """
import json, sys, urllib.request, urllib.error
for line in sys.stdin:
    method, url, key, body = json.loads(line)
    headers = {"Content-Type": "application/json", **({"X-API-Key": key} if key else {})}
    request = urllib.request.Request(url, body.encode() or None, headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            status, text = answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read().decode()
    except OSError as error:
        status, text = 0, json.dumps(str(error))
    print(json.dumps([status, json.loads(text) if text else None]), flush=True)
"""


class Client:
    """Requests from a host of the test's own, as another machine on the network sends
    them: to a web container's address, with the API key the bake made."""

    def __init__(self, host: Host, key: str) -> None:
        self.namespace = host.namespace
        command = ["ip", "netns", "exec", host.namespace, sys.executable, "-c", CLIENT]
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.key = key
        self.url = ""

    def __call__(
        self, method: str, path: str, body: Any = None, key: bool = True
    ) -> tuple[int, Any]:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        data = json.dumps(body) if body is not None else ""
        request = [method, self.url + path, self.key if key else "", data]
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        status, answer = json.loads(self.process.stdout.readline())
        return int(status), answer

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=10)

    def up(self) -> bool:
        return self("GET", "/health")[0] == 200

    def send_emails(self, count: int, tag: str) -> dict[str, str]:
        """Each email's job id, and the Message-ID the bake gives its email."""
        sent = {}
        for n in range(count):
            email = {"to": "ada@example.com", "subject": f"{tag} {n}", "body": "Hello."}
            status, answer = self("POST", "/api/v1/emails", email)
            assert status == 202, answer
            sent[answer["job_id"]] = f"<{uuid.UUID(answer['id']).hex}@{SLUG}.invalid>"
        return sent

    def jobs(self, job_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The jobs of these ids, as the API shows them: read in one request."""
        status, answer = self("GET", "/api/v1/jobs?name=send_email&limit=100")
        assert status == 200, answer
        wanted = set(job_ids)
        return {job["id"]: job for job in answer if job["id"] in wanted}

    def statuses(self, job_ids: Iterable[str]) -> Counter[str]:
        return Counter(job["status"] for job in self.jobs(job_ids).values())


@contextmanager
def smtp_sink(network: Network, host: Host, log: Path) -> Iterator[Callable[[], Counter[str]]]:
    """A slow SMTP server on `host`; yields what it has been delivered, by Message-ID."""
    log.touch()
    command = [sys.executable, str(SINK), host.address, str(SMTP_PORT), str(log)]
    server = subprocess.Popen(
        ["ip", "netns", "exec", host.namespace, *command],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "ready"
        yield lambda: Counter(log.read_text().split())
    finally:
        server.terminate()
        server.wait(timeout=10)


def wait_until(condition: Callable[[], bool], timeout: float, what: str, stack: Stack) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout} s\n{stack.logs()}")
        time.sleep(0.3)
    return time.monotonic() - started


def images(project: Path) -> list[str]:
    """The images the bake names: the Dockerfile's bases and compose.yaml's."""
    dockerfile = (project / "Dockerfile").read_text()
    named = re.findall(r"^FROM (\S+)", dockerfile, re.MULTILINE)
    named += re.findall(r"--from=(\S+)", dockerfile)
    stages = re.findall(r"^FROM \S+ AS (\S+)", dockerfile, re.MULTILINE)
    services = yaml.safe_load((project / "compose.yaml").read_text())["services"]
    named += [spec["image"] for spec in services.values() if "image" in spec]
    return sorted(set(named) - set(stages))


@pytest.mark.parametrize("combination", COMBINATIONS, ids=lambda c: c.id)
def test_a_fresh_bake_comes_up_in_containers_and_keeps_its_jobs(
    combination: Combination, tmp_path: Path
) -> None:
    podman.require_podman()
    project = bake(tmp_path / "bake", **combination.answers())
    podman.ensure(*images(project))
    key = read_env(project / ".env")["DOCKER_API_KEYS"]
    figures: dict[str, object] = {}
    with Network("ct") as network:
        mail, client_host = network.host("mail"), network.host("client")
        settings = {
            "EMAIL_BACKEND": "smtp",
            "SMTP_HOST": mail.address,
            "SMTP_PORT": str(SMTP_PORT),
            "JOB_LEASE_SECONDS": "3",
        }
        name = f"ct{os.getpid()}{COMBINATIONS.index(combination)}"
        stack = Stack(project, network, name, settings, replicas={"web": 2})
        with smtp_sink(network, mail, tmp_path / "delivered.log") as delivered:
            try:
                figures["build s"] = round(stack.build(tmp_path), 1)
                # Whenever several services may start at the same moment, the last first.
                last_first = stack.up(tmp_path, order=lambda ready: sorted(ready, reverse=True))
                figures["healthy s"] = round(last_first, 1)
                with Client(client_host, key) as client:
                    check_the_stack(stack, combination, tmp_path, client, delivered, figures)
            finally:
                stack.down(volumes=True)
                stack.remove_image()
    print(f"{combination.id}: {figures}")


def check_the_stack(
    stack: Stack,
    combination: Combination,
    work: Path,
    client: Client,
    delivered: Callable[[], Counter[str]],
    figures: dict[str, object],
) -> None:
    webs = stack.containers["web"]
    urls = [f"http://{web.host.address}:8000" for web in webs]
    client.url = urls[0]
    workers = combination.job_backend in ("rq", "celery")
    runners = stack.containers["worker" if workers else "web"]

    # The migrations ran once, in their own container, before either replica started.
    assert stack.logs("migrate").count("Running upgrade") == 1, stack.logs("migrate")
    assert "Running upgrade" not in stack.logs("web")
    for url in urls:
        client.url = url
        assert client.up(), f"the web replica at {url} answers"
    client.url = urls[0]
    # Beyond loopback, the API asks for the key the bake made.
    assert client("GET", "/api/v1/jobs", key=False)[0] == 401
    for container in [*webs, *stack.containers.get("worker", [])]:
        assert stack.users(container) == {UID}, f"{container.name} runs as {UID} only"
    if combination.database == "postgresql":
        # The service's role owns its database and is no superuser.
        (postgres,) = stack.containers["postgres"]
        query = "SELECT rolsuper FROM pg_roles WHERE rolname = 'app'"
        assert stack.exec(postgres, "psql", "-U", "postgres", "-tAc", query).strip() == "f"
    if workers:
        # Redis answers no client without the password the bake made.
        (redis,) = stack.containers["redis"]
        refused = stack.exec(redis, "env", "REDISCLI_AUTH=", "redis-cli", "ping")
        assert "NOAUTH" in refused, refused

    # A job through the API, run where jobs run.
    (first,) = client.send_emails(1, "First")
    wait_until(lambda: client.statuses([first]) == {"succeeded": 1}, 60, "the first job", stack)
    ran = [c for c in runners if re.search(rf'"job_id": "{first}".*succeeded', logs_of(stack, c))]
    assert ran, f"the job's success is logged in none of {[c.name for c in runners]}"

    # The generated workflow's Docker job submits a job the same way: its step, run as
    # it is, against the stack's port as the runner sees it (forwarded to a web replica).
    figures["workflow's smoke step s"] = run_the_workflows_smoke_step(stack, client, webs[0])

    # SIGKILL of every container that runs jobs, mid-run; then they start again.
    emails = client.send_emails(EMAILS, "Kill")
    wait_until(
        lambda: mid_run(client.statuses(emails)), 60, "a quarter sent and more sending", stack
    )
    for container in runners:
        stack.kill(container)
    killed_at = time.monotonic()
    for container in runners:
        stack.restart(container)
    wait_until(client.up, 60, "the API back", stack)
    wait_until(lambda: client.statuses(emails) == {"succeeded": EMAILS}, 120, "all sent", stack)
    figures["killed: all sent after s"] = round(time.monotonic() - killed_at, 1)
    # Attempts the kill cut short are counted apart, as lost.
    lost = {job: found["lost_attempts"] for job, found in client.jobs(emails).items()}
    sent = delivered()
    # Every email delivered; more than once only where its job was cut off mid-send.
    assert all(sent[message] >= 1 for message in emails.values()), sent
    twice = [job for job, message in emails.items() if sent[message] > 1]
    assert all(lost[job] > 0 for job in twice), (twice, lost)
    figures["killed: rerun, sent twice"] = (sum(n > 0 for n in lost.values()), len(twice))
    assert any(n > 0 for n in lost.values()), "the kill should land mid-run"

    # SIGTERM (compose's stop) mid-run: running jobs finish within the grace.
    jobs = client.send_emails(10, "Stop")
    wait_until(lambda: client.statuses(jobs)["running"] > 0, 60, "jobs sending", stack)
    stop_seconds = [stack.stop(container) for container in runners]
    for container in runners:
        state = stack.state(container)
        assert state is not None
        assert state["ExitCode"] in (0, 143), f"{container.name} was killed: {state}"
        assert "stopped" in logs_of(stack, container), logs_of(stack, container)
    figures["stop s"] = [round(s, 1) for s in stop_seconds]

    # `down` and `up` again (the volumes kept): the first job is still there, and the
    # jobs the stop left queued are done.
    stack.down()
    figures["up again s"] = round(stack.up(work), 1)
    assert client("GET", f"/api/v1/jobs/{first}")[1]["status"] == "succeeded"
    wait_until(lambda: client.statuses(jobs) == {"succeeded": 10}, 60, "all sent", stack)


def mid_run(statuses: Counter[str]) -> bool:
    return statuses["succeeded"] >= EMAILS // 4 and statuses["running"] > 0


def logs_of(stack: Stack, container: Container) -> str:
    del stack
    return podman.logs(container.name)


def test_a_dockerfile_copying_a_missing_file_and_a_missing_secret_are_caught(
    tmp_path: Path,
) -> None:
    """The checks above can fail: the first day's Dockerfile, which copied the uv.lock a
    fresh bake does not have, does not build; a .env without a secret stops the stack
    with the variable's name."""
    podman.require_podman()
    project = bake(tmp_path / "bake")
    podman.ensure(*images(project))
    dockerfile = project / "Dockerfile"
    text = dockerfile.read_text()
    dockerfile.write_text(
        text.replace("COPY pyproject.toml uv.lock* ./", "COPY pyproject.toml uv.lock ./")
    )
    assert dockerfile.read_text() != text
    with Network("cs") as network:
        stack = Stack(project, network, f"cs{os.getpid()}")
        try:
            with pytest.raises(AssertionError, match=r"uv\.lock"):
                stack.build(tmp_path)
        finally:
            stack.remove_image()
        env = project / ".env"
        env.write_text(env.read_text().replace("DOCKER_API_KEYS=", "OTHER="))
        with pytest.raises(ValueError, match="DOCKER_API_KEYS is missing a value"):
            Stack(project, network, f"cs{os.getpid()}")


# Listens on the client host's 127.0.0.1:8000, as a published port does on the runner,
# and passes each connection on to a web container.
FORWARDER = """
import asyncio, sys
target, port = sys.argv[1], int(sys.argv[2])
async def pipe(reader, writer):
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()
async def forward(reader, writer):
    upstream_reader, upstream_writer = await asyncio.open_connection(target, port)
    await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))
async def main():
    server = await asyncio.start_server(forward, "127.0.0.1", 8000)
    print("ready", flush=True)
    await server.serve_forever()
asyncio.run(main())
"""


def run_the_workflows_smoke_step(stack: Stack, client: Client, web: Container) -> float:
    """The Docker job's step that submits a job and waits for it, from the workflow."""
    workflow = yaml.safe_load((stack.project / ".github" / "workflows" / "ci.yml").read_text())
    steps = workflow["jobs"]["docker"]["steps"]
    (step,) = [step for step in steps if "/api/v1/emails" in step.get("run", "")]
    namespace = ["ip", "netns", "exec", client.namespace]
    forwarder = subprocess.Popen(
        [*namespace, sys.executable, "-c", FORWARDER, web.host.address, "8000"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert forwarder.stdout is not None
        assert forwarder.stdout.readline().strip() == "ready"
        started = time.monotonic()
        result = subprocess.run(
            [*namespace, "bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
            cwd=stack.project,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return round(time.monotonic() - started, 1)
    finally:
        forwarder.terminate()
        forwarder.wait(timeout=10)
