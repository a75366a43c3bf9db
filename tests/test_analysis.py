"""search.analysis: the blocked model against hand computations, Dunnett's critical value against
Dunnett's table and a Monte Carlo estimate, Holm against a hand adjustment, verdicts of made-up
tables with known effects."""

import math

import numpy as np
import pytest
from scipy import stats

from search.analysis import blocked_analysis, dunnett_critical_value, plan

# A balanced table: 3 configurations x 4 seeds (rows: configurations, columns: seeds).
BALANCED = {
    "none": {0: 0.800, 1: 0.812, 2: 0.795, 3: 0.806},
    "a": {0: 0.811, 1: 0.818, 2: 0.809, 3: 0.813},
    "b": {0: 0.797, 1: 0.815, 2: 0.790, 3: 0.808},
}


def _hand_rcbd(table, baseline):
    """Textbook RCBD by hand: contrasts of means, residuals y - row - column + grand."""
    keys = list(table)
    seeds = sorted(table[keys[0]])
    y = np.array([[table[c][s] for s in seeds] for c in keys])
    k, n = y.shape
    resid = y - y.mean(1, keepdims=True) - y.mean(0, keepdims=True) + y.mean()
    df = (k - 1) * (n - 1)
    sigma = math.sqrt((resid ** 2).sum() / df)
    means = dict(zip(keys, y.mean(1)))
    return {c: means[c] - means[baseline] for c in keys if c != baseline}, sigma, df, n


def test_balanced_contrasts_se_and_df_match_the_hand_computation():
    est, sigma, df, n = _hand_rcbd(BALANCED, "none")
    result = blocked_analysis(BALANCED, "none")
    assert result.residual_df == df == 6
    assert result.residual_sd == pytest.approx(sigma, rel=1e-9)
    for c in ("a", "b"):
        contrast = result.contrasts[c]
        assert contrast.estimate == pytest.approx(est[c], abs=1e-12)
        assert contrast.se == pytest.approx(sigma * math.sqrt(2 / n), rel=1e-9)
        # Simultaneous interval: estimate +- q * se with q from the balanced correlation 0.5.
        q = dunnett_critical_value(2, df)
        assert contrast.high - contrast.estimate == pytest.approx(q * contrast.se, rel=1e-9)
        assert contrast.pooled_paired_sd == pytest.approx(sigma * math.sqrt(2), rel=1e-9)
    # Own paired statistics: b vs none differs by -0.003, +0.003, -0.005, +0.002.
    diffs = np.array([-0.003, 0.003, -0.005, 0.002])
    b = result.contrasts["b"]
    assert b.paired_sd == pytest.approx(diffs.std(ddof=1), rel=1e-6)
    assert (b.wins, b.pairs) == (2, 4)
    half = stats.t.ppf(0.975, 3) * diffs.std(ddof=1) / 2
    assert b.paired_low == pytest.approx(diffs.mean() - half, rel=1e-6)


def test_two_configurations_with_a_missing_repeat_reduce_to_the_paired_t_test():
    # The baseline's seed-2 run only estimates seed 2's block effect: the contrast is the mean
    # of the two shared seeds' differences (0.010, 0.004), with 1 residual df and
    # SE = sd(d) / sqrt(2).
    runs = {"none": {0: 0.80, 1: 0.81, 2: 0.79}, "a": {0: 0.81, 1: 0.814}}
    result = blocked_analysis(runs, "none")
    d = np.array([0.010, 0.004])
    a = result.contrasts["a"]
    assert result.residual_df == 1
    assert a.estimate == pytest.approx(d.mean(), abs=1e-12)
    assert a.se == pytest.approx(d.std(ddof=1) / math.sqrt(2), rel=1e-6)
    assert a.high - a.estimate == pytest.approx(stats.t.ppf(0.975, 1) * a.se, rel=1e-6)


def test_unbalanced_table_matches_least_squares_of_the_design_matrix():
    runs = {k: dict(v) for k, v in BALANCED.items()}
    del runs["a"][3]  # a failed repeat
    runs["c"] = {0: 0.805, 1: 0.820}  # a configuration with fewer seeds
    cells = [(c, s, v) for c, r in runs.items() for s, v in r.items()]
    configs, seeds = list(runs), sorted({s for _, s, _ in cells})
    x = np.array([[1.0] + [float(c == k) for k in configs[1:]] + [float(s == t) for t in seeds[1:]]
                  for c, s, _ in cells])
    y = np.array([v for *_, v in cells])
    beta, *_ = np.linalg.lstsq(x, y, rcond=None)
    df = len(y) - x.shape[1]
    sigma2 = ((y - x @ beta) ** 2).sum() / df
    cov = sigma2 * np.linalg.inv(x.T @ x)
    result = blocked_analysis(runs, "none")
    assert result.residual_df == df == 6
    for i, c in enumerate(configs[1:], start=1):
        assert result.contrasts[c].estimate == pytest.approx(beta[i], abs=1e-10)
        assert result.contrasts[c].se == pytest.approx(math.sqrt(cov[i, i]), rel=1e-8)
    assert result.contrasts["c"].pairs == 2


