"""The decision procedure: stored runs in, verdicts, the best configuration and the test answer out.

A pure function of the runs (no training, no TensorFlow), so that it can be simulated
(``benchmarks/error_rates.py``) and so that a report can be rebuilt at any time:

* :func:`decide`: every configuration against the baseline. The estimate is the blocked model's
  contrast over the seeds shared with the baseline (:mod:`search.analysis`: seeds as blocks, one
  pooled residual variance, OLS). The simultaneous interval is ``estimate +- q * se`` with the
  critical value ``q`` of :mod:`search.calibration`: it keeps the family-wise error when the
  configurations differ in noise up to ``noise_ratio`` (3x in standard deviation, the baseline
  included) and over every look of :mod:`search.looks` (alpha spent look by look, recorded in a
  ledger). The verdict (``better`` / ``worse`` / ``no significant difference``) is read from
  that interval; without one it is ``""`` and ``reason`` says why.
* :func:`plan`: what a planned design can resolve (the ``[plan]`` line).
* :func:`test_answer`: the test split's answer for the best configuration: the same procedure on
  the test-split evaluations of the search runs of *every* configuration that could have been
  chosen, so that its simultaneous interval covers the chosen one whatever chose it (a
  selection-adjusted interval; the runs that chose it are the same, their selection is paid for
  by the simultaneous level). It costs one evaluation per run (seconds), not a retraining.
* :func:`race`: which configurations of a racing schedule get more seeds and which are dropped.

**Departures from the textbook analysis** (Dunnett 1955, the previous version of this package):
the critical value is Dunnett's only when ``noise_ratio=1``; the default is larger (at 5
configurations x 3 seeds and the first look's alpha 0.04, 4.54 instead of Dunnett's 3.19), the
price of a family-wise error that holds when the noise differs. The minimum detectable effect
is exact for equal noise (non-central t, :func:`search.calibration.mde_factor`), not the normal
approximation ``(q + t(0.80, df)) * se`` (which gave 0.78-0.79 power).

**The best configuration** is the highest estimate among the configurations with the most seeds
shared with the baseline: a configuration cut off after one seed has a noisier estimate and would
be picked more often than its share if it competed on the estimate alone.

**Runs left out** (:func:`search.analysis.model_cells`): None, NaN and infinite values (with the
cause, e.g. "did not train", when the caller knows it), runs at a seed the baseline lacks; a
configuration with no seed shared with the baseline gets no verdict. When the residual standard
deviation is within floating-point tolerance of 0 (identical differences on every seed) there
is no interval: p-values of rounding noise are not evidence.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from search import calibration, looks
from search.analysis import design_for, model_cells, noise_check, seed_order

CONFIDENCE = 0.95
POWER = 0.80
NOISE_RATIO = calibration.NOISE_RATIO
#: Level of the per-configuration noise check (a flag, not a verdict).
NOISE_ALPHA = 0.05
#: A residual standard deviation at most this times the largest absolute run is floating-point
#: rounding, not noise (accuracies of 10,000 images move in steps of 1e-4).
ZERO_SD_RTOL = 1e-9
METHOD = "blocked model, envelope critical value"


@dataclasses.dataclass(frozen=True)
class Comparison:
    """One configuration against the baseline.

    Attributes:
        configuration: its key.
        estimate: the blocked model's contrast ``tau[c] - tau[baseline]`` (accuracy units; with
            every seed shared, the mean per-seed difference); None when not in the model.
        se: its standard error from the pooled residual variance; df: residual df.
        low, high: the simultaneous interval ``estimate -+ critical_value * se`` (None: no
            interval, see ``reason``).
        p_value: the unadjusted two-sided t-test of ``estimate = 0`` (equal noise assumed).
        p_adjusted: the family-wise p-value at this look (:meth:`Boundary.p_family`); the
            verdict is significant when it is at most the alpha spent.
        verdict: ``"better"``, ``"worse"``, ``"no significant difference"`` or ``""``.
        reason: why there is no verdict (empty when there is one).
        note: runs of this configuration left out, and why.
        mde: the true difference this look declares with probability ``power`` (equal noise).
        wins, pairs: seeds on which it beat the baseline, of the seeds in the model.
        paired_low, paired_high: its own paired Student-t interval (unpooled, unadjusted).
        paired_sd: standard deviation of its own per-seed differences; pooled_paired_sd: the
            same from the pooled model, ``sigma * sqrt(2)``.
        noise_p: p-value of the check that its runs are noisier than the others'.
        flags: ``"noisier than the others (p=...)"``, ``"intervals disagree"`` (its own paired
            interval's verdict differs from the simultaneous one), ``"better at look 1"`` (an
            earlier look's verdict differs from this one's).
    """

    configuration: object
    estimate: float | None = None
    se: float | None = None
    df: int | None = None
    low: float | None = None
    high: float | None = None
    p_value: float | None = None
    p_adjusted: float | None = None
    verdict: str = ""
    reason: str = ""
    note: str = ""
    mde: float | None = None
    wins: int = 0
    pairs: int = 0
    paired_low: float | None = None
    paired_high: float | None = None
    paired_sd: float | None = None
    pooled_paired_sd: float | None = None
    noise_p: float | None = None
    flags: tuple = ()


@dataclasses.dataclass(frozen=True)
class Decision:
    """What :func:`decide` made of a table of runs.

    Attributes:
        baseline: the reference configuration's key.
        comparisons: ``{configuration: Comparison}`` for every other configuration of ``runs``.
        best: the best configuration (None when none has an estimate); best_reason: why.
        ranking: the configurations that could be best, best first.
        look: this look's number in the ledger's family (None: no interval, no look).
        alpha: the family-wise error spent up to this look; critical_value: its ``q``.
        mc_error: Monte Carlo standard error of the achieved level.
        residual_df, residual_sd: of the blocked model (sd None without residual df).
        seeds: the seeds in the model; runs: the runs in it; left_out: runs left out.
        reason: why there are no intervals (empty when there are).
        baseline_note, baseline_noise_p, baseline_flags: the baseline's own.
        confidence, power, noise_ratio, family: the settings.
        ledger: the ledger with this look recorded (store it for the next analysis).
    """

    baseline: object
    comparisons: dict
    best: object
    best_reason: str
    ranking: tuple
    look: int | None
    alpha: float | None
    critical_value: float | None
    mc_error: float | None
    residual_df: int
    residual_sd: float | None
    seeds: tuple
    runs: int
    left_out: int
    reason: str
    baseline_note: str
    baseline_noise_p: float | None
    baseline_flags: tuple
    confidence: float
    power: float
    noise_ratio: float
    family: str
    ledger: dict

    @property
    def half_width(self):
        """The largest simultaneous half-width over the comparisons (None without intervals)."""
        widths = [c.high - c.estimate for c in self.comparisons.values() if c.high is not None]
        return max(widths) if widths else None

    @property
    def mde(self):
        """The largest minimum detectable effect over the comparisons (None without one)."""
        values = [c.mde for c in self.comparisons.values() if c.mde is not None]
        return max(values) if values else None

    @property
    def method(self):
        """The method in a sentence, for the paragraph above the leaderboard."""
        return (f"blocked model (OLS of accuracy ~ configuration + seed, one pooled variance), "
                f"simultaneous {self.confidence:.0%} intervals whose critical value holds when "
                f"configurations differ in noise up to {self.noise_ratio:g}x (the baseline "
                f"included) and over every look at the runs")

    def summary(self):
        """A JSON-ready dict of the analysis (no per-configuration rows)."""
        return {
            "method": self.method, "family": self.family, "look": self.look,
            "alpha_spent": self.alpha, "critical_value": self.critical_value,
            "mc_error": self.mc_error, "comparisons": len(self.comparisons),
            "seeds": [s if isinstance(s, (int, float, str)) else repr(s) for s in self.seeds],
            "runs": self.runs, "left_out": self.left_out, "residual_df": self.residual_df,
            "residual_sd": self.residual_sd, "half_width": self.half_width, "mde": self.mde,
            "best": None if self.best is None else looks.name_of(self.best),
            "best_reason": self.best_reason, "reason": self.reason,
            "confidence": self.confidence, "power": self.power,
            "noise_ratio": self.noise_ratio,
        }


def _check_settings(confidence, power, noise_ratio):
    for name, value in (("confidence", confidence), ("power", power)):
        if not (isinstance(value, (int, float)) and 0 < value < 1):
            raise ValueError(f"`{name}` must be in (0, 1); got {value!r}.")
    if not (isinstance(noise_ratio, (int, float)) and noise_ratio >= 1):
        raise ValueError(f"`noise_ratio` must be a number >= 1; got {noise_ratio!r}.")


def _seeds_text(seeds):
    return ", ".join(str(s) for s in sorted(seeds, key=seed_order)) or "none"


def _left_out_text(excluded, cause=""):
    """``"seed 1: nan (did not train); seed 3: no baseline run with this seed"``."""
    parts = []
    for seed, why in sorted(excluded.items(), key=lambda i: seed_order(i[0])):
        extra = f" ({cause})" if cause and why in ("nan", "inf", "-inf", "None") else ""
        parts.append(f"seed {seed}: {why}{extra}")
    return "; ".join(parts)


def _no_interval_reason(cells, design, sigma, values):
    """The true cause when the model gives no interval (empty when it gives them)."""
    left = sum(len(v) for v in cells.excluded.values())
    left_text = f" ({left} run(s) left out: see the rows' notes)" if left else ""
    if not cells.configurations:
        return "no configuration besides the baseline has a finite run at a seed the " \
               f"baseline has{left_text}"
    if design.residual_df <= 0:
        if len(cells.seeds) == 1:
            return (f"every comparison rests on one seed ({cells.seeds[0]}): no residual "
                    f"degrees of freedom{left_text}")
        return (f"no residual degrees of freedom: {len(cells.cells)} runs for "
                f"{len(cells.cells) - design.residual_df} parameters (each configuration shares "
                f"one seed with the baseline){left_text}")
    scale = max(1.0, float(np.abs(values).max()))
    if sigma <= ZERO_SD_RTOL * scale:
        return (f"the runs leave no noise to measure (residual sd {sigma:.1e}, within "
                "floating-point tolerance of 0: the same difference on every seed)")
    return ""


def _paired(runs, base):
    from search import stats

    shared = sorted(set(runs) & set(base), key=seed_order)
    diffs = [runs[s] - base[s] for s in shared]
    paired = stats.paired_difference(runs, base)
    sd = stats.mean_std(diffs)[1] if len(diffs) > 1 else None
    return paired, sd, sum(d > 0 for d in diffs), len(diffs)


def _verdict(low, high):
    from search import stats

    return stats.verdict(low, high)


def _noise_flag(p):
    return (f"noisier than the others (p={p:.2g})",) if p is not None and p < NOISE_ALPHA else ()


@dataclasses.dataclass(frozen=True)
class _Model:
    """The blocked model fitted to a table's cells (design None: nothing to compare)."""

    cells: object
    design: object = None
    estimates: object = None
    sigma: float | None = None
    df: int = 0
    reason: str = ""
    noise: dict = dataclasses.field(default_factory=dict)


