"""Command-line interface: ``fastkbn train | gradcheck | data | reproduce | bench``.

This is the only module that prints. Each subcommand validates its options, calls the library
and reports; errors become one-line messages on stderr and a non-zero exit status.
"""
from __future__ import annotations

import argparse
import json
import logging
import re
import warnings
import sys
import time
from pathlib import Path

import numpy as np

from . import __version__, config
from .environment import machine_info
from .errors import BackendUnavailableError
from .fileio import write_json_atomic

EXIT_ERROR = 1
EXIT_GRADCHECK_FAILED = 3
EXIT_DIVERGED = 4
EXIT_INTERRUPTED = 130


def _hidden(text: str) -> list:
    """Parse ``50,30,20`` into ``[50, 30, 20]``; an empty string means no hidden layer."""
    if text.strip() == "":
        return []
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid hidden sizes {text!r}; expected comma-separated positive integers such as "
            "50,50") from None
    if any(s <= 0 for s in sizes):
        raise argparse.ArgumentTypeError(f"invalid hidden sizes {text!r}; every size must be a "
                                         "positive integer")
    return sizes


def positive_int(text: str) -> int:
    """Parse a count option: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer {text!r}; expected a positive "
                                         "integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid value {value}; expected a positive integer")
    return value


def _init(text: str):
    """``he``, ``xavier`` or a positive float standard deviation."""
    if text in ("he", "xavier"):
        return text
    try:
        sigma = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid init {text!r}; expected he, xavier or a "
                                         "positive float standard deviation") from None
    if not sigma > 0 or not np.isfinite(sigma):
        raise argparse.ArgumentTypeError(f"invalid init {text!r}; the standard deviation must "
                                         "be a positive finite number")
    return sigma


def _add_network_options(p, training=True):
    p.add_argument("--hidden", type=_hidden, default=[50, 50], metavar="H1,H2,...",
                   help="hidden layer widths, comma-separated (default: 50,50)")
    p.add_argument("--no-bn", dest="batch_norm", action="store_false",
                   help="build the network without batch normalization")
    p.add_argument("--init", type=_init, default="he",
                   help="weight initialization: he, xavier, or a float standard deviation used "
                        "for every layer (default: he)")
    p.add_argument("--backend", default=None,
                   help="numpy, numba, cython or auto (default: $FASTKBN_BACKEND, then auto)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the initial weights" + (" and of the shuffling" if training
                                                          else " and of the random data")
                        + " (default: 0)")


def _add_train_parser(sub):
    p = sub.add_parser("train", help="train one network on CIFAR-10",
                       description="Train one network on CIFAR-10 and write DIR/result.json, "
                                   "DIR/curves.png and DIR/model.npz.")
    p.add_argument("--data", default=None, metavar="PATH",
                   help="cifar-10-python.tar.gz or an extracted cifar-10-batches-py folder "
                        "(default: $FASTKBN_DATA, then a cached download)")
    _add_network_options(p)
    p.add_argument("--lam", type=float, default=config.LAM,
                   help=f"L2 coefficient lambda of the cost (default: {config.LAM})")
    p.add_argument("--cycles", type=positive_int, default=config.CYCLES,
                   help=f"number of learning-rate cycles (default: {config.CYCLES})")
    p.add_argument("--n-s", type=positive_int, default=config.N_S,
                   help=f"steps per half cycle of the learning rate (default: {config.N_S})")
    p.add_argument("--batch-size", type=positive_int, default=config.BATCH_SIZE,
                   help=f"samples per mini-batch (default: {config.BATCH_SIZE})")
    p.add_argument("--eta-min", type=float, default=config.ETA_MIN,
                   help=f"lowest learning rate of the cycle (default: {config.ETA_MIN})")
    p.add_argument("--eta-max", type=float, default=config.ETA_MAX,
                   help=f"highest learning rate of the cycle (default: {config.ETA_MAX})")
    p.add_argument("--dtype", choices=config.DTYPES, default=config.DEFAULT_DTYPE,
                   help=f"floating-point precision (default: {config.DEFAULT_DTYPE})")
    p.add_argument("--n-val", type=int, default=5000,
                   help="training images held out for validation, taken from the end "
                        "(default: 5000)")
    p.add_argument("--points-per-cycle", type=positive_int, default=config.POINTS_PER_CYCLE,
                   help="evaluations of loss, cost and accuracy per cycle (default: "
                        f"{config.POINTS_PER_CYCLE})")
    p.add_argument("--checkpoint-every", type=positive_int, default=None, metavar="N",
                   help="also write DIR/checkpoint.npz every N steps (default: only at the end "
                        "and on Ctrl-C)")
    p.add_argument("--resume", default=None, metavar="DIR",
                   help="continue the run saved in DIR, with the settings stored there")
    p.add_argument("--out", default="runs/train", metavar="DIR",
                   help="output folder (default: runs/train)")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="hide the progress bar")
    p.set_defaults(func=cmd_train)


def _add_gradcheck_parser(sub):
    p = sub.add_parser("gradcheck", help="compare analytic and numerical gradients",
                       description="Compare the analytic gradients with centered differences in "
                                   "float64 on a small slice of data, print the largest "
                                   "absolute and relative error per parameter, and exit with "
                                   f"status {EXIT_GRADCHECK_FAILED} if a relative error is above "
                                   "the tolerance. The kinks column counts entries left out "
                                   "because every finite-difference step tried moved a ReLU "
                                   "input across zero, where the cost has no derivative.")
    _add_network_options(p, training=False)
    p.add_argument("--dims", type=int, default=20,
                   help="input features used: the first DIMS columns (default: 20)")
    p.add_argument("--n", type=int, default=10, help="samples in the batch (default: 10)")
    p.add_argument("--lam", type=float, default=0.0,
                   help="L2 coefficient lambda of the cost (default: 0)")
    p.add_argument("--h", type=float, default=config.GRADCHECK_H,
                   help=f"finite-difference step (default: {config.GRADCHECK_H})")
    p.add_argument("--tol", type=float, default=config.GRADCHECK_REL_TOL,
                   help=f"largest accepted relative error (default: {config.GRADCHECK_REL_TOL})")
    p.add_argument("--data", default=None, metavar="PATH",
                   help="take the batch from CIFAR-10 at PATH instead of random normal data")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the errors as JSON")
    p.set_defaults(func=cmd_gradcheck)


def _add_data_parser(sub):
    p = sub.add_parser("data", help="show where the CIFAR-10 data is and check it",
                       description="Print where the CIFAR-10 data is read from, whether its "
                                   "checksum is the official one, and the shapes it loads to.")
    p.add_argument("--data", default=None, metavar="PATH",
                   help="archive or folder (default: $FASTKBN_DATA, then the download cache)")
    p.set_defaults(func=cmd_data)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastkbn", description="Fast CPU training of k-layer networks with batch "
                                    "normalization on CIFAR-10.")
    parser.add_argument("--version", action="version", version=f"fastkbn {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log more (-v: info, -vv: debug)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train_parser(sub)
    _add_gradcheck_parser(sub)
    _add_data_parser(sub)
    from . import study
    study.add_parser(sub)
    from . import benchmark
    benchmark.add_parser(sub)
    return parser


# ----------------------------------------------------------------------------------------------
# Subcommands.

# Python parameter names in library messages, and the train options that set them.
_TRAIN_FLAGS = {"lam": "--lam", "eta_min": "--eta-min", "eta_max": "--eta-max", "n_s": "--n-s",
                "cycles": "--cycles", "batch_size": "--batch-size",
                "points_per_cycle": "--points-per-cycle", "seed": "--seed"}


def _with_flag_names(message: str) -> str:
    """Replace the Python parameter names in ``message`` by the options that set them."""
    pattern = r"\b(" + "|".join(_TRAIN_FLAGS) + r")\b"
    return re.sub(pattern, lambda m: _TRAIN_FLAGS[m.group(1)], message)


def _train_settings(args, out: Path):
    """Return the run's settings: from the command line, or from ``out`` when resuming."""
    if not args.resume:
        return {"data": args.data, "hidden": args.hidden, "batch_norm": args.batch_norm,
                "init": args.init, "dtype": args.dtype, "backend": args.backend,
                "seed": args.seed, "n_val": args.n_val,
                "train": {"batch_size": args.batch_size, "eta_min": args.eta_min,
                          "eta_max": args.eta_max, "n_s": args.n_s, "cycles": args.cycles,
                          "lam": args.lam, "seed": args.seed,
                          "points_per_cycle": args.points_per_cycle}}
    settings_path = out / "config.json"
    if not settings_path.is_file():
        raise FileNotFoundError(f"cannot resume: {settings_path} not found; pass the --out "
                                "folder of an earlier run")
    if not (out / "checkpoint.npz").is_file():
        raise FileNotFoundError(f"cannot resume: {out / 'checkpoint.npz'} not found; that run "
                                "stopped before it saved any state, so start it again "
                                "without --resume")
    settings = json.loads(settings_path.read_text())
    if args.data is not None:
        settings["data"] = args.data
    return settings


