"""TF Serving's end-to-end expectations (tensorflow_model_server_test.py), against a real tlserve-model-server.

Each test names the TF Serving test it ports; E2E_CASES.md lists every case of that file and what became of it.
The servers are started the way TF Serving's test starts tensorflow_model_server: the same flags, the same models
(../shared/tfserving-testdata), the same requests through the unmodified tensorflow-serving-api stubs and plain HTTP.
"""

from __future__ import annotations

import json
import subprocess
import time

import grpc
import httpx
import pytest
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (classification_pb2, get_model_status_pb2, inference_pb2, model_management_pb2,
                                     model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc,
                                     regression_pb2)
from tensorflow_serving.config import model_server_config_pb2

from tests.conftest import TESTDATA, grpc_channel
from tests.tfserving_compat.conftest import HALF_PLUS_THREE, HALF_PLUS_TWO, TWO_VERSIONS, write_model_config

RPC_TIMEOUT = 30.0  # TF Serving's test uses 5 s; the machines here are shared and slower
VERSION = 123  # the version directory of every single-version test model


@pytest.fixture(scope="module")
def default_server(start_server):
    """TF Serving's RunServer('default', half_plus_two) with monitoring, batching and channel arguments: the
    flags of testPrometheusEndpoint, testPredictBatching and testGoodGrpcChannelArgs on one server."""
    return start_server("--model_name=default", f"--model_base_path={HALF_PLUS_TWO}", "--rest_api_timeout_in_ms=5000",
                        f"--monitoring_config_file={TESTDATA / 'monitoring_config.txt'}", "--enable_batching",
                        f"--batching_parameters_file={TESTDATA / 'batching_config.txt'}",
                        "--grpc_channel_arguments=grpc.max_connection_age_ms=2000,grpc.lb_policy_name=grpclb")


@pytest.fixture(scope="module")
def default_stub(default_server):
    with grpc_channel(default_server) as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


def verify_predict(stub, expected_output: float, *, model_name="default", specify_output=True, batch_input=False,
                   signature_name="serving_default", expected_version=VERSION):
    """TF Serving's VerifyPredictRequest: x = [2.0] (shape [1], or [1, 1] with a batch dimension) as float_val."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    request.inputs["x"].dtype = types_pb2.DT_FLOAT
    request.inputs["x"].float_val.append(2.0)
    request.inputs["x"].tensor_shape.dim.add().size = 1
    if batch_input:
        request.inputs["x"].tensor_shape.dim.add().size = 1
    if specify_output:
        request.output_filter.append("y")
    result = stub.Predict(request, RPC_TIMEOUT)
    assert "y" in result.outputs
    assert result.outputs["y"].dtype == types_pb2.DT_FLOAT
    assert len(result.outputs["y"].float_val) == 1  # the typed field, as TF Serving fills it (not tensor_content)
    assert result.outputs["y"].float_val[0] == expected_output
    verify_model_spec(result.model_spec, model_name, signature_name, expected_version)


def verify_model_spec(spec, name, signature_name, version):
    assert (spec.name, spec.signature_name, spec.version.value) == (name, signature_name, version)


def example_input(request) -> None:
    request.input.example_list.examples.add().features.feature["x"].float_list.value.extend([2.0])


def sorted_object(value):
    """JSON with every object and list in a canonical order (metadata maps have no order to compare)."""
    if isinstance(value, dict):
        return sorted((key, sorted_object(item)) for key, item in value.items())
    if isinstance(value, list):
        return sorted((sorted_object(item) for item in value), key=json.dumps)
    return value


# --------------------------------------------------------------------------------------------- gRPC, one model


def test_get_model_status(default_server):
    """testGetModelStatus"""
    with grpc_channel(default_server) as channel:
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = "default"
        result = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, RPC_TIMEOUT)
    assert len(result.model_version_status) == 1
    assert result.model_version_status[0].version == VERSION
    assert result.model_version_status[0].status.error_code == 0


def test_classify(default_stub):
    """testClassify"""
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name, request.model_spec.signature_name = "default", "classify_x_to_y"
    example_input(request)
    result = default_stub.Classify(request, RPC_TIMEOUT)
    assert len(result.result.classifications) == 1
    assert len(result.result.classifications[0].classes) == 1
    assert result.result.classifications[0].classes[0].score == 3.0
    verify_model_spec(result.model_spec, "default", "classify_x_to_y", VERSION)


def test_regress(default_stub):
    """testRegress"""
    request = regression_pb2.RegressionRequest()
    request.model_spec.name, request.model_spec.signature_name = "default", "regress_x_to_y"
    example_input(request)
    result = default_stub.Regress(request, RPC_TIMEOUT)
    assert len(result.result.regressions) == 1
    assert result.result.regressions[0].value == 3.0
    verify_model_spec(result.model_spec, "default", "regress_x_to_y", VERSION)


def test_multi_inference(default_stub):
    """testMultiInference"""
    request = inference_pb2.MultiInferenceRequest()
    for signature, method in (("regress_x_to_y", "regress"), ("classify_x_to_y", "classify")):
        task = request.tasks.add()
        task.model_spec.name, task.model_spec.signature_name = "default", signature
        task.method_name = f"tensorflow/serving/{method}"
    example_input(request)
    result = default_stub.MultiInference(request, RPC_TIMEOUT)
    assert len(result.results) == 2
    assert result.results[0].regression_result.regressions[0].value == 3.0
    assert result.results[1].classification_result.classifications[0].classes[0].score == 3.0
    for i in range(2):
        verify_model_spec(result.results[i].model_spec, "default", request.tasks[i].model_spec.signature_name, VERSION)


@pytest.mark.parametrize("specify_output", [True, False], ids=["output_filter", "all_outputs"])
def test_predict_batching(default_stub, specify_output):
    """testPredictBatching / testPredictSavedModel (the server runs with --enable_batching and TF Serving's
    batching_config.txt)"""
    verify_predict(default_stub, 3.0, specify_output=specify_output)


def test_predict_with_a_batch_dimension(default_stub):
    """test_sequential_keras_saved_model_save's request (batch_input=True: x of shape [1, 1])"""
    verify_predict(default_stub, 3.0, specify_output=False, batch_input=True)


