"""The year as it happens: a SimPy model of application, review and payment.

Each claim of a replication becomes an application that is submitted inside its rule's window, waits
for a reviewer of its article's lead bureau (a ``simpy.Resource``), may pass an expert-review stage
and a public notice (公示) of fixed length, is approved with the rule's probability, and is paid from
its domain's claims budget (a ``simpy.Container``) in the finance bureau's monthly payment runs.
When a container cannot pay in full, the exhaustion rule decides: ``fcfs_defer`` pays in approval
order and defers the rest to next year, ``pro_rata`` holds payments to a cut-off date and scales
them to the budget (the unpaid share is cut), ``reject`` turns away each claim that does not fit.

All randomness (submission times, review times, approvals) is drawn up front with NumPy from
``SeedSequence(seed, spawn_key=(replication, PROCESS_STREAM))``, a generator passed explicitly; the
SimPy processes only consume those arrays, and the event log is kept in arrays and turned into pandas
tables at the end.  Conservation holds per domain and replication: paid + deferred + cut + rejected
= claimed.
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

from sim.errors import SpecError
from sim.policy import Policy, resolve_model
from sim.validation import FrozenMap, Problems, Table, check_provenance, ordered_json, read_toml

EXHAUSTION = ("fcfs_defer", "pro_rata", "reject")
PROCESS_STREAM = 0x5EED_0005


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
    raw: str = field(default="{}", repr=False)

    def day(self, date: str | dt.date) -> float:
        date = dt.date.fromisoformat(date) if isinstance(date, str) else date
        return float((date - dt.date(self.year, 1, 1)).days)

    def date(self, day: float) -> dt.date:
        return dt.date(self.year, 1, 1) + dt.timedelta(days=int(np.floor(day)))

    def with_changes(self, **changes) -> ProcessModel:
        return replace(self, **changes)


# ----------------------------------------------------------------------------- loading
def load_process(model: str | Path | None = None, policy: Policy | None = None) -> ProcessModel:
    """Load and validate ``process.toml`` of a model folder against its policy."""
    from sim.policy import load as load_policy

    folder = resolve_model(model)
    data, shown = read_toml(folder / "process.toml", SpecError, "no process settings in the model folder")
    return process_from_dict(data, policy or load_policy(folder), origin=shown)


def process_from_dict(data: Mapping[str, Any], policy: Policy, origin: str = "<process>") -> ProcessModel:
    problems = Problems(origin, SpecError, "the process settings")
    top = Table(dict(data), "", problems, allowed={"calendar", "payment", "windows", "bureaus", "defaults", "rules"})
    cal = Table(top.data.get("calendar", {}), "[calendar]", problems,
                allowed={"year", "issued", "source", "assumed", "why"})
    check_provenance(cal)
    year = cal.int("year") or 2024
    start = dt.date(year, 1, 1)
    horizon = float((dt.date(year + 1, 1, 1) - start).days)

    def day_of(text: Any, where: str, key: str) -> float:
        try:
            date = dt.date.fromisoformat(str(text))
        except ValueError:
            problems.add(where, f"{key} must be a date YYYY-MM-DD, got {text!r}")
            return 0.0
        if date.year != year:
            problems.add(where, f"{key} {date} is outside {year}")
        return float((date - start).days)

    issued = day_of(cal.data.get("issued", f"{year}-01-01"), "[calendar]", "issued")

    pay = Table(top.data.get("payment", {}), "[payment]", problems,
                allowed={"day_of_month", "exhaustion", "pro_rata_cutoff", "source", "assumed", "why"})
    check_provenance(pay)
    day_of_month = pay.int("day_of_month") or 25
    if not 1 <= day_of_month <= 28:
        problems.add("[payment]", f"day_of_month must lie in 1-28, got {day_of_month}")
        day_of_month = 25
    payment_days = tuple(float((dt.date(year, m, day_of_month) - start).days) for m in range(1, 13))
    exhaustion = pay.str("exhaustion")
    if exhaustion not in EXHAUSTION:
        problems.add("[payment]", f"exhaustion must be one of {', '.join(EXHAUSTION)}, got {exhaustion!r}")
    cutoff = day_of(pay.data.get("pro_rata_cutoff", f"{year}-12-10"), "[payment]", "pro_rata_cutoff")

    windows: dict[str, Window] = {}
    raw_windows = top.data.get("windows", {})
    for name, raw in (raw_windows.items() if isinstance(raw_windows, dict) else []):
        where = f"window {name}"
        t = Table(raw, where, problems, allowed={"kind", "open", "close", "opens", "length_days", "source", "assumed",
                                                 "why"})
        check_provenance(t)
        kind = t.str("kind")
        intervals: list[tuple[float, float]] = []
        if kind == "continuous":
            a, b = day_of(t.data.get("open"), where, "open"), day_of(t.data.get("close"), where, "close")
            if b <= a:
                problems.add(where, "close must come after open")
            intervals.append((a, b))
        elif kind == "batches":
            length = t.number("length_days") or 0.0
            if length <= 0:
                problems.add(where, f"length_days must be > 0, got {length:g}")
            for i, opening in enumerate(t.list("opens")):
                a = day_of(opening, where, f"opens[{i}]")
                intervals.append((a, min(a + length, horizon)))
            if not intervals:
                problems.add(where, "opens must list at least one date")
        else:
            problems.add(where, f"kind must be continuous or batches, got {kind!r}")
        for a, _ in intervals:
            if a < issued:
                problems.add(where, f"opens on day {a:g}, before the policy was issued (day {issued:g})")
        windows[name] = Window(name, tuple(intervals))

    bureaus: dict[str, Bureau] = {}
    raw_bureaus = top.data.get("bureaus", {})
    for name, raw in (raw_bureaus.items() if isinstance(raw_bureaus, dict) else []):
        where = f"bureau {name}"
        t = Table(raw, where, problems, allowed={"reviewers", "review_days", "window", "source", "assumed", "why"})
        check_provenance(t)
        reviewers = t.int("reviewers") or 0
        if reviewers < 1:
            problems.add(where, f"reviewers must be >= 1, got {reviewers}")
        review = t.number("review_days") or 0.0
        if review <= 0:
            problems.add(where, f"review_days must be > 0, got {review:g}")
        window = t.str("window")
        if window and window not in windows:
            problems.add(where, f"unknown window {window!r} (known: {', '.join(windows)})")
        bureaus[name] = Bureau(name, max(reviewers, 1), review, window)

    defaults = Table(top.data.get("defaults", {}), "[defaults]", problems,
                     allowed={"approval", "notice_days", "expert_days", "source", "assumed", "why"})
    check_provenance(defaults)
    base = {k: defaults.number(k) or 0.0 for k in ("approval", "notice_days", "expert_days")}
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
                                                 "assumed", "why"})
        if raw:
            check_provenance(t)
        values = {k: (t.number(k, required=False) if k in t.data else base[k]) or 0.0 for k in base}
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
    problems.raise_if_any()
    return ProcessModel(
        path=origin, policy=policy, year=year, issued_day=issued, horizon=horizon, payment_days=payment_days,
        exhaustion=exhaustion, cutoff_day=cutoff, windows=FrozenMap(windows), bureaus=FrozenMap(bureaus),
        rules=FrozenMap(rules), budgets=FrozenMap({d.key: d.claims_budget.value for d in policy.domains}),
        raw=ordered_json(data),
    )


# ----------------------------------------------------------------------------- simulation
class CountingEnvironment(simpy.Environment):
    """A SimPy environment that counts the events it processes."""

    def __init__(self, initial_time: float = 0):
        super().__init__(initial_time)
        self.events_processed = 0

    def step(self) -> None:
        self.events_processed += 1
        super().step()


@dataclass
class ProcessResult:
    """One replication of the process: every application's trace and the tables derived from it."""

    model: ProcessModel
    applications: pd.DataFrame
    cash: pd.DataFrame  # domain x month: paid, cumulative
    queues: pd.DataFrame  # day x bureau: waiting, busy
    runout: pd.DataFrame  # domain: budget, run-out day and date, deferred, cut
    events: int
    wall_seconds: float

    def outcomes(self, by: str = "domain") -> pd.DataFrame:
        """Claimed, paid, deferred, cut and rejected 萬元, applications, approvals and rejections."""
        apps = self.applications
        grouped = apps.groupby(by, observed=True, sort=False)
        return grouped.agg(claimed=("amount", "sum"), paid=("paid", "sum"), deferred=("deferred", "sum"),
                           cut=("cut", "sum"), rejected=("rejected", "sum"), applications=("amount", "size"),
                           approved=("approved", "sum")).reset_index().assign(
            rejections=lambda f: f["applications"] - f["approved"])

    def waits(self, by: str = "bureau") -> pd.DataFrame:
        """Days from application to payment (P50/P95) and in the review queue, for paid applications."""
        apps = self.applications
        paid = apps[apps["paid_day"].notna()]
        rows = []
        for key, group in paid.groupby(by, observed=True, sort=False):
            to_pay = group["paid_day"] - group["submit_day"]
            queue = group["review_start"] - group["submit_day"]
            rows.append({by: key, "paid_applications": len(group), "days_to_payment_p50": to_pay.quantile(0.5),
                         "days_to_payment_p95": to_pay.quantile(0.95), "queue_days_mean": queue.mean(),
                         "queue_days_p95": queue.quantile(0.95)})
        return pd.DataFrame(rows)


