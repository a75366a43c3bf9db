"""``keras-attn-search`` / ``python -m search``: the attention architecture search, end to end.

With no options it runs the embedded main job on the real Fashion-MNIST (offline, from Debian's
``dataset-fashion-mnist``) at its native 28x28x1 in the CIFAR ResNet-20: the baseline (no
attention) and SA, SimAM, SB and DCA-SE, each at its paper placement with its paper
hyperparameters, every configuration trained with the same recipe and the same seeds
(``--repeats``; shared initial backbone weights and data order per seed) on a training subset;
a leaderboard from the blocked model of all runs (seeds as blocks, one pooled variance, Dunnett's
simultaneous 95% intervals against the baseline, Holm p-values, the minimum detectable effect:
:mod:`search.analysis`) and the cost of each configuration (:mod:`search.costs`); then the search
runs of the best configuration and the baseline tested on the test split, and the best
configuration retrained on the full training split (``best_model.keras``).

Re-running the same command resumes (KerasTuner reloads its project; an unfinished trial runs
again without the repeats it had finished). ``--role chief|worker --oracle HOST:PORT`` runs
KerasTuner's distributed tuning over gRPC, every process pointing at the same ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time

from search.tuner_names import TUNERS  # no TensorFlow: --help stays instant

PROG = "keras-attn-search"
# The choices are spelled out here rather than imported from search.training / search.tuning,
# which import TensorFlow: `--help` and option errors stay instant.
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("auto", "one_device", "mirrored")
ROLES = ("single", "chief", "worker")
HYPERPARAMETER_MODES = ("paper", "search")
# keras_attn.export.FORMATS, spelled out for the same reason.
EXPORT_FORMATS = ("saved_model", "litert", "onnx")
GRAD_CAM_IMAGES = 6
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
    "repeats",
    "learning_rate",
    "search_learning_rate",
    "space_values",
    "preset",
    "hyperparameters",
    "objective",
)
# Options that only change how a run goes (how far the search goes, the final retraining, the
# devices): a resume may change them; each run's values are recorded in search_config.json.
RUN_KEYS = ("max_trials", "final_epochs", "final_repeats", "strategy", "role", "run_eagerly",
            "worker_timeout", "export", "max_cost", "cost_steps")


class CLIError(Exception):
    """A user error: printed as one line on stderr, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        raise CLIError(f"{message} (see {PROG} --help)")


# TensorFlow takes sizes, counts and steps as int32 (tf.data batch sizes, image sizes, step
# counters): a larger int option would fail deep inside it, or overflow.
INT32_MAX = 2**31 - 1
# TensorFlow's, NumPy's and Python's seeds (keras.utils.set_random_seed sets all three) must be in
# [0, 2**32 - 1]: every seed a search uses (seed .. seed + repeats - 1) is checked against it.
SEED_MAX = 2**32 - 1
# A peak learning rate above this diverges with any recipe here (SGD's and Adam's are 0.1 and
# 3e-3 at batch 128; the linear scaling rule gives 0.1 x batch / 128): a larger value is a typo.
MAX_LEARNING_RATE = 10.0


