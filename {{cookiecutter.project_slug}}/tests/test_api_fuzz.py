"""Schema-driven fuzzing against the real service, with every schemathesis check: requests
made from its own OpenAPI schema, valid and invalid, one by one and chained (a resource
made, then used). No answer may be a 5xx, nor differ from what the schema documents.
Then two such answers that fuzzing may miss, every time."""

import subprocess
import sys
from pathlib import Path

import httpx
from pydantic import SecretStr

from {{ cookiecutter.project_slug }}.settings import Settings
from tests.processes import start_service

# Generated requests per operation, in each of the fuzzing and the stateful phase; the
# coverage phase adds its own (each field missing, of the wrong type, at its limits...),
# about 500 in all. Each generated one costs schemathesis 40-80 ms of CPU: raise it for
# a deeper search when the API changes, rather than on every `make test`.
EXAMPLES = 5
API_KEY = "fuzz-key-3c9a"


def test_every_answer_is_as_documented(settings: Settings, tmp_path: Path) -> None:
    # An API key required, as in production: the answers without one are checked too.
    settings = settings.model_copy(update={"api_keys": [SecretStr(API_KEY)]})
{%- if cookiecutter.job_backend in ("rq", "celery") %}
    # With a worker: the jobs the requests make run, and /health/ready has one to find.
{%- endif %}
    with start_service(settings, tmp_path) as service:
        # Its command line runs every phase: examples, coverage, fuzzing, stateful.
        schema = f"{service[0].url}/openapi.json"
        command = [sys.executable, "-m", "schemathesis.cli", "run", schema, "--checks", "all"]
        command += ["--max-examples", str(EXAMPLES), "--workers", "1", "--request-timeout", "30"]
        command += ["--header", f"X-API-Key: {API_KEY}"]
        # A failure shows the exact request that made it, as a curl command.
        command += ["--output-sanitize", "false", "--no-color"]
        # In the test's folder: no schemathesis.toml or report of the project's is used.
        run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, check=False)
        logs = "".join(process.output() for process in service)
    assert run.returncode == 0, f"{run.stdout}{run.stderr}\n\n{logs}"


async def test_a_405_names_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    # Schemathesis checks an Allow header only when it has methods in it.
    response = await client.put("/api/v1/documents")
    assert (response.status_code, response.headers["allow"]) == (405, "GET, POST")


async def test_a_body_that_is_not_even_text_is_invalid_json(client: httpx.AsyncClient) -> None:
    json = {"Content-Type": "application/json"}
    response = await client.post("/api/v1/emails", content=b"\xff{", headers=json)
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"