def _fit(cells):
    if not cells.configurations:
        return _Model(cells, reason=_no_interval_reason(cells, None, 0.0, cells.values()))
    design = design_for(cells.key())
    estimates, sd = design.fit(cells.values())
    reason = _no_interval_reason(cells, design, float(sd), cells.values())
    return _Model(cells, design, estimates, float(sd) if design.residual_df > 0 else None,
                  design.residual_df, reason, {} if reason else noise_check(cells))


@dataclasses.dataclass(frozen=True)
class _Look:
    """This look's place in the ledger and its critical value."""

    number: int
    alpha: float
    bound: object
    critical: float
    factor: float
    recorded: bool
    digest: str
    earlier: dict


def _look(ledger, family, model, confidence, power):
    """The look of ``model``'s cells (None when the model gives no interval): a recorded one
    when the ledger has these runs (nothing spent again), else the next."""
    if model.design is None or model.reason:
        return None
    cells = model.cells
    digest = looks.fingerprint(cells)
    found = looks.find_look(ledger, family, digest)
    if found is not None:
        number, alpha = found["look"], found["alpha"]
    else:
        number = len(looks.looks_of(ledger, family)) + 1
        alpha = looks.cumulative_alpha(number, 1 - confidence, ledger["first_look_share"])
    earlier = tuple(looks.earlier_designs(ledger, family, cells.baseline, upto=number))
    bound = calibration.boundary(looks.text_key(cells), earlier, alpha, ledger["noise_ratio"])
    critical = found["critical_value"] if found else bound.critical_value
    verdicts = {}
    for look in looks.looks_of(ledger, family)[:number - 1]:
        for name, verdict in look["verdicts"].items():
            verdicts.setdefault(name, (look["look"], verdict))
    return _Look(number, alpha, bound, critical, calibration.mde_factor(critical, model.df, power),
                 found is not None, digest, verdicts)


