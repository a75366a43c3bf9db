"""AttentionHyperModel: builds and trains a search trial's model (a KerasTuner HyperModel).

What a trial may be is :mod:`search.space`'s (the hyperparameters, declared on the trial's
``keras_tuner.HyperParameters``); how every trial trains is :class:`search.recipe.Recipe`'s.
The space's names are re-exported here (``normalize_space``, ``paper_space``,
``count_configurations``, ``describe_hyperparameters``, ``trial_row``, ``HP_NAMES``, ...).
"""

from __future__ import annotations

import dataclasses
import math
import time
import weakref

import keras_tuner

from keras_attn.backbones import set_bn_momentum
from keras_attn.registry import NO_ATTENTION, attention_argument
from keras_attn.validation import check_number, check_shape
from search import space as _space
from search import training
from search.recipe import Recipe
# Re-exported: the CLI, the tuners and the tests import the space's names from here.
from search.space import (
    DEFAULT_ATTENTIONS,
    DEFAULT_PLACEMENT,
    DEFAULT_PLACEMENTS,
    LEARNING_RATE,
    PLACEMENTS,
    HyperparameterSpec,
    SearchSpace,
    count_configurations,
    describe_hyperparameters,
    hyperparameter_names,
    normalize_space,
    paper_space,
    trial_row,
)

__all__ = [
    "AttentionHyperModel", "DEFAULT_ATTENTIONS", "DEFAULT_PLACEMENT", "DEFAULT_PLACEMENTS",
    "HP_NAMES", "HyperparameterSpec", "PLACEMENTS", "SearchSpace", "count_configurations",
    "describe_hyperparameters", "hyperparameter_names", "normalize_space", "paper_space",
    "trial_row",
]


def __getattr__(name):
    if name == "HP_NAMES":  # follows the registry, as search.space.HP_NAMES
        return _space.HP_NAMES
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _is_dataset(x):
    import tensorflow as tf

    return isinstance(x, tf.data.Dataset)


def _check_backbone(backbone):
    """Fail at construction, not in every trial, on an unknown backbone name (build_model's own
    name check, so that every spelling it takes, ``mobilenetv2_cifar`` included, is taken)."""
    from keras_attn.backbones import _backbone_key

    _backbone_key(backbone)


@dataclasses.dataclass(frozen=True)
class _Compiled:
    """What ``fit`` needs to re-span the schedule of a model ``build`` compiled."""

    learning_rate: float
    schedule_for: tuple | None  # (epochs, steps_per_epoch) the schedule spans; None: constant
    optimizer: object  # a tuner that recompiles the model replaces it: then fit leaves it alone