def _check_number(*args, **kwargs):
    """``keras_attn.validation.check_number``, loaded from its file alone: importing the
    ``keras_attn`` package would load Keras and TensorFlow (30 s), and --help and option errors
    must stay instant."""
    module = sys.modules.get("keras_attn.validation") or sys.modules.get("_keras_attn_validation")
    if module is None:
        import importlib.util

        path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "keras_attn", "validation.py")
        spec = importlib.util.find_spec("keras_attn")
        if spec is not None and spec.submodule_search_locations:
            path = os.path.join(list(spec.submodule_search_locations)[0], "validation.py")
        spec = importlib.util.spec_from_file_location("_keras_attn_validation", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules["_keras_attn_validation"] = module
    return module.check_number(*args, **kwargs)


def _int_at_least(minimum, what, maximum=INT32_MAX):
    def parse(text):
        check_number = _check_number

        try:
            value = int(text)
        except ValueError:
            value = None
        try:
            check_number("value", value, minimum=minimum, integer=True)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value > maximum:
            raise argparse.ArgumentTypeError(
                f"expected an integer in [{minimum}, {maximum}], got {text!r}")
        return value

    return parse


_positive_int = _int_at_least(1, "a positive integer")
_non_negative_int = _int_at_least(0, "an integer >= 0")
_seed = _int_at_least(0, "an integer >= 0", maximum=SEED_MAX)


def _split(text):
    """An int >= 1 is a number of images, anything else a fraction in [0, 1)."""
    if text.strip().isdigit() and int(text) >= 1:
        return _positive_int(text)
    return _fraction(text)


def _float_in(what, minimum=0.0, maximum=float("inf"), strict=True, strict_max=True):
    """A finite float in the interval (``strict``: open at that end), else "expected {what}"."""

    def parse(text):
        check_number = _check_number

        try:
            value = float(text)
        except ValueError:
            value = None
        try:
            return check_number("value", value, minimum=minimum, maximum=maximum, strict=strict,
                                strict_max=strict_max)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None

    return parse


# Finite: inf and nan are refused (check_number refuses nan; the open upper bound inf).
_positive_float = _float_in("a positive number")
_fraction = _float_in("a number in [0, 1)", 0.0, 1.0, strict=False)
_learning_rate = _float_in(f"a positive number <= {MAX_LEARNING_RATE:g}", 0.0, MAX_LEARNING_RATE,
                           strict_max=False)


def _max_cost(text):
    from search.costs import parse_max_cost  # no TensorFlow: --help stays instant

    try:
        return parse_max_cost(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _csv_list(text):
    items = [t.strip().lower() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list, got an empty one")
    return items


def build_parser():
    from search.costs import TRIAL_COSTS  # no TensorFlow: --help stays instant

    p = _Parser(
        prog=PROG,
        description="KerasTuner architecture search over CNN attention (SA-Net, SimAM, "
        "Shift-and-Balance, DCANet): every configuration trained with the same recipe and seeds "
        "as the no-attention baseline, repeated, reported as mean +- std and a paired difference "
        "with its 95% interval.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    d = p.add_argument_group("data")
    d.add_argument("--dataset", default="fashion_mnist",
                   help="fashion_mnist (local IDX files, offline) or any TFDS name, e.g. cifar10")
    d.add_argument("--data-dir", default=None,
                   help="fashion_mnist: directory with the four IDX .gz files "
                   "(default /usr/share/datasets/fashion-mnist); TFDS: its data_dir")
    d.add_argument("--image-size", type=_non_negative_int, default=0,
                   help="input height = width in pixels; 0 = the dataset's native size (28 for "
                   "Fashion-MNIST; the keras.applications backbones need >= 32)")
    d.add_argument("--train-size", type=_non_negative_int, default=10000,
                   help="training images per search run (0 = all); the final runs use all")
    d.add_argument("--validation-split", type=_split, default=10000,
                   help="validation images held out of the training split (seeded, the same for "
                   "every run): a number of images, or a fraction in [0, 1) of train + validation")
    m = p.add_argument_group("model and search space")
    m.add_argument("--backbone", default="resnet20",
                   help="resnet20/32/44/56/110, mobilenetv2_cifar (the papers' small-image "
                   "networks) or a keras.applications family (mobilenetv2, resnet50, ...)")
    m.add_argument("--width", type=_positive_float, default=None,
                   help="MobileNet width multiplier alpha (default 0.35 for the MobileNets)")
    m.add_argument("--bn-momentum", type=_fraction, default=0.9,
                   help="BatchNorm momentum of the backbone (keras.applications' 0.999 leaves the "
                   "moving statistics unusable after a short run from scratch)")
    m.add_argument("--attention", type=_csv_list, default=None,
                   help="comma-separated attention types to search (default: sa,simam,sb,dca_se;"
                   " the baseline 'none' is always added)")
    m.add_argument("--placement", type=_csv_list, default=None,
                   help="comma-separated placements to search: block, layer, paper (default: "
                   "paper, each attention where its paper puts it)")
    m.add_argument("--hyperparameters", default="paper", choices=HYPERPARAMETER_MODES,
                   help="paper: groups, e_lambda, lambda_init, gate and connection fixed at the "
                   "papers' values (configurations differ only in attention and placement); "
                   "search: drawn by the tuner (a --space key always wins)")
    m.add_argument("--preset", default=None,
                   help="run a paper's table (or one row) as the search: each row a "
                   "configuration, the table's baseline first (see --list-presets)")
    m.add_argument("--list-presets", action="store_true",
                   help="print the presets (paper, table, row, parameters) and exit")
    m.add_argument("--space", default=None, metavar="FILE.json",
                   help="the search space as a JSON object: a list searches a key, a scalar fixes "
                   "it; keys: attention, placement, groups, e_lambda, lambda_init, gate, "
                   "connection, learning_rate and any constructor argument of the attentions "
                   "(e.g. {\"attention\": [\"sa\"], \"use_norm\": [true, false]})")
    t = p.add_argument_group("protocol, search and training")
    t.add_argument("--repeats", type=_positive_int, default=3,
                   help="runs per configuration, with seeds seed, seed+1, ... (the same for every "
                   "configuration and the baseline)")
    t.add_argument("--tuner", default="random", choices=TUNERS,
                   help="KerasTuner algorithm (random: balanced over attention x placement)")
    t.add_argument("--max-trials", type=_positive_int, default=None,
                   help="configurations in all, the baseline included (random, bayesian; "
                   "default: the baseline and every (attention, placement) pair once); "
                   "Hyperband sizes itself from --epochs")
    t.add_argument("--epochs", type=_positive_int, default=2, help="epochs per search run")
    t.add_argument("--final-epochs", type=_non_negative_int, default=2,
                   help="epochs to retrain the best configuration on the full training split: "
                   "best_model.keras, the model to keep (0: keep its search run with the first "
                   "seed); the comparison with the baseline on the test split uses the search "
                   "runs themselves")
    t.add_argument("--final-repeats", type=_positive_int, default=1,
                   help="seeds of the retraining of the best configuration (best_model.keras is "
                   "the first)")
    t.add_argument("--batch-size", type=_positive_int, default=64,
                   help="global batch size (64: twice the steps of 128 in a short run)")
    t.add_argument("--optimizer", default="sgd", choices=("sgd", "adam"),
                   help="SGD with momentum 0.9 and weight decay 5e-4 (the papers'), or Adam")
    t.add_argument("--learning-rate", type=_learning_rate, default=None,
                   help="the recipe's peak learning rate, cosine-annealed to 0 over each run "
                   "(default: SGD 0.1 x batch size / 128, the papers' 0.1 at 128 with the linear "
                   "scaling rule; Adam 3e-3)")
    t.add_argument("--search-learning-rate", action="store_true",
                   help="search the learning rate too (trials then differ in more than attention)")
    t.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="auto = mixed_float16 on a GPU, float32 on a CPU")
    t.add_argument("--strategy", default="auto", choices=STRATEGIES,
                   help="tf.distribute strategy; auto = MirroredStrategy over several GPUs")
    t.add_argument("--seed", type=_seed, default=0,
                   help="first seed: data split, oracle, initial weights and data order")
    c = p.add_argument_group("cost (search.costs)")
    c.add_argument("--max-cost", type=_max_cost, action="append", default=None,
                   metavar="MEASURE=LIMIT",
                   help="the best configuration must cost at most LIMIT: params_added, "
                   "flops_added (forward FLOPs per image), train_step or inference_step (time "
                   "ratio to the baseline's step), e.g. train_step=1.10; repeatable")
    c.add_argument("--objective", default="params_added", choices=TRIAL_COSTS,
                   help="--tuner nsga2/tpe: the cost minimised beside the mean validation "
                   "accuracy (flops: forward FLOPs per image, counted once per trial)")
    c.add_argument("--cost-steps", type=_non_negative_int, default=3,
                   help="timed train and inference steps per configuration and round (3 rounds) "
                   "for the step-time ratios; 0: no timing (FLOPs and parameters still counted)")
    o = p.add_argument_group("output")
    o.add_argument("--out", default="runs/search", help="output directory (re-run to resume)")
    o.add_argument("--overwrite", action="store_true",
                   help="start afresh, deleting a previous search in --out")
    o.add_argument("--export", action="append", choices=EXPORT_FORMATS, default=None,
                   metavar="{" + ",".join(EXPORT_FORMATS) + "}",
                   help="after the final stage, export the best model to OUT/export/best.tflite "
                   "(litert), best.onnx (onnx; needs pip install keras-attn[export]) or the "
                   "SavedModel directory best (saved_model); repeat for several formats")
    o.add_argument("--quiet", action="store_true",
                   help="no Keras output per epoch (default: a progress bar on a terminal, one "
                        "line per epoch otherwise)")
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
    g.add_argument("--worker-timeout", type=_positive_float, default=600.0,
                   help="chief: seconds without a heartbeat after which a worker's trial is "
                   "given to another worker; worker: seconds to wait for the chief to listen")
    return p


def parse_args(argv=None):
    args = build_parser().parse_args(argv)
    # The checks below (search spaces, presets) load TensorFlow: without its start-up lines.
    _import_tensorflow_quietly(args.debug)
    if args.role != "single":
        if not args.oracle or ":" not in args.oracle:
            raise CLIError(f"--role {args.role} needs --oracle HOST:PORT, got {args.oracle!r}")
        host, _, port = args.oracle.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise CLIError(f"--oracle must be HOST:PORT with a port in 1..65535, got {args.oracle!r}")
    elif args.oracle:
        raise CLIError("--oracle goes with --role chief or --role worker")
    last = args.seed + max(args.repeats, args.final_repeats) - 1
    if last > SEED_MAX:
        raise CLIError(
            f"--seed: expected seed + max(--repeats, --final-repeats) - 1 <= {SEED_MAX} (the "
            f"largest seed TensorFlow and NumPy take), got {args.seed} + "
            f"{max(args.repeats, args.final_repeats)} - 1 = {last} (see {PROG} --help)")
    args.dataset = args.dataset.lower()
    # One spelling per backbone, so that --backbone MobileNetV2_CIFAR resumes a mobilenetv2_cifar
    # search.
    key = args.backbone.lower().replace("-", "_")
    args.backbone = {b.replace("_", ""): b for b in _SMALL_BACKBONES}.get(key.replace("_", ""), key)
    if args.width is None and args.backbone.startswith("mobilenet") and args.preset is None:
        args.width = 0.35
    args.configurations = None
    if args.preset is not None:
        _apply_preset(args)
        args.space_values = None
    else:
        args.space_values = _load_space(args)
    if args.learning_rate is None and not args.search_learning_rate:
        args.learning_rate = 3e-3 if args.optimizer == "adam" else 0.1 * args.batch_size / 128
    if args.image_size and args.image_size < 32 and not _is_small(args.backbone):
        raise CLIError(
            f"--backbone {args.backbone} (keras.applications) needs --image-size >= 32, got "
            f"{args.image_size}; the small-image backbones ({', '.join(_SMALL_BACKBONES)}) take "
            "any size"
        )
    return args


def _apply_preset(args):
    """--preset NAME: the table's rows become the search's configurations (baseline first)."""
    for option in ("attention", "placement", "space"):
        if getattr(args, option) is not None:
            raise CLIError(f"--preset defines the configurations: drop --{option}")
    from keras_attn.presets import get_preset

    try:
        preset = get_preset(args.preset)
    except ValueError as err:
        raise CLIError(str(err).splitlines()[0]) from None
    rows = sorted(preset.rows, key=lambda r: not r.is_baseline)
    args.configurations = [(row.name, dict(row.model)) for row in rows]
    if not rows[0].is_baseline:
        # A table without its own static row (e.g. SB Table 9 compares gates): the baseline
        # still runs, the first row's network without attention.
        static = {k: v for k, v in rows[0].model.items()
                  if k not in ("attention", "placement", "attention_kwargs")}
        table = rows[0].name.split("/", 1)[0]
        args.configurations.insert(0, (f"{table}/no-attention", {**static, "attention": None}))
    backbones = {row.model.get("backbone") for row in rows}
    args.backbone = sorted(b for b in backbones if b)[0]
    args.width = None  # the rows carry their own width multipliers
    args.max_trials = len(args.configurations)


def _load_space(args):
    """``--space FILE.json`` merged with --attention/--placement (the baseline always added)."""
    space = {}
    if args.space:
        try:
            with open(args.space) as f:
                space = json.load(f)
        except OSError as err:
            raise CLIError(f"--space {args.space}: cannot read it ({err.strerror})") from None
        except ValueError as err:
            raise CLIError(f"--space {args.space}: not valid JSON ({err})") from None
        if not isinstance(space, dict):
            raise CLIError(f"--space {args.space}: expected a JSON object, got "
                           f"{type(space).__name__}")
    for key in ("attention", "placement"):
        given = getattr(args, key)
        if given is not None:
            if key in space:
                raise CLIError(f"'{key}' is given both by --{key} and in --space {args.space}; "
                               "give it once")
            space[key] = given
    attention = space.get("attention")
    if attention is not None:
        attention = [attention] if isinstance(attention, str) else list(attention)
        if "none" not in [str(a).lower() for a in attention]:
            space["attention"] = ["none", *attention]  # the baseline always runs
    if args.hyperparameters == "paper":
        from search.hypermodel import paper_space

        space = paper_space(space)
    elif "placement" not in space and args.configurations is None:
        space["placement"] = "paper"
    return space or None


# Spelled out (not imported from keras_attn.backbones, which imports Keras): --help stays instant.
_SMALL_BACKBONES = ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110",
                    "mobilenetv2_cifar")


def _is_small(backbone):
    return backbone in _SMALL_BACKBONES


def _validate_names(args):
    """Check names against the registries before any data is read or any model is built."""
    from keras_attn.backbones import SUPPORTED_BACKBONES
    from keras_attn.registry import available_attentions
    from search.hypermodel import PLACEMENTS

    backbones = [b.lower() for b in SUPPORTED_BACKBONES]
    if args.backbone.replace("_", "") not in [b.replace("_", "") for b in backbones]:
        raise CLIError(f"unknown --backbone {args.backbone!r}; valid: {', '.join(backbones)}")
    valid = ["none"] + available_attentions()
    for name in args.attention or []:
        if name not in valid:
            raise CLIError(f"unknown --attention {name!r}; valid: {', '.join(valid)}")
    for name in args.placement or []:
        if name not in PLACEMENTS:
            raise CLIError(f"unknown --placement {name!r}; valid: {', '.join(PLACEMENTS)}")
    if args.configurations is None:
        from search.hypermodel import count_configurations, normalize_space

        try:
            specs = normalize_space(args.space_values, args.optimizer,
                                    args.search_learning_rate, args.learning_rate)
        except ValueError as err:
            raise CLIError(f"--space: {err}") from None
        if args.max_trials is None:  # the baseline and every (attention, placement) pair once
            args.max_trials = count_configurations(specs)


def data_kwargs(args, **overrides):
    """``search.data.load_dataset`` arguments for parsed ``args`` (``overrides`` win)."""
    return {
        "name": args.dataset,
        "data_dir": args.data_dir,
        # 0: the native size; the small-image backbones take the native channels too, the
        # keras.applications ones 3 (grayscale repeated).
        "image_size": args.image_size or (None if _is_small(args.backbone) else 32),
        "channels": None if _is_small(args.backbone) else 3,
        "train_size": args.train_size or None,
        "validation_split": args.validation_split,
        "batch_size": args.batch_size,
        "seed": args.seed,
        **overrides,
    }


def _identity(args):
    return {k: getattr(args, k) for k in IDENTITY_KEYS}


def _is_search(out):
    """Whether directory ``out`` holds a keras-attn search: its marker file (written when a search
    starts), or the search_config.json every version writes."""
    from search.rundir import MARKER_FILE

    return any(os.path.isfile(os.path.join(out, f)) for f in (MARKER_FILE, CONFIG_FILE))


def _check_out_dir(args):
    """Refuse to resume into an --out made by a different search; record this one's identity.

    With --overwrite, a previous search in --out is moved aside (``OUT.old-<time>``, its name in
    ``args.replaced``), not deleted: :func:`_replace_done` deletes it once the new run has
    started, :func:`_replace_failed` puts it back if the new run fails before. A directory that
    is not a search is never deleted."""
    from search.rundir import MARKER_FILE, read_json, write_json, write_text

    out = args.out
    path = os.path.join(out, CONFIG_FILE)
    ident = _identity(args)
    old = {}
    args.replaced = None
    if args.role == "worker" and not os.path.exists(path):
        raise CLIError(
            f"--out {out} holds no search started by a chief ({CONFIG_FILE} is missing): give "
            "every worker the chief's --out (a shared directory) and the chief's options"
        )
    # A worker started before its chief may already have made the tuner project.
    contents = set(os.listdir(out)) - {"tuner", "logs"} if os.path.isdir(out) else set()
    if os.path.exists(out) and not os.path.isdir(out):
        raise CLIError(f"--out {out} is a file, not a directory; use another --out")
    if args.overwrite and args.role != "worker" and contents:
        if not _is_search(out):
            raise CLIError(f"--out {out} is not a keras-attn search (no {MARKER_FILE} or "
                           f"{CONFIG_FILE}): --overwrite deletes only a search; use another --out")
        args.replaced = f"{os.path.normpath(out)}.old-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        os.rename(out, args.replaced)
        contents = set()
    elif os.path.exists(path) and not args.overwrite:
        old = read_json(path, missing={}, kind=dict,
                        fix="restore it, or start afresh with --overwrite")
        diff = {k: (old.get(k), v) for k, v in ident.items() if old.get(k) != v}
        if diff:
            what = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in sorted(diff.items()))
            raise CLIError(
                f"--out {out} holds a different search ({what}); use another --out, the same "
                f"options to resume, or --overwrite to start afresh"
            )
    elif args.role != "worker" and contents and not _is_search(out):
        raise CLIError(f"--out {out} exists and is not a keras-attn search; use another --out "
                       "(a new or empty directory)")
    os.makedirs(out, exist_ok=True)
    if args.role != "worker":
        marker = os.path.join(out, MARKER_FILE)
        if not os.path.exists(marker):
            write_text(marker, "A keras-attn-search output directory (keras-attn-search --out); "
                       "--overwrite may replace it.\n")
        run = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
               **{k: getattr(args, k) for k in RUN_KEYS}}
        write_json(path, {**ident, "runs": list(old.get("runs", [])) + [run]})


