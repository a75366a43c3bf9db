"""What a search has found so far: its configurations (from its stages) and their runs (from the
run store), as the rows the leaderboard, the costs and the final stage read.

A stage's KerasTuner trials say *which* configurations the stage asked for (:func:`entries_of`,
kept in the stage's record, :class:`search.rundir.RunDir` ``stage_record``); the run store says
*what they gave* (:class:`search.store.RunStore`, looked up by each configuration's
:class:`search.store.RunKey` for the plan's seeds). Nothing here reads a trial's score or a
file in a trial's directory: a configuration's runs are the same whichever trial, stage or
earlier search trained them.

Importing this module loads no TensorFlow.
"""

from __future__ import annotations

import dataclasses

from keras_attn.registry import NO_ATTENTION
from search.store import DIVERGED, configuration_digest

OBJECTIVE = "val_accuracy"


@dataclasses.dataclass(frozen=True)
class Entry:
    """One configuration a stage asked for.

    Attributes:
        configuration: its canonical form (the run store's key part).
        attention, placement, hyperparameters: for reports (``hyperparameters``: the attention's
            arguments, and the learning rate when the space searched it).
        learning_rate: the rate its runs train with.
        stage: the stage that asked for it; trial: its KerasTuner trial id there.
        status: the trial's status (``COMPLETED``, ``FAILED``, ``RUNNING``, ...); error: why it
            failed.
        epochs: epochs of its runs (None: the recipe's; a Hyperband round's otherwise).
    """

    configuration: dict
    attention: str
    placement: str
    hyperparameters: dict
    learning_rate: float | None
    stage: str
    trial: str
    status: str = "COMPLETED"
    error: str = ""
    epochs: int | None = None

    @property
    def digest(self):
        return configuration_digest(self.configuration)

    def to_json(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data):
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in fields})


def entries_of(tuner, stage):
    """The :class:`Entry` of every trial of ``tuner`` (a tuner of :mod:`search.tuning`), in
    trial order: what the stage asked for, not what its runs gave."""
    hypermodel = tuner.hypermodel
    entries = []
    for trial_id, trial in sorted(tuner.oracle.trials.items()):
        hps = trial.hyperparameters
        declared = {p.name for p in hps.space}
        hp = {k: v for k, v in hps.values.items()
              if not k.startswith("tuner/") and (k not in declared or hps.is_active(k))}
        fixed_lr = any(p.name == "learning_rate" and type(p).__name__ == "Fixed"
                       for p in hps.space)
        learning_rate = hp.pop("learning_rate") if fixed_lr else hp.get("learning_rate")
        configuration = hypermodel.configuration(hps)
        from search.hypermodel import configuration_parts

        attention, placement, _ = configuration_parts(configuration)
        for name in ("attention", "placement"):  # a preset row's name stays
            hp.pop(name, None)
        status = str(getattr(trial.status, "value", trial.status))
        message = (trial.message or "").strip().splitlines()
        entries.append(Entry(
            configuration=configuration, attention=attention, placement=placement,
            hyperparameters=hp, learning_rate=learning_rate, stage=stage, trial=str(trial_id),
            status=status, error=message[-1] if message and status != "COMPLETED" else "",
            epochs=hps.values.get("tuner/epochs")))
    return entries


def rows(entries, keys, seeds, epochs):
    """One row per model of ``entries`` (configurations that build the same model, e.g. asked
    for by two stages, are one row: the first names its stage; of Hyperband's rounds the one
    with the most epochs counts), with its runs for ``seeds``: the fields
    :func:`search.report.configuration_rows` reads.

    Args:
        entries: :class:`Entry` s, e.g. every stage's.
        keys: the search's :class:`search.runner.RunKeys` (the store, the measured context, the
            models' fingerprints).
        seeds: the seeds whose runs count.
        epochs: the recipe's epochs (an entry's own epochs win).
    """
    chosen, stages, asked, unbuilt = {}, {}, {}, set()
    for entry in entries:
        try:
            model = keys.model_id(entry.configuration)
        except Exception:  # noqa: BLE001  (its model cannot be built: a failed trial, no runs)
            model = entry.digest
            unbuilt.add(model)
        stages.setdefault(model, [])
        if entry.stage not in stages[model]:
            stages[model].append(entry.stage)
        asked.setdefault(model, [])
        if entry.digest not in asked[model]:
            asked[model].append(entry.digest)
        best = chosen.get(model)
        if best is None or (entry.epochs or 0) > (best.epochs or 0) or (
                best.status != "COMPLETED" and entry.status == "COMPLETED"):
            chosen[model] = entry
    out = []
    for model, entry in chosen.items():
        records = {} if model in unbuilt else keys.lookup(entry.configuration, seeds,
                                                          int(entry.epochs or epochs))
        row = _row(entry, model, records, stages[model])
        row["same_model_as"] = len(asked[model]) - 1
        out.append(row)
    return out


def _row(entry, digest, records, stages):
    finished = {s: r for s, r in records.items() if r.value is not None}
    diverged = {s: r.reason for s, r in records.items() if r.status == DIVERGED}
    values = list(finished.values())
    first = next(iter(records.values()), None)
    overheads = [r.timings.get("overhead_seconds") for r in values
                 if r.timings.get("overhead_seconds") is not None]
    walls = [r.timings.get("wall_seconds") for r in values
             if r.timings.get("wall_seconds") is not None]
    score = (sum(r.value for r in values) / len(values)) if values else None
    status = entry.status
    if diverged and not finished:
        status = "FAILED"
    return {
        "config": digest,
        "configuration": entry.configuration,
        "stage": "+".join(s for s in stages if s),
        "trial": entry.trial,
        "status": status,
        OBJECTIVE: score,
        "attention": entry.attention or NO_ATTENTION,
        "placement": entry.placement or "",
        "hyperparameters": dict(entry.hyperparameters),
        "learning_rate": entry.learning_rate,
        "epochs": entry.epochs,
        "runs": {s: float(r.value) for s, r in finished.items()},
        "diverged": diverged,
        "train_accuracy": {s: r.metrics.get("accuracy") for s, r in finished.items()},
        "overhead_seconds": (sum(overheads) / len(overheads)) if overheads else None,
        "params": None if first is None else first.facts.get("params"),
        "params_added": None if first is None else first.facts.get("params_added"),
        "train_seconds": round(sum(walls), 1) if walls else None,
        # Who trained its runs (a run kept from a dead worker and the rest by another: both).
        "tuner_id": "+".join(sorted({r.worker for r in values if r.worker})) or None,
        "error": entry.error or "; ".join(f"seed {s} diverged: {why}"
                                          for s, why in sorted(diverged.items())),
    }