def _compare(c, runs, model, look, notes):
    """The :class:`Comparison` of configuration ``c``."""
    from scipy import special

    cells = model.cells
    note = _left_out_text(cells.excluded.get(c, {}), notes.get(c, ""))
    if c not in cells.configurations:
        finite = set(runs[c]) - set(cells.excluded.get(c, {}))
        base = set(runs[cells.baseline]) - set(cells.excluded.get(cells.baseline, {}))
        why = ("no finite run" if c in cells.empty else
               f"no seed shared with the baseline (its seeds: {_seeds_text(finite)}; the "
               f"baseline's: {_seeds_text(base)})")
        return Comparison(configuration=c, reason=why, note=note)
    i = model.design.contrasts.index(c)
    paired, paired_sd, wins, pairs = _paired(cells.runs_of(c), cells.runs_of(cells.baseline))
    fields = dict(configuration=c, estimate=float(model.estimates[i]), df=model.df, note=note,
                  wins=wins, pairs=pairs, paired_low=paired["low"], paired_high=paired["high"],
                  paired_sd=paired_sd, noise_p=model.noise.get(c),
                  pooled_paired_sd=None if model.sigma is None else model.sigma * math.sqrt(2))
    if look is None:
        return Comparison(**fields, reason=model.reason)
    se = model.sigma * math.sqrt(model.design.factor[i])
    t = fields["estimate"] / se
    low, high = fields["estimate"] - look.critical * se, fields["estimate"] + look.critical * se
    verdict = _verdict(low, high)
    flags = list(_noise_flag(model.noise.get(c)))
    own = _verdict(paired["low"], paired["high"])
    if own and own != verdict:
        flags.append("intervals disagree")
    before = look.earlier.get(looks.name_of(c))
    if before and before[1] != verdict:
        flags.append(f"{before[1]} at look {before[0]}")
    return Comparison(**fields, se=se, low=low, high=high,
                      p_value=float(2 * special.stdtr(model.df, -abs(t))),
                      p_adjusted=min(1.0, look.bound.p_family(t)), verdict=verdict,
                      mde=look.factor * se, flags=tuple(flags))


