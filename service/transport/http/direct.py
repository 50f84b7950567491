"""The inference routes called directly, in front of FastAPI's router.

FastAPI (0.165) matches a request against its routes one by one, and for each route it saves and restores its own
keys in the scope around the route's regular expression: 3-4 us a route on this machine, about 55 us for POST
/classify behind the one route in front of it and more for the routes further down (/v2/.../infer, :predict).
Then its request handler solves dependencies the inference routes do not have. The inference routes take a
``Request`` and string path parameters and return a ``Response``; nothing of that machinery applies to them.

``DirectRoutes`` sits just inside the accounting (and auth) middleware: a POST whose path one of ``routes``
matches is answered by calling that route's endpoint with the path parameters; an exception it raises is answered
by the app's own exception handlers (the same ones FastAPI's would pick). Everything else, including a wrong
method on one of these paths (405), goes on to FastAPI unchanged. The routes stay registered with FastAPI too:
OpenAPI documents them, and an app without this middleware serves them the same way.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from fastapi.routing import APIRoute
from starlette.convertors import StringConvertor
from starlette.requests import Request
from starlette.responses import Response

# What the hot paths start with: anything else is passed on after one string test.
_PREFIXES = ("/classify", "/v1/models/", "/v2/models/")


class DirectRoutes:
    def __init__(self, app, routes: Sequence[APIRoute], exception_handlers: dict[Any, Callable]):
        """``routes``: POST routes whose endpoints take ``(request, **path_params)`` (strings) and return a
        ``Response``. ``exception_handlers``: the app's (``FastAPI.exception_handlers``)."""
        self.app = app
        self.routes: list[tuple[re.Pattern, Callable]] = []
        for route in routes:
            if route.methods != {"POST"} or not all(isinstance(c, StringConvertor)
                                                     for c in route.param_convertors.values()):
                raise ValueError(f"{route.path}: only POST routes with string path parameters can be direct")
            self.routes.append((route.path_regex, route.endpoint))
        self.exception_handlers = exception_handlers

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"].startswith(_PREFIXES):
            path = scope["path"]
            for regex, endpoint in self.routes:
                match = regex.match(path)
                if match:
                    return await self._answer(endpoint, match.groupdict(), scope, receive, send)
        await self.app(scope, receive, send)

    async def _answer(self, endpoint, params: dict[str, str], scope, receive, send) -> None:
        scope["path_params"] = params
        request = Request(scope, receive, send)
        try:
            response = await endpoint(request, **params)
            if not isinstance(response, Response):
                raise TypeError(f"{endpoint.__qualname__} returned {type(response).__name__}, not a Response")
        except Exception as exc:
            handler = self._handler(exc)
            if handler is None:
                raise
            response = await handler(request, exc)
        await response(scope, receive, send)

    def _handler(self, exc: Exception) -> Callable | None:
        """The app's handler for ``exc``: that of the most specific class registered, as Starlette looks it up."""
        return next((self.exception_handlers[cls] for cls in type(exc).__mro__ if cls in self.exception_handlers),
                    None)
