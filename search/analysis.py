"""The leaderboard's statistics: a randomized complete block design, seeds as blocks.

Every configuration of a search is trained with the same seeds; one seed fixes the backbone's
initial weights, the data order and the augmentation for all of them. The seeds are therefore
*blocks* and the configurations *treatments* of a randomized complete block design, and the
accuracies are analysed with the two-way additive model (ordinary least squares, ``statsmodels``)

    accuracy[c, s] = mu + tau[c] + beta[s] + e[c, s],    e ~ N(0, sigma^2)

with the baseline (no attention) as the reference level of ``tau``. Its benefits over one paired
t interval per configuration (:mod:`search.stats`, kept beside it):

* ``sigma`` is estimated from every configuration's runs at once: ``residual_df = N - k - n + 1``
  degrees of freedom (``(k - 1)(n - 1)`` when every one of ``k`` configurations ran all ``n``
  seeds) instead of ``n - 1`` per configuration. With 3 seeds and 5 configurations that is 8
  degrees of freedom instead of 2 (a t quantile of 2.31 instead of 4.30).
* All ``k - 1`` contrasts ``tau[c] - tau[baseline]`` get *simultaneous* 95% intervals (Dunnett's
  many-to-one procedure, Dunnett 1955, J. Am. Stat. Assoc. 50:1096): with probability 0.95 every
  interval covers its true difference at once, so that comparing 8 configurations with one
  baseline does not find a "significant" one by chance one time in three. The critical value is
  the 95% quantile of ``max_c |T_c|``, ``T`` multivariate t with the contrasts' correlation and
  ``residual_df`` degrees of freedom (``scipy.stats.multivariate_t``; ``scipy.stats.dunnett``
  assumes independent groups, which blocked runs are not). Unbalanced data (a configuration with
  fewer seeds, a failed repeat) only change the covariance the critical value is computed from.
* Holm's step-down adjustment of the contrasts' p-values
  (``statsmodels.stats.multitest.multipletests(method="holm")``) controls the same family-wise
  error for the yes/no question.

The verdicts (``better`` / ``worse`` / ``no significant difference``) come from the simultaneous
interval. Beside it each configuration keeps its own paired interval (``n - 1`` degrees of
freedom, unadjusted), the standard deviation of its own per-seed differences next to the pooled
one, its wins over the seeds, and flags where the two intervals disagree or where Levene's test
(Brown-Forsythe form, ``scipy.stats.levene(center="median")``) on the model's residuals by
configuration says that pooling one variance is doubtful.

The minimum detectable effect (MDE) says what the budget could have found: the true difference
that a contrast declares at the simultaneous level with 80% power,
``MDE = (q_dunnett + t(0.80, residual_df)) * SE``, ``SE`` the contrast's standard error (the usual
normal-theory approximation, e.g. Montgomery, Design and Analysis of Experiments, Sec. 2.4). A
"no significant difference" means "smaller than about the MDE, if anything", not "no effect".
:func:`plan` gives the same numbers for a planned budget from a standard deviation measured on the
first runs.
"""

from __future__ import annotations

import dataclasses
import math

CONFIDENCE = 0.95
POWER = 0.80
# Monte Carlo points of scipy's multivariate t CDF per dimension; with the fixed seed below the
# critical value is reproducible to 4 digits and within 0.005 of Dunnett's tables.
_MVT_POINTS = 20000
_MVT_SEED = 12345
LEVENE_ALPHA = 0.05


