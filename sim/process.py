"""The year as it happens: a SimPy model of application, review and payment.

Each claim of a replication becomes an application that is submitted inside its rule's window, waits
for a reviewer of its article's lead bureau (a ``simpy.Resource``), may pass an expert-review stage
and a public notice (公示) of fixed length, is approved with the rule's probability, and is paid from
its domain's claims budget (a ``simpy.Container``) in the finance bureau's monthly payment runs.
When a container cannot pay in full, the exhaustion rule decides: ``fcfs_defer`` pays in approval
order and defers the rest to next year, ``pro_rata`` holds payments to a cut-off date and scales
them to the budget (the unpaid share is cut), ``reject`` turns away each claim that does not fit.

Two reasons a claim is not paid in the year are kept apart: ``deferred`` (the budget ran out) and
``unpaid`` (still in review, or approved after the year's last payment run: the calendar, not money).

All randomness (submission times, review times, approvals) is drawn up front with NumPy from
``SeedSequence(seed, spawn_key=(replication, PROCESS_STREAM))``, a generator passed explicitly; the
SimPy processes only consume those arrays, and the event log is kept in arrays and turned into pandas
tables at the end.  Conservation holds per domain and replication: paid + deferred + unpaid + cut +
rejected = claimed.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import simpy

from sim import queues
from sim.errors import SpecError
from sim.policy import Policy, resolve_model
from sim.validation import (
    Field,
    FrozenMap,
    Problems,
    Table,
    Uncertain,
    Uncertainty,
    blanket_uncertainty,
    check_provenance,
    ordered_json,
    read_toml,
    table_uncertainty,
)

EXHAUSTION = ("fcfs_defer", "pro_rata", "reject")
UNSURE_FIELDS = {  # the numbers of an assumed table that need a plausible range
    "reviewers": Field(("factor", "range"), integer=True), "review_days": Field(("factor", "range")),
    "length_days": Field(("factor", "range")), "approval": Field(("range", "shift", "factor")),
    "notice_days": Field(("factor", "range", "shift")), "expert_days": Field(("factor", "range", "shift")),
    "day_of_month": Field(("range", "shift"), integer=True),
}
PROCESS_STREAM = 0x5EED_0005
OUTCOMES = ("paid", "deferred", "unpaid", "cut", "rejected")  # the parts a claimed amount ends in
ENGINES = ("auto", "simpy")  # how a year is computed (simulate's engine)


# ----------------------------------------------------------------------------- model objects
@dataclass(frozen=True)
class Window:
    name: str
    intervals: tuple[tuple[float, float], ...]  # (start day, end day); a submission falls in one, uniformly


@dataclass(frozen=True)
class Bureau:
    name: str
    reviewers: int
    review_days: float  # mean of an exponential review time
    window: str
    name_en: str = ""


@dataclass(frozen=True)
class RuleProcess:
    rule: str
    bureau: str
    domain: str
    window: str
    expert_days: float
    notice_days: float
    approval: float


@dataclass(frozen=True)
class ProcessModel:
    path: str
    policy: Policy
    year: int
    issued_day: float
    horizon: float  # the simulation ends here (the year's last instant)
    payment_days: tuple[float, ...]
    exhaustion: str
    cutoff_day: float
    windows: Mapping[str, Window]
    bureaus: Mapping[str, Bureau]
    rules: Mapping[str, RuleProcess]
    budgets: Mapping[str, float] = field(default_factory=dict)  # domain -> claims budget (萬元)
    uncertain: tuple[Uncertain, ...] = ()  # the numbers with a plausible range (sim.assumptions draws them)
    raw: str = field(default="{}", repr=False)

    def day(self, date: str | dt.date) -> float:
        date = dt.date.fromisoformat(date) if isinstance(date, str) else date
        return float((date - dt.date(self.year, 1, 1)).days)

    def date(self, day: float) -> dt.date:
        return dt.date(self.year, 1, 1) + dt.timedelta(days=int(np.floor(day)))

    def with_changes(self, **changes) -> ProcessModel:
        return replace(self, **changes)

    def bureau_label(self, name: str, lang: str) -> str:
        """A bureau's name for a reader: as written in the model (Chinese), or its English name."""
        return self.bureaus[name].name_en or name if lang == "en" else name


# ----------------------------------------------------------------------------- loading
def load_process(model: str | Path | None = None, policy: Policy | None = None) -> ProcessModel:
    """Load and validate ``process.toml`` of a model folder against its policy."""
    from sim.policy import load as load_policy

    folder = resolve_model(model)
    data, shown = read_toml(folder / "process.toml", SpecError, "no process settings in the model folder")
    return process_from_dict(data, policy or load_policy(folder), origin=shown)


class _Calendar:
    """Dates of the model's year as day numbers, with every bad date recorded as a problem."""

    def __init__(self, year: int, problems: Problems):
        self.year, self.problems = year, problems
        self.start = dt.date(year, 1, 1)
        self.horizon = float((dt.date(year + 1, 1, 1) - self.start).days)

    def day(self, text: Any, where: str, key: str) -> float:
        try:
            date = dt.date.fromisoformat(str(text))
        except ValueError:
            self.problems.add(where, f"{key} must be a date YYYY-MM-DD, got {text!r}")
            return 0.0
        if date.year != self.year:
            self.problems.add(where, f"{key} {date} is outside {self.year}")
        return float((date - self.start).days)


