"""The decision procedure's error rates, simulated: what "better" means under what the search does.

Every case draws tables of runs ``{configuration: {seed: accuracy}}`` like the search's and gives
them to the project's own functions (:func:`search.decision.decide`, ``test_answer``, ``plan``,
``race``, with a ledger of looks where the case has several), with no training: a run is

    0.85 + effect[c] + seed effect[s] (sd 0.01) + noise[c, s] (sd 0.005 x the case's multiplier)

and its test-split accuracy the same training noise plus an evaluation noise of sd 0.0025. With
no true effect (``effect = 0``) any ``better`` or ``worse`` is an error; the family-wise error
is the share of tables with at least one, over every look the case takes. Each rate is printed
with its Monte Carlo standard error ``sqrt(p (1 - p) / tables)`` and its target.

    python benchmarks/error_rates.py                 # every case, 4,000 tables each
    python benchmarks/error_rates.py --tables 400000 --case "baseline 3x noisier"
    python benchmarks/error_rates.py --noise-ratio 1  # the critical value of equal noise (Dunnett)
    python benchmarks/error_rates.py --candidates     # the statistics measured before choosing

Not a test (``tests/test_analysis.py`` asserts the targets on fewer tables); seeded, so a run
prints the same numbers on the same library versions.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from search import decision, looks  # noqa: E402

SD = 0.005
SEED_SD = 0.01
EVAL_SD = 0.0025
BASE = 0.85
FWER, FALSE_BETTER, POWER = 0.05, 0.025, 0.80


def draw(rng, noise, seeds, effects=None, base=BASE):
    """One table: ``{configuration: {seed: value}}`` for ``noise = {configuration: multiplier}``,
    and the training noise it used (``{(configuration, seed): noise}``)."""
    effects = effects or {}
    beta = {s: rng.normal(0.0, SEED_SD) for s in seeds}
    train = {(c, s): rng.normal(0.0, SD * m) for c, m in noise.items() for s in seeds}
    runs = {c: {s: base + effects.get(c, 0.0) + beta[s] + train[c, s] for s in seeds}
            for c in noise}
    return runs, train


def grow(rng, runs, noise, seeds, effects=None):
    """Add the runs of ``seeds`` to every configuration in ``noise`` (in place)."""
    more, _ = draw(rng, noise, seeds, effects)
    for c, by_seed in more.items():
        runs.setdefault(c, {}).update(by_seed)
    return runs


def names(k):
    """The baseline and ``k - 1`` attentions."""
    return ["none"] + [f"a{i}" for i in range(1, k)]


def noise_of(k, baseline=1.0, **others):
    out = dict.fromkeys(names(k), 1.0)
    out["none"] = baseline
    out.update(others)
    return out


def wrong(dec, effects=None):
    """Whether any verdict of ``dec`` is wrong: a ``better``/``worse`` against a true 0, or a
    verdict of the wrong sign."""
    effects = effects or {}
    for c, comparison in dec.comparisons.items():
        true = effects.get(c, 0.0)
        if comparison.verdict == "better" and true <= 0 or \
                comparison.verdict == "worse" and true >= 0:
            return True
    return False


# ---------------------------------------------------------------------------- the cases


def one_look(noise, seeds=3):
    """A single analysis of ``noise``'s configurations x ``seeds`` seeds, no true effect."""
    def case(rng, args):
        runs, _ = draw(rng, noise, range(seeds))
        return wrong(decision.decide(runs, "none", noise_ratio=args.noise_ratio))
    return case


def coverage(rng, args):
    """5 x 3 with true effects 0, +0.005, +0.01, +0.02: every simultaneous interval covers its
    true difference (the share of tables where one does not is the error)."""
    effects = {"a1": 0.005, "a2": 0.01, "a3": 0.02}
    runs, _ = draw(rng, noise_of(5), range(3), effects)
    dec = decision.decide(runs, "none", noise_ratio=args.noise_ratio)
    return any(not (c.low <= effects.get(name, 0.0) <= c.high)
               for name, c in dec.comparisons.items())


