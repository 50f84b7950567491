"""TF Serving's batching parameters and monitoring config files (text protos), read into plain values.

The ``tensorflow-serving-api`` wheel ships neither ``session_bundle_config.proto`` (``BatchingParameters``) nor
``monitoring_config.proto``, so both messages are declared here (the fields tlserve can honour, under TF Serving's
names and types) and the files are parsed by protobuf's own text-format parser: comments, ``{ value: N }`` wrappers
and the rest of the syntax behave as in TF Serving, and a field tlserve does not know is refused by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, text_format, wrappers_pb2
from google.protobuf.message_factory import GetMessageClass

DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"  # TF Serving's default when the config names none


class ConfigFileError(ValueError):
    """A configuration file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class BatchingParameters:
    max_batch_size: int | None = None
    batch_timeout_micros: int | None = None
    max_enqueued_batches: int | None = None
    num_batch_threads: int | None = None
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False


def _declare_messages():
    """``tensorflow.serving.BatchingParameters`` and ``MonitoringConfig``, declared at run time (see the docstring)."""
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    file = descriptor_pb2.FileDescriptorProto(name="tlserve/tfserving_files.proto", package="tensorflow.serving",
                                              syntax="proto3", dependency=["google/protobuf/wrappers.proto"])
    F = descriptor_pb2.FieldDescriptorProto
    batching = file.message_type.add(name="BatchingParameters")
    for number, name in enumerate(("max_batch_size", "batch_timeout_micros", "max_enqueued_batches",
                                   "num_batch_threads"), start=1):
        batching.field.add(name=name, number=number, type=F.TYPE_MESSAGE, type_name=".google.protobuf.Int64Value",
                           label=F.LABEL_OPTIONAL)
    batching.field.add(name="allowed_batch_sizes", number=6, type=F.TYPE_INT64, label=F.LABEL_REPEATED)
    batching.field.add(name="pad_variable_length_inputs", number=7, type=F.TYPE_BOOL, label=F.LABEL_OPTIONAL)
    prometheus = file.message_type.add(name="PrometheusConfig")
    prometheus.field.add(name="enable", number=1, type=F.TYPE_BOOL, label=F.LABEL_OPTIONAL)
    prometheus.field.add(name="path", number=2, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    monitoring = file.message_type.add(name="MonitoringConfig")
    monitoring.field.add(name="prometheus_config", number=1, type=F.TYPE_MESSAGE,
                         type_name=".tensorflow.serving.PrometheusConfig", label=F.LABEL_OPTIONAL)
    pool.Add(file)
    return tuple(GetMessageClass(pool.FindMessageTypeByName(f"tensorflow.serving.{name}"))
                 for name in ("BatchingParameters", "MonitoringConfig"))


_BatchingMessage, _MonitoringMessage = _declare_messages()


def _read(path: Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigFileError(f"{path}: cannot read the file ({exc})") from None


def parse_batching_parameters(text: str, source: str = "<batching parameters>") -> BatchingParameters:
    """A ``BatchingParameters`` text proto; fields tlserve does not know are refused by name."""
    message = _BatchingMessage()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as exc:
        names = ", ".join(f.name for f in message.DESCRIPTOR.fields)
        raise ConfigFileError(f"{source}: error parsing text-format tensorflow.serving.BatchingParameters: {exc} "
                              f"(tlserve supports {names})") from None

    def wrapped(name: str) -> int | None:
        return getattr(message, name).value if message.HasField(name) else None

    params = BatchingParameters(wrapped("max_batch_size"), wrapped("batch_timeout_micros"),
                                wrapped("max_enqueued_batches"), wrapped("num_batch_threads"),
                                tuple(message.allowed_batch_sizes), message.pad_variable_length_inputs)
    for name in ("max_batch_size", "max_enqueued_batches", "num_batch_threads"):
        value = getattr(params, name)
        if value is not None and value < 1:
            raise ConfigFileError(f"{source}: {name} must be >= 1, got {value}")
    if params.batch_timeout_micros is not None and params.batch_timeout_micros < 0:
        raise ConfigFileError(f"{source}: batch_timeout_micros must be >= 0, got {params.batch_timeout_micros}")
    return params


def load_batching_parameters(path: str | Path) -> BatchingParameters:
    return parse_batching_parameters(_read(Path(path)), str(path))


def parse_prometheus_path(text: str, source: str = "<monitoring config>") -> str:
    """The path Prometheus metrics are served at per a ``MonitoringConfig`` text proto; "" when not enabled."""
    config = _MonitoringMessage()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise ConfigFileError(f"{source}: error parsing text-format tensorflow.serving.MonitoringConfig: {exc}") \
            from None
    prometheus = config.prometheus_config
    if not prometheus.enable:
        return ""
    path = prometheus.path or DEFAULT_PROMETHEUS_PATH
    if not path.startswith("/"):
        raise ConfigFileError(f"{source}: prometheus_config.path {path!r} must start with '/'")
    return path


def load_prometheus_path(path: str | Path) -> str:
    return parse_prometheus_path(_read(Path(path)), str(path))