class AttentionHyperModel(keras_tuner.HyperModel):
    """KerasTuner HyperModel over attention type, placement and their hyperparameters.

    ``build(hp)`` sets the precision policy (KerasTuner's per-trial ``clear_session`` resets the
    global one), declares the hyperparameters (:mod:`search.space`), builds
    ``keras_attn.build_model(...)`` and compiles it with :func:`search.training.compile_model`
    and the recipe. KerasTuner calls it under its ``distribution_strategy.scope()`` when given
    one, so the model and its optimiser are mirrored. ``fit(hp, model, ...)`` adds
    :class:`search.training.StopOnNaN` (a diverging trial is recorded as ``FAILED`` and the
    search goes on) and, when ``build`` could not know the run length, recompiles the
    learning-rate schedule for the actual ``epochs`` and steps per epoch.

    Works with ``RandomSearch``, ``BayesianOptimization`` and ``Hyperband`` (whose rounds each
    get a schedule over their own ``epochs - initial_epoch``).

    Args:
        backbone: ``keras_attn.build_model`` backbone name (default ``"mobilenetv2"``).
        input_shape: ``(H, W, C)`` (default ``(32, 32, 3)``).
        num_classes: number of classes (default 10).
        precision: ``"float32"`` (default), ``"mixed_float16"``, ``"mixed_bfloat16"`` or
            ``"auto"`` (resolved once, here; see :func:`search.training.resolve_precision`).
        backbone_kwargs: extra arguments of the backbone constructor (e.g. ``{"alpha": 0.35}``).
        space: restrictions of the search space (see :mod:`search.space`); default the full
            default space.
        recipe: the training recipe, a :class:`search.recipe.Recipe` (default None: built from
            the recipe keywords below, or ``Recipe()``).
        **recipe_arguments: instead of ``recipe``, its fields as keywords: ``optimizer``,
            ``learning_rate``, ``search_learning_rate``, ``schedule``, ``warmup_epochs``,
            ``epochs_hint`` (the recipe's ``epochs``), ``steps_per_epoch``, ``momentum``,
            ``nesterov``, ``weight_decay``, ``label_smoothing``.
        weights: backbone weights (default None: random init; ``"imagenet"`` needs a download).
        dropout: dropout before the head (default 0.0).
        bn_momentum: momentum of every BatchNormalization's moving statistics (default 0.9, i.e.
            PyTorch's 0.1 as in the papers' code; None keeps the backbone's). ``keras.applications``
            backbones use 0.99-0.999, whose moving statistics are still near their initial values
            after the few hundred steps of a search trial: validation accuracy at chance level
            while training accuracy climbs.
        model_builder: callable with ``keras_attn.build_model``'s signature (default
            ``keras_attn.build_model``); for custom backbones and tests.
        configurations: instead of a space, a list of named models to compare, e.g. the rows
            of a paper's table (``keras_attn.presets``): ``(name, build_kwargs)`` pairs, where
            ``build_kwargs`` are ``keras_attn.build_model`` arguments (backbone, attention,
            placement, attention_kwargs, backbone arguments) without input shape, classes and
            seed. The first is the baseline; the search chooses among them with one
            hyperparameter, ``configuration`` (``space`` must then be None).
        track_build_info: after each ``build``, store facts about the model in
            ``last_build_info``: ``params``, ``params_added`` (by attention, from
            ``keras_attn.attention_summary``), ``attention_layers``, ``build_seconds``
            (default False).
        name, tunable: as ``keras_tuner.HyperModel``.

    Attributes:
        recipe: the :class:`search.recipe.Recipe`; space: the :class:`search.space.SearchSpace`.

    Raises:
        ValueError: an invalid ``space`` (see :func:`search.space.normalize_space`), recipe
            (see :class:`search.recipe.Recipe`), both ``recipe`` and recipe keywords, precision,
            input shape or class count.
        TypeError: a keyword that is neither an argument nor a recipe field.
    """

    def __init__(
        self,
        backbone="mobilenetv2",
        input_shape=(32, 32, 3),
        num_classes=10,
        precision="float32",
        backbone_kwargs=None,
        space=None,
        *,
        recipe=None,
        weights=None,
        dropout=0.0,
        bn_momentum=0.9,
        model_builder=None,
        track_build_info=False,
        configurations=None,
        name=None,
        tunable=True,
        **recipe_arguments,
    ):
        super().__init__(name=name, tunable=tunable)
        self.recipe = _resolve_recipe(recipe, recipe_arguments)
        shape = check_shape("input_shape (height, width, channels)", input_shape, rank=3,
                            allow_none_dims=False)
        check_number("num_classes", num_classes, minimum=2, integer=True)
        if model_builder is None:
            _check_backbone(backbone)
        self.backbone = backbone
        self.input_shape = tuple(int(d) for d in shape)
        self.num_classes = int(num_classes)
        self.precision = training.resolve_precision(precision)
        self.backbone_kwargs = dict(backbone_kwargs or {})
        self.configurations = None
        if configurations is not None:
            if space is not None:
                raise ValueError("Give `configurations` or `space`, not both.")
            self.configurations = _check_configurations(configurations)
        self.space = normalize_space(space, self.recipe.optimizer,
                                     self.recipe.search_learning_rate, self.recipe.learning_rate)
        self.weights = weights
        self.dropout = dropout
        self.bn_momentum = check_number("bn_momentum", bn_momentum, minimum=0.0, maximum=1.0,
                                        strict_max=True, allow_none=True)
        self.model_builder = model_builder
        self.track_build_info = bool(track_build_info)
        self.last_build_info = {}
        # Models build() compiled, weakly: fit re-spans their schedule over the actual run.
        self._compiled = weakref.WeakKeyDictionary()

    # ----------------------------------------------------------------- hyperparameters

    def declare(self, hp):
        """Declare this space's hyperparameters on ``hp`` and return the trial's configuration.

        Returns:
            ``{"attention": str, "placement": str | None, "attention_kwargs": dict,
            "learning_rate": float}`` (``placement`` is None for ``"none"``); with
            ``configurations``, also ``"configuration"`` (its name) and ``"model"`` (its
            ``build_model`` arguments).
        """
        if self.configurations is None:
            return self.space.declare(hp)
        names = list(self.configurations)
        name = hp.Choice("configuration", names, default=names[0])
        kwargs = dict(self.configurations[name])
        learning_rate = self.space[LEARNING_RATE].declare(hp)
        attention = kwargs.get("attention") or NO_ATTENTION
        baseline = attention_argument(attention) is None
        return {"attention": attention,
                "placement": None if baseline else kwargs.get("placement", DEFAULT_PLACEMENT),
                "attention_kwargs": dict(kwargs.get("attention_kwargs") or {}),
                "learning_rate": float(learning_rate), "configuration": name,
                "model": kwargs}

    # ----------------------------------------------------------------- build / fit

    def _builder(self):
        if self.model_builder is not None:
            return self.model_builder
        from keras_attn import build_model

        return build_model

    def _build_arguments(self, config, seed):
        """``build_model``'s arguments for a trial's configuration."""
        if "model" in config:  # a named configuration: its own backbone and arguments
            kwargs = {"weights": self.weights, "dropout": self.dropout, **config["model"]}
        else:
            kwargs = {"backbone": self.backbone, "weights": self.weights,
                      "dropout": self.dropout, **self.backbone_kwargs}
        kwargs.update(
            input_shape=self.input_shape,
            num_classes=self.num_classes,
            attention=attention_argument(config["attention"]),
            placement=config["placement"] or DEFAULT_PLACEMENT,
            attention_kwargs=config["attention_kwargs"],
            **({} if seed is None else {"seed": int(seed)}),
        )
        return kwargs

    def _compile(self, model, learning_rate, epochs, steps_per_epoch):
        recipe = self.recipe
        # Until the run length is known, a constant rate keeps the model usable as returned.
        known = steps_per_epoch is not None or not recipe.needs_steps
        training.compile_model(
            model,
            optimizer=recipe.optimizer,
            learning_rate=learning_rate,
            momentum=recipe.momentum,
            nesterov=recipe.nesterov,
            weight_decay=recipe.weight_decay,
            schedule=recipe.schedule if known else "constant",
            warmup_epochs=recipe.warmup_epochs if known else 0,
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            label_smoothing=recipe.label_smoothing,
        )
        self._compiled[model] = _Compiled(learning_rate,
                                          (epochs, steps_per_epoch) if known else None,
                                          model.optimizer)
        return model

    def configuration(self, hp):
        """The canonical configuration of the trial ``hp`` (:func:`canonical_configuration`):
        what its runs are keyed by in the run store."""
        return canonical_configuration(self.declare(hp))

    def build_configuration(self, configuration, seed=None, epochs=None, steps_per_epoch=None):
        """Build and compile the model of a canonical ``configuration`` (from
        :meth:`configuration` or a stored run), as :meth:`build` builds a trial's."""
        return self._build_config(_declared_form(configuration), seed, epochs, steps_per_epoch)

    def build(self, hp, epochs=None, steps_per_epoch=None, seed=None):
        """Build and compile the trial's model (see the class docstring).

        Args:
            hp: the trial's ``keras_tuner.HyperParameters``.
            epochs, steps_per_epoch: the run the learning-rate schedule spans, for this build
                (default: the recipe's ``epochs`` and ``steps_per_epoch``); e.g. to retrain the
                best configuration for longer.
            seed: passed to the model builder (``keras_attn.build_model(seed=...)``): the
                backbone's and head's initial weights depend on it alone, not on the attention
                (default None: unseeded).

        Returns:
            A compiled ``keras.Model``.
        """
        return self._build_config(self.declare(hp), seed, epochs, steps_per_epoch)

    def _build_config(self, config, seed, epochs, steps_per_epoch):
        start = time.perf_counter()
        training.set_precision(self.precision)
        model = self._builder()(**self._build_arguments(config, seed))
        if self.bn_momentum is not None:
            set_bn_momentum(model, self.bn_momentum)
        self._compile(model, config["learning_rate"], epochs or self.recipe.epochs or 1,
                      steps_per_epoch or self.recipe.steps_per_epoch)
        if self.track_build_info:
            self.last_build_info = _build_info(model, time.perf_counter() - start, config)
        return model

    @staticmethod
    def _infer_steps(args, kwargs):
        x = args[0] if args else kwargs.get("x")
        if _is_dataset(x):
            n = int(x.cardinality())
            return n if n > 0 else None
        if hasattr(x, "shape") and getattr(x, "shape", None):
            return max(1, math.ceil(int(x.shape[0]) / int(kwargs.get("batch_size") or 32)))
        return None

    def fit_model(self, model, *args, **kwargs):
        """:meth:`fit` without a trial's ``hp`` (which it does not use): how the run store's
        trainer fits a configuration's model."""
        return self.fit(None, model, *args, **kwargs)

    def fit(self, hp, model, *args, **kwargs):
        """``model.fit(*args, **kwargs)`` plus :class:`search.training.StopOnNaN`, with the
        learning-rate schedule matched to this run's ``epochs - initial_epoch`` and steps per epoch.

        Raises:
            keras_tuner.errors.FailedTrialError: the loss became NaN/inf (the trial fails, the
                search continues).
            keras_tuner.errors.FatalValueError: the schedule needs the steps per epoch and neither
                the recipe nor the data tells them (stops the search: every trial would fail).
        """
        x = args[0] if args else kwargs.get("x")
        if _is_dataset(x):
            # A tf.data pipeline shuffles itself; Keras warns on every fit otherwise.
            kwargs.setdefault("shuffle", False)
        callbacks = list(kwargs.pop("callbacks", None) or [])
        if not any(isinstance(c, training.StopOnNaN) for c in callbacks):
            callbacks.append(training.StopOnNaN())
        state = self._compiled.get(model)
        # Recompile only a model compiled by build() and not re-compiled since (e.g. by a tuner
        # given its own optimizer).
        if state is not None and model.optimizer is state.optimizer and self.recipe.needs_steps:
            self._respan_schedule(model, state, args, kwargs)
        return model.fit(*args, callbacks=callbacks, **kwargs)

    def _respan_schedule(self, model, state, args, kwargs):
        epochs = max(1, int(kwargs.get("epochs", 1)) - int(kwargs.get("initial_epoch", 0)))
        # The data's own length wins over the recipe's: the recipe's is the trials' length, and
        # a final retraining on the full split must not decay to zero after the trials' number
        # of steps.
        steps = (kwargs.get("steps_per_epoch") or self._infer_steps(args, kwargs)
                 or self.recipe.steps_per_epoch)
        if steps is None:
            raise keras_tuner.errors.FatalValueError(
                f"schedule={self.recipe.schedule!r} needs the number of training batches per "
                "epoch: pass steps_per_epoch to AttentionHyperModel (or fit), or give fit a "
                "tf.data.Dataset of known cardinality."
            )
        if state.schedule_for != (epochs, steps):
            with model.distribute_strategy.scope():
                self._compile(model, state.learning_rate, epochs, steps)