def power_at_mde(k, seeds):
    """The power of one configuration whose true effect is the MDE :func:`plan` prints for
    this design at the true sd (the others at 0): the share of tables where it is `better`."""
    def case(rng, args):
        mde = decision.plan(SD, k, seeds, noise_ratio=args.noise_ratio)["mde"]
        runs, _ = draw(rng, noise_of(k), range(seeds), {"a1": mde})
        dec = decision.decide(runs, "none", noise_ratio=args.noise_ratio)
        return dec.comparisons["a1"].verdict == "better"
    return case


def stages(baseline_noise, look_after_stage_1):
    """Stage 1: the baseline and 4 attentions x 3 seeds (the baseline ``baseline_noise`` times
    noisier, one attention 2x, so that the noisier one is chosen more often); the attention with
    the highest blocked estimate gets 4 variants in stage 2, with the same seeds and that
    attention's noise; the stage-1 runs are reused. One look at the end, or one after each stage
    (a ledger)."""
    def case(rng, args):
        noise = noise_of(5, baseline=baseline_noise, a1=2.0)
        runs, _ = draw(rng, noise, range(3))
        ledger, wrong_before = None, False
        first = decision.decide(runs, "none", noise_ratio=args.noise_ratio)
        if look_after_stage_1:
            wrong_before, ledger = wrong(first), first.ledger
        chosen = first.best
        variants = {f"{chosen}-v{i}": noise[chosen] for i in range(1, 5)}
        grow(rng, runs, variants, range(3))
        last = decision.decide(runs, "none", ledger=ledger, noise_ratio=args.noise_ratio)
        return wrong_before or wrong(last)
    return case


def stop_early(k, seeds, baseline_noise=1.0):
    """The configurations finish one after another; after each (from the second) the user
    looks, and stops at the first look with a `better` or `worse` (every look in the ledger)."""
    def case(rng, args):
        noise = noise_of(k, baseline=baseline_noise)
        full, _ = draw(rng, noise, range(seeds))
        ledger = None
        for j in range(2, k + 1):
            dec = decision.decide({c: full[c] for c in names(j)}, "none", ledger=ledger,
                                  noise_ratio=args.noise_ratio)
            ledger = dec.ledger
            if any(c.verdict in ("better", "worse") for c in dec.comparisons.values()):
                return True
        return False
    return case


def growth(baseline_noise=1.0, seeds=(3, 5)):
    """5 configurations x 3 seeds; when that look finds nothing, ``--repeats 5`` adds seeds 3
    and 4 to every configuration and the user looks again (a ledger)."""
    def case(rng, args):
        noise = noise_of(5, baseline=baseline_noise)
        runs, _ = draw(rng, noise, range(seeds[0]))
        first = decision.decide(runs, "none", noise_ratio=args.noise_ratio)
        if wrong(first):
            return True
        grow(rng, runs, noise, range(seeds[0], seeds[1]))
        return wrong(decision.decide(runs, "none", ledger=first.ledger,
                                     noise_ratio=args.noise_ratio))
    return case


def growth_power(rng, args):
    """Growth 3 -> 5 seeds with one configuration at the MDE that 5 seeds print at the second
    look (:func:`plan` with the first look in the ledger): the share that end `better`."""
    first_ledger = decision.decide(*draw(rng, noise_of(5), range(3))[:1], "none",
                                   noise_ratio=args.noise_ratio).ledger
    mde = decision.plan(SD, 5, 5, ledger=first_ledger, noise_ratio=args.noise_ratio)["mde"]
    runs, _ = draw(rng, noise_of(5), range(3), {"a1": mde})
    first = decision.decide(runs, "none", noise_ratio=args.noise_ratio)
    if first.comparisons["a1"].verdict == "better":
        return True
    grow(rng, runs, noise_of(5), range(3, 5), {"a1": mde})
    last = decision.decide(runs, "none", ledger=first.ledger, noise_ratio=args.noise_ratio)
    return last.comparisons["a1"].verdict == "better"


