"""The error every failed call raises: the API's own error (contract §6), with
its status, message and field details; or a transport failure. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec


@dataclass(frozen=True)
class FieldProblem:
    field: str
    reason: str


@dataclass
class HookbusError(Exception):
    """`code` is the HTTP status (0: no answer); `status` the API's name of it
    (`INVALID_ARGUMENT`…), `message` the API's message."""

    code: int
    status: str
    message: str
    details: list[FieldProblem] = field(default_factory=list)
    request_id: str | None = None

    def __str__(self) -> str:
        where = f" (request {self.request_id})" if self.request_id else ""
        return f"{self.code} {self.status}: {self.message}{where}" if self.code \
            else f"{self.status}: {self.message}"


class _Error(msgspec.Struct):
    code: int = 0
    status: str = ""
    message: str = ""
    details: list[dict[str, str]] = []


class _ErrorBody(msgspec.Struct):
    error: _Error


def error_from_answer(code: int, body: bytes, request_id: str | None = None) -> HookbusError:
    """The error an answer of status `code` carries; one made of its text when the
    body is not in the API's shape (a proxy's page, say)."""
    try:
        error = msgspec.json.decode(body, type=_ErrorBody).error
    except msgspec.DecodeError:
        text = body.decode("utf-8", errors="replace").strip()[:500]
        return HookbusError(code, _STATUS_NAMES.get(code, "HTTP_ERROR"),
                            text or "no error message", request_id=request_id)
    return HookbusError(
        code, error.status or _STATUS_NAMES.get(code, "HTTP_ERROR"),
        error.message or "no error message",
        [FieldProblem(d.get("field", ""), d.get("reason", "")) for d in error.details],
        request_id)


def transport_error(url: str, exc: BaseException) -> HookbusError:
    """No answer: the connection failed or timed out."""
    text = str(exc)
    for known in ("Connection refused", "Name or service not known", "timed out"):
        if known.lower() in text.lower():
            text = known.lower()
            break
    return HookbusError(0, "UNREACHABLE",
                        f"cannot reach {url} ({text or type(exc).__name__}); is the API "
                        "running there (make run), or set HOOKBUS_URL / --url?")


_STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                 404: "NOT_FOUND", 409: "FAILED_PRECONDITION", 413: "PAYLOAD_TOO_LARGE",
                 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}
