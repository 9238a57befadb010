"""`make client`: a typed Python client of the management API, generated from
its OpenAPI document by `openapi-python-client` (pinned in the test extras).

    python -m devtools.openapi_client [--url http://127.0.0.1:8080] [--out DIR]

The document is the one ingest serves at `/openapi.json`: fetched from `--url`
when given, else built from the code (no server needed). The client lands in
`DIR` (default `.cache/clients/python`) as the package `hookbus_api_client`
(httpx + attrs), installable with `pip install DIR`. For other languages, feed
the same document to their generator (see the README, SDK and CLI)."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from importlib.metadata import version
from pathlib import Path

from devtools.broker import ROOT

DEFAULT_OUT = ROOT / ".cache" / "clients" / "python"
PACKAGE = "hookbus_api_client"
# Trigger names repeat across vocabularies (`message_created`…): enums as Literals.
CONFIG = {"project_name_override": "hookbus-api-client", "package_name_override": PACKAGE,
          "literal_enums": True, "post_hooks": []}


def openapi_json(url: str | None) -> dict:
    if url:
        with urllib.request.urlopen(url.rstrip("/") + "/openapi.json", timeout=10) as answer:
            return json.load(answer)
    from services.ingest.openapi import openapi_document

    return openapi_document(version("hookbus"))


def generate(out: Path, url: str | None = None) -> Path:
    """Generate the client into `out` (replaced); the package's directory."""
    generator = shutil.which("openapi-python-client", path=str(Path(sys.executable).parent))
    if generator is None:
        raise SystemExit("openapi-python-client is not installed: pip install -e '.[test]'")
    with tempfile.TemporaryDirectory() as scratch:
        document, config = Path(scratch) / "openapi.json", Path(scratch) / "config.json"
        document.write_text(json.dumps(openapi_json(url)))
        config.write_text(json.dumps(CONFIG))
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([generator, "generate", "--path", str(document), "--output-path",
                        str(out), "--config", str(config), "--meta", "setup", "--overwrite"],
                       check=True, stdout=subprocess.DEVNULL)
    return out / PACKAGE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running API to read /openapi.json from")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    package = generate(args.out, args.url)
    print(f"generated {package} (pip install {args.out})")


if __name__ == "__main__":
    main()
