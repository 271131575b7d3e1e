"""In-year nowcast: the run's forecast updated from the applications, approvals and payments observed so far.

A run's replications are the prior: each is an assumption draw (the numbers of ``assumptions.toml`` drawn
from their ranges) with simulated firms, their applications month by month and the SimPy year of review
and payment.  What the finance bureau has seen to date (per rule or article and month: applications and
the amount claimed, approvals and the amount approved, the amount paid) weighs each *draw* by how likely
the draw makes those observations.  The weighted replications are the nowcast: year-end claims per rule,
article and domain, the probability of an overrun, run-out dates, the posterior of each assumption.

The likelihood (one term per observed cell, cells independent given the draw):

* **applications** (count per key and month): negative binomial with the draw's simulated mean over its
  replications and the over-dispersion measured between replications of the same draw (pooled per key);
  its variance is inflated by ``1 + 1/R`` because the mean is itself estimated from ``R`` replications
  (a synthetic likelihood).  Counts of independent firms' decisions are Poisson-like; the negative
  binomial lets a draw's firm populations differ more than Poisson would.
* **claimed** (萬元), given the month's applications ``n``: the log of the amount per application is normal
  around the log of the draw's amount per application, variance ``s^2/n + s^2/N + tau^2``: ``s^2`` is the
  spread of single claims (measured between replications of a draw), ``N`` the draw's simulated
  applications, ``tau`` (:data:`MODEL_ERROR`) the model's own error.  Amounts are skewed, so logs.
* **approvals**, given the applications observed to date: Poisson with mean (observed applications to
  date) x (the draw's approvals in the month per application to date): the draw's review speed and
  approval rate applied to what was actually received, so an approval count does not count the
  applications' own luck twice.  (Approvals thin the applications: Poisson is the conservative choice.)
* **paid** (萬元), given what was approved (or, where approvals are not reported, claimed) to date: normal
  with mean (observed base to date) x (the draw's paid in the month per base to date), the variance of a
  compound Poisson sum of claims plus ``tau`` again.
* **approved** (萬元) is read and kept but adds no term: it is the same claims as ``claimed`` (it serves as
  the base of ``paid``).

With few draws near the observations the effective sample size (ESS, in draws) falls: the pipeline then
draws fresh draws near the weighted ones (population Monte Carlo: resampled draws moved by a Gaussian
kernel with twice the weighted variance, reflected at the ends of each range) and weighs every draw by
the balance heuristic of multiple importance sampling, ``L(u) / sum_g (n_g/N) q_g(u)``, with ``q_0`` the
prior (uniform in each group's probability scale).  This module holds the pure parts: reading and
checking the observations, the likelihood, the weights, the proposals and the tables.
"""

from __future__ import annotations

import calendar
import datetime as dt
import math
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import special, stats

from sim import assumptions as assumptions_module
from sim.budget import claims_budget_frame
from sim.errors import FirmTableError, FiscalsimError
from sim.firms import clean_cell, read_table, rows_at

MEASURES = ("applications", "claimed", "approvals", "approved", "paid")  # the columns of process_monthly
COUNTS = ("applications", "approvals")
REQUIRED = ("applications", "claimed")
MODEL_ERROR = 0.05  # tau: the model's own error on a log amount (5%)
SPREAD_FALLBACK = 1.0  # s^2 of log single claims where no draw shows it (a wide lognormal)
PAID_FLOOR = 1.0  # 萬元^2 added to the variance of a month's paid amount (rounding in a report)
MONTH_EVIDENCE = 30  # applications in all replications before an empty month counts as a closed window
CONTRADICTION = 1e-9  # a count this improbable from the nearest replication's cannot be produced
CONTRADICTION_Z = 6.0  # an amount per claim this many standard deviations outside every replication's
CONTRADICTION_RATIO = 10.0  # payments to date this many times the most any replication paid
NOWCAST_STREAM = 0x0A0C_0015  # spawn key of the nowcast's fresh draws within the run's SeedSequence
KERNEL_SCALE = 2.0  # variance of the proposal kernel: twice the weighted variance (Beaumont et al. 2009)
MIN_BANDWIDTH = 0.02  # the kernel's smallest standard deviation, on the 0-1 scale of a group
IMAGES = range(-2, 3)  # the kernel's images on either side when it is folded into [0, 1]


class NowcastError(FiscalsimError):
    """Observed data that cannot be read or does not fit the run, or observations no draw can produce."""


# ----------------------------------------------------------------------------- observed data in
@dataclass(frozen=True)
class Observed:
    """The checked observations: one row per key (rule id or article number) and month, a column per
    measure (NaN: not reported), for complete months up to ``as_of``."""

    frame: pd.DataFrame  # key, month (1-12), measures
    level: str  # "rule" or "article"
    as_of: dt.date
    months: int  # the number of complete months to ``as_of``
    path: str = "<observed>"

    @property
    def empty(self) -> bool:
        return self.frame.empty


def parse_as_of(text: str | dt.date, year: int) -> tuple[dt.date, int]:
    """(date, complete months): the as-of date must lie in the model's year; months end on their last day.

    >>> parse_as_of("2024-06-30", 2024)
    (datetime.date(2024, 6, 30), 6)
    >>> parse_as_of("2024-06-15", 2024)[1]
    5
    """
    try:
        date = text if isinstance(text, dt.date) else dt.date.fromisoformat(str(text).strip())
    except ValueError:
        raise NowcastError(f"--as-of {text!r}: write a date as YYYY-MM-DD, e.g. {year}-06-30") from None
    if date.year != year:
        raise NowcastError(f"--as-of {date.isoformat()}: the run simulates {year}; give a date in {year}")
    last = calendar.monthrange(date.year, date.month)[1]
    return date, date.month if date.day == last else date.month - 1


def _number(value: Any) -> float | None:
    """A cell as a number (full-width digits and thousands separators allowed, as in a firm register); None
    where empty; NaN where it is not a number."""
    if isinstance(value, bool):
        return float("nan")
    cleaned = clean_cell(value, "float")
    if isinstance(cleaned, float) and math.isnan(cleaned):
        return None
    try:
        return float(cleaned)
    except (TypeError, ValueError):
        return float("nan")


def _month(value: Any, year: int) -> int | None:
    """'2024-06', '2024/6', '2024-06-30' or 6 as a month number; None if it is none of these."""
    number = _number(value)
    if number is not None and not math.isnan(number):
        return int(number) if number == int(number) and 1 <= number <= 12 else None
    text = unicodedata.normalize("NFKC", str(value)).strip()
    match = re.fullmatch(r"(\d{4})[-/.年](\d{1,2})(?:[-/.月](\d{1,2})日?|月)?", text)
    if not match or int(match.group(1)) != year or not 1 <= int(match.group(2)) <= 12:
        return None
    return int(match.group(2))


def check_observed(raw: pd.DataFrame, rule_ids: list[str], articles: list[int], year: int, as_of: str | dt.date,
                   path: str = "<observed>") -> Observed:
    """The observations of a table (columns ``rule`` or ``article``, ``month`` and the measures), every
    problem named with the file, column and rows in one :class:`NowcastError`; rows are numbered from 1,
    the first data row."""
    date, months = parse_as_of(as_of, year)
    names = [str(c).strip() for c in raw.columns]
    level = _level(names, path)
    frame = raw.copy()
    frame.columns = names
    problems: list[str] = []
    key = _keys(frame, level, rule_ids, articles, problems)
    month = _months(frame["month"], year, date, months, problems)
    values = {measure: _measure(frame, measure, problems) for measure in MEASURES}
    if problems:
        raise NowcastError(f"{path}: " + "; ".join(problems))
    out = pd.DataFrame({"key": key, "month": month.astype(np.int64), **values})
    _consistent(out, level, problems)
    if problems:
        raise NowcastError(f"{path}: " + "; ".join(problems))
    out = out.sort_values(["key", "month"], kind="stable", ignore_index=True)
    return Observed(out, level, date, months, path)


def _level(names: list[str], path: str) -> str:
    """``rule`` or ``article``: the column that names what was observed; the columns checked."""
    problems = []
    keys = [c for c in ("rule", "article") if c in names]
    unknown = [c for c in names if c not in ("rule", "article", "month", *MEASURES)]
    if unknown:
        problems.append(f"unknown column {unknown[0]!r} (columns: rule or article, month, {', '.join(MEASURES)})")
    if len(keys) != 1:
        problems.append("name what was observed in one column: rule (a rule id) or article (an article number)"
                        + (", not both" if len(keys) == 2 else ""))
    missing = [c for c in ("month", *REQUIRED) if c not in names]
    if missing:
        problems.append(f"missing column {', '.join(missing)} (applications received and the amount claimed are "
                        "the base of the nowcast; approvals, approved and paid may be left out)")
    if problems:
        raise NowcastError(f"{path}: " + "; ".join(problems))
    return keys[0]