@dataclasses.dataclass(frozen=True)
class Contrast:
    """One configuration against the baseline.

    Attributes:
        configuration: its key in the table.
        estimate: the blocked model's ``tau[c] - tau[baseline]`` (accuracy units, e.g. 0.012 = 1.2
            points); with every seed shared it equals the mean paired difference.
        se: its standard error from the pooled residual variance.
        low, high: Dunnett's simultaneous ``confidence`` interval (None without residual df).
        p_value, p_holm: the two-sided t-test of ``estimate = 0`` and its Holm-adjusted value.
        verdict: ``"better"``, ``"worse"``, ``"no significant difference"`` (from ``low``/``high``)
            or ``""`` (no interval).
        paired_low, paired_high: the configuration's own paired Student-t interval (unpooled,
            unadjusted; None with fewer than 2 shared seeds).
        paired_sd: standard deviation (ddof=1) of its own per-seed differences; pooled_paired_sd:
            the same quantity from the pooled model, ``sigma * sqrt(2)``.
        wins, pairs: seeds on which it beat the baseline, of the seeds both ran.
        mde: minimum detectable effect of this contrast (see the module docstring).
        flags: ``"intervals disagree"`` when the unpooled interval's verdict differs from the
            simultaneous one; ``"unequal variances"`` when Levene's test rejects equal variances
            (then the pooled interval may be too narrow for the noisier configurations).
    """

    configuration: object
    estimate: float
    se: float | None
    low: float | None
    high: float | None
    p_value: float | None
    p_holm: float | None
    verdict: str
    paired_low: float | None
    paired_high: float | None
    paired_sd: float | None
    pooled_paired_sd: float | None
    wins: int
    pairs: int
    mde: float | None
    flags: tuple = ()


@dataclasses.dataclass(frozen=True)
class BlockedAnalysis:
    """The blocked model of a search's runs (see the module docstring).

    Attributes:
        baseline: the reference configuration's key.
        contrasts: ``{configuration: Contrast}`` for every other configuration with a run in a
            seed the model can use.
        residual_df: residual degrees of freedom of the two-way model (0: no interval).
        residual_sd: the pooled ``sigma`` (None when ``residual_df == 0``).
        critical_value: Dunnett's two-sided critical value (None when ``residual_df == 0``).
        levene_p: p-value of Levene's test of equal residual variances over configurations
            (None when fewer than two configurations have 2+ runs).
        seeds: the seeds (blocks) in the model; runs: number of runs (observations).
        confidence, power: of the intervals and of the MDE.
    """

    baseline: object
    contrasts: dict
    residual_df: int
    residual_sd: float | None
    critical_value: float | None
    levene_p: float | None
    seeds: tuple
    runs: int
    confidence: float = CONFIDENCE
    power: float = POWER

    @property
    def half_width(self):
        """The largest simultaneous half-width over the contrasts (None without intervals)."""
        widths = [c.high - c.estimate for c in self.contrasts.values() if c.high is not None]
        return max(widths) if widths else None

    @property
    def mde(self):
        """The largest minimum detectable effect over the contrasts (None without intervals)."""
        values = [c.mde for c in self.contrasts.values() if c.mde is not None]
        return max(values) if values else None


def dunnett_critical_value(correlation, df, confidence=CONFIDENCE):
    """Two-sided critical value ``q`` of Dunnett's many-to-one procedure:
    ``P(max_i |T_i| <= q) = confidence`` for ``T`` multivariate t with ``df`` degrees of freedom
    and the given correlation matrix (``scipy.stats.multivariate_t``, Monte Carlo with a fixed
    seed). One contrast gives the Student-t quantile exactly; ``df=inf`` the normal one.

    Args:
        correlation: ``(m, m)`` correlation matrix of the ``m`` contrasts (or a number of
            contrasts ``m``, meaning the balanced design's correlation 0.5).
        df: degrees of freedom, > 0.
        confidence: in (0, 1) (default 0.95).

    Raises:
        ValueError: ``df <= 0``, ``confidence`` outside (0, 1) or a non-square matrix.
    """
    import numpy as np
    from scipy import optimize, stats

    if not 0 < confidence < 1:
        raise ValueError(f"`confidence` must be in (0, 1); got {confidence!r}.")
    if not df > 0:
        raise ValueError(f"`df` must be > 0; got {df!r}.")
    if np.ndim(correlation) == 0:
        m = int(correlation)
        correlation = np.full((m, m), 0.5) + 0.5 * np.eye(m)
    corr = np.asarray(correlation, dtype="float64")
    if corr.ndim != 2 or corr.shape[0] != corr.shape[1] or corr.shape[0] < 1:
        raise ValueError(f"`correlation` must be a square matrix; got shape {corr.shape}.")
    m = corr.shape[0]
    if m == 1:
        return float(stats.t.ppf(0.5 + confidence / 2, df))
    if math.isinf(df):
        dist = stats.multivariate_normal(mean=np.zeros(m), cov=corr, allow_singular=True)

        def coverage(q):
            return dist.cdf(np.full(m, q), lower_limit=np.full(m, -q)) - confidence
    else:
        dist = stats.multivariate_t(loc=np.zeros(m), shape=corr, df=df, allow_singular=True)

        def coverage(q):
            return dist.cdf(np.full(m, q), lower_limit=np.full(m, -q),
                            maxpts=_MVT_POINTS * m, random_state=_MVT_SEED) - confidence
    # Bonferroni's value is an upper bound of Dunnett's, Student's single-comparison one a lower.
    low = float(stats.t.ppf(0.5 + confidence / 2, df))
    high = float(stats.t.ppf(1 - (1 - confidence) / (2 * m), df)) + 1e-6
    return float(optimize.brentq(coverage, low, high, xtol=1e-4))