def test_dunnett_matches_the_published_table():
    # Dunnett (1964), two-sided 95%, equal group sizes: 8 comparisons, 16 df: 2.97; 4, 20: 2.65.
    assert dunnett_critical_value(8, 16) == pytest.approx(2.97, abs=0.01)
    assert dunnett_critical_value(4, 20) == pytest.approx(2.65, abs=0.01)
    # One comparison is Student's t.
    assert dunnett_critical_value(1, 7) == pytest.approx(stats.t.ppf(0.975, 7), abs=1e-9)


def test_dunnett_matches_a_monte_carlo_estimate_for_an_unbalanced_correlation():
    corr = np.array([[1.0, 0.5, 0.35], [0.5, 1.0, 0.35], [0.35, 0.35, 1.0]])
    df = 9
    rng = np.random.default_rng(0)
    z = rng.multivariate_normal(np.zeros(3), corr, size=400_000)
    chi = np.sqrt(rng.chisquare(df, size=(400_000, 1)) / df)
    simulated = np.quantile(np.abs(z / chi).max(1), 0.95)
    assert dunnett_critical_value(corr, df) == pytest.approx(simulated, abs=0.02)


def test_holm_adjustment_matches_a_hand_computation():
    rng = np.random.default_rng(3)
    runs = {c: {s: 0.8 + 0.01 * s + shift + rng.normal(0, 0.002) for s in range(4)}
            for c, shift in (("none", 0), ("a", 0.004), ("b", 0.001), ("c", -0.003))}
    result = blocked_analysis(runs, "none")
    order = sorted(result.contrasts, key=lambda c: result.contrasts[c].p_value)
    m, running = len(order), 0.0
    for i, c in enumerate(order):
        running = max(running, min(1.0, (m - i) * result.contrasts[c].p_value))
        assert result.contrasts[c].p_holm == pytest.approx(running, rel=1e-9)


def test_verdicts_of_a_table_with_one_better_and_one_worse_configuration():
    rng = np.random.default_rng(7)
    shifts = {"none": 0.0, "good": 0.02, "bad": -0.02, "same1": 0.0, "same2": 0.0}
    runs = {c: {s: 0.85 + 0.01 * s + d + rng.normal(0, 0.002)
                for s in range(4)} for c, d in shifts.items()}
    result = blocked_analysis(runs, "none")
    verdicts = {c: v.verdict for c, v in result.contrasts.items()}
    assert verdicts == {"good": "better", "bad": "worse", "same1": "no significant difference",
                        "same2": "no significant difference"}
    assert result.contrasts["good"].p_holm < 0.05 < result.contrasts["same1"].p_holm
    # The budget could find effects of this size: the MDE is below the true 0.02.
    assert result.mde < 0.02


def test_levene_flags_a_configuration_much_noisier_than_the_others():
    rng = np.random.default_rng(1)
    sds = {"none": 0.0005, **{f"calm{i}": 0.0005 for i in range(4)}, "wild": 0.03}
    runs = {c: {s: 0.8 + rng.normal(0, sd) for s in range(8)} for c, sd in sds.items()}
    result = blocked_analysis(runs, "none")
    assert result.levene_p < 0.05
    assert "unequal variances" in result.contrasts["wild"].flags
    # Equal variances: no flag.
    calm = {c: {s: 0.8 + rng.normal(0, 0.002) for s in range(8)} for c in sds}
    assert blocked_analysis(calm, "none").levene_p > 0.05


def test_plan_agrees_with_the_analysis_of_a_balanced_table():
    est, sigma, df, n = _hand_rcbd(BALANCED, "none")
    planned = plan(sigma, configurations=3, seeds=4)
    result = blocked_analysis(BALANCED, "none")
    assert planned["residual_df"] == result.residual_df
    assert planned["half_width"] == pytest.approx(result.half_width, rel=1e-3)
    assert planned["mde"] == pytest.approx(result.mde, rel=1e-3)


def test_a_single_seed_gives_estimates_without_intervals_and_bad_input_is_named():
    result = blocked_analysis({"none": {0: 0.8}, "a": {0: 0.81}}, "none")
    assert result.residual_df == 0 and result.residual_sd is None
    assert result.contrasts["a"].estimate == pytest.approx(0.01)
    assert result.contrasts["a"].low is None and result.contrasts["a"].verdict == ""
    with pytest.raises(ValueError, match="'none' has no runs"):
        blocked_analysis({"a": {0: 0.8}}, "none")
    with pytest.raises(ValueError, match="df"):
        dunnett_critical_value(3, 0)


def test_a_configuration_whose_own_interval_disagrees_with_the_pooled_one_is_flagged():
    # "steady" beats the baseline by 0.004 on every seed with almost no spread, so its own paired
    # interval excludes 0; the other configurations are noisy, so the pooled, simultaneous
    # interval does not.
    rng = np.random.default_rng(5)
    runs = {"none": {s: 0.8 + 0.01 * s for s in range(3)}}
    runs["steady"] = {s: v + 0.004 + rng.normal(0, 1e-4) for s, v in runs["none"].items()}
    for name in ("noisy1", "noisy2", "noisy3"):
        runs[name] = {s: v + rng.normal(0, 0.01) for s, v in runs["none"].items()}
    steady = blocked_analysis(runs, "none").contrasts["steady"]
    assert steady.paired_low > 0 and steady.low < 0 < steady.high
    assert steady.verdict == "no significant difference"
    assert "intervals disagree" in steady.flags
