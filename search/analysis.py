"""The blocked model of a search's runs: a randomized complete block design, seeds as blocks.

Every configuration of a search is trained with the same seeds; one seed fixes the backbone's
initial weights, the data order and the augmentation for all of them. The seeds are therefore
*blocks* and the configurations *treatments*, and the accuracies follow the two-way additive model

    accuracy[c, s] = mu + tau[c] + beta[s] + e[c, s]

with the baseline (no attention) as the reference level of ``tau``. Ordinary least squares gives
each configuration's contrast ``tau[c] - tau[baseline]`` (with every seed shared: the mean per-seed
difference to the baseline), its standard error from one pooled residual variance, and
``residual_df = N - k - n + 1`` residual degrees of freedom (``(k - 1)(n - 1)`` when all ``k``
configurations ran all ``n`` seeds). What the verdicts make of these numbers (critical values
that hold when the noise differs between configurations, looks, selection) is
:mod:`search.decision`'s job; this module is only the model, for one table or for a batch of
simulated tables with the same cells (:meth:`BlockedDesign.fit`), so that the procedure can be
simulated at the cost of a matrix product.

Only runs the model can use enter it (:func:`model_cells`): a finite value, at a seed the
baseline also has a finite run for. A run that is None, NaN or infinite is left out and said
so; so is a run at a seed the baseline lacks (it cannot be paired with the baseline), and a
configuration without a seed shared with the baseline is not in the model at all (its contrast
would not be estimable; statsmodels' pseudo-inverse would give it an arbitrary value).

The least squares are numpy's QR of the design matrix, checked against
``statsmodels.OLS`` in ``tests/test_analysis.py``; statsmodels itself is not used here because
the simulations fit tens of thousands of tables at once.

:func:`noise_check` is the per-configuration check of the model's one-variance assumption: an F
test of the residual variance a configuration adds to the model of the others (exact under
normal errors; it has power at 3 seeds, where Levene's test on the residuals had none).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers

import numpy as np


def seed_order(seed):
    """Sort key of a seed: numbers in numeric order, then anything else by its text."""
    if isinstance(seed, numbers.Real) and not isinstance(seed, bool):
        return (0, float(seed), "")
    return (1, 0.0, str(seed))


def _bad_run(value):
    """None when ``value`` is a usable run, else the text saying why it is not (None, nan, inf).

    Raises:
        ValueError: ``value`` is not a number at all (a string, a bool, a list).
    """
    if value is None:
        return "None"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"a run's value must be a number, None, NaN or inf; got {value!r}.")
    value = float(value)
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return None


@dataclasses.dataclass(frozen=True)
class ModelCells:
    """The runs the blocked model uses and those it leaves out.

    Attributes:
        baseline: the reference configuration's key.
        configurations: the keys in the model, the baseline first (each with at least one seed
            shared with the baseline).
        seeds: the seeds in the model, in :func:`seed_order`.
        cells: ``((configuration, seed, value), ...)``, configurations then seeds in order.
        excluded: ``{configuration: {seed: why}}`` for every run left out ("nan", "None",
            "inf", "no baseline run with this seed").
        unpaired: the configurations with at least one finite run but no seed shared with the
            baseline (not in the model).
        empty: the configurations without a finite run.
    """

    baseline: object
    configurations: tuple
    seeds: tuple
    cells: tuple
    excluded: dict
    unpaired: tuple
    empty: tuple

    def key(self):
        """The cells without their values: ``((configuration, seed), ...)``."""
        return tuple((c, s) for c, s, _ in self.cells)

    def values(self):
        """The cells' values as a float64 vector."""
        return np.array([v for *_, v in self.cells], dtype="float64")

    def runs_of(self, configuration):
        """``{seed: value}`` of one configuration in the model."""
        return {s: v for c, s, v in self.cells if c == configuration}


