"""The end of a search: the test split, for the comparison and for the model the user keeps.

Two questions, two stages, the test split touched only here:

1. **Does the answer hold on the test split?** Nothing is retrained for this: every search run
   (the weights each repeat left in its trial directory, one per seed) of the baseline and of
   every configuration that could have been chosen as the best is evaluated on the test split,
   and :func:`search.decision.test_answer` gives the best one's difference to the baseline with
   an interval simultaneous over all of them (``search_test``): the runs that chose the best
   also answer for it, so the interval must pay for the choice, or it would say "better" about
   twice as often as it promises. Evaluation costs seconds per run (the candidates' runs: 15 at
   5 configurations x 3 seeds); a fresh retraining of the best and the baseline would cost
   minutes per run and, at one seed (``--final-repeats 1``), give no interval. The best's own
   paired Student-t interval is kept beside it (``paired_ci95_*``), unadjusted.
2. **The model the user keeps** (``best_model.keras``): the best configuration retrained from
   scratch on every training image (no validation hold-out: the choice is made) for
   ``final_epochs`` epochs with a schedule over this run's own steps, once per seed of
   ``final_seeds``, and tested (``best_model``). With ``final_epochs=0`` it is the best
   configuration's search run with the first seed.

The search runs with the first seed are also saved whole (``best_search_model.keras``,
``baseline_model.keras``): the same initial weights and data, one differing only in its
attention, for side-by-side inspection (the report's Grad-CAM figure). Each finished evaluation
or training is stored in ``final.json`` at once, so a re-run after an interruption keeps it, and
re-running a finished search only rebuilds the report.
"""

from __future__ import annotations

import dataclasses
import time

import keras

from search import stats
from search.rundir import (DamagedFileError, as_rundir, atomic_path, check_free_space,
                           model_nbytes, read_json, write_json)


def _params_added(model):
    from keras_attn.placement import attention_summary
    return int(attention_summary(model).total_params)


_FINAL_FIX = "delete it to run the final stage again, or --overwrite to start afresh"


def _load(path):
    """``final.json``, checked: each section an object whose ``runs`` map seeds to finite
    accuracies in [0, 1].

    Raises:
        DamagedFileError: not a JSON object, or a section or value of the wrong type (names the
            file and the field).
    """
    import math

    done = read_json(path, missing={}, kind=dict, fix=_FINAL_FIX)
    for name in ("search_test", "best_model"):
        section = done.get(name)
        if section is None:
            continue
        entries = [section] if name == "best_model" else [
            v for k, v in section.items() if k in ("best", "baseline")] if isinstance(
            section, dict) else [section]
        for entry in entries:
            runs = entry.get("runs") if isinstance(entry, dict) else None
            if not isinstance(runs, dict) or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                    and 0.0 <= v <= 1.0 for v in runs.values()):
                raise DamagedFileError(path, f"its {name!r} section is not an object whose "
                                       "'runs' map seeds to accuracies in [0, 1]", _FINAL_FIX)
    evaluated = done.get("test_evaluations", {})
    for runs in (evaluated.values() if isinstance(evaluated, dict) else [None]):
        if not isinstance(runs, dict) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                and 0.0 <= v <= 1.0 for v in runs.values()):
            raise DamagedFileError(path, "its 'test_evaluations' do not map seeds to "
                                   "accuracies in [0, 1]", _FINAL_FIX)
    if not isinstance(done.get("train_seconds", 0.0), (int, float)):
        raise DamagedFileError(path, "'train_seconds' is not a number", _FINAL_FIX)
    return done


def _test_evaluations(done):
    """``done["test_evaluations"]``: ``{"<config>@<epochs>": {seed: test accuracy}}`` of the
    stored search runs evaluated so far (a run's weights never change in one ``--out``)."""
    evaluated = done.get("test_evaluations")
    if not isinstance(evaluated, dict):
        evaluated = done["test_evaluations"] = {}
    return evaluated


def _save_model(model, path):
    """``model.save(path)``, atomically (see :func:`search.rundir.atomic_path`)."""
    check_free_space(path, model_nbytes(model))
    with atomic_path(path) as tmp:
        model.save(tmp)


