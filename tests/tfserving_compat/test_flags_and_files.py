"""tlserve-model-server's command line and TF Serving's configuration files, without starting a server."""

from __future__ import annotations

import pytest

from service.repository.config import ConfigFileSource
from tests.conftest import TESTDATA
from tests.tfserving_compat.conftest import HALF_PLUS_TWO, write_model_config
from tlserve.model_server import ConfigFileInvalid, UsageError, parse_flags, settings_from_flags
from tlserve.tfserving_files import ConfigFileError, parse_batching_parameters, parse_prometheus_path


@pytest.mark.parametrize("argv", [
    ["--port=9000", "--enable_batching", "--model_name=m"],
    ["--port", "9000", "--enable_batching=true", "--model_name", "m"],
    ["-port=9000", "-enable_batching", "-model_name", "m"],
])
def test_flag_spellings(argv):
    assert parse_flags(argv) == {"port": 9000, "enable_batching": True, "model_name": "m"}


def test_booleans_and_negation():
    assert parse_flags(["--enable_batching=false"]) == {"enable_batching": False}
    assert parse_flags(["--noenable_batching"]) == {"enable_batching": False}
    # A bare boolean never takes the next argument as its value.
    assert parse_flags(["--enable_batching", "--port=1"]) == {"enable_batching": True, "port": 1}
    with pytest.raises(UsageError, match="expected true or false"):
        parse_flags(["--enable_batching=maybe"])


def test_unknown_refused_and_ignored_flags(capsys):
    with pytest.raises(UsageError, match="unknown command line flag 'no_such_flag'"):
        parse_flags(["--no_such_flag=1"])
    with pytest.raises(UsageError, match="--grpc_socket_path is not supported.*Unix domain socket"):
        parse_flags(["--grpc_socket_path=/tmp/s"])
    with pytest.raises(UsageError, match="--port=abc: expected an integer"):
        parse_flags(["--port=abc"])
    with pytest.raises(UsageError, match="--model_name needs a value"):
        parse_flags(["--model_name"])
    assert parse_flags(["--grpc_channel_arguments=grpc.max_connection_age_ms=2000"]) == {}
    assert "ignoring --grpc_channel_arguments" in capsys.readouterr().err


def test_single_model_settings_use_tf_serving_defaults():
    settings = settings_from_flags(parse_flags([f"--model_base_path={HALF_PLUS_TWO}"]), {})
    assert (settings.model_name, settings.model_base_path) == ("default", HALF_PLUS_TWO)
    assert (settings.grpc_port, settings.http_port) == (8500, 0)  # the binary's defaults: REST off
    assert settings.request_timeout_s == 30.0 and settings.poll_interval_s == 1.0
    assert settings.batch_timeout_ms == 0.0  # no --enable_batching: nothing waits for a batch to fill


def test_docker_image_environment():
    settings = settings_from_flags({}, {"MODEL_NAME": "digits", "MODEL_BASE_PATH": "/srv/models"})
    assert (settings.model_name, str(settings.model_base_path)) == ("digits", "/srv/models/digits")
    assert (settings.grpc_port, settings.http_port) == (8500, 8501)
    settings = settings_from_flags({}, {"MODEL_NAME": "m"})
    assert str(settings.model_base_path) == "/models/m"


def test_no_model_and_url_base_paths_are_refused():
    with pytest.raises(UsageError, match="both --model_base_path and --model_config_file are empty"):
        settings_from_flags({}, {})
    with pytest.raises(UsageError, match="hdfs:// is not supported"):
        settings_from_flags({"model_base_path": "hdfs://namenode/m"}, {})
    with pytest.raises(UsageError, match="must not hold credentials") as caught:
        settings_from_flags({"model_base_path": "s3://AKIA:hunter2@bucket/m"}, {})
    assert "hunter2" not in str(caught.value)


def test_object_store_base_paths_stay_urls():
    settings = settings_from_flags({"model_base_path": "gs://bucket/m"}, {})
    assert settings.model_base_path == "gs://bucket/m"  # Path() would have folded it to gs:/bucket/m
    docker = settings_from_flags({}, {"MODEL_NAME": "m", "MODEL_BASE_PATH": "s3://bucket/models/"})
    assert docker.model_base_path == "s3://bucket/models/m"


def test_batching_parameters_file_maps_onto_settings():
    flags = parse_flags([f"--model_base_path={HALF_PLUS_TWO}", "--enable_batching",
                         f"--batching_parameters_file={TESTDATA / 'batching_config.txt'}"])
    settings = settings_from_flags(flags, {})
    assert (settings.max_batch_size, settings.batch_timeout_ms, settings.max_concurrent_batches) == (128, 0.0, 8)
    assert settings.max_queue == 1_000_000 * 128  # TF Serving's limit counts batches, tlserve's rows


