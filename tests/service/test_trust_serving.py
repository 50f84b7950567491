"""The serving half of issue 16 through real servers: ``confident`` per image on ``POST /classify`` (JSON and
multipart) and the gRPC Classifier, the same answer on each; and ``:explain`` (KServe's V1 verb) with Grad-CAM
heatmaps. An export without the metadata's "unknown" (from before issue 16) answers confident, never an error."""

from __future__ import annotations

import base64
import io
import json

import grpc
import httpx
import numpy as np
import pytest
import tensorflow as tf

from service.codec.b64 import encode_b64
from service.settings import Settings
from service.transport.grpc.protos.tlserve.classifier.v1 import classifier_pb2, classifier_pb2_grpc
from tests.service.conftest import copy_version, start_server
from tlserve.cli import main, prediction_lines
from tlserve.contract import METADATA_FILE, METADATA_UNKNOWN, UNKNOWN_SCORE_OUTPUT, UNKNOWN_THRESHOLD

LOW, HIGH = -1e30, 1e30  # below and above any unknown score
EXPLAIN_LIMIT = 5  # the server's max_explain_images (default 16); the tests below explain up to the 5 images


@pytest.fixture(scope="module")
def trust_repo(tiny_export, tmp_path_factory):
    """'shapes' (the tiny export) and 'old_shapes' (the same with its metadata's "unknown" removed)."""
    root = tmp_path_factory.mktemp("trust-repo")
    copy_version(tiny_export[0], root / "shapes", "1")
    old = copy_version(tiny_export[0], root / "old_shapes", "1")
    meta = json.loads((old / METADATA_FILE).read_text())
    meta.pop(METADATA_UNKNOWN)
    (old / METADATA_FILE).write_text(json.dumps(meta))
    return root


@pytest.fixture(scope="module")
def server(trust_repo):
    running = start_server(Settings(model_repo=trust_repo, poll_interval_s=0.5, max_batch_size=8, batch_timeout_ms=5,
                                    max_body_mb=2, max_explain_images=EXPLAIN_LIMIT))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def direct(tiny_export, images):
    """The export's own unknown scores and threshold for ``images``, and its top class per image."""
    loaded = tf.saved_model.load(str(tiny_export[0]))
    out = loaded.signatures["serving_default"](images=tf.constant(images))
    meta = json.loads((tiny_export[0] / METADATA_FILE).read_text())
    return (out[UNKNOWN_SCORE_OUTPUT].numpy(), float(meta[METADATA_UNKNOWN][UNKNOWN_THRESHOLD]),
            out["scores"].numpy().argmax(axis=1))


def _json(client, images, model="shapes", **extra) -> httpx.Response:
    return client.post("/classify", json={"model": model, "images": [encode_b64(i) for i in images], **extra})


def _form(client, images, model="shapes", **fields) -> httpx.Response:
    return client.post("/classify", data={"model": model, **{k: str(v) for k, v in fields.items()}},
                       files=[("images", (f"{i}.png", data, "image/png")) for i, data in enumerate(images)])


def _grpc(channel, images, model="shapes", **fields):
    stub = classifier_pb2_grpc.ClassifierStub(channel)
    return stub.Classify(classifier_pb2.ClassifyRequest(model=model, images=images, **fields), timeout=60)


def _answers(client, channel, images, model="shapes", **fields) -> dict[str, list[bool]]:
    answers = {}
    for name, response in (("json", _json(client, images, model, **fields)),
                           ("form", _form(client, images, model, **fields))):
        assert response.status_code == 200, (name, response.text)
        body = response.json()
        assert len(body["confident"]) == len(body["predictions"]) == len(images), name
        answers[name] = body["confident"]
    answers["grpc"] = [r.confident for r in _grpc(channel, images, model, **fields).results]
    return answers


