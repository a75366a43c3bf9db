"""The architecture search over where and which attention to put in a backbone (KerasTuner).

The data flows one way (the README's Development section draws it): :mod:`search.cli` (options)
-> :mod:`search.config` (``SearchConfig``, validated once) -> :mod:`search.pipeline` (the stages,
over a :class:`search.rundir.RunDir`) -> :mod:`search.tuning` (KerasTuner's tuners with the
comparison protocol of :mod:`search.protocol`) over :mod:`search.hypermodel` (a trial's model),
:mod:`search.space` (the space, from the layers) and :mod:`search.recipe` (the training recipe)
-> :mod:`search.report` with :mod:`search.decision` (the verdicts; over :mod:`search.analysis`,
:mod:`search.calibration`, :mod:`search.looks`) and :mod:`search.stats` (the leaderboard),
:mod:`search.costs` and :mod:`search.final` (the test split, the kept model). Importing
``search`` itself is cheap: the names below load their module (and TensorFlow) on first use.
"""

import importlib

_LAZY = {
    "DataSplits": "search.data",
    "DataNotFoundError": "search.data",
    "load_dataset": "search.data",
    "load_fashion_mnist_arrays": "search.data",
    "read_idx": "search.data",
    "compile_model": "search.training",
    "make_callbacks": "search.training",
    "resolve_precision": "search.training",
    "resolve_strategy": "search.training",
    "set_precision": "search.training",
    "StopOnNaN": "search.training",
    "AttentionHyperModel": "search.hypermodel",
    "Recipe": "search.recipe",
    "SearchSpace": "search.space",
    "SearchConfig": "search.config",
    "RunDir": "search.rundir",
    "build_tuner": "search.tuning",
    "describe_hyperparameters": "search.space",
    "trial_row": "search.space",
    "Protocol": "search.protocol",
    "make_tuner": "search.tuning",
    "paired_difference": "search.stats",
    "decide": "search.decision",
    "plan": "search.decision",
    "race": "search.decision",
    "test_answer": "search.decision",
    "mean_std": "search.stats",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'search' has no attribute {name!r}")