def _model_table(runs, baseline):
    """Long table ``(configuration id, seed id, value)`` of the runs whose seed the model can use,
    and the id of each configuration (the baseline first, as ``c0``)."""
    keys = [baseline] + [c for c in runs if c != baseline]
    ids = {c: f"c{i}" for i, c in enumerate(keys)}
    rows = [(ids[c], f"s{s}", float(v)) for c in keys for s, v in sorted(runs[c].items(),
                                                                            key=lambda i: str(i[0]))
            if v is not None and math.isfinite(float(v))]
    return rows, ids


def blocked_analysis(runs, baseline, confidence=CONFIDENCE, power=POWER):
    """Fit the blocked model to a search's runs and compare every configuration with the baseline.

    Args:
        runs: ``{configuration: {seed: value}}``, e.g. each leaderboard row's ``runs``; values
            in accuracy units. Non-finite values are left out.
        baseline: the key of the reference configuration in ``runs``.
        confidence: of the simultaneous and the paired intervals (default 0.95).
        power: of the minimum detectable effect (default 0.80).

    Returns:
        a :class:`BlockedAnalysis`.

    Raises:
        ValueError: ``baseline`` not in ``runs`` or without runs.
    """
    import numpy as np
    import pandas as pd
    import statsmodels.formula.api as smf
    from scipy import stats as sps
    from statsmodels.stats.multitest import multipletests

    from search import stats

    if baseline not in runs or not runs[baseline]:
        raise ValueError(f"The baseline {baseline!r} has no runs; configurations: "
                         f"{', '.join(map(str, runs))}.")
    rows, ids = _model_table(runs, baseline)
    frame = pd.DataFrame(rows, columns=["configuration", "seed", "accuracy"])
    present = [c for c in ids if ids[c] in set(frame["configuration"])]
    seeds = tuple(sorted({s for c in present for s in runs[c]}, key=str))
    n_conf, n_seed = frame["configuration"].nunique(), frame["seed"].nunique()
    residual_df = len(frame) - n_conf - n_seed + 1
    formula = "accuracy ~ C(configuration, Treatment('c0'))"
    if n_seed > 1:
        formula += " + C(seed)"
    fit = smf.ols(formula, data=frame).fit() if n_conf > 1 else None
    names = {c: f"C(configuration, Treatment('c0'))[T.{ids[c]}]" for c in present
             if c != baseline}
    if fit is not None:  # a configuration whose only runs share no seed is not estimable
        names = {c: n for c, n in names.items() if n in fit.params.index}
    residual_df = int(round(fit.df_resid)) if fit is not None else 0
    sigma = math.sqrt(fit.scale) if fit is not None and residual_df > 0 else None
    contrasts_list = list(names)
    crit = None
    if sigma is not None and sigma > 0 and contrasts_list:
        cov = fit.cov_params().loc[list(names.values()), list(names.values())].to_numpy()
        se = np.sqrt(np.diag(cov))
        crit = dunnett_critical_value(cov / np.outer(se, se), residual_df, confidence)
    p_raw = {c: float(fit.pvalues[n]) for c, n in names.items()} if sigma else {}
    p_holm = {}
    if p_raw:
        adjusted = multipletests(list(p_raw.values()), alpha=1 - confidence, method="holm")[1]
        p_holm = dict(zip(p_raw, (float(p) for p in adjusted)))
    levene_p = _levene(fit, frame) if sigma else None
    t_power = float(sps.t.ppf(power, residual_df)) if residual_df > 0 else None
    contrasts = {}
    for c in contrasts_list:
        estimate = float(fit.params[names[c]])
        se_c = float(fit.bse[names[c]]) if sigma else None
        low = high = mde = None
        if crit is not None:
            low, high = estimate - crit * se_c, estimate + crit * se_c
            mde = (crit + t_power) * se_c
        paired = stats.paired_difference(runs[c], runs[baseline], confidence)
        shared = sorted(set(runs[c]) & set(runs[baseline]), key=str)
        diffs = [float(runs[c][s]) - float(runs[baseline][s]) for s in shared]
        verdict = stats.verdict(low, high)
        own = stats.verdict(paired["low"], paired["high"])
        flags = []
        if verdict and own and own != verdict:
            flags.append("intervals disagree")
        if levene_p is not None and levene_p < LEVENE_ALPHA:
            flags.append("unequal variances")
        contrasts[c] = Contrast(
            configuration=c, estimate=estimate, se=se_c, low=low, high=high,
            p_value=p_raw.get(c), p_holm=p_holm.get(c), verdict=verdict,
            paired_low=paired["low"], paired_high=paired["high"],
            paired_sd=stats.mean_std(diffs)[1] if len(diffs) > 1 else None,
            pooled_paired_sd=None if sigma is None else sigma * math.sqrt(2),
            wins=sum(d > 0 for d in diffs), pairs=len(diffs), mde=mde, flags=tuple(flags))
    return BlockedAnalysis(baseline=baseline, contrasts=contrasts, residual_df=residual_df,
                           residual_sd=sigma, critical_value=crit, levene_p=levene_p,
                           seeds=seeds, runs=len(frame), confidence=confidence, power=power)


