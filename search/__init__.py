"""The architecture search over where and which attention to put in a backbone (KerasTuner).

Modules: :mod:`search.data` (input pipelines), :mod:`search.training` (precision, strategy, compile,
callbacks), :mod:`search.hypermodel` (the search space), :mod:`search.protocol` (seeds, repeats),
:mod:`search.stats` (mean, std, paired interval), :mod:`search.analysis` (the blocked model of
all runs: pooled variance, Dunnett's simultaneous intervals, Holm, minimum detectable effect),
:mod:`search.tuning` (tuners),
:mod:`search.report` (leaderboard, plots, summary), :mod:`search.final` (the test) and the CLI. Importing ``search`` itself is
cheap: the names below load their module (and TensorFlow) on first use.
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
    "describe_hyperparameters": "search.hypermodel",
    "trial_row": "search.hypermodel",
    "Protocol": "search.protocol",
    "make_tuner": "search.tuning",
    "paired_difference": "search.stats",
    "blocked_analysis": "search.analysis",
    "dunnett_critical_value": "search.analysis",
    "plan": "search.analysis",
    "mean_std": "search.stats",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'search' has no attribute {name!r}")