def _resolve_recipe(recipe, recipe_arguments):
    """The hypermodel's Recipe: ``recipe``, or one built from the old recipe keywords."""
    if recipe is None:
        return Recipe.from_arguments(**recipe_arguments)
    if recipe_arguments:
        raise ValueError(f"Give `recipe` or the recipe keywords "
                         f"({', '.join(sorted(recipe_arguments))}), not both.")
    if not isinstance(recipe, Recipe):
        raise ValueError(f"`recipe` must be a search.recipe.Recipe or None; got "
                         f"{type(recipe).__name__}.")
    return recipe


def _check_configurations(configurations):
    """``{name: build_kwargs}`` from ``(name, kwargs)`` pairs (or a dict), first = baseline."""
    items = list(configurations.items()) if isinstance(configurations, dict) else \
        list(configurations)
    if not items:
        raise ValueError("`configurations` is empty: give at least the baseline.")
    out = {}
    for item in items:
        if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str)
                and isinstance(item[1], dict)):
            raise ValueError(f"`configurations` items must be (name, build_model kwargs); got "
                             f"{item!r}.")
        name, kwargs = item
        bad = {"input_shape", "num_classes", "seed"} & set(kwargs)
        if bad:
            raise ValueError(f"configuration {name!r}: {sorted(bad)} come from the data and "
                             "the protocol, not the configuration.")
        if name in out:
            raise ValueError(f"configuration names must be unique; {name!r} repeats.")
        out[name] = dict(kwargs)
    return out