def _payment(top: Table, calendar: _Calendar, problems: Problems,
             unsure: _Unsure) -> tuple[tuple[float, ...], str, float]:
    pay = Table(top.data.get("payment", {}), "[payment]", problems,
                allowed={"day_of_month", "exhaustion", "pro_rata_cutoff", "source", "assumed", "why", "uncertainty"})
    check_provenance(pay)
    unsure.table(pay, ("payment",))
    day_of_month = pay.int("day_of_month") or 25
    if not 1 <= day_of_month <= 28:
        problems.add("[payment]", f"day_of_month must lie in 1-28, got {day_of_month}")
        day_of_month = 25
    days = tuple(float((dt.date(calendar.year, m, day_of_month) - calendar.start).days) for m in range(1, 13))
    exhaustion = pay.str("exhaustion")
    if exhaustion not in EXHAUSTION:
        problems.add("[payment]", f"exhaustion must be one of {', '.join(EXHAUSTION)}, got {exhaustion!r}")
    cutoff = calendar.day(pay.data.get("pro_rata_cutoff", f"{calendar.year}-12-10"), "[payment]", "pro_rata_cutoff")
    return days, exhaustion, cutoff


def _windows(top: Table, calendar: _Calendar, issued: float, problems: Problems, unsure: _Unsure) -> dict[str, Window]:
    windows: dict[str, Window] = {}
    raw_windows = top.data.get("windows", {})
    for name, raw in (raw_windows.items() if isinstance(raw_windows, dict) else []):
        where = f"window {name}"
        t = Table(raw, where, problems, allowed={"kind", "open", "close", "opens", "length_days", "source", "assumed",
                                                 "why", "uncertainty"})
        check_provenance(t)
        unsure.table(t, ("windows", name))
        kind = t.str("kind")
        intervals: list[tuple[float, float]] = []
        if kind == "continuous":
            a, b = calendar.day(t.data.get("open"), where, "open"), calendar.day(t.data.get("close"), where, "close")
            if b <= a:
                problems.add(where, "close must come after open")
            intervals.append((a, b))
        elif kind == "batches":
            length = t.number("length_days", high=calendar.horizon) or 0.0
            if length <= 0:
                problems.add(where, f"length_days must be > 0, got {length:g}")
            for i, opening in enumerate(t.list("opens")):
                a = calendar.day(opening, where, f"opens[{i}]")
                intervals.append((a, min(a + length, calendar.horizon)))
            if not intervals:
                problems.add(where, "opens must list at least one date")
        else:
            problems.add(where, f"kind must be continuous or batches, got {kind!r}")
        for a, _ in intervals:
            if a < issued:
                problems.add(where, f"opens on day {a:g}, before the policy was issued (day {issued:g})")
        windows[name] = Window(name, tuple(intervals))
    return windows


def _bureaus(top: Table, windows: Mapping[str, Window], problems: Problems, unsure: _Unsure) -> dict[str, Bureau]:
    bureaus: dict[str, Bureau] = {}
    raw_bureaus = top.data.get("bureaus", {})
    for name, raw in (raw_bureaus.items() if isinstance(raw_bureaus, dict) else []):
        where = f"bureau {name}"
        t = Table(raw, where, problems, allowed={"reviewers", "review_days", "window", "name_en", "source", "assumed",
                                                 "why", "uncertainty"})
        check_provenance(t)
        unsure.table(t, ("bureaus", name))
        reviewers = t.int("reviewers") or 0
        if not 1 <= reviewers <= 10_000:
            problems.add(where, f"reviewers must lie in 1-10,000, got {reviewers}")
        review = t.number("review_days", high=366.0) or 0.0
        if review <= 0:
            problems.add(where, f"review_days must be > 0, got {review:g}")
        window = t.str("window")
        if window and window not in windows:
            problems.add(where, f"unknown window {window!r} (known: {', '.join(windows)})")
        bureaus[name] = Bureau(name, max(reviewers, 1), review, window, t.str("name_en", required=False))
    return bureaus


