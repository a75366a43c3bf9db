"""One search's configuration: a frozen dataclass built once from the parsed options.

:class:`SearchConfig` is made by :func:`from_options` from the namespace of ``search.cli``'s parser,
resolved (defaults that depend on other options: the learning rate, the MobileNet width, a
preset's configurations, the number of trials) and validated there, before any data is read or
any model is built. Everything after it (``search.pipeline``) reads the config and never changes
it.

It has three parts:

* **what is measured** (:meth:`SearchConfig.identity`): the data (:class:`DataSpec`), the model
  (:class:`ModelSpec`), the training recipe (:class:`search.recipe.Recipe`) and the seed (which
  draws the training subset and the validation images). A resumed ``--out`` must have been made
  with the same identity (another ``--data-dir`` would mix two datasets in one leaderboard,
  another ``--precision`` other numerics). The identity is the fields of those parts
  (``dataclasses.asdict``), not a list of names kept beside them. Every stored run is keyed by
  it (:meth:`SearchConfig.measured` adds what only the device tells: the resolved precision,
  the replicas, the library versions).
* **the plan** (:class:`SpaceSpec` and the repeats): which configurations, which seeds, which
  stages and tuner. It may change between runs on one ``--out``: the runs it shares with an
  earlier plan are reused from the run store (:mod:`search.store`), not trained again.
* **how a run goes** (:class:`RunOptions`): how far the search goes, the final retraining, the
  devices, the role. A resume may change them; each run's are recorded (``search_config.json``).

The rest (:class:`Session`: the output directory, verbosity, the distributed address) is neither
measured nor recorded.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported on use: this module loads no TensorFlow (--help stays instant)
    from search.recipe import Recipe

#: Runs per configuration and first seed are part of the identity; TensorFlow's, NumPy's and
#: Python's seeds (keras.utils.set_random_seed sets all three) must be in [0, 2**32 - 1].
SEED_MAX = 2**32 - 1
#: The command's name, in its messages.
PROG = "keras-attn-search"
#: Epochs per search run (``--epochs``): 313 steps at batch 64 on 10,000 images.
SEARCH_EPOCHS = 2
#: ``--hyperparameters``: each attention's hyperparameters fixed at its paper's values, or drawn.
HYPERPARAMETER_MODES = ("paper", "search")


class CLIError(ValueError):
    """A user error in the options: printed as one line on stderr, exit status 2."""


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """The data every run sees (see ``search.data.load_dataset``)."""

    dataset: str = "fashion_mnist"
    data_dir: str | None = None
    image_size: int = 0  # 0: the dataset's native size (32 for keras.applications backbones)
    train_size: int = 10000  # 0: all
    validation_split: float = 10000  # an int >= 1: images; else a fraction
    batch_size: int = 64


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """The network every configuration puts its attention into."""

    backbone: str = "resnet20"
    width: float | None = None  # the MobileNets' alpha
    bn_momentum: float = 0.9
    precision: str = "auto"  # as given: "auto" is resolved on the device that runs it


@dataclasses.dataclass(frozen=True)
class SpaceSpec:
    """Which configurations the search compares and how it picks them."""

    attention: tuple | None = None  # --attention as given (the baseline is added to the space)
    placement: tuple | None = None
    hyperparameters: str = "paper"
    space_values: dict | None = None  # the space the hypermodel gets (search.space)
    preset: str | None = None
    tuner: str = "random"
    objective: str = "params_added"  # the multi-objective tuners' cost
    stages: tuple = ("which", "where")  # search.stages.STAGES, in order
    where_trials: int = 4  # configurations the "where" stage draws besides the baseline
    schedule: str = "full"  # "full": every seed for every configuration; "race"
    # A preset's rows, (name, build_model kwargs), baseline first: derived from ``preset``.
    configurations: tuple | None = dataclasses.field(default=None,
                                                     metadata={"identity": False})


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How a run goes; a resume may change these (each run's are recorded)."""

    max_trials: int = 1
    final_epochs: int = 2
    final_repeats: int = 1
    strategy: str = "auto"
    role: str = "single"
    run_eagerly: bool = False
    worker_timeout: float = 600.0
    export: tuple | None = None
    max_cost: tuple | None = None  # ((measure, limit), ...)
    cost_steps: int = 3
    validate_every_epoch: bool = False