def _keys(frame: pd.DataFrame, level: str, rule_ids: list[str], articles: list[int], problems: list[str]
          ) -> np.ndarray:
    text = frame[level].map(lambda v: "" if v is None else unicodedata.normalize("NFKC", str(v)).strip())
    if level == "rule":
        key = text.to_numpy(dtype=object)
        bad = ~np.isin(key, rule_ids)
        if bad.any():
            problems.append(f"column rule: {rows_at(bad, key)} name no rule of the model (rules: "
                            f"{', '.join(rule_ids[:6])}, ...; `fiscalsim policy` lists them)")
        return key
    numbers = [_number(v) for v in text]
    key = np.array([int(v) if v is not None and not math.isnan(v) and v == int(v) else -1 for v in numbers],
                   dtype=np.int64)
    bad = ~np.isin(key, articles)
    if bad.any():
        problems.append(f"column article: {rows_at(bad, text)} name no article with award rules (articles: "
                        f"{', '.join(map(str, articles))})")
    return key


def _months(column: pd.Series, year: int, date: dt.date, months: int, problems: list[str]) -> np.ndarray:
    month = np.array([_month(v, year) for v in column], dtype=object)
    bad = np.array([m is None for m in month], dtype=bool)
    if bad.any():
        problems.append(f"column month: {rows_at(bad, column)} are not months of {year} (write {year}-06 or 6)")
    late = np.array([m is not None and m > months for m in month], dtype=bool)
    if late.any():
        problems.append(f"column month: {rows_at(late, column)} lie beyond the as-of date {date.isoformat()} "
                        f"(complete months to then: {months}); give a later --as-of or drop those rows")
    return np.where(bad, 0, month)


def _measure(frame: pd.DataFrame, measure: str, problems: list[str]) -> np.ndarray:
    """One measure's column as numbers (NaN where empty; all NaN where the column is absent)."""
    if measure not in frame.columns:
        return np.full(len(frame), np.nan)
    cells = [_number(v) for v in frame[measure]]
    x = np.array([np.nan if c is None else c for c in cells], dtype=float)
    empty = np.array([c is None for c in cells], dtype=bool)
    checks = [(empty if measure in REQUIRED else np.zeros(len(x), bool), None,
               "are empty (every row needs applications and claimed)"),
              (np.isnan(x) & ~empty, frame[measure], "are not numbers"),
              (x < 0, x, "are negative"),
              (np.isfinite(x) & (x != np.round(x)) if measure in COUNTS else np.zeros(len(x), bool), x,
               "are counts and must be whole numbers"),
              (np.isinf(x), x, "are not finite")]
    for mask, shown, what in checks:
        if mask.any():
            problems.append(f"column {measure}: {rows_at(mask, shown)} {what}")
    return x


def _consistent(out: pd.DataFrame, level: str, problems: list[str]) -> None:
    """Figures that contradict each other: repeated rows, money without applications, more approved than
    claimed or more paid than approved to date, a measure given for some months of a key only."""
    dup = out.duplicated(["key", "month"], keep=False).to_numpy()
    if dup.any():
        problems.append(f"{rows_at(dup)} repeat a {level} and month; give each once")
    apps, claimed = out["applications"].to_numpy(), out["claimed"].to_numpy()
    base = np.where(out["approved"].notna(), _to_date(out, "approved"), _to_date(out, "claimed"))
    pairs = [("claimed", (apps == 0) & (claimed > 0), "claim money with no applications"),
             ("claimed", (apps > 0) & (claimed == 0), "applications with nothing claimed"),
             ("approvals", out["approvals"].to_numpy() > _to_date(out, "applications"),
              "more approvals to date than applications to date"),
             ("approved", (out["approvals"].to_numpy() == 0) & (out["approved"].to_numpy() > 0),
              "approved money with no approvals"),
             ("approved", _to_date(out, "approved") > _to_date(out, "claimed") * (1 + 1e-6) + 1e-6,
              "more approved to date than claimed to date (萬元)"),
             ("paid", _to_date(out, "paid") > base * (1 + 1e-6) + 1e-6,
              "more paid to date than approved (or, where approvals are not given, claimed) to date (萬元)")]
    for column, mask, what in pairs:
        if mask.any():
            problems.append(f"column {column}: {rows_at(mask)} report {what}")
    for measure in MEASURES[2:]:
        given = out[measure].notna()
        partial = given.groupby(out["key"]).transform(lambda g: g.any() and not g.all()).to_numpy(dtype=bool)
        if partial.any():
            problems.append(f"column {measure}: {rows_at(partial & ~given.to_numpy())} are empty while other months of "
                            f"the same {level} give it; give it for every month of a {level} or for none")


def _to_date(frame: pd.DataFrame, measure: str) -> np.ndarray:
    """Per row: the key's sum of ``measure`` over months up to the row's (in row order of ``frame``)."""
    order = frame.sort_values(["key", "month"], kind="stable")
    cumulative = order.groupby("key", sort=False)[measure].cumsum()
    return cumulative.reindex(frame.index).to_numpy(dtype=float)


def read_observed(path: str | Path, rule_ids: list[str], articles: list[int], year: int,
                  as_of: str | dt.date) -> Observed:
    """Read and check an observed table (CSV in UTF-8 or GBK, Excel .xlsx, or Parquet)."""
    try:
        raw = read_table(path)
    except FirmTableError as exc:
        raise NowcastError(str(exc).replace("a register", "an observed table")) from None
    return check_observed(raw, rule_ids, articles, year, as_of, str(path))


def observed_table(monthly: pd.DataFrame, months: int, level: str = "rule",
                   articles: dict[str, int] | None = None) -> pd.DataFrame:
    """What a bureau would report of one replication's ``process_monthly`` rows (rule x month): its first
    ``months`` months, per rule or article (``articles``: rule id -> article), months as numbers 1-12.  Used
    for the sample file (:func:`sim.pipeline.observed_sample`) and the synthetic-truth check.

    >>> monthly = pd.DataFrame({"rule": ["r1"] * 12, "month": range(1, 13), "applications": [0] * 5 + [3] * 7,
    ...                         "claimed": [0.0] * 5 + [30.0] * 7, "approvals": [0] * 6 + [2] * 6,
    ...                         "approved": [0.0] * 6 + [20.0] * 6, "paid": [0.0] * 7 + [20.0] * 5})
    >>> observed_table(monthly, 6)[["rule", "month", "applications", "paid"]].tail(1).to_numpy().tolist()
    [['r1', 6, 3, 0.0]]
    """
    frame = monthly[monthly["month"] <= months]
    if level == "article":
        frame = frame.assign(article=frame["rule"].map(articles))
        frame = frame.groupby(["article", "month"], sort=True)[list(MEASURES)].sum().reset_index()
    cols = [level, "month", *MEASURES]
    out = frame[cols].sort_values([level, "month"], kind="stable", ignore_index=True)
    out[list(COUNTS)] = out[list(COUNTS)].astype(np.int64)
    return out


# ----------------------------------------------------------------------------- the ensemble
@dataclass
class Ensemble:
    """The replications the nowcast weighs, as arrays in the policy's rule and domain order.

    ``draw``: each replication's draw (index into ``u``); ``monthly``: (replications, rules, 12, 5) of
    :data:`MEASURES`; ``claims``: year-end district-paid claims per rule (the claims stage's totals);
    ``paid``: (replications, domains, 12) paid per month; ``budgets``, ``runout``: per domain (the day the
    budget ran out, NaN if it did not); ``u``: (draws, groups) each draw's uniforms; ``source``: per draw,
    0 for the run's own draws and g for the g-th round of fresh ones."""

    draw: np.ndarray
    monthly: np.ndarray
    claims: np.ndarray
    paid: np.ndarray
    budgets: np.ndarray
    runout: np.ndarray
    u: np.ndarray
    source: np.ndarray
    cache: dict = field(default_factory=dict, repr=False, compare=False)  # key_monthly's result

    @property
    def draws(self) -> int:
        return len(self.u)

    @property
    def per_draw(self) -> np.ndarray:
        return np.bincount(self.draw, minlength=self.draws)

    def joined(self, other: Ensemble) -> Ensemble:
        return Ensemble(np.concatenate([self.draw, other.draw + self.draws]),
                        *(np.concatenate([getattr(self, name), getattr(other, name)])
                          for name in ("monthly", "claims", "paid", "budgets", "runout", "u", "source")))


