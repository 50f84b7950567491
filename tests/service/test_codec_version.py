"""The one version parser (service/codec/version.py): a version that cannot exist is unknown on every wire."""

from __future__ import annotations

import grpc
import pytest

from service.codec.version import parse_version
from service.core.errors import NotFound
from service.transport.grpc.protos.inference import grpc_service_pb2 as pb
from service.transport.http import common
from tests.service.servicer_calls import v2_failure


@pytest.mark.parametrize("raw, number", [(None, None), ("", None), ("1", 1), ("00000123", 123), ("0", 0),
                                         ("000", 0), (str(2**63 - 1), 2**63 - 1), ("0" * 5000 + "7", 7)])
def test_numbers(raw, number):
    assert parse_version(raw) == number


@pytest.mark.parametrize("raw", ["abc", "-1", "+1", "1.5", "1e3", " 1", "1 ", "\u00b2", "\u0661", "0x10",
                                 str(2**63), "9" * 5000])
def test_what_cannot_be_a_version_is_not_found(raw):
    with pytest.raises(NotFound, match="^version '.*' not found"):
        parse_version(raw)


def test_the_message_echoes_a_bounded_version():
    with pytest.raises(NotFound) as err:
        parse_version("x" * 10_000)
    assert len(err.value.message) < 120 and "xxx..." in err.value.message


# -------------------------------------------- one answer on every transport (issue 13: gRPC V2 said INVALID_ARGUMENT)

GRPC_VERSION_REQUESTS = {"ModelReady": lambda raw: pb.ModelReadyRequest(name="m", version=raw),
                         "ModelMetadata": lambda raw: pb.ModelMetadataRequest(name="m", version=raw),
                         "ModelInfer": lambda raw: pb.ModelInferRequest(model_name="m", model_version=raw)}


@pytest.mark.parametrize("raw", ["abc", "-1", "1.5", "\u00b2", " 1"])
def test_a_version_that_cannot_exist_is_not_found_over_http(raw):
    assert common.parse_version is parse_version  # what the routes import
    with pytest.raises(NotFound, match=f"version '{raw}' not found"):
        common.parse_version(raw)


@pytest.mark.parametrize("raw", ["abc", "-1", "1.5", "\u00b2", " 1"])
@pytest.mark.parametrize("method", GRPC_VERSION_REQUESTS)
def test_a_version_that_cannot_exist_is_not_found_over_grpc_v2(method, raw):
    code, details = v2_failure(method, GRPC_VERSION_REQUESTS[method](raw))
    assert code == grpc.StatusCode.NOT_FOUND, (code, details)
    assert f"version '{raw}' not found" in details