@dataclasses.dataclass(frozen=True)
class Session:
    """Where this process writes and what it shows: neither measured nor recorded."""

    out: str = "runs/search"
    overwrite: bool = False
    quiet: bool = False
    debug: bool = False
    oracle: str | None = None  # HOST:PORT of the chief
    worker_id: str | None = None


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """A whole search: see the module docstring."""

    data: DataSpec
    model: ModelSpec
    recipe: Recipe
    space: SpaceSpec
    seed: int = 0
    repeats: int = 3
    run: RunOptions = RunOptions()
    session: Session = Session()

    _IDENTITY_PARTS = ("data", "model", "recipe")

    @property
    def seeds(self):
        """The search's seeds: one run per configuration and seed."""
        return tuple(range(self.seed, self.seed + self.repeats))

    @property
    def final_seeds(self):
        """The seeds of the retraining of the kept model."""
        return tuple(range(self.seed, self.seed + self.run.final_repeats))

    def identity(self):
        """``{option: value}`` of what is measured (flat: the names are the options')."""
        ident = {}
        for part in self._IDENTITY_PARTS:
            value = getattr(self, part)
            for f in dataclasses.fields(value):
                if f.metadata.get("identity", True):
                    ident[f.name] = _plain(getattr(value, f.name))
        ident.update(seed=self.seed)
        return ident

    def measured(self, precision, replicas, versions):
        """The measured context every stored run of this search is keyed by
        (:class:`search.store.RunKey`): :meth:`identity` with the precision as resolved on
        the device, the number of replicas (BatchNorm statistics are per replica), and
        ``versions`` (the libraries whose versions change the numbers: TensorFlow, Keras)."""
        ident = self.identity()
        ident.update(precision=precision, replicas=int(replicas))
        ident["versions"] = _plain(dict(versions))
        ident.pop("epochs", None)  # a run's epochs are in its key (Hyperband rounds differ)
        return ident

    def plan_record(self):
        """``{option: value}`` of the plan (what may change on one ``--out``), recorded per run."""
        plan = {f.name: _plain(getattr(self.space, f.name))
                for f in dataclasses.fields(self.space) if f.metadata.get("identity", True)}
        plan.update(repeats=self.repeats)
        return plan

    def run_record(self):
        """``{option: value}`` of how this run goes (recorded per run)."""
        return _plain(dataclasses.asdict(self.run))

    def identity_differences(self, recorded):
        """``{option: (recorded, now)}`` where ``recorded`` (an earlier run's identity) differs.
        An option a recorded identity lacks (written before the option existed) counts as its
        default."""
        defaults = _identity_defaults()
        return {k: (recorded.get(k, defaults.get(k)), v) for k, v in self.identity().items()
                if recorded.get(k, defaults.get(k)) != v}


def _plain(value: Any):
    """``value`` as JSON gives it back (tuples as lists), so that a recorded identity compares
    equal to the one it was made from."""
    return json.loads(json.dumps(value, default=str))


def _identity_defaults():
    from search.recipe import Recipe

    defaults = {}
    for part in (DataSpec, ModelSpec, Recipe):
        for f in dataclasses.fields(part):
            if f.default is not dataclasses.MISSING:
                defaults[f.name] = _plain(f.default)
    defaults["seed"] = SearchConfig.seed  # the one part of the identity outside the specs
    return defaults


# ------------------------------------------------------------------ from the parsed options


def from_options(options):
    """The :class:`SearchConfig` of ``options`` (``search.cli``'s parsed namespace), resolved and
    validated.

    Raises:
        CLIError: an option's value, or a combination of options, that no search can run (the
            message names the option, the value and the valid ones).
    """
    _check_role(options)
    _check_seeds(options)
    _check_hyperband(options)
    model = _model_spec(options)
    space, model = _space_spec(options, model)
    recipe = _recipe(options)
    configurations = _count_configurations(space, recipe)  # validates the space, always
    run = RunOptions(
        max_trials=options.max_trials or configurations,
        final_epochs=options.final_epochs, final_repeats=options.final_repeats,
        strategy=options.strategy, role=options.role, run_eagerly=options.run_eagerly,
        worker_timeout=options.worker_timeout,
        export=tuple(options.export) if options.export else None,
        max_cost=tuple(tuple(m) for m in options.max_cost) if options.max_cost else None,
        cost_steps=options.cost_steps,
        validate_every_epoch=options.validate_every_epoch)
    return SearchConfig(
        data=DataSpec(dataset=options.dataset.lower(), data_dir=options.data_dir,
                      image_size=options.image_size, train_size=options.train_size,
                      validation_split=options.validation_split, batch_size=options.batch_size),
        model=model, recipe=recipe, space=space, seed=options.seed, repeats=options.repeats,
        run=run,
        session=Session(out=options.out, overwrite=options.overwrite, quiet=options.quiet,
                        debug=options.debug, oracle=options.oracle, worker_id=options.worker_id))


