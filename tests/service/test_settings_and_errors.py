"""Settings round-trip through TLSERVE_* variables; every row of the error table answers as it says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.core import errors
from service.settings import Settings, SettingsError
from service.transport.http.common import error_response
from tests.conftest import grpc_channel


def test_settings_survive_the_trip_through_the_environment():
    settings = Settings(model_repo=Path("/srv/models"), model_config_file=Path("/etc/models.config"),
                        max_batch_size=16, batch_timeout_ms=1.5, ready_when="any")
    assert Settings.from_env(settings.to_env()) == settings
    assert Settings.from_env({}) == Settings()


@pytest.mark.parametrize("env, message", [
    ({"TLSERVE_MAX_BATCH_SIZE": "zero"}, "TLSERVE_MAX_BATCH_SIZE"),
    ({"TLSERVE_MAX_BATCH_SIZE": "0"}, "max_batch_size"),
    ({"TLSERVE_READY_WHEN": "some"}, "ready_when"),
    ({"TLSERVE_HTTP_PORT": "70000"}, "http_port"),
])
def test_bad_settings_name_the_setting(env, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


ERROR_CLASSES = {cls.kind: cls for cls in errors.ServiceError.__subclasses__()}


def test_every_error_kind_has_a_class():
    assert set(ERROR_CLASSES) == set(errors.ERROR_TABLE)


@pytest.mark.parametrize("kind", errors.ERROR_TABLE, ids=lambda k: k.name)
def test_http_answers_each_error_kind_with_its_status_and_a_json_error(kind):
    retry = 2.0 if kind is errors.UNAVAILABLE else None
    response = error_response(ERROR_CLASSES[kind]("what went wrong", retry_after_s=retry))
    assert response.status_code == kind.http_status
    assert json.loads(response.body) == {"error": "what went wrong"}
    assert (response.headers.get("retry-after") == "2") == (kind is errors.UNAVAILABLE)


def test_unexpected_exceptions_are_500_without_details():
    response = error_response(KeyError("secret internals"))
    assert response.status_code == 500 and b"secret" not in response.body


class _Raiser:
    """A gRPC method that raises the error kind named in the request, through the real ``rpc`` wrapper."""

    def __init__(self):
        from prometheus_client import CollectorRegistry

        from service.observability.metrics import Metrics

        self.metrics = Metrics(CollectorRegistry())

    async def call(self, request: bytes, context):
        raise ERROR_CLASSES[next(k for k in errors.ERROR_TABLE if k.name == request.decode())]("what went wrong")


def test_grpc_answers_each_error_kind_with_its_code():
    import asyncio

    import grpc

    from service.transport.grpc.calls import rpc

    raiser = _Raiser()
    method = rpc("test", "raise")(_Raiser.call)

    async def handler(request, context):
        return await method(raiser, request, context)

    async def main():
        server = grpc.aio.server()
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
            "test.Errors", {"Raise": grpc.unary_unary_rpc_method_handler(handler)})])
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        codes = {}
        async with grpc_channel(f"127.0.0.1:{port}", aio=True) as channel:
            call = channel.unary_unary("/test.Errors/Raise")
            for kind in errors.ERROR_TABLE:
                try:
                    await call(kind.name.encode())
                except grpc.aio.AioRpcError as exc:
                    codes[kind] = (exc.code(), exc.details())
        await server.stop(0)
        return codes

    codes = asyncio.run(main())
    for kind in errors.ERROR_TABLE:
        assert codes[kind] == (grpc.StatusCode[kind.grpc_code], "what went wrong"), kind
    counted = {s.labels["code"] for m in raiser.metrics.registry.collect() for s in m.samples
               if s.name == "tlserve_requests_total"}
    assert counted == {k.grpc_code for k in errors.ERROR_TABLE}


# The contract's `tlserve serve` flags (DESIGN.md "CLI", README), which the generated command line must keep.
SERVE_FLAGS = ["--model-repo", "--model-config-file", "--host", "--http-port", "--grpc-port", "--grpc-max-message-mb",
               "--max-batch-size", "--batch-timeout-ms", "--max-queue", "--allowed-batch-sizes", "--model-batching",
               "--poll-interval-s", "--ready-when", "--max-body-mb", "--request-timeout-s",
               "--max-concurrent-requests", "--drain-delay-s", "--shutdown-grace-s", "--gpu-memory-limit-mb",
               "--intra-op-threads", "--inter-op-threads", "--tls-cert-file", "--tls-key-file", "--auth-token-file",
               "--auth-open-paths"]


def test_every_setting_documents_itself_and_has_a_serve_flag(capsys):
    import dataclasses

    from tlserve.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    usage = capsys.readouterr().out
    for flag in SERVE_FLAGS:
        assert flag in usage
    for f in dataclasses.fields(Settings):
        assert f.metadata.get("help"), f"Settings.{f.name} has no help"
        assert f"TLSERVE_{f.name.upper()}" in usage  # each flag names its environment variable


def test_serve_flags_over_tlserve_env_over_settings_defaults():
    from tlserve.cli import build_parser, serve_settings

    def settings(argv, environ):
        return serve_settings(build_parser().parse_args(["serve", *argv]), environ)

    assert settings([], {}) == Settings()
    env = {"TLSERVE_MAX_BATCH_SIZE": "64", "TLSERVE_READY_WHEN": "any"}  # e.g. the GPU overlay's settings.env
    assert (settings([], env).max_batch_size, settings([], env).ready_when) == (64, "any")
    chosen = settings(["--max-batch-size", "8", "--host", "127.0.0.1", "--tls-cert-file", ""], env)
    assert (chosen.max_batch_size, chosen.http_host, chosen.ready_when) == (8, "127.0.0.1", "any")
    assert chosen.tls_cert_file is None


def test_serve_flag_values_are_checked_by_the_settings_own_rules(capsys):
    from tlserve.cli import build_parser

    for argv in (["--max-batch-size", "0"], ["--ready-when", "some"], ["--http-port", "x"]):
        with pytest.raises(SystemExit) as exit_info:
            build_parser().parse_args(["serve", *argv])
        assert exit_info.value.code == 2
        assert argv[0] in capsys.readouterr().err


def test_object_store_locations_stay_urls_through_flags_and_the_environment():
    settings = Settings.from_env({"TLSERVE_MODEL_REPO": "s3://bucket/models"})
    assert settings.model_repo == "s3://bucket/models"  # not Path('s3:/bucket/models')
    assert Settings.from_env(settings.to_env()).model_repo == "s3://bucket/models"
    assert isinstance(Settings.from_env({"TLSERVE_MODEL_REPO": "models"}).model_repo, Path)
    with pytest.raises(SettingsError, match="model_repo: hdfs:// is not supported"):
        Settings.from_env({"TLSERVE_MODEL_REPO": "hdfs://namenode/models"})
    with pytest.raises(SettingsError, match="model_base_path: .* must not hold credentials"):
        Settings(model_name="m", model_base_path="s3://key:secret@bucket/m")


def test_serve_checks_a_local_repository_without_loading_the_object_store_code(tmp_path):
    """`tlserve serve` checks its model location before it execs BentoML's arbiter, on the path of every cold start:
    a local folder is one stat, and the object-store code (protobuf text format, the model-config parser: 80 ms)
    is only for URLs."""
    import subprocess
    import sys

    code = ("import sys; from tlserve.cli import check_location; from service.settings import Settings\n"
            f"check_location({str(tmp_path)!r}, Settings(), 'model repository')\n"
            "print(*[m in sys.modules for m in ('service.repository.config', 'service.repository.objectstore')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "False"]