def _section(done, name, key):
    """``done[name]``, emptied when it was made for another ``key`` (other trials or seeds)."""
    section = done.get(name)
    if not isinstance(section, dict) or section.get("key") != key:
        section = done[name] = {"key": key}
    return section


def _evaluate(entry, row, seeds, runs, hypermodel, strategy, test_data, save=None, log="",
              evaluated=None):
    """Evaluate the search runs of ``row`` with ``seeds`` (their weights in the run store) on
    the test split into ``entry["runs"]`` (those not there yet); ``save(model, seed)`` after
    each. ``evaluated`` (``final.json``'s ``test_evaluations``) keeps every stored run's test
    accuracy whatever section asked for it, so that a search grown to more seeds or candidates
    evaluates only the runs it has not; an entry with a ``save`` (the model file of a role)
    evaluates its runs itself. Returns whether it evaluated any."""
    known = {} if evaluated is None else evaluated.setdefault(
        f"{row['config']}@{int(row.get('epochs') or runs.epochs)}", {})
    if save is None:
        entry["runs"].update({str(s): known[str(s)] for s in seeds
                              if str(s) in known and str(s) not in entry["runs"]})
    stored = {s: runs.record(row, s) for s in seeds}
    todo = [s for s in seeds if str(s) not in entry["runs"] and stored[s] is not None]
    if not todo:
        return False
    keras.backend.clear_session()
    with strategy.scope():
        model = hypermodel.build_configuration(row["configuration"], seed=int(todo[0]))
        # The weights file holds the optimizer's state too: build it, or Keras skips it. In the
        # scope: a distributed (e.g. Mirrored) LossScaleOptimizer's variables must be made there
        # (benchmarks/gpu_check.py's search failed here).
        model.optimizer.build(model.trainable_variables)
    for seed in todo:
        runs.store.load_weights(model, stored[seed])
        accuracy = float(model.evaluate(test_data, verbose=0)[1])
        entry["runs"][str(seed)] = known[str(seed)] = accuracy
        entry.update(params=int(model.count_params()), params_added=_params_added(model))
        if save is not None:
            save(model, seed)
        print(f"[final] {log} ({row['attention']}, config {row['config']}), search run seed "
              f"{seed}: test_accuracy={accuracy:.4f}", flush=True)
    return True


def _test_answer(section, roles, candidates, board):
    """The best's test-split answer from every candidate's test runs
    (:func:`search.decision.test_answer`) into ``section``; returns the ledger with this look."""
    from search.decision import test_answer
    from search.report import configuration_key

    best = dict(roles).get("best")
    analysis = getattr(board, "analysis", None)
    if best is None or analysis is None or configuration_key(best) not in analysis.ranking:
        return None
    entries = {configuration_key(row): section["candidates"][row["config"]]
               for row in candidates}
    entries[configuration_key(dict(roles)["baseline"])] = section["baseline"]
    runs = {k: {int(s) if s.lstrip("-").isdigit() else s: v for s, v in e["runs"].items()}
            for k, e in entries.items()}
    answer = test_answer(runs, analysis, best=configuration_key(best), ledger=analysis.ledger)
    c = answer.comparison
    section.update(delta_vs_baseline=c.estimate, sim_ci95_low=c.low, sim_ci95_high=c.high,
                   verdict=c.verdict, verdict_reason=c.reason, p_adjusted=c.p_adjusted,
                   how=answer.how, candidates_tested=len(candidates),
                   critical_value=answer.decision.critical_value, look=answer.decision.look)
    return answer.decision.ledger


