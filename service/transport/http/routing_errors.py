"""BentoML's own router answers in text/plain; here its routing errors take the service's ``{"error": ...}`` shape.

A path that no route of the mounted app matches never reaches that app under BentoML (its ``PassiveMount``
declines it and BentoML's Starlette router answers), and neither does a wrong method on BentoML's own routes
(/readyz, /metrics). Under plain uvicorn the app's own exception handlers answer them; this middleware makes
``tlserve serve`` answer the same (Triton's and KServe's clients parse the error body as JSON).
"""

from __future__ import annotations

import json


class JsonRoutingErrors:
    """BentoML's own router answers a path that no route matches (it never reaches the mounted app) and a wrong
    method on its own routes in text/plain; they answer ``{"error": ...}`` here, as under plain uvicorn."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        held: dict = {}

        async def send_json(message):
            if message["type"] == "http.response.start" and message["status"] in (404, 405) and \
                    dict(message.get("headers") or []).get(b"content-type", b"").startswith(b"text/plain"):
                held.update(start=message, body=b"")
                return
            if "start" not in held:
                return await send(message)
            held["body"] += message.get("body", b"")
            if not message.get("more_body"):
                body = json.dumps({"error": held["body"].decode("utf-8", "replace")}).encode()
                headers = [(k, v) for k, v in held["start"].get("headers") or []
                           if k not in (b"content-type", b"content-length")]
                await send({**held["start"], "headers": headers + [(b"content-type", b"application/json"),
                                                                    (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, send_json)
