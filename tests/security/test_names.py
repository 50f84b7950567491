"""Model names, versions and labels from outside never become paths and never break an answer: traversal, absolute
paths, NUL bytes and overlong names in URLs, gRPC ModelSpecs, V2 repository calls, TF Serving's reload request and
model config files are refused with 404 / NOT_FOUND or INVALID_ARGUMENT (or a config error), with short messages."""

from __future__ import annotations

from urllib.parse import quote

import grpc
import pytest
from tensorflow_serving.apis import (model_management_pb2, model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)

from service.repository.config import ConfigError, parse_model_config, specs_from_repository
from service.transport.grpc.protos.tlserve.classifier.v1 import classifier_pb2, classifier_pb2_grpc

HOSTILE_NAMES = ["../shapes", "..", "/etc/passwd", "shapes/../shapes", "shapes\x00", "\x00", "~", "a" * 300,
                 "sh apes", "shapes\n", "C:\\x", "%2e%2e"]
MAX_MESSAGE = 600  # a status message stays well under gRPC's 8 KiB metadata limit, whatever the client sent


def _segment(text: str) -> str:
    return quote(text, safe="").replace(".", "%2E")


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_names_in_urls_are_not_found(client, name):
    for method, path in (("GET", "/v1/models/{}"), ("GET", "/v1/models/{}/metadata"), ("GET", "/v2/models/{}"),
                         ("POST", "/v2/repository/models/{}/load"), ("POST", "/v2/repository/models/{}/unload"),
                         ("POST", "/v1/models/{}:predict")):
        response = client.request(method, path.format(_segment(name)), json={"instances": [1.0]})
        assert response.status_code == 404, (method, path, name, response.text)
        assert len(response.json()["error"]) < MAX_MESSAGE


@pytest.mark.parametrize("label", ["../1", "\x00", "a" * 300, "/abs"])
def test_hostile_versions_and_labels_in_urls_are_not_found(client, label):
    assert client.get(f"/v1/models/shapes/labels/{_segment(label)}").status_code == 404
    assert client.get(f"/v1/models/shapes/versions/{_segment(label)}").status_code == 404


@pytest.mark.parametrize("name", HOSTILE_NAMES + ["a" * 100_000, "é" * 50_000])
def test_hostile_names_in_grpc_are_not_found_with_a_short_message(channel, name):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    with pytest.raises(grpc.RpcError) as err:
        prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
    # An echo of a 100 KB name would overflow the client's metadata limit: it would see RESOURCE_EXHAUSTED.
    assert err.value.code() == grpc.StatusCode.NOT_FOUND, err.value.details()
    assert len(err.value.details()) < MAX_MESSAGE
    with pytest.raises(grpc.RpcError) as err:
        classifier_pb2_grpc.ClassifierStub(channel).GetModel(classifier_pb2.GetModelRequest(name=name), timeout=30)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_an_overlong_label_in_grpc_is_not_found(channel):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "shapes"
    request.model_spec.version_label = "l" * 200_000
    with pytest.raises(grpc.RpcError) as err:
        prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND, err.value.details()


@pytest.mark.parametrize("name", ["../x", "/abs", "a\x00b", "a" * 300, ".hidden", ""])
def test_reload_config_refuses_hostile_names(channel, name):
    request = model_management_pb2.ReloadConfigRequest()
    request.config.model_config_list.config.add(name=name, base_path="/tmp")
    with pytest.raises(grpc.RpcError) as err:
        model_service_pb2_grpc.ModelServiceStub(channel).HandleReloadConfigRequest(request, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("name", ["../x", "/abs", "a\\x00b", "a" * 300, ".hidden", "a/b"])
def test_config_files_refuse_hostile_names(name):
    with pytest.raises(ConfigError, match="not a valid model name"):
        parse_model_config(f'model_config_list {{ config {{ name: "{name}" base_path: "/m" }} }}')


@pytest.mark.parametrize("label", ["../x", "a\\x00b", "l" * 300, "a/b", " "])
def test_config_files_refuse_hostile_labels(label):
    text = (f'model_config_list {{ config {{ name: "m" base_path: "/m" model_version_policy {{ specific {{ '
            f'versions: 1 }} }} version_labels {{ key: "{label}" value: 1 }} }} }}')
    with pytest.raises(ConfigError, match="not a valid version label"):
        parse_model_config(text)


def test_repository_directories_with_hostile_names_are_skipped(tmp_path):
    for name in ("good", "sh apes", ".hidden", "x\ny", "-dash"):
        (tmp_path / name).mkdir()
    assert [spec.name for spec in specs_from_repository(tmp_path)] == ["good"]
