"""Which models to serve, and which of their versions: TF Serving's ``ModelServerConfig`` or a plain directory scan.

Pure logic: nothing here touches a SavedModel. The loader pairs each ``ModelSpec`` with ``discovery.scan_versions``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from tlserve.contract import StoreUrlError, is_url, split_store_url, valid_model_name

log = logging.getLogger(__name__)

_POLICY_KINDS = ("latest", "all", "specific")


class ConfigError(ValueError):
    """A model configuration that cannot be served; the message names the file, the problem and the fix."""


@dataclass(frozen=True)
class VersionPolicy:
    """TF Serving's ``model_version_policy``: the ``count`` newest, all, or a fixed list of versions."""

    kind: str = "latest"
    count: int = 1
    versions: tuple[int, ...] = ()

    def __post_init__(self):
        if self.kind not in _POLICY_KINDS:
            raise ValueError(f"version policy kind must be one of {_POLICY_KINDS}, not {self.kind!r}")
        if self.kind == "latest" and self.count < 1:
            raise ValueError(f"a latest policy keeps at least one version, not {self.count}")
        # Normalised so that equal policies compare equal whatever order the config listed them in.
        object.__setattr__(self, "versions", tuple(sorted({int(v) for v in self.versions})))

    def select(self, available: Iterable[int]) -> set[int]:
        """The versions to serve out of ``available``; a ``specific`` version that is absent is simply not selected."""
        available = set(available)
        if self.kind == "latest":
            return set(sorted(available)[-self.count:])
        if self.kind == "all":
            return available
        return available.intersection(self.versions)


@dataclass(frozen=True)
class ModelSpec:
    """One model to serve: its name, where its version directories live (a folder, or an object-store URL such as
    ``s3://bucket/models/name``), its version policy and labels."""

    name: str
    base_path: Path | str
    policy: VersionPolicy = VersionPolicy("latest", 1)
    labels: Mapping[str, int] = field(default_factory=dict, hash=False)

    def __post_init__(self):
        # A URL stays a string: Path() would fold its '//'.
        object.__setattr__(self, "base_path", self.base_path if is_url(self.base_path) else Path(self.base_path))
        # A read-only copy: a spec is shared between the reloader and request handlers.
        object.__setattr__(self, "labels", MappingProxyType({str(k): int(v) for k, v in self.labels.items()}))


def parse_model_config(text: str, *, relative_to: Path | None = None,
                       source: str = "<model config>") -> list[ModelSpec]:
    """Parse a TF Serving ``ModelServerConfig`` text proto into specs, in file order.

    Relative ``base_path`` values are resolved against ``relative_to`` when it is given; ``source`` only names the
    file in error messages. Raises ``ConfigError`` for anything TF Serving would refuse or tlserve cannot serve.
    """
    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise ConfigError(f"{source}: not a valid ModelServerConfig text proto: {exc}. Fix the syntax, e.g. "
                          'model_config_list { config { name: "m" base_path: "/models/m" } }') from exc
    return specs_from_proto(config, relative_to=relative_to, source=source)


def specs_from_proto(config: model_server_config_pb2.ModelServerConfig, *, relative_to: Path | None = None,
                     source: str = "<model config>") -> list[ModelSpec]:
    """Specs from a parsed ``ModelServerConfig`` (a file's, or one sent with ``HandleReloadConfigRequest``)."""
    which = config.WhichOneof("config")
    if which == "custom_model_config":
        raise ConfigError(f"{source}: custom_model_config is not supported; list the models in model_config_list")
    specs: list[ModelSpec] = []
    seen: set[str] = set()
    for index, model in enumerate(config.model_config_list.config):  # empty when no config is set: serve nothing
        spec = _spec_from_proto(model, index, relative_to, source)
        if spec.name in seen:
            raise ConfigError(f"{source}: model {spec.name!r} is configured twice; give each config a unique name")
        seen.add(spec.name)
        specs.append(spec)
    return specs