# -- confident -------------------------------------------------------------------------------------------------
def test_confident_is_the_exports_own_rule_and_the_same_on_json_multipart_and_grpc(client, channel, images, direct):
    scores, threshold, _ = direct
    expected = [bool(s <= threshold) for s in scores]
    assert any(expected), "the tiny model rejects every known test image: the test proves nothing"
    answers = _answers(client, channel, images)
    assert answers == {"json": expected, "form": expected, "grpc": expected}


def test_a_known_image_is_confident(client, channel, images, direct):
    scores, _, _ = direct
    best = images[int(np.argmin(scores))]  # the test image most like the training classes
    assert _answers(client, channel, [best]) == {"json": [True], "form": [True], "grpc": [True]}


def test_a_threshold_below_the_score_makes_every_image_not_confident(client, channel, images):
    answers = _answers(client, channel, images, unknown_threshold=LOW)
    assert answers == {name: [False] * len(images) for name in ("json", "form", "grpc")}


def test_a_threshold_above_the_score_makes_every_image_confident(client, channel, images):
    answers = _answers(client, channel, images, unknown_threshold=HIGH)
    assert answers == {name: [True] * len(images) for name in ("json", "form", "grpc")}


def test_an_export_without_unknown_metadata_answers_confident_never_an_error(client, channel, images):
    answers = _answers(client, channel, images, model="old_shapes")
    assert answers == {name: [True] * len(images) for name in ("json", "form", "grpc")}


def test_tlserve_predict_shows_confident_per_image_over_http_and_grpc(server, images, direct, tmp_path, capsys):
    scores, threshold, _ = direct
    paths = []
    for i, data in enumerate(images):
        paths.append(tmp_path / f"{i}.png")
        paths[-1].write_bytes(data)
    expected = [f"{p}: {'confident' if s <= threshold else 'unknown'}" for p, s in zip(paths, scores, strict=True)]
    for transport in (["--url", server.url], ["--grpc", server.grpc_target]):
        assert main(["predict", *map(str, paths), "--model", "shapes", "--top-k", "1", *transport]) == 0
        assert capsys.readouterr().out.splitlines()[::2] == expected, transport


def test_tlserve_predict_shows_no_word_when_the_server_answers_no_confident():
    old = {"model": "m", "version": "1", "predictions": [[{"label": "cat", "score": 0.5}]]}  # before issue 16
    assert prediction_lines(["a.png"], old) == ["a.png:", "  cat 0.5000"]
    assert prediction_lines(["a.png"], {**old, "confident": [False]}) == ["a.png: unknown", "  cat 0.5000"]


@pytest.mark.parametrize("raw", ["abc", True, None, [1], "NaN", float("inf")])
def test_a_threshold_that_is_not_a_finite_number_is_a_400_in_json(client, images, raw):
    body = json.dumps({"model": "shapes", "images": [encode_b64(images[0])], "unknown_threshold": raw})
    response = client.post("/classify", content=body, headers={"content-type": "application/json"})
    if raw is None:  # JSON null: no threshold given, the export's own
        assert response.status_code == 200, response.text
        return
    assert response.status_code == 400, response.text
    assert "unknown_threshold" in response.json()["error"]


@pytest.mark.parametrize("raw", ["abc", "nan", "inf", "-inf", "1e999"])
def test_a_threshold_that_is_not_a_finite_number_is_a_400_in_a_form(client, images, raw):
    response = _form(client, images[:1], unknown_threshold=raw)
    assert response.status_code == 400, response.text
    assert "unknown_threshold" in response.json()["error"]


@pytest.mark.parametrize("raw", [float("nan"), float("inf"), float("-inf")])
def test_a_threshold_that_is_not_a_finite_number_is_invalid_argument_over_grpc(channel, images, raw):
    with pytest.raises(grpc.RpcError) as caught:
        _grpc(channel, images[:1], unknown_threshold=raw)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown_threshold" in caught.value.details()


def test_tfserving_predict_keeps_its_output_names_with_unknown_score_as_one_more(client, images):
    response = client.post("/v1/models/shapes:predict", json={"instances": [{"b64": encode_b64(images[0])}]})
    assert response.status_code == 200, response.text
    assert set(response.json()["predictions"][0]) == {"scores", "classes", UNKNOWN_SCORE_OUTPUT}



