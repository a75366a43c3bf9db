"""The run store: every training run of a search, stored once under a key of what determines it.

A *run* is one configuration (attention, its constructor arguments, placement; or a preset's
model) trained once with one seed under one *measured context* (the data and its split, the
backbone and width, the recipe, the precision, the number of replicas, and the library versions
that change numbers). Its :class:`RunKey` is the SHA-256 of those four parts in canonical JSON,
so the same run asked for by another question (another ``--attention`` list, a second stage, more
``--repeats``, a resumed or a distributed search) is found instead of trained again.

Layout (``OUT/store/``, one file per run named by its key, :class:`RunStore`):

* ``<key>.json``: the :class:`RunRecord`: the key's parts, the per-epoch history, the final
  metrics, the timings, the model's parameter counts, who trained it;
* ``<key>.weights.h5``: the final weights (``model.save_weights``).

Why files and not SQLite: a distributed search's chief and workers share ``--out`` over a network
filesystem, where SQLite's WAL mode (its shared-memory index) does not work and its locking is
unreliable; a file written under a temporary name and renamed into place (``os.replace``) is
atomic there as on a local disk. The weights are written first and the record last, so a record
that exists is a finished run. Two processes that train the same run (a worker re-queued while the
first was only slow) write the same key: the last rename wins and both results are the same run.
A record that cannot be read, does not match the schema, or whose content does not match its
name is refused in one line naming it (:class:`search.rundir.DamagedFileError`).

Importing this module is cheap (no TensorFlow).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time

from search.rundir import (DamagedFileError, atomic_path, check_free_space, model_nbytes,
                           read_json, write_json)

#: The record format this version writes and reads.
FORMAT = 1
#: The two states of a stored run.
FINISHED, DIVERGED = "finished", "diverged"
_FIX = "delete it (and its .weights.h5) to train that run again"


def canonical_json(value):
    """``value`` as compact JSON with sorted keys (tuples as lists): the text a key hashes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def plain(value):
    """``value`` as JSON gives it back (tuples as lists, keys as strings)."""
    return json.loads(canonical_json(value))


def digest(value):
    """SHA-256 (hex) of ``value``'s :func:`canonical_json`."""
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


@dataclasses.dataclass(frozen=True)
class RunKey:
    """What determines a run's result.

    Attributes:
        measured: the measured context (``search.config.SearchConfig.measured``), a JSON object.
        configuration: the model fingerprint of the configuration (:func:`model_fingerprint`).
        seed: the training seed (initial weights, data order).
        epochs: the epochs of this run (the recipe's, or a Hyperband round's).
    """

    measured: dict
    configuration: dict
    seed: int
    epochs: int

    def parts(self):
        return {"measured": plain(self.measured), "configuration": plain(self.configuration),
                "seed": int(self.seed), "epochs": int(self.epochs)}

    @property
    def digest(self):
        return digest(self.parts())


def model_fingerprint(model, configuration):
    """What a built model is, as far as a search's configurations differ: the configuration's
    learning rate and non-attention model arguments (a preset's backbone and width), and every
    attention layer ``keras_attn.attach`` inserted, in graph order: its class, its constructor
    arguments as built (``get_config()`` without its name) and the shapes it was called on.

    Two configurations asked for differently that build the same model (SA-Net's G = 32 and 64
    on a ResNet-20, whose stages allow at most G = 8, 16, 32; SimAM's ``"paper"`` placement
    where it is ``"block"``) get the same fingerprint, so their runs are one run.
    """
    from keras_attn.placement import insertion_record

    layers = []
    for insertion in insertion_record(model):
        layer = model.get_layer(insertion.name)
        config = {k: v for k, v in layer.get_config().items() if k not in ("name", "trainable")}
        shapes = [list(t.shape) for t in _as_list(layer.input)]
        layers.append({"class": type(layer).__name__, "config": config, "input": shapes})
    base = {k: v for k, v in configuration.get("model", {}).items()
            if k not in ("attention", "placement", "attention_kwargs")}
    fingerprint = {"learning_rate": configuration.get("learning_rate"), "model": base,
                   "attention": layers}
    if not layers:
        # No insertion record (the baseline, or a model_builder that does not go through
        # attach): the configuration as asked is all there is to tell models apart.
        fingerprint["asked"] = configuration
    return plain(fingerprint)