def _ranking(comparisons):
    """The configurations that can be best (estimate over the most shared seeds), best first,
    and why the best is best."""
    scored = [c for c in comparisons.values() if c.estimate is not None]
    if not scored:
        return (), "no configuration has a seed shared with the baseline"
    most = max(c.pairs for c in scored)
    eligible = sorted((c for c in scored if c.pairs == most), key=lambda c: -c.estimate)
    fewer = len(scored) - len(eligible)
    reason = (f"highest blocked estimate ({eligible[0].estimate:+.4f}) among the "
              f"{len(eligible)} configuration(s) with {most} seed(s) shared with the baseline")
    if fewer:
        reason += f"; {fewer} with fewer seeds not ranked (a noisier estimate)"
    return tuple(c.configuration for c in eligible), reason


def decide(runs, baseline, *, ledger=None, family="validation", confidence=CONFIDENCE,
           power=POWER, noise_ratio=NOISE_RATIO, notes=None):
    """Compare every configuration with the baseline (see the module docstring).

    Args:
        runs: ``{configuration: {seed: value}}``, values in accuracy units; None, NaN and inf
            are left out with a note. Keys are any hashables whose ``repr`` (``str`` for
            strings) differ.
        baseline: the reference configuration's key in ``runs``.
        ledger: the looks so far (:mod:`search.looks`; None: a new one). Not changed; the
            returned ``Decision.ledger`` has this look added.
        family: ``"validation"`` or ``"test"``: whose looks these are.
        confidence: family-wise, over every look of the family (default 0.95).
        power: of the minimum detectable effect (default 0.80).
        noise_ratio: the largest ratio of two configurations' noise (standard deviation) the
            verdicts must hold for (default 3; 1: equal noise, Dunnett's critical value).
        notes: ``{configuration: cause}`` said with its left-out runs (e.g. "did not train").

    Returns:
        a :class:`Decision`.

    Raises:
        ValueError: ``baseline`` not in ``runs``, a run that is not a number, None, NaN or inf,
            settings out of range, two keys with the same name, or a ledger made with other
            settings or another baseline.
    """
    _check_settings(confidence, power, noise_ratio)
    names = [looks.name_of(c) for c in runs]
    if len(set(names)) != len(names):
        raise ValueError(f"Two configurations have the same name: {names}.")
    ledger = looks.checked_ledger(ledger, confidence, noise_ratio, family)
    notes = notes or {}
    model = _fit(model_cells(runs, baseline))
    look = _look(ledger, family, model, confidence, power)
    comparisons = {c: _compare(c, runs, model, look, notes) for c in runs if c != baseline}
    if look is not None and not look.recorded:
        looks.record(ledger, family, baseline, model.cells, look.digest, look.alpha,
                     look.critical, {c: v.verdict for c, v in comparisons.items() if v.verdict})
    ranking, best_reason = _ranking(comparisons)
    cells = model.cells
    return Decision(
        baseline=baseline, comparisons=comparisons, best=ranking[0] if ranking else None,
        best_reason=best_reason, ranking=ranking,
        look=None if look is None else look.number, alpha=None if look is None else look.alpha,
        critical_value=None if look is None else look.critical,
        mc_error=None if look is None else look.bound.mc_error, residual_df=model.df,
        residual_sd=model.sigma, seeds=cells.seeds, runs=len(cells.cells),
        left_out=sum(len(v) for v in cells.excluded.values()), reason=model.reason,
        baseline_note=_left_out_text(cells.excluded.get(baseline, {}), notes.get(baseline, "")),
        baseline_noise_p=model.noise.get(baseline),
        baseline_flags=_noise_flag(model.noise.get(baseline)), confidence=confidence,
        power=power, noise_ratio=noise_ratio, family=family, ledger=ledger)