def _replace_done(args):
    """The new run has started (options checked, data loaded): delete the search it replaces."""
    if getattr(args, "replaced", None):
        import shutil

        shutil.rmtree(args.replaced)
        _log(f"--overwrite: deleted the previous search (moved aside to {args.replaced})")
        args.replaced = None


def _replace_failed(args):
    """The new run failed before it started: put the replaced search back in --out."""
    if getattr(args, "replaced", None):
        import shutil

        shutil.rmtree(args.out, ignore_errors=True)
        os.rename(args.replaced, args.out)
        _log(f"--overwrite: this run did not start; the previous search is back in {args.out}")
        args.replaced = None


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


# TensorFlow's C++ lines from before absl logging is initialised ("oneDNN custom operations are
# on", "Could not find cuda drivers"): absl writes them to stderr whatever TF_CPP_MIN_LOG_LEVEL
# says, once per shared library that bundles its own copy of TensorFlow's logging (the framework
# and the profiler plugin: hence twice per run).
_ABSL_PREFIX = re.compile(r"^([IWEF])\d{4} ")
_ABSL_HEADER = "WARNING: All log messages before absl::InitializeLog() is called"


def _import_tensorflow_quietly(debug=False):
    """``import tensorflow`` with its start-up lines filtered by TF_CPP_MIN_LOG_LEVEL (I, W, E
    below the level dropped; anything else, e.g. a Python warning, passed through)."""
    try:
        level = int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        level = 0
    if debug or level <= 0 or "tensorflow" in sys.modules:
        return
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode("utf-8", "replace").splitlines(keepends=True)
            for line in lines:
                m = _ABSL_PREFIX.match(line)
                if line.startswith(_ABSL_HEADER) or (m and "IWEF".index(m.group(1)) < level):
                    continue
                sys.stderr.write(line)
            sys.stderr.flush()


