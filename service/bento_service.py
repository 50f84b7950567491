"""The BentoML service: a thin shell around ``create_app``.

BentoML imports this module in its arbiter and again in the worker; settings come from ``TLSERVE_*``
variables (``tlserve serve`` sets them from its flags). Models load in the worker's start-up hook, so
the arbiter never touches a model. ``workers=1``: one process owns the models (one per GPU), and HTTP
and gRPC requests share its batchers.
"""

from __future__ import annotations

import bentoml

from service.app import build_runtime, create_app
from service.settings import Settings

settings = Settings.from_env()
runtime = build_runtime(settings)
app = create_app(settings, runtime=runtime, manage_lifecycle=False)


@bentoml.service(name="tlserve", workers=1, traffic={"timeout": max(1, int(settings.request_timeout_s) + 30)})
@bentoml.asgi_app(app, path="/")
class TlServe:
    @bentoml.on_startup
    async def start(self) -> None:
        await runtime.start()

    @bentoml.on_shutdown
    async def stop(self) -> None:
        await runtime.stop()

    def __is_ready__(self) -> bool:
        return runtime.ready()

    def __is_alive__(self) -> bool:
        return True
