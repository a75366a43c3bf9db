"""Looks: every analysis whose verdicts a user sees spends part of the family-wise error.

A search is analysed more than once over the same runs: after stage 1 and after stage 2, after
``--repeats 5`` re-ran a search made with 3, when a user stops it early. Each analysis that
shows verdicts is a *look*, and a look that finds a "better" by luck is an error whichever look
it was. So the looks of one family (the validation comparisons, or the test split's) share one
family-wise error ``alpha = 1 - confidence``, spent look by look (a group-sequential design with
an alpha-spending sequence, Lan & DeMets 1983, Biometrika 70:659, here indexed by the look rather
than by information, because a search can be grown without a planned end):

    spent after look j:  A_j = alpha * (1 - (1 - FIRST_LOOK_SHARE) / 2 ** (j - 1))

i.e. 0.040 at the first look, 0.045 at the second, 0.0475 at the third, ... never more than
alpha however many looks follow. Look ``j``'s critical value is set so that the chance, with no
true difference, of a verdict at any look up to ``j`` is ``A_j``, with the earlier looks' runs
and critical values as they were (:mod:`search.calibration` simulates them jointly), so the
later looks lose little: their runs contain the earlier ones.

The **ledger** is what a run directory keeps of its looks: a JSON-ready dict, one list per
family, each look with a fingerprint of the runs it analysed (configuration, seed, value), its
cells, the alpha spent up to it, its critical value and its verdicts. Analysing runs with a
fingerprint already in the ledger is not a new look: it reuses that look's critical value and
spends nothing. A look that can give no verdict (no interval) is not recorded.
"""

from __future__ import annotations

import hashlib
import json

#: Share of alpha the first look spends; each later look spends half of what is left. 0.8: a
#: search analysed once (the usual case) loses little power (its critical value is that of
#: 0.04 instead of 0.05), and a grown search still has 0.01 for its later looks.
FIRST_LOOK_SHARE = 0.8
LEDGER_VERSION = 1
FAMILIES = ("validation", "test")


def cumulative_alpha(look, alpha, share=FIRST_LOOK_SHARE):
    """``A_look``: the family-wise error spent by looks ``1 .. look`` (see the module docstring).

    Raises:
        ValueError: ``look < 1``, ``alpha`` outside (0, 1) or ``share`` outside (0, 1].
    """
    if not (isinstance(look, int) and look >= 1):
        raise ValueError(f"`look` must be an integer >= 1; got {look!r}.")
    if not 0 < alpha < 1:
        raise ValueError(f"`alpha` must be in (0, 1); got {alpha!r}.")
    if not 0 < share <= 1:
        raise ValueError(f"`share` must be in (0, 1]; got {share!r}.")
    return alpha * (1.0 - (1.0 - share) / 2 ** (look - 1))


def name_of(value):
    """A configuration's or a seed's name in the ledger (JSON keys are strings): a string
    itself, anything else its ``repr``."""
    return value if isinstance(value, str) else repr(value)


def fingerprint(cells):
    """A hex digest of a :class:`search.analysis.ModelCells`'s runs (configuration, seed and
    value of every cell)."""
    rows = sorted([name_of(c), name_of(s), float(v).hex()] for c, s, v in cells.cells)
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def new_ledger(confidence, noise_ratio, share=FIRST_LOOK_SHARE):
    """An empty ledger for the given family-wise confidence and noise envelope."""
    return {"version": LEDGER_VERSION, "confidence": confidence, "noise_ratio": noise_ratio,
            "first_look_share": share, "families": {}}


def checked_ledger(ledger, confidence, noise_ratio, family):
    """A deep copy of ``ledger`` (a new one if None), checked against this analysis' settings.

    Raises:
        ValueError: an unknown ``family``, a ledger that is not one (wrong type, version or
            fields), or one made with another confidence or noise ratio (a family's alpha cannot
            change between its looks).
    """
    if family not in FAMILIES:
        raise ValueError(f"`family` must be one of {', '.join(FAMILIES)}; got {family!r}.")
    if ledger is None:
        return new_ledger(confidence, noise_ratio)
    if not isinstance(ledger, dict) or ledger.get("version") != LEDGER_VERSION or \
            not isinstance(ledger.get("families"), dict):
        raise ValueError(f"Not a ledger of looks (version {LEDGER_VERSION} dict with "
                         f"'families'): {str(ledger)[:80]!r}.")
    for name, value in (("confidence", confidence), ("noise_ratio", noise_ratio)):
        if ledger.get(name) != value:
            raise ValueError(f"The ledger's looks were made with {name}={ledger.get(name)!r}; "
                             f"this analysis has {name}={value!r}. A family's error cannot "
                             "change between looks: use the ledger's value or a new ledger.")
    # Recorded looks are never changed, only appended to: copying the lists is enough.
    families = {name: {**entry, "looks": list(entry.get("looks", []))}
                for name, entry in ledger["families"].items()}
    return {**ledger, "families": families}


def looks_of(ledger, family):
    """The recorded looks of ``family`` (a list, possibly empty)."""
    return ledger["families"].get(family, {}).get("looks", [])


def find_look(ledger, family, digest):
    """The recorded look with fingerprint ``digest``, or None."""
    return next((look for look in looks_of(ledger, family) if look["fingerprint"] == digest),
                None)


def earlier_designs(ledger, family, baseline, upto=None):
    """The cells, critical values and alpha spent of the looks before look ``upto`` (all when
    None): ``[(((configuration, seed), ...), critical_value, alpha), ...]`` with the ledger's
    text names.

    Raises:
        ValueError: the family's looks were made against another baseline.
    """
    entry = ledger["families"].get(family)
    if entry is None:
        return []
    if entry["baseline"] != name_of(baseline):
        raise ValueError(f"The ledger's {family} looks compare with the baseline "
                         f"{entry['baseline']!r}, not {name_of(baseline)!r}.")
    out = []
    for look in entry["looks"][: None if upto is None else upto - 1]:
        key = tuple((c, s) for c, seeds in look["cells"].items() for s in seeds)
        out.append((key, look["critical_value"], look["alpha"]))
    return out


def record(ledger, family, baseline, cells, digest, alpha, critical_value, verdicts):
    """Append a look to ``ledger`` (in place) and return it."""
    entry = ledger["families"].setdefault(family, {"baseline": name_of(baseline), "looks": []})
    by_configuration = {}
    for c, s, _ in cells.cells:
        by_configuration.setdefault(name_of(c), []).append(name_of(s))
    look = {"look": len(entry["looks"]) + 1, "fingerprint": digest, "runs": len(cells.cells),
            "cells": by_configuration, "alpha": alpha, "critical_value": critical_value,
            "verdicts": {name_of(c): v for c, v in verdicts.items()}}
    entry["looks"].append(look)
    return look


def text_key(cells):
    """``((configuration, seed), ...)`` of ``cells`` with the ledger's text names."""
    return tuple((name_of(c), name_of(s)) for c, s, _ in cells.cells)
