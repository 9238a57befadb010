"""API errors in the contract's shape (§6); nothing else ever reaches a client."""

from __future__ import annotations

import re
from collections.abc import Sequence

import msgspec

from schemas.api import Error, ErrorBody, ErrorDetail

STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "FAILED_PRECONDITION",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}

_encoder = msgspec.json.Encoder()


class ApiError(Exception):
    def __init__(self, code: int, message: str, details: Sequence[ErrorDetail] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = list(details)

    @classmethod
    def invalid(cls, details: Sequence[ErrorDetail]) -> ApiError:
        message = "; ".join(f"{d.field}: {d.reason}" if d.field else d.reason for d in details)
        return cls(400, message, details)

    def body(self) -> bytes:
        status = STATUS_NAMES.get(self.code, "UNKNOWN")
        return _encoder.encode(
            ErrorBody(Error(code=self.code, status=status, message=self.message, details=self.details))
        )


_AT_PATH = re.compile(r"^(.*?)(?: - at `\$(.*)`)?$", re.S)
_NAMED_FIELD = re.compile(r"field `([^`]+)`")


def decode_error(exc: msgspec.DecodeError) -> ApiError:
    """A 400 naming the field that msgspec could not decode."""
    match = _AT_PATH.match(str(exc))
    reason, path = (match[1], match[2] or "") if match else (str(exc), "")
    field = re.sub(r"\[(\d+)\]", r".\1", path.replace("[...]", "")).lstrip(".")
    named = _NAMED_FIELD.search(reason)
    if named:  # "Object missing required field `target`", "... unknown field `x`"
        field = f"{field}.{named[1]}" if field else named[1]
    if isinstance(exc, msgspec.ValidationError):
        return ApiError.invalid([ErrorDetail(field, reason)])
    return ApiError.invalid([ErrorDetail("", f"malformed JSON: {reason}")])