def test_split(k, baseline_noise=1.0, measure="false better"):
    """The best configuration's test-split answer, no true effect: its runs' test accuracy is
    their training noise plus evaluation noise. ``measure``: "false better" (the share of
    tables where the answer says `better`) or "bias" (the mean test estimate of the chosen
    configuration, true value 0)."""
    def case(rng, args):
        noise = noise_of(k, baseline=baseline_noise)
        runs, train = draw(rng, noise, range(3))
        chosen = decision.decide(runs, "none", noise_ratio=args.noise_ratio)
        beta = {s: rng.normal(0.0, SEED_SD) for s in range(3)}
        test = {c: {s: BASE - 0.01 + beta[s] + train[c, s] + rng.normal(0.0, EVAL_SD)
                    for s in range(3)} for c in noise}
        answer = decision.test_answer(test, chosen)
        if measure == "bias":
            return answer.comparison.estimate
        return answer.comparison.verdict == "better"
    return case


def cut_off(rng, args):
    """Five equal configurations (the baseline and 4), one cut off after its first seed: the
    share of tables in which the cut-off one is chosen as the best (20% would be its fair share
    among four attentions if it were ranked; it is not ranked)."""
    runs, _ = draw(rng, noise_of(5), range(3))
    runs["a4"] = {0: runs["a4"][0]}
    return decision.decide(runs, "none", noise_ratio=args.noise_ratio).best == "a4"


def random_noise(k):
    """Every configuration's noise drawn per table, uniform in [1, 3] x, no true effect."""
    def case(rng, args):
        noise = {c: rng.uniform(1.0, 3.0) for c in names(k)}
        runs, _ = draw(rng, noise, range(3))
        return wrong(decision.decide(runs, "none", noise_ratio=args.noise_ratio))
    return case


def noise_flag(multiplier, k=5):
    """The per-configuration noise check: the share of tables in which it flags ``a1`` (noise
    ``multiplier`` x the others', 5 x 3)."""
    def case(rng, args):
        runs, _ = draw(rng, noise_of(k, a1=multiplier), range(3))
        dec = decision.decide(runs, "none", noise_ratio=args.noise_ratio)
        return any(f.startswith("noisier") for f in dec.comparisons["a1"].flags)
    return case


def racing(baseline_noise=1.0, most=6):
    """``--schedule race``: 5 configurations x 3 seeds, then one seed more per round for the
    configurations :func:`race` keeps, up to ``most`` seeds; the verdicts against the baseline
    at the end (one look), no true effect."""
    def case(rng, args):
        noise = noise_of(5, baseline=baseline_noise)
        runs, _ = draw(rng, noise, range(3))
        for seed in range(3, most):
            step = decision.race(runs, "none", noise_ratio=args.noise_ratio)
            grow(rng, runs, {c: noise[c] for c in step.more}, [seed])
            if len(step.more) <= 2:
                break
        return wrong(decision.decide(runs, "none", noise_ratio=args.noise_ratio))
    return case


