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
import sys

# The defaults are the config's (its dataclasses' fields): one owner per default.
from search.config import (HYPERPARAMETER_MODES, PROG, SEARCH_EPOCHS, CLIError, DataSpec,
                           ModelSpec, RunOptions, SearchConfig, Session, SpaceSpec, from_options)
from search.option_types import (csv_list, export_format, fraction, learning_rate, max_cost,
                                 non_negative_int, positive_float, positive_int, seed, split)
from search.quiet_import import import_tensorflow_quietly as _import_tensorflow_quietly
from search.roles import ROLES
from search.training_choices import OPTIMIZERS, PRECISIONS, SUPPORTED_STRATEGIES
from search.schedule import RUN_SCHEDULES
from search.tuner_names import TUNERS

__all__ = ["CLIError", "build_parser", "main", "parse_args"]


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        raise CLIError(f"{message} (see {PROG} --help)")


def build_parser():
    """The ``argparse`` parser of every option (its errors raise :class:`CLIError`)."""
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
    d.add_argument("--dataset", default=DataSpec.dataset,
                   help="fashion_mnist (local IDX files, offline) or any TFDS name, e.g. cifar10")
    d.add_argument("--data-dir", default=None,
                   help="fashion_mnist: directory with the four IDX files, .gz or plain (default "
                   "/usr/share/datasets/fashion-mnist; images as bytes 0-255 or as floats in "
                   "[0, 1]); TFDS: its data_dir")
    d.add_argument("--image-size", type=non_negative_int, default=DataSpec.image_size,
                   help="input height = width in pixels; 0 = the dataset's native size (28 for "
                   "Fashion-MNIST; the keras.applications backbones need >= 32)")
    d.add_argument("--train-size", type=non_negative_int, default=DataSpec.train_size,
                   help="training images per search run (0 = all); the final runs use all")
    d.add_argument("--validation-split", type=split, default=DataSpec.validation_split,
                   help="validation images held out of the training split (seeded, the same for "
                   "every run): a number of images, or a fraction in [0, 1) of train + validation")