def _test_search_runs(done, rundir, runs, hypermodel, roles, seeds, strategy, test_data,
                      board=None, save_ledger=None):
    """Stage 1: every search run of each role and of every candidate for the best, evaluated
    on the test split, and the best's answer."""
    analysis = getattr(board, "analysis", None)
    candidates = []
    if analysis is not None:
        from search.report import configuration_key

        by_key = {configuration_key(r): r for r in board}
        candidates = [by_key[k] for k in analysis.ranking]
    key = {"seeds": [int(s) for s in seeds], **{f"{n}_config": r["config"] for n, r in roles},
           "candidates": sorted(r["config"] for r in candidates)}
    section = _section(done, "search_test", key)
    evaluated = _test_evaluations(done)
    files = {"best": rundir.best_search_model, "baseline": rundir.baseline_model}
    for name, row in roles:
        entry = section.setdefault(name, {"config": row["config"], "trial": row["trial"],
                                          "runs": {}})

        def save(model, seed, path=files[name]):
            if seed == seeds[0]:
                _save_model(model, path)

        if _evaluate(entry, row, seeds, runs, hypermodel, strategy, test_data, save, name,
                     evaluated=evaluated):
            write_json(rundir.final, done)
    tested = {r["config"]: section[n] for n, r in roles}
    for row in candidates:
        entry = section.setdefault("candidates", {}).setdefault(
            row["config"], tested.get(row["config"], {"config": row["config"], "runs": {}}))
        if _evaluate(entry, row, seeds, runs, hypermodel, strategy, test_data,
                     log="candidate", evaluated=evaluated):
            write_json(rundir.final, done)
    for name, _row in roles:
        entry = section[name]
        entry["test_accuracy"], entry["test_accuracy_std"] = \
            stats.mean_std(entry["runs"].values())
    diff = {"delta": None, "low": None, "high": None, "pairs": 0}
    if "best" in section:
        diff = stats.paired_difference(section["best"]["runs"], section["baseline"]["runs"])
    paired = (f"the search's own runs (each seed's saved weights), seeds "
              f"{[int(s) for s in seeds]}; test split; paired Student-t 95% interval")
    section.update(how=paired, paired_how=paired,
                   delta_vs_baseline=diff["delta"], paired_ci95_low=diff["low"],
                   paired_ci95_high=diff["high"], pairs=diff["pairs"])
    ledger = _test_answer(section, roles, candidates, board)
    if ledger is not None and save_ledger is not None:
        save_ledger(ledger)
    return section


def _train_best_model(done, rundir, hypermodel, name, row, final_seeds, final_epochs,
                      strategy, full_train, test_data, verbose):
    """Stage 2: the configuration the user keeps, retrained on the full training split."""
    key = {"config": row["config"], "final_epochs": final_epochs,
           "seeds": [int(s) for s in final_seeds]}
    section = _section(done, "best_model", key)
    section.setdefault("runs", {})
    for seed in final_seeds:
        if str(seed) in section["runs"]:
            continue
        keras.backend.clear_session()
        keras.utils.set_random_seed(int(seed))
        with strategy.scope():
            model = hypermodel.build_configuration(row["configuration"], seed=int(seed))
        print(f"[final] {name} ({row['attention']}, config {row['config']}), seed {seed}: "
              f"training {final_epochs} epoch(s) on the full training split", flush=True)
        # hypermodel.fit spans the schedule over this run and stops on NaN.
        history = hypermodel.fit_model(model, full_train(int(seed)), epochs=final_epochs,
                                       verbose=verbose)
        accuracy = float(model.evaluate(test_data, verbose=0)[1])
        section["runs"][str(seed)] = accuracy
        section.setdefault("train_loss", {})[str(seed)] = float(history.history["loss"][-1])
        section.update(params=int(model.count_params()), params_added=_params_added(model))
        if seed == final_seeds[0]:
            _save_model(model, rundir.best_model)
        write_json(rundir.final, done)
        print(f"[final] {name} seed {seed}: test_accuracy={accuracy:.4f}", flush=True)
    section["test_accuracy"], section["test_accuracy_std"] = \
        stats.mean_std(section["runs"].values())
    section.update(trial=row["trial"], config=row["config"], configuration=name,
                   how=f"{name} configuration retrained from scratch for {final_epochs} "
                   f"epoch(s) on the full training split, seeds "
                   f"{[int(s) for s in final_seeds]}; test split")
    return section


