"""Statistics of repeated, paired runs: mean, standard deviation, and the paired difference.

The papers report "mean +- std over 5 runs" (e.g. SB Sec. 5.3 and Tables 5-10). A search that
compares configurations also needs the uncertainty of the *difference* to the baseline. Runs that
share a seed share the backbone's initial weights and the data order, so the per-seed differences
``d_s = a_s - b_s`` remove the seed's own luck from the comparison; their mean is the estimate and
a Student-t interval over the ``d_s`` is its 95% confidence interval:

    mean(d) +- t(0.975, n - 1) * std(d, ddof=1) / sqrt(n)

With fewer than two paired seeds there is no interval (``None``). An interval that contains 0
means the runs cannot tell the configuration from the baseline ("no significant difference at
the 5% level"), whatever the sign of the mean.
"""

from __future__ import annotations

import math

CONFIDENCE = 0.95


def mean_std(values):
    """``(mean, std)`` of a sequence of numbers, ``std`` with ``ddof=1`` (``None`` for n < 2).

    Raises:
        ValueError: an empty sequence.
    """
    values = [float(v) for v in values]
    if not values:
        raise ValueError("mean_std needs at least one value.")
    n = len(values)
    mean = math.fsum(values) / n
    if n < 2:
        return mean, None
    var = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var)


def t_interval(values, confidence=CONFIDENCE):
    """Student-t confidence interval ``(low, high)`` of the mean of ``values``; ``None`` for n < 2.

    Uses ``scipy.special.stdtrit`` for the quantile.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"`confidence` must be in (0, 1); got {confidence!r}.")
    mean, std = mean_std(values)
    n = len(values)
    if std is None:
        return None
    from scipy import special

    # scipy.special's Student-t quantile: the same value as scipy.stats.t.ppf, without the
    # distribution object's overhead (the decision procedure is simulated thousands of times).
    half = float(special.stdtrit(n - 1, 0.5 + confidence / 2)) * std / math.sqrt(n)
    return mean - half, mean + half


def paired_difference(values, baseline, confidence=CONFIDENCE):
    """The paired difference of two sets of runs keyed by seed.

    Args:
        values, baseline: ``{seed: value}``; only the seeds both have are paired.
        confidence: of the interval (default 0.95).

    Returns:
        ``{"delta": mean of the per-seed differences, "low", "high": the Student-t interval (None
        with fewer than two pairs), "pairs": number of paired seeds}``; ``delta`` is None when no
        seed is shared.
    """
    seeds = sorted(set(values) & set(baseline), key=str)
    diffs = [float(values[s]) - float(baseline[s]) for s in seeds]
    if not diffs:
        return {"delta": None, "low": None, "high": None, "pairs": 0}
    interval = t_interval(diffs, confidence)
    return {
        "delta": mean_std(diffs)[0],
        "low": None if interval is None else interval[0],
        "high": None if interval is None else interval[1],
        "pairs": len(diffs),
    }


def verdict(low, high):
    """A few words for a paired interval: ``"better"``, ``"worse"``, ``"no significant difference"``,
    or ``""`` without an interval."""
    if low is None or high is None:
        return ""
    if low > 0:
        return "better"
    if high < 0:
        return "worse"
    return "no significant difference"