def test_predict_answers_in_typed_value_fields(default_stub):
    """VerifyPredictRequest reads float_val: TF Serving fills the typed field for every size, not tensor_content."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "default"
    request.inputs["x"].dtype = types_pb2.DT_FLOAT
    request.inputs["x"].float_val.extend([2.0, 3.0, 4.0])
    for size in (3, 1):
        request.inputs["x"].tensor_shape.dim.add().size = size
    result = default_stub.Predict(request, RPC_TIMEOUT)
    assert list(result.outputs["y"].float_val) == [3.0, 3.5, 4.0]
    assert result.outputs["y"].tensor_content == b""
    assert [d.size for d in result.outputs["y"].tensor_shape.dim] == [3, 1]


def test_good_grpc_channel_args(default_server, default_stub):
    """testGoodGrpcChannelArgs: the server started with --grpc_channel_arguments (accepted, ignored) serves."""
    verify_predict(default_stub, 3.0, specify_output=False)
    assert "ignoring --grpc_channel_arguments" in default_server.log()


# --------------------------------------------------------------------------------------------- REST, one model


def call_rest(server, path: str, body: dict | None = None) -> dict:
    url = server.rest_url + path
    response = httpx.post(url, json=body, timeout=RPC_TIMEOUT) if body is not None else httpx.get(url, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def test_classify_rest(default_server):
    """testClassifyREST"""
    body = {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}
    assert call_rest(default_server, "/v1/models/default:classify", body) == {"results": [[["", 3.0]]]}


def test_regress_rest(default_server):
    """testRegressREST"""
    body = {"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]}
    assert call_rest(default_server, "/v1/models/default:regress", body) == {"results": [3.0]}


@pytest.mark.parametrize("verb, signature", [("classify", "regress_x_to_y"), ("classify", "serving_default")])
def test_rest_example_apis_on_the_wrong_signature_are_client_errors(default_server, verb, signature):
    """A signature without classification outputs, or without one tf.Example input, is the request's mistake."""
    response = httpx.post(f"{default_server.rest_url}/v1/models/default:{verb}", timeout=RPC_TIMEOUT,
                          json={"signature_name": signature, "examples": [{"x": 2.0}]})
    assert response.status_code == 400, response.text
    assert signature in response.json()["error"]


