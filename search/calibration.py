"""Critical values that keep the family-wise error when the noise differs and the looks repeat.

The blocked model (:mod:`search.analysis`) pools one residual variance over every configuration.
When the configurations differ in noise that variance is wrong for some of them, and Dunnett's
critical value (Dunnett 1955, J. Am. Stat. Assoc. 50:1096: the 95% quantile of ``max_c |T_c|``
for the contrasts' multivariate t) no longer holds: with the baseline 3x noisier than the rest,
5 configurations x 3 seeds, its family-wise error is 0.136, and 9 x 3 gives 0.225. At 3 seeds no
variance estimate per configuration is good enough to repair the statistic (each has 2 degrees
of freedom; ``benchmarks/error_rates.py --candidates`` measures per-configuration variances with
and without shrinkage toward the pooled one, limma-style, and none does better than a few
percent), so the statistic stays the pooled t and its **critical value** is raised instead:

    q = the smallest value with P(max_c |T_c| > q) <= alpha for every noise pattern in which
        each configuration's standard deviation is between 1 and ``noise_ratio`` (default 3)
        times the others', the baseline included.

The t statistics are invariant to the runs' means, the seed effects and a common scale, so
their joint law depends only on the cells and the pattern; ``q`` is found by simulating the
design under the patterns where the worst case lies (all equal; the baseline noisier; each
configuration noisier, alone or with the baseline: the vertices that raise one contrast's or
every contrast's variance the most over the pooled estimate) with common random numbers and a
fixed seed, so the same runs give the same ``q``. With equal noise the result is Dunnett's
value (``tests/test_analysis.py`` checks it against a numerical integration).

**Looks.** The same simulation gives group-sequential critical values (:mod:`search.looks`):
the earlier looks' cells are part of the simulated table, their statistics are computed from
their own cells and compared with their recorded critical values, and look ``j``'s value is
the one at which the chance of a verdict at look ``j`` and at no earlier look is this look's
share ``A_j - A_(j-1)`` (Lan & DeMets' increment: the earlier looks spent at most
``A_(j-1)``, so the family-wise error over looks ``1..j`` is at most ``A_j``).

**One comparison at a single look** (the baseline and one configuration) needs no simulation:
its statistic is the paired t, Student's t with ``n - 1`` degrees of freedom whatever the two
configurations' noise, and its critical value is Student's quantile.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from search.analysis import design_for, seed_order

#: Simulated tables per noise pattern. The achieved level's Monte Carlo standard error is
#: ``sqrt(alpha (1 - alpha) / DRAWS)``: 0.0014 at alpha 0.04.
DRAWS = 20_000
_SEED = 20_260_412
NOISE_RATIO = 3.0


@dataclasses.dataclass(frozen=True, eq=False)
class Boundary:
    """A look's critical value and what it was computed from.

    Attributes:
        critical_value: reject a contrast when ``|t| > critical_value``.
        alpha: the family-wise error spent up to this look (``spent`` before it).
        mc_error: Monte Carlo standard error of the achieved level at the worst pattern.
        worst: the noise pattern that set the value (``{configuration: sd multiplier}``;
            empty for Student's exact value).
        draws: simulated tables per pattern.
    """

    critical_value: float
    alpha: float
    mc_error: float
    worst: dict
    draws: int
    # Per pattern: the sorted maxima of this look's tables without a verdict at an earlier look.
    spent: float = 0.0
    _sorted: tuple = dataclasses.field(repr=False, default=())
    _student_df: int = dataclasses.field(repr=False, default=0)

    def p_family(self, t):
        """The family-wise p-value of ``|t|`` at this look: the error spent before it plus the
        largest chance over the noise patterns, with no true difference, of some ``|T| >= |t|``
        at this look and no verdict at an earlier one. ``p_family(t) <= alpha`` exactly when
        ``|t|`` passes (up to the simulation's resolution)."""
        t = abs(float(t))
        if self._student_df:
            from scipy import special

            return float(2 * special.stdtr(self._student_df, -t))
        return self.spent + float(max((len(m) - np.searchsorted(m, t, side="left")) / self.draws
                                      for m in self._sorted))


def patterns(configurations, ratio):
    """The candidate worst noise patterns: ``[{configuration: multiplier}, ...]`` with the
    baseline (the first configuration) and every configuration at 1 or ``ratio``."""
    base, others = configurations[0], configurations[1:]
    ones = dict.fromkeys(configurations, 1.0)
    out = [ones]
    if ratio == 1.0:
        return out
    out.append({**ones, base: ratio})
    for c in others:
        out.append({**ones, c: ratio})
        out.append({**ones, c: ratio, base: ratio})
    return out


def _maxima(design, y):
    """``max_c |T_c|`` of each simulated table at one look (zeros without contrasts)."""
    if not design.contrasts or design.residual_df <= 0:
        return np.zeros(len(y))
    return np.abs(design.t_statistics(y)).max(axis=1)


def _canonical(key, earlier):
    """The looks' cells with configurations and seeds renamed by their place in the design, so
    that designs equal up to names share one simulation; and the map back to the names."""
    all_looks = [k for k, *_ in earlier] + [key]
    base = key[0][0]
    seeds = sorted({s for k in all_looks for _, s in k}, key=seed_order)
    rank = {s: i for i, s in enumerate(seeds)}

    def signature(c):
        return tuple(tuple(sorted(rank[s] for d, s in k if d == c)) for k in all_looks)

    others = sorted({c for k in all_looks for c, _ in k} - {base},
                    key=lambda c: (signature(c), str(c)))
    index = {c: i for i, c in enumerate([base, *others])}

    def rename(k):
        return tuple(sorted(((index[c], rank[s]) for c, s in k),
                            key=lambda cell: (cell[0] != 0, cell)))

    return (rename(key), tuple((rename(k), c, a) for k, c, a in earlier),
            {i: c for c, i in index.items()})


@functools.lru_cache(maxsize=256)
def boundary(key, earlier, alpha, ratio=NOISE_RATIO, draws=DRAWS):
    """The critical value of the look with cells ``key`` (see the module docstring).

    Args:
        key: ``((configuration, seed), ...)`` of this look's model, the baseline's cells first;
            hashable names (the ledger's text names).
        earlier: ``((((configuration, seed), ...), critical_value, alpha), ...)`` of the
            earlier looks, in order (a tuple; ``alpha`` spent up to each).
        alpha: the family-wise error spent up to and including this look, in (0, 1).
        ratio: the largest noise ratio between configurations the value must hold for (>= 1).
        draws: simulated tables per pattern.

    Returns:
        a :class:`Boundary`; ``critical_value`` is inf when the earlier looks already spent
        ``alpha``.

    Raises:
        ValueError: ``alpha`` outside (0, 1), ``ratio < 1``, or cells that leave this look no
            residual degrees of freedom or no contrast.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"`alpha` must be in (0, 1); got {alpha!r}.")
    if not ratio >= 1:
        raise ValueError(f"`ratio` must be >= 1; got {ratio!r}.")
    if not earlier and len({c for c, _ in key}) == 2:
        return _student(design_for(tuple(key)).residual_df, float(alpha))
    canonical_key, canonical_earlier, names = _canonical(tuple(key), tuple(earlier))
    result = _boundary(canonical_key, canonical_earlier, float(alpha), float(ratio), int(draws))
    return dataclasses.replace(result, worst={names[c]: v for c, v in result.worst.items()})


@functools.lru_cache(maxsize=64)
def _student(df, alpha):
    """One comparison at a single look: its t statistic is the paired one, Student's t with
    ``df`` degrees of freedom whatever the two configurations' noise, so the value is exact."""
    from scipy import special

    if df <= 0:
        raise ValueError("A critical value needs a contrast and residual degrees of freedom.")
    return Boundary(critical_value=float(special.stdtrit(df, 1 - alpha / 2)), alpha=alpha,
                    mc_error=0.0, worst={}, draws=0, _student_df=df)


def _simulate(z, pattern, union, looks):
    """``(verdict at an earlier look, max |T| at this look)`` of the tables ``z`` under one
    noise pattern."""
    column = {cell: i for i, cell in enumerate(union)}
    y = z * np.array([pattern[c] for c, _ in union], dtype=z.dtype)
    before = np.zeros(len(z), dtype=bool)
    for design, value in looks[:-1]:
        before |= _maxima(design, y[:, [column[cell] for cell in design.key]]) > value
    current = looks[-1][0]
    return before, _maxima(current, y[:, [column[cell] for cell in current.key]])


def _level(before, top, room):
    """The critical value at which ``top > value and not before`` has probability ``room``."""
    if room <= 0:
        return np.inf
    return float(np.quantile(np.where(before, -np.inf, top), 1.0 - room, method="higher"))


#: Tables per pattern in the first pass; the patterns whose values come out highest there are
#: simulated again with every draw.
_SCREEN = 4000
_FINALISTS = 2


@functools.lru_cache(maxsize=64)
def _boundary(key, earlier, alpha, ratio, draws):
    current = design_for(key)
    if current.residual_df <= 0 or not current.contrasts:
        raise ValueError("A critical value needs a contrast and residual degrees of freedom.")
    looks = [(design_for(k), c) for k, c, _ in earlier] + [(current, None)]
    spent = earlier[-1][2] if earlier else 0.0
    union = list(dict.fromkeys(cell for design, _ in looks for cell in design.key))
    configurations = tuple(sorted({c for c, _ in union}))
    # float32: the t statistics of standard normal tables need no more, and it halves the time.
    z = np.random.default_rng(_SEED).standard_normal((draws, len(union)), dtype=np.float32)
    candidates = patterns(configurations, ratio)
    if len(candidates) > _FINALISTS + 1 and draws > _SCREEN:
        screened = [_level(*_simulate(z[:_SCREEN], p, union, looks), alpha - spent)
                    for p in candidates]
        order = np.argsort(screened)[::-1][:_FINALISTS]
        candidates = [candidates[0]] + [candidates[i] for i in order if i != 0]
    best, maxima = None, []
    for pattern in candidates:
        before, top = _simulate(z, pattern, union, looks)
        value = _level(before, top, alpha - spent)
        if best is None or value > best[0]:
            best = (value, pattern)
        maxima.append(np.sort(top[~before]))
    share = alpha - spent
    return Boundary(critical_value=best[0], alpha=alpha,
                    mc_error=float(np.sqrt(share * (1 - share) / draws)), worst=best[1],
                    draws=draws, spent=spent, _sorted=tuple(maxima))


@functools.lru_cache(maxsize=256)
def mde_factor(critical_value, df, power):
    """The minimum detectable effect in standard errors: the true ``delta / se`` at which a
    contrast's t statistic (non-central t with ``df`` degrees of freedom, equal noise) exceeds
    ``critical_value`` with probability ``power`` (``scipy.stats.nct``; exact, not the
    normal approximation ``critical_value + t(power, df)``)."""
    from scipy import optimize
    from scipy import stats as sps

    if not np.isfinite(critical_value):
        return float("inf")

    def shortfall(ncp):
        return float(sps.nct.sf(critical_value, df, ncp)) - power

    high = critical_value + 10.0
    while shortfall(high) < 0:
        high *= 2
    return float(optimize.brentq(shortfall, 0.0, high, xtol=1e-10))
