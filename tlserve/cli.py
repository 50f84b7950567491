"""The ``tlserve`` command line: parses arguments and dispatches to training/ and service/.

Heavy imports (TensorFlow) happen inside the command functions so that ``tlserve --help`` is instant.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
from pathlib import Path

from tlserve.contract import REPORT_DIR, UNKNOWN_METHODS

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter hides our output


class UsageError(Exception):
    """A mistake in the command line or its inputs: printed as one line, exit status 2."""


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1, got {value}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


# train's flags that --init-from decides, or gives other defaults: None when not given on the command line.
_SERVED_FLAGS = ("backbone", "image_size", "resize")
_BRIEF_FLAGS = {"head_epochs": "head_epochs", "head_lr": "head_learning_rate",
                "fine_tune_epochs": "fine_tune_epochs", "fine_tune_lr": "fine_tune_learning_rate"}


def _train_fields(args: argparse.Namespace) -> dict:
    """TrainConfig fields from train's flags; flags left out are absent, so TrainConfig's defaults (or, with
    --init-from, training.retrain's) hold."""
    data = args.data[0] if len(args.data) == 1 else tuple(args.data)
    fields = dict(
        data=data, weights=args.weights, batch_size=args.batch_size,
        fine_tune_layers=args.fine_tune_layers, dropout=args.dropout, label_smoothing=args.label_smoothing,
        augment=tuple(a for a in args.augment.split(",") if a), patience=args.patience, seed=args.seed,
        split_seed=args.split_seed, cache_dir=args.cache_dir, log_dir=args.log_dir,
        test_fraction=args.test_fraction, val_fraction=args.val_fraction, verbose=0 if args.quiet else 1,
        **{field: getattr(args, flag) for flag, field in _BRIEF_FLAGS.items()},
        **{flag: getattr(args, flag) for flag in _SERVED_FLAGS})
    return {k: v for k, v in fields.items() if v is not None or k in ("weights", "fine_tune_layers")}


def _train(args: argparse.Namespace) -> int:
    from tlserve.contract import is_url
    from training.evaluate import export_trained
    from training.publish import check_destination, export_root
    from training.report import summary_lines
    from training.train import TrainConfig, train

    if args.init_from:
        return _retrain(args)
    if args.force:
        raise UsageError("--force only applies with --init-from (it exports a retrained model that scores worse)")
    if not args.name:
        raise UsageError("--name is required (or --init-from models/<name> to retrain a served model)")
    cfg = TrainConfig(name=args.name, **_train_fields(args))
    cfg.validate()
    out_root = args.out or "models"
    if is_url(out_root):
        check_destination(out_root)  # a bad URL or a missing bucket fails now, not after the training
    trained = train(cfg)
    # Unset flags leave training.open_set's defaults in charge (each default is written once).
    trust = {k: v for k, v in (("unknown_method", args.unknown_score), ("false_rejection", args.false_rejection))
             if v is not None}
    # Other workers: a temporary folder, removed. An object store: a temporary folder, then published to the store.
    with export_root(out_root, cfg.name, args.version, trained.chief) as (out, version):
        path, report = export_trained(trained, out, version, **trust)
    print("\n".join(summary_lines(report)))
    _trained_lines(trained)
    if not trained.chief:
        print("not exporting: this worker is not the chief (the chief exports)")
        return 0
    where = f"{out_root.rstrip('/')}/{cfg.name}/{path.name}" if is_url(out_root) else str(path)
    print(f"exported {where}")
    print(f"report   {where}/{REPORT_DIR}/report.md")
    return 0


def _trained_lines(trained) -> None:
    print(f"training took {trained.seconds:.0f} s")
    print(f"weights sha256 {trained.info['weights_sha256']}")
    if "shard" in trained.info:
        print(f"training shard {json.dumps(trained.info['shard'])}")


def _retrain(args: argparse.Namespace) -> int:
    """``train --init-from``: the next version of a served model, exported only if it is not worse."""
    from training import retrain
    from training.distribute import export_destination, make_strategy
    from training.report import comparison_lines, summary_lines
    from training.warm_start import check_matches, starting_point

    strategy = make_strategy()  # first: a multi-worker strategy must exist before TensorFlow runs anything
    start = starting_point(args.init_from)
    if args.name and args.name != start.name:
        raise UsageError(f"--name {args.name} differs from {start.name}, the model of --init-from: a retrained "
                         f"version goes beside the one it started from (leave --name out)")
    if args.out:
        raise UsageError(f"--out does not apply with --init-from: the next version goes in {start.version_dir.parent}")
    fields = _train_fields(args)
    check_matches(start, **{flag: fields.pop(flag, None) for flag in _SERVED_FLAGS})
    cfg = retrain.config(start, **fields)
    cfg.validate()
    print(f"retraining {start.version_dir} ({start.backbone}, {start.image_size} px, {len(start.classes)} classes)",
          flush=True)
    result = retrain.retrain(start, cfg, strategy)
    if result.comparison["added_classes"]:
        print(f"new classes: {', '.join(result.comparison['added_classes'])}")
    print("\n".join(comparison_lines(result.comparison)))
    _trained_lines(result.trained)
    trust = {k: v for k, v in (("unknown_method", args.unknown_score), ("false_rejection", args.false_rejection))
             if v is not None}
    try:
        with export_destination(str(start.repository), result.trained.chief) as out:
            path, report = retrain.publish(result, force=args.force, version=args.version, root=Path(out), **trust)
    except retrain.Refused as refused:
        print(f"tlserve train: {refused}", file=sys.stderr)
        return 1
    print("\n".join(summary_lines(report)))
    if not result.trained.chief:
        print("not exporting: this worker is not the chief (the chief exports)")
        return 0
    if result.worse:
        print("exported although worse than the version it started from (--force)")
    print(f"exported {path}")
    print(f"report   {path / REPORT_DIR / 'report.md'}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from training.evaluate import evaluate_exported, resolve_version_dir
    from training.report import summary_lines

    version_dir = resolve_version_dir(args.model)
    out = Path(args.out or Path("reports") / f"{version_dir.parent.name}-{version_dir.name}")
    report = evaluate_exported(version_dir, args.data, out)
    print("\n".join(summary_lines(report)))
    print(f"report   {out / 'report.md'}")
    return 0


def _backbones_list(_: argparse.Namespace) -> int:
    from training.backbones.registry import BACKBONES

    width = max(map(len, BACKBONES))
    for name, backbone in BACKBONES.items():
        print(f"{name:<{width}}  {backbone.kind:<6}  {backbone.status()}")
    return 0


def _backbones_prepare(args: argparse.Namespace) -> int:
    from training.backbones.registry import BACKBONES, get

    names = args.names or [n for n, b in BACKBONES.items() if b.kind == "ported"]
    for name in names:
        print(f"{name}: {get(name).prepare()}")
    return 0


def _backbones_predict(args: argparse.Namespace) -> int:
    from training.backbones.imagenet import top_k

    for image in args.images:
        if len(args.images) > 1:
            print(f"{image}:")
        for index, probability in top_k(args.backbone, Path(image).read_bytes(), k=5, weights=args.weights):
            print(f"{index} {probability:.4f}")
    return 0


def serve_settings(args: argparse.Namespace, environ: dict[str, str]):
    """``tlserve serve``'s settings: its flags, over ``TLSERVE_*`` variables, over the Settings defaults."""
    from service.settings import Settings

    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(Settings) if hasattr(args, f.name)}
    return Settings.from_env(environ, **given)


def check_location(location: Path | str, settings, what: str, hint: str = "") -> None:
    """Refuse to start on a folder that does not exist, or an object store that cannot be reached (``UsageError``,
    one line: no traceback, no credentials)."""
    from tlserve.contract import is_url

    if is_url(location):
        from service.repository.config import ConfigError  # 80 ms with the store's code: not for a local folder
        from service.repository.objectstore import ObjectStore

        try:
            ObjectStore(settings.model_cache_dir).check(str(location))
        except ConfigError as exc:
            raise UsageError(f"{what} {exc}") from None
    elif not Path(location).is_dir():
        raise UsageError(f"{what} {location} does not exist{hint}")


def _serve(args: argparse.Namespace) -> int:
    settings = serve_settings(args, dict(os.environ))
    if settings.model_config_file and not settings.model_config_file.is_file():
        raise UsageError(f"model config file {settings.model_config_file} does not exist")
    if settings.model_base_path is not None:
        check_location(settings.model_base_path, settings, "model base path")
    elif not settings.model_config_file:
        check_location(settings.model_repo, settings, "model repository", " (train a model first)")
    # BentoML re-imports the service in its worker: the settings travel as TLSERVE_* variables, with absolute
    # paths (the worker may not share our working directory).
    absolute = {f.name: getattr(settings, f.name).resolve() for f in dataclasses.fields(settings)
                if isinstance(getattr(settings, f.name), Path)}
    if settings.log_requests not in ("", "-"):  # a file, or '-' for stdout: a str setting, so resolved here
        absolute["log_requests"] = str(Path(settings.log_requests).resolve())
    env = {**os.environ, **settings.replace(**absolute).to_env()}
    command = [sys.executable, "-m", "bentoml", "serve", "service.bento_service:TlServe",
               "--host", settings.http_host, "--port", str(settings.http_port),
               # uvicorn's wait for in-flight HTTP requests once the worker stops accepting (whole seconds)
               "--timeout-graceful-shutdown", str(max(1, math.ceil(settings.shutdown_grace_s)))]
    grpc_note = f" and grpc {settings.http_host}:{settings.grpc_port}" if settings.grpc_port >= 0 else ""
    print(f"serving {settings.model_config_file or settings.model_repo} on {'https' if settings.tls_cert_file else 'http'}://{settings.http_host}:"
          f"{settings.http_port}{grpc_note}", flush=True)
    os.execvpe(command[0], command, env)  # BentoML's arbiter takes over this process and its signals


def _add_settings_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per Settings field, from the field's own metadata (service/settings.py): help, default, rules.

    A flag not given leaves its setting to ``TLSERVE_<NAME>`` or, failing that, to the field's default."""
    from service.settings import Settings, env_name, flag_name

    for f in dataclasses.fields(Settings):
        default = "unset" if f.default in (None, "") else f.default
        help_text = f"{f.metadata['help']} (default: {default}; {env_name(f)})".replace("%", "%%")
        parser.add_argument(flag_name(f), dest=f.name, type=_setting_value(f), default=argparse.SUPPRESS,
                            choices=f.metadata["choices"] or None, help=help_text,
                            metavar=None if f.metadata["choices"] else flag_name(f)[2:].replace("-", "_").upper())


def _setting_value(f):
    """argparse's ``type`` for a Settings field: its conversion and its rules, as TLSERVE_* values get them."""
    from service.settings import SettingsError, convert, field_problem

    def parse(raw: str):
        try:
            value = convert(f, raw)
        except SettingsError:
            raise argparse.ArgumentTypeError(f"{raw!r} is not a valid {str(f.type).split(' ')[0]}") from None
        problem = field_problem(f, value)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    parse.__name__ = f.name
    return parse


def _predict(args: argparse.Namespace) -> int:
    from service.client import GrpcClient, HttpClient

    client = GrpcClient(args.grpc, args.timeout) if args.grpc else HttpClient(args.url, timeout_s=args.timeout)
    images = [(path, Path(path).read_bytes()) for path in args.images]
    result = client.classify([data for _, data in images], model=args.model, top_k=args.top_k)
    print("\n".join(prediction_lines([path for path, _ in images], result)))
    return 0


def prediction_lines(paths: list[str], result: dict) -> list[str]:
    """What `tlserve predict` prints: per image ``<path>: confident|unknown`` (the word only when the server answers
    ``confident``, which one from before issue 16 does not), then one ``<label> <score>`` line per class."""
    words = ["confident" if c else "unknown" for c in result["confident"]] if "confident" in result else \
        [""] * len(paths)
    lines = []
    for path, predictions, word in zip(paths, result["predictions"], words, strict=True):
        lines.append(f"{path}: {word}" if word else f"{path}:")
        lines += [f"  {p['label']} {p['score']:.4f}" for p in predictions]
    return lines


def build_parser() -> argparse.ArgumentParser:
    """The whole command line, for ``main`` and for tests."""
    parser = argparse.ArgumentParser(prog="tlserve", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    t = commands.add_parser("train", help="fine-tune a backbone on labelled images and export a SavedModel")
    t.add_argument("--data", required=True, action="append",
                   help="folder of class sub-folders, a path,label CSV, or builtin:digits|shapes; repeat it to "
                   "combine several (classes of the same name are one class)")
    t.add_argument("--name", help="model name: exported to <out>/<name>/<version>/ (required without --init-from)")
    t.add_argument("--init-from", metavar="MODEL",
                   help="retrain a served model: models/<name> (its newest version) or models/<name>/<version>; "
                   "warm-starts from its weights, backbone, size and classes (new classes get new head rows), "
                   "fine-tunes briefly and exports the next version beside it, unless it scores worse")
    t.add_argument("--force", action="store_true",
                   help="with --init-from: export even if the new model scores worse than the one it started from")
    t.add_argument("--out", help="model repository: a folder, or s3://bucket/prefix, gs://bucket/prefix (default: "
                   "models; with --init-from, the served model's)")
    t.add_argument("--version", type=_positive, help="version number (default: the next free one)")
    t.add_argument("--backbone", help="see `tlserve backbones list` (with --init-from: the served model's)")
    t.add_argument("--weights", help="Keras Applications backbones: a Keras weights file, or imagenet")
    t.add_argument("--image-size", type=int, help="pixels per side (with --init-from: the served model's)")
    t.add_argument("--resize", choices=["stretch", "crop"], help="with --init-from: the served model's")
    t.add_argument("--batch-size", type=_positive, default=32)
    t.add_argument("--head-epochs", type=int,
                   help="phase 1: backbone frozen (with --init-from: fewer, see docs/training.md)")
    t.add_argument("--head-lr", type=float, help="rate of phase 1")
    t.add_argument("--fine-tune-epochs", type=int,
                   help="phase 2: top of the backbone unfrozen; 0 skips it (with --init-from: fewer)")
    t.add_argument("--fine-tune-lr", type=float,
                   help="peak rate of phase 2, reached after one epoch of warm-up, then cosine decay to 0 "
                   "(with --init-from: lower)")
    t.add_argument("--fine-tune-layers", type=int, help="weighted backbone layers to unfreeze (default: all)")
    t.add_argument("--dropout", type=float, default=0.2)
    t.add_argument("--label-smoothing", type=float, default=0.1)
    t.add_argument("--augment", default="rotation,zoom,translation",
                   help="comma-separated: flip,rotation,zoom,translation,contrast ('' for none)")
    t.add_argument("--patience", type=int, default=6, help="early-stopping patience in epochs")
    t.add_argument("--test-fraction", type=float, default=0.25)
    t.add_argument("--val-fraction", type=float, default=0.15)
    t.add_argument("--seed", type=int, default=0, help="training seed (head initialisation, shuffling, augmentation)")
    t.add_argument("--split-seed", type=int, default=0, help="seed of the stratified train/validation/test split")
    t.add_argument("--unknown-score", choices=list(UNKNOWN_METHODS),
                   help="the open-set score exported as unknown_score (default: the best in bench/open_set.py)")
    t.add_argument("--false-rejection", type=_fraction,
                   help="fraction of known (validation) images the unknown threshold may reject (default: 1%%)")
    t.add_argument("--cache-dir", help="cache the decoded pixels on disk here, for data larger than memory (default: "
                   "in memory when they take at most a quarter of it, else in a temporary folder)")
    t.add_argument("--log-dir", help="TensorBoard logs here: per-epoch loss, accuracy, learning rate; confusion matrix")
    t.add_argument("--quiet", action="store_true", help="no Keras progress bars")
    t.set_defaults(run=_train)

    e = commands.add_parser("evaluate", help="the evaluation report of an exported model on labelled images")
    e.add_argument("--model", required=True, help="models/<name> (latest version) or models/<name>/<version>")
    e.add_argument("--data", required=True)
    e.add_argument("--out", help="report folder (default: reports/<name>-<version>)")
    e.set_defaults(run=_evaluate)

    s = commands.add_parser("serve", help="serve a model repository over HTTP (BentoML) and gRPC")
    _add_settings_flags(s)
    s.set_defaults(run=_serve)

    p = commands.add_parser("predict", help="classify images with a running server")
    p.add_argument("images", nargs="+")
    p.add_argument("--model", help="model name (may be omitted when the server has one)")
    p.add_argument("--url", default="http://127.0.0.1:3000")
    p.add_argument("--grpc", metavar="HOST:PORT", help="call the gRPC Classifier service instead of HTTP")
    p.add_argument("--top-k", type=_positive, default=3)
    p.add_argument("--timeout", type=float, default=60.0)
    p.set_defaults(run=_predict)

    b = commands.add_parser("backbones", help="pretrained backbones and their ImageNet weights")
    bc = b.add_subparsers(dest="backbones_command", required=True)
    bc.add_parser("list", help="each backbone and whether its weights are ready").set_defaults(run=_backbones_list)
    bp = bc.add_parser("prepare", help="convert and cache the offline ImageNet weights")
    bp.add_argument("names", nargs="*", help="default: every offline backbone")
    bp.set_defaults(run=_backbones_prepare)
    bq = bc.add_parser("predict", help="top-5 ImageNet classes of images, one '<index> <probability>' per line")
    bq.add_argument("images", nargs="+")
    bq.add_argument("--backbone", default="mobilenet_v2")
    bq.add_argument("--weights")
    bq.set_defaults(run=_backbones_predict)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``tlserve`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (UsageError, FileNotFoundError, ValueError) as exc:  # the domain errors all derive from ValueError
        print(f"tlserve {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except ConnectionError as exc:
        print(f"tlserve {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
