"""The OpenAPI document, the offline docs page, and schemathesis against the
live ingest: no 5xx, and every response conforms to the document."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import aiohttp

from devtools.broker import Broker
from services.common.topics import Topics
from tests.conftest import make_stack, token

CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_schema_conformance,response_headers_conformance")


async def test_docs_render_from_shipped_assets(kafka: Broker, topics: Topics,
                                               tmp_path: Path) -> None:
    stack = make_stack(kafka.bootstrap, topics.prefix, tmp_path)
    stack.start("ingest")
    try:
        await stack.wait_ready()
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{stack.ingest_url}/openapi.json") as response:
                document = await response.json()
            assert document["openapi"] == "3.1.0"
            assert "/v1/apps/{app_id}/webhooks/{webhook_id}/secret/rotate" in document["paths"]
            async with http.get(f"{stack.ingest_url}/docs") as response:
                page = await response.text()
            assets = re.findall(r'(?:src|href)="([^"]+)"', page)
            assert assets and all(a.startswith("/docs/static/") for a in assets), assets
            for asset in assets:
                async with http.get(stack.ingest_url + asset) as response:
                    assert response.status == 200 and len(await response.read()) > 1000
    finally:
        assert stack.stop() == {"ingest": 0}


async def test_schemathesis_finds_no_server_error_and_no_nonconformance(
    kafka: Broker, topics: Topics, tmp_path: Path
) -> None:
    stack = make_stack(kafka.bootstrap, topics.prefix, tmp_path)
    stack.start("eventlog")
    stack.start("ingest")
    try:
        await stack.wait_ready()
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "schemathesis.cli", "run", f"{stack.ingest_url}/openapi.json",
            "--header", f"Authorization: Bearer {token(scope='admin')}",
            "--checks", CHECKS, "--max-examples", "25", "--no-color",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        output = (await process.communicate())[0].decode()
        summary = re.search(r"(\d+) generated, (\d+) passed", output)
        print(summary[0] if summary else output[-2000:])
        assert process.returncode == 0, output[-6000:]
        assert summary is not None and summary[1] == summary[2] and int(summary[1]) > 500
    finally:
        assert stack.stop() == {"eventlog": 0, "ingest": 0}
