"""Replay ``--schedule race`` on a finished search: how many runs would racing have trained, and
would it have given the same answer?

A race's decisions depend only on the runs' values, and a run's value depends only on its key
(the same configuration, seed and measured context give the same run): so the race is replayed
on the runs a full schedule stored, without training anything. For every stage the script asks
:class:`search.schedule.Schedule` (mode ``race``) for runs, answers each ask from the stored
table, and counts. Then it compares the two answers: the best configuration by the blocked
estimate and every configuration's verdict (:func:`search.decision.decide`, at a first look), on
the full table and on the raced one.

    python benchmarks/race_replay.py runs/search

Prints markdown. Not a test.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from search.decision import decide  # noqa: E402
from search.schedule import RACE_START, Schedule  # noqa: E402

BASELINE = "none (baseline)"


def read_table(out):
    """``{stage: {label: {seed: value}}}`` and every configuration's runs, from the leaderboard."""
    with open(os.path.join(out, "leaderboard.csv")) as f:
        rows = list(csv.DictReader(f))
    runs, stages = {}, {}
    for row in rows:
        label = BASELINE if row["attention"] == "none" else (
            f"{row['attention']}/{row['placement']} {row['hyperparameters']}")
        runs[label] = {int(s): v for s, v in json.loads(row["runs"]).items()}
        for stage in (row.get("stage") or "which").split("+"):
            stages.setdefault(stage, []).append(label)
    for members in stages.values():
        if BASELINE not in members:
            members.insert(0, BASELINE)
    return runs, stages


def race(runs, members, seeds):
    """The runs the race asks for, answered from ``runs``: ``(table, asked)``."""
    schedule = Schedule(members, tuple(seeds), BASELINE, mode="race", start=RACE_START)
    table, asked = {}, 0
    while True:
        todo = schedule.ask(table)
        if not todo:
            return table, asked
        for label, seed in todo:
            table.setdefault(label, {})[seed] = runs[label][seed]
            asked += 1


def answer(table):
    decision = decide(table, BASELINE)
    return decision.best, {c: k.verdict for c, k in decision.comparisons.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="a finished search's --out")
    args = parser.parse_args(argv)
    runs, stages = read_table(args.out)
    seeds = sorted({s for r in runs.values() for s in r})
    print("| stage | configurations | seeds | runs, full | runs, race | saved |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    raced, full_runs, race_runs = {}, 0, 0
    for stage, members in stages.items():
        members = [m for m in members if set(runs[m]) >= set(seeds)]
        table, asked = race(runs, members, seeds)
        # The baseline's runs are shared by every stage: counted in the first only.
        full = len(members) * len(seeds) - (len(seeds) if stage != "which" else 0)
        asked -= len(table.get(BASELINE, {})) if stage != "which" else 0
        print(f"| {stage} | {len(members)} | {len(seeds)} | {full} | {asked} | {full - asked} |")
        full_runs, race_runs = full_runs + full, race_runs + asked
        for label, values in table.items():
            raced.setdefault(label, {}).update(values)
    print(f"| all | {len(runs)} | {len(seeds)} | {full_runs} | {race_runs} | "
          f"{full_runs - race_runs} |")
    best_full, verdicts_full = answer(runs)
    best_race, verdicts_race = answer(raced)
    same = best_full == best_race and verdicts_full == verdicts_race
    print(f"\nbest (blocked estimate): full {best_full!r}, race {best_race!r}; verdicts "
          f"{'identical' if verdicts_full == verdicts_race else 'differ'}: "
          f"{'same answer' if same else 'a different answer'}")
    for label in verdicts_full:
        print(f"- {label}: full {verdicts_full[label]!r}, race {verdicts_race.get(label)!r} "
              f"({len(raced.get(label, {}))} seeds raced)")


if __name__ == "__main__":
    main()
