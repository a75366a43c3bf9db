"""``keras-attn-search`` / ``python -m search``: the attention architecture search, end to end.

With no options it runs the embedded main job: the real Fashion-MNIST (offline, from Debian's
``dataset-fashion-mnist``), MobileNetV2 (alpha 0.35) at 32x32x3, a KerasTuner random search over
{none, SA, SimAM, SB, DCA-SE} x {block, layer} and their conditional hyperparameters on a training
subset, then the best configuration retrained on the full training split and tested once.

Re-running the same command resumes (KerasTuner reloads its project; a trial cut off mid-way runs
again). ``--role chief|worker --oracle HOST:PORT`` runs KerasTuner's distributed tuning over gRPC,
every process pointing at the same ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

PROG = "keras-attn-search"
# The choices are spelled out here rather than imported from search.training / search.tuning,
# which import TensorFlow: `--help` and option errors stay instant.
TUNERS = ("random", "bayesian", "hyperband")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("auto", "one_device", "mirrored")
ROLES = ("single", "chief", "worker")
CONFIG_FILE = "search_config.json"
# Options that change what is measured: a resumed --out must have been made with the same ones
# (another --data-dir would mix two datasets in one leaderboard; another --precision other numerics).
IDENTITY_KEYS = (
    "dataset",
    "data_dir",
    "precision",
    "backbone",
    "width",
    "image_size",
    "train_size",
    "validation_split",
    "attention",
    "placement",
    "tuner",
    "epochs",
    "batch_size",
    "seed",
    "optimizer",
    "bn_momentum",
)
# Options that only change how a run goes (how far the search goes, the final retraining, the
# devices): a resume may change them; each run's values are recorded in search_config.json.
RUN_KEYS = ("max_trials", "final_epochs", "strategy", "role", "run_eagerly")


class CLIError(Exception):
    """A user error: printed as one line on stderr, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        raise CLIError(f"{message} (see {PROG} --help)")


def _int_at_least(minimum, what):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


_positive_int = _int_at_least(1, "a positive integer")
_non_negative_int = _int_at_least(0, "an integer >= 0")