def _log(msg):
    print(f"[{PROG}] {msg}", flush=True)


def main(argv=None):
    """Console entry point; returns the exit status."""
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    # Before TensorFlow loads: its C++ start-up chatter (no GPU found, ...) is noise to a user.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        args = parse_args(argv)
        if args.list_presets:
            from keras_attn.presets import list_presets

            print(list_presets())
            return 0
        return run(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    except Exception as exc:  # a user-facing tool: one line unless --debug
        if debug:
            raise
        from search.rundir import no_space_path

        full = no_space_path(exc)
        if full is not None:
            # Every file is written through a temporary one (search.rundir): the real files are
            # whole, and the same command resumes once there is space.
            print(f"{PROG}: error: no space left on device: {full}", file=sys.stderr)
            return 2
        if isinstance(exc, (CLIError, ValueError, FileNotFoundError)):
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        else:
            msg = f"{type(exc).__name__}: {exc}".strip().splitlines()[0] + " (re-run with --debug)"
        print(f"{PROG}: error: {msg}", file=sys.stderr)
        return 2


def _quiet_retracing_warning():
    """Every run builds a new model, so TensorFlow's "triggered tf.function retracing" warning
    fires on every trial; it is expected here (the overhead is measured and reported instead)."""
    import logging

    class _Filter(logging.Filter):
        def filter(self, record):
            return "triggered tf.function retracing" not in record.getMessage()

    logging.getLogger("tensorflow").addFilter(_Filter())


def _wait_for_chief(args):
    """A worker needs its chief: wait (bounded) until the oracle's address accepts connections,
    so that the chief has also written the search's options for _check_out_dir to compare."""
    import socket

    host, _, port = args.oracle.rpartition(":")
    deadline = time.time() + args.worker_timeout
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=2):
                return
        except OSError:
            if time.time() > deadline:
                raise CLIError(
                    f"no chief is listening at {args.oracle} (waited {args.worker_timeout:.0f}s):"
                    " start one with --role chief and the same options"
                ) from None
            time.sleep(1)