def model_facts(model):
    """``params`` of a built model, and ``params_added``, ``attention_layers`` of its attention
    (left out for a custom builder's model the attention summary cannot read)."""
    from keras_attn.placement import attention_summary

    facts = {"params": int(model.count_params())}
    try:
        summary = attention_summary(model)
    except Exception:  # noqa: BLE001 - a custom model: the parameter count is still a fact
        return facts
    facts.update(params_added=int(summary.total_params), attention_layers=len(summary))
    return facts


def _build_info(model, seconds, config):
    """The facts ``track_build_info`` keeps about a built model (see AttentionHyperModel)."""
    info = {"params_added": 0, "attention_layers": 0, **model_facts(model),
            "build_seconds": round(seconds, 3)}
    if "configuration" in config:
        info.update(attention=config["attention"], placement=config["placement"] or "")
    return info


def canonical_configuration(config):
    """A trial's configuration (:meth:`AttentionHyperModel.declare`'s dict) in the form the run
    store keys runs by: the same model always gives the same dict.

    * the baseline: ``{"attention": "none", "learning_rate": lr}``;
    * an attention: ``{"attention", "placement", "attention_kwargs", "learning_rate"}``, the
      placement as :func:`keras_attn.placement.equivalent_placement` names it (SA's
      ``"paper"`` is ``"block"``), the arguments sorted;
    * a named configuration (a preset's row): ``{"configuration": name, "model": build_model
      kwargs, "learning_rate": lr}``.
    """
    from keras_attn.placement import equivalent_placement
    from search.store import plain

    learning_rate = float(config["learning_rate"])
    if "model" in config:
        return {"configuration": config["configuration"], "model": plain(config["model"]),
                "learning_rate": learning_rate}
    attention = config["attention"]
    if attention_argument(attention) is None:
        return {"attention": NO_ATTENTION, "learning_rate": learning_rate}
    placement = config.get("placement") or DEFAULT_PLACEMENT
    return {"attention": attention,
            "placement": equivalent_placement(attention, placement),
            "attention_kwargs": plain(dict(sorted((config.get("attention_kwargs") or {}).items()))),
            "learning_rate": learning_rate}