CASES = {
    # name: (function, what is measured, target, "<=" or ">=")
    "default (5 x 3, equal noise)": (one_look(noise_of(5)), "family-wise error", FWER, "<="),
    "default: simultaneous coverage": (coverage, "non-coverage", FWER, "<="),
    "default: power at the printed MDE": (power_at_mde(5, 3), "power", POWER, ">="),
    "one configuration 3x noisier": (one_look(noise_of(5, a1=3.0)), "family-wise error", FWER,
                                     "<="),
    "baseline 2x noisier": (one_look(noise_of(5, baseline=2.0)), "family-wise error", FWER, "<="),
    "baseline 3x noisier": (one_look(noise_of(5, baseline=3.0)), "family-wise error", FWER, "<="),
    "9 x 3, baseline 3x noisier": (one_look(noise_of(9, baseline=3.0)), "family-wise error", FWER,
                                   "<="),
    "9 x 3: power at the printed MDE": (power_at_mde(9, 3), "power", POWER, ">="),
    "every noise drawn in [1, 3]x (5 x 3)": (random_noise(5), "family-wise error", FWER, "<="),
    "every noise drawn in [1, 3]x (9 x 3)": (random_noise(9), "family-wise error", FWER, "<="),
    "stages 1 + 2 (selection, reused runs), baseline 3x, one look":
        (stages(3.0, False), "family-wise error", FWER, "<="),
    "stages 1 + 2, baseline 3x, a look after each stage":
        (stages(3.0, True), "family-wise error", FWER, "<="),
    "stop at the first verdict (5 x 3, a look per configuration)":
        (stop_early(5, 3), "family-wise error", FWER, "<="),
    "stop at the first verdict (9 x 2)": (stop_early(9, 2), "family-wise error", FWER, "<="),
    "stop at the first verdict (5 x 3), baseline 3x":
        (stop_early(5, 3, 3.0), "family-wise error", FWER, "<="),
    "growth 3 -> 5 seeds when 3 found nothing": (growth(), "family-wise error", FWER, "<="),
    "growth 3 -> 5 seeds, baseline 3x": (growth(3.0), "family-wise error", FWER, "<="),
    "growth 3 -> 5: power at the MDE printed for 5": (growth_power, "power", POWER, ">="),
    "test split: best of 5 x 3": (test_split(5), "false better", FALSE_BETTER, "<="),
    "test split: best of 5 x 3, baseline 3x": (test_split(5, 3.0), "false better", FALSE_BETTER,
                                               "<="),
    "test split: best of 9 x 3": (test_split(9), "false better", FALSE_BETTER, "<="),
    "test split: best of 5 x 3, bias of its estimate":
        (test_split(5, measure="bias"), "mean estimate (true 0)", None, ""),
    "cut off after one seed: chosen as best": (cut_off, "share chosen", None, ""),
    "racing 3 -> up to 6 seeds": (racing(), "family-wise error", FWER, "<="),
    "racing, baseline 3x": (racing(3.0), "family-wise error", FWER, "<="),
    "beyond the envelope: baseline 5x noisier": (one_look(noise_of(5, baseline=5.0)),
                                                 "family-wise error", None, ""),
    "noise check flags a 3x noisier configuration": (noise_flag(3.0), "share flagged", None, ""),
    "noise check flags a 5x noisier configuration": (noise_flag(5.0), "share flagged", None, ""),
    "noise check, equal noise (false flags)": (noise_flag(1.0), "share flagged", None, ""),
}


def run_case(name, tables, seed, args):
    """``(rate, Monte Carlo standard error)`` of one case over ``tables`` seeded tables."""
    function = CASES[name][0]
    rng = np.random.default_rng([seed, sum(map(ord, name))])
    values = np.array([float(function(rng, args)) for _ in range(tables)])
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(tables))


# ------------------------------------------------------------------ the candidates measured