def run(args):
    t_start = time.time()
    _validate_names(args)
    if args.role == "worker":
        _wait_for_chief(args)
    if args.export and "onnx" in args.export and args.role != "worker":
        from keras_attn.export import _check_onnx_available

        try:
            _check_onnx_available()  # before the search, not after it
        except ImportError as err:
            raise CLIError(f"--export onnx: {err}") from None
    _check_out_dir(args)
    try:
        splits, context = _start(args)
    except BaseException:
        _replace_failed(args)
        raise
    _replace_done(args)
    return _search(args, splits, context, t_start)


def _start(args):
    """Everything up to the loaded data: once it returns, the run has started (see --overwrite)."""
    _setup_distributed(args)

    import keras

    from search import data as data_mod
    from search import training

    _quiet_retracing_warning()
    precision = training.resolve_precision(args.precision)
    strategy = training.resolve_strategy(args.strategy)
    keras.utils.set_random_seed(args.seed)
    if args.run_eagerly:
        import tensorflow as tf

        tf.config.run_functions_eagerly(True)
    _log(
        f"dataset={args.dataset} backbone={args.backbone} width={args.width} "
        f"precision={precision} strategy={type(strategy).__name__} "
        f"replicas={strategy.num_replicas_in_sync} repeats={args.repeats} role={args.role} "
        f"out={args.out}"
    )

    # The chief needs the data too: it retrains and tests the best configuration at the end.
    t0 = time.time()
    splits = data_mod.load_dataset(**data_kwargs(args))
    _log(f"data: {splits.sizes} images of {splits.input_shape} in {time.time() - t0:.1f}s")
    if args.role != "chief" and not splits.sizes.get("val"):
        raise CLIError("the comparison needs a validation set: --validation-split must be > 0")
    return splits, (precision, strategy)