def _as_list(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


def configuration_digest(configuration):
    """The short id of a configuration (the first 12 hex digits of its SHA-256)."""
    return digest(plain(configuration))[:12]


# ---------------------------------------------------------------------------------- the record


def _finite(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """One stored run (see the module docstring).

    Attributes:
        key: its :class:`RunKey`.
        status: :data:`FINISHED` or :data:`DIVERGED` (the loss became NaN or infinite: stored so
            that a deterministic failure is not trained again; ``reason`` says where).
        metrics: the final metrics, e.g. ``{"val_accuracy": 0.85, "val_loss": ..., "accuracy":
            ..., "loss": ...}``: training metrics of the last epoch, validation metrics of one
            evaluation after it (empty for a diverged run).
        history: per-epoch values, ``{"loss": [...], "accuracy": [...]}`` (and ``val_*`` when
            the run validated every epoch).
        timings: seconds (``build_seconds``, ``fit_seconds``, ``overhead_seconds``,
            ``validation_seconds``, ``wall_seconds``, ...); a value may be None.
        facts: ``params``, ``params_added``, ``attention_layers`` of the model.
        weights: the weights file's name beside the record, or None.
        label: the configuration in words, asked: the configuration (canonical) that trained
            it first; stage, trial, worker: who trained it.
        created: when it was stored (ISO 8601).
    """

    key: RunKey
    status: str
    metrics: dict
    history: dict
    timings: dict
    facts: dict
    weights: str | None = None
    label: str = ""
    stage: str | None = None
    trial: str | None = None
    worker: str | None = None
    created: str = ""
    reason: str = ""
    asked: dict | None = None

    @property
    def digest(self):
        return self.key.digest

    @property
    def seed(self):
        return self.key.seed

    @property
    def value(self):
        """The run's score (``val_accuracy``), or None when it did not finish."""
        return self.metrics.get("val_accuracy") if self.status == FINISHED else None

    def to_json(self):
        data = dataclasses.asdict(self)
        data["key"] = self.key.parts()
        data["digest"] = self.digest
        data["format"] = FORMAT
        return data

    @classmethod
    def from_json(cls, data, path):
        """The record in ``data`` (read from ``path``), checked field by field.

        Raises:
            DamagedFileError: a field missing or of the wrong type, a finished run without a
                finite ``val_accuracy`` in [0, 1], or a key that does not match the file name.
        """

        def bad(problem):
            return DamagedFileError(path, problem, _FIX)

        if not isinstance(data, dict):
            raise bad(f"expected a JSON object, got {type(data).__name__}")
        if data.get("format") != FORMAT:
            raise bad(f"format {data.get('format')!r}, this version reads format {FORMAT}")
        key = data.get("key")
        if not (isinstance(key, dict) and isinstance(key.get("measured"), dict)
                and isinstance(key.get("configuration"), dict)
                and isinstance(key.get("seed"), int) and isinstance(key.get("epochs"), int)):
            raise bad("its 'key' is not {measured, configuration, seed, epochs}")
        run_key = RunKey(key["measured"], key["configuration"], key["seed"], key["epochs"])
        name = os.path.basename(path)
        if run_key.digest != data.get("digest") or not name.startswith(run_key.digest):
            raise bad("its content does not match its name (key digest)")
        for field, kind in (("status", str), ("metrics", dict), ("history", dict),
                            ("timings", dict), ("facts", dict)):
            if not isinstance(data.get(field), kind):
                raise bad(f"'{field}' is {type(data.get(field)).__name__}, expected "
                          f"{kind.__name__}")
        if data["status"] not in (FINISHED, DIVERGED):
            raise bad(f"status {data['status']!r}, expected {FINISHED!r} or {DIVERGED!r}")
        for name_, value in data["metrics"].items():
            if not _finite(value):
                raise bad(f"metric {name_!r} is {value!r}, not a finite number")
        if data["status"] == FINISHED:
            value = data["metrics"].get("val_accuracy")
            if value is None or not 0.0 <= value <= 1.0:
                raise bad(f"a finished run's val_accuracy is {value!r}, expected a number in "
                          "[0, 1]")
        for name_, values in data["history"].items():
            if not isinstance(values, list) or not all(
                    v is None or isinstance(v, (int, float)) for v in values):
                raise bad(f"history {name_!r} is not a list of numbers")
        for name_, value in list(data["timings"].items()) + list(data["facts"].items()):
            if value is not None and not _finite(value):
                raise bad(f"{name_!r} is {value!r}, not a number")
        for field in ("weights", "stage", "trial", "worker"):
            if data.get(field) is not None and not isinstance(data[field], str):
                raise bad(f"'{field}' is {type(data[field]).__name__}, expected a string")
        return cls(key=run_key, status=data["status"], metrics=data["metrics"],
                   history=data["history"], timings=data["timings"], facts=data["facts"],
                   weights=data.get("weights"), label=str(data.get("label", "")),
                   stage=data.get("stage"), trial=data.get("trial"), worker=data.get("worker"),
                   created=str(data.get("created", "")), reason=str(data.get("reason", "")),
                   asked=data.get("asked") if isinstance(data.get("asked"), dict) else None)


# ---------------------------------------------------------------------------------- the store


class RunStore:
    """The runs of a search (``OUT/store``): look up by :class:`RunKey`, write atomically.

    Args:
        root: the store's directory (created on the first write).
    """

    def __init__(self, root):
        self.root = os.fspath(root)

    def __repr__(self):
        return f"RunStore({self.root!r})"

    def record_path(self, key):
        return os.path.join(self.root, f"{_digest_of(key)}.json")

    def weights_path(self, key):
        return os.path.join(self.root, f"{_digest_of(key)}.weights.h5")

    def get(self, key):
        """The stored :class:`RunRecord` of ``key`` (a RunKey or its digest), or None.

        Raises:
            DamagedFileError: the record exists but is damaged (see :meth:`RunRecord.from_json`),
                or says it has weights that are missing.
        """
        path = self.record_path(key)
        data = read_json(path, missing=None, fix=_FIX)
        if data is None:
            return None
        record = RunRecord.from_json(data, path)
        if record.weights and not os.path.isfile(os.path.join(self.root, record.weights)):
            raise DamagedFileError(path, f"its weights file {record.weights} is missing", _FIX)
        return record

    def get_many(self, keys):
        """``{digest: RunRecord}`` of the stored ones among ``keys``."""
        found = {}
        for key in keys:
            record = self.get(key)
            if record is not None:
                found[record.digest] = record
        return found

    def digests(self):
        """The digests of every stored record (sorted)."""
        if not os.path.isdir(self.root):
            return []
        return sorted(name[:-5] for name in os.listdir(self.root)
                      if name.endswith(".json") and not name.startswith("."))

    def put(self, record, model=None):
        """Store ``record`` (and ``model``'s weights, written first); returns the record as
        stored (with its weights file name). Each file is written under a temporary name and
        renamed into place, so a kill leaves either the whole run or none of it."""
        os.makedirs(self.root, exist_ok=True)
        if model is not None:
            path = self.weights_path(record.key)
            check_free_space(path, model_nbytes(model))
            with atomic_path(path) as tmp:
                model.save_weights(tmp)
            record = dataclasses.replace(record, weights=os.path.basename(path))
        if not record.created:
            record = dataclasses.replace(record, created=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        write_json(self.record_path(record.key), record.to_json())
        return record

    def _fingerprint_path(self, measured, configuration):
        name = digest({"measured": plain(measured), "configuration": plain(configuration)})
        return os.path.join(self.root, "models", f"{name}.json")

    def has_fingerprint(self, measured, configuration):
        return os.path.isfile(self._fingerprint_path(measured, configuration))

    def fingerprint(self, measured, configuration, compute):
        """The model fingerprint of ``configuration`` under ``measured`` (see
        :func:`model_fingerprint`): read from the store's cache (``models/``), else
        ``compute()`` (which builds the model) and cached. Damaged cache files are recomputed."""
        path = self._fingerprint_path(measured, configuration)
        try:
            cached = read_json(path, missing=None, kind=dict)
        except DamagedFileError:
            cached = None
        if cached is not None and isinstance(cached.get("fingerprint"), dict):
            return cached["fingerprint"]
        value = plain(compute())
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_json(path, {"configuration": plain(configuration), "fingerprint": value})
        return value

    def load_weights(self, model, record):
        """Load ``record``'s weights into ``model`` (built like the run's model, its optimizer
        built).

        Raises:
            DamagedFileError: the run has no weights, or the file cannot be read into ``model``.
        """
        if not record.weights:
            raise DamagedFileError(self.record_path(record.key), "it has no weights file", _FIX)
        path = os.path.join(self.root, record.weights)
        try:
            model.load_weights(path)
        except Exception as err:  # h5py's and Keras' errors name neither the run nor the fix
            raise DamagedFileError(path, f"cannot load it: {str(err).splitlines()[0]}",
                                   _FIX) from None


def _digest_of(key):
    return key.digest if isinstance(key, RunKey) else str(key)