def ensemble_of(tables: dict[str, pd.DataFrame], rule_ids: list[str], domains: list[str], draw_of: np.ndarray,
                u: np.ndarray, source: int = 0) -> Ensemble:
    """The ensemble of a run's (or a round's) tables: ``rules``, ``budgets``, ``process_monthly``,
    ``process_cash``, ``process_runout``; only the replications the process stage ran."""
    monthly_frame = tables["process_monthly"]
    reps = int(monthly_frame["replication"].max()) + 1 if len(monthly_frame) else 0
    rules = list(monthly_frame["rule"].iloc[:len(monthly_frame) // max(reps, 1) : 12])
    order = [rules.index(r) for r in rule_ids]
    monthly = monthly_frame[list(MEASURES)].to_numpy(dtype=float).reshape(reps, len(rules), 12, len(MEASURES))
    monthly = monthly[:, order]
    claims = (tables["rules"].pivot(index="replication", columns="rule", values="district")
              .reindex(index=range(reps), columns=rule_ids).fillna(0.0).to_numpy(dtype=float))
    cash = tables["process_cash"]
    cash_domains = list(dict.fromkeys(cash["domain"]))
    paid = cash["paid"].to_numpy(dtype=float).reshape(reps, len(cash_domains), 12)[:, [cash_domains.index(d)
                                                                                       for d in domains]]
    budgets = claims_budget_frame(tables["budgets"], domains, range(reps)).to_numpy(dtype=float)
    runout = (tables["process_runout"].pivot(index="replication", columns="domain", values="runout_day")
              .reindex(index=range(reps), columns=domains).to_numpy(dtype=float))
    draw = np.asarray(draw_of[:reps], dtype=np.int64)
    used = np.unique(draw)
    remap = np.full(int(draw.max()) + 1 if reps else 0, -1)
    remap[used] = np.arange(len(used))
    return Ensemble(remap[draw], monthly, claims, paid, budgets, runout, np.asarray(u, dtype=float)[used],
                    np.full(len(used), source, dtype=np.int64))


# ----------------------------------------------------------------------------- the likelihood
@dataclass(frozen=True)
class Keys:
    """The observed keys: their names and the rules each sums (a matrix keys x rules)."""

    names: tuple
    matrix: np.ndarray


def keys_of(observed: Observed, rule_ids: list[str], article_of: dict[str, int]) -> Keys:
    names = tuple(dict.fromkeys(observed.frame["key"]))
    matrix = np.zeros((len(names), len(rule_ids)))
    for i, name in enumerate(names):
        for j, rule in enumerate(rule_ids):
            matrix[i, j] = rule == name if observed.level == "rule" else article_of[rule] == name
    return Keys(names, matrix)


def observed_cube(observed: Observed, keys: Keys) -> np.ndarray:
    """(keys, 12, measures) of the observations, NaN where not reported (months after as-of included)."""
    cube = np.full((len(keys.names), 12, len(MEASURES)), np.nan)
    index = {name: i for i, name in enumerate(keys.names)}
    f = observed.frame
    rows = np.array([index[k] for k in f["key"]], dtype=np.int64)
    cube[rows, f["month"].to_numpy(int) - 1] = f[list(MEASURES)].to_numpy(dtype=float)
    return cube


@dataclass(frozen=True)
class Spread:
    """What the likelihood measures once, on the run's own draws, and keeps for fresh ones: per key the
    over-dispersion of the applications to date and the spread of single log claims, and the pooled amount
    per application (for draws that simulate none)."""

    dispersion: np.ndarray  # (keys,) phi: variance = mu + phi mu^2
    log_spread: np.ndarray  # (keys,) s^2
    amount: np.ndarray  # (keys,) pooled amount claimed per application
    possible: np.ndarray  # (keys, 12, measures): some replication of the run shows a positive value
    applications: np.ndarray  # (keys,) applications in all replications of the run, all months


def key_monthly(ensemble: Ensemble, keys: Keys) -> np.ndarray:
    """(replications, keys, 12, measures): each key's sums of its rules (computed once per ensemble and keys)."""
    cache = ensemble.cache
    if cache.get("keys") is not keys:
        cache.clear()
        cache["keys"] = keys
        cache["values"] = np.moveaxis(np.tensordot(ensemble.monthly, keys.matrix, axes=([1], [1])), 3, 1)
    return cache["values"]


def draw_sums(values: np.ndarray, draw: np.ndarray, draws: int) -> np.ndarray:
    """Sums over each draw's replications (float64, in replication order)."""
    out = np.zeros((draws, *values.shape[1:]))
    np.add.at(out, draw, values)
    return out


def spread_of(ensemble: Ensemble, keys: Keys, months: int) -> Spread:
    """The spread terms of the likelihood, measured between the replications of each of the run's draws on
    the totals of the first ``months`` months (the whole year where ``months`` is 0)."""
    own = ensemble.source[ensemble.draw] == 0  # the run's own replications only: fresh draws never change it
    x = key_monthly(ensemble, keys)[own]
    draw = ensemble.draw[own]
    to_date = x[:, :, :months or 12].sum(axis=2)  # (reps, keys, measures)
    draws = ensemble.draws
    per = np.bincount(draw, minlength=draws)
    multi = per >= 2
    apps = to_date[..., 0]
    mean = draw_sums(apps, draw, draws) / np.maximum(per, 1)[:, None]
    var = draw_sums((apps - mean[draw]) ** 2, draw, draws) / np.maximum(per - 1, 1)[:, None]
    excess = ((var - mean) * multi[:, None]).sum(axis=0)
    scale = ((mean ** 2) * multi[:, None]).sum(axis=0)
    dispersion = np.where(scale > 0, np.maximum(excess, 0.0) / np.where(scale > 0, scale, 1.0), 0.0)
    n_rep = x[..., 0].sum(axis=2)  # whole year: the spread of single claims does not depend on the month
    a_rep = x[..., 1].sum(axis=2)
    positive = n_rep > 0
    log_mean = np.log(np.where(positive, a_rep, 1.0) / np.where(positive, n_rep, 1.0))
    # per draw and key, the variance of the replications' log amount per application (those with any), times
    # their mean number of applications: the variance of one claim's log amount
    count = draw_sums(positive.astype(float), draw, draws)
    first = draw_sums(np.where(positive, log_mean, 0.0), draw, draws)
    second = draw_sums(np.where(positive, log_mean ** 2, 0.0), draw, draws)
    n_sum = draw_sums(np.where(positive, n_rep, 0.0), draw, draws)
    usable = count >= 2
    safe = np.where(usable, count, 2.0)
    variance = np.maximum(second - first ** 2 / safe, 0.0) / (safe - 1)
    estimate = np.where(usable, variance * n_sum / safe, 0.0)
    found = usable.sum(axis=0)
    log_spread = np.where(found > 0, estimate.sum(axis=0) / np.maximum(found, 1), SPREAD_FALLBACK)
    total_n, total_a = n_rep.sum(axis=0), a_rep.sum(axis=0)
    amount = np.where(total_n > 0, total_a / np.where(total_n > 0, total_n, 1.0), 0.0)
    return Spread(dispersion, log_spread, amount, (x > 0).any(axis=0), total_n)


def _nb_logpmf(y: np.ndarray, mean: np.ndarray, variance: np.ndarray) -> np.ndarray:
    """Negative binomial log-probability with the given mean and variance (> mean); y = 0 at mean 0 is 0."""
    size, p, safe = _nb_parameters(mean, variance)
    out = np.where(safe, stats.nbinom.logpmf(y, size, p), 0.0)
    return np.where(~safe & (y > 0), -np.inf, out)


def _nb_parameters(mean: np.ndarray, variance: np.ndarray):
    variance = np.maximum(variance, mean * (1 + 1e-9) + 1e-12)
    safe = mean > 0
    size = np.where(safe, mean ** 2 / (variance - mean), 1.0)
    return size, np.where(safe, mean / variance, 0.5), safe


def _nb_tail(y: np.ndarray, mean: np.ndarray, variance: np.ndarray) -> np.ndarray:
    """Two-sided tail probability of y under the negative binomial (the smaller of P(Y<=y), P(Y>=y))."""
    size, p, safe = _nb_parameters(mean, variance)
    tail = np.minimum(stats.nbinom.cdf(y, size, p), stats.nbinom.sf(y - 1, size, p))
    return np.where(safe, tail, np.where(y > 0, 0.0, 1.0))


@dataclass(frozen=True)
class CellTerms:
    """The log-likelihood of every term (key x measure, to date) under every draw, and each term's largest
    tail probability over the draws."""

    loglik: np.ndarray  # (draws, terms)
    tail: np.ndarray  # (terms,)
    cells: pd.DataFrame  # key, months, measure, observed (to date)


def to_date(cube: np.ndarray, months: int) -> tuple[np.ndarray, np.ndarray]:
    """(totals, reported): per key and measure, the observations of the first ``months`` months summed, and
    whether the measure was reported (a key's months without a row count as nothing received)."""
    part = cube[:, :months]
    rows = ~np.isnan(part[..., 0])  # a row exists where applications are given
    reported = (rows[..., None] & ~np.isnan(part)).any(axis=1)
    return np.nansum(part, axis=1), reported


def cell_terms(ensemble: Ensemble, keys: Keys, cube: np.ndarray, months: int, spread: Spread,
               tau: float = MODEL_ERROR) -> CellTerms:
    """The log-likelihood under every draw of each key's observations to date (see the module's text)."""
    draws, per = ensemble.draws, np.maximum(ensemble.per_draw, 1).astype(float)
    x = key_monthly(ensemble, keys)
    sim = draw_sums(x[:, :, :months].sum(axis=2), ensemble.draw, draws)  # (draws, keys, measures): to date
    totals, reported = to_date(cube, months)
    inflate = (1.0 + 1.0 / per)[:, None]
    terms, tails, labels = [], [], []

    def add(measure: str, mask: np.ndarray, loglik: np.ndarray, tail: np.ndarray) -> None:
        k = np.flatnonzero(mask)
        terms.append(loglik[:, k])
        tails.append(tail[:, k].max(axis=0) if draws else np.ones(len(k)))
        labels.append(pd.DataFrame({"key": np.asarray(keys.names, dtype=object)[k], "months": months,
                                    "measure": measure, "observed": totals[k, MEASURES.index(measure)]}))

    # applications to date: negative binomial around the draw's mean, over-dispersed between firms' draws
    n_obs = totals[:, 0]
    mu = sim[..., 0] / per[:, None]
    possible = spread.possible[:, :months, 0].any(axis=1)
    mu = np.where((mu == 0) & possible[None], 0.5 / per[:, None], mu)
    var = (mu + (spread.dispersion + tau ** 2)[None] * mu ** 2) * inflate
    add("applications", reported[:, 0], _nb_logpmf(n_obs[None], mu, var), _nb_tail(n_obs[None], mu, var))

    # claimed to date: the log amount per application, normal
    has = reported[:, 1] & (n_obs > 0)
    n_draw = sim[..., 0]
    a_draw = np.where(n_draw > 0, sim[..., 1] / np.where(n_draw > 0, n_draw, 1.0), spread.amount[None])
    s2 = spread.log_spread[None]
    var_log = s2 / np.maximum(n_obs, 1)[None] + s2 / np.maximum(n_draw, 1) + tau ** 2
    z_obs = np.log(np.where(has, totals[:, 1], 1.0) / np.maximum(n_obs, 1))
    z_sim = np.log(np.where(a_draw > 0, a_draw, 1.0))
    z = np.where(a_draw > 0, (z_obs[None] - z_sim) / np.sqrt(var_log), np.inf)
    ll = np.where(np.isfinite(z), stats.norm.logpdf(z_obs[None], z_sim, np.sqrt(var_log)), -np.inf)
    add("claimed", has, ll, np.where(np.isfinite(z), 2 * stats.norm.sf(np.abs(z)), 0.0))

    # approvals to date: Poisson on the applications observed, at the draw's approvals per application
    pooled = _safe_ratio(sim[..., 2].sum(axis=0), sim[..., 0].sum(axis=0))
    rate = np.where(n_draw > 0, _safe_ratio(sim[..., 2], n_draw), pooled[None])
    mu_a = n_obs[None] * rate
    possible_a = spread.possible[:, :months, 2].any(axis=1)
    mu_a = np.where((mu_a == 0) & (n_obs[None] > 0) & possible_a[None], 0.5 / per[:, None], mu_a)
    var_a = mu_a * inflate * (1 + 1e-6) + (tau * mu_a) ** 2 + 1e-12
    ya = totals[:, 2]
    add("approvals", reported[:, 2], _nb_logpmf(ya[None], mu_a, var_a), _nb_tail(ya[None], mu_a, var_a))

    # paid to date: normal around the observed base (approved, else claimed) times the draw's paid per base
    base_column = np.where(reported[:, 3], 3, 1)
    base_obs = totals[np.arange(len(totals)), base_column]
    sim_base = np.take_along_axis(sim, base_column[None, :, None], axis=2)[..., 0]
    pooled_p = _safe_ratio(sim[..., 4].sum(axis=0), sim_base.sum(axis=0))
    share = np.where(sim_base > 0, _safe_ratio(sim[..., 4], sim_base), pooled_p[None])
    mu_p = base_obs[None] * share
    var_p = mu_p * a_draw * np.exp(s2) * inflate + (tau * mu_p) ** 2 + PAID_FLOOR
    yp = totals[:, 4]
    zp = (yp[None] - mu_p) / np.sqrt(var_p)
    add("paid", reported[:, 4], stats.norm.logpdf(yp[None], mu_p, np.sqrt(var_p)), 2 * stats.norm.sf(np.abs(zp)))

    loglik = np.concatenate(terms, axis=1)
    cells = pd.concat(labels, ignore_index=True)
    return CellTerms(loglik, np.concatenate(tails), cells)


def impossible_months(cube: np.ndarray, keys: Keys, spread: Spread, months: int) -> list[tuple[str, int, str]]:
    """(key, month, "applications") of each month with applications where no replication of the run has any,
    for keys whose replications show at least :data:`MONTH_EVIDENCE` applications in all (so that an empty
    month says something): applications outside every application window.  Approvals and payments are
    left to the totals (their months move with review times)."""
    values = np.nan_to_num(cube[:, :months, 0])
    bad = (values > 0) & ~spread.possible[:, :months, 0] & (spread.applications >= MONTH_EVIDENCE)[:, None]
    return [(str(keys.names[k]), int(m) + 1, "applications") for k, m in zip(*np.nonzero(bad))]


def _safe_ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.where(b > 0, a / np.where(b > 0, b, 1.0), 0.0)


def _log_summaries(x: np.ndarray) -> np.ndarray:
    """(..., keys, measures) totals to date on the scale the adjustments use: log(1 + count or 萬元) for every
    measure, the log amount per application for ``claimed``."""
    out = np.log1p(np.maximum(x, 0.0))
    n = x[..., 0]
    out[..., 1] = np.where(n > 0, np.log(np.maximum(x[..., 1], 1e-12) / np.where(n > 0, n, 1.0)), 0.0)
    return out


def contradictions(ensemble: Ensemble, keys: Keys, cube: np.ndarray, months: int, spread: Spread, level: str,
                   year: int) -> list[str]:
    """Totals to date that no replication of the run comes near, beyond the luck of one year:

    * a count beyond the range of every replication with a Poisson tail probability below
      :data:`CONTRADICTION` from the nearest replication's count;
    * an amount per application or per approval outside the replications' range by more than
      :data:`CONTRADICTION_Z` standard deviations of a mean of that many claims;
    * payments more than :data:`CONTRADICTION_RATIO` times the most any replication paid to date.
    """
    own = ensemble.source[ensemble.draw] == 0
    sim = key_monthly(ensemble, keys)[own, :, :months].sum(axis=2)  # (reps, keys, measures)
    totals, reported = to_date(cube, months)
    out = []
    low, high = sim.min(axis=0), sim.max(axis=0)
    # how far each total lies from the replications on the log scale, in their standard deviations: a run's
    # draws cover only part of each range, so a total just beyond them is no contradiction
    sim_log, obs_log = _log_summaries(sim), _log_summaries(totals)
    far = np.abs(obs_log - sim_log.mean(axis=0)) / np.maximum(sim_log.std(axis=0), MODEL_ERROR) > CONTRADICTION_Z

    def say(k: int, what: str, value: float, lo: float, hi: float) -> None:
        out.append(f"{level} {keys.names[k]}, {what} to {year}-{months:02d}: {value:,.6g} (the run's replications: "
                   f"{lo:,.6g} to {hi:,.6g})")
    for c in (0, 2):  # counts
        y = totals[:, c]
        above = (y > high[:, c]) & (stats.poisson.sf(y - 1, high[:, c]) < CONTRADICTION)
        below = (y < low[:, c]) & (stats.poisson.cdf(y, low[:, c]) < CONTRADICTION)
        for k in np.flatnonzero(reported[:, c] & far[:, c] & (above | below)):
            say(k, MEASURES[c], y[k], low[k, c], high[k, c])
    for c, n in ((1, 0), (3, 2)):  # amounts per application, per approval
        count = totals[:, n]
        usable = reported[:, c] & reported[:, n] & (count > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            per_sim = np.where(sim[..., n] > 0, sim[..., c] / sim[..., n], np.nan)
            lo = np.min(np.where(np.isnan(per_sim), np.inf, per_sim), axis=0)
            hi = np.max(np.where(np.isnan(per_sim), -np.inf, per_sim), axis=0)
            per_obs = totals[:, c] / np.maximum(count, 1)
            log_sim = np.log(per_sim)
            seen = np.isfinite(log_sim)
            number = np.maximum(seen.sum(axis=0), 1)
            centre = np.where(seen, log_sim, 0.0).sum(axis=0) / number
            spread_log = np.sqrt(np.where(seen, (log_sim - centre) ** 2, 0.0).sum(axis=0) / number)
            distance = np.maximum(np.log(np.maximum(per_obs, 1e-12) / hi), np.log(lo / np.maximum(per_obs, 1e-12)))
        scale = np.sqrt(spread.log_spread / np.maximum(count, 1) + MODEL_ERROR ** 2)
        away = np.abs(np.log(np.maximum(per_obs, 1e-12)) - centre) / np.maximum(spread_log, MODEL_ERROR)
        bad = usable & np.isfinite(lo) & (distance / scale > CONTRADICTION_Z) & (away > CONTRADICTION_Z)
        for k in np.flatnonzero(bad):
            say(k, f"{MEASURES[c]} per {'application' if n == 0 else 'approval'}", per_obs[k], lo[k], hi[k])
    bad = reported[:, 4] & far[:, 4] & (totals[:, 4] > CONTRADICTION_RATIO * high[:, 4] + PAID_FLOOR)
    for k in np.flatnonzero(bad):
        say(k, "paid", totals[k, 4], low[k, 4], high[k, 4])
    return out


def check_possible(ensemble: Ensemble, cube: np.ndarray, keys: Keys, spread: Spread, observed: Observed,
                   year: int) -> None:
    """One clear message for observations that no replication of the run can produce: first those in a month
    where no replication has any, then totals to date far beyond everything the replications give."""
    months = impossible_months(cube, keys, spread, observed.months)
    if months:
        shown = "; ".join(f"{observed.level} {k}, {year}-{m:02d}: {measure}" for k, m, measure in months[:5])
        more = f"; and {len(months) - 5} more" if len(months) > 5 else ""
        raise NowcastError(
            f"{observed.path}: no replication of the run has any of these in that month: {shown}{more}. Check the "
            "month and the rule or article; if they are right, the application windows of the process settings do not "
            "allow them: correct process.toml or the scenario, run again, then nowcast")
    bad = contradictions(ensemble, keys, cube, observed.months, spread, observed.level, year)
    if bad:
        shown = "; ".join(bad[:5]) + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise NowcastError(
            f"{observed.path}: no replication of the run comes near these observations: {shown}. Check the figures and "
            "their units (萬元), the rule or article and the months; if they are right, the model's ranges do not "
            "cover them: widen the ranges in the model's assumptions or correct the model, run again, then nowcast")


# ----------------------------------------------------------------------------- weights and proposals
def log_weights(loglik: np.ndarray, log_proposal: np.ndarray) -> np.ndarray:
    """Normalised log-weights of the draws: the log-likelihood less the log of the mixture proposal density
    (the prior is 1 on the unit cube)."""
    raw = loglik - log_proposal
    if not np.isfinite(raw).any():
        raise NowcastError("every assumption draw has zero likelihood for the observations")
    # relative to the best draw, to 1e-9 nats (float noise): equal likelihoods give exactly equal weights
    raw = np.round(raw - raw.max(), 9)
    return raw - np.log(np.exp(raw).sum())  # the best draw's term is exp(0) = 1: no overflow, no underflow of all


def tempered(loglik: np.ndarray, log_proposal: np.ndarray, target: float) -> tuple[float, np.ndarray]:
    """(beta, log-weights): the largest weight ``beta`` in [0, 1] on the observations (the likelihood raised
    to ``beta``) that keeps the effective sample size at ``target`` draws or more, found by bisection.

    ``beta = 1`` is the full posterior; below 1 the observations count for less than they say and the
    intervals are wider than the data alone would make them: cautious, never overconfident.

    >>> beta, _ = tempered(np.array([0.0, -1.0, -2.0, -50.0]), np.zeros(4), 2.0)
    >>> 0.5 < beta < 1.0
    True
    """
    full = log_weights(loglik, log_proposal)
    if ess(full) >= target:
        return 1.0, full
    low, high = 0.0, 1.0
    finite = np.where(np.isfinite(loglik), loglik, -np.inf)
    for _ in range(40):
        middle = 0.5 * (low + high)
        if ess(log_weights(middle * finite, log_proposal)) >= target:
            low = middle
        else:
            high = middle
    return low, log_weights(low * finite, log_proposal)


def ess(log_w: np.ndarray) -> float:
    """Effective sample size 1 / sum(w^2) of normalised weights (in draws).

    >>> ess(np.log(np.full(4, 0.25)))
    4.0
    """
    w = np.exp(log_w)
    return float(1.0 / np.sum(w ** 2))


@dataclass(frozen=True)
class Proposal:
    """A population Monte Carlo proposal on the unit cube, one group at a time: for each group a mixture of
    reflected Gaussian kernels at its posterior values (``centres``, weighted), with twice their weighted
    variance; the groups are drawn independently (the product of the posterior's marginals)."""

    centres: np.ndarray  # (n, groups)
    weights: np.ndarray  # (n, groups): each group's normalised weights of the centres
    bandwidth: np.ndarray  # (groups,)

    @classmethod
    def of(cls, centres: np.ndarray, weights: np.ndarray) -> Proposal:
        weights = weights / weights.sum(axis=0, keepdims=True)
        mean = (weights * centres).sum(axis=0)
        var = (weights * (centres - mean) ** 2).sum(axis=0)
        return cls(centres, weights, np.maximum(np.sqrt(KERNEL_SCALE * var), MIN_BANDWIDTH))

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` points: per group a centre chosen by weight, moved by the kernel, reflected into [0, 1]."""
        groups = self.centres.shape[1]
        out = np.empty((n, groups))
        for g in range(groups):
            ancestors = rng.choice(len(self.centres), size=n, p=self.weights[:, g])
            out[:, g] = self.centres[ancestors, g] + rng.standard_normal(n) * self.bandwidth[g]
        return reflect(out)

    def log_density(self, u: np.ndarray) -> np.ndarray:
        """log q(u) of each row of ``u``."""
        total = np.zeros(len(u))
        with np.errstate(divide="ignore"):
            log_w = np.log(self.weights)
        for g in range(u.shape[1]):
            h, x, c = self.bandwidth[g], u[:, g][:, None], self.centres[:, g][None, :]
            # the kernel folded into [0, 1] (what :func:`reflect` does to a draw): its images at c + 2k and
            # -c + 2k; five of each reach within 1e-6 of the whole for the widest kernel (sd 0.707)
            images = [x - c - 2 * k for k in IMAGES] + [x + c - 2 * k for k in IMAGES]
            kernel = special.logsumexp(np.stack([-0.5 * (z / h) ** 2 for z in images]), axis=0)
            total += special.logsumexp(kernel + log_w[None, :, g], axis=1) - np.log(h * np.sqrt(2 * np.pi))
        return total


def reflect(u: np.ndarray) -> np.ndarray:
    """Fold values into [0, 1] by reflection at the ends.

    >>> reflect(np.array([-0.2, 0.5, 1.3])).round(6).tolist()
    [0.2, 0.5, 0.7]
    """
    folded = np.mod(u, 2.0)
    return np.where(folded > 1.0, 2.0 - folded, folded)


def mixture_log_density(u: np.ndarray, sizes: list[int], proposals: list[Proposal]) -> np.ndarray:
    """log of sum_g (n_g / N) q_g(u): the balance heuristic's denominator (q_0 = the prior = 1)."""
    total = float(sum(sizes))
    parts = [np.full(len(u), math.log(sizes[0] / total))]
    for n, proposal in zip(sizes[1:], proposals):
        parts.append(math.log(n / total) + proposal.log_density(u))
    return special.logsumexp(np.stack(parts), axis=0)


def round_seed(seed: int, round_: int) -> tuple[int, np.random.Generator]:
    """(the population seed of round g's fresh replications, the generator that proposes its draws)."""
    sequence = np.random.SeedSequence(seed, spawn_key=(NOWCAST_STREAM, round_))
    population, proposal = sequence.spawn(2)
    return int(population.generate_state(1)[0]), np.random.Generator(np.random.PCG64(proposal))


# ----------------------------------------------------------------------------- answers
def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float | np.ndarray) -> np.ndarray:
    """Quantiles of weighted values (the inverse of the weighted empirical distribution, midpoint rule).

    >>> float(weighted_quantile(np.array([1.0, 2.0, 3.0]), np.array([1.0, 1.0, 1.0]), 0.5))
    2.0
    >>> float(weighted_quantile(np.array([1.0, 2.0, 3.0]), np.array([0.0, 0.0, 1.0]), 0.05))
    3.0
    """
    order = np.argsort(values, kind="stable")
    v, w = values[order], weights[order]
    keep = w > 0
    v, w = v[keep], w[keep]
    cumulative = (np.cumsum(w) - 0.5 * w) / w.sum()
    return np.interp(q, cumulative, v)


@dataclass
class Posterior:
    """Replication weights (prior: equal) and what each replication says at year end."""

    weights: np.ndarray  # (replications,) summing to 1
    claims: np.ndarray  # (replications, rules) year-end district-paid claims, observed to date substituted
    paid: np.ndarray  # (replications, domains) year-end paid
    budgets: np.ndarray
    runout: np.ndarray
    draw: np.ndarray


def replication_weights(ensemble: Ensemble, log_w: np.ndarray) -> np.ndarray:
    """Each replication's share of its draw's weight."""
    w = np.exp(log_w)
    return w[ensemble.draw] / ensemble.per_draw[ensemble.draw]


def year_end(ensemble: Ensemble, keys: Keys, cube: np.ndarray, months: int, domain_of: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    """Per replication: year-end claims per rule and paid per domain, with what was observed to date in place
    of the replication's own months: the claims stage's totals + (observed claimed to date - simulated to date),
    the difference shared over a key's rules in proportion to their simulated amounts to date (equally where
    none); likewise paid, which then stays within the replication's budget unless the payments to date
    already exceed it.  Without observations: the run's own numbers, untouched."""
    claims = ensemble.claims.copy()
    paid = ensemble.paid.sum(axis=2)
    if months == 0 or not len(keys.names):
        return claims, paid
    claimed_delta = _delta(ensemble, keys, cube, months, "claimed")
    claims += claimed_delta
    paid_delta = _delta(ensemble, keys, cube, months, "paid")
    if not paid_delta.any():
        return claims, paid
    by_rule = ensemble.monthly[..., 4]
    total = by_rule.sum(axis=2) + paid_delta
    to_date = by_rule[:, :, :months].sum(axis=2) + paid_delta
    domains = ensemble.paid.shape[1]
    paid = np.stack([total[:, domain_of == d].sum(axis=1) for d in range(domains)], axis=1)
    paid_to_date = np.stack([to_date[:, domain_of == d].sum(axis=1) for d in range(domains)], axis=1)
    return claims, np.minimum(paid, np.maximum(ensemble.budgets, paid_to_date))


def _delta(ensemble: Ensemble, keys: Keys, cube: np.ndarray, months: int, measure: str) -> np.ndarray:
    """(replications, rules): observed to date less simulated to date, per key where the measure is reported
    for every month with applications to date, shared over the key's rules."""
    c = MEASURES.index(measure)
    totals, reported = to_date(cube, months)
    simulated = ensemble.monthly[:, :, :months, c].sum(axis=2)  # (reps, rules)
    out = np.zeros_like(simulated)
    for k in np.flatnonzero(reported[:, c]):
        members = keys.matrix[k] > 0
        sim = simulated[:, members]
        out[:, members] += (totals[k, c] - sim.sum(axis=1, keepdims=True)) * _shares(sim)
    return out


def _shares(parts: np.ndarray) -> np.ndarray:
    """Each column's share of its row's total (replications x rules of a key), equal shares where the row
    has none: how a key's money is split over its rules.

    >>> _shares(np.array([[1.0, 3.0], [0.0, 0.0]])).tolist()
    [[0.25, 0.75], [0.5, 0.5]]
    """
    total = parts.sum(axis=1, keepdims=True)
    return np.where(total > 0, parts / np.where(total > 0, total, 1.0), 1.0 / parts.shape[1])


QUANTILES = (0.05, 0.5, 0.95)


def _summary(values: np.ndarray, weights: np.ndarray, draw: np.ndarray, prefix: str = "") -> dict[str, float]:
    """Weighted mean, P5, P50, P95 and the share of the variance that comes from the assumptions: one less
    the share within a draw (the luck of the year), measured on the draws with several replications."""
    values = np.ascontiguousarray(values, dtype=np.float64)  # one memory layout, one summation order
    mean = float(weights @ values)
    q = weighted_quantile(values, weights, np.array(QUANTILES))
    total = float(weights @ (values - mean) ** 2)
    draws = int(draw.max()) + 1 if len(draw) else 0
    count = np.bincount(draw, minlength=draws)
    w_draw = np.bincount(draw, weights=weights, minlength=draws)
    m_draw = np.bincount(draw, weights=values, minlength=draws) / np.maximum(count, 1)
    square = np.bincount(draw, weights=(values - m_draw[draw]) ** 2, minlength=draws)
    multi = (count >= 2) & (w_draw > 0)
    within = float(w_draw[multi] @ (square[multi] / (count[multi] - 1)) / w_draw[multi].sum()) if multi.any() else 0.0
    share = min(max(1.0 - within / total, 0.0), 1.0) if total > 0 else 0.0
    return {f"{prefix}mean": mean, f"{prefix}p5": float(q[0]), f"{prefix}p50": float(q[1]), f"{prefix}p95": float(q[2]),
            f"{prefix}from_assumptions": share}


@dataclass(frozen=True)
class Frame:
    """What the answer tables need to know of the model: rules, their articles and domains."""

    rule_ids: list[str]
    article_of: dict[str, int]
    domains: list[str]
    domain_of: np.ndarray  # (rules,) index into domains
    year: int


def claimed_to_date(observed: Observed, frame: Frame) -> dict[str, float]:
    """Claimed to date (萬元) per observed key, and per article and domain whose every key was observed."""
    claimed = observed.frame.groupby("key")["claimed"].sum()
    out = {str(k): float(v) for k, v in claimed.items()}
    groups = [(str(a), [r for r in frame.rule_ids if frame.article_of[r] == a])
              for a in sorted(set(frame.article_of.values()))] if observed.level == "rule" else []
    groups += [(d, [frame.rule_ids[i] for i in np.flatnonzero(frame.domain_of == j)])
               for j, d in enumerate(frame.domains)]
    for name, members in groups:
        wanted = members if observed.level == "rule" else sorted({frame.article_of[r] for r in members})
        if all(k in claimed.index for k in wanted):
            out[name] = float(sum(claimed[k] for k in wanted))
    return out


def claims_table(prior: Posterior, posts: list[Posterior], frame: Frame, observed_to_date: dict[str, float]
                 ) -> pd.DataFrame:
    """Year-end district-paid claims per rule, article and domain (萬元): the run's forecast (prior) beside the
    nowcast (each domain's rules on the domain's own weights), with what was claimed to date where observed."""
    rows = []
    articles = sorted(set(frame.article_of.values()))
    levels = [("rule", [(r, np.array([i])) for i, r in enumerate(frame.rule_ids)]),
              ("article", [(a, np.flatnonzero([frame.article_of[r] == a for r in frame.rule_ids])) for a in articles]),
              ("domain", [(d, np.flatnonzero(frame.domain_of == i)) for i, d in enumerate(frame.domains)])]
    for level, groups in levels:
        for key, members in groups:
            post = posts[int(frame.domain_of[members[0]])]
            before = prior.claims[:, members].sum(axis=1)
            after = post.claims[:, members].sum(axis=1)
            rows.append({"level": level, "key": str(key), "domain": frame.domains[int(frame.domain_of[members[0]])],
                         "claimed_to_date": observed_to_date.get(str(key), np.nan),
                         **_summary(before, prior.weights, prior.draw, "prior_"),
                         **_summary(after, post.weights, post.draw)})
    return pd.DataFrame(rows)


def domains_table(prior: Posterior, posts: list[Posterior], frame: Frame, year: int) -> pd.DataFrame:
    """Per domain, before (prior) and after the observations (on the domain's own weights): year-end claims
    against the claims budget, P(overrun), the mean shortfall, year-end payments, P(the budget runs out)
    and the median run-out date."""
    rows = []
    start = dt.date(year, 1, 1)
    for d, domain in enumerate(frame.domains):
        row: dict[str, Any] = {"domain": domain}
        for prefix, p in (("prior_", prior), ("", posts[d])):
            claims = p.claims[:, frame.domain_of == d].sum(axis=1)
            budget = p.budgets[:, d]
            out = np.isfinite(p.runout[:, d])
            w = p.weights
            day = float(weighted_quantile(p.runout[out, d], w[out], 0.5)) if (w[out] > 0).any() else np.nan
            row.update({
                f"{prefix}claims_budget": float(w @ budget),
                f"{prefix}claims_mean": float(w @ claims),
                f"{prefix}claims_p5": float(weighted_quantile(claims, w, 0.05)),
                f"{prefix}claims_p95": float(weighted_quantile(claims, w, 0.95)),
                f"{prefix}p_overrun": float(w @ (claims > budget)),
                f"{prefix}mean_shortfall": float(w @ np.maximum(claims - budget, 0.0)),
                **{f"{prefix}paid_{k}": v for k, v in _summary(p.paid[:, d], w, p.draw).items()},
                f"{prefix}p_runout": float(w @ out),
                f"{prefix}runout_date_p50": (None if np.isnan(day) else
                                             (start + dt.timedelta(days=int(day))).isoformat()),
            })
        rows.append(row)
    return pd.DataFrame(rows)


def assumptions_table(numbers: tuple, keys: tuple[str, ...], values: np.ndarray, weights: np.ndarray
                      ) -> pd.DataFrame:
    """Each uncertain number's prior (P5, P50, P95 of its distribution) beside its posterior (P5, P50, P95 of
    ``values``: replications x groups on the 0-1 scale, with ``weights`` per group), and how much of the
    prior's 90% width the observations took away."""
    rows = []
    for number in numbers:
        g = keys.index(number.uncertainty.group)
        w = weights[:, g]
        # the value is a monotone function of the group's uniform: its quantiles are the uniform's, mapped
        post = [assumptions_module.quantile(number.uncertainty, number.point, float(v))
                for v in weighted_quantile(values[:, g], w, np.array(QUANTILES))]
        prior = [assumptions_module.quantile(number.uncertainty, number.point, q) for q in QUANTILES]
        width = prior[2] - prior[0]
        rows.append({"group": number.uncertainty.group, "where": number.where, "mode": number.uncertainty.mode,
                     "low": number.uncertainty.low, "high": number.uncertainty.high,
                     "prior_p5": prior[0], "prior_p50": prior[1], "prior_p95": prior[2],
                     "p5": post[0], "p50": post[1], "p95": post[2],
                     "narrowed": float(1.0 - (post[2] - post[0]) / width) if width > 0 else 0.0})
    return pd.DataFrame(rows)


RIDGE = 0.01  # ridge penalty on the standardised slopes of the regression adjustment (collinear summaries)
REACH = 1.0  # an adjusted log value stays within this of the replications' own range (a factor e)


def regression_adjusted(y: np.ndarray, s_sim: np.ndarray, s_obs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Local-linear regression adjustment (Beaumont, Zhang and Balding 2002): ``y_i - b'(s_i - s_obs)`` with
    ``b`` the weighted least-squares slope of ``y`` on the summaries ``s`` among the weighted replications,
    so that replications whose summaries differ from the observed ones say what they would have said at
    the observed ones.  The summaries are standardised and the slopes slightly shrunk (ridge :data:`RIDGE`)
    so that two nearly collinear summaries cannot produce huge opposite slopes; an adjusted value stays
    within :data:`REACH` of the range of ``y``.  Summaries without spread among the weighted replications
    are left out; with none left, ``y`` itself is returned.

    >>> s = np.array([[0.0], [1.0], [2.0], [3.0]])
    >>> regression_adjusted(2.0 * s[:, 0] + 1.0, s, np.array([1.5]), np.full(4, 0.25)).round(2).tolist()
    [3.97, 3.99, 4.01, 4.03]
    """
    d = s_sim - s_obs
    w = weights / weights.sum()
    centre = w @ d
    sd = np.sqrt(w @ (d - centre) ** 2)
    columns = sd > 1e-9
    if not columns.any():
        return y
    z = (d[:, columns] - centre[columns]) / sd[columns]
    y_centre = w @ y
    gram = (z * w[:, None]).T @ z + RIDGE * np.eye(z.shape[1])
    slopes = np.linalg.solve(gram, (z * w[:, None]).T @ (y - y_centre))
    adjusted = y - (d[:, columns] / sd[columns]) @ slopes
    return np.clip(adjusted, y.min() - REACH, y.max() + REACH)


def posterior(ensemble: Ensemble, log_w: np.ndarray, keys: Keys, cube: np.ndarray, months: int,
              domain_of: np.ndarray) -> Posterior:
    """The weighted replications' year-end claims and payments: observed to date substituted (:func:`year_end`),
    then regression-adjusted to the observed totals to date (claims per key on its applications and claims
    to date; payments per domain on the domain's claims and payments to date, on the log scale)."""
    claims, paid = year_end(ensemble, keys, cube, months, domain_of)
    weights = replication_weights(ensemble, log_w)
    if months and len(keys.names):
        claims, paid = _adjusted(ensemble, keys, cube, months, domain_of, weights, claims, paid)
    return Posterior(weights, claims, paid, ensemble.budgets, ensemble.runout, ensemble.draw)


def _adjusted(ensemble, keys, cube, months, domain_of, weights, claims, paid):
    sim = key_monthly(ensemble, keys)[:, :, :months].sum(axis=2)  # (reps, keys, measures)
    totals, reported = to_date(cube, months)
    claims, paid = claims.copy(), paid.copy()
    for k in np.flatnonzero(reported[:, 1]):
        members = keys.matrix[k] > 0
        before = np.maximum(claims[:, members].sum(axis=1), 0.0)
        log_before = np.log1p(before)
        log_after = regression_adjusted(log_before, np.log1p(sim[:, k, :2]), np.log1p(totals[k, :2]), weights)
        if log_after is log_before:  # nothing to adjust to (no spread in the summaries): leave the claims alone
            continue
        after = np.maximum(np.expm1(log_after), totals[k, 1])  # the year's claims are at least those to date
        claims[:, members] = after[:, None] * _shares(claims[:, members])
    for d in range(paid.shape[1]):
        in_domain = (keys.matrix[:, domain_of == d] > 0).any(axis=1)
        columns = []
        for c in (1, 4):
            chosen = in_domain & reported[:, c]
            if chosen.any():
                columns.append((sim[:, chosen, c].sum(axis=1), totals[chosen, c].sum()))
        if not columns:
            continue
        s_sim = np.log1p(np.column_stack([c[0] for c in columns]))
        s_obs = np.log1p(np.array([c[1] for c in columns]))
        log_before = np.log1p(np.maximum(paid[:, d], 0.0))
        log_after = regression_adjusted(log_before, s_sim, s_obs, weights)
        if log_after is log_before:
            continue
        after = np.expm1(log_after)
        paid_to_date = totals[in_domain & reported[:, 4], 4].sum()
        paid[:, d] = np.clip(after, paid_to_date, np.maximum(ensemble.budgets[:, d], paid_to_date))
    return claims, paid


def prior_of(ensemble: Ensemble, domain_of: np.ndarray) -> Posterior:
    """The run's own forecast: its own draws' replications, equally weighted, nothing substituted."""
    own = np.where(ensemble.source == 0, 0.0, -np.inf)  # per draw: the run's own, equally
    w = replication_weights(ensemble, log_weights(own, np.zeros(ensemble.draws)))
    return Posterior(w, ensemble.claims, ensemble.paid.sum(axis=2), ensemble.budgets, ensemble.runout, ensemble.draw)


def domain_posteriors(ensemble: Ensemble, terms: CellTerms, keys: Keys, cube: np.ndarray, months: int,
                      frame: Frame, log_q: np.ndarray, target: float) -> tuple[list[Posterior], pd.DataFrame]:
    """Each domain's posterior on its own observations (:func:`local_weights`), and a table of the weight
    given to them (beta), the effective sample size and the number of terms used, per domain."""
    posts, rows = [], []
    for d, domain in enumerate(frame.domains):
        beta, log_w, used = local_weights(terms, keys, frame.domain_of == d, log_q, target)
        posts.append(posterior(ensemble, log_w, keys, cube, months, frame.domain_of))
        rows.append({"domain": domain, "terms": used, "beta": beta, "ess": ess(log_w)})
    return posts, pd.DataFrame(rows)


def narrowing_table(ensemble: Ensemble, log_q: np.ndarray, keys: Keys, cube: np.ndarray, months: int,
                    frame: Frame, target: float, final: tuple[list[Posterior], pd.DataFrame]) -> pd.DataFrame:
    """How each further month of data narrowed the year-end interval of each domain's claims and payments:
    the nowcast with the first m months only (m = 1 .. months; ``final``: the domains' posteriors with all of
    them, :func:`domain_posteriors`), after the run's own forecast (m = 0)."""
    rows = []
    for m in range(months + 1):
        part = cube.copy()
        part[:, m:, :] = np.nan
        if m == months and m > 0:
            posts, facts = final
        elif m == 0:  # the run's own forecast
            posts = [prior_of(ensemble, frame.domain_of)] * len(frame.domains)
            own = np.where(ensemble.source == 0, 0.0, -np.inf)
            facts = pd.DataFrame({"beta": 1.0, "ess": ess(log_weights(own, np.zeros(ensemble.draws)))},
                                 index=range(len(frame.domains)))
        else:
            terms = cell_terms(ensemble, keys, cube, m, spread_of(ensemble, keys, m))
            posts, facts = domain_posteriors(ensemble, terms, keys, part, m, frame, log_q, target)
        for d, domain in enumerate(frame.domains):
            p = posts[d]
            claims = p.claims[:, frame.domain_of == d].sum(axis=1)
            for what, values in (("paid", p.paid[:, d]), ("claims", claims)):
                q = weighted_quantile(values, p.weights, np.array(QUANTILES))
                rows.append({"months": m, "domain": domain, "quantity": what, "p5": float(q[0]),
                             "p50": float(q[1]), "p95": float(q[2]), "width": float(q[2] - q[0]),
                             "ess": float(facts["ess"].iloc[d]), "beta": float(facts["beta"].iloc[d])})
    return pd.DataFrame(rows)


def fit_table(ensemble: Ensemble, terms: CellTerms, keys: Keys, months: int, draw_weights: np.ndarray
              ) -> pd.DataFrame:
    """Each observed total to date beside what the run expected (prior mean) and what the weighted draws
    expect, with its largest tail probability over the draws (small: the observation is hard to produce)."""
    x = key_monthly(ensemble, keys)[:, :, :months].sum(axis=2)
    mean = draw_sums(x, ensemble.draw, ensemble.draws) / np.maximum(ensemble.per_draw, 1)[:, None, None]
    own = (ensemble.source == 0).astype(float)
    out = terms.cells.copy()
    index = {name: i for i, name in enumerate(keys.names)}
    k = np.array([index[v] for v in out["key"]], dtype=np.int64)
    c = np.array([MEASURES.index(v) for v in out["measure"]], dtype=np.int64)
    cell = mean[:, k, c]  # (draws, terms)
    out["key"] = out["key"].astype(str)
    out["prior_mean"] = (own / own.sum()) @ cell
    out["expected"] = draw_weights @ cell
    out["tail_probability"] = terms.tail
    return out


# ----------------------------------------------------------------------------- what each assumption touches
def _descendants(spec, claimant: str, attributes: set[str]) -> set[str]:
    """The attributes drawn from ``attributes`` (through ``of``, ``only_if``, ``when``, ``log_growth``), and
    they themselves, for one claimant kind."""
    steps = list(spec.programme(claimant).steps) + [st for s in spec.segments if s.claimant == claimant
                                                     for st in s.steps]
    out = set(attributes)
    changed = True
    while changed:
        changed = False
        for step in steps:
            reads = set(step.of) | {step.only_if, step.when, step.log_growth} - {None}
            if step.attribute not in out and reads & out:
                out.add(step.attribute)
                changed = True
    return out


def reach(number, policy, spec, process) -> set[str]:
    """The rules whose claims, applications or payments an uncertain number moves: its own rule; a domain's
    claims budget, the domain's rules (through payments); an attribute, the rules of its claimant kind that
    read it or anything drawn from it; a segment's count or anything else of a claimant kind, that kind's
    rules; a bureau's or a window's settings, their rules; any other process setting, every rule."""
    rules = policy.rules
    path = number.path
    if number.file == "policy":
        if path[0] == "rules":
            return {rules[path[1]].id}
        if path[0] == "domains":
            return {r.id for r in rules if r.domain == path[1]}
        return {r.id for r in rules}
    if number.file == "population":
        if path[0] == "claimants":
            claimant = path[1]
            attribute = path[3] if len(path) > 3 and path[2] == "attributes" else None
        elif path[0] == "segments":
            claimant = spec.segments[path[1]].claimant
            attribute = path[3] if len(path) > 3 and path[2] == "attributes" else None
        else:
            return {r.id for r in rules}
        own = [r for r in rules if r.claimant == claimant]
        if attribute is None:
            return {r.id for r in own}
        touched = _descendants(spec, claimant, {attribute})
        found = {r.id for r in own if set(r.attributes()) & touched}
        return found or {r.id for r in own}
    settings = process.rules
    if path[0] == "rules" and path[1] in settings:
        return {path[1]}
    if path[0] == "bureaus":
        return {rule for rule, s in settings.items() if s.bureau == path[1]}
    if path[0] == "windows":
        return {rule for rule, s in settings.items() if s.window == path[1]}
    return set(settings)


def group_reach(assumptions, policy, spec, process) -> dict[str, set[str]]:
    """Per assumption group, the rules any of its numbers moves (:func:`reach`)."""
    out: dict[str, set[str]] = {key: set() for key in assumptions.keys}
    for number in assumptions.numbers:
        out[number.uncertainty.group] |= reach(number, policy, spec, process)
    return out


def local_weights(terms: CellTerms, keys: Keys, rules: np.ndarray, log_q: np.ndarray, target: float
                  ) -> tuple[float, np.ndarray, int]:
    """(beta, log-weights, terms used) from the observations of the keys that hold any of ``rules`` (a mask
    over the policy's rules) only: a localised posterior, conditioned on the data that bears on the question
    (a domain's answers, one assumption's value), so that the many observations about other rules do not
    leave it resting on a handful of draws."""
    held = {keys.names[k] for k in np.flatnonzero((keys.matrix[:, rules] > 0).any(axis=1))}
    used = terms.cells["key"].isin(held).to_numpy() if len(terms.cells) else np.zeros(0, bool)
    beta, log_w = tempered(terms.loglik[:, used].sum(axis=1), log_q, target)
    return beta, log_w, int(used.sum())


def _key_summaries(ensemble: Ensemble, keys: Keys, cube: np.ndarray, months: int, chosen: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(per replication, observed) summaries of the chosen keys' observations to date for a regression
    adjustment: the log applications and log amount per application of each key when three or fewer are
    chosen, else of their sum (a few summaries, so the regression stays well-posed on few draws)."""
    x = key_monthly(ensemble, keys)[:, chosen, :months].sum(axis=2)  # (reps, chosen, measures)
    totals, reported = to_date(cube, months)
    obs, rep = totals[chosen], reported[chosen]
    if chosen.sum() > 3:
        keep = rep[:, 0] & rep[:, 1]
        x, obs = x[:, keep].sum(axis=1, keepdims=True), obs[keep].sum(axis=0, keepdims=True)
        rep = np.ones((1, rep.shape[1]), bool)
    columns_sim, columns_obs = [], []
    sim_log, obs_log = _log_summaries(x), _log_summaries(obs)
    for k in range(len(obs)):
        if rep[k, 0]:
            columns_sim.append(sim_log[:, k, 0])
            columns_obs.append(obs_log[k, 0])
        if rep[k, 1] and obs[k, 0] > 0:
            columns_sim.append(np.where(x[:, k, 0] > 0, sim_log[:, k, 1], obs_log[k, 1]))
            columns_obs.append(obs_log[k, 1])
    if not columns_sim:
        return np.zeros((len(x), 0)), np.zeros(0)
    return np.column_stack(columns_sim), np.array(columns_obs)


def group_posteriors(ensemble: Ensemble, terms: CellTerms, keys: Keys, cube: np.ndarray, months: int,
                     reaches: list[np.ndarray], log_q: np.ndarray, target: float
                     ) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Each assumption group's posterior on the observations of the rules it moves (``reaches``: a mask over
    the policy's rules per group): the localised, tempered weights of the draws, then each replication's
    value regression-adjusted (on the probit scale) to the observed summaries of those rules.  Returns
    (values: replications x groups in [0, 1], weights: replications x groups, a table of beta, ESS and the
    terms used per group)."""
    groups = ensemble.u.shape[1]
    u = ensemble.u[ensemble.draw]
    values, weights, rows = np.empty_like(u), np.empty_like(u), []
    for g in range(groups):
        beta, log_w, used = local_weights(terms, keys, reaches[g], log_q, target)
        w = replication_weights(ensemble, log_w)
        z = stats.norm.ppf(np.clip(u[:, g], 1e-9, 1 - 1e-9))
        chosen = (keys.matrix[:, reaches[g]] > 0).any(axis=1)
        if months and chosen.any():
            s_sim, s_obs = _key_summaries(ensemble, keys, cube, months, chosen)
            if s_sim.shape[1]:
                z = regression_adjusted(z, s_sim, s_obs, w)
        values[:, g], weights[:, g] = stats.norm.cdf(z), w
        rows.append({"terms": used, "beta": beta, "ess": ess(log_w)})
    return values, weights, pd.DataFrame(rows)