def test_batching_parameters_text_format():
    params = parse_batching_parameters("# comment\nmax_batch_size { value: 8 }\nbatch_timeout_micros { value: 500 }\n"
                                       "allowed_batch_sizes: 2\nallowed_batch_sizes: 8\npad_variable_length_inputs: true")
    assert (params.max_batch_size, params.batch_timeout_micros, params.allowed_batch_sizes,
            params.pad_variable_length_inputs) == (8, 500, (2, 8), True)
    with pytest.raises(ConfigFileError, match='no field named "thread_pool_name".*tlserve supports max_batch_size'):
        parse_batching_parameters('thread_pool_name { value: "x" }')
    with pytest.raises(ConfigFileError, match="max_batch_size must be >= 1"):
        parse_batching_parameters("max_batch_size { value: 0 }")


def test_allowed_batch_sizes_must_end_at_max_batch_size(tmp_path):
    path = tmp_path / "batching.txt"
    path.write_text("max_batch_size { value: 8 } allowed_batch_sizes: 2 allowed_batch_sizes: 4")
    with pytest.raises(UsageError, match="allowed_batch_sizes '2,4' must increase and end at max_batch_size"):
        settings_from_flags({"model_base_path": str(HALF_PLUS_TWO), "enable_batching": True,
                             "batching_parameters_file": str(path)}, {})


def test_monitoring_config():
    assert parse_prometheus_path((TESTDATA / "monitoring_config.txt").read_text()) == "/monitoring/prometheus/metrics"
    assert parse_prometheus_path("prometheus_config { enable: true }") == "/monitoring/prometheus/metrics"
    assert parse_prometheus_path("prometheus_config { enable: false, path: '/x' }") == ""
    with pytest.raises(ConfigFileError, match="error parsing text-format tensorflow.serving.MonitoringConfig"):
        parse_prometheus_path("prometheus { }")


def test_bad_files_named_by_flags_are_config_errors(tmp_path):
    with pytest.raises(ConfigFileInvalid, match="Error parsing text-format tensorflow.serving.ModelServerConfig"):
        settings_from_flags({"model_config_file": str(TESTDATA / "bad_model_config.txt")}, {})
    with pytest.raises(ConfigFileInvalid, match="cannot read the file"):
        settings_from_flags({"model_base_path": str(HALF_PLUS_TWO), "monitoring_config_file": str(tmp_path / "no")},
                            {})


def test_config_file_source_polls_only_as_asked(tmp_path):
    path = write_model_config(tmp_path / "models.conf", {"a": HALF_PLUS_TWO})
    once, every = ConfigFileSource(path, 0), ConfigFileSource(path)
    assert [s.name for s in once()] == [s.name for s in every()] == ["a"]
    write_model_config(path, {"b": HALF_PLUS_TWO})
    assert [s.name for s in once()] == ["a"]  # 0: read at start only, as TF Serving's default
    assert [s.name for s in every()] == ["b"]


def test_lifecycle_settings_from_tlserve_flags_then_tlserve_env_then_settings_defaults():
    from service.settings import Settings

    base = [f"--model_base_path={HALF_PLUS_TWO}"]
    settings = settings_from_flags(parse_flags(base), {})
    assert (settings.drain_delay_s, settings.shutdown_grace_s) == (Settings().drain_delay_s,
                                                                  Settings().shutdown_grace_s)
    env = {"TLSERVE_DRAIN_DELAY_S": "7", "TLSERVE_SHUTDOWN_GRACE_S": "9", "TLSERVE_GRPC_PORT": "1"}
    settings = settings_from_flags(parse_flags(base), env)
    assert (settings.drain_delay_s, settings.shutdown_grace_s) == (7.0, 9.0)
    assert settings.grpc_port == 8500  # a TF Serving flag (given or not) decides its own setting
    settings = settings_from_flags(parse_flags([*base, "--drain_delay_s=0.5", "--shutdown_grace_s=2"]), env)
    assert (settings.drain_delay_s, settings.shutdown_grace_s) == (0.5, 2.0)


def test_flags_that_are_settings_take_their_defaults_from_settings():
    from service.settings import Settings

    from tlserve.model_server import FLAGS

    defaults = Settings()
    assert FLAGS["port"].default == defaults.grpc_port
    assert FLAGS["host"].default == defaults.http_host
    assert FLAGS["rest_api_timeout_in_ms"].default == int(defaults.request_timeout_s * 1000)
    assert FLAGS["drain_delay_s"].default == defaults.drain_delay_s
    assert FLAGS["shutdown_grace_s"].default == defaults.shutdown_grace_s


def test_a_flag_for_a_settings_field_without_a_plain_default_is_refused(monkeypatch):
    import dataclasses

    from tlserve import model_server

    monkeypatch.setitem(model_server._SETTINGS, "no_default", dataclasses.field())  # as a default_factory field
    with pytest.raises(TypeError, match="Settings.no_default has no plain default"):
        model_server._setting(int, "no_default", "help")
