"""HTTP side of the bearer-token auth: plain ASGI middleware answering 401 from the one error table.

It sits inside ``RequestAccounting`` so that refused requests are still counted and access-logged (with their
id, never their token).
"""

from __future__ import annotations

from service.auth import AuthPolicy
from service.core.errors import Unauthenticated
from service.transport.http.common import error_response


class BearerAuth:
    def __init__(self, app, policy: AuthPolicy):
        self.app = app
        self.policy = policy

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or self.policy.is_open(scope["path"]):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        try:
            self.policy.check(scope["path"], headers.get(b"authorization", b"").decode("latin-1") or None)
        except Unauthenticated as exc:
            response = error_response(exc)
            response.headers["WWW-Authenticate"] = 'Bearer realm="tlserve"'
            return await response(scope, receive, send)
        return await self.app(scope, receive, send)