def load_model_config(path: str | Path) -> list[ModelSpec]:
    """Read and parse a ``ModelServerConfig`` file; relative base paths are taken from the file's own directory."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the model config file ({exc}); "
                          "check the --model-config-file path") from exc
    return parse_model_config(text, relative_to=path.parent, source=str(path))


class ConfigFileSource:
    """The specs of a ``ModelServerConfig`` file, read at the first call and then again at most every
    ``interval_s`` seconds: None re-reads at every call, 0 never again (TF Serving's
    ``--model_config_file_poll_wait_seconds``). A re-read that fails raises, and the next call tries again."""

    def __init__(self, path: str | Path, interval_s: float | None = None):
        self.path, self.interval_s = Path(path), interval_s
        self._specs: list[ModelSpec] | None = None
        self._read_at = 0.0

    def __call__(self) -> list[ModelSpec]:
        now = time.monotonic()
        due = self.interval_s is None or (self.interval_s > 0 and now - self._read_at >= self.interval_s)
        if self._specs is None or due:
            self._specs = load_model_config(self.path)
            self._read_at = now
        return self._specs


def specs_from_repository(root: str | Path,
                          list_folders: Callable[[str], list[str]] | None = None) -> list[ModelSpec]:
    """One spec (latest version) per model directory under ``root``, sorted by name, when there is no config file.

    ``root`` may be an object-store URL; ``list_folders(url)`` then gives the folder names under it.
    Hidden directories and names that cannot be model names are skipped (logged); files are ignored.
    """
    if is_url(root):
        if list_folders is None:
            raise ConfigError(f"{root}: no object store is configured to list this URL")
        url = str(root).rstrip("/")
        return [ModelSpec(name, f"{url}/{name}") for name in _model_names(url, list_folders(url))]
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{root}: model repository does not exist or is not a directory; "
                          "create it or point --model-repo at the directory holding <name>/<version>/")
    names = _model_names(str(root), [e.name for e in root.iterdir() if e.is_dir()])
    return [ModelSpec(name, root / name) for name in names]


class RepositorySource:
    """The specs of a model repository (``specs_from_repository``), read at every call. When an object store
    cannot be listed after a first good listing, the last specs are kept (logged): the models' own listings then
    fail too, and their served versions keep serving with the error in their statuses (manager.py)."""

    def __init__(self, root: str | Path, list_folders: Callable[[str], list[str]] | None = None):
        self.root, self._list_folders = root, list_folders
        self._last: list[ModelSpec] | None = None

    def __call__(self) -> list[ModelSpec]:
        try:
            self._last = specs_from_repository(self.root, self._list_folders)
        except ConfigError as exc:
            if self._last is None or not is_url(self.root):
                raise
            log.warning("%s; serving the models listed before", exc)
        return self._last


def _model_names(root: str, folders: Iterable[str]) -> list[str]:
    """The folder names that are model names, sorted; hidden ones skipped quietly, invalid ones with a warning."""
    names = []
    for name in sorted(folders):
        if name.startswith("."):
            continue
        if not valid_model_name(name):
            log.warning("ignoring %s/%s: %r is not a valid model name", root, name, name)
            continue
        names.append(name)
    return names


def _spec_from_proto(model, index: int, relative_to: Path | None, source: str) -> ModelSpec:
    """One ``ModelConfig`` message -> ``ModelSpec``, with every check that can be made without the file system."""
    where = f"{source}: config #{index + 1}" + (f" ({model.name[:100]!r})" if model.name else "")
    if not valid_model_name(model.name):
        raise ConfigError(f"{where}: name {model.name[:100]!r} is not a valid model name; use up to 255 letters, "
                          "digits, '_', '.' and '-', starting with a letter or digit (no '/', no '..')")
    if not model.base_path:
        raise ConfigError(f"{where}: base_path is missing; set it to the directory holding the version directories")
    if is_url(model.base_path):
        # TF Serving reads gs:// or s3:// through TF's file systems; tlserve through fsspec (objectstore.py).
        try:
            split_store_url(model.base_path)
        except StoreUrlError as exc:
            raise ConfigError(f"{where}: base_path: {exc}") from None
    if model.model_platform not in ("", "tensorflow"):
        raise ConfigError(f"{where}: model_platform {model.model_platform!r} is not supported; "
                          'use "tensorflow" or leave it out')
    if model.model_type == model_server_config_pb2.OTHER:
        raise ConfigError(f"{where}: model_type OTHER is not supported; remove model_type (it is deprecated)")
    base_path: Path | str = model.base_path if is_url(model.base_path) else Path(model.base_path)
    if relative_to is not None and isinstance(base_path, Path) and not base_path.is_absolute():
        base_path = Path(relative_to) / base_path
    policy = _policy_from_proto(model.model_version_policy, where)
    labels = dict(model.version_labels)
    for label, version in labels.items():
        if not label:
            raise ConfigError(f"{where}: a version label has an empty name; give every label a name")
        if not valid_model_name(label):
            raise ConfigError(f"{where}: {label[:100]!r} is not a valid version label; use up to 255 letters, "
                              "digits, '_', '.' and '-', starting with a letter or digit")
        if version < 0:
            raise ConfigError(f"{where}: label {label!r} points at version {version}; versions are not negative")
        # TF Serving refuses a label for a version it will not load. Under latest/all that depends on which
        # directories exist at run time, so only a specific policy can be checked here.
        if policy.kind == "specific" and version not in policy.versions:
            raise ConfigError(f"{where}: label {label!r} points at version {version}, which the specific version "
                              f"policy {list(policy.versions)} never loads; add it to the policy or fix the label")
    return ModelSpec(model.name, base_path, policy, labels)


def _policy_from_proto(proto, where: str) -> VersionPolicy:
    """``ServableVersionPolicy`` -> ``VersionPolicy``; no policy at all means TF Serving's default, the latest one."""
    choice = proto.WhichOneof("policy_choice")
    if choice == "all":
        return VersionPolicy("all")
    if choice == "specific":
        versions = tuple(proto.specific.versions)
        if not versions:
            raise ConfigError(f"{where}: the specific version policy lists no versions; add versions: N lines "
                              "or use latest {}")
        if any(v < 0 for v in versions):
            raise ConfigError(f"{where}: the specific version policy lists a negative version {list(versions)}; "
                              "version numbers are the non-negative integer directory names")
        return VersionPolicy("specific", versions=versions)
    # latest {} or latest { num_versions: 0 } means one, as in TF Serving.
    count = proto.latest.num_versions if choice == "latest" else 0
    return VersionPolicy("latest", max(count, 1))