@dataclasses.dataclass(frozen=True)
class TestAnswer:
    """The test split's answer for the chosen configuration (:func:`test_answer`).

    Attributes:
        configuration: the chosen configuration's key.
        comparison: its :class:`Comparison` on the test split (simultaneous over every
            configuration that could have been chosen).
        decision: the whole test-split :class:`Decision` (its ``ledger`` has this look).
        how: how the answer was obtained, in a sentence.
    """

    configuration: object
    comparison: Comparison
    decision: Decision
    how: str


def test_answer(test_runs, validation, *, best=None, ledger=None, notes=None):
    """The test split's answer for the best configuration, not read as if nothing chose it.

    The best was chosen on the validation runs, and a run's test accuracy shares its training
    noise with its validation accuracy: the chosen configuration's own test interval would say
    "better" too often (0.045-0.057 instead of 0.025 with no true difference). Here the same
    procedure as :func:`decide` runs on the test-split evaluations of the search runs of every
    configuration that could have been chosen (``validation.ranking``) and the baseline; its
    intervals hold simultaneously for all of them, hence for the chosen one whatever chose it.
    The chosen one's *estimate* stays biased upward by the choice (a winner's curse, measured in
    ``benchmarks/error_rates.py``); its interval is what to read.

    Args:
        test_runs: ``{configuration: {seed: test accuracy}}`` of the search runs (the weights
            each seed left), for the baseline and every configuration in
            ``validation.ranking`` (others are ignored).
        validation: the :class:`Decision` that chose the best (its settings are used).
        best: the chosen configuration (default ``validation.best``; e.g. the best within a cost
            limit), one of ``validation.ranking``.
        ledger: the looks so far; this one is of the ``"test"`` family.
        notes: as in :func:`decide`.

    Returns:
        a :class:`TestAnswer`.

    Raises:
        ValueError: no best, ``best`` not among the candidates, or a candidate or the baseline
            missing from ``test_runs`` (the interval would not cover the choice).
    """
    best = validation.best if best is None else best
    if best is None or best not in validation.ranking:
        raise ValueError(f"`best` must be one of the configurations that could be chosen "
                         f"({', '.join(map(repr, validation.ranking)) or 'none'}); got {best!r}.")
    family = (validation.baseline, *validation.ranking)
    missing = [c for c in family if c not in test_runs]
    if missing:
        raise ValueError(f"The test split's answer needs the test runs of every configuration "
                         f"that could have been chosen and of the baseline; missing: "
                         f"{', '.join(map(repr, missing))}.")
    decision = decide({c: test_runs[c] for c in family}, validation.baseline, ledger=ledger,
                      family="test", confidence=validation.confidence, power=validation.power,
                      noise_ratio=validation.noise_ratio, notes=notes)
    how = (f"the search runs of the {len(validation.ranking)} configuration(s) that could have "
           f"been chosen and of the baseline, evaluated on the test split, paired by seed; "
           f"{decision.method}: the intervals cover all the candidates at once, so the chosen "
           f"one's holds whatever chose it")
    return TestAnswer(best, decision.comparisons[best], decision, how)