def cmd_train(args) -> int:
    from .backends import get_backend
    from .data import load_cifar10
    from .errors import TrainingDivergedError
    from .network import Network
    from .plots import plot_curves
    from .training import TrainConfig, train

    out = Path(args.resume or args.out)
    checkpoint = out / "checkpoint.npz"
    settings = _train_settings(args, out)

    # Check the settings before the data is loaded, which takes seconds.
    try:
        TrainConfig(**settings["train"])
    except ValueError as exc:
        raise ValueError(_with_flag_names(str(exc))) from None
    get_backend(settings["backend"])

    try:
        data = load_cifar10(settings["data"], n_val=settings["n_val"], dtype=settings["dtype"])
    except KeyboardInterrupt:
        print("\ninterrupted while loading the data; nothing was written", file=sys.stderr)
        return EXIT_INTERRUPTED
    sizes = [data.X_train.shape[1], *settings["hidden"], len(data.label_names)]
    net = Network(sizes, batch_norm=settings["batch_norm"], init=settings["init"],
                  dtype=settings["dtype"], backend=settings["backend"], seed=settings["seed"])
    out.mkdir(parents=True, exist_ok=True)
    if args.resume:
        print(f"resuming the run in {out} from {checkpoint}")
    else:
        checkpoint.unlink(missing_ok=True)
        write_json_atomic(out / "config.json", settings)
    print(f"training {list(sizes)} batch_norm={net.batch_norm} on {data.X_train.shape[0]} "
          f"images, backend {net.backend}, {net.dtype.name}")

    start = time.perf_counter()
    try:
        history = train(net, data, **settings["train"], progress=args.progress,
                        checkpoint=checkpoint, checkpoint_every=args.checkpoint_every,
                        resume=bool(args.resume))
    except TrainingDivergedError as exc:
        print(f"fastkbn train: {exc}", file=sys.stderr)
        return EXIT_DIVERGED
    except KeyboardInterrupt:
        print(f"\ninterrupted; state saved to {checkpoint}. Continue with: fastkbn train "
              f"--resume {out}", file=sys.stderr)
        return EXIT_INTERRUPTED
    seconds = time.perf_counter() - start

    result = {
        "test_accuracy": net.accuracy(data.X_test, data.y_test),
        "val_accuracy": net.accuracy(data.X_val, data.y_val) if len(data.y_val) else None,
        "train_accuracy": net.accuracy(data.X_train, data.y_train),
        "train_seconds": seconds, "resumed": bool(args.resume), "backend": net.backend,
        "dtype": net.dtype.name, "config": {**settings, "sizes": sizes, "data": str(data.source)},
        "machine": machine_info(), "history": history.to_dict(),
    }
    plot_curves(history, out / "curves.png",
                f"{list(sizes)}, batch_norm={net.batch_norm}, lambda={settings['train']['lam']}")
    net.save(out / "model.npz")
    write_json_atomic(out / "result.json", result)
    val = result["val_accuracy"]
    seconds_note = " since the resume" if args.resume else ""
    print(f"test accuracy {result['test_accuracy']:.4f}, validation "
          f"{'n/a' if val is None else format(val, '.4f')}, training "
          f"{result['train_accuracy']:.4f}; trained in {seconds:.1f} s{seconds_note}")
    print(f"wrote result.json, curves.png, model.npz, checkpoint.npz and config.json in {out}")
    return 0