# -- :explain (KServe's V1 verb) -------------------------------------------------------------------------------
def _explain(client, instances, model="shapes") -> httpx.Response:
    return client.post(f"/v1/models/{model}:explain", json={"instances": instances})


def test_explain_answers_a_heatmap_at_the_input_size_for_the_top_class_of_classify(client, images):
    response = _explain(client, [{"b64": encode_b64(i)} for i in images])
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    top = [row[0]["label"] for row in _json(client, images, top_k=1).json()["predictions"]]
    assert [p["label"] for p in predictions] == top
    for p in predictions:
        heatmap = np.asarray(p["heatmap"], np.float32)
        assert heatmap.shape == (32, 32)
        assert heatmap.min() >= 0 and heatmap.max() <= 1
        assert 0 <= p["score"] <= 1


def test_explain_takes_a_class_index_per_instance(client, images, direct):
    _, _, top = direct
    asked = [(int(top[0]) + 1) % 3, -1]
    response = _explain(client, [{"images": {"b64": encode_b64(images[0])}, "class_index": asked[0]},
                                 {"images": {"b64": encode_b64(images[1])}}])
    assert response.status_code == 200, response.text
    assert [p["class"] for p in response.json()["predictions"]] == [asked[0], int(top[1])]


def test_explain_answers_the_same_class_and_score_as_tfserving_predict_on_the_explain_signature(client, images):
    explained = _explain(client, [{"b64": encode_b64(images[0])}]).json()["predictions"][0]
    direct = client.post("/v1/models/shapes:predict", json={
        "signature_name": "explain", "instances": [{"images": {"b64": encode_b64(images[0])}, "class_index": -1}]})
    assert direct.status_code == 200, direct.text
    row = direct.json()["predictions"][0]
    assert explained["class"] == row["class_index"]
    assert explained["score"] == pytest.approx(row["score"], abs=1e-6)
    np.testing.assert_allclose(explained["heatmap"], row["heatmap"], atol=1e-6)


@pytest.mark.parametrize("body", [{"instances": []}, {"instances": "x"}, {}, {"instances": [{"b64": "***"}]},
                                  {"instances": [{"images": {"b64": "aGk="}, "class_index": "1"}]},
                                  {"instances": [{"images": {"b64": "aGk="}, "class_index": True}]},
                                  {"instances": [{"images": {"b64": "aGk="}, "other": 1}]},
                                  {"instances": [[1, 2]]}])
def test_explain_refuses_a_malformed_body_with_400(client, body):
    response = client.post("/v1/models/shapes:explain", json=body)
    assert response.status_code == 400, response.text
    assert "error" in response.json()


@pytest.mark.parametrize("class_index", [3, -2, 2**40])
def test_explain_refuses_a_class_index_the_model_does_not_have_with_400(client, images, class_index):
    response = _explain(client, [{"images": {"b64": encode_b64(images[0])}, "class_index": class_index}])
    assert response.status_code == 400, response.text


def test_explain_takes_up_to_the_max_explain_images_setting_and_refuses_more(client, channel, images):
    at_limit = [{"b64": encode_b64(images[0])}] * EXPLAIN_LIMIT
    assert _explain(client, at_limit).status_code == 200
    response = _explain(client, at_limit + at_limit[:1])
    assert response.status_code == 400, response.text
    assert f"at most {EXPLAIN_LIMIT} images" in response.json()["error"]
    with pytest.raises(grpc.RpcError) as refused:
        classifier_pb2_grpc.ClassifierStub(channel).Explain(
            classifier_pb2.ExplainRequest(model="shapes", images=[images[0]] * (EXPLAIN_LIMIT + 1)), timeout=60)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_explain_checks_image_headers_before_the_graph_decodes_on_explain_and_on_predict(client):
    bad = {"b64": encode_b64(b"not an image at all")}
    for response in (_explain(client, [bad]),
                     client.post("/v1/models/shapes:predict", json={
                         "signature_name": "explain", "instances": [{"images": bad, "class_index": -1}]})):
        assert response.status_code == 400, response.text
        assert "image 0: not an image" in response.json()["error"]  # the header check's words, not TensorFlow's


