"""``tlserve-model-server``: TF Serving's ``tensorflow_model_server`` command line, served by tlserve.

Takes TF Serving's flags with its spellings, meanings and defaults (``--flag=value``, ``--flag value``, ``-flag``,
booleans as ``--enable_batching`` or ``--enable_batching=true``), and, like TF Serving's Docker image, the
``MODEL_NAME`` / ``MODEL_BASE_PATH`` environment with ports 8500 (gRPC) and 8501 (REST). Flags tlserve cannot honour
are refused with a message that says so; a few that only tune TF Serving's internals are accepted and ignored with a
warning (``IGNORED``). One process: the REST API under uvicorn, gRPC on the same event loop.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.settings import Settings, SettingsError
from tlserve.contract import is_url

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter hides our output

log = logging.getLogger("tlserve.model_server")


class UsageError(Exception):
    """A flag or configuration file that cannot be served: printed as one line, exit status 2 (1 for files)."""


class ConfigFileInvalid(UsageError):
    """A configuration file named by a flag cannot be parsed or used (exit status 1, as TF Serving's)."""


@dataclass(frozen=True)
class Flag:
    kind: type  # bool, int, float or str
    default: object
    help: str


_SETTINGS = {f.name: f for f in dataclasses.fields(Settings)}


def _setting(kind: type, name: str, help: str = "", scale: float = 1) -> Flag:
    """A flag for the same setting as Settings' ``name``, with Settings' default (times ``scale``: ms for s)."""
    field = _SETTINGS[name]
    if field.default is dataclasses.MISSING:  # no default, or a default_factory: nothing to take over
        raise TypeError(f"Settings.{name} has no plain default for a tlserve-model-server flag")
    return Flag(kind, kind(field.default * scale), help or field.metadata["help"])


# TF Serving's flags that tlserve honours, with TF Serving's defaults; where a flag is the same setting as one of
# tlserve's, with the same default, the default is Settings'. A few of tlserve's own settings are flags here too.
FLAGS: dict[str, Flag] = {
    "port": _setting(int, "grpc_port", "gRPC port (0: a free port)"),
    "rest_api_port": Flag(int, 0, "REST API port; 0 disables REST (the Docker image mode uses 8501)"),
    "rest_api_timeout_in_ms": _setting(int, "request_timeout_s", "timeout of a REST (and gRPC without a deadline) "
                                       "request", scale=1000),
    "model_name": Flag(str, "default", "name of the model served with --model_base_path"),
    "model_base_path": Flag(str, "", "directory holding the model's numbered version directories"),
    "model_config_file": Flag(str, "", "a ModelServerConfig text proto; --model_name/--model_base_path are ignored"),
    "model_config_file_poll_wait_seconds": Flag(int, 0, "re-read --model_config_file this often; 0: only at start"),
    "file_system_poll_wait_seconds": Flag(int, 1, "look for new model versions this often; 0: only at start"),
    "enable_batching": Flag(bool, False, "batch requests (parameters from --batching_parameters_file)"),
    "batching_parameters_file": Flag(str, "", "a BatchingParameters text proto"),
    "monitoring_config_file": Flag(str, "", "a MonitoringConfig text proto (Prometheus path)"),
    "enable_model_warmup": Flag(bool, True, "replay assets.extra/tf_serving_warmup_requests at load (always on)"),
    "tensorflow_intra_op_parallelism": _setting(int, "intra_op_threads"),
    "tensorflow_inter_op_parallelism": _setting(int, "inter_op_threads"),
    # tlserve's own (TF Serving binds all addresses and has no drain delay or grace of its own):
    "host": _setting(str, "http_host", "the address both servers bind (TF Serving binds all addresses)"),
    "drain_delay_s": _setting(float, "drain_delay_s"),
    "shutdown_grace_s": _setting(float, "shutdown_grace_s"),
}
# tlserve's own settings that, given as flags, override TLSERVE_* variables (the TF Serving flags always decide)
_TLSERVE_FLAGS = ("drain_delay_s", "shutdown_grace_s")

# Flags that only tune TF Serving's internals: accepted so that existing command lines start, and ignored.
IGNORED = {
    "grpc_channel_arguments": "tlserve's gRPC server uses its own channel options",
    "grpc_max_threads": "tlserve's gRPC server is asynchronous (no thread pool to size)",
    "rest_api_num_threads": "tlserve's REST server is asynchronous (no thread pool to size)",
    "tensorflow_session_parallelism": "use --tensorflow_intra_op_parallelism / --tensorflow_inter_op_parallelism",
    "enable_signature_method_name_check": "tlserve recognises signatures by their structure",
    "allow_version_labels_for_unavailable_models": "labels are checked against the version policy at load",
    "num_load_threads": "versions load in worker threads as they are found",
    "num_unload_threads": "versions unload in the background as they drain",
    "max_num_load_retries": "a failed version is retried when its files change",
    "load_retry_interval_micros": "a failed version is retried when its files change",
    "flush_filesystem_caches": "no effect here",
    "xla_cpu_compilation_enabled": "no effect here",
}

# Flags whose feature tlserve does not have: refused, because silently ignoring them would change behaviour.
REFUSED = {
    "grpc_socket_path": "gRPC over a Unix domain socket is not supported; use --port",
    "ssl_config_file": "TF Serving's SSL config is not supported; terminate TLS in front of tlserve",
    "platform_config_file": "platform configs are not supported; tlserve serves TensorFlow SavedModels",
    "use_tflite_model": "TF Lite models are not supported",
    "prefer_tflite_model": "TF Lite models are not supported",
    "saved_model_tags": "tlserve loads the 'serve' tag set only",
    "per_process_gpu_memory_fraction": "set TLSERVE_GPU_MEMORY_LIMIT_MB (megabytes) instead",
    "enable_profiler": "the TensorFlow profiler service is not supported",
    "rest_api_enable_cors_support": "CORS is not supported; add it in a proxy",
}

DOCKER_MODEL_BASE_PATH = "/models"  # TF Serving's Docker image: MODEL_BASE_PATH=/models, MODEL_NAME=model
DOCKER_MODEL_NAME = "model"
DOCKER_REST_API_PORT = 8501

_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


def parse_flags(argv: list[str]) -> dict[str, object]:
    """TF Serving's flags -> {name: value} for the flags given (defaults are not filled in here)."""
    values: dict[str, object] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if not arg.startswith("-") or arg in ("-", "--"):
            raise UsageError(f"unexpected argument {arg!r}: flags look like --name=value")
        name, equals, raw = arg.lstrip("-").partition("=")
        has_value = bool(equals)
        if name in ("help", "helpfull", "h"):
            raise SystemExit(_usage())
        if name == "version":
            from service.app import server_version

            raise SystemExit(f"TensorFlow ModelServer (tlserve {server_version()})")
        flag = FLAGS.get(name)
        if flag is None and name.startswith("no") and FLAGS.get(name[2:], Flag(str, "", "")).kind is bool:
            name, flag, has_value, raw = name[2:], FLAGS[name[2:]], True, "false"  # --noenable_batching
        if name in REFUSED:
            raise UsageError(f"--{name} is not supported by tlserve-model-server: {REFUSED[name]}")
        if flag is None and name not in IGNORED:
            raise UsageError(f"unknown command line flag {name!r} (see tlserve-model-server --help)")
        if not has_value:
            if flag is not None and flag.kind is bool:
                raw = "true"  # a bare boolean flag turns it on; the next argument is not its value
            elif i < len(argv):
                raw = argv[i]
                i += 1
            else:
                raise UsageError(f"--{name} needs a value")
        if flag is None:
            print(f"tlserve-model-server: ignoring --{name}={raw}: {IGNORED[name]}", file=sys.stderr)
            continue
        values[name] = _convert(name, flag, raw)
    return values


def _convert(name: str, flag: Flag, raw: str) -> object:
    if flag.kind is bool:
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise UsageError(f"--{name}={raw}: expected true or false")
    try:
        return flag.kind(raw)
    except ValueError:
        raise UsageError(f"--{name}={raw}: expected {'an integer' if flag.kind is int else 'a number'}") from None


def _usage() -> str:
    lines = ["usage: tlserve-model-server [--flag=value ...]  (TF Serving's tensorflow_model_server flags)", ""]
    lines += [f"  {f'--{name}={flag.default}':<48} {flag.help}" for name, flag in FLAGS.items()]
    lines += ["", "accepted and ignored: " + ", ".join(f"--{n}" for n in IGNORED),
              "refused: " + ", ".join(f"--{n}" for n in REFUSED),
              "", "With no model flags, MODEL_NAME and MODEL_BASE_PATH (TF Serving's Docker image) choose the model,",
              "and the REST port defaults to 8501."]
    return "\n".join(lines)


def settings_from_flags(values: dict[str, object], environ: dict[str, str]):
    """TF Serving's flags (and Docker environment) -> tlserve ``Settings``; file problems are ``UsageError``."""
    from service.repository.config import ConfigError, load_model_config
    from tlserve.contract import StoreUrlError, split_store_url, valid_model_name
    from tlserve.tfserving_files import ConfigFileError, load_batching_parameters, load_prometheus_path

    def get(name: str) -> Any:  # Any: each flag's value has the type of its Flag.kind
        return values.get(name, FLAGS[name].default)

    docker = not any(name in values for name in ("model_base_path", "model_config_file", "model_name")) and (
        "MODEL_NAME" in environ or "MODEL_BASE_PATH" in environ)
    rest_port = get("rest_api_port")
    changes: dict[str, Any] = {}  # Settings' keyword arguments
    if docker:
        # TF Serving's Docker entrypoint: --model_name=$MODEL_NAME --model_base_path=$MODEL_BASE_PATH/$MODEL_NAME
        name = environ.get("MODEL_NAME", DOCKER_MODEL_NAME)
        docker_base = environ.get("MODEL_BASE_PATH", DOCKER_MODEL_BASE_PATH)
        changes.update(model_name=name, model_base_path=f"{docker_base.rstrip('/')}/{name}" if is_url(docker_base)
                       else Path(docker_base, name))
        rest_port = values.get("rest_api_port", DOCKER_REST_API_PORT)
    elif get("model_config_file"):
        path = Path(get("model_config_file"))
        try:
            load_model_config(path)  # refuse a bad file now, as TF Serving does, not at the first poll
        except ConfigError as exc:
            raise ConfigFileInvalid(f"Error parsing text-format tensorflow.serving.ModelServerConfig: {exc}") from None
        poll = get("model_config_file_poll_wait_seconds")
        changes.update(model_config_file=path, config_poll_interval_s=float(max(poll, 0)))
    elif get("model_base_path"):
        base_path = get("model_base_path")  # a URL stays a string: Path() folds '//'
        changes.update(model_name=get("model_name"), model_base_path=base_path if is_url(base_path)
                       else Path(base_path))
    else:
        raise UsageError("both --model_base_path and --model_config_file are empty: give one (or set MODEL_NAME / "
                         "MODEL_BASE_PATH as TF Serving's Docker image does)")
    if "model_base_path" in changes:
        if is_url(changes["model_base_path"]):
            try:
                split_store_url(changes["model_base_path"])
            except StoreUrlError as exc:
                raise UsageError(f"--model_base_path: {exc}") from None
        if not valid_model_name(str(changes["model_name"])):
            raise UsageError(f"--model_name={changes['model_name']!r} is not a valid model name")

    if not 0 <= rest_port <= 65535:
        raise UsageError(f"--rest_api_port={rest_port} is not a port number")
    changes.update(http_host=get("host"), http_port=rest_port, grpc_port=get("port"),
                   request_timeout_s=get("rest_api_timeout_in_ms") / 1000,
                   poll_interval_s=float(max(get("file_system_poll_wait_seconds"), 0)),
                   intra_op_threads=get("tensorflow_intra_op_parallelism"),
                   inter_op_threads=get("tensorflow_inter_op_parallelism"))
    if not get("enable_model_warmup"):
        print("tlserve-model-server: --enable_model_warmup=false is ignored: warm-up records are always replayed",
              file=sys.stderr)
    try:
        if get("monitoring_config_file"):
            changes["prometheus_path"] = load_prometheus_path(get("monitoring_config_file"))
        changes.update(_batching(get("enable_batching"), get("batching_parameters_file"), load_batching_parameters))
        changes.update({name: values[name] for name in _TLSERVE_FLAGS if name in values})
        # The settings no TF Serving flag decides come from TLSERVE_* variables, as for `tlserve serve`.
        settings = Settings.from_env(environ, **changes)
        settings.allowed_sizes()  # refused now rather than at the first batch
        return settings
    except ConfigFileError as exc:
        raise ConfigFileInvalid(str(exc)) from None
    except SettingsError as exc:
        raise UsageError(str(exc)) from None


def _batching(enabled: bool, parameters_file: str, load) -> dict[str, object]:
    if not enabled:
        if parameters_file:
            print("tlserve-model-server: --batching_parameters_file is ignored without --enable_batching",
                  file=sys.stderr)
        # Requests run as they come: no waiting for a batch to fill (requests that queue behind a running
        # batch may still run together, which changes no answer).
        return {"batch_timeout_ms": 0.0}
    if not parameters_file:
        return {}
    params = load(parameters_file)
    changes: dict[str, object] = {}
    if params.max_batch_size is not None:
        changes["max_batch_size"] = params.max_batch_size
    if params.batch_timeout_micros is not None:
        changes["batch_timeout_ms"] = params.batch_timeout_micros / 1000
    if params.num_batch_threads is not None:
        changes["max_concurrent_batches"] = params.num_batch_threads
    if params.max_enqueued_batches is not None:  # TF Serving counts batches; tlserve's queue counts rows
        changes["max_queue"] = params.max_enqueued_batches * changes.get("max_batch_size", 32)
    if params.allowed_batch_sizes:
        changes["allowed_batch_sizes"] = ",".join(map(str, params.allowed_batch_sizes))
    if params.pad_variable_length_inputs:
        print("tlserve-model-server: pad_variable_length_inputs is not supported: rows of different lengths are "
              "run one by one instead of padded", file=sys.stderr)
    return changes


def build(settings):
    """The runtime and, when the REST port is set, its app. TensorFlow is imported first, for serving (without
    Keras: service/runtime/tf_import.py)."""
    from service.runtime.tf_import import import_tensorflow

    import_tensorflow()
    from service.app import build_runtime, create_app

    runtime = build_runtime(settings)
    return runtime, create_app(settings, runtime=runtime, manage_lifecycle=False) if settings.http_port else None


async def serve(settings) -> None:
    """Run until SIGTERM/SIGINT: REST (when its port is set) and gRPC in this process, through the same lifecycle
    as `tlserve serve` (drain delay, grace, readiness; service/lifecycle.py)."""
    from service.lifecycle import serve as serve_runtime

    runtime, app = build(settings)
    if app is not None:
        print(f"tlserve-model-server: Exporting HTTP/REST API at {settings.http_host}:{settings.http_port}",
              file=sys.stderr, flush=True)
    await serve_runtime(runtime, app)


def check_store(url: str, settings: Settings) -> None:
    """``UsageError`` (one line, no credentials) unless the object store of ``url`` answers and has its bucket."""
    from service.repository.config import ConfigError
    from service.repository.objectstore import ObjectStore

    try:
        ObjectStore(settings.model_cache_dir).check(url)
    except ConfigError as exc:
        raise UsageError(f"--model_base_path {exc}") from None


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = settings_from_flags(parse_flags(sys.argv[1:] if argv is None else argv), dict(os.environ))
    except ConfigFileInvalid as exc:
        print(f"tlserve-model-server: {exc}", file=sys.stderr)
        return 1
    except UsageError as exc:
        print(f"tlserve-model-server: {exc}", file=sys.stderr)
        return 2
    try:
        if is_url(settings.model_base_path):  # a local folder may appear later (TF Serving waits); a store must answer
            check_store(str(settings.model_base_path), settings)
    except UsageError as exc:
        print(f"tlserve-model-server: {exc}", file=sys.stderr)
        return 2
    grpc_note = f"gRPC at {settings.http_host}:{settings.grpc_port}" if settings.grpc_port >= 0 else "no gRPC"
    print(f"tlserve-model-server: {grpc_note}; models from "
          f"{settings.model_config_file or f'{settings.model_name}={settings.model_base_path}'}",
          file=sys.stderr, flush=True)
    from service.lifecycle import run

    run(serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
