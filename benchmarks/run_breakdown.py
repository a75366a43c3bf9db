"""Where a search run's time goes: one configuration of the default recipe, replayed with recorders.

A search run (``search.runner.RunTrainer``) builds the configuration's model for a seed (or
restarts the first seed's model from that seed's initial weights), fits it on the seed's training
pipeline, validates it (once at the end, or every epoch with ``--validate-every-epoch``) and
stores its record and weights. This script runs that runner, seed after seed, into a temporary
run store, with the search's own data (``search.data.load_dataset`` with
``search.pipeline.load_kwargs`` of the command line) and hypermodel, and records the time of
every Keras callback event (wall, the main thread's CPU, the process's CPU), then prints each
run's split:

* ``build``: restarting the model (later seeds; the first seed's model is built before its run,
  for the run keys' model fingerprint, so its build is not counted);
* ``first step``: the first training step (tracing the train function, first run of every kernel);
* ``steps``: the other training steps (from each ``on_train_batch_begin`` to its ``_end``);
* ``validation``: ``evaluate`` on the validation set, its first call's tracing included;
* ``between steps``: from a step's end to the next one's start (the fit loop and callbacks);
* ``stalls``: the other gaps inside ``fit`` (the start and end of each epoch and of each
  validation, where Keras makes and drops its ``tf.data`` iterators), and the main thread's
  idle share of them;
* ``saving``: storing the run (its record and weights, into the temporary store).

    python benchmarks/run_breakdown.py                        # the baseline, 3 seeds
    python benchmarks/run_breakdown.py --attention sa --repeats 2
    python benchmarks/run_breakdown.py --validate epoch       # validate every epoch
    python benchmarks/run_breakdown.py --validation-size 5000 # a smaller validation set
    python benchmarks/run_breakdown.py --pipeline autotune    # the tf.data options of before

Options: ``--attention`` (one registered name, or none: the baseline), ``--repeats`` (seeds, 3),
``--validate`` (``end`` (default): fit without validation, then one ``evaluate``, as the
search's runs do; ``epoch``: every epoch, as they did before issue 27 and do with
``--validate-every-epoch``), ``--validation-size``
(the first N validation images; default all), ``--pipeline`` (``search`` (default): the
pipelines as ``search.data`` makes them, ``search.data.PIPELINE_OPTIONS``; ``autotune``:
``search.data.AUTOTUNED``, tf.data's autotuner choosing the map's parallelism and the prefetch
depth, as before issue 27; ``autotuner-only``: the search's map and prefetch with the autotuner
on; ``parallel-only``: the autotuned values of map and prefetch with the autotuner off),
``--train-size``, ``--epochs``, ``--batch-size``: the recipe's (defaults as
``keras-attn-search``). Any other option of ``keras-attn-search`` after ``--`` is passed to it.

Not a test: timings on a shared machine move between runs; read the shares, and compare
settings within one run of the script where you can.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

EVENTS = ("train_begin", "train_end", "epoch_begin", "epoch_end", "train_batch_begin",
          "train_batch_end", "test_begin", "test_end", "test_batch_begin", "test_batch_end")


def _clocks():
    return time.perf_counter(), time.thread_time(), time.process_time()


class Recorder:
    """A Keras callback logging ``(event, wall, main-thread CPU, process CPU)`` into ``log``.

    Callbacks run on the main thread, so ``time.thread_time`` there is the main thread's CPU.
    """

    def __new__(cls, log):
        import keras

        class _Recorder(keras.callbacks.Callback):
            pass

        def hook(name):
            def record(self, *args, **kwargs):
                log.append((name, *_clocks()))
            return record

        for name in EVENTS:
            setattr(_Recorder, f"on_{name}", hook(name))
        return _Recorder()


@dataclasses.dataclass
class Split:
    """One run's seconds by phase (see the module docstring) and the stalls' idle share."""

    build: float = 0.0
    first_step: float = 0.0
    steps: float = 0.0
    validation: float = 0.0
    between_steps: float = 0.0
    stalls: float = 0.0
    stalls_idle: float = 0.0
    saving: float = 0.0
    wall: float = 0.0
    steps_count: int = 0
    gaps: list = dataclasses.field(default_factory=list)  # (seconds, from, to, main thread idle)

    @property
    def other(self):
        named = (self.build + self.first_step + self.steps + self.validation
                 + self.between_steps + self.stalls + self.saving)
        return max(0.0, self.wall - named)


PHASES = ("build", "first_step", "steps", "validation", "between_steps", "stalls", "saving",
          "other")


def split_of(log, build, fit_wall, saving, wall):
    """A :class:`Split` from one run's event ``log`` (see :class:`Recorder`); ``fit_wall`` is the
    wall time of the ``fit`` (and ``evaluate``) calls, whose time outside the first and last event
    (making the data iterators and the train function, ending) counts as a stall."""
    s = Split(build=build, saving=saving, wall=wall)
    prev = None  # (event, wall, main-thread CPU) of the last event outside a validation
    test_start = None
    first = True
    for name, t, cpu, _ in log:
        if test_start is not None:  # inside evaluate: one span
            if name == "test_end":
                s.validation += t - test_start
                test_start = None
                prev = (name, t, cpu)
            continue
        if prev is not None:
            pname, pt, pcpu = prev
            gap = t - pt
            if pname == "train_batch_begin" and name == "train_batch_end":
                if first:
                    s.first_step += gap
                    first = False
                else:
                    s.steps += gap
                    s.steps_count += 1
            elif pname == "train_batch_end" and name == "train_batch_begin":
                s.between_steps += gap
            else:
                s.stalls += gap
                # The main thread idle: it used under half the gap's wall time.
                idle = cpu - pcpu < 0.5 * gap
                if idle:
                    s.stalls_idle += gap
                s.gaps.append((gap, pname, name, idle))
        if name == "test_begin":
            test_start = t
        prev = (name, t, cpu)
    if log:
        outside = max(0.0, fit_wall - (log[-1][1] - log[0][1]))
        s.stalls += outside
        s.gaps.append((outside, "fit called", "first and after the last event", None))
    return s


def _pipelines(data_mod):
    """``--pipeline`` -> ``search.data.PipelineOptions``: the search's, the earlier autotuned
    one, and each of its two differences alone."""
    import tensorflow as tf

    return {
        "search": data_mod.PIPELINE_OPTIONS,
        "autotune": data_mod.AUTOTUNED,
        "autotuner-only": data_mod.PipelineOptions(map_parallelism=None, prefetch=2,
                                                   autotune=True),
        "parallel-only": data_mod.PipelineOptions(map_parallelism=tf.data.AUTOTUNE,
                                                  prefetch=tf.data.AUTOTUNE, autotune=False),
    }


def replay(args):
    """Run the configuration once per seed through the search's own runner
    (``search.runner.RunTrainer`` into a temporary run store: the first seed builds, later ones
    restart its model); returns ``[Split]``."""
    import keras_tuner

    from search import data as data_mod
    from search import training
    from search.cli import parse_args
    from search.pipeline import Started, load_kwargs, make_hypermodel
    from search.runner import RunTrainer
    from search.store import RunStore

    cli = ["--attention", args.attention if args.attention != "none" else "sa",
           "--train-size", str(args.train_size), "--epochs", str(args.epochs),
           "--batch-size", str(args.batch_size), *args.search_args]
    config = parse_args(cli)
    data_mod.PIPELINE_OPTIONS = _pipelines(data_mod)[args.pipeline]
    splits = data_mod.load_dataset(**load_kwargs(config))
    val = splits.val
    if args.validation_size:
        val = val.unbatch().take(args.validation_size).batch(config.data.batch_size)
    precision = training.set_precision("auto")
    hypermodel = make_hypermodel(config, Started(splits, precision, None))
    hp = keras_tuner.HyperParameters()
    hp.Fixed("attention", args.attention)
    hypermodel.declare(hp)
    tmp = tempfile.mkdtemp(prefix="run_breakdown_")
    trainer = RunTrainer(hypermodel, RunStore(os.path.join(tmp, "store")),
                         config.measured(precision, 1, {}), train_data=splits.train_with_seed,
                         validation_data=val, epochs=config.recipe.epochs,
                         validate_every_epoch=args.validate == "epoch")
    logs, ends = {}, [time.perf_counter()]

    def callbacks_for(index, seed):
        logs[seed] = []
        return [Recorder(logs[seed])]

    def log(line):
        # The runner logs its plan (after building the first model, whose fingerprint is in the
        # keys), then one line as each run is stored: a run's wall time is between two lines.
        if " seed " in line:
            ends.append(time.perf_counter())
        else:
            ends[:] = [time.perf_counter()]
        print(f"  {line}", file=sys.stderr, flush=True)

    seeds = tuple(range(args.repeats))
    trained = trainer.train(hypermodel.configuration(hp), seeds, callbacks_for=callbacks_for,
                            log=log)
    results = []
    for i, seed in enumerate(seeds):
        t = trained.records[seed].timings
        wall = ends[i + 1] - ends[i]
        split = split_of(logs[seed], t["build_seconds"], t["fit_seconds"],
                         saving=wall - t["wall_seconds"], wall=wall)
        if args.validate == "end":  # the runner's one evaluate, after fit
            split.validation += t["validation_seconds"]
        results.append(split)
    return results


def table(results):
    """Markdown: each phase's seconds per run and its share of the run's wall time."""
    lines = ["| phase | " + " | ".join(f"seed {i}" for i in range(len(results))) +
             " | share, later seeds |",
             "| --- | " + " | ".join("---:" for _ in results) + " | ---: |"]
    later = results[1:] or results
    total_later = sum(r.wall for r in later)
    for phase in PHASES:
        values = [getattr(r, phase) for r in results]
        share = sum(getattr(r, phase) for r in later) / total_later
        lines.append(f"| {phase.replace('_', ' ')} | " + " | ".join(f"{v:.2f}" for v in values)
                     + f" | {share:.1%} |")
    lines.append("| **run (wall)** | " + " | ".join(f"{r.wall:.2f}" for r in results) +
                 " | 100% |")
    idle = [f"{r.stalls_idle:.2f}" for r in results]
    mean_step = [r.steps / r.steps_count if r.steps_count else float("nan") for r in results]
    lines.append("")
    lines.append(f"Stalls with the main thread idle (s): {', '.join(idle)}. Mean step (s): "
                 f"{', '.join(f'{m:.4f}' for m in mean_step)}.")
    lines.append("")
    lines.append("The largest stalls (seconds, between which events, main thread idle):")
    for i, r in enumerate(results):
        top = sorted(r.gaps, key=lambda g: -g[0])[:4]
        lines.append(f"- seed {i}: " + "; ".join(
            f"{g:.2f} s {a} -> {b}{'' if idle is None else (', idle' if idle else ', busy')}"
            for g, a, b, idle in top))
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--attention", default="none")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--validate", default="end", choices=["end", "epoch"])
    p.add_argument("--validation-size", type=int, default=0)
    p.add_argument("--pipeline", default="search",
                   choices=["search", "autotune", "autotuner-only", "parallel-only"])
    p.add_argument("--train-size", type=int, default=10000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--output", help="also write the markdown to this file")
    p.add_argument("search_args", nargs="*", help="after --: more keras-attn-search options")
    args = p.parse_args(argv)
    import tensorflow as tf

    header = [
        "## keras-attn run breakdown", "",
        f"- date: {datetime.date.today().isoformat()}; {os.cpu_count()} CPUs; TensorFlow "
        f"{tf.__version__}",
        f"- command: `python benchmarks/run_breakdown.py "
        f"{' '.join(argv if argv is not None else sys.argv[1:])}`",
        f"- configuration {args.attention}, {args.repeats} seeds, {args.epochs} epochs of "
        f"{args.train_size} images at batch {args.batch_size}, validation "
        f"{'every epoch' if args.validate == 'epoch' else 'once at the end'} on "
        f"{args.validation_size or 'all the'} validation images, pipelines: {args.pipeline}",
        "",
    ]
    print("\n".join(header), flush=True)
    results = replay(args)
    text = table(results)
    print(text, flush=True)
    if args.output:
        with open(args.output, "w") as f:
            f.write("\n".join(header) + text + "\n")


if __name__ == "__main__":
    main()
