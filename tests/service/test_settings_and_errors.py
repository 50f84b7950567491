"""Settings round-trip through TLSERVE_* variables; every row of the error table answers as it says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.core import errors
from service.settings import Settings, SettingsError
from service.transport.http.common import error_response


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
