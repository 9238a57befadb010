"""`make client` (devtools/openapi_client.py): a Python client generated from
the API's OpenAPI document by the pinned openapi-python-client compiles,
imports and has an operation of every resource (issue 14 item 2)."""

from __future__ import annotations

import compileall
import subprocess
import sys
from pathlib import Path

from devtools.openapi_client import PACKAGE, generate

OPERATIONS = ("publish_an_event", "create_a_webhook", "list_events", "get_a_replay_job",
              "rotate_a_webhooks_secret")


def test_the_generated_client_compiles_and_imports(tmp_path: Path) -> None:
    out = tmp_path / "client"
    package = generate(out)
    assert package.is_dir() and (out / "pyproject.toml").exists()
    assert compileall.compile_dir(package, quiet=1)
    modules = ", ".join(f"{PACKAGE}.api.default.{name}" for name in OPERATIONS)
    code = (f"import {PACKAGE}, {modules}\n"
            f"from {PACKAGE} import AuthenticatedClient\n"
            f"c = AuthenticatedClient(base_url='http://127.0.0.1:1', token='t')\n"
            f"assert callable({PACKAGE}.api.default.publish_an_event.sync_detailed)\n"
            "print('ok')")
    run = subprocess.run([sys.executable, "-c", code], cwd=out, capture_output=True, text=True)
    assert run.stdout.strip() == "ok", run.stderr
