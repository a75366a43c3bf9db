"""The search space: which attention, where, with which hyperparameters (a KerasTuner HyperModel).

Hyperparameters (all with explicit defaults; ``*`` marks the choices of the default space):

* ``attention``: none*, sa*, simam*, sb*, dca_se*, dca_cbam, dca_sb, se, cbam, eca (and any
  registered name); default none.
* ``placement`` (attention not none): block*, layer*, paper; default block.
* ``groups`` (sa): 8*, 16*, 32*, 64*, SA-Net's G (the placement uses the largest that divides the
  channels); default 64.
* ``e_lambda`` (simam): 1e-1* ... 1e-6*, SimAM's sweep; default 1e-4.
* ``lambda_init`` (sb, dca_sb): 0.01*, 0.05*, 0.1*, 0.5*, 1.0* (SB paper, Table 8); default 0.1.
* ``gate`` (sb, dca_sb): tanh*, sigmoid*, softmax*, relu*, none* (SB paper, Table 9); default tanh.
* ``connection`` (dca_se, dca_cbam, dca_sb): direct*, weighted*, softmax* (DCANet); default direct.
* ``learning_rate``: fixed (``hp.Fixed``) at the recipe's rate unless searched: the comparison
  protocol trains every configuration with one recipe, so that trials differ only in their
  attention. ``search_learning_rate=True`` (or a ``learning_rate`` key in ``space``) searches it:
  log-uniform 0.01-0.2 around 0.1 (SGD), 1e-3-1e-2 around 3e-3 (Adam).

Conditional hyperparameters live in ``hp.conditional_scope("attention", [...])``, so a trial only
carries (and the oracle only samples) the ones its attention uses; ``placement`` is absent for
``none``.

``space`` restricts or fixes any of them: a list is the set of choices, a scalar fixes the value
(``hp.Fixed``), and ``learning_rate`` also takes ``{"min": a, "max": b}`` (log-uniform, optional
``"default"``). Example: ``{"attention": ["sb"], "placement": "layer", "gate": ["tanh", "sigmoid"]}``.
"""

from __future__ import annotations

import math
import numbers
import time

import keras_tuner

from keras_attn.backbones import set_bn_momentum
from keras_attn.validation import check_choice, check_number, check_shape
from search import training

ATTENTIONS = ("none", "sa", "simam", "sb", "dca_se", "dca_cbam", "dca_sb", "se", "cbam", "eca")
DEFAULT_ATTENTIONS = ("none", "sa", "simam", "sb", "dca_se")
# The layers' own choice lists, not copies: a new gate or connection is searchable at once.
from keras_attn.layers.deep_connected import CONNECTIONS  # noqa: E402
from keras_attn.layers.shift_and_balance import GATES  # noqa: E402
from keras_attn.placement import PLACEMENTS  # noqa: E402

DEFAULT_PLACEMENTS = ("block", "layer")
GROUPS = (8, 16, 32, 64)
E_LAMBDAS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
LAMBDA_INITS = (0.01, 0.05, 0.1, 0.5, 1.0)
DCA_ATTENTIONS = ("dca_se", "dca_cbam", "dca_sb")
SB_ATTENTIONS = ("sb", "dca_sb")

# Learning-rate defaults (the fixed recipe) and search ranges per optimiser. SGD 0.1 at batch 128
# is the SB paper's CIFAR recipe (Sec. 5.3, kuangliu/pytorch-cifar); measured here: ResNet-20 on
# Fashion-MNIST 28x28, one epoch of 55,000 images, cosine to 0: test accuracy 0.899 (SGD 0.1,
# Nesterov) and 0.897 (Adam 3e-3).
LEARNING_RATES = {"sgd": (0.01, 0.2, 0.1), "adam": (1e-3, 1e-2, 3e-3)}

# Conditional hyperparameters: name -> (attentions that use it, default choices, default value,
# the layer argument it sets).
CONDITIONAL = {
    "groups": (("sa",), GROUPS, 64, "groups"),
    "e_lambda": (("simam",), E_LAMBDAS, 1e-4, "e_lambda"),
    "lambda_init": (SB_ATTENTIONS, LAMBDA_INITS, 0.1, "lambda_init"),
    "gate": (SB_ATTENTIONS, GATES, "tanh", "gate"),
    "connection": (DCA_ATTENTIONS, CONNECTIONS, "direct", "connection"),
}

