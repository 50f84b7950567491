"""Every error the service can answer with, each with its HTTP status and gRPC code, in one table.

Both transports read ``ERROR_TABLE``; neither keeps a mapping of its own, so they cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ErrorKind:
    name: str
    http_status: int
    grpc_code: str  # a grpc.StatusCode member name; core stays free of gRPC imports


INVALID_INPUT = ErrorKind("invalid_input", 400, "INVALID_ARGUMENT")
UNAUTHENTICATED = ErrorKind("unauthenticated", 401, "UNAUTHENTICATED")
NOT_FOUND = ErrorKind("not_found", 404, "NOT_FOUND")
TOO_LARGE = ErrorKind("too_large", 413, "RESOURCE_EXHAUSTED")
UNSUPPORTED_MEDIA = ErrorKind("unsupported_media_type", 415, "INVALID_ARGUMENT")
INTERNAL = ErrorKind("internal", 500, "INTERNAL")
NOT_IMPLEMENTED = ErrorKind("not_implemented", 501, "UNIMPLEMENTED")
UNAVAILABLE = ErrorKind("unavailable", 503, "UNAVAILABLE")
DEADLINE_EXCEEDED = ErrorKind("deadline_exceeded", 504, "DEADLINE_EXCEEDED")

ERROR_TABLE = (INVALID_INPUT, UNAUTHENTICATED, NOT_FOUND, TOO_LARGE, UNSUPPORTED_MEDIA, INTERNAL, NOT_IMPLEMENTED,
               UNAVAILABLE, DEADLINE_EXCEEDED)


class ServiceError(Exception):
    """Base of the errors a client may see; ``kind`` decides the status on every transport."""

    kind: ErrorKind = INTERNAL

    def __init__(self, message: str, *, retry_after_s: float | None = None):
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s


class InvalidInput(ServiceError):
    kind = INVALID_INPUT


class Unauthenticated(ServiceError):
    kind = UNAUTHENTICATED


class NotFound(ServiceError):
    """Unknown model, version, label or signature. The constructors below are the one place their texts are written:
    TF Serving's own, so clients that match them (readiness probes on "Servable not found for request: Latest(x)")
    work unchanged on every transport."""

    kind = NOT_FOUND

    @classmethod
    def servable(cls, model: str, version: int | None = None) -> NotFound:
        """No such model (``version`` None) or no such version: TF Serving's ``ServableRequest::DebugString``."""
        request = f"Latest({shown(model)})" if version is None else f"Specific({shown(model)}, {version})"
        return cls(f"Servable not found for request: {request}")

    @classmethod
    def label(cls, label: str) -> NotFound:
        """A version label the model's config does not assign (TF Serving's ServerCore text)."""
        return cls(f"Unrecognized servable version label: {shown(label)}")

    @classmethod
    def signature(cls, name: str) -> NotFound:
        """A signature the version does not have (TF Serving's predict_util text)."""
        return cls(f'Serving signature key "{shown(name)}" not found.')


def shown(text: str, limit: int = 100) -> str:
    """A name from outside as an error echoes it: itself when short and printable, else its first ``limit``
    characters quoted (a 100 KB or control-character name must not reach a status message or a log as is)."""
    return text if len(text) <= limit and text.isprintable() else repr(text[:limit])


class TooLarge(ServiceError):
    kind = TOO_LARGE


class UnsupportedMediaType(ServiceError):
    kind = UNSUPPORTED_MEDIA


class InternalError(ServiceError):
    kind = INTERNAL


class NotImplementedYet(ServiceError):
    kind = NOT_IMPLEMENTED

    @classmethod
    def cuda_shared_memory(cls) -> NotImplementedYet:
        """Triton's CUDA shared-memory extension: the one text of both transports."""
        return cls("CUDA shared memory is not supported: this server has no GPU shared memory; "
                   "use system shared memory (/v2/systemsharedmemory) or send the tensors in the request")


class Unavailable(ServiceError):
    """The model is not ready, or the queue is full (then ``retry_after_s`` is set)."""

    kind = UNAVAILABLE


class DeadlineExceeded(ServiceError):
    kind = DEADLINE_EXCEEDED