def _rule_settings(top: Table, policy: Policy, windows: Mapping[str, Window], bureaus: Mapping[str, Bureau],
                   problems: Problems, unsure: _Unsure) -> dict[str, RuleProcess]:
    defaults = Table(top.data.get("defaults", {}), "[defaults]", problems,
                     allowed={"approval", "notice_days", "expert_days", "source", "assumed", "why", "uncertainty"})
    check_provenance(defaults)
    unsure.table(defaults, ("defaults",))
    base = {k: defaults.number(k, high=366.0) or 0.0 for k in ("approval", "notice_days", "expert_days")}
    raw_rules = top.data.get("rules", {}) if isinstance(top.data.get("rules", {}), dict) else {}
    for rule_id in raw_rules:
        if rule_id not in policy.rule_ids:
            problems.add(f"rules.{rule_id}", "no such rule in the policy")
    rules: dict[str, RuleProcess] = {}
    for rule in policy.rules:
        lead = policy.article(rule.article).lead
        where = f"rules.{rule.id}"
        if lead not in bureaus:
            problems.add(where, f"its lead bureau {lead} (article {rule.article}) has no [bureaus.\"{lead}\"] settings")
            continue
        raw = raw_rules.get(rule.id, {})
        t = Table(raw, where, problems, allowed={"window", "approval", "notice_days", "expert_days", "source",
                                                 "assumed", "why", "uncertainty"})
        if raw:
            check_provenance(t)
            unsure.table(t, ("rules", rule.id))
        values = {k: (t.number(k, high=366.0) if k in t.data else base[k]) or 0.0 for k in base}
        if not 0 <= values["approval"] <= 1:
            problems.add(where, f"approval must lie in [0, 1], got {values['approval']:g}")
        for k in ("notice_days", "expert_days"):
            if values[k] < 0:
                problems.add(where, f"{k} must be >= 0, got {values[k]:g}")
        window = t.str("window", required=False) or bureaus[lead].window
        if window not in windows:
            problems.add(where, f"unknown window {window!r} (known: {', '.join(windows)})")
        rules[rule.id] = RuleProcess(rule.id, lead, rule.domain, window, values["expert_days"], values["notice_days"],
                                     values["approval"])
    return rules


@dataclass
class _Unsure:
    """Collects the uncertain numbers of the process file (each table's own ranges, or the file's blanket ones)."""

    blanket: Mapping[str, Uncertainty]
    found: list[Uncertain] = field(default_factory=list)

    def table(self, t: Table, path: tuple) -> None:
        table_uncertainty(t, "process", path, UNSURE_FIELDS, self.blanket, self.found)


def process_from_dict(data: Mapping[str, Any], policy: Policy, origin: str = "<process>") -> ProcessModel:
    problems = Problems(origin, SpecError, "the process settings")
    top = Table(dict(data), "", problems, allowed={"calendar", "payment", "windows", "bureaus", "defaults", "rules",
                                                   "uncertainty"})
    unsure = _Unsure(blanket_uncertainty(top.data.get("uncertainty"), UNSURE_FIELDS, problems))
    cal = Table(top.data.get("calendar", {}), "[calendar]", problems,
                allowed={"year", "issued", "source", "assumed", "why"})
    check_provenance(cal)
    year = cal.int("year") or policy.meta.get("year") or 2024
    if policy.meta.get("year") is not None and year != policy.meta.get("year"):
        problems.add("[calendar]", f"year {year} is not the policy's year {policy.meta.get('year')}")
        year = policy.meta.get("year")
    calendar = _Calendar(year, problems)
    issued = calendar.day(cal.data.get("issued", f"{calendar.year}-01-01"), "[calendar]", "issued")
    payment_days, exhaustion, cutoff = _payment(top, calendar, problems, unsure)
    windows = _windows(top, calendar, issued, problems, unsure)
    bureaus = _bureaus(top, windows, problems, unsure)
    rules = _rule_settings(top, policy, windows, bureaus, problems, unsure)
    problems.raise_if_any()
    return ProcessModel(
        path=origin, policy=policy, year=calendar.year, issued_day=issued, horizon=calendar.horizon,
        payment_days=payment_days, exhaustion=exhaustion, cutoff_day=cutoff, windows=FrozenMap(windows),
        bureaus=FrozenMap(bureaus), rules=FrozenMap(rules),
        budgets=FrozenMap({d.key: d.claims_budget.value for d in policy.domains}), uncertain=tuple(unsure.found),
        raw=ordered_json(data),
    )


# ----------------------------------------------------------------------------- one replication
@dataclass
class Applications:
    """Every application of a replication as arrays (index i is one claim), filled in by the simulation."""

    rule: np.ndarray  # index into the model's rule order
    bureau: np.ndarray  # index into the model's bureau order
    domain: np.ndarray  # index into the policy's domain order
    amount: np.ndarray  # district-paid claim, 萬元
    submit: np.ndarray
    review: np.ndarray  # review time drawn
    delay: np.ndarray  # expert review + public notice
    approve: np.ndarray  # drawn approval decision
    review_start: np.ndarray = None
    decided: np.ndarray = None
    paid_day: np.ndarray = None
    parts: dict[str, np.ndarray] = None  # outcome -> amount per application

    def __post_init__(self):
        n = len(self.amount)
        self.review_start = np.full(n, np.nan)
        self.decided = np.full(n, np.nan)
        self.paid_day = np.full(n, np.nan)
        self.parts = {name: np.zeros(n) for name in OUTCOMES}


