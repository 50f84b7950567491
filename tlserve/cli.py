"""The ``tlserve`` command line: parses arguments and dispatches to training/ and service/.

Heavy imports (TensorFlow) happen inside the command functions so that ``tlserve --help`` is instant.
"""

from __future__ import annotations

import argparse
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


def _train(args: argparse.Namespace) -> int:
    from training.evaluate import export_trained
    from training.report import summary_lines
    from training.train import TrainConfig, train

    cfg = TrainConfig(
        data=args.data, name=args.name, backbone=args.backbone, weights=args.weights, image_size=args.image_size,
        resize=args.resize, batch_size=args.batch_size, head_epochs=args.head_epochs,
        head_learning_rate=args.head_lr, fine_tune_epochs=args.fine_tune_epochs, fine_tune_learning_rate=args.fine_tune_lr,
        fine_tune_layers=args.fine_tune_layers, dropout=args.dropout, label_smoothing=args.label_smoothing,
        augment=tuple(a for a in args.augment.split(",") if a), patience=args.patience, seed=args.seed,
        split_seed=args.split_seed,
        test_fraction=args.test_fraction, val_fraction=args.val_fraction, verbose=0 if args.quiet else 1,
    )
    cfg.validate()
    trained = train(cfg)
    # Unset flags leave training.open_set's defaults in charge (each default is written once).
    trust = {k: v for k, v in (("unknown_method", args.unknown_score), ("false_rejection", args.false_rejection))
             if v is not None}
    path, report = export_trained(trained, args.out, args.version, **trust)
    print("\n".join(summary_lines(report)))
    print(f"training took {trained.seconds:.0f} s")
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


def _serve(args: argparse.Namespace) -> int:
    from service.settings import Settings

    settings = Settings(
        model_repo=Path(args.model_repo), model_config_file=Path(args.model_config_file) if args.model_config_file else None,
        http_host=args.host, http_port=args.http_port, grpc_port=args.grpc_port,
        grpc_max_message_mb=args.grpc_max_message_mb, max_batch_size=args.max_batch_size,
        batch_timeout_ms=args.batch_timeout_ms, max_queue=args.max_queue, poll_interval_s=args.poll_interval_s,
        allowed_batch_sizes=args.allowed_batch_sizes, model_batching=args.model_batching,
        ready_when=args.ready_when, max_body_mb=args.max_body_mb, request_timeout_s=args.request_timeout_s,
        drain_delay_s=args.drain_delay_s, shutdown_grace_s=args.shutdown_grace_s,
        max_concurrent_requests=args.max_concurrent_requests,
        gpu_memory_limit_mb=args.gpu_memory_limit_mb, intra_op_threads=args.intra_op_threads,
        inter_op_threads=args.inter_op_threads,
        tls_cert_file=_path(args.tls_cert_file), tls_key_file=_path(args.tls_key_file),
        auth_token_file=_path(args.auth_token_file),
        **({"auth_open_paths": args.auth_open_paths} if args.auth_open_paths is not None else {}),
    )
    if settings.model_config_file and not settings.model_config_file.is_file():
        raise UsageError(f"model config file {settings.model_config_file} does not exist")
    if not settings.model_config_file and not settings.model_repo.is_dir():
        raise UsageError(f"model repository {settings.model_repo} does not exist (train a model first)")
    # BentoML re-imports the service in its worker: the settings travel as TLSERVE_* variables.
    env = {**os.environ, **settings.replace(model_repo=settings.model_repo.resolve()).to_env()}
    command = [sys.executable, "-m", "bentoml", "serve", "service.bento_service:TlServe",
               "--host", settings.http_host, "--port", str(settings.http_port),
               # uvicorn's wait for in-flight HTTP requests once the worker stops accepting (whole seconds)
               "--timeout-graceful-shutdown", str(max(1, math.ceil(settings.shutdown_grace_s)))]
    grpc_note = f" and grpc {settings.http_host}:{settings.grpc_port}" if settings.grpc_port >= 0 else ""
    print(f"serving {settings.model_config_file or settings.model_repo} on {'https' if settings.tls_cert_file else 'http'}://{settings.http_host}:"
          f"{settings.http_port}{grpc_note}", flush=True)
    os.execvpe(command[0], command, env)  # BentoML's arbiter takes over this process and its signals


def _path(raw: str | None) -> Path | None:
    """An optional file flag, made absolute: BentoML's worker may not share our working directory."""
    return Path(raw).resolve() if raw else None