def _fraction(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


def _csv_list(text):
    items = [t.strip().lower() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list, got an empty one")
    return items


def build_parser():
    p = _Parser(
        prog=PROG,
        description="KerasTuner architecture search over CNN attention (SA-Net, SimAM, "
        "Shift-and-Balance, DCANet) in a keras.applications backbone.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    d = p.add_argument_group("data")
    d.add_argument("--dataset", default="fashion_mnist",
                   help="fashion_mnist (local IDX files, offline) or any TFDS name, e.g. cifar10")
    d.add_argument("--data-dir", default=None,
                   help="fashion_mnist: directory with the four IDX .gz files "
                   "(default /usr/share/datasets/fashion-mnist); TFDS: its data_dir")
    d.add_argument("--image-size", type=_positive_int, default=32, help="input height = width, pixels")
    d.add_argument("--train-size", type=_non_negative_int, default=10000,
                   help="training images per trial (0 = all); the final model uses all")
    d.add_argument("--validation-split", type=_fraction, default=0.1,
                   help="fraction of the training split held out for validation (seeded)")
    m = p.add_argument_group("model and search space")
    m.add_argument("--backbone", default="mobilenetv2", help="keras.applications backbone")
    m.add_argument("--width", type=float, default=None,
                   help="MobileNet width multiplier alpha (default 0.35 for MobileNetV2/V3)")
    m.add_argument("--bn-momentum", type=float, default=0.9,
                   help="BatchNorm momentum of the backbone (keras.applications' 0.999 leaves the "
                   "moving statistics unusable after a short run from scratch)")
    m.add_argument("--attention", type=_csv_list, default=None,
                   help="comma-separated attention types to search (default: none,sa,simam,sb,dca_se)")
    m.add_argument("--placement", type=_csv_list, default=None,
                   help="comma-separated placements to search (default: block,layer)")
    t = p.add_argument_group("search and training")
    t.add_argument("--tuner", default="random", choices=TUNERS, help="KerasTuner algorithm")
    t.add_argument("--max-trials", type=_positive_int, default=6,
                   help="trials in all (random, bayesian); Hyperband sizes itself from --epochs")
    t.add_argument("--epochs", type=_positive_int, default=2, help="epochs per trial")
    t.add_argument("--final-epochs", type=_non_negative_int, default=4,
                   help="epochs to retrain the best configuration on the full training split "
                   "(0: keep the best trial's model)")
    t.add_argument("--batch-size", type=_positive_int, default=128, help="global batch size")
    t.add_argument("--optimizer", default="adam", choices=("sgd", "adam"),
                   help="SGD with momentum (the papers') or Adam (converges in fewer epochs)")
    t.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="auto = mixed_float16 on a GPU, float32 on a CPU")
    t.add_argument("--strategy", default="auto", choices=STRATEGIES,
                   help="tf.distribute strategy; auto = MirroredStrategy over several GPUs")
    t.add_argument("--seed", type=int, default=0, help="seed for data split, tuner and weights")
    o = p.add_argument_group("output")
    o.add_argument("--out", default="runs/search", help="output directory (re-run to resume)")
    o.add_argument("--overwrite", action="store_true",
                   help="start afresh, deleting a previous search in --out")
    o.add_argument("--quiet", action="store_true", help="no Keras progress bars")
    o.add_argument("--debug", action="store_true", help="show tracebacks")
    o.add_argument("--run-eagerly", action="store_true",
                   help="no tf.function tracing: for debugging, and for tiny runs where tracing "
                   "a backbone (20-40 s on a 2-core CPU) costs more than training")
    g = p.add_argument_group("distributed tuning (KerasTuner chief + workers over gRPC)")
    g.add_argument("--role", default="single", choices=ROLES,
                   help="chief serves the oracle and writes the report; workers run trials")
    g.add_argument("--oracle", default=None, metavar="HOST:PORT",
                   help="the chief's address (required with --role chief/worker)")
    g.add_argument("--worker-id", default=None,
                   help="unique worker name (default: worker-<pid>)")
    return p


def parse_args(argv=None):
    args = build_parser().parse_args(argv)
    if args.role != "single":
        if not args.oracle or ":" not in args.oracle:
            raise CLIError(f"--role {args.role} needs --oracle HOST:PORT, got {args.oracle!r}")
        host, _, port = args.oracle.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise CLIError(f"--oracle must be HOST:PORT with a port in 1..65535, got {args.oracle!r}")
    elif args.oracle:
        raise CLIError("--oracle goes with --role chief or --role worker")
    if not 0.0 <= args.bn_momentum < 1.0:
        raise CLIError(f"--bn-momentum must be in [0, 1), got {args.bn_momentum}")
    if args.width is not None and args.width <= 0:
        raise CLIError(f"--width must be > 0, got {args.width}")
    args.dataset = args.dataset.lower()
    args.backbone = args.backbone.lower()
    if args.width is None and args.backbone.startswith("mobilenet"):
        args.width = 0.35
    return args


def _validate_names(args):
    """Check names against the registries before any data is read or any model is built."""
    from keras_attn.backbones import SUPPORTED_BACKBONES
    from keras_attn.registry import available_attentions
    from search.hypermodel import PLACEMENTS

    backbones = [b.lower() for b in SUPPORTED_BACKBONES]
    if args.backbone not in backbones:
        raise CLIError(f"unknown --backbone {args.backbone!r}; valid: {', '.join(backbones)}")
    valid = ["none"] + available_attentions()
    for name in args.attention or []:
        if name not in valid:
            raise CLIError(f"unknown --attention {name!r}; valid: {', '.join(valid)}")
    for name in args.placement or []:
        if name not in PLACEMENTS:
            raise CLIError(f"unknown --placement {name!r}; valid: {', '.join(PLACEMENTS)}")


def data_kwargs(args, **overrides):
    """``search.data.load_dataset`` arguments for parsed ``args`` (``overrides`` win)."""
    return {
        "name": args.dataset,
        "data_dir": args.data_dir,
        "image_size": args.image_size,
        "channels": 3,
        "train_size": args.train_size or None,
        "validation_split": args.validation_split,
        "batch_size": args.batch_size,
        "seed": args.seed,
        **overrides,
    }


def _identity(args):
    return {k: getattr(args, k) for k in IDENTITY_KEYS}


def _check_out_dir(args):
    """Refuse to resume into an --out made by a different search; record this one's identity."""
    out = args.out
    path = os.path.join(out, CONFIG_FILE)
    ident = _identity(args)
    old = {}
    if os.path.exists(path) and not args.overwrite:
        with open(path) as f:
            old = json.load(f)
        diff = {k: (old.get(k), v) for k, v in ident.items() if old.get(k) != v}
        if diff:
            what = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in sorted(diff.items()))
            raise CLIError(
                f"--out {out} holds a different search ({what}); use another --out, the same "
                f"options to resume, or --overwrite to start afresh"
            )
    elif (
        args.role != "worker"
        and os.path.isdir(out)
        # A worker started before its chief may already have made the tuner project.
        and set(os.listdir(out)) - {"tuner", "logs"}
        and not args.overwrite
    ):
        raise CLIError(f"--out {out} exists and is not a keras-attn search; use --overwrite or another --out")
    if args.overwrite and args.role != "worker" and os.path.isdir(out):
        import shutil

        shutil.rmtree(out)
    os.makedirs(out, exist_ok=True)
    if args.role != "worker":
        from search.report import write_json

        run = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
               **{k: getattr(args, k) for k in RUN_KEYS}}
        write_json(path, {**ident, "runs": list(old.get("runs", [])) + [run]})


def _setup_distributed(args):
    if args.role == "single":
        for key in ("KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID"):
            os.environ.pop(key, None)
        return
    host, _, port = args.oracle.rpartition(":")
    os.environ["KERASTUNER_ORACLE_IP"] = host
    os.environ["KERASTUNER_ORACLE_PORT"] = port
    if args.role == "chief":
        os.environ["KERASTUNER_TUNER_ID"] = "chief"
    else:
        os.environ["KERASTUNER_TUNER_ID"] = f"worker-{args.worker_id or os.getpid()}"