def _check_role(options):
    if options.role != "single":
        if not options.oracle or ":" not in options.oracle:
            raise CLIError(f"--role {options.role} needs --oracle HOST:PORT, got "
                           f"{options.oracle!r}")
        host, _, port = options.oracle.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise CLIError(f"--oracle must be HOST:PORT with a port in 1..65535, got "
                           f"{options.oracle!r}")
    elif options.oracle:
        raise CLIError("--oracle goes with --role chief or --role worker")
    if options.role == "worker" and options.overwrite:
        raise CLIError("--overwrite is the chief's: a worker never replaces a search (give it "
                       "the chief's options without --overwrite)")


def _check_seeds(options):
    runs = max(options.repeats, options.final_repeats)
    last = options.seed + runs - 1
    if last > SEED_MAX:
        raise CLIError(
            f"--seed: expected seed + max(--repeats, --final-repeats) - 1 <= {SEED_MAX} (the "
            f"largest seed TensorFlow and NumPy take), got {options.seed} + {runs} - 1 = {last} "
            f"(see {PROG} --help)")


def _check_hyperband(options):
    """``--tuner hyperband`` sizes itself from ``--epochs`` (its ``max_epochs``): refuse an
    ``--epochs`` whose brackets hold one configuration each (only the baseline, which the
    protocol runs first, would train) and a ``--max-trials`` it would ignore."""
    if options.tuner != "hyperband":
        return
    from search.kt_private import hyperband_new_configurations
    from search.tuner_names import HYPERBAND_FACTOR

    def sizes(epochs):
        return hyperband_new_configurations(epochs, HYPERBAND_FACTOR)

    if max(sizes(options.epochs)) < 2:
        # (2 with KerasTuner 1.4's brackets, for any factor: asked of them, not assumed.)
        minimum = next(e for e in itertools.count(options.epochs + 1) if max(sizes(e)) > 1)
        raise CLIError(
            f"--tuner hyperband needs --epochs >= {minimum}: at --epochs {options.epochs} each "
            "of its brackets holds one configuration, so only the baseline would train; give "
            f"--epochs {minimum} or more, or use --tuner random")
    if options.max_trials is not None:
        brackets = sizes(options.epochs)
        raise CLIError(
            f"--max-trials does not apply to --tuner hyperband: at --epochs {options.epochs} it "
            f"tries {sum(brackets)} configurations (brackets of "
            f"{', '.join(map(str, brackets))}), set by --epochs; drop --max-trials, or use "
            "--tuner random or bayesian")


def _model_spec(options):
    from keras_attn.backbones import SMALL_IMAGE_BACKBONES, SUPPORTED_BACKBONES, canonical_backbone

    try:
        # One spelling per backbone: --backbone MobileNetV2_CIFAR resumes a mobilenetv2_cifar
        # search.
        backbone = canonical_backbone(options.backbone)
    except ValueError:
        raise CLIError(f"unknown --backbone {options.backbone!r}; valid: "
                       f"{', '.join(SUPPORTED_BACKBONES)}") from None
    small = backbone in SMALL_IMAGE_BACKBONES
    if options.image_size and options.image_size < 32 and not small:
        raise CLIError(
            f"--backbone {backbone} (keras.applications) needs --image-size >= 32, got "
            f"{options.image_size}; the small-image backbones "
            f"({', '.join(SMALL_IMAGE_BACKBONES)}) take any size")
    width = options.width
    if width is None and backbone.startswith("mobilenet") and options.preset is None:
        width = 0.35
    return ModelSpec(backbone=backbone, width=width, bn_momentum=options.bn_momentum,
                     precision=options.precision)


def _recipe(options):
    from search.recipe import Recipe

    learning_rate = options.learning_rate
    if learning_rate is None and not options.search_learning_rate:
        # SGD: the papers' 0.1 at batch 128, scaled linearly with the batch size.
        learning_rate = 3e-3 if options.optimizer == "adam" else 0.1 * options.batch_size / 128
    return Recipe(optimizer=options.optimizer, learning_rate=learning_rate,
                  search_learning_rate=options.search_learning_rate, epochs=options.epochs)


def _space_spec(options, model):
    """The space (or a preset's configurations) and the model it implies (a preset's rows
    carry their own backbone and width)."""
    common = dict(attention=_as_tuple(options.attention), placement=_as_tuple(options.placement),
                  hyperparameters=options.hyperparameters, preset=options.preset,
                  tuner=options.tuner, objective=options.objective,
                  stages=_stages(options), where_trials=options.where_trials,
                  schedule=options.schedule)
    if options.preset is None:
        _check_names(options)
        return SpaceSpec(space_values=_space_values(options), **common), model
    configurations = _preset_configurations(options)
    backbones = sorted({kw.get("backbone") for _, kw in configurations} - {None})
    model = dataclasses.replace(model, backbone=backbones[0], width=None)
    return SpaceSpec(configurations=configurations, **common), model