def _declared_form(configuration):
    """A canonical configuration back in :meth:`AttentionHyperModel.declare`'s form."""
    config = dict(configuration)
    if "model" in config:
        model = dict(config["model"])
        attention = model.get("attention") or NO_ATTENTION
        baseline = attention_argument(attention) is None
        return {"attention": attention,
                "placement": None if baseline else model.get("placement", DEFAULT_PLACEMENT),
                "attention_kwargs": dict(model.get("attention_kwargs") or {}),
                "learning_rate": float(config["learning_rate"]),
                "configuration": config["configuration"], "model": model}
    return {"attention": config["attention"], "placement": config.get("placement"),
            "attention_kwargs": dict(config.get("attention_kwargs") or {}),
            "learning_rate": float(config["learning_rate"])}


def configuration_parts(configuration):
    """``(attention, placement, hyperparameters)`` of a canonical configuration, for reports:
    the hyperparameters are its attention arguments (and the learning rate only when the space
    searched it is the caller's business)."""
    config = _declared_form(configuration)
    placement = config["placement"]
    if isinstance(placement, (list, tuple)):
        placement = "+".join(placement)
    return config["attention"], placement or "", dict(config["attention_kwargs"])


def configuration_label(configuration):
    """A canonical configuration in words: ``"sa/block groups=64"``, ``"none (baseline)"``, a
    named configuration's name."""
    if "model" in configuration:
        return str(configuration.get("configuration", "?"))
    attention, placement, kwargs = configuration_parts(configuration)
    if attention == NO_ATTENTION:
        return "none (baseline)"
    args = " ".join(f"{k}={format(v, '.3g') if isinstance(v, float) else v}"
                    for k, v in sorted(kwargs.items()))
    return " ".join(filter(None, [f"{attention}/{placement}", args]))