def test_predict_rest(default_server):
    """testPredictREST: instances without the [-1, 1] input's inner dimension are accepted, as by TF Serving."""
    body = {"instances": [2.0, 3.0, 4.0]}
    assert call_rest(default_server, "/v1/models/default:predict", body) == {"predictions": [3.0, 3.5, 4.0]}


def test_predict_columnar_rest(default_server):
    """testPredictColumnarREST"""
    assert call_rest(default_server, "/v1/models/default:predict", {"inputs": [2.0, 3.0, 4.0]}) == \
        {"outputs": [3.0, 3.5, 4.0]}


def test_get_status_rest(default_server):
    """testGetStatusREST"""
    assert call_rest(default_server, "/v1/models/default") == {"model_version_status": [
        {"version": "123", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}


def test_get_model_metadata_rest(default_server):
    """testGetModelMetadataREST: equal to TF Serving's half_plus_two_model_metadata.json"""
    expected = json.loads((TESTDATA / "half_plus_two_model_metadata.json").read_text())
    assert sorted_object(call_rest(default_server, "/v1/models/default/metadata")) == sorted_object(expected)


def test_prometheus_endpoint(default_server):
    """testPrometheusEndpoint, and TF Serving's metric names beside tlserve's own"""
    call_rest(default_server, "/v1/models/default:predict", {"instances": [2.0]})
    response = httpx.get(default_server.rest_url + "/monitoring/prometheus/metrics", timeout=30)
    assert response.status_code == 200
    text = response.text
    assert "# TYPE" in text
    assert ':tensorflow:serving:request_count{model_name="default",status="OK"}' in text
    assert "# TYPE :tensorflow:serving:request_latency histogram" in text
    assert 'API="Predict"' in text and 'entrypoint="REST"' in text
    assert "tlserve_requests_total" in text


# ------------------------------------------------------------------------------------------- model config files


@pytest.fixture(scope="module")
def good_config(tmp_path_factory):
    """TF Serving's good_model_config.txt with its placeholders filled in, as its test does."""
    template = (TESTDATA / "good_model_config.txt").read_text()
    text = template.replace("${TEST_HALF_PLUS_TWO_DIR}", str(HALF_PLUS_TWO)).replace(
        "${TEST_HALF_PLUS_THREE_DIR}", str(HALF_PLUS_THREE))
    path = tmp_path_factory.mktemp("config") / "good_model_config.conf"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def config_server(start_server, good_config):
    return start_server(f"--model_config_file={good_config}")


def test_good_model_config(config_server):
    """testGoodModelConfig"""
    with grpc_channel(config_server) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for model, expected in (("half_plus_two", 3.0), ("half_plus_three", 4.0)):
            verify_predict(stub, expected, model_name=model)
            verify_predict(stub, expected, model_name=model, specify_output=False)


def test_model_config_reload_with_zero_poll_period(config_server, good_config):
    """testModelConfigReloadWithZeroPollPeriod: without --model_config_file_poll_wait_seconds the file is read
    once; a rewritten file changes nothing."""
    original = good_config.read_text()
    write_model_config(good_config, {"half_plus_three": HALF_PLUS_THREE})
    try:
        time.sleep(2)
        with grpc_channel(config_server) as channel:
            verify_predict(prediction_service_pb2_grpc.PredictionServiceStub(channel), 3.0,
                           model_name="half_plus_two", specify_output=False)
    finally:
        good_config.write_text(original)


def test_bad_model_config(start_server):
    """testBadModelConfig: the server refuses to start and says why."""
    server = start_server(f"--model_config_file={TESTDATA / 'bad_model_config.txt'}", wait=False)
    assert server.process.wait(timeout=60) != 0
    assert "Error parsing text-format tensorflow.serving.ModelServerConfig" in server.log()


def test_model_config_reload(start_server, tmp_path):
    """testModelConfigReload: with --model_config_file_poll_wait_seconds=1 a rewritten file is served."""
    config = write_model_config(tmp_path / "model_config.txt", {"half_plus_two": HALF_PLUS_TWO})
    server = start_server(f"--model_config_file={config}", "--model_config_file_poll_wait_seconds=1")
    with grpc_channel(server) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        verify_predict(stub, 3.0, model_name="half_plus_two", specify_output=False)
        write_model_config(config, {"half_plus_three": HALF_PLUS_THREE})
        deadline = time.monotonic() + 60  # TF Serving's test sleeps poll + 1 s; loading here can take longer
        while True:
            try:
                verify_predict(stub, 4.0, model_name="half_plus_three", specify_output=False)
                break
            except grpc.RpcError as exc:
                if time.monotonic() > deadline or exc.code() not in (grpc.StatusCode.NOT_FOUND,
                                                                     grpc.StatusCode.UNAVAILABLE):
                    raise
                time.sleep(0.5)


# ------------------------------------------------------------------------ two versions; ModelService reload


@pytest.fixture(scope="module")
def two_version_server(start_server, tmp_path_factory):
    config = write_model_config(tmp_path_factory.mktemp("config") / "two.conf",
                                {"saved_model_half_plus_two_2_versions": TWO_VERSIONS},
                                policy="model_version_policy: { all: {} }")
    return start_server(f"--model_config_file={config}")


def test_two_versions_metadata_rest(two_version_server):
    """TF Serving's http_rest_api_handler_test GetModelMetadata: saved_model_half_plus_two_2_versions_metadata.json"""
    expected = json.loads((TESTDATA / "saved_model_half_plus_two_2_versions_metadata.json").read_text())
    got = call_rest(two_version_server, "/v1/models/saved_model_half_plus_two_2_versions/versions/123/metadata")
    assert sorted_object(got) == sorted_object(expected)
    newest = call_rest(two_version_server, "/v1/models/saved_model_half_plus_two_2_versions/metadata")
    assert newest["model_spec"]["version"] == "124"
    assert newest["metadata"] == expected["metadata"]


def test_two_versions_status_and_predict(two_version_server):
    status = call_rest(two_version_server, "/v1/models/saved_model_half_plus_two_2_versions")
    assert [(s["version"], s["state"]) for s in status["model_version_status"]] == \
        [("124", "AVAILABLE"), ("123", "AVAILABLE")]
    with grpc_channel(two_version_server) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for version in (123, 124):
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "saved_model_half_plus_two_2_versions"
            request.model_spec.version.value = version
            request.inputs["x"].dtype = types_pb2.DT_FLOAT
            request.inputs["x"].float_val.append(2.0)
            request.inputs["x"].tensor_shape.dim.add().size = 1
            result = stub.Predict(request, RPC_TIMEOUT)
            assert result.model_spec.version.value == version
            assert list(result.outputs["y"].float_val) == [3.0]


def test_handle_reload_config_request(two_version_server):
    """ModelService.HandleReloadConfigRequest: the server serves the sent config from then on."""
    config = model_server_config_pb2.ModelServerConfig()
    entry = config.model_config_list.config.add()
    entry.name, entry.base_path, entry.model_platform = "half_plus_three", str(HALF_PLUS_THREE), "tensorflow"
    with grpc_channel(two_version_server) as channel:
        reply = model_service_pb2_grpc.ModelServiceStub(channel).HandleReloadConfigRequest(
            model_management_pb2.ReloadConfigRequest(config=config), RPC_TIMEOUT)
        assert reply.status.error_code == 0
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        verify_predict(stub, 4.0, model_name="half_plus_three", specify_output=False)
        with pytest.raises(grpc.RpcError) as error:
            verify_predict(stub, 3.0, model_name="saved_model_half_plus_two_2_versions")
        assert error.value.code() == grpc.StatusCode.NOT_FOUND


# ------------------------------------------------------------------ TF2 SavedModels made by the test itself


@pytest.fixture(scope="module")
def tf2_server(start_server, tmp_path_factory):
    """test_tf_saved_model_save, test_tf_saved_model_save_multiple_signatures and
    test_sequential_keras_saved_model_save's models, each as its test saves it, served from one config file."""
    import tensorflow as tf

    root_dir = tmp_path_factory.mktemp("tf2")
    saved = tf.train.Checkpoint()
    saved.v1, saved.v2 = tf.Variable(3.0), tf.Variable(2.0)
    saved.f = tf.function(lambda x: {"y": saved.v1 * saved.v2 * x})
    tf.saved_model.save(saved, str(root_dir / "saved" / "00000123"),
                        saved.f.get_concrete_function(tf.TensorSpec(None, tf.float32)))

    multi = tf.train.Checkpoint()
    multi.f = tf.function(lambda x: {"y": 1.0}, input_signature=[tf.TensorSpec(None, tf.float32)])
    multi.g = tf.function(lambda x: {"y": 2.0}, input_signature=[tf.TensorSpec(None, tf.float32)])
    tf.saved_model.save(multi, str(root_dir / "multi" / "00000123"),
                        signatures={"serving_default": multi.f, "custom_signature_key": multi.g})

    keras = tf.keras.Sequential([tf.keras.layers.Input(dtype="float32", shape=(1,), name="x"),
                                 tf.keras.layers.Lambda(lambda x: x, name="y")])
    keras.export(str(root_dir / "keras" / "00000123"))  # Keras 3's SavedModel export (tf.saved_model.save in Keras 2)

    config = write_model_config(root_dir / "models.conf", {name: root_dir / name for name in ("saved", "multi", "keras")})
    return start_server(f"--model_config_file={config}")


def test_tf_saved_model_save(tf2_server):
    """test_tf_saved_model_save: y = 3 * 2 * x"""
    with grpc_channel(tf2_server) as channel:
        verify_predict(prediction_service_pb2_grpc.PredictionServiceStub(channel), 12.0, model_name="saved",
                       specify_output=False)


def test_tf_saved_model_save_multiple_signatures(tf2_server):
    """test_tf_saved_model_save_multiple_signatures"""
    with grpc_channel(tf2_server) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        verify_predict(stub, 2.0, model_name="multi", signature_name="custom_signature_key")
        verify_predict(stub, 1.0, model_name="multi")


def test_sequential_keras_saved_model_save(tf2_server):
    """test_sequential_keras_saved_model_save (the model's output is named 'output_0' by Keras 3's export, so the
    request asks for every output and reads that one)"""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "keras"
    request.inputs["x"].dtype = types_pb2.DT_FLOAT
    request.inputs["x"].float_val.append(2.0)
    for size in (1, 1):
        request.inputs["x"].tensor_shape.dim.add().size = size
    with grpc_channel(tf2_server) as channel:
        result = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, RPC_TIMEOUT)
    (output,) = result.outputs.values()
    assert output.dtype == types_pb2.DT_FLOAT and list(output.float_val) == [2.0]
    verify_model_spec(result.model_spec, "keras", "serving_default", VERSION)


def test_grpc_only_server_without_rest_port(start_server):
    """--rest_api_port=0 (the binary's default): gRPC only; SIGTERM stops the server cleanly."""
    server = start_server("--model_name=default", f"--model_base_path={HALF_PLUS_TWO}", "--rest_api_port=0",
                          wait=False)
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "default"
    deadline = time.monotonic() + 120
    with grpc_channel(server) as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        while True:
            try:
                statuses = stub.GetModelStatus(request, 5).model_version_status
                if statuses and statuses[0].state == get_model_status_pb2.ModelVersionStatus.AVAILABLE:
                    break
            except grpc.RpcError:
                pass
            assert time.monotonic() < deadline and server.process.poll() is None, server.log()
            time.sleep(0.5)
        verify_predict(prediction_service_pb2_grpc.PredictionServiceStub(channel), 3.0)
    with pytest.raises(httpx.TransportError):
        httpx.get(server.rest_url + "/v1/models/default", timeout=5)
    server.process.terminate()
    assert server.process.wait(timeout=60) == 0, server.log()