def format_gradcheck_table(errors: dict) -> str:
    """Format the gradient-check errors as an aligned text table."""
    lines = [f"{'parameter':<10} {'max abs error':>14} {'max rel error':>14} {'kinks':>6}"]
    for name, e in errors.items():
        lines.append(f"{name:<10} {e['max_abs']:>14.3e} {e['max_rel']:>14.3e} "
                     f"{e['kinks']:>6}")
    return "\n".join(lines)


def cmd_gradcheck(args) -> int:
    from .gradcheck import gradcheck
    from .network import Network

    if args.dims < 1 or args.n < 2:
        print(f"fastkbn gradcheck: --dims must be >= 1 and --n >= 2, got {args.dims} and "
              f"{args.n}", file=sys.stderr)
        return EXIT_ERROR
    if args.data is not None:
        from .data import load_cifar10
        data = load_cifar10(args.data, dtype="float64")
        X = np.ascontiguousarray(data.X_train[:args.n, :args.dims])
        y = data.y_train[:args.n]
        n_classes = len(data.label_names)
    else:
        rng = np.random.default_rng(args.seed)
        n_classes = 10
        X = rng.normal(size=(args.n, args.dims))
        y = rng.integers(0, n_classes, size=args.n)
    net = Network([args.dims, *args.hidden, n_classes], batch_norm=args.batch_norm,
                  init=args.init, dtype="float64", backend=args.backend, seed=args.seed)
    errors = gradcheck(net, X, y, lam=args.lam, h=args.h)
    worst = max(e["max_rel"] for e in errors.values())
    print(f"gradient check: {list(net.sizes)}, batch_norm={net.batch_norm}, n={args.n}, "
          f"lambda={args.lam}, backend {net.backend}")
    print(format_gradcheck_table(errors))
    passed = worst <= args.tol
    print(f"largest relative error {worst:.3e}: {'passed' if passed else 'FAILED'} "
          f"(tolerance {args.tol:g})")
    n_kinks = sum(e["kinks"] for e in errors.values())
    if n_kinks:
        print(f"{n_kinks} entries left out: every step tried crossed a ReLU kink, where the "
              "cost has no derivative")
    if args.json:
        write_json_atomic(Path(args.json), {"sizes": list(net.sizes),
                                            "batch_norm": net.batch_norm, "n": args.n,
                                            "lam": args.lam, "h": args.h, "tol": args.tol,
                                            "passed": passed, "errors": errors})
    return 0 if passed else EXIT_GRADCHECK_FAILED