def plan(sd, configurations, seeds, *, ledger=None, family="validation", confidence=CONFIDENCE,
         power=POWER, noise_ratio=NOISE_RATIO):
    """What a balanced design would resolve at its look: the simultaneous half-width and the
    minimum detectable effect of ``configurations - 1`` comparisons over ``seeds`` seeds.

    At a family's first look the value is exact (the critical value of that design at the first
    look's alpha). At a later look it is an upper bound: the design's critical value at that
    look's own share of alpha alone, without the credit :func:`decide` gets from the earlier
    looks' runs being part of this one's.

    Args:
        sd: the residual standard deviation of one run (e.g. ``Decision.residual_sd``); a
            paired difference of two runs then has ``sd * sqrt(2)``.
        configurations: ``k``, the baseline included (>= 2).
        seeds: ``n`` per configuration (>= 2).
        ledger, family, confidence, power, noise_ratio: as in :func:`decide`.

    Returns:
        ``{"half_width", "mde", "critical_value", "residual_df", "alpha", "look"}``.

    Raises:
        ValueError: ``configurations < 2``, ``seeds < 2``, ``sd`` negative or not finite, or
            settings out of range.
    """
    _check_settings(confidence, power, noise_ratio)
    if not (isinstance(configurations, int) and configurations >= 2 and isinstance(seeds, int)
            and seeds >= 2 and isinstance(sd, (int, float)) and math.isfinite(sd) and sd >= 0):
        raise ValueError(f"plan needs integers configurations >= 2 and seeds >= 2 and a finite "
                         f"sd >= 0; got {configurations!r}, {seeds!r}, {sd!r}.")
    ledger = looks.checked_ledger(ledger, confidence, noise_ratio, family)
    number = len(looks.looks_of(ledger, family)) + 1
    share = ledger["first_look_share"]
    alpha = looks.cumulative_alpha(number, 1 - confidence, share)
    if number > 1:
        alpha -= looks.cumulative_alpha(number - 1, 1 - confidence, share)
    key = tuple((f"c{c}", s) for c in range(configurations) for s in range(seeds))
    critical = calibration.boundary(key, (), alpha, float(noise_ratio)).critical_value
    df = (configurations - 1) * (seeds - 1)
    se = sd * math.sqrt(2.0 / seeds)
    return {"half_width": critical * se, "mde": calibration.mde_factor(critical, df, power) * se,
            "critical_value": critical, "residual_df": df, "alpha": alpha, "look": number}


@dataclasses.dataclass(frozen=True)
class Race:
    """One round of racing (:func:`race`).

    Attributes:
        leader: the best configuration so far (None: none has an estimate).
        more: the configurations that get the next seed (the baseline, the leader and every
            configuration not clearly behind it), in the order of ``runs``.
        drop: the configurations clearly behind the leader.
        why: ``{configuration: reason}`` for every configuration but the baseline.
    """

    leader: object
    more: tuple
    drop: tuple
    why: dict


def race(runs, baseline, *, confidence=CONFIDENCE, noise_ratio=NOISE_RATIO):
    """The racing rule: which configurations get more seeds, which are dropped.

    The leader is :func:`decide`'s best. Every other configuration is compared with the leader
    by the same blocked model and critical value rule, with the leader as the reference (its
    own family, not a look at the comparisons with the baseline): a configuration whose
    simultaneous interval of ``c - leader`` lies wholly below 0 is clearly behind and dropped;
    the others, the leader and the baseline get the next seed. A configuration without an
    interval (too few seeds) is kept.

    Args:
        runs, baseline, confidence, noise_ratio: as in :func:`decide`.

    Returns:
        a :class:`Race`.
    """
    ahead = decide(runs, baseline, confidence=confidence, noise_ratio=noise_ratio)
    leader = ahead.best
    others = [c for c in runs if c != baseline]
    if leader is None:
        why = dict.fromkeys(others, "no leader yet: every configuration gets the next seed")
        return Race(None, tuple(runs), (), why)
    against = decide({c: v for c, v in runs.items() if c != baseline}, leader,
                     confidence=confidence, noise_ratio=noise_ratio)
    drop, why = [], {leader: "the leader"}
    for c in others:
        if c == leader:
            continue
        comparison = against.comparisons[c]
        if comparison.verdict == "worse":
            drop.append(c)
            why[c] = (f"behind the leader: {comparison.estimate:+.4f} "
                      f"[{comparison.low:+.4f}, {comparison.high:+.4f}]")
        else:
            why[c] = ("not separable from the leader" if comparison.verdict else
                      f"no interval against the leader ({comparison.reason})")
    more = tuple(c for c in runs if c not in drop)
    return Race(leader, more, tuple(drop), why)
