"""The search space: which attention, where, with which hyperparameters.

Hyperparameters (all with explicit defaults; ``*`` marks the choices of the default space):

* ``attention``: none*, sa*, simam*, sb*, dca_se*, and any other registered name
  (``keras_attn.registry``: se, cbam, eca, dca_cbam, dca_sb, ...); default none, the baseline.
* ``placement`` (attention not none): block*, layer*, paper; default block.
* one per searched constructor argument of the attention layers, from each class's
  ``search_space`` (``keras_attn.layers._base.ArgumentChoices``), in registration order:

  * ``groups`` (sa): 8*, 16*, 32*, 64*, SA-Net's G (the placement uses the largest that divides
    the channels); default 64.
  * ``e_lambda`` (simam): 1e-1* ... 1e-6*, SimAM's sweep; default 1e-4.
  * ``lambda_init`` (sb, dca_sb): 0.01*, 0.05*, 0.1*, 0.5*, 1.0* (SB paper, Table 8); default 0.1.
  * ``gate`` (sb, dca_sb): tanh*, sigmoid*, softmax*, relu*, none* (SB paper, Table 9); default
    tanh.
  * ``connection`` (dca_se, dca_cbam, dca_sb): direct*, weighted*, softmax* (DCANet); default
    direct.
  * ``connection_form`` (dca_se, dca_cbam): paper*, official* (DCANet's equations or its
    official code's connection); default paper. With official, ``connection`` has no effect.

* ``learning_rate``: fixed (``hp.Fixed``) at the recipe's rate unless searched: the comparison
  protocol trains every configuration with one recipe, so that trials differ only in their
  attention. ``search_learning_rate=True`` (or a ``learning_rate`` key in ``space``) searches it:
  log-uniform 0.01-0.2 around 0.1 (SGD), 1e-3-1e-2 around 3e-3 (Adam).

Conditional hyperparameters live in ``hp.conditional_scope("attention", [...])``, so a trial only
carries (and the oracle only samples) the ones its attention uses; ``placement`` is absent for
``none``.

``space`` restricts or fixes any of them: a list is the set of choices, a scalar fixes the value
(``hp.Fixed``), and ``learning_rate`` also takes ``{"min": a, "max": b}`` (log-uniform, optional
``"default"``). Example:
``{"attention": ["sb"], "placement": "layer", "gate": ["tanh", "sigmoid"]}``.
Any other key is a constructor argument of the chosen attention classes (e.g. SA's ``use_norm``).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import numbers
from collections.abc import Mapping

import keras_tuner

from keras_attn.placement import PLACEMENTS
from keras_attn.validation import check_choice
from keras_attn.registry import (
    NO_ATTENTION,
    attention_argument,
    get_attention_class,
    registered_attentions,
)
from search.recipe import learning_rate_range

ATTENTION, PLACEMENT, LEARNING_RATE = "attention", "placement", "learning_rate"
# The default search: the baseline and one attention of each kind, each at two placements.
DEFAULT_ATTENTIONS = (NO_ATTENTION, "sa", "simam", "sb", "dca_se")
DEFAULT_PLACEMENTS = ("block", "layer")
DEFAULT_PLACEMENT = "block"
PAPER_PLACEMENT = "paper"
KINDS = ("choice", "fixed", "range")

#: The most values one key of a space may list. Each configuration trains ``--repeats`` times, so
#: a search tries a few dozen at most; KerasTuner stores every value of the space in
#: ``oracle.json`` and in each trial's ``trial.json``; and each value is checked by constructing
#: its layers (milliseconds each). A list of 10^6 values took more than 5 minutes before the
#: first trial; 1,000 take about a second.
MAX_VALUES = 1000

# Constructor arguments that are not search dimensions.
_NOT_SEARCHED = {"self", "kwargs", "name", "dtype", "data_format", "trainable"}
_LISTS = (list, tuple, set, frozenset)


@dataclasses.dataclass(frozen=True)
class HyperparameterSpec:
    """One hyperparameter of a normalised space.

    Attributes:
        name: the hyperparameter (and, for a layer's, the constructor argument) name.
        kind: ``"choice"`` (one of ``values``), ``"fixed"`` (``values == (default,)``) or
            ``"range"`` (log-uniform in ``[min, max]``; learning rate only).
        values: the choices (``"choice"``, ``"fixed"``); ``()`` for a range.
        default: the value the oracle starts from.
        min, max: the bounds of a range (None otherwise).
        attentions: the attentions whose trials carry it (its conditional scope), or None for
            every trial.
    """

    name: str
    kind: str
    values: tuple = ()
    default: object = None
    min: float | None = None
    max: float | None = None
    attentions: tuple | None = None

    def __post_init__(self):
        check_choice("kind", self.kind, KINDS)

    @classmethod
    def choice(cls, name, values, default, attentions=None):
        return cls(name, "choice", tuple(values), default, attentions=attentions)

    @classmethod
    def fixed(cls, name, value, attentions=None):
        return cls(name, "fixed", (value,), value, attentions=attentions)

    @classmethod
    def log_range(cls, name, low, high, default):
        return cls(name, "range", (), default, low, high)

    def declare(self, hp):
        """Declare it on ``hp`` (inside its conditional scope); return the trial's value (None
        where the trial's attention does not use it)."""
        if self.attentions is None:
            return self._declare(hp)
        with hp.conditional_scope(ATTENTION, list(self.attentions)):
            return self._declare(hp)

    def _declare(self, hp):
        if self.kind == "fixed":
            return hp.Fixed(self.name, self.default)
        if self.kind == "range":
            return hp.Float(self.name, self.min, self.max, sampling="log", default=self.default)
        return hp.Choice(self.name, list(self.values), default=self.default)


class SearchSpace(Mapping):
    """A normalised space: ``{name: HyperparameterSpec}`` in the order they are declared (the
    oracle samples in that order: the same order gives the same trials for the same seed)."""

    def __init__(self, specs):
        self._specs = {spec.name: spec for spec in specs}

    def __getitem__(self, name):
        return self._specs[name]

    def __iter__(self):
        return iter(self._specs)

    def __len__(self):
        return len(self._specs)

    def __repr__(self):
        return f"SearchSpace({list(self._specs.values())!r})"

    @property
    def attentions(self):
        """The attention names the space chooses from (the baseline as :data:`NO_ATTENTION`)."""
        return self[ATTENTION].values

    def declare(self, hp):
        """Declare every hyperparameter on ``hp`` and return the trial's configuration.

        Returns:
            ``{"attention": str, "placement": str | None, "attention_kwargs": dict,
            "learning_rate": float}`` (``placement`` is None for the baseline).
        """
        values = {name: spec.declare(hp) for name, spec in self.items()}
        attention = values[ATTENTION]
        kwargs = {name: value for name, value in values.items()
                  if name not in (ATTENTION, PLACEMENT, LEARNING_RATE) and value is not None
                  and attention in self[name].attentions}
        return {
            "attention": attention,
            "placement": values.get(PLACEMENT) if attention != NO_ATTENTION else None,
            "attention_kwargs": kwargs,
            "learning_rate": float(values[LEARNING_RATE]),
        }


# --------------------------------------------------------------------- what the layers search


def searched_arguments():
    """``{argument: (attention, ...)}``: every registered layer's searched constructor
    arguments (its class's ``search_space``), in registration order, with the attentions that
    search each."""
    users = {}
    for attention in registered_attentions():
        for argument in get_attention_class(attention).search_space:
            users.setdefault(argument, []).append(attention)
    return {argument: tuple(names) for argument, names in users.items()}


def hyperparameter_names():
    """The hyperparameters in the order users see them (leaderboard columns, ``trial_row``,
    ``describe_hyperparameters``): attention, placement, the layers' searched arguments, learning
    rate."""
    return (ATTENTION, PLACEMENT, *searched_arguments(), LEARNING_RATE)


def __getattr__(name):
    # HP_NAMES follows the registry: a layer registered later adds its column.
    if name == "HP_NAMES":
        return hyperparameter_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _constructor_arguments(attention):
    """The keyword arguments of an attention class's constructor, e.g. SA's ``use_norm``."""
    params = inspect.signature(get_attention_class(attention).__init__).parameters
    return {n for n, p in params.items()
            if n not in _NOT_SEARCHED and p.kind is not inspect.Parameter.VAR_KEYWORD}


def _attention_label(attention):
    """The user-facing form of an attention: :data:`NO_ATTENTION` for the baseline, else the
    lower-case name (or the value itself when it is no string, for the error message)."""
    if attention_argument(attention) is None:
        return NO_ATTENTION
    return attention.lower() if isinstance(attention, str) else attention


# --------------------------------------------------------------------- checks of one value


def _is_number(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _check_attention(value):
    valid = (NO_ATTENTION, *registered_attentions())
    label = _attention_label(value)
    if label not in valid:
        raise ValueError(f"space['attention']: {value!r} is not one of {', '.join(valid)}.")
    return label


def _check_placement(value):
    if value not in PLACEMENTS:
        raise ValueError(f"space['placement']: {value!r} is not one of {', '.join(PLACEMENTS)}.")
    return value


def _check_learning_rate(value):
    if not _is_number(value) or value <= 0:
        raise ValueError(f"space['learning_rate']: {value!r} is not a positive number.")
    return float(value)


def _check_layer_value(key, value, choices):
    """A layer argument's value, by the kind of its choices: string choices are the valid values;
    integer ones examples of positive integers; other numbers examples of numbers >= 0."""
    if all(isinstance(c, str) for c in choices):
        if value not in choices:
            raise ValueError(f"space[{key!r}]: {value!r} is not one of {', '.join(choices)}.")
        return value
    if all(isinstance(c, numbers.Integral) and not isinstance(c, bool) for c in choices):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"space[{key!r}]: {value!r} is not a positive integer "
                             f"(e.g. {choices}).")
        return int(value)
    if all(_is_number(c) for c in choices):
        if not _is_number(value) or value < 0:
            raise ValueError(f"space[{key!r}]: {value!r} is not a number >= 0.")
        return float(value)
    if value not in choices:
        raise ValueError(f"space[{key!r}]: {value!r} is not one of {choices}.")
    return value


def _check_by_layers(key, value, attentions):
    """Raise unless every class of ``attentions`` takes ``key=value``: the layer's own check,
    now rather than in every trial."""
    for attention in attentions:
        try:
            get_attention_class(attention)(**{key: value})
        except (ValueError, TypeError) as err:
            raise ValueError(f"space[{key!r}]: {value!r} is rejected by {attention!r}: "
                             f"{err}") from None
    return value


def _check_argument(key, value, attentions):
    if not isinstance(value, (str, bool, int, float)):
        raise ValueError(f"space[{key!r}]: {value!r} is not a number, string or boolean.")
    return _check_by_layers(key, value, attentions)


# --------------------------------------------------------------------- one spec per key


def _user_spec(name, value, check, default, attentions=None):
    """The spec of a value the user gave: a choice (a list of several values, ``default`` first
    if among them, else the first) or fixed (a scalar, or a list of one)."""
    if not isinstance(value, _LISTS):
        return HyperparameterSpec.fixed(name, check(value), attentions)
    if len(value) > MAX_VALUES:
        raise ValueError(
            f"space[{name!r}] lists {len(value):,} values; at most {MAX_VALUES:,} per key (a "
            "search trains each configuration --repeats times, so it tries a few dozen at most, "
            "and KerasTuner stores every value in each trial's record): give fewer values")
    # In order, duplicates dropped (by ==, as KerasTuner's Choice compares them).
    values = list(dict.fromkeys(check(v) for v in value))
    if not values:
        raise ValueError(f"space[{name!r}] is an empty list: give at least one value.")
    if len(values) == 1:
        return HyperparameterSpec.fixed(name, values[0], attentions)
    return HyperparameterSpec.choice(name, values, default if default in values else values[0],
                                     attentions)


def _spec(space, name, choices, default, check, attentions=None):
    """``space[name]``'s spec, or a choice of ``choices`` when the user does not set it."""
    if name in space:
        return _user_spec(name, space[name], check, default, attentions)
    return HyperparameterSpec.choice(name, choices, default, attentions)


def _placement_specs(space, attentions):
    users = tuple(a for a in attentions if a != NO_ATTENTION)
    if users:
        return [_spec(space, PLACEMENT, DEFAULT_PLACEMENTS, DEFAULT_PLACEMENT, _check_placement,
                      users)]
    if PLACEMENT in space:
        raise ValueError(f"space['placement'] is given but the only attention is "
                         f"{NO_ATTENTION!r}.")
    return []


def _layer_specs(space, attentions):
    """The specs of the layers' searched arguments, for the attentions among the choices."""
    specs = []
    for name, users in searched_arguments().items():
        scope = tuple(a for a in attentions if a in users)
        if not scope:
            if name in space:
                raise ValueError(
                    f"space[{name!r}] applies to attention {', '.join(users)}, none of which is "
                    f"in the attention choices ({', '.join(attentions)})."
                )
            continue
        # The first chosen attention's choices (the built-ins that share an argument agree).
        record = get_attention_class(scope[0]).search_space[name]

        def check(value, name=name, record=record, scope=scope):
            return _check_by_layers(name, _check_layer_value(name, value, record.choices), scope)

        specs.append(_spec(space, name, record.choices, record.default, check, scope))
    return specs


def _argument_specs(space, attentions):
    """The specs of the other keys: constructor arguments of the chosen attention classes."""
    known = set(hyperparameter_names())
    arguments = {a: _constructor_arguments(a) for a in attentions if a != NO_ATTENTION}
    specs = []
    for key in (k for k in space if k not in known):
        users = tuple(a for a, args in arguments.items() if key in args)
        if not users:
            valid = sorted(known | {n for args in arguments.values() for n in args})
            raise ValueError(
                f"Unknown search-space key {key!r}: no attention in the choices "
                f"({', '.join(attentions)}) takes it; valid keys: {', '.join(valid)}."
            )
        specs.append(_user_spec(key, space[key], lambda v, k=key, u=users: _check_argument(k, v, u),
                                None, users))
    return specs


def _learning_rate_bounds(value, fallback):
    """The range spec of ``space["learning_rate"] = {"min": a, "max": b[, "default": d]}``."""
    bad = set(value) - {"min", "max", "default"}
    if bad or not {"min", "max"} <= set(value):
        raise ValueError(
            "space['learning_rate'] as a dict needs 'min' and 'max' (and optionally "
            f"'default'); got keys {sorted(value)}."
        )
    lo, hi = _check_learning_rate(value["min"]), _check_learning_rate(value["max"])
    if lo >= hi:
        raise ValueError(f"space['learning_rate']: min {lo} must be < max {hi}.")
    default = value.get("default", fallback if lo <= fallback <= hi else math.sqrt(lo * hi))
    default = _check_learning_rate(default)
    if not lo <= default <= hi:
        raise ValueError(f"space['learning_rate']: default {default} outside [{lo}, {hi}].")
    return HyperparameterSpec.log_range(LEARNING_RATE, lo, hi, default)


def _learning_rate_spec(space, optimizer, search_learning_rate, learning_rate):
    if learning_rate is not None:
        learning_rate = _check_learning_rate(learning_rate)
    lo, hi, default = learning_rate_range(optimizer, learning_rate)
    if LEARNING_RATE not in space:
        if search_learning_rate:
            return HyperparameterSpec.log_range(LEARNING_RATE, lo, hi, default)
        return HyperparameterSpec.fixed(LEARNING_RATE, default)
    value = space[LEARNING_RATE]
    if isinstance(value, dict):
        return _learning_rate_bounds(value, default)
    return _user_spec(LEARNING_RATE, value, _check_learning_rate, default)


# --------------------------------------------------------------------- the space


def normalize_space(space, optimizer="sgd", search_learning_rate=False, learning_rate=None):
    """Validate a user ``space`` and fill in the defaults.

    Args:
        space: ``None`` or a dict (see the module docstring).
        optimizer: ``"sgd"`` or ``"adam"``: the learning-rate range and default.
        search_learning_rate: without a ``learning_rate`` key in ``space``, search the optimizer's
            range (True) or fix the rate (False, default).
        learning_rate: the fixed rate (default None: the optimizer's default, 0.1 SGD, 3e-3 Adam).

    Returns:
        A :class:`SearchSpace`: a :class:`HyperparameterSpec` for the attention, the placement
        (unless the only attention is the baseline), each layer argument some chosen attention
        searches, each other key of ``space``, and the learning rate, in that order.

    Raises:
        ValueError: ``space`` not a dict, an unknown key (the message lists the valid ones), an
            invalid or empty value (the message names it and the valid ones), a list of more
            than :data:`MAX_VALUES` values, or a layer's key none of whose attentions is
            selectable.
    """
    space = {} if space is None else space
    if not isinstance(space, dict):
        raise ValueError(f"`space` must be a dict or None; got {type(space).__name__}.")
    attention = _spec(space, ATTENTION, DEFAULT_ATTENTIONS, NO_ATTENTION, _check_attention)
    attentions = attention.values  # what the other keys' scopes and checks depend on
    return SearchSpace([
        attention,
        *_placement_specs(space, attentions),
        *_layer_specs(space, attentions),
        *_argument_specs(space, attentions),
        _learning_rate_spec(space, optimizer, search_learning_rate, learning_rate),
    ])


def paper_space(space=None):
    """``space`` with every layer argument it does not set fixed at its paper value (the
    classes' ``search_space`` defaults: SA-Net's G = 64, SimAM's lambda = 1e-4, SB's
    lambda_init = 0.1 and tanh gate, DCANet's direct connection) and, when it sets no placement,
    each attention at its paper placement (``"paper"``): the comparison of attention types the
    CLI runs by default, in which two configurations differ only in their attention, not in a
    random draw of its hyperparameters.

    Only the keys of attentions among ``space["attention"]`` (default :data:`DEFAULT_ATTENTIONS`)
    are added. Validated later by :func:`normalize_space` like any space.
    """
    space = dict(space or {})
    attentions = space.get(ATTENTION, DEFAULT_ATTENTIONS)
    attentions = [attentions] if isinstance(attentions, str) else list(attentions)
    attentions = [_attention_label(a) for a in attentions]
    if any(a != NO_ATTENTION for a in attentions):
        space.setdefault(PLACEMENT, PAPER_PLACEMENT)
    for name, users in searched_arguments().items():
        user = next((a for a in attentions if a in users), None)
        if name not in space and user is not None:
            space[name] = get_attention_class(user).search_space[name].default
    return space


def count_configurations(specs):
    """The number of distinct (attention, placement) configurations of normalised ``specs``
    (:func:`normalize_space`), the baseline counted once; each may still carry searched
    hyperparameters."""
    attentions = [a for a in specs.attentions if a != NO_ATTENTION]
    placements = specs[PLACEMENT].values if PLACEMENT in specs else ()
    baseline = NO_ATTENTION in specs.attentions
    return int(baseline) + len(attentions) * max(1, len(placements))


# --------------------------------------------------------------------- a trial's values


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
    order = {name: i for i, name in enumerate(hyperparameter_names())}
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


def trial_row(trial):
    """A dict with every name of :func:`hyperparameter_names` (``None`` where inactive) for one
    trial: a leaderboard row's hyperparameter columns."""
    hp = getattr(trial, "hyperparameters", trial)
    values = {}
    for name in hyperparameter_names():
        try:
            active = hp.is_active(name)
        except (KeyError, AttributeError):
            active = False
        values[name] = hp.values.get(name) if active else None
    return values