def _predict(args: argparse.Namespace) -> int:
    from service.client import GrpcClient, HttpClient

    client = GrpcClient(args.grpc, args.timeout) if args.grpc else HttpClient(args.url, timeout_s=args.timeout)
    images = [(path, Path(path).read_bytes()) for path in args.images]
    result = client.classify([data for _, data in images], model=args.model, top_k=args.top_k)
    for (path, _), predictions in zip(images, result["predictions"]):
        print(f"{path}:")
        for p in predictions:
            print(f"  {p['label']} {p['score']:.4f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The whole command line, for ``main`` and for tests."""
    parser = argparse.ArgumentParser(prog="tlserve", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    t = commands.add_parser("train", help="fine-tune a backbone on labelled images and export a SavedModel")
    t.add_argument("--data", required=True, help="folder of class sub-folders, a path,label CSV, or builtin:digits|shapes")
    t.add_argument("--name", required=True, help="model name: exported to <out>/<name>/<version>/")
    t.add_argument("--out", default="models", help="model repository (default: models)")
    t.add_argument("--version", type=_positive, help="version number (default: the next free one)")
    t.add_argument("--backbone", default="mobilenet_v2", help="see `tlserve backbones list`")
    t.add_argument("--weights", help="Keras Applications backbones: a Keras weights file, or imagenet")
    t.add_argument("--image-size", type=int, default=112)
    t.add_argument("--resize", default="stretch", choices=["stretch", "crop"])
    t.add_argument("--batch-size", type=_positive, default=32)
    t.add_argument("--head-epochs", type=int, default=8, help="phase 1: backbone frozen")
    t.add_argument("--head-lr", type=float, default=3e-3)
    t.add_argument("--fine-tune-epochs", type=int, default=30, help="phase 2: top of the backbone unfrozen; 0 skips it")
    t.add_argument("--fine-tune-lr", type=float, default=1e-3,
                   help="peak rate of phase 2, reached after one epoch of warm-up, then cosine decay to 0")
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
    t.add_argument("--quiet", action="store_true", help="no Keras progress bars")
    t.set_defaults(run=_train)

    e = commands.add_parser("evaluate", help="the evaluation report of an exported model on labelled images")
    e.add_argument("--model", required=True, help="models/<name> (latest version) or models/<name>/<version>")
    e.add_argument("--data", required=True)
    e.add_argument("--out", help="report folder (default: reports/<name>-<version>)")
    e.set_defaults(run=_evaluate)

    s = commands.add_parser("serve", help="serve a model repository over HTTP (BentoML)")
    s.add_argument("--model-repo", default="models")
    s.add_argument("--model-config-file", help="a TF Serving ModelServerConfig text file (versions, labels)")
    s.add_argument("--host", default="0.0.0.0")
    s.add_argument("--http-port", type=int, default=3000)
    s.add_argument("--grpc-port", type=int, default=8500, help="-1: no gRPC server")
    s.add_argument("--grpc-max-message-mb", type=float, default=64.0)
    s.add_argument("--max-batch-size", type=_positive, default=32)
    s.add_argument("--batch-timeout-ms", type=float, default=2.0,
                   help="longest wait to fill a batch while another runs (an idle model never waits)")
    s.add_argument("--max-queue", type=_positive, default=256, help="items waiting per model; beyond: 503")
    s.add_argument("--allowed-batch-sizes", default="",
                   help="e.g. 1,8,32: pad batches up to one of these (off by default; must end at --max-batch-size)")
    s.add_argument("--model-batching", default="",
                   help="per-model overrides, e.g. 'digits:max_batch_size=8,batch_timeout_ms=1;other:max_queue=64'")
    s.add_argument("--poll-interval-s", type=float, default=2.0, help="model repository poll (0: never)")
    s.add_argument("--ready-when", choices=["all", "any"], default="all")
    s.add_argument("--max-body-mb", type=float, default=64.0)
    s.add_argument("--request-timeout-s", type=float, default=30.0)
    s.add_argument("--max-concurrent-requests", type=_positive, default=256,
                   help="requests in progress per transport (HTTP, gRPC); beyond: 503 / UNAVAILABLE at once")
    s.add_argument("--drain-delay-s", type=float, default=3.0,
                   help="on SIGTERM: seconds of serving while not ready, before new connections are refused")
    s.add_argument("--shutdown-grace-s", type=float, default=20.0,
                   help="on SIGTERM, after the drain delay: seconds for in-flight requests to finish")
    s.add_argument("--gpu-memory-limit-mb", type=int, default=0, help="0: grow on demand")
    s.add_argument("--intra-op-threads", type=int, default=0)
    s.add_argument("--inter-op-threads", type=int, default=0)
    s.add_argument("--tls-cert-file", help="PEM certificate (chain): HTTPS and gRPC over TLS; needs --tls-key-file")
    s.add_argument("--tls-key-file", help="PEM private key of --tls-cert-file")
    s.add_argument("--auth-token-file", help="file holding a bearer token that every request must send "
                   "(Authorization: Bearer <token>), except on --auth-open-paths")
    s.add_argument("--auth-open-paths", help="paths and gRPC methods open without the token: exact, 'prefix*', "
                   "'!exception*' (default: health, metrics and the console's static files)")
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