def _applications(claims, model: ProcessModel, rng: np.random.Generator) -> Applications:
    """The claims as applications with their submission times, review times and approvals drawn
    (vectorised, in a fixed order)."""
    rules, amount = _claim_arrays(claims, model)
    n = len(amount)
    u_batch, u_time, u_review, u_approve = rng.random(n), rng.random(n), rng.exponential(1.0, n), rng.random(n)
    submit, review = np.empty(n), np.empty(n)
    approve = np.empty(n, dtype=bool)
    settings = list(model.rules.values())
    for index in np.unique(rules):
        idx = np.flatnonzero(rules == index)
        s = settings[index]
        intervals = np.array(model.windows[s.window].intervals)
        pick = np.minimum((u_batch[idx] * len(intervals)).astype(int), len(intervals) - 1)
        start, end = intervals[pick, 0], intervals[pick, 1]
        submit[idx] = start + u_time[idx] * (end - start)
        review[idx] = u_review[idx] * model.bureaus[s.bureau].review_days
        approve[idx] = u_approve[idx] < s.approval
    bureau_of, domain_of = rule_indices(model)
    delay = np.array([s.expert_days + s.notice_days for s in settings], dtype=float)
    return Applications(rules, bureau_of[rules], domain_of[rules], amount, submit, review, delay[rules], approve)


def rule_indices(model: ProcessModel) -> tuple[np.ndarray, np.ndarray]:
    """The bureau (in the model's bureau order) and the domain (in the policy's order) of each rule, in the
    model's rule order."""
    bureaus, domains = list(model.bureaus), list(model.policy.domain_keys)
    settings = model.rules.values()
    return (np.array([bureaus.index(s.bureau) for s in settings], dtype=np.int64),
            np.array([domains.index(s.domain) for s in settings], dtype=np.int64))


def _with_carried(apps: Applications, model: ProcessModel, rules: np.ndarray, amount: np.ndarray) -> Applications:
    """The year's applications after the claims carried from the year before: submitted on day 0, already
    reviewed and approved, so each goes to the first payment run (in the order given)."""
    n = len(amount)
    if n == 0:
        return apps
    bureau_of, domain_of = rule_indices(model)
    zero = np.zeros(n)
    return Applications(np.concatenate([rules, apps.rule]), np.concatenate([bureau_of[rules], apps.bureau]),
                        np.concatenate([domain_of[rules], apps.domain]), np.concatenate([amount, apps.amount]),
                        np.concatenate([zero, apps.submit]), np.concatenate([zero, apps.review]),
                        np.concatenate([zero, apps.delay]), np.concatenate([np.ones(n, bool), apps.approve]))


def _claim_arrays(claims, model: ProcessModel) -> tuple[np.ndarray, np.ndarray]:
    """(rule index, amount) of the positive claims, from a DataFrame (``rule``, ``amount``) or a pair of
    arrays (rule index in the model's rule order, amount)."""
    rule_names = list(model.rules)
    if isinstance(claims, pd.DataFrame):
        claims = claims[claims["amount"] > 0]
        unknown = sorted(set(claims["rule"]) - set(rule_names))
        if unknown:
            raise SpecError(f"{model.path}: claims name rules the process has no settings for: {', '.join(unknown)}")
        lookup = {name: i for i, name in enumerate(rule_names)}
        return (np.array([lookup[r] for r in claims["rule"]], dtype=np.int64),
                claims["amount"].to_numpy(dtype=float))
    rules, amount = (np.asarray(a) for a in claims)
    keep = amount > 0
    return rules[keep].astype(np.int64), amount[keep].astype(float)


class CountingEnvironment(simpy.Environment):
    """A SimPy environment that counts the events it processes."""

    def __init__(self, initial_time: float = 0):
        super().__init__(initial_time)
        self.events_processed = 0

    def step(self) -> None:
        self.events_processed += 1
        super().step()