def _search(args, splits, context, t_start):
    import keras

    from search import data as data_mod
    from search import final, report, training, tuning
    from search.protocol import Protocol

    precision, strategy = context
    protocol = Protocol.with_repeats(args.repeats, args.seed, train_data=splits.train_with_seed)
    tuner, hypermodel = tuning.make_tuner(
        backbone=args.backbone,
        input_shape=splits.input_shape,
        num_classes=splits.num_classes,
        out=args.out,
        epochs=args.epochs,
        steps_per_epoch=splits.steps_per_epoch["train"],
        tuner=args.tuner,
        max_trials=args.max_trials,
        seed=args.seed,
        precision=precision,
        strategy=strategy,
        protocol=protocol,
        space=args.space_values,
        configurations=args.configurations,
        backbone_kwargs={"alpha": args.width} if args.width is not None else None,
        optimizer=args.optimizer,
        learning_rate=args.learning_rate,
        search_learning_rate=args.search_learning_rate,
        bn_momentum=args.bn_momentum,
        debug=args.debug,
        objective_cost=args.objective,
    )
    callbacks = [keras.callbacks.TensorBoard(log_dir=os.path.join(args.out, "logs"))]
    t_search = time.time()
    if args.role == "chief":
        _log(f"chief: serving the oracle on {args.oracle}; waiting for workers")
        tuning.serve_oracle(tuner, worker_timeout=args.worker_timeout)
    else:
        tuner.search(
            splits.train,
            validation_data=splits.val,
            epochs=args.epochs,
            callbacks=callbacks,
            verbose=training.fit_verbosity(args.quiet),
        )
    search_seconds = time.time() - t_search
    if args.role == "worker":
        _log(f"worker done in {time.time() - t_start:.0f}s")
        return 0

    from search.costs import measure_costs

    board = report.configuration_rows(report.collect_trials(tuner),
                                      num_classes=splits.num_classes)
    costs = measure_costs(board, tuner, hypermodel, batch_size=args.batch_size, out=args.out,
                          n_steps=args.cost_steps, strategy=strategy)
    _log(f"costs measured in {costs['seconds']:.0f}s ({costs['how']})")
    report.add_costs(board, costs)
    report.write_leaderboard(board, args.out)
    plots = report.plot_configurations(board, args.out) + report.plot_pareto(board, args.out)
    best, baseline = report.best_and_baseline(board, args.max_cost)
    if args.max_cost and best is None:
        _log("no attention configuration meets --max-cost "
             + ", ".join(f"{m}={v:g}" for m, v in args.max_cost) + "; the baseline is kept")
    if baseline is None or not baseline["repeats"]:
        raise CLIError(f"the baseline (no attention) did not finish; see "
                       f"{os.path.join(args.out, 'leaderboard.md')}")
    print(report.analysis_text(board), flush=True)
    print(report.leaderboard_text(board), flush=True)

    full = None
    if args.final_epochs:
        # Every training image, no validation hold-out: the choice is made, only the test is left.
        full = data_mod.load_dataset(**data_kwargs(args, train_size=None, validation_split=0.0))
    result = final.finalize(
        out=args.out, tuner=tuner, hypermodel=hypermodel, best=best, baseline=baseline,
        seeds=list(protocol.seeds),
        final_seeds=list(range(args.seed, args.seed + args.final_repeats)),
        final_epochs=args.final_epochs, strategy=strategy,
        full_train=None if full is None else full.train_with_seed, test_data=splits.test,
        verbose=training.fit_verbosity(args.quiet),
    )
    grad_cam_png = _grad_cam_figure(args, splits, with_best=best is not None)
    if grad_cam_png:
        plots = list(plots) + [grad_cam_png]
    exports = _export_best(args)
    summary = report.write_summary(
        args.out,
        board=board,
        final=result,
        costs=costs,
        plots=plots,
        exports=[os.path.relpath(p, args.out) for p in exports],
        timings={"search": round(search_seconds, 1),
                 "final": result["train_seconds"],
                 "total": round(time.time() - t_start, 1)},
        config={**_identity(args), **{k: getattr(args, k) for k in RUN_KEYS},
                "precision": precision, "strategy": type(strategy).__name__,
                "replicas": strategy.num_replicas_in_sync},
        versions=_versions(),
    )
    for line in report.summary_lines(summary):
        _log(line)
    return 0