def _draws(model: ProcessModel, rules: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Submission times, review times and approvals for every application (vectorised, fixed order)."""
    n = len(rules)
    submit = np.empty(n)
    review = np.empty(n)
    approved = np.empty(n, dtype=bool)
    u_batch, u_time, u_review, u_approve = rng.random(n), rng.random(n), rng.exponential(1.0, n), rng.random(n)
    for rule_id in np.unique(rules):
        idx = np.flatnonzero(rules == rule_id)
        settings = model.rules[rule_id]
        intervals = np.array(model.windows[settings.window].intervals)
        pick = np.minimum((u_batch[idx] * len(intervals)).astype(int), len(intervals) - 1)
        start, end = intervals[pick, 0], intervals[pick, 1]
        submit[idx] = start + u_time[idx] * (end - start)
        review[idx] = u_review[idx] * model.bureaus[settings.bureau].review_days
        approved[idx] = u_approve[idx] < settings.approval
    return {"submit": submit, "review": review, "approved": approved}


def simulate(claims: pd.DataFrame, model: ProcessModel, seed: int, replication: int = 0,
             budgets: Mapping[str, float] | None = None) -> ProcessResult:
    """Run one replication's claims (``rule``, ``amount`` = district-paid 萬元) through the year.

    >>> import sim.policy
    >>> model = load_process()
    >>> claims = pd.DataFrame({"rule": ["a17-provincial-tech-sme"] * 3, "amount": [1.0, 1.0, 1.0]})
    >>> result = simulate(claims, model, seed=1)
    >>> float(result.outcomes()[["paid", "deferred", "cut", "rejected"]].to_numpy().sum())
    3.0
    """
    import time

    started = time.perf_counter()
    claims = claims[claims["amount"] > 0].reset_index(drop=True)
    unknown = sorted(set(claims["rule"]) - set(model.rules))
    if unknown:
        raise SpecError(f"{model.path}: claims name rules the process has no settings for: {', '.join(unknown)}")
    rules = claims["rule"].to_numpy(dtype=object)
    amount = claims["amount"].to_numpy(dtype=float)
    n = len(amount)
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(replication, PROCESS_STREAM))))
    drawn = _draws(model, rules, rng)
    bureau_names = list(model.bureaus)
    domain_names = list(model.policy.domain_keys)
    rule_names, rule_index = np.unique(rules.astype(str), return_inverse=True)
    per_rule = [model.rules[r] for r in rule_names]
    bureau_of = np.array([bureau_names.index(s.bureau) for s in per_rule], dtype=int)[rule_index]
    domain_of = np.array([domain_names.index(s.domain) for s in per_rule], dtype=int)[rule_index]
    delay = np.array([s.expert_days + s.notice_days for s in per_rule], dtype=float)[rule_index]
    budgets = dict(model.budgets) if budgets is None else dict(budgets)

    env = CountingEnvironment()
    reviewers = [simpy.Resource(env, capacity=model.bureaus[b].reviewers) for b in bureau_names]
    tills = [simpy.Container(env, capacity=max(budgets[d], 1e-9), init=budgets[d]) for d in domain_names]
    review_start = np.full(n, np.nan)
    decided = np.full(n, np.nan)
    paid_day = np.full(n, np.nan)
    paid = np.zeros(n)
    deferred = np.zeros(n)
    cut = np.zeros(n)
    rejected = np.zeros(n)
    pending: list[list[int]] = [[] for _ in domain_names]  # approved, awaiting payment, in approval order
    runout = np.full(len(domain_names), np.nan)
    closed = np.zeros(len(domain_names), dtype=bool)  # fcfs_defer: the queue is blocked once money runs out
    submit, review, approved = drawn["submit"], drawn["review"], drawn["approved"]

    def application(i: int):
        resource = reviewers[bureau_of[i]]
        with resource.request() as request:
            yield request
            review_start[i] = env.now
            yield env.timeout(review[i])
        if delay[i] > 0:
            yield env.timeout(delay[i])
        decided[i] = env.now
        if approved[i]:
            pending[domain_of[i]].append(i)
        else:
            rejected[i] = amount[i]

    def arrivals():
        for i in np.argsort(submit, kind="stable"):
            wait = submit[i] - env.now
            if wait > 0:
                yield env.timeout(wait)
            env.process(application(int(i)))

    def pay(d: int, i: int, value: float):
        if value > 0:
            yield tills[d].get(value)
        paid[i] = value
        paid_day[i] = env.now

    def payment_run(d: int):
        queue, pending[d] = pending[d], []
        for i in queue:
            till = tills[d]
            if model.exhaustion == "fcfs_defer":
                if closed[d]:
                    deferred[i] = amount[i]
                    continue
                if till.level >= amount[i]:
                    yield from pay(d, i, amount[i])
                else:
                    part = till.level
                    yield from pay(d, i, part)
                    deferred[i] = amount[i] - part
                    closed[d] = True
                    runout[d] = env.now
            else:  # reject
                if till.level >= amount[i]:
                    yield from pay(d, i, amount[i])
                else:
                    cut[i] = amount[i]
                    if np.isnan(runout[d]):
                        runout[d] = env.now

    def pro_rata_run(d: int):
        queue, pending[d] = pending[d], []
        total = amount[queue].sum() if queue else 0.0
        level = tills[d].level
        factor = 1.0 if total <= level else level / total
        if factor < 1.0:
            runout[d] = env.now
        for i in queue:
            part = min(amount[i] * factor, tills[d].level)
            yield from pay(d, i, part)
            cut[i] = amount[i] - part

    def payments():
        for day in model.payment_days:
            if model.exhaustion == "pro_rata":
                continue
            if day > env.now:
                yield env.timeout(day - env.now)
            for d in range(len(domain_names)):
                yield from payment_run(d)

    def pro_rata_payment():
        if model.cutoff_day > env.now:
            yield env.timeout(model.cutoff_day - env.now)
        for d in range(len(domain_names)):
            yield from pro_rata_run(d)

    days = np.arange(0, int(model.horizon))
    waiting = np.zeros((len(days), len(bureau_names)), dtype=np.int64)
    busy = np.zeros_like(waiting)

    def monitor():
        for k, day in enumerate(days):
            if day > env.now:
                yield env.timeout(day - env.now)
            for b, resource in enumerate(reviewers):
                waiting[k, b] = len(resource.queue)
                busy[k, b] = resource.count

    env.process(arrivals())
    env.process(pro_rata_payment() if model.exhaustion == "pro_rata" else payments())
    env.process(monitor())
    env.run(until=model.horizon)

    # Year end: whatever is approved but unpaid, or still in review, goes to next year.
    unresolved = np.isnan(paid_day) & (rejected == 0) & (deferred == 0) & (cut == 0)
    deferred[unresolved] = amount[unresolved]

    applications = pd.DataFrame({
        "rule": rules, "bureau": [bureau_names[b] for b in bureau_of], "domain": [domain_names[d] for d in domain_of],
        "amount": amount, "submit_day": submit, "review_start": review_start, "review_days": review,
        "review_end": review_start + review,
        "decided_day": decided, "approved": approved & ~np.isnan(decided), "paid_day": paid_day, "paid": paid,
        "deferred": deferred, "cut": cut, "rejected": rejected,
    })
    month = np.zeros(n, dtype=int)
    done = ~np.isnan(paid_day)
    dates = np.datetime64(f"{model.year}-01-01") + np.floor(np.minimum(paid_day[done], model.horizon - 1)).astype(
        "timedelta64[D]")
    month[done] = dates.astype("datetime64[M]").astype(int) % 12 + 1
    cash = (pd.DataFrame({"domain": applications["domain"], "month": month, "paid": paid})
            .query("month > 0").groupby(["domain", "month"]).paid.sum()
            .reindex(pd.MultiIndex.from_product([domain_names, range(1, 13)], names=["domain", "month"]),
                     fill_value=0.0)
            .reset_index())
    cash["cumulative"] = cash.groupby("domain")["paid"].cumsum()
    queues = pd.DataFrame({
        "day": np.repeat(days, len(bureau_names)), "bureau": bureau_names * len(days),
        "waiting": waiting.ravel(), "busy": busy.ravel(),
    })
    by_domain = applications.groupby("domain")[["deferred", "cut"]].sum().reindex(domain_names, fill_value=0.0)
    run_out = pd.DataFrame({
        "domain": domain_names, "claims_budget": [budgets[d] for d in domain_names], "runout_day": runout,
        "runout_date": [model.date(x).isoformat() if not np.isnan(x) else None for x in runout],
        "deferred": by_domain["deferred"].to_numpy(), "cut": by_domain["cut"].to_numpy(),
        "left": [t.level for t in tills],
    })
    return ProcessResult(model, applications, cash, queues, run_out, env.events_processed,
                         time.perf_counter() - started)


# ----------------------------------------------------------------------------- several replications
def summarise(results: Sequence[ProcessResult]) -> dict[str, pd.DataFrame]:
    """Tables over replications: cash per domain and month (with quantiles), outcomes, waits, queues,
    run-out dates."""
    cash = pd.concat([r.cash.assign(replication=k) for k, r in enumerate(results)], ignore_index=True)
    fan = (cash.groupby(["domain", "month"], sort=False)["cumulative"]
           .quantile([0.05, 0.5, 0.95]).unstack().reset_index()
           .rename(columns={0.05: "cumulative_p5", 0.5: "cumulative_p50", 0.95: "cumulative_p95"}))
    fan = fan.merge(cash.groupby(["domain", "month"], sort=False)["paid"].mean().rename("paid_mean").reset_index())
    outcomes = pd.concat([r.outcomes("domain").assign(replication=k) for k, r in enumerate(results)],
                         ignore_index=True)
    rule_outcomes = pd.concat([r.outcomes("rule").assign(replication=k) for k, r in enumerate(results)],
                              ignore_index=True)
    apps = pd.concat([r.applications for r in results], ignore_index=True)
    pooled = ProcessResult(results[0].model, apps, results[0].cash, results[0].queues, results[0].runout, 0, 0.0)
    runout = pd.concat([r.runout.assign(replication=k) for k, r in enumerate(results)], ignore_index=True)
    runout_summary = runout.groupby("domain", sort=False).agg(
        claims_budget=("claims_budget", "first"), p_runout=("runout_day", lambda x: x.notna().mean()),
        runout_day_p50=("runout_day", "median"), deferred_mean=("deferred", "mean"), cut_mean=("cut", "mean"),
    ).reset_index()
    model = results[0].model
    runout_summary["runout_date_p50"] = [model.date(x).isoformat() if pd.notna(x) else None
                                         for x in runout_summary["runout_day_p50"]]
    queues = pd.concat([r.queues.assign(replication=k) for k, r in enumerate(results)], ignore_index=True)
    queue_summary = queues.groupby(["day", "bureau"], sort=False)["waiting"].agg(
        ["mean", lambda x: x.quantile(0.95)]).reset_index().rename(columns={"mean": "waiting_mean",
                                                                            "<lambda_0>": "waiting_p95"})
    return {
        "process_cash": cash, "process_cash_fan": fan, "process_outcomes": outcomes,
        "process_rule_outcomes": rule_outcomes, "process_waits_bureau": pooled.waits("bureau"),
        "process_waits_rule": pooled.waits("rule"), "process_runout": runout,
        "process_runout_summary": runout_summary, "process_queues": queue_summary,
        "process_events": pd.DataFrame({"replication": range(len(results)),
                                        "events": [r.events for r in results],
                                        "applications": [len(r.applications) for r in results],
                                        "wall_seconds": [r.wall_seconds for r in results]}),
    }


def process_data(model: ProcessModel) -> dict:
    """A fresh, mutable copy of the process settings data (for scenarios)."""
    return json.loads(model.raw)