class _Year:
    """The SimPy model of one replication: reviewers as Resources, claims budgets as Containers."""

    def __init__(self, model: ProcessModel, apps: Applications, budgets: Mapping[str, float]):
        self.model, self.apps = model, apps
        self.env = CountingEnvironment()
        self.bureau_names = list(model.bureaus)
        self.domain_names = list(model.policy.domain_keys)
        self.budgets = budgets
        self.reviewers = [simpy.Resource(self.env, capacity=model.bureaus[b].reviewers) for b in self.bureau_names]
        self.tills = [simpy.Container(self.env, capacity=max(budgets[d], 1e-9), init=budgets[d])
                      for d in self.domain_names]
        self.pending: list[list[int]] = [[] for _ in self.domain_names]  # approved, awaiting payment, in order
        self.runout = np.full(len(self.domain_names), np.nan)
        self.closed = np.zeros(len(self.domain_names), dtype=bool)  # fcfs_defer: no more payments once out
        self.days = np.arange(0, int(model.horizon))
        self.waiting = np.zeros((len(self.days), len(self.bureau_names)), dtype=np.int64)
        self.busy = np.zeros_like(self.waiting)

    # processes ------------------------------------------------------------------------------
    def application(self, i: int):
        apps, env = self.apps, self.env
        with self.reviewers[apps.bureau[i]].request() as request:
            yield request
            apps.review_start[i] = env.now
            yield env.timeout(apps.review[i])
        if apps.delay[i] > 0:
            yield env.timeout(apps.delay[i])
        apps.decided[i] = env.now
        if apps.approve[i]:
            self.pending[apps.domain[i]].append(i)
        else:
            apps.parts["rejected"][i] = apps.amount[i]

    def arrivals(self):
        for i in np.argsort(self.apps.submit, kind="stable"):
            wait = self.apps.submit[i] - self.env.now
            if wait > 0:
                yield self.env.timeout(wait)
            self.env.process(self.application(int(i)))

    def pay(self, d: int, i: int, value: float):
        if value > 0:
            yield self.tills[d].get(value)
        self.apps.parts["paid"][i] = value
        self.apps.paid_day[i] = self.env.now

    def payment_run(self, d: int):
        """First come, first served: pay in approval order; when money runs out, defer (or reject)."""
        queue, self.pending[d] = self.pending[d], []
        apps, till = self.apps, self.tills[d]
        for i in queue:
            if self.model.exhaustion == "fcfs_defer":
                if self.closed[d]:
                    apps.parts["deferred"][i] = apps.amount[i]
                    continue
                if till.level >= apps.amount[i]:
                    yield from self.pay(d, i, apps.amount[i])
                else:
                    part = till.level
                    yield from self.pay(d, i, part)
                    apps.parts["deferred"][i] = apps.amount[i] - part
                    self.closed[d] = True
                    self.runout[d] = self.env.now
            elif till.level >= apps.amount[i]:  # reject
                yield from self.pay(d, i, apps.amount[i])
            else:
                apps.parts["cut"][i] = apps.amount[i]
                if np.isnan(self.runout[d]):
                    self.runout[d] = self.env.now

    def pro_rata_run(self, d: int):
        """At the cut-off, every approved claim gets one common fraction of what the budget can pay."""
        queue, self.pending[d] = self.pending[d], []
        apps = self.apps
        total = apps.amount[queue].sum() if queue else 0.0
        level = self.tills[d].level
        factor = 1.0 if total <= level else level / total
        if factor < 1.0:
            self.runout[d] = self.env.now
        for i in queue:
            part = min(apps.amount[i] * factor, self.tills[d].level)
            yield from self.pay(d, i, part)
            apps.parts["cut"][i] = apps.amount[i] - part

    def payments(self):
        env = self.env
        if self.model.exhaustion == "pro_rata":
            if self.model.cutoff_day > env.now:
                yield env.timeout(self.model.cutoff_day - env.now)
            for d in range(len(self.domain_names)):
                yield from self.pro_rata_run(d)
            return
        for day in self.model.payment_days:
            if day > env.now:
                yield env.timeout(day - env.now)
            for d in range(len(self.domain_names)):
                yield from self.payment_run(d)

    def monitor(self):
        env = self.env
        for k, day in enumerate(self.days):
            if day > env.now:
                yield env.timeout(day - env.now)
            for b, resource in enumerate(self.reviewers):
                self.waiting[k, b] = len(resource.queue)
                self.busy[k, b] = resource.count

    # the year ------------------------------------------------------------------------------
    def run(self) -> None:
        self.env.process(self.arrivals())
        self.env.process(self.payments())
        self.env.process(self.monitor())
        self.env.run(until=self.model.horizon)
        self.year_end()

    def year_end(self) -> None:
        year_end(self.apps)


def year_end(apps: Applications) -> None:
    """Whatever is still in review or approved but unpaid at year end is unpaid because of the calendar."""
    parts = apps.parts
    settled = sum(parts[name] for name in ("paid", "deferred", "cut", "rejected"))
    open_ = np.isnan(apps.paid_day) & (settled == 0)
    parts["unpaid"][open_] = apps.amount[open_]