def candidate_statistics(k, n, prior_df, ratio=3.0, draws=40_000, seed=1):
    """The worst critical value over the noise envelope, and the MDE in units of one run's sd at
    equal noise, of the pooled t (``prior_df=inf``) or of a t whose contrast variance is each
    configuration's own (Shukla's unbiased estimate from the residuals) shrunk toward the pooled
    one with ``prior_df`` prior degrees of freedom (limma's moderated variance, Smyth 2004,
    with a fixed prior), balanced ``k x n``."""
    rng = np.random.default_rng(seed)

    def stat(y):
        resid = y - y.mean(2, keepdims=True) - y.mean(1, keepdims=True) + \
            y.mean((1, 2), keepdims=True)
        w = (resid ** 2).sum(2)
        total = w.sum(1, keepdims=True)
        pooled = total / ((k - 1) * (n - 1))
        own = (k * (k - 1) * w - total) / ((n - 1) * (k - 1) * (k - 2))
        if math.isinf(prior_df):
            var = np.repeat(pooled, k, axis=1)
        else:
            var = np.maximum((prior_df * pooled + (n - 1) * own) / (prior_df + n - 1),
                             0.1 * pooled)
        d = y[:, 1:, :] - y[:, :1, :]
        return d.mean(2) / np.sqrt((var[:, 1:] + var[:, :1]) / n)

    worst = 0.0
    for base in (1.0, ratio):
        for j in range(k):
            sds = np.array([base] + [ratio] * j + [1.0] * (k - 1 - j))
            y = rng.standard_normal((draws, k, n)) * sds[None, :, None]
            worst = max(worst, float(np.quantile(np.abs(stat(y)).max(1), 1 - FWER)))
    z = np.random.default_rng(seed + 1).standard_normal((draws, k, n))
    low, high = 0.0, 20.0
    for _ in range(30):
        mid = (low + high) / 2
        y = z.copy()
        y[:, 1, :] += mid
        low, high = (mid, high) if (stat(y)[:, 0] > worst).mean() < POWER else (low, mid)
    return worst, (low + high) / 2


def print_candidates():
    print("| design | contrast variance | worst critical value (noise up to 3x) | MDE / sd "
          f"| MDE at sd {SD} |")
    print("| --- | --- | ---: | ---: | ---: |")
    for k, n in ((5, 3), (9, 3), (5, 5)):
        for prior in (math.inf, 8.0, 4.0, 2.0, 1.0, 0.0):
            label = "pooled (the blocked model)" if math.isinf(prior) else \
                f"own, shrunk with {prior:g} prior df" if prior else "own (unshrunk)"
            q, mde = candidate_statistics(k, n, prior)
            print(f"| {k} x {n} | {label} | {q:.2f} | {mde:.2f} | {mde * SD:.4f} |", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", type=int, default=4000, help="tables per case (4000)")
    parser.add_argument("--seed", type=int, default=0, help="simulation seed (0)")
    parser.add_argument("--case", action="append", choices=sorted(CASES), metavar="NAME",
                        help="only this case (repeatable); names in --list")
    parser.add_argument("--list", action="store_true", help="print the cases and exit")
    parser.add_argument("--noise-ratio", type=float, default=decision.NOISE_RATIO,
                        help="the decision's noise envelope (default 3; 1: Dunnett's value)")
    parser.add_argument("--candidates", action="store_true",
                        help="print the statistics measured before choosing, and exit")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(CASES))
        return 0
    if args.candidates:
        print_candidates()
        return 0
    if args.tables < 2:
        parser.error(f"--tables must be >= 2; got {args.tables}.")
    print(f"{args.tables} tables per case, seed {args.seed}, noise_ratio {args.noise_ratio:g}, "
          f"first look's share of alpha {looks.FIRST_LOOK_SHARE:g}; run sd {SD}, seed sd "
          f"{SEED_SD}, test evaluation sd {EVAL_SD}")
    print()
    print("| case | measure | rate | MC s.e. | target | met |")
    print("| --- | --- | ---: | ---: | ---: | --- |")
    t0 = time.time()
    for name in args.case or CASES:
        _, measure, target, sense = CASES[name]
        rate, se = run_case(name, args.tables, args.seed, args)
        met = ""
        if target is not None:
            ok = rate <= target + 2 * se if sense == "<=" else rate >= target - 2 * se
            met = "yes" if ok else "NO"
        shown = f"{rate:+.4f}" if measure.startswith("mean") else f"{rate:.3f}"
        print(f"| {name} | {measure} | {shown} | {se:.3f} | "
              f"{'' if target is None else f'{sense} {target}'} | {met} |", flush=True)
    print(f"\n({time.time() - t0:.0f} s; 'met': within 2 Monte Carlo standard errors)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