HP_NAMES = ("attention", "placement", *CONDITIONAL, "learning_rate")


def _valid_attentions():
    try:
        from keras_attn.registry import available_attentions

        extra = tuple(n for n in available_attentions() if n not in ATTENTIONS)
    except Exception:  # pragma: no cover - a broken layer module must not hide the message
        extra = ()
    return ATTENTIONS + extra


def _is_number(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _check_value(key, value):
    """Normalise one value of ``space[key]``; raise a ValueError naming the valid ones."""
    if key == "attention":
        value = "none" if value is None else value
        valid = _valid_attentions()
        if not isinstance(value, str) or value.lower() not in valid:
            raise ValueError(f"space['attention']: {value!r} is not one of {', '.join(valid)}.")
        return value.lower()
    if key in ("placement", "gate", "connection"):
        valid = {"placement": PLACEMENTS, "gate": GATES, "connection": CONNECTIONS}[key]
        if value not in valid:
            raise ValueError(f"space[{key!r}]: {value!r} is not one of {', '.join(valid)}.")
        return value
    if key == "groups":
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"space['groups']: {value!r} is not a positive integer (e.g. {GROUPS}).")
        return int(value)
    if key in ("e_lambda", "lambda_init"):
        if not _is_number(value) or value < 0:
            raise ValueError(f"space[{key!r}]: {value!r} is not a number >= 0.")
        return float(value)
    if key == "learning_rate":
        if not _is_number(value) or value <= 0:
            raise ValueError(f"space['learning_rate']: {value!r} is not a positive number.")
        return float(value)
    raise AssertionError(key)  # pragma: no cover


