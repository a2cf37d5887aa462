"""The OpenAPI document generates clean typed clients (issue 33): openapi-python-client prints
no warning on a served app's /openapi.json, and the client it writes runs a create, read,
conflict and not-found flow, with the error envelope parsed into its typed model;
openapi-typescript generates types that a flow written against them compiles with (`tsc
--strict`) and runs with on Node."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import REDIS_URL
from tests.e2e.server import prepare_deployment, run_server

pytestmark = pytest.mark.e2e
ADMIN = ("root", "generated-client-admin")
UNKNOWN_ID = "00000000-0000-7000-8000-000000000000"


def test_the_generated_python_client_works_and_warns_of_nothing(tmp_path: Path) -> None:
    (tmp_path / "setup").mkdir()
    (tmp_path / "run").mkdir()
    env = prepare_deployment(tmp_path / "setup", "genclient", ADMIN, REDIS_URL=REDIS_URL)
    with run_server(tmp_path / "run", env) as server:
        spec = tmp_path / "openapi.json"
        spec.write_bytes(httpx.get(f"{server.base_url}/openapi.json", timeout=10).content)
        generated = subprocess.run(
            [
                Path(sys.executable).with_name("openapi-python-client"),
                "generate",
                "--path",
                str(spec),
                "--meta",
                "none",
                "--output-path",
                str(tmp_path / "client" / "generated_client"),
            ],
            capture_output=True,
            text=True,
            timeout=300,
            env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"},  # its ruff hook
        )
        output = generated.stdout + generated.stderr
        assert generated.returncode == 0, output
        assert "Warning" not in output and "warning" not in output, output

        sys.path.insert(0, str(tmp_path / "client"))
        try:
            client_module = importlib.import_module("generated_client")
            create_user = importlib.import_module("generated_client.api.users.post_create_user")
            get_user = importlib.import_module("generated_client.api.users.get_get_user")
            models = importlib.import_module("generated_client.models")
            token = httpx.post(f"{server.base_url}/api/v1/tokens", auth=ADMIN, timeout=10)
            client = client_module.AuthenticatedClient(
                base_url=server.base_url, token=token.json()["data"]["token"]
            )
            with client:
                body = models.UserIn(name="generated", role=0)
                created = create_user.sync_detailed(client=client, body=body)
                assert isinstance(created.parsed, models.UserOutEnvelope), created.content
                user = created.parsed.data
                assert user.name == "generated"

                read = get_user.sync_detailed(user.id, client=client)
                assert isinstance(read.parsed, models.UserOutEnvelope)
                assert read.parsed.data.id == user.id and read.headers["ETag"] == '"1"'

                conflict = create_user.sync_detailed(client=client, body=body)
                assert conflict.status_code == 409
                assert isinstance(conflict.parsed, models.Failed)
                assert conflict.parsed.msg.startswith("name:")

                missing = get_user.sync_detailed(UNKNOWN_ID, client=client)
                assert missing.status_code == 404 and isinstance(missing.parsed, models.Failed)
                assert missing.parsed.msg == "User's id does not exist."
        finally:
            sys.path.remove(str(tmp_path / "client"))
            for name in [m for m in sys.modules if m.startswith("generated_client")]:
                del sys.modules[name]


JS_TOOLS = Path(__file__).parents[2] / "clients" / "js" / "node_modules"


def test_the_generated_typescript_types_compile_and_run_a_flow(tmp_path: Path) -> None:
    assert (JS_TOOLS / ".installed").exists(), "run `make test` (npm ci in clients/js)"
    (tmp_path / "setup").mkdir()
    (tmp_path / "run").mkdir()
    env = prepare_deployment(tmp_path / "setup", "gents", ADMIN, REDIS_URL=REDIS_URL)
    work = tmp_path / "ts"
    work.mkdir()
    (work / "flow.ts").write_bytes((Path(__file__).parent / "typescript" / "flow.ts").read_bytes())
    (work / "tsconfig.json").write_text(
        json.dumps(
            {
                "compilerOptions": {
                    "strict": True,
                    "target": "es2022",
                    "module": "nodenext",
                    "moduleResolution": "nodenext",
                    "typeRoots": [str(JS_TOOLS / "@types")],
                    "types": ["node"],
                },
                "files": ["flow.ts"],
            }
        )
    )
    with run_server(tmp_path / "run", env) as server:
        (work / "openapi.json").write_bytes(
            httpx.get(f"{server.base_url}/openapi.json", timeout=10).content
        )
        # As clients/js's `npm run generate` does.
        generated = subprocess.run(
            [JS_TOOLS / ".bin" / "openapi-typescript", "openapi.json"]
            + ["--default-non-nullable", "false", "-o", "schema.d.ts"],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=120,
        )
        output = generated.stdout + generated.stderr
        assert generated.returncode == 0 and "schema.d.ts" in output, output
        assert "warn" not in output.lower() and "error" not in output.lower(), output

        compiled = subprocess.run(
            [JS_TOOLS / ".bin" / "tsc", "-p", "."],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert compiled.returncode == 0, compiled.stdout + compiled.stderr

        token = httpx.post(f"{server.base_url}/api/v1/tokens", auth=ADMIN, timeout=10)
        ran = subprocess.run(
            ["node", "flow.js", server.base_url, token.json()["data"]["token"]],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert ran.stdout.strip() == "flow ok: User's id does not exist.", ran.stdout
