"""The OpenAPI document against ingest's routes: every API route is described
(none more), and every route the event log answers documents the errors ingest
itself answers before or instead of relaying (401, 403, 404 for a webhook, 503
when no instance answers, 500 when its answer cannot be relayed), each in the
contract's shape."""

from __future__ import annotations

import pytest

from services.common.config import KafkaSettings
from services.ingest.app import create_app
from services.ingest.openapi import openapi_document
from services.ingest.settings import Settings
from tests.conftest import JWT_SECRET, SECRET_KEYS

DOCUMENT = openapi_document("test")
EVENT_LOG_ROUTES = [
    ("get", "/v1/apps/{app_id}/events"),
    ("get", "/v1/apps/{app_id}/events/{event_id}"),
    ("post", "/v1/apps/{app_id}/events/{event_id}/resend"),
    ("get", "/v1/apps/{app_id}/webhooks/{webhook_id}/attempts"),
    ("get", "/v1/apps/{app_id}/webhooks/{webhook_id}/stats"),
    ("post", "/v1/apps/{app_id}/webhooks/{webhook_id}/replay"),
    ("get", "/v1/apps/{app_id}/webhooks/{webhook_id}/replay/{job_id}"),
]


def test_every_api_route_is_documented_and_nothing_else() -> None:
    app = create_app(Settings(kafka=KafkaSettings("127.0.0.1:1", "t."), jwt_secret=JWT_SECRET,
                              secret_keys=SECRET_KEYS))
    served = {(route.method.lower(), route.resource.canonical)
              for route in app.router.routes()
              if route.resource is not None and route.method != "HEAD"
              and route.resource.canonical.startswith(("/v1/", "/healthz", "/readyz",
                                                       "/metrics"))}
    documented = {(method, path) for path, operations in DOCUMENT["paths"].items()
                  for method in operations}
    assert served == documented


@pytest.mark.parametrize(("method", "path"), EVENT_LOG_ROUTES)
def test_event_log_routes_document_what_ingest_answers_itself(method: str, path: str) -> None:
    operation = DOCUMENT["paths"][path][method]
    responses = operation["responses"]
    for code in ("400", "401", "403", "404", "500", "503"):
        assert responses[code]["content"]["application/json"]["schema"] == \
            {"$ref": "#/components/schemas/ErrorBody"}, code
    assert "moving between instances" in responses["503"]["description"]
    for parameter in operation["parameters"]:
        if parameter["in"] == "path":
            assert parameter["schema"]["maxLength"] <= 255, parameter


def test_the_request_line_of_the_longest_valid_request_fits_aiohttps_limit() -> None:
    """Every character of a path parameter may take 12 bytes percent-encoded (a
    4-byte UTF-8 character); aiohttp answers a line over 8,190 bytes itself,
    in text/plain, before any route."""
    for path, operations in DOCUMENT["paths"].items():
        for method, operation in operations.items():
            size = len(f"{method.upper()} {path} HTTP/1.1")
            for parameter in operation.get("parameters", ()):
                schema = parameter["schema"]
                if parameter["in"] == "path":
                    size += 12 * schema["maxLength"] - len(parameter["name"]) - 2
                elif parameter["in"] == "query":  # (ASCII when an enum or pattern says so)
                    if "enum" in schema:
                        longest = max(len(v) for v in schema["enum"])
                    elif schema["type"] == "string":
                        longest = schema.get("maxLength", 40) * (1 if "pattern" in schema else 12)
                    else:
                        longest = 20
                    size += len(parameter["name"]) + 2 + longest
            assert size <= 8190, (method, path, size)