def normalize_space(space, optimizer="sgd", search_learning_rate=False, learning_rate=None):
    """Validate a user ``space`` and fill in the defaults.

    Args:
        space: ``None`` or a dict (see the module docstring).
        optimizer: ``"sgd"`` or ``"adam"``: the learning-rate range and default.
        search_learning_rate: without a ``learning_rate`` key in ``space``, search the optimizer's
            range (True) or fix the rate (False, default).
        learning_rate: the fixed rate (default None: the optimizer's default, 0.1 SGD, 3e-3 Adam).

    Returns:
        ``{name: spec}`` for every name in :data:`HP_NAMES` whose attention is selectable, where a
        spec is ``("choice", values, default)``, ``("fixed", value)`` or
        ``("range", min, max, default)`` (learning rate only).

    Raises:
        ValueError: ``space`` not a dict, an unknown key (the message lists the valid ones), an
            invalid or empty value, or a conditional key none of whose attentions is selectable.
    """
    space = {} if space is None else space
    if not isinstance(space, dict):
        raise ValueError(f"`space` must be a dict or None; got {type(space).__name__}.")
    lr_min, lr_max, lr_default = LEARNING_RATES[optimizer]
    if learning_rate is not None:
        lr_default = _check_value("learning_rate", learning_rate)
        lr_min, lr_max = min(lr_min, lr_default), max(lr_max, lr_default)
    defaults = {
        "attention": (DEFAULT_ATTENTIONS, "none"),
        "placement": (DEFAULT_PLACEMENTS, "block"),
        **{k: (v[1], v[2]) for k, v in CONDITIONAL.items()},
    }

    def spec_for(key):
        if key not in space:
            if key == "learning_rate":
                if search_learning_rate:
                    return ("range", lr_min, lr_max, lr_default)
                return ("fixed", lr_default)
            choices, default = defaults[key]
            return ("choice", tuple(choices), default)
        value = space[key]
        if key == "learning_rate" and isinstance(value, dict):
            bad = set(value) - {"min", "max", "default"}
            if bad or not {"min", "max"} <= set(value):
                raise ValueError(
                    "space['learning_rate'] as a dict needs 'min' and 'max' (and optionally "
                    f"'default'); got keys {sorted(value)}."
                )
            lo, hi = _check_value(key, value["min"]), _check_value(key, value["max"])
            if lo >= hi:
                raise ValueError(f"space['learning_rate']: min {lo} must be < max {hi}.")
            default = value.get("default", math.sqrt(lo * hi) if not lo <= lr_default <= hi
                                else lr_default)
            default = _check_value(key, default)
            if not lo <= default <= hi:
                raise ValueError(f"space['learning_rate']: default {default} outside [{lo}, {hi}].")
            return ("range", lo, hi, default)
        if isinstance(value, (list, tuple, set, frozenset)):
            values = []
            for v in value:
                v = _check_value(key, v)
                if v not in values:
                    values.append(v)
            if not values:
                raise ValueError(f"space[{key!r}] is an empty list: give at least one value.")
            if len(values) == 1:
                return ("fixed", values[0])
            default = defaults.get(key, (None, lr_default))[1]
            return ("choice", tuple(values), default if default in values else values[0])
        return ("fixed", _check_value(key, value))

    specs = {"attention": spec_for("attention")}
    attentions = _spec_values(specs["attention"])
    if any(a != "none" for a in attentions):
        specs["placement"] = spec_for("placement")
    elif "placement" in space:
        raise ValueError("space['placement'] is given but the only attention is 'none'.")
    for key, (users, *_rest) in CONDITIONAL.items():
        if any(a in users for a in attentions):
            specs[key] = spec_for(key)
        elif key in space:
            raise ValueError(
                f"space[{key!r}] applies to attention {', '.join(users)}, none of which is in the "
                f"attention choices ({', '.join(attentions)})."
            )
    specs["learning_rate"] = spec_for("learning_rate")
    # Any other key is a constructor argument of the attention classes that take it.
    arguments = {a: _constructor_arguments(a) for a in attentions if a != "none"}
    extra = [k for k in space if k not in HP_NAMES]
    for key in extra:
        users = tuple(a for a, args in arguments.items() if key in args)
        if not users:
            valid = sorted(set(HP_NAMES) | {n for args in arguments.values() for n in args})
            raise ValueError(
                f"Unknown search-space key {key!r}: no attention in the choices "
                f"({', '.join(attentions)}) takes it; valid keys: {', '.join(valid)}."
            )
        value = space[key]
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        if not values:
            raise ValueError(f"space[{key!r}] is an empty list: give at least one value.")
        for v in values:
            if not isinstance(v, (str, bool, int, float)):
                raise ValueError(f"space[{key!r}]: {v!r} is not a number, string or boolean.")
            for attention in users:
                try:  # the layer's own check, now rather than in every trial
                    _attention_class(attention)(**{key: v})
                except (ValueError, TypeError) as err:
                    raise ValueError(f"space[{key!r}]: {v!r} is rejected by {attention!r}: "
                                     f"{err}") from None
        values = list(dict.fromkeys(values))
        specs[key] = ("fixed", values[0]) if len(values) == 1 else \
            ("choice", tuple(values), values[0])
    return specs

def paper_space(space=None):
    """``space`` with every conditional hyperparameter it does not set fixed at its default (the
    papers' values: SA-Net's G = 64, SimAM's lambda = 1e-4, SB's lambda_init = 0.1 and tanh gate,
    DCANet's direct connection) and, when it sets no placement, each attention at its paper
    placement (``"paper"``): the comparison of attention types the CLI runs by default, in which
    two configurations differ only in their attention, not in a random draw of its
    hyperparameters.

    Only the keys of attentions among ``space["attention"]`` (default :data:`DEFAULT_ATTENTIONS`)
    are added. Validated later by :func:`normalize_space` like any space.
    """
    space = dict(space or {})
    attentions = space.get("attention", DEFAULT_ATTENTIONS)
    attentions = [attentions] if isinstance(attentions, str) else list(attentions)
    attentions = [str(a).lower() if a is not None else "none" for a in attentions]
    if any(a != "none" for a in attentions):
        space.setdefault("placement", "paper")
    for key, (users, _choices, default, _arg) in CONDITIONAL.items():
        if key not in space and any(a in users for a in attentions):
            space[key] = default
    return space