def _levene(fit, frame):
    """Levene's (Brown-Forsythe) test of equal residual variance over the configurations with at
    least three runs (with two, both absolute deviations from the median are equal and the test
    degenerates); None when fewer than two such configurations exist or it is undefined."""
    import warnings

    from scipy import stats as sps

    groups = [g.to_numpy() for _, g in fit.resid.groupby(frame["configuration"]) if len(g) > 2]
    if len(groups) < 2:
        return None
    with warnings.catch_warnings():  # constant deviations: a 0/0 the NaN check below catches
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(sps.levene(*groups, center="median").pvalue)
    return None if math.isnan(p) else p


def plan(sd, configurations, seeds, confidence=CONFIDENCE, power=POWER):
    """The simultaneous half-width and MDE a balanced search would reach.

    Args:
        sd: the residual standard deviation ``sigma`` of one run (e.g. ``residual_sd`` of the
            runs so far); the paired difference of two runs then has ``sigma * sqrt(2)``.
        configurations: ``k``, the baseline included (>= 2).
        seeds: ``n`` per configuration (>= 2).

    Returns:
        ``{"half_width", "mde", "residual_df", "critical_value"}`` of the ``k - 1`` contrasts.

    Raises:
        ValueError: ``configurations < 2``, ``seeds < 2`` or ``sd < 0``.
    """
    from scipy import stats as sps

    if configurations < 2 or seeds < 2 or not sd >= 0:
        raise ValueError(f"plan needs configurations >= 2, seeds >= 2 and sd >= 0; got "
                         f"{configurations}, {seeds}, {sd}.")
    df = (configurations - 1) * (seeds - 1)
    crit = dunnett_critical_value(configurations - 1, df, confidence)
    se = sd * math.sqrt(2.0 / seeds)
    return {"half_width": crit * se, "mde": (crit + float(sps.t.ppf(power, df))) * se,
            "residual_df": df, "critical_value": crit}
