"""``keras-attn-search`` / ``python -m search``: the attention architecture search, end to end.

With no options it runs the embedded main job on the real Fashion-MNIST (offline, from Debian's
``dataset-fashion-mnist``) at its native 28x28x1 in the CIFAR ResNet-20: the baseline (no
attention) and SA, SimAM, SB and DCA-SE, each at its paper placement with its paper
hyperparameters, every configuration trained with the same recipe and the same seeds
(``--repeats``; shared initial backbone weights and data order per seed) on a training subset;
a leaderboard from the blocked model of all runs (seeds as blocks, one pooled variance,
simultaneous 95% intervals against the baseline that hold when the noise differs and over every
look, the minimum detectable effect: :mod:`search.decision`) and the cost of each configuration
(:mod:`search.costs`); then the search runs of the baseline and of every configuration that
could have been the best tested on the test split, and the best configuration retrained on the
full training split (``best_model.keras``).

Re-running the same command resumes (KerasTuner reloads its project; an unfinished trial runs
again without the repeats it had finished). ``--role chief|worker --oracle HOST:PORT`` runs
KerasTuner's distributed tuning over gRPC, every process pointing at the same ``--out``.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

from search.config import PROG, CLIError, HYPERPARAMETER_MODES, from_options
from search.roles import ROLES
from search.training_choices import OPTIMIZERS, PRECISIONS, SUPPORTED_STRATEGIES
from search.tuner_names import TUNERS

__all__ = ["CLIError", "build_parser", "main", "parse_args"]


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        raise CLIError(f"{message} (see {PROG} --help)")


# TensorFlow takes sizes, counts and steps as int32 (tf.data batch sizes, image sizes, step
# counters): a larger int option would fail deep inside it, or overflow.
INT32_MAX = 2**31 - 1
# A peak learning rate above this diverges with any recipe here (SGD's and Adam's are 0.1 and
# 3e-3 at batch 128; the linear scaling rule gives 0.1 x batch / 128): a larger value is a typo.
MAX_LEARNING_RATE = 10.0


def _check_number(*args, **kwargs):
    """``keras_attn.validation.check_number``. Importing ``keras_attn`` loads TensorFlow: only
    when an option that needs it is given (``--help`` stays instant), with TensorFlow's start-up
    lines filtered."""
    _import_tensorflow_quietly("--debug" in sys.argv[1:])
    from keras_attn.validation import check_number

    return check_number(*args, **kwargs)


def _int_at_least(minimum, what, maximum=INT32_MAX):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        try:
            _check_number("value", value, minimum=minimum, integer=True)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value > maximum:
            raise argparse.ArgumentTypeError(
                f"expected an integer in [{minimum}, {maximum}], got {text!r}")
        return value

    return parse


def _seed_max():
    from search.config import SEED_MAX

    return SEED_MAX


_positive_int = _int_at_least(1, "a positive integer")
_non_negative_int = _int_at_least(0, "an integer >= 0")
_seed = _int_at_least(0, "an integer >= 0", maximum=_seed_max())


def _split(text):
    """An int >= 1 is a number of images, anything else a fraction in [0, 1)."""
    if text.strip().isdigit() and int(text) >= 1:
        return _positive_int(text)
    return _fraction(text)


def _float_in(what, minimum=0.0, maximum=float("inf"), strict=True, strict_max=True):
    """A finite float in the interval (``strict``: open at that end), else "expected {what}"."""

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            value = None
        try:
            return _check_number("value", value, minimum=minimum, maximum=maximum,
                                 strict=strict, strict_max=strict_max)
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


def _export_format(text):
    _import_tensorflow_quietly("--debug" in sys.argv[1:])
    from keras_attn.export import FORMATS

    if text not in FORMATS:
        raise argparse.ArgumentTypeError(
            f"invalid choice: {text!r} (choose from {', '.join(map(repr, FORMATS))})")
    return text


def _csv_list(text):
    items = [t.strip().lower() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list, got an empty one")
    return items


def build_parser():
    p = _Parser(
        prog=PROG,
        description="KerasTuner architecture search over CNN attention (SA-Net, SimAM, "
        "Shift-and-Balance, DCANet): every configuration trained with the same recipe and seeds "
        "as the no-attention baseline, repeated, reported as mean +- std and a paired difference "
        "with its 95% interval.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _data_options(p)
    _model_options(p)
    _protocol_options(p)
    _cost_options(p)
    _output_options(p)
    _distributed_options(p)
    return p


def _data_options(p):
    """What every run trains and is validated on."""
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


def _model_options(p):
    """The network and the configurations the search compares."""
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


def _protocol_options(p):
    """The comparison protocol, the tuner and the training recipe."""
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
    t.add_argument("--optimizer", default="sgd", choices=OPTIMIZERS,
                   help="SGD with momentum 0.9 and weight decay 5e-4 (the papers'), or Adam")
    t.add_argument("--learning-rate", type=_learning_rate, default=None,
                   help="the recipe's peak learning rate, cosine-annealed to 0 over each run "
                   "(default: SGD 0.1 x batch size / 128, the papers' 0.1 at 128 with the linear "
                   "scaling rule; Adam 3e-3)")
    t.add_argument("--search-learning-rate", action="store_true",
                   help="search the learning rate too (trials then differ in more than attention)")
    t.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="auto = mixed_float16 on a GPU, float32 on a CPU")
    t.add_argument("--strategy", default="auto", choices=SUPPORTED_STRATEGIES,
                   help="tf.distribute strategy; auto = MirroredStrategy over several GPUs")
    t.add_argument("--seed", type=_seed, default=0,
                   help="first seed: data split, oracle, initial weights and data order")


def _cost_options(p):
    """What a configuration may cost (search.costs)."""
    from search.costs import TRIAL_COSTS  # no TensorFlow: --help stays instant

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


def _output_options(p):
    """Where the search writes and what it shows."""
    o = p.add_argument_group("output")
    o.add_argument("--out", default="runs/search", help="output directory (re-run to resume)")
    o.add_argument("--overwrite", action="store_true",
                   help="start afresh, deleting a previous search in --out")
    o.add_argument("--export", action="append", type=_export_format, default=None,
                   metavar="FORMAT",
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


def _distributed_options(p):
    """KerasTuner's distributed tuning: a chief and its workers."""
    g = p.add_argument_group("distributed tuning (KerasTuner chief + workers over gRPC)")
    g.add_argument("--role", default="single", choices=tuple(ROLES),
                   help="chief serves the oracle and writes the report; workers run trials")
    g.add_argument("--oracle", default=None, metavar="HOST:PORT",
                   help="the chief's address (required with --role chief/worker)")
    g.add_argument("--worker-id", default=None,
                   help="unique worker name (default: worker-<pid>)")
    g.add_argument("--worker-timeout", type=_positive_float, default=600.0,
                   help="chief: seconds without a heartbeat after which a worker's trial is "
                   "given to another worker; worker: seconds to wait for the chief to listen")



def parse_args(argv=None):
    """The :class:`search.config.SearchConfig` of the command line ``argv`` (default
    ``sys.argv[1:]``); ``--list-presets`` gives None.

    Raises:
        CLIError: an invalid option (one line, naming it and the valid values).
    """
    options = build_parser().parse_args(argv)
    if options.list_presets:
        return None
    # What follows (backbones, spaces, presets) loads TensorFlow: without its start-up lines.
    _import_tensorflow_quietly(options.debug)
    return from_options(options)


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


def main(argv=None):
    """Console entry point; returns the exit status."""
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    # Before TensorFlow loads: its C++ start-up chatter (no GPU found, ...) is noise to a user.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        config = parse_args(argv)
        if config is None:
            from keras_attn.presets import list_presets

            print(list_presets())
            return 0
        from search import pipeline

        return pipeline.run(config)
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
        if isinstance(exc, (ValueError, FileNotFoundError)):
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        else:
            msg = f"{type(exc).__name__}: {exc}".strip().splitlines()[0] + " (re-run with --debug)"
        print(f"{PROG}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