def count_configurations(specs):
    """The number of distinct (attention, placement) configurations of normalised ``specs``
    (:func:`normalize_space`), the baseline counted once; each may still carry searched
    hyperparameters."""
    attentions = [a for a in _spec_values(specs["attention"]) if a != "none"]
    placements = _spec_values(specs["placement"]) if "placement" in specs else ()
    baseline = "none" in _spec_values(specs["attention"])
    return int(baseline) + len(attentions) * max(1, len(placements))


# Constructor arguments that are not search dimensions.
_NOT_SEARCHED = {"self", "kwargs", "name", "dtype", "data_format", "trainable"}


def _attention_class(name):
    from keras_attn.registry import get_attention_class

    return get_attention_class(name)


def _constructor_arguments(name):
    """The keyword arguments of an attention class's constructor, e.g. SA's ``use_norm``."""
    import inspect

    params = inspect.signature(_attention_class(name).__init__).parameters
    return {n for n, p in params.items()
            if n not in _NOT_SEARCHED and p.kind is not inspect.Parameter.VAR_KEYWORD}


def _spec_values(spec):
    return spec[1] if spec[0] == "choice" else (spec[1],)


def _declare(hp, name, spec):
    if spec[0] == "fixed":
        return hp.Fixed(name, spec[1])
    if spec[0] == "range":
        return hp.Float(name, spec[1], spec[2], sampling="log", default=spec[3])
    return hp.Choice(name, list(spec[1]), default=spec[2])


def describe_hyperparameters(hp, include_tuner=False, float_format=".3g"):
    """One line with a trial's active hyperparameters, e.g.
    ``"attention=sb placement=layer lambda_init=0.1 gate=tanh learning_rate=0.0412"``.

    Args:
        hp: a ``keras_tuner.HyperParameters``, a ``Trial`` (its ``hyperparameters``) or a dict of
            values (``None`` values are skipped).
        include_tuner: also show KerasTuner's own ``tuner/...`` values (Hyperband's epochs, ...).
        float_format: format of float values (default ``".3g"``).
    """
    hp = getattr(hp, "hyperparameters", hp)
    if isinstance(hp, keras_tuner.HyperParameters):
        declared = {p.name for p in hp.space}
        values = {k: v for k, v in hp.values.items() if k not in declared or hp.is_active(k)}
    else:
        values = dict(hp)
    order = {name: i for i, name in enumerate(HP_NAMES)}
    keys = sorted(values, key=lambda k: (order.get(k, len(order)), k))
    parts = []
    for key in keys:
        value = values[key]
        if value is None or (key.startswith("tuner/") and not include_tuner):
            continue
        if isinstance(value, float):
            value = format(value, float_format)
        parts.append(f"{key}={value}")
    return " ".join(parts)


def _is_dataset(x):
    import tensorflow as tf

    return isinstance(x, tf.data.Dataset)


def _check_backbone(backbone):
    """Fail at construction, not in every trial, on an unknown backbone name (build_model's own
    name check, so that every spelling it takes, ``mobilenetv2_cifar`` included, is taken)."""
    from keras_attn.backbones import _backbone_key

    _backbone_key(backbone)