def test_explain_of_an_unknown_model_is_404(client, images):
    assert _explain(client, [{"b64": encode_b64(images[0])}], model="nope").status_code == 404


# -- POST /explain (the friendly API) ----------------------------------------------------------------------------
def test_friendly_explain_answers_a_png_overlay_at_the_input_size_per_image(client, images):
    from PIL import Image

    response = client.post("/explain", json={"model": "shapes", "images": [encode_b64(i) for i in images]})
    assert response.status_code == 200, response.text
    body = response.json()
    top = [row[0]["label"] for row in _json(client, images, top_k=1).json()["predictions"]]
    assert body["model"] == "shapes" and body["version"] == "1"
    assert [e["label"] for e in body["explanations"]] == top
    for e in body["explanations"]:
        overlay = Image.open(io.BytesIO(base64.b64decode(e["overlay"])))
        assert overlay.format == "PNG" and overlay.size == (32, 32) and overlay.mode == "RGB"
        assert 0 <= e["score"] <= 1


def test_friendly_explain_takes_one_class_index_for_all_images_or_one_per_image(client, images):
    one = client.post("/explain", json={"model": "shapes", "images": [encode_b64(i) for i in images[:2]],
                                        "class_index": 1})
    assert [e["class"] for e in one.json()["explanations"]] == [1, 1], one.text
    each = client.post("/explain", json={"model": "shapes", "images": [encode_b64(i) for i in images[:2]],
                                         "class_index": [2, 0]})
    assert [e["class"] for e in each.json()["explanations"]] == [2, 0], each.text


@pytest.mark.parametrize("body", [{"model": "shapes"}, {"model": "shapes", "images": []},
                                  {"model": "shapes", "images": ["aGk="], "class_index": "1"},
                                  {"model": "shapes", "images": ["aGk="], "class_index": [1, 2]},
                                  {"model": 3, "images": ["aGk="]}])
def test_friendly_explain_refuses_a_malformed_body_with_400(client, body):
    response = client.post("/explain", json=body)
    assert response.status_code == 400, response.text


# -- gRPC Classifier.Explain -----------------------------------------------------------------------------------------
def test_grpc_explain_answers_what_http_explain_answers(client, channel, images):
    stub = classifier_pb2_grpc.ClassifierStub(channel)
    response = stub.Explain(classifier_pb2.ExplainRequest(model="shapes", images=images[:3], class_index=[-1, 1, -1]),
                            timeout=60)
    http = _explain(client, [{"images": {"b64": encode_b64(image)}, "class_index": c}
                             for image, c in zip(images[:3], [-1, 1, -1], strict=True)]).json()["predictions"]
    assert response.model == "shapes" and response.version == 1
    assert [(r.label, r.index) for r in response.results] == [(p["label"], p["class"]) for p in http]
    for result, p in zip(response.results, http, strict=True):
        assert (result.height, result.width) == (32, 32)
        np.testing.assert_allclose(np.reshape(result.heatmap, (32, 32)), p["heatmap"], atol=1e-6)
        assert result.score == pytest.approx(p["score"], abs=1e-6)


@pytest.mark.parametrize("fields", [{"images": []}, {"class_index": [1, 2]}, {"class_index": [7]}])
def test_grpc_explain_refuses_bad_requests_with_invalid_argument(channel, images, fields):
    stub = classifier_pb2_grpc.ClassifierStub(channel)
    with pytest.raises(grpc.RpcError) as caught:
        stub.Explain(classifier_pb2.ExplainRequest(**{"model": "shapes", "images": images[:1], **fields}), timeout=60)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