@dataclass
class ProcessResult:
    """One replication of the process: every application's trace and the tables derived from it."""

    model: ProcessModel
    apps: Applications
    waiting: np.ndarray  # (days, bureaus) applications waiting for a reviewer, sampled each day
    busy: np.ndarray
    runout_day: np.ndarray  # (domains,) day the budget first could not pay, NaN if never
    left: np.ndarray  # (domains,) budget left at year end
    budgets: Mapping[str, float]
    events: int
    engine: str = "simpy"  # what computed it: the SimPy model, or the queue recursion (sim.queues)

    @property
    def applications(self) -> pd.DataFrame:
        a, m = self.apps, self.model
        rules, bureaus, domains = list(m.rules), list(m.bureaus), list(m.policy.domain_keys)
        return pd.DataFrame({
            "rule": np.array(rules, dtype=object)[a.rule], "bureau": np.array(bureaus, dtype=object)[a.bureau],
            "domain": np.array(domains, dtype=object)[a.domain], "amount": a.amount, "submit_day": a.submit,
            "review_start": a.review_start, "review_days": a.review, "review_end": a.review_start + a.review,
            "decided_day": a.decided, "approved": a.approve & ~np.isnan(a.decided), "paid_day": a.paid_day,
            **a.parts,
        })

    def month_paid(self) -> np.ndarray:
        """Month (1-12) each application was paid in; 0 where it was not paid."""
        month = np.zeros(len(self.apps.amount), dtype=int)
        done = ~np.isnan(self.apps.paid_day)
        month[done] = _month_index(self.model, self.apps.paid_day[done]) + 1
        return month

    @property
    def cash(self) -> pd.DataFrame:
        """Paid per domain and month, and cumulative (萬元)."""
        domains = list(self.model.policy.domain_keys)
        paid = _by(self.apps.domain * 12 + self.month_paid() - 1, self.apps.parts["paid"], len(domains) * 12,
                   self.month_paid() > 0).reshape(len(domains), 12)
        return pd.DataFrame({"domain": np.repeat(domains, 12), "month": np.tile(np.arange(1, 13), len(domains)),
                             "paid": paid.ravel(), "cumulative": np.cumsum(paid, axis=1).ravel()})

    @property
    def queues(self) -> pd.DataFrame:
        names = list(self.model.bureaus)
        days = np.arange(len(self.waiting))
        return pd.DataFrame({"day": np.repeat(days, len(names)), "bureau": names * len(days),
                             "waiting": self.waiting.ravel(), "busy": self.busy.ravel()})

    @property
    def runout(self) -> pd.DataFrame:
        domains = list(self.model.policy.domain_keys)
        parts = {name: _by(self.apps.domain, self.apps.parts[name], len(domains)) for name in ("deferred", "unpaid",
                                                                                                "cut")}
        return pd.DataFrame({
            "domain": domains, "claims_budget": [self.budgets[d] for d in domains], "runout_day": self.runout_day,
            "runout_date": [self.model.date(x).isoformat() if not np.isnan(x) else None for x in self.runout_day],
            **parts, "left": self.left,
        })

    def outcomes(self, by: str = "domain") -> pd.DataFrame:
        """Claimed, paid, deferred, unpaid, cut and rejected 萬元, applications, approvals and rejections."""
        apps = self.applications
        grouped = apps.groupby(by, observed=True, sort=False)
        return grouped.agg(claimed=("amount", "sum"), **{name: (name, "sum") for name in OUTCOMES},
                           applications=("amount", "size"), approved=("approved", "sum")).reset_index().assign(
            rejections=lambda f: f["applications"] - f["approved"])

    def waits(self, by: str = "bureau") -> pd.DataFrame:
        """Days from application to payment (P50/P95) and in the review queue, for paid applications."""
        apps = self.applications
        paid = apps[apps["paid_day"].notna()]
        return waits_table(paid.assign(days_to_payment=paid["paid_day"] - paid["submit_day"],
                                       queue_days=paid["review_start"] - paid["submit_day"]), by)

    def summary(self) -> ProcessSummary:
        return ProcessSummary.of(self)


def waits_table(paid: pd.DataFrame, by: str) -> pd.DataFrame:
    """Days from application to payment (P50/P95) and days in the review queue (mean, P95), from a table
    of paid applications with ``days_to_payment`` and ``queue_days``."""
    codes, names = pd.factorize(paid[by], sort=False)
    return _waits_by(codes, np.asarray(names, dtype=object), paid["days_to_payment"].to_numpy(dtype=float),
                     paid["queue_days"].to_numpy(dtype=float), by)


def _waits_by(codes: np.ndarray, names: np.ndarray, to_pay: np.ndarray, queue: np.ndarray, by: str) -> pd.DataFrame:
    """:func:`waits_table` on arrays: ``codes`` index ``names`` (in order of first appearance), one per paid
    application; each group's figures taken over its applications in their order."""
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(names) + 1))
    rows = []
    for k, key in enumerate(names):
        part = order[bounds[k]:bounds[k + 1]]
        days, waited = pd.Series(to_pay[part]), pd.Series(queue[part])
        rows.append({by: key, "paid_applications": len(part), "days_to_payment_p50": days.quantile(0.5),
                     "days_to_payment_p95": days.quantile(0.95), "queue_days_mean": waited.mean(),
                     "queue_days_p95": waited.quantile(0.95)})
    return pd.DataFrame(rows)


def _month_index(model: ProcessModel, days: np.ndarray) -> np.ndarray:
    """Month (0-11) of the model's year in which each day number falls."""
    whole = np.floor(np.clip(days, 0, model.horizon - 1)).astype("timedelta64[D]")
    return (np.datetime64(f"{model.year}-01-01") + whole).astype("datetime64[M]").astype(int) % 12


def _by(index: np.ndarray, values: np.ndarray, size: int, where: np.ndarray | None = None) -> np.ndarray:
    """Sums of ``values`` by integer ``index`` (float64, in application order)."""
    if where is not None:
        index, values = index[where], values[where]
    return np.bincount(index, weights=values, minlength=size).astype(np.float64)