def _log(msg):
    print(f"[{PROG}] {msg}", flush=True)


def main(argv=None):
    """Console entry point; returns the exit status."""
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    # Before TensorFlow loads: its C++ start-up chatter (no GPU found, ...) is noise to a user.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        args = parse_args(argv)
        return run(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    except Exception as exc:  # a user-facing tool: one line unless --debug
        if debug:
            raise
        if isinstance(exc, (CLIError, ValueError, FileNotFoundError)):
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        else:
            msg = f"{type(exc).__name__}: {exc}".strip().splitlines()[0] + " (re-run with --debug)"
        print(f"{PROG}: error: {msg}", file=sys.stderr)
        return 2


def run(args):
    t_start = time.time()
    _validate_names(args)
    _check_out_dir(args)
    _setup_distributed(args)

    import keras

    from search import data as data_mod
    from search import report, training
    from search.tuning import make_tuner

    precision = training.resolve_precision(args.precision)
    strategy = training.resolve_strategy(args.strategy)
    keras.utils.set_random_seed(args.seed)
    if args.run_eagerly:
        import tensorflow as tf

        tf.config.run_functions_eagerly(True)
    _log(
        f"dataset={args.dataset} backbone={args.backbone} width={args.width} "
        f"image={args.image_size} precision={precision} strategy={type(strategy).__name__} "
        f"replicas={strategy.num_replicas_in_sync} role={args.role} out={args.out}"
    )

    # The chief needs the data too: it retrains and tests the best configuration at the end.
    t0 = time.time()
    splits = data_mod.load_dataset(**data_kwargs(args))
    _log(f"data: {splits.sizes} in {time.time() - t0:.1f}s")

    tuner, hypermodel = make_tuner(args, splits, precision, strategy)
    callbacks = [keras.callbacks.TensorBoard(log_dir=os.path.join(args.out, "logs"))]
    t_search = time.time()
    if args.role == "chief":
        _log(f"chief: serving the oracle on {args.oracle}; waiting for workers")
        tuner.search()
    else:
        tuner.search(
            splits.train,
            validation_data=splits.val,
            epochs=args.epochs,
            callbacks=callbacks,
            verbose=0 if args.quiet else 1,
        )
    search_seconds = time.time() - t_search
    if args.role == "worker":
        _log(f"worker done in {time.time() - t_start:.0f}s")
        return 0

    rows = report.collect_trials(tuner)
    report.write_leaderboard(rows, args.out)
    plots = report.plot_trials(rows, args.out)
    completed = [r for r in rows if r["status"] == "COMPLETED" and r["val_accuracy"] is not None]
    if not completed:
        raise CLIError(f"no trial completed; see {os.path.join(args.out, 'leaderboard.md')}")
    best = completed[0]
    # One source for "best": the leaderboard's first row (ties go to the lower trial id). The
    # oracle's get_best_trials breaks ties by file order, which changes after a resume.
    best_trial = tuner.oracle.trials[best["trial"]]
    _log(
        f"best trial {best['trial']}: val_accuracy={best['val_accuracy']:.4f} "
        f"attention={best['attention']} placement={best['placement']} "
        f"{report._hp_text(best['hyperparameters'])}"
    )

    from search.final import finalize

    final = finalize(args, tuner, hypermodel, best_trial, strategy, splits)
    summary = {
        "best_trial": best["trial"],
        "best_hyperparameters": dict(best_trial.hyperparameters.values),
        "val_accuracy": best["val_accuracy"],
        "test_accuracy": final["test_accuracy"],
        "test_loss": final["test_loss"],
        "params": final["params"],
        "params_added": final["params_added"],
        "final_training": final["how"],
        "trials": {
            "total": len(rows),
            "completed": len(completed),
            "failed": sum(r["status"] in ("FAILED", "INVALID") for r in rows),
        },
        "timings_seconds": {
            "search": round(search_seconds, 1),
            "final_training": round(final["train_seconds"], 1),
            "total": round(time.time() - t_start, 1),
        },
        "config": {**_identity(args), "max_trials": args.max_trials,
                   "final_epochs": args.final_epochs, "precision": precision,
                   "strategy": type(strategy).__name__,
                   "replicas": strategy.num_replicas_in_sync},
        "files": {
            "leaderboard": ["leaderboard.csv", "leaderboard.md"],
            "best_model": "best_model.keras",
            "plots": [os.path.basename(p) for p in plots],
            "tensorboard": "logs",
            "tuner_project": "tuner",
        },
        "versions": _versions(),
    }
    report.write_json(os.path.join(args.out, "summary.json"), summary)
    _log(
        f"test_accuracy={final['test_accuracy']:.4f} (best model: "
        f"{os.path.join(args.out, 'best_model.keras')}); total {time.time() - t_start:.0f}s"
    )
    return 0


def _versions():
    import platform

    import keras
    import keras_tuner
    import tensorflow as tf

    import keras_attn

    return {
        "keras_attn": keras_attn.__version__,
        "keras": keras.__version__,
        "keras_tuner": keras_tuner.__version__,
        "tensorflow": tf.__version__,
        "python": platform.python_version(),
    }


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