def model_cells(runs, baseline):
    """Sort a table of runs into the cells of the blocked model (see the module docstring).

    Args:
        runs: ``{configuration: {seed: value}}``; values in accuracy units, None/NaN/inf allowed.
        baseline: the key of the reference configuration in ``runs``.

    Returns:
        a :class:`ModelCells`. The model holds the seeds at which the baseline and at least one
        other configuration have finite runs.

    Raises:
        ValueError: ``baseline`` not in ``runs``, a configuration's runs not a mapping, or a value
            that is not a number (see :func:`_bad_run`).
    """
    if baseline not in runs:
        raise ValueError(f"The baseline {baseline!r} is not among the configurations: "
                         f"{', '.join(map(repr, runs)) or 'none'}.")
    finite, excluded = {}, {}
    for configuration, by_seed in runs.items():
        if not hasattr(by_seed, "items"):
            raise ValueError(f"The runs of {configuration!r} must be a mapping seed -> value; "
                             f"got {type(by_seed).__name__}.")
        finite[configuration] = {}
        for seed, value in by_seed.items():
            why = _bad_run(value)
            if why is None:
                finite[configuration][seed] = float(value)
            else:
                excluded.setdefault(configuration, {})[seed] = why
    base_seeds = set(finite[baseline])
    others = [c for c in runs if c != baseline]
    empty = tuple(c for c in runs if not finite[c])
    unpaired = tuple(c for c in others if finite[c] and not set(finite[c]) & base_seeds)
    in_model = [c for c in others if set(finite[c]) & base_seeds]
    for c in in_model:
        for seed in sorted(set(finite[c]) - base_seeds, key=seed_order):
            excluded.setdefault(c, {})[seed] = "no baseline run with this seed"
    seeds = tuple(sorted({s for c in in_model for s in finite[c] if s in base_seeds},
                         key=seed_order))
    configurations = (baseline, *in_model) if in_model else ()
    cells = tuple((c, s, finite[c][s]) for c in configurations for s in seeds if s in finite[c])
    return ModelCells(baseline=baseline, configurations=configurations, seeds=seeds, cells=cells,
                      excluded=excluded, unpaired=unpaired, empty=empty)


def _design_matrix(key, configurations, seeds):
    """Treatment-coded design matrix: intercept, one column per non-baseline configuration, one
    per seed after the first."""
    col_c = {c: 1 + i for i, c in enumerate(configurations[1:])}
    col_s = {s: 1 + len(col_c) + i for i, s in enumerate(seeds[1:])}
    x = np.zeros((len(key), 1 + len(col_c) + len(col_s)))
    x[:, 0] = 1.0
    for row, (c, s) in enumerate(key):
        if c in col_c:
            x[row, col_c[c]] = 1.0
        if s in col_s:
            x[row, col_s[s]] = 1.0
    return x