@dataclasses.dataclass(frozen=True)
class StoredRuns:
    """Where the final stage finds a leaderboard row's search runs: the search's
    :class:`search.runner.RunKeys` and the epochs of its runs."""

    keys: object
    epochs: int

    @property
    def store(self):
        return self.keys.store

    def record(self, row, seed):
        """The stored run of ``row``'s configuration with ``seed`` (None if there is none)."""
        record = self.store.get(self.keys.key(row["configuration"], int(seed),
                                              int(row.get("epochs") or self.epochs)))
        return record if record is not None and record.value is not None else None


def finalize(*, out, runs, hypermodel, best, baseline, seeds, final_seeds, final_epochs,
             strategy, full_train=None, test_data, verbose=2, board=None, save_ledger=None):
    """Test the search's runs of the best configuration and the baseline, and train the model
    the user keeps (see the module docstring).

    Args:
        out: the search's output directory (a path or a :class:`search.rundir.RunDir`).
        runs: the search's :class:`StoredRuns` (each run's weights are in the run store).
        hypermodel: the search's :class:`search.hypermodel.AttentionHyperModel`.
        best, baseline: leaderboard rows (:func:`search.report.configuration_rows`); ``best`` may
            be None (no attention configuration finished: the baseline is then the kept model).
        seeds: the search's seeds whose runs are tested.
        final_seeds: the seeds of the retraining of the kept model.
        final_epochs: epochs of that retraining on ``full_train``; 0: the kept model is the
            search run with ``seeds[0]``.
        strategy: the ``tf.distribute`` strategy to build under.
        full_train: ``callable(seed) -> tf.data.Dataset`` over every training image in that
            seed's order (needed when ``final_epochs > 0``).
        test_data: the test split's ``tf.data.Dataset``.
        verbose: ``fit``'s verbosity.
        board: the leaderboard (:func:`search.report.configuration_rows`) whose ``analysis``
            chose ``best``: its candidates are tested too and give the selection-adjusted
            answer; None: only the best's own paired interval.
        save_ledger: ``callable(ledger)``, given the looks (:mod:`search.looks`) with the test
            split's look added, to keep with the search (the run directory's ``looks.json``).

    Returns:
        ``{"search_test": {...}, "best_model": {...}, "train_seconds"}``.
        ``search_test`` holds ``best`` and ``baseline`` (each ``trial``, ``runs`` ``{seed: test
        accuracy}``, ``test_accuracy`` mean, ``test_accuracy_std``, ``params``,
        ``params_added``), ``candidates`` (``{trial: {"runs": ...}}``), the best's answer
        (``delta_vs_baseline``, the simultaneous ``sim_ci95_low``/``high``, ``verdict``,
        ``p_adjusted``, ``how``; with ``board``) and its own ``paired_ci95_low``/``high``;
        ``best_model`` the kept model's ``runs``, ``test_accuracy``, ``test_accuracy_std``,
        ``train_loss`` and ``how``.
    """
    rundir = as_rundir(out)
    roles = [("baseline", baseline)] + ([("best", best)] if best is not None else [])
    done = _load(rundir.final)
    t0 = time.time()
    _test_search_runs(done, rundir, runs, hypermodel, roles, seeds, strategy, test_data, board,
                      save_ledger)
    kept_name, kept = roles[-1]
    if final_epochs:
        _train_best_model(done, rundir, hypermodel, kept_name, kept, final_seeds,
                          final_epochs, strategy, full_train, test_data, verbose)
    else:
        entry = done["search_test"][kept_name]
        src = rundir.best_search_model if kept is best else rundir.baseline_model
        _save_model(keras.models.load_model(src, compile=False), rundir.best_model)
        first = str(seeds[0])
        done["best_model"] = {
            "key": {"config": kept["config"], "final_epochs": 0}, "trial": kept["trial"],
            "config": kept["config"],
            "configuration": kept_name, "runs": {first: entry["runs"][first]},
            "test_accuracy": entry["runs"][first], "test_accuracy_std": None,
            "params": entry.get("params"), "params_added": entry.get("params_added"),
            "how": f"the {kept_name} configuration's search run with seed {first} (no "
                   "retraining, --final-epochs 0); test split"}
    done["train_seconds"] = round(done.get("train_seconds", 0.0) + time.time() - t0, 1)
    write_json(rundir.final, done)
    keras.backend.clear_session()
    return done