class AttentionHyperModel(keras_tuner.HyperModel):
    """KerasTuner HyperModel over attention type, placement and their hyperparameters.

    ``build(hp)`` sets the precision policy (KerasTuner's per-trial ``clear_session`` resets the
    global one), declares the hyperparameters (see the module docstring), builds
    ``keras_attn.build_model(...)`` and compiles it with :func:`search.training.compile_model`.
    KerasTuner calls it under its ``distribution_strategy.scope()`` when given one, so the model
    and its optimiser are mirrored. ``fit(hp, model, ...)`` adds :class:`search.training.StopOnNaN`
    (a diverging trial is recorded as ``FAILED`` and the search goes on) and, when ``build`` could
    not know the run length, recompiles the learning-rate schedule for the actual ``epochs`` and
    steps per epoch.

    Works with ``RandomSearch``, ``BayesianOptimization`` and ``Hyperband`` (whose rounds each
    get a schedule over their own ``epochs - initial_epoch``).

    Args:
        backbone: ``keras_attn.build_model`` backbone name (default ``"mobilenetv2"``).
        input_shape: ``(H, W, C)`` (default ``(32, 32, 3)``).
        num_classes: number of classes (default 10).
        precision: ``"float32"`` (default), ``"mixed_float16"``, ``"mixed_bfloat16"`` or
            ``"auto"`` (resolved once, here; see :func:`search.training.resolve_precision`).
        backbone_kwargs: extra arguments of the backbone constructor (e.g. ``{"alpha": 0.35}``).
        space: restrictions of the search space (see the module docstring); default the full
            default space.
        optimizer: ``"sgd"`` (default) or ``"adam"``; it also picks the learning-rate range.
        learning_rate: the recipe's (peak) learning rate, the same for every trial (default
            None: 0.1 for SGD, 3e-3 for Adam).
        search_learning_rate: search the learning rate too (default False; see the module
            docstring). Searching it makes trials differ in more than their attention.
        schedule: ``"cosine"`` (default), ``"step"`` or ``"constant"``.
        warmup_epochs: linear warm-up (default 0).
        epochs_hint: epochs the schedule spans, if known when building (default None: taken from
            ``fit``'s ``epochs``).
        steps_per_epoch: training batches per epoch, if known when building (default None: taken
            from ``fit``'s data).
        momentum, nesterov, weight_decay, label_smoothing: see
            :func:`search.training.compile_model` (defaults 0.9, False, 5e-4, 0.0).
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

    Raises:
        ValueError: an invalid ``space`` (see :func:`normalize_space`), precision, optimiser,
            schedule, input shape or class count.
    """

    def __init__(
        self,
        backbone="mobilenetv2",
        input_shape=(32, 32, 3),
        num_classes=10,
        precision="float32",
        backbone_kwargs=None,
        space=None,
        optimizer="sgd",
        learning_rate=None,
        search_learning_rate=False,
        schedule="cosine",
        warmup_epochs=0,
        epochs_hint=None,
        steps_per_epoch=None,
        momentum=0.9,
        nesterov=False,
        weight_decay=5e-4,
        label_smoothing=0.0,
        weights=None,
        dropout=0.0,
        bn_momentum=0.9,
        model_builder=None,
        track_build_info=False,
        configurations=None,
        name=None,
        tunable=True,
    ):
        super().__init__(name=name, tunable=tunable)
        check_choice("optimizer", optimizer, training.OPTIMIZERS)
        check_choice("schedule", schedule, training.SCHEDULES)
        shape = check_shape("input_shape (height, width, channels)", input_shape, rank=3,
                            allow_none_dims=False)
        check_number("num_classes", num_classes, minimum=2, integer=True)
        for arg, value in (("epochs_hint", epochs_hint), ("steps_per_epoch", steps_per_epoch)):
            check_number(arg, value, minimum=1, integer=True, allow_none=True)
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
        self.search_learning_rate = bool(search_learning_rate)
        self.learning_rate = learning_rate
        self.space = normalize_space(space, optimizer, self.search_learning_rate, learning_rate)
        self.optimizer = optimizer
        self.schedule = schedule
        self.warmup_epochs = warmup_epochs
        self.epochs_hint = epochs_hint
        self.steps_per_epoch = steps_per_epoch
        self.momentum = momentum
        self.nesterov = nesterov
        self.weight_decay = weight_decay
        self.label_smoothing = label_smoothing
        self.weights = weights
        self.dropout = dropout
        check_number("bn_momentum", bn_momentum, minimum=0.0, maximum=1.0, strict_max=True,
                     allow_none=True)
        self.bn_momentum = bn_momentum
        self.model_builder = model_builder
        self.track_build_info = bool(track_build_info)
        self.last_build_info = {}
        # Fail here, not in every trial, on bad training arguments.
        training.make_optimizer(optimizer, 0.01, momentum=momentum, nesterov=nesterov,
                                weight_decay=weight_decay)
        training.make_loss(label_smoothing)
        training.make_schedule(0.01, schedule=schedule, epochs=max(2, warmup_epochs * 2 + 1),
                               steps_per_epoch=10, warmup_epochs=warmup_epochs)

    # ----------------------------------------------------------------- hyperparameters

    def declare(self, hp):
        """Declare this space's hyperparameters on ``hp`` and return the trial's configuration.

        Returns:
            ``{"attention": str, "placement": str | None, "attention_kwargs": dict,
            "learning_rate": float}`` (``placement`` is None for ``"none"``).
        """
        if self.configurations is not None:
            names = list(self.configurations)
            name = hp.Choice("configuration", names, default=names[0])
            kwargs = dict(self.configurations[name])
            learning_rate = _declare(hp, "learning_rate", self.space["learning_rate"])
            attention = kwargs.get("attention") or "none"
            return {"attention": attention,
                    "placement": kwargs.get("placement", "block") if attention != "none" else None,
                    "attention_kwargs": dict(kwargs.get("attention_kwargs") or {}),
                    "learning_rate": float(learning_rate), "configuration": name,
                    "model": kwargs}
        specs = self.space
        attention = _declare(hp, "attention", specs["attention"])
        placement = None
        if "placement" in specs:
            users = [a for a in _spec_values(specs["attention"]) if a != "none"]
            with hp.conditional_scope("attention", users):
                placement = _declare(hp, "placement", specs["placement"])
        kwargs = {}
        for key, (users, _choices, _default, arg) in CONDITIONAL.items():
            if key not in specs:
                continue
            scope = [a for a in _spec_values(specs["attention"]) if a in users]
            with hp.conditional_scope("attention", scope):
                value = _declare(hp, key, specs[key])
            if attention in users and value is not None:
                kwargs[arg] = value
        for key, spec in specs.items():
            if key in HP_NAMES:
                continue
            users = tuple(a for a in _spec_values(specs["attention"])
                          if a != "none" and key in _constructor_arguments(a))
            scope = [a for a in _spec_values(specs["attention"]) if a in users]
            with hp.conditional_scope("attention", scope):
                value = _declare(hp, key, spec)
            if attention in users and value is not None:
                kwargs[key] = value
        learning_rate = _declare(hp, "learning_rate", specs["learning_rate"])
        return {
            "attention": attention,
            "placement": placement if attention != "none" else None,
            "attention_kwargs": kwargs,
            "learning_rate": float(learning_rate),
        }

    # ----------------------------------------------------------------- build / fit

    def _builder(self):
        if self.model_builder is not None:
            return self.model_builder
        from keras_attn import build_model

        return build_model

    def _compile(self, model, learning_rate, epochs, steps_per_epoch):
        known = steps_per_epoch is not None or (self.schedule == "constant" and
                                                not self.warmup_epochs)
        training.compile_model(
            model,
            optimizer=self.optimizer,
            learning_rate=learning_rate,
            momentum=self.momentum,
            nesterov=self.nesterov,
            weight_decay=self.weight_decay,
            # Until the run length is known, a constant rate keeps the model usable as returned.
            schedule=self.schedule if known else "constant",
            warmup_epochs=self.warmup_epochs if known else 0,
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            label_smoothing=self.label_smoothing,
        )
        model._keras_attn_search = {
            "learning_rate": learning_rate,
            "schedule_for": (epochs, steps_per_epoch) if known else None,
            "optimizer": model.optimizer,
        }
        return model

    def build(self, hp, epochs=None, steps_per_epoch=None, seed=None):
        """Build and compile the trial's model (see the class docstring).

        Args:
            hp: the trial's ``keras_tuner.HyperParameters``.
            epochs, steps_per_epoch: the run the learning-rate schedule spans, for this build
                (default: the constructor's ``epochs_hint`` and ``steps_per_epoch``); e.g. to
                retrain the best configuration for longer.
            seed: passed to the model builder (``keras_attn.build_model(seed=...)``): the
                backbone's and head's initial weights depend on it alone, not on the attention
                (default None: unseeded).

        Returns:
            A compiled ``keras.Model``.
        """
        start = time.perf_counter()
        training.set_precision(self.precision)
        config = self.declare(hp)
        attention = config["attention"]
        kwargs = {"backbone": self.backbone, "weights": self.weights, "dropout": self.dropout,
                  **self.backbone_kwargs}
        if "model" in config:  # a named configuration: its own backbone and arguments
            kwargs = {"weights": self.weights, "dropout": self.dropout, **config["model"]}
        kwargs.update(
            input_shape=self.input_shape,
            num_classes=self.num_classes,
            attention=None if attention == "none" else attention,
            placement=config["placement"] or "block",
            attention_kwargs=config["attention_kwargs"],
            **({} if seed is None else {"seed": int(seed)}),
        )
        model = self._builder()(**kwargs)
        if self.bn_momentum is not None:
            set_bn_momentum(model, self.bn_momentum)
        self._compile(model, config["learning_rate"], epochs or self.epochs_hint or 1,
                      steps_per_epoch or self.steps_per_epoch)
        if self.track_build_info:
            self.last_build_info = _build_info(model, time.perf_counter() - start)
            if "configuration" in config:
                self.last_build_info.update(attention=attention,
                                            placement=config["placement"] or "")
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

    def fit(self, hp, model, *args, **kwargs):
        """``model.fit(*args, **kwargs)`` plus :class:`search.training.StopOnNaN`, with the
        learning-rate schedule matched to this run's ``epochs - initial_epoch`` and steps per epoch.

        Raises:
            keras_tuner.errors.FailedTrialError: the loss became NaN/inf (the trial fails, the
                search continues).
            keras_tuner.errors.FatalValueError: the schedule needs the steps per epoch and neither
                the constructor nor the data tells them (stops the search: every trial would fail).
        """
        x = args[0] if args else kwargs.get("x")
        if _is_dataset(x):
            # A tf.data pipeline shuffles itself; Keras warns on every fit otherwise.
            kwargs.setdefault("shuffle", False)
        callbacks = list(kwargs.pop("callbacks", None) or [])
        if not any(isinstance(c, training.StopOnNaN) for c in callbacks):
            callbacks.append(training.StopOnNaN())
        state = getattr(model, "_keras_attn_search", None)
        # Recompile only a model compiled by build() and not re-compiled since (e.g. by a tuner
        # given its own optimizer).
        if state is not None and model.optimizer is state["optimizer"]:
            epochs = int(kwargs.get("epochs", 1)) - int(kwargs.get("initial_epoch", 0))
            # The data's own length wins over the constructor's hint: the hint is the trials'
            # length, and a final retraining on the full split must not decay to zero after the
            # trials' number of steps.
            steps = (kwargs.get("steps_per_epoch") or self._infer_steps(args, kwargs)
                     or self.steps_per_epoch)
            needs_steps = self.schedule != "constant" or self.warmup_epochs
            if needs_steps and steps is None:
                raise keras_tuner.errors.FatalValueError(
                    f"schedule={self.schedule!r} needs the number of training batches per epoch: "
                    "pass steps_per_epoch to AttentionHyperModel (or fit), or give fit a "
                    "tf.data.Dataset of known cardinality."
                )
            if state["schedule_for"] != (max(epochs, 1), steps) and needs_steps:
                with model.distribute_strategy.scope():
                    self._compile(model, state["learning_rate"], max(epochs, 1), steps)
        return model.fit(*args, callbacks=callbacks, **kwargs)


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


def _build_info(model, seconds):
    info = {"params": int(model.count_params()), "params_added": 0, "attention_layers": 0,
            "build_seconds": round(seconds, 3)}
    try:
        from keras_attn.placement import attention_summary

        summary = attention_summary(model)
        info.update(params_added=int(summary.total_params), attention_layers=len(summary))
    except Exception:  # a custom builder's model the summary cannot read: params only
        pass
    return info


def trial_row(trial):
    """A dict with every name of :data:`HP_NAMES` (``None`` where inactive) for one trial: a
    leaderboard row's hyperparameter columns."""
    hp = getattr(trial, "hyperparameters", trial)
    values = {}
    for name in HP_NAMES:
        try:
            active = hp.is_active(name)
        except (KeyError, AttributeError):
            active = False
        values[name] = hp.values.get(name) if active else None
    return values