def _load_final_model(args, filename):
    import keras

    import keras_attn  # noqa: F401  (registers the layers for load_model)

    return keras.models.load_model(os.path.join(args.out, filename), compile=False)


def _grad_cam_figure(args, splits, with_best):
    """``grad_cam_best_vs_baseline.png``: the final best and baseline models' Grad-CAM on the
    first test images. Returns its path, or None (with a line saying why) when it cannot be
    drawn; a figure never fails the search."""
    from search import final, report

    if not with_best:
        _log("Grad-CAM figure skipped: no attention configuration finished")
        return None
    # The two search runs with the first seed: the same initial weights and data, one differing
    # only in its attention.
    paths = [os.path.join(args.out, f) for f in (final.BEST_SEARCH_MODEL_FILE,
                                                  final.BASELINE_MODEL_FILE)]
    missing = [os.path.basename(p) for p in paths if not os.path.exists(p)]
    if missing:  # a search whose final stage predates baseline_model.keras
        _log(f"Grad-CAM figure skipped: {', '.join(missing)} missing in {args.out}")
        return None
    try:
        import numpy as np

        batch = splits.test.unbatch().take(GRAD_CAM_IMAGES).batch(GRAD_CAM_IMAGES)
        images, labels = next(iter(batch))
        path = report.plot_grad_cam(
            _load_final_model(args, final.BEST_SEARCH_MODEL_FILE),
            _load_final_model(args, final.BASELINE_MODEL_FILE),
            np.asarray(images), np.asarray(labels), splits.class_names,
            os.path.join(args.out, report.GRAD_CAM_FILE),
        )
    except Exception as exc:  # noqa: BLE001  (a figure must not cost the search's answer)
        if getattr(args, "debug", False):
            raise
        _log(f"Grad-CAM figure skipped: {type(exc).__name__}: {exc}".splitlines()[0])
        return None
    _log(f"Grad-CAM, best vs baseline: {path}")
    return path


def _export_best(args):
    """Export ``best_model.keras`` to ``OUT/export/best.<ext>`` in each ``--export`` format;
    returns the paths written."""
    if not args.export:
        return []
    from keras_attn.export import default_path, export_model

    from search import final

    model = _load_final_model(args, final.BEST_MODEL_FILE)
    paths = []
    from search.rundir import atomic_path

    for fmt in dict.fromkeys(args.export):  # once per format, in the order given
        path = default_path(os.path.join(args.out, "export", "best"), fmt)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        old = None
        if os.path.isdir(path):  # a SavedModel directory: os.replace cannot replace a full one
            old = f"{path}.old-{os.getpid()}"
            os.replace(path, old)
        try:
            with atomic_path(path) as tmp:  # a killed export leaves no half an artifact
                export_model(model, tmp, fmt)
        except BaseException:
            if old is not None:
                os.replace(old, path)
            raise
        if old is not None:
            import shutil

            shutil.rmtree(old, ignore_errors=True)
        _log(f"exported the best model ({fmt}): {path}")
        paths.append(path)
    return paths


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
