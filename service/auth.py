"""Optional bearer-token auth, one policy for both transports: which paths are open, and whether a token is right.

The token is read once from a file (a Kubernetes Secret mounted as a file, say), never from a flag or an
environment value that ``ps`` or a crash dump would show. Tokens are compared with ``hmac.compare_digest`` so the
time taken does not tell an attacker how many leading characters were right. Nothing here logs a token.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from pathlib import Path

from service.core.errors import Unauthenticated
from service.settings import Settings, SettingsError

MAX_TOKEN_BYTES = 4096  # a token file larger than this is a mistake (a certificate, a whole directory listing...)


@dataclass(frozen=True)
class AuthPolicy:
    """``token`` None: auth is off and every path is open."""

    token: bytes | None
    open_paths: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> AuthPolicy:
        open_paths = tuple(p.strip() for p in settings.auth_open_paths.split(",") if p.strip())
        if settings.prometheus_path and "/metrics" in open_paths:  # the same metrics at TF Serving's path
            open_paths += (settings.prometheus_path,)
        token = read_token(settings.auth_token_file) if settings.auth_token_file else None
        return cls(token, open_paths)

    @property
    def enabled(self) -> bool:
        return self.token is not None

    def is_open(self, path: str) -> bool:
        """``path`` needs no token: listed exactly or under a listed ``prefix*``, and not under a ``!`` exception."""
        if not self.enabled:
            return True
        if any(_matches(rule[1:], path) for rule in self.open_paths if rule.startswith("!")):
            return False
        return any(_matches(rule, path) for rule in self.open_paths if not rule.startswith("!"))

    def check(self, path: str, authorization: str | None) -> None:
        """Raise ``Unauthenticated`` unless ``path`` is open or ``authorization`` is ``Bearer <the token>``."""
        if self.is_open(path):
            return
        if not authorization:
            raise Unauthenticated("missing bearer token: send 'Authorization: Bearer <token>'")
        scheme, _, presented = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise Unauthenticated("the Authorization header must be 'Bearer <token>'")
        if self.token is None or not hmac.compare_digest(presented.strip().encode("utf-8", "surrogateescape"),
                                                         self.token):
            raise Unauthenticated("invalid bearer token")


def read_token(path: Path) -> bytes:
    """The token in ``path`` (surrounding whitespace, such as a trailing newline, removed)."""
    try:
        if path.stat().st_size > MAX_TOKEN_BYTES:
            raise SettingsError(f"auth_token_file {path} is larger than {MAX_TOKEN_BYTES} bytes; "
                                "it should hold one token")
        token = path.read_bytes().strip()
    except OSError as exc:
        raise SettingsError(f"auth_token_file {path} cannot be read: {exc.strerror}") from None
    if not token:
        raise SettingsError(f"auth_token_file {path} is empty; put the token in it")
    if any(c < 0x21 or c > 0x7E for c in token):
        raise SettingsError(f"auth_token_file {path} must hold one token of printable ASCII without spaces")
    return token


def _matches(rule: str, path: str) -> bool:
    return path.startswith(rule[:-1]) if rule.endswith("*") else path == rule