class BlockedDesign:
    """The blocked model's matrices for one set of cells, to fit any number of tables at once.

    Args:
        key: ``((configuration, seed), ...)``, e.g. :meth:`ModelCells.key`; the first cell's
            configuration is the baseline; every other configuration must share a seed with
            it.

    Attributes:
        key, configurations (the baseline first), seeds, contrasts (the non-baseline
        configurations), residual_df, weights (``(m, N)``: each contrast as a linear function of
        the cells), factor (``(m,)``: its variance over ``sigma**2``).
    """

    def __init__(self, key):
        self.key = tuple(key)
        configurations = []
        for c, _ in self.key:
            if c not in configurations:
                configurations.append(c)
        self.configurations = tuple(configurations)
        self.seeds = tuple(sorted({s for _, s in self.key}, key=seed_order))
        self.contrasts = self.configurations[1:]
        x = _design_matrix(self.key, self.configurations, self.seeds)
        q, r = np.linalg.qr(x, mode="complete")
        p = x.shape[1]
        diag = np.abs(np.diag(r[:p]))
        if np.sum(diag > 1e-10 * max(1.0, diag.max())) < p:
            raise ValueError("The blocked model's contrasts are not estimable from these cells: "
                             "every configuration needs a seed shared with the baseline "
                             f"{self.configurations[0]!r}.")
        self.residual_df = len(self.key) - p
        m = len(self.contrasts)
        self.weights = np.linalg.solve(r[:p], q[:, :p].T)[1:1 + m]
        self.factor = (self.weights ** 2).sum(axis=1)
        self._residual_basis = q[:, p:]
        # One product gives the contrasts and the coordinates of the residual in an orthonormal
        # basis of the residual space (their squared norm is the residual sum of squares).
        self._projection = np.hstack([self.weights.T, q[:, p:]])

    def fit(self, y):
        """Fit tables with these cells.

        Args:
            y: ``(N,)`` or ``(B, N)`` values in the order of ``key`` (computed in float64,
                or in float32 if given float32).

        Returns:
            ``(estimate, sigma)``: ``(..., m)`` contrasts and ``(...)`` residual standard
            deviations (zeros when ``residual_df == 0``).
        """
        y = np.asarray(y)
        if y.dtype != np.float32:  # float32 only for simulated tables (see calibration)
            y = y.astype("float64")
        z = y @ self._projection.astype(y.dtype, copy=False)
        m = len(self.contrasts)
        estimate, rss = z[..., :m], (z[..., m:] ** 2).sum(axis=-1)
        sigma = np.sqrt(rss / self.residual_df) if self.residual_df > 0 else np.zeros_like(rss)
        return estimate, sigma

    def t_statistics(self, y):
        """``estimate / se`` of every contrast, ``(B, m)`` for ``(B, N)`` tables (needs
        ``residual_df > 0``)."""
        estimate, sigma = self.fit(y)
        with np.errstate(divide="ignore", invalid="ignore"):
            return estimate / (sigma[..., None] * np.sqrt(self.factor))


    @functools.cached_property
    def _deletions(self):
        """Per configuration: its cells' rows, the pseudo-inverse of the residual-maker ``I - H``
        restricted to them, and that block's rank."""
        out = {}
        for configuration in self.configurations:
            rows = [i for i, (c, _) in enumerate(self.key) if c == configuration]
            basis = self._residual_basis[rows]
            block = basis @ basis.T
            out[configuration] = (rows, np.linalg.pinv(block, rcond=1e-10, hermitian=True),
                                  int(np.linalg.matrix_rank(block, tol=1e-10, hermitian=True)))
        return out

    def noise_p(self, y):
        """The noise check of every configuration for one table ``y`` (see
        :func:`noise_check`): ``{configuration: p-value}``."""
        from scipy import special

        y = np.asarray(y, dtype="float64")
        residual = self._residual_basis @ (self._residual_basis.T @ y)
        rss = float(residual @ residual)
        out = {}
        for configuration, (rows, inverse, added) in self._deletions.items():
            rest = self.residual_df - added
            # Deleting a configuration's runs = a dummy per run: the sum of squares they
            # explain is r_G' (I - H)_GG^+ r_G (the F test of added regressors).
            explained = float(residual[rows] @ inverse @ residual[rows])
            if added <= 0 or rest <= 0 or rss - explained <= 0:
                continue
            f = (explained / added) / ((rss - explained) / rest)
            out[configuration] = float(special.fdtrc(added, rest, max(f, 0.0)))
        return out


@functools.lru_cache(maxsize=256)
def design_for(key):
    """The :class:`BlockedDesign` of ``key`` (a tuple of cells), cached: simulations and
    repeated analyses meet the same cells again and again."""
    return BlockedDesign(key)


def noise_check(cells):
    """For each configuration, the one-sided F test that its runs are noisier than the others'.

    The residual sum of squares the configuration's runs add to the additive model of the other
    configurations' runs, per degree of freedom they add, over the others' residual mean
    square. Under the model (one variance, normal errors) the two are independent and the ratio
    is ``F(df_added, df_others)`` (the F test of one dummy regressor per deleted run; Chow 1960,
    Econometrica 28:591): exact, for balanced and unbalanced tables. For a balanced table it is
    Shukla's (1972, Heredity 29:237) test of one configuration's variance. At 5 configurations x
    3 seeds it has 2 and 6 degrees of freedom and flags a 3x noisier configuration about half
    the time (``benchmarks/error_rates.py``).

    Args:
        cells: a :class:`ModelCells` with at least one configuration besides the baseline.

    Returns:
        ``{configuration: p-value}`` for every configuration where both df are positive (a
        configuration without such a test is left out).
    """
    if not cells.configurations:
        return {}
    return design_for(cells.key()).noise_p(cells.values())
