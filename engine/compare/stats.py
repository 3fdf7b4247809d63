"""Seed statistics of a comparison: mean and spread per variant, and whether two variants differ beyond it.

The rule (:func:`compare_pair`): two variants differ on a metric when the difference of their seed means exceeds
twice its standard error, ``|mean_b - mean_a| > 2 * sqrt(s_a^2 / n_a + s_b^2 / n_b)`` (s = sample standard
deviation over seeds, ddof 1). Welch's t statistic, its degrees of freedom and two-sided p-value are reported
beside it. With 2-3 seeds per variant this is a coarse screen, not a test at a known error rate: each s rests on
1-2 degrees of freedom (it can be off by a factor of 2-3), and with ~2-4 degrees of freedom the 5 % two-sided
t quantile is 2.8-4.3, not 2. "Exceeds" means: worth believing for this data and budget, best confirmed with
more seeds; "within" means: no evidence of a difference at this budget, not that the variants are equal.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np

SE_FACTOR = 2.0  # a difference counts when it exceeds this many standard errors
RULE = (f"|mean_b - mean_a| > {SE_FACTOR:g} x SE, SE = sqrt(s_a^2/n_a + s_b^2/n_b), s = standard deviation over "
        f"seeds (ddof 1); Welch's t-test p-value shown for reference")


@dataclass
class Summary:
    """One metric of one variant over its finished seeds."""

    values: List[float]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> Optional[float]:
        return float(np.mean(self.values)) if self.values else None

    @property
    def std(self) -> Optional[float]:
        return float(np.std(self.values, ddof=1)) if self.n > 1 else None

    @property
    def sem(self) -> Optional[float]:
        return self.std / math.sqrt(self.n) if self.std is not None else None

    def to_dict(self) -> dict:
        return {"n": self.n, "mean": self.mean, "std": self.std, "sem": self.sem, "values": list(self.values)}


def summarize(values: Sequence[Optional[float]]) -> Summary:
    """Drop missing values (None / NaN: a failed run, or a metric with nothing to measure)."""
    return Summary([float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))])


# --------------------------------------------------------------------------------------------------------
# Student t distribution (no scipy dependency): two-sided tail through the regularised incomplete beta
# --------------------------------------------------------------------------------------------------------
def _betacf(a: float, b: float, x: float, iters: int = 300, eps: float = 1e-14) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, iters + 1):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b) for a, b > 0, 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` (> 0, may be fractional) degrees of freedom."""
    if math.isinf(t):
        return 0.0
    return betainc(df / 2.0, 0.5, df / (df + t * t))


def t_critical(df: float, alpha: float = 0.05) -> float:
    """The |t| whose two-sided tail is ``alpha`` (bisection on :func:`t_two_sided_p`)."""
    lo, hi = 0.0, 1e4
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_two_sided_p(mid, df) > alpha else (lo, mid)
    return (lo + hi) / 2


def caveat(n: int) -> str:
    """What a 2 x SE verdict can show with ``n`` seeds per variant (for the report)."""
    if n < 2:
        return "With one seed per variant there is no spread: no verdict is possible."
    df = 2 * (n - 1)  # Welch's df for equal seed counts and spreads
    off = " (it can be off by a factor of 2 or more)" if n <= 3 else ""
    return (f"With {n} seeds per variant each standard deviation rests on {n - 1} degree(s) of freedom{off}, "
            f"and Welch's 5 % two-sided threshold at ~{df} degrees of freedom is "
            f"{t_critical(df):.1f} standard errors, not {SE_FACTOR:g}: this is a screen, not a test at a known error "
            f"rate. 'Exceeds' means worth believing at this budget (confirm with more seeds); 'within' means no "
            f"evidence of a difference at this budget, not that the variants are equal.")


# --------------------------------------------------------------------------------------------------------
# pairs
# --------------------------------------------------------------------------------------------------------
def compare_pair(a: Summary, b: Summary, higher_is_better: bool = True) -> dict:
    """Difference b - a, its standard error, the rule's verdict, Welch's t / df / p (module docstring)."""
    out = {"diff": None, "se": None, "exceeds": None, "t": None, "df": None, "p": None, "better": None,
           "verdict": "n/a"}
    if not a.n or not b.n:
        out["verdict"] = "n/a (no value for a variant)"
        return out
    out["diff"] = diff = b.mean - a.mean
    if a.n < 2 or b.n < 2:
        out["verdict"] = "n/a (needs 2+ seeds per variant for a spread)"
        return out
    va, vb = a.std ** 2 / a.n, b.std ** 2 / b.n
    out["se"] = se = math.sqrt(va + vb)
    if se == 0.0:
        exceeds, t, df = diff != 0.0, (math.inf if diff else 0.0), float(a.n + b.n - 2)
    else:
        t = diff / se
        df = (va + vb) ** 2 / (va ** 2 / (a.n - 1) + vb ** 2 / (b.n - 1)) if va or vb else float(a.n + b.n - 2)
        exceeds = abs(diff) > SE_FACTOR * se
    out.update(exceeds=bool(exceeds), t=t, df=df, p=t_two_sided_p(t, df))
    if exceeds:
        out["better"] = "b" if (diff > 0) == higher_is_better else "a"
        out["verdict"] = "exceeds the seed spread"
    else:
        out["verdict"] = "within the seed spread"
    return out


def pairwise(summaries: Dict[str, Summary], higher_is_better: bool = True) -> List[dict]:
    """Every pair of variants (in the given order) on one metric: ``compare_pair`` plus the names."""
    names = list(summaries)
    rows = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            r = compare_pair(summaries[a], summaries[b], higher_is_better)
            r.update(a=a, b=b, better=None if r["better"] is None else (b if r["better"] == "b" else a))
            rows.append(r)
    return rows