def _model_options(p):
    """The network and the configurations the search compares."""
    m = p.add_argument_group("model and search space")
    m.add_argument("--backbone", default=ModelSpec.backbone,
                   help="resnet20/32/44/56/110, mobilenetv2_cifar (the papers' small-image "
                   "networks) or a keras.applications family (mobilenetv2, resnet50, ...)")
    m.add_argument("--width", type=positive_float, default=None,
                   help="MobileNet width multiplier alpha (default 0.35 for the MobileNets)")
    m.add_argument("--bn-momentum", type=fraction, default=ModelSpec.bn_momentum,
                   help="BatchNorm momentum of the backbone (keras.applications' 0.999 leaves the "
                   "moving statistics unusable after a short run from scratch)")
    m.add_argument("--attention", type=csv_list, default=None,
                   help="comma-separated attention types to search (default: sa,simam,sb,dca_se;"
                   " the baseline 'none' is always added)")
    m.add_argument("--placement", type=csv_list, default=None,
                   help="comma-separated placements to search: block, layer, paper (default: "
                   "paper, each attention where its paper puts it)")
    m.add_argument("--hyperparameters", default=SpaceSpec.hyperparameters,
                   choices=HYPERPARAMETER_MODES,
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
    t.add_argument("--repeats", type=positive_int, default=SearchConfig.repeats,
                   help="runs per configuration, with seeds seed, seed+1, ... (the same for every "
                   "configuration and the baseline)")
    t.add_argument("--stages", type=csv_list, default=None,
                   help="comma-separated stages, in order: which (the configurations of the "
                   "space) and where (per block vs per layer and the hyperparameters around the "
                   "paper's, for the attention 'which' ranks highest); default which,where "
                   "(which alone for --preset). Runs an earlier stage or search trained in "
                   "--out are reused")
    t.add_argument("--where-trials", type=positive_int, default=SpaceSpec.where_trials,
                   help="configurations the 'where' stage draws besides the baseline")
    t.add_argument("--schedule", default=SpaceSpec.schedule, choices=RUN_SCHEDULES,
                   help="full: every configuration runs every seed; race: seeds are added only "
                   "to configurations the blocked model cannot yet separate from the leader")
    t.add_argument("--tuner", default=SpaceSpec.tuner, choices=TUNERS,
                   help="KerasTuner algorithm (random: balanced over attention x placement)")
    t.add_argument("--max-trials", type=positive_int, default=None,
                   help="configurations in all, the baseline included (random, bayesian, "
                   "nsga2, tpe; default: the baseline and every (attention, placement) pair "
                   "once); refused with hyperband, which sizes itself from --epochs (>= 2)")
    t.add_argument("--epochs", type=positive_int, default=SEARCH_EPOCHS,
                   help="epochs per search run")
    t.add_argument("--final-epochs", type=non_negative_int, default=RunOptions.final_epochs,
                   help="epochs to retrain the best configuration on the full training split: "
                   "best_model.keras, the model to keep (0: keep its search run with the first "
                   "seed); the comparison with the baseline on the test split uses the search "
                   "runs themselves")
    t.add_argument("--final-repeats", type=positive_int, default=RunOptions.final_repeats,
                   help="seeds of the retraining of the best configuration (best_model.keras is "
                   "the first)")
    t.add_argument("--batch-size", type=positive_int, default=DataSpec.batch_size,
                   help="global batch size, at most the training images of a search run (64: "
                   "twice the steps of 128 in a short run)")
    t.add_argument("--optimizer", default=OPTIMIZERS[0], choices=OPTIMIZERS,
                   help="SGD with momentum 0.9 and weight decay 5e-4 (the papers'), or Adam")
    t.add_argument("--learning-rate", type=learning_rate, default=None,
                   help="the recipe's peak learning rate, cosine-annealed to 0 over each run "
                   "(default: SGD 0.1 x batch size / 128, the papers' 0.1 at 128 with the linear "
                   "scaling rule; Adam 3e-3)")
    t.add_argument("--search-learning-rate", action="store_true",
                   help="search the learning rate too (trials then differ in more than attention)")
    t.add_argument("--precision", default=ModelSpec.precision, choices=PRECISIONS,
                   help="auto = mixed_float16 on a GPU, float32 on a CPU")
    t.add_argument("--strategy", default=RunOptions.strategy, choices=SUPPORTED_STRATEGIES,
                   help="tf.distribute strategy; auto = MirroredStrategy over several GPUs")
    t.add_argument("--seed", type=seed, default=SearchConfig.seed,
                   help="first seed: data split, oracle, initial weights and data order")


def _cost_options(p):
    """What a configuration may cost (search.costs)."""
    from search.costs import TRIAL_COSTS  # no TensorFlow: --help stays instant

    c = p.add_argument_group("cost (search.costs)")
    c.add_argument("--max-cost", type=max_cost, action="append", default=None,
                   metavar="MEASURE=LIMIT",
                   help="the best configuration must cost at most LIMIT: params_added, "
                   "flops_added (forward FLOPs per image), train_step or inference_step (time "
                   "ratio to the baseline's step), e.g. train_step=1.10; repeatable")
    c.add_argument("--objective", default=SpaceSpec.objective, choices=TRIAL_COSTS,
                   help="--tuner nsga2/tpe: the cost minimised beside the mean validation "
                   "accuracy (flops: forward FLOPs per image, counted once per trial)")
    c.add_argument("--cost-steps", type=non_negative_int, default=RunOptions.cost_steps,
                   help="timed train and inference steps per configuration and round (3 rounds) "
                   "for the step-time ratios; 0: no timing (FLOPs and parameters still counted)")


def _output_options(p):
    """Where the search writes and what it shows."""
    o = p.add_argument_group("output")
    o.add_argument("--out", default=Session.out, help="output directory (re-run to resume)")
    o.add_argument("--overwrite", action="store_true",
                   help="start afresh, deleting a previous search in --out")
    o.add_argument("--export", action="append", type=export_format, default=None,
                   metavar="FORMAT",
                   help="after the final stage, export the best model to OUT/export/best.tflite "
                   "(litert), best.onnx (onnx; needs pip install keras-attn[export]) or the "
                   "SavedModel directory best (saved_model); repeat for several formats")
    o.add_argument("--quiet", action="store_true",
                   help="no Keras output per epoch (default: a progress bar on a terminal, one "
                        "line per epoch otherwise)")
    o.add_argument("--debug", action="store_true", help="show tracebacks")
    o.add_argument("--validate-every-epoch", action="store_true",
                   help="validate after every epoch (per-epoch curves in each run's record and "
                   "TensorBoard); default: once, after the last epoch, the only value used")
    o.add_argument("--run-eagerly", action="store_true",
                   help="no tf.function tracing: for debugging, and for tiny runs where tracing "
                   "a backbone (20-40 s on a 2-core CPU) costs more than training")


def _distributed_options(p):
    """KerasTuner's distributed tuning: a chief and its workers."""
    g = p.add_argument_group("distributed tuning (KerasTuner chief + workers over gRPC)")
    g.add_argument("--role", default=RunOptions.role, choices=tuple(ROLES),
                   help="chief serves the oracle and writes the report; workers run trials")
    g.add_argument("--oracle", default=None, metavar="HOST:PORT",
                   help="the chief's address (required with --role chief/worker)")
    g.add_argument("--worker-id", default=None,
                   help="unique worker name (default: worker-<pid>)")
    g.add_argument("--worker-timeout", type=positive_float, default=RunOptions.worker_timeout,
                   help="chief: seconds without a heartbeat after which a worker's trial is "
                   "given to another worker; worker: seconds to wait for the chief to listen, "
                   "at the start and whenever it stops listening (then the worker stops)")


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
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return 2


def _one_line(exc):
    """What a user reads of ``exc``: a full disk names the file; a user error (``ValueError``,
    e.g. a :class:`CLIError` or a damaged file, or a missing file) its first line; anything else
    its type and first line, and how to see more."""
    from search.rundir import no_space_path

    full = no_space_path(exc)
    if full is not None:
        # Every file is written through a temporary one (search.rundir): the real files are
        # whole, and the same command resumes once there is space.
        return f"no space left on device: {full}"
    if isinstance(exc, (ValueError, FileNotFoundError)):
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"{type(exc).__name__}: {exc}".strip().splitlines()[0] + " (re-run with --debug)"

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