def simulate(claims, model: ProcessModel, seed: int, replication: int = 0,
             budgets: Mapping[str, float] | None = None, carried=None, engine: str = "auto") -> ProcessResult:
    """Run one replication's claims through the year.

    ``claims``: a DataFrame with ``rule`` (id) and ``amount`` (district-paid 萬元), or a pair of arrays
    (rule index in the model's rule order, amount).  ``carried``: claims approved in an earlier year and not
    yet paid (the same two forms), due at the year's first payment run ahead of the year's own claims
    (a multi-year run's carry-over; they draw no random numbers, so the year's own draws do not change).
    ``engine``: ``"auto"`` computes the year by queue recursion (:mod:`sim.queues`, the same bits as the
    SimPy model, about twenty times faster) and steps the SimPy model itself where that cannot be sure of
    SimPy's order of same-time events (and for carried claims); ``"simpy"`` always steps the SimPy model.

    >>> model = load_process("template")
    >>> claims = pd.DataFrame({"rule": ["t04-new-high-tech"] * 3, "amount": [20.0, 20.0, 20.0]})
    >>> result = simulate(claims, model, seed=1)
    >>> float(result.outcomes()[list(OUTCOMES)].to_numpy().sum())
    60.0
    """
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(replication, PROCESS_STREAM))))
    apps = _applications(claims, model, rng)
    if carried is not None:
        apps = _with_carried(apps, model, *_claim_arrays(carried, model))
    budgets = dict(model.budgets) if budgets is None else dict(budgets)
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == "auto" and carried is None:
        computed = queues.year(model, apps, budgets)
        if computed is not None:
            year_end(apps)
            return ProcessResult(model, apps, computed.waiting, computed.busy, computed.runout, computed.left,
                                 budgets, computed.events, "recursion")
    year = _Year(model, apps, budgets)
    year.run()
    return ProcessResult(model, apps, year.waiting, year.busy, year.runout, np.array([t.level for t in year.tills]),
                         budgets, year.env.events_processed)


# ----------------------------------------------------------------------------- several replications
@dataclass
class ProcessSummary:
    """What one replication contributes to the run's tables: small arrays, cheap to ship between workers."""

    cash: np.ndarray  # (domains, 12) paid per month
    domain_parts: np.ndarray  # (domains, len(OUTCOMES) + 3): claimed, outcomes..., applications, approved
    rule_parts: np.ndarray  # (rules, len(OUTCOMES) + 3)
    runout_day: np.ndarray  # (domains,)
    left: np.ndarray  # (domains,)
    budgets: np.ndarray  # (domains,)
    waiting: np.ndarray  # (days, bureaus)
    paid_apps: np.ndarray  # (paid applications, 4): bureau, rule, days to payment, days in the review queue
    monthly: np.ndarray  # (rules, 12, 5): applications, claimed, approved, approved amount, paid, by month
    events: int
    engine: str = "simpy"  # what computed the year (ProcessResult.engine)

    @classmethod
    def of(cls, result: ProcessResult) -> ProcessSummary:
        a, m = result.apps, result.model
        n_rules, n_domains = len(m.rules), len(m.policy.domain_keys)
        approved = a.approve & ~np.isnan(a.decided)

        def parts(index, size):
            columns = [a.amount] + [a.parts[name] for name in OUTCOMES] + [np.ones(len(a.amount)), approved]
            return np.stack([_by(index, c.astype(float), size) for c in columns], axis=1)

        paid = ~np.isnan(a.paid_day)
        month_submit = _month_index(m, a.submit)
        month_decided = _month_index(m, np.where(approved, a.decided, 0.0))
        month_paid = result.month_paid() - 1
        cell = a.rule * 12
        monthly = np.stack([
            _by(cell + month_submit, np.ones(len(a.amount)), n_rules * 12),
            _by(cell + month_submit, a.amount, n_rules * 12),
            _by(cell + month_decided, approved.astype(float), n_rules * 12, approved),
            _by(cell + month_decided, a.amount, n_rules * 12, approved),
            _by(cell + month_paid, a.parts["paid"], n_rules * 12, paid),
        ], axis=1).reshape(n_rules, 12, 5)
        return cls(
            cash=_by(a.domain * 12 + month_paid, a.parts["paid"], n_domains * 12, paid).reshape(n_domains, 12),
            domain_parts=parts(a.domain, n_domains), rule_parts=parts(a.rule, n_rules),
            runout_day=result.runout_day, left=result.left,
            budgets=np.array([result.budgets[d] for d in m.policy.domain_keys]), waiting=result.waiting,
            paid_apps=np.column_stack([a.bureau[paid], a.rule[paid], a.paid_day[paid] - a.submit[paid],
                                       a.review_start[paid] - a.submit[paid]]),
            monthly=monthly, events=result.events, engine=result.engine)


def _replication_frame(keys: Sequence[str], name: str, per_rep: Sequence[np.ndarray], columns: Sequence[str],
                       first: int = 0) -> pd.DataFrame:
    """Stack (keys x columns) arrays of each replication into a long table with replication and key columns."""
    reps = len(per_rep)
    data = np.concatenate(per_rep) if reps else np.zeros((0, len(columns)))
    frame = pd.DataFrame(data, columns=list(columns))
    frame.insert(0, name, np.tile(np.asarray(keys, dtype=object), reps))
    frame.insert(0, "replication", np.repeat(np.arange(first, first + reps), len(keys)))
    return frame