def cmd_data(args) -> int:
    from .data import describe_source
    info = describe_source(args.data)
    print(f"path: {info['path']} (from {info['origin']})")
    if not info["exists"]:
        print(f"fastkbn data: {info['path']} does not exist. Pass the CIFAR-10 archive or "
              "folder with --data or set FASTKBN_DATA; fastkbn train and reproduce download "
              "it to the cache when the network allows", file=sys.stderr)
        return EXIT_ERROR
    print(f"format: {info['format']}")
    if info["md5"] is not None:
        status = "the official archive" if info["checksum_ok"] else \
            "not the official archive; its layout checks passed, so it is used with a warning"
        print(f"md5: {info['md5']} ({status})")
    for name, shape in info["batches"].items():
        print(f"  {name}: {shape[0]} images of {shape[1]} values")
    n_val = 5000 if info["n_train_rows"] > 5000 else 0
    print(f"loads to: {info['n_train_rows'] - n_val} training, {n_val} validation and "
          f"{info['n_test_rows']} test images (with the default --n-val 5000)")
    print(f"classes: {', '.join(info['label_names'])}")
    return 0


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Print a warning as one plain line that does not break a progress bar."""
    from tqdm import tqdm
    tqdm.write(f"fastkbn: warning: {message}", file=sys.stderr)


def main(argv=None) -> int:
    warnings.showwarning = _show_warning
    parser = build_parser()
    args = parser.parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (ValueError, OSError, BackendUnavailableError) as exc:
        # OSError covers missing or unreadable files and failed downloads.
        print(f"fastkbn {args.command}: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