def _stages(options):
    """``--stages`` checked: known names, in their order, the first stage first; a preset's
    table has only the first."""
    from search.stages import DEFAULT_STAGES, STAGES

    stages = tuple(options.stages) if options.stages is not None else DEFAULT_STAGES
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise CLIError(f"unknown --stages {unknown[0]!r}; valid: {', '.join(STAGES)}")
    if len(set(stages)) != len(stages) or list(stages) != [s for s in STAGES if s in stages] \
            or stages[0] != STAGES[0]:
        raise CLIError(f"--stages must start with {STAGES[0]} and keep the order "
                       f"{','.join(STAGES)}, got {','.join(stages)}")
    if options.preset is not None and options.stages is None:
        return stages[:1]  # a table is compared as it is
    if options.preset is not None and len(stages) > 1:
        raise CLIError(f"--preset runs its table as the stage {STAGES[0]!r} only; drop --stages "
                       f"{','.join(stages)}")
    if options.schedule == "race" and options.role != "single":
        raise CLIError("--schedule race runs in one process: it is not offered with --role "
                       f"{options.role}")
    return stages


def _as_tuple(values):
    return None if values is None else tuple(values)


def _check_names(options):
    from keras_attn.registry import NO_ATTENTION, available_attentions
    from keras_attn.placement import PLACEMENTS

    valid = [NO_ATTENTION] + available_attentions()
    for name in options.attention or []:
        if name not in valid:
            raise CLIError(f"unknown --attention {name!r}; valid: {', '.join(valid)}")
    for name in options.placement or []:
        if name not in PLACEMENTS:
            raise CLIError(f"unknown --placement {name!r}; valid: {', '.join(PLACEMENTS)}")


def _preset_configurations(options):
    """--preset NAME: the table's rows as the search's configurations (baseline first)."""
    for option in ("attention", "placement", "space"):
        if getattr(options, option) is not None:
            raise CLIError(f"--preset defines the configurations: drop --{option}")
    from keras_attn.presets import get_preset

    try:
        preset = get_preset(options.preset)
    except ValueError as err:
        raise CLIError(str(err).splitlines()[0]) from None
    rows = sorted(preset.rows, key=lambda r: not r.is_baseline)
    configurations = [(row.name, dict(row.model)) for row in rows]
    if not rows[0].is_baseline:
        # A table without its own static row (e.g. SB Table 9 compares gates): the baseline
        # still runs, the first row's network without attention.
        static = {k: v for k, v in rows[0].model.items()
                  if k not in ("attention", "placement", "attention_kwargs")}
        table = rows[0].name.split("/", 1)[0]
        configurations.insert(0, (f"{table}/no-attention", {**static, "attention": None}))
    return tuple(configurations)


def _space_values(options):
    """``--space FILE.json`` merged with --attention/--placement (the baseline always added)."""
    from keras_attn.registry import NO_ATTENTION

    space = _read_space_file(options.space) if options.space else {}
    for key in ("attention", "placement"):
        given = getattr(options, key)
        if given is not None:
            if key in space:
                raise CLIError(f"'{key}' is given both by --{key} and in --space "
                               f"{options.space}; give it once")
            space[key] = list(given)
    attention = space.get("attention")
    if attention is not None:
        attention = [attention] if isinstance(attention, str) else list(attention)
        if NO_ATTENTION not in [str(a).lower() for a in attention]:
            space["attention"] = [NO_ATTENTION, *attention]  # the baseline always runs
    if options.hyperparameters == "paper":
        from search.space import paper_space

        space = paper_space(space)
    elif "placement" not in space:
        from search.space import PAPER_PLACEMENT

        space["placement"] = PAPER_PLACEMENT
    return space or None


def _read_space_file(path):
    try:
        with open(path) as f:
            space = json.load(f)
    except OSError as err:
        raise CLIError(f"--space {path}: cannot read it ({err.strerror})") from None
    except ValueError as err:
        raise CLIError(f"--space {path}: not valid JSON ({err})") from None
    if not isinstance(space, dict):
        raise CLIError(f"--space {path}: expected a JSON object, got {type(space).__name__}")
    return space


def _count_configurations(space, recipe):
    """The default --max-trials: a preset's rows, or the baseline and every (attention,
    placement) pair once. Validates the space on the way."""
    if space.configurations is not None:
        return len(space.configurations)
    from search.space import count_configurations, normalize_space

    try:
        specs = normalize_space(space.space_values, recipe.optimizer,
                                recipe.search_learning_rate, recipe.learning_rate)
    except ValueError as err:
        raise CLIError(f"--space: {err}") from None
    return count_configurations(specs)