def summarise(summaries: Sequence[ProcessSummary], model: ProcessModel) -> dict[str, pd.DataFrame]:
    """Tables over replications: cash per domain and month (with quantiles), outcomes, waits, queues,
    run-out dates, monthly applications and payments per rule."""
    domains, rules, bureaus = list(model.policy.domain_keys), list(model.rules), list(model.bureaus)
    columns = ["claimed", *OUTCOMES, "applications", "approved"]
    outcomes = _replication_frame(domains, "domain", [s.domain_parts for s in summaries], columns)
    rule_outcomes = _replication_frame(rules, "rule", [s.rule_parts for s in summaries], columns)
    for frame in (outcomes, rule_outcomes):
        frame[["applications", "approved"]] = frame[["applications", "approved"]].astype(np.int64)
        frame["rejections"] = frame["applications"] - frame["approved"]
    reps = len(summaries)
    cash = pd.DataFrame({
        "replication": np.repeat(np.arange(reps), len(domains) * 12),
        "domain": np.tile(np.repeat(np.asarray(domains, dtype=object), 12), reps),
        "month": np.tile(np.arange(1, 13), reps * len(domains)),
        "paid": np.concatenate([s.cash.ravel() for s in summaries]),
        "cumulative": np.concatenate([np.cumsum(s.cash, axis=1).ravel() for s in summaries]),
    })
    fan = (cash.groupby(["domain", "month"], sort=False)["cumulative"]
           .quantile([0.05, 0.5, 0.95]).unstack().reset_index()
           .rename(columns={0.05: "cumulative_p5", 0.5: "cumulative_p50", 0.95: "cumulative_p95"}))
    fan = fan.merge(cash.groupby(["domain", "month"], sort=False)["paid"].mean().rename("paid_mean").reset_index())
    runout = _runout_frame(summaries, model, domains, outcomes)
    return {
        "process_cash": cash, "process_cash_fan": fan, "process_outcomes": outcomes,
        "process_rule_outcomes": rule_outcomes, **_waits(summaries, bureaus, rules),
        "process_runout": runout, "process_runout_summary": runout_summary(runout, model),
        "process_queues": _queues(summaries, bureaus), "process_monthly": _monthly(summaries, rules),
        "process_events": pd.DataFrame({"replication": range(len(summaries)),
                                        "events": [s.events for s in summaries],
                                        "applications": [int(s.domain_parts[:, -2].sum()) for s in summaries]}),
    }


def _runout_frame(summaries, model, domains, outcomes) -> pd.DataFrame:
    runout = pd.DataFrame({
        "replication": np.repeat(np.arange(len(summaries)), len(domains)), "domain": domains * len(summaries),
        "claims_budget": np.concatenate([s.budgets for s in summaries]),
        "runout_day": np.concatenate([s.runout_day for s in summaries]),
    })
    runout["runout_date"] = [model.date(x).isoformat() if not np.isnan(x) else None for x in runout["runout_day"]]
    for name in ("deferred", "unpaid", "cut"):
        runout[name] = outcomes[name].to_numpy()
    runout["left"] = np.concatenate([s.left for s in summaries])
    return runout


def runout_summary(runout: pd.DataFrame, model: ProcessModel) -> pd.DataFrame:
    out = runout.groupby("domain", sort=False).agg(
        claims_budget=("claims_budget", "first"), p_runout=("runout_day", lambda x: x.notna().mean()),
        runout_day_p50=("runout_day", "median"), deferred_mean=("deferred", "mean"), unpaid_mean=("unpaid", "mean"),
        cut_mean=("cut", "mean"),
    ).reset_index()
    out["runout_date_p50"] = [model.date(x).isoformat() if pd.notna(x) else None for x in out["runout_day_p50"]]
    return out


def _waits(summaries, bureaus, rules) -> dict[str, pd.DataFrame]:
    pooled = np.concatenate([s.paid_apps for s in summaries]) if summaries else np.zeros((0, 4))
    out = {}
    for column, by, names in ((0, "bureau", bureaus), (1, "rule", rules)):
        codes, found = pd.factorize(pooled[:, column], sort=False)
        out[f"process_waits_{by}"] = _waits_by(codes, np.asarray(names, dtype=object)[found.astype(int)],
                                               pooled[:, 2], pooled[:, 3], by)
    return out


def _queues(summaries, bureaus) -> pd.DataFrame:
    waiting = np.stack([s.waiting for s in summaries])  # (replications, days, bureaus)
    days = np.arange(waiting.shape[1])
    return pd.DataFrame({"day": np.repeat(days, len(bureaus)), "bureau": bureaus * len(days),
                         "waiting_mean": waiting.mean(axis=0).ravel(),
                         "waiting_p95": np.quantile(waiting, 0.95, axis=0).ravel()})


def _monthly(summaries, rules) -> pd.DataFrame:
    monthly = np.stack([s.monthly for s in summaries])  # (replications, rules, 12, 5)
    reps = len(summaries)
    frame = pd.DataFrame(monthly.reshape(-1, 5), columns=["applications", "claimed", "approvals", "approved",
                                                          "paid"])
    frame.insert(0, "month", np.tile(np.arange(1, 13), reps * len(rules)))
    frame.insert(0, "rule", np.tile(np.repeat(np.asarray(rules, dtype=object), 12), reps))
    frame.insert(0, "replication", np.repeat(np.arange(reps), len(rules) * 12))
    frame[["applications", "approvals"]] = frame[["applications", "approvals"]].astype(np.int64)
    return frame


def process_data(model: ProcessModel) -> dict:
    """A fresh, mutable copy of the process settings data (for scenarios)."""
    return json.loads(model.raw)
