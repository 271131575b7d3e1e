"""The process year without an event loop: the SimPy model's results by queue recursion, bit for bit.

:mod:`sim.process` states the year as a SimPy model (reviewers as ``simpy.Resource``, claims budgets as
``simpy.Container``).  Its structure is simple enough to be computed directly, which is about twenty times
faster than stepping through its ~60,000 events per replication:

- **Arrivals.** The arrivals process wakes at each submission time in turn, so an application arrives at
  ``now + (submit - now)`` after the one before (the same floating-point sums as SimPy's clock).
- **Review.** Each bureau is a first-come-first-served queue with ``reviewers`` servers, so review starts
  follow the Kiefer-Wolfowitz recursion: an application starts at its arrival or at the earliest time a
  reviewer frees, whichever is later; it ends ``review`` days later and is decided after the expert review
  and notice days.
- **Payment.** Each payment run pays, per domain in order, the approved claims decided since the last run
  in the order they were decided, from the domain's budget, under the exhaustion rule.
- **Queues.** The daily samples of waiting and busy reviewers are counts of arrivals, starts and ends
  before each day.
- **Events.** The number of events SimPy would process is counted from the same times.

Nothing happens at or after the horizon (SimPy's ``run(until=horizon)``).  Where two event times
coincide exactly and SimPy's order of same-time events could change a result (an arrival at the instant
a reviewer frees, a decision at the instant of a payment run, two decisions of one domain at one instant,
anything on the stroke of a day the queues are sampled), :func:`year` returns ``None`` and the caller runs
the SimPy model itself; with continuous random times this does not happen in practice, and the caller
counts it.  ``tests/test_process.py`` checks both ways give the same bits over many replications and
models.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from sim import jit


@dataclass
class Year:
    """What the SimPy year leaves behind, computed: the applications' times and outcome parts are written
    into the applications object by :func:`year`; these are the rest."""

    waiting: np.ndarray  # (days, bureaus)
    busy: np.ndarray
    runout: np.ndarray  # (domains,)
    left: np.ndarray  # (domains,)
    events: int


_jit = jit.kernel


@_jit()
def arrival_clock(submit, horizon, arrival):
    """The arrivals process's clock: ``arrival[k]`` for the k-th submission in time order (``submit`` sorted);
    returns how many arrive before the horizon and how many waits (SimPy timeouts) that took."""
    now, waits = 0.0, 0
    for k in range(len(submit)):
        wait = submit[k] - now
        if wait > 0:
            t = now + wait
            if not t < horizon:
                return k, waits
            waits += 1
            now = t
        arrival[k] = now
    return len(submit), waits


@_jit()
def review_clock(order, arrival, review, bureau, free, start, end):
    """First come, first served review by ``free.shape[1]`` reviewers per bureau (Kiefer-Wolfowitz): in
    arrival order, each review starts at its arrival or when the earliest reviewer frees, whichever is later.
    ``free`` holds each reviewer's next free time (-inf: free; +inf pads a bureau with fewer reviewers).
    Returns whether an arrival coincides with the earliest free time of its bureau."""
    tie = False
    for k in range(len(order)):
        i = order[k]
        a = arrival[i]
        if a == np.inf:
            break
        row = free[bureau[i]]
        j, first = 0, row[0]
        for q in range(1, row.shape[0]):
            if row[q] < first:
                j, first = q, row[q]
        if first == a:
            tie = True
        s = a if first <= a else first
        e = s + review[i]
        row[j] = e
        start[i], end[i] = s, e
    return tie


@_jit()
def payment_runs(mode, runs, bounds, amounts, levels, totals, paid, deferred, cut, day, runout, gets):
    """Every payment run, domain by domain, over the approved claims in decision order (``amounts``; the
    claims of run k and domain d at ``bounds[k * domains + d]:bounds[k * domains + d + 1]``): the exhaustion
    rule ``mode`` (0 fcfs_defer, 1 pro_rata with ``totals`` the claims at its cut-off, 2 reject) decides
    each claim's paid, deferred and cut parts; ``levels`` are the budgets, paid down."""
    domains = len(levels)
    closed = np.zeros(domains, dtype=np.bool_)
    for k in range(len(runs)):
        now = runs[k]
        for d in range(domains):
            factor = 1.0
            if mode == 1:
                factor = 1.0 if totals[d] <= levels[d] else levels[d] / totals[d]
                if factor < 1.0:
                    runout[d] = now
            for j in range(bounds[k * domains + d], bounds[k * domains + d + 1]):
                a = amounts[j]
                if mode == 1:
                    scaled = a * factor
                    value = levels[d] if levels[d] < scaled else scaled
                    cut[j] = a - value
                elif mode == 0:
                    if closed[d]:
                        deferred[j] = a
                        day[j] = np.nan
                        continue
                    if levels[d] >= a:
                        value = a
                    else:
                        value = levels[d]
                        deferred[j] = a - value
                        closed[d] = True
                        runout[d] = now
                elif levels[d] >= a:
                    value = a
                else:
                    cut[j] = a
                    day[j] = np.nan
                    if np.isnan(runout[d]):
                        runout[d] = now
                    continue
                if value > 0:
                    levels[d] -= value
                    gets[d] += 1
                paid[j] = value
                day[j] = now


MODES = {"fcfs_defer": 0, "pro_rata": 1, "reject": 2}


def _arrivals(submit: np.ndarray, horizon: float) -> tuple[np.ndarray, int, bool]:
    """Each application's arrival time on the arrivals process's clock (inf: after the horizon), the number
    of timeouts it processes, and whether it finished."""
    order = np.argsort(submit, kind="stable")
    clock = np.full(len(submit), np.inf)
    arrived, waits = arrival_clock(submit[order], float(horizon), clock)
    arrival = np.full(len(submit), np.inf)
    arrival[order] = clock
    return arrival, int(waits), arrived == len(submit)


def _reviews(arrival: np.ndarray, review: np.ndarray, bureau: np.ndarray, reviewers: list[int]
             ) -> tuple[np.ndarray, np.ndarray, bool]:
    """Start and end of each review (first come, first served, ``reviewers[b]`` at a time), and whether an
    arrival coincides with a reviewer freeing in its bureau (SimPy's order of the two then matters)."""
    start, end = np.full(len(arrival), np.inf), np.full(len(arrival), np.inf)
    free = np.full((len(reviewers), max(reviewers)), np.inf)
    for b, c in enumerate(reviewers):
        free[b, :c] = -np.inf
    order = np.argsort(arrival, kind="stable")
    tie = review_clock(order, arrival, np.asarray(review, dtype=float), np.asarray(bureau, dtype=np.int64), free,
                       start, end)
    return start, end, bool(tie)


def _on_the_stroke(times: np.ndarray, horizon: float) -> bool:
    """Whether any finite time before the horizon falls exactly on a whole day (when the queues are sampled)."""
    t = times[times < horizon]
    return bool(np.any(t == np.floor(t)))


def _run_times(model, horizon: float) -> tuple[list[float], int]:
    """The times the payment runs happen before the horizon (one, the cut-off, under ``pro_rata``), and the
    number of events of the payments process: its waits, and its end if it gets there."""
    days = [model.cutoff_day] if model.exhaustion == "pro_rata" else list(model.payment_days)
    now, times, waits = 0.0, [], 0
    for day in days:
        if day > now:
            t = now + (day - now)
            if not t < horizon:
                return times, waits
            now, waits = t, waits + 1
        times.append(now)
    return times, waits + 1


def _pay(model, apps, budgets: list, runs: list[float], decided: np.ndarray, approved: np.ndarray,
         domains: int) -> tuple[np.ndarray, dict, list, int, np.ndarray]:
    """Every payment run's payments, domain by domain, in the order the claims were decided: paid day, the
    outcome parts, the budget left (each domain's own budget object where nothing was paid from it, as in
    the SimPy Container), the number of payments (SimPy Container gets) and the run-out days."""
    n = len(decided)
    taken = np.searchsorted(np.asarray(runs, dtype=float), decided, side="right")  # the run that takes each claim
    candidates = np.flatnonzero(approved & (taken < len(runs)))
    candidates = candidates[np.lexsort((decided[candidates], apps.domain[candidates], taken[candidates]))]
    keys = taken[candidates] * domains + apps.domain[candidates]
    bounds = np.searchsorted(keys, np.arange(len(runs) * domains + 1), side="left").astype(np.int64)
    amounts = apps.amount[candidates].astype(float)
    totals = np.zeros(domains)
    if model.exhaustion == "pro_rata" and runs:  # one run, at the cut-off: NumPy's own sum of each queue
        totals = np.array([amounts[bounds[d]:bounds[d + 1]].sum() for d in range(domains)])
    levels = np.array(budgets, dtype=float)
    paid, deferred, cut, day = (np.zeros(len(candidates)) for _ in range(4))
    runout, gets = np.full(domains, np.nan), np.zeros(domains, dtype=np.int64)
    payment_runs(MODES[model.exhaustion], np.asarray(runs, dtype=float), bounds, amounts, levels, totals, paid,
                 deferred, cut, day, runout, gets)
    parts = {name: np.zeros(n) for name in ("paid", "deferred", "cut")}
    parts["paid"][candidates], parts["deferred"][candidates], parts["cut"][candidates] = paid, deferred, cut
    paid_day = np.full(n, np.nan)
    paid_day[candidates] = day
    left = [float(levels[d]) if gets[d] else budgets[d] for d in range(domains)]
    return paid_day, parts, left, int(gets.sum()), runout


def _sampled(arrival, start, end, bureau, bureaus: int, days: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Applications waiting for a reviewer and reviews under way at each whole day, per bureau."""
    waiting = np.zeros((len(days), bureaus), dtype=np.int64)
    busy = np.zeros_like(waiting)
    for b in range(bureaus):
        mine = bureau == b
        before = [np.searchsorted(np.sort(times[mine]), days, side="left") for times in (arrival, start, end)]
        waiting[:, b] = before[0] - before[1]
        busy[:, b] = before[1] - before[2]
    return waiting, busy


def year(model, apps, budgets: Mapping[str, float]) -> Year | None:
    """The SimPy year of :class:`sim.process._Year`, computed; the applications' ``review_start``,
    ``decided``, ``paid_day`` and outcome parts are filled in.  ``None`` (and ``apps`` untouched) where
    event times coincide so that SimPy's order of same-time events could matter."""
    horizon = model.horizon
    domains = list(model.policy.domain_keys)
    reviewers = [b.reviewers for b in model.bureaus.values()]
    arrival, arrival_timeouts, all_arrived = _arrivals(apps.submit, horizon)
    start, end, tie = _reviews(arrival, apps.review, apps.bureau, reviewers)
    decided = np.where(apps.delay > 0, end + apps.delay, end)
    runs, payment_events = _run_times(model, horizon)
    started, reviewed, done = start < horizon, end < horizon, decided < horizon
    approved = apps.approve & done
    shown = decided[approved]
    # a review starts at an arrival or at a review's end: checking those two covers the starts
    if (tie or _on_the_stroke(np.concatenate([arrival, end, decided]), horizon)
            or np.isin(shown, runs).any() or _repeats(shown, apps.domain[approved])):
        return None
    paid_day, parts, level, gets, runout = _pay(model, apps, [budgets[d] for d in domains], runs,
                                                decided, approved, len(domains))
    apps.review_start = np.where(started, start, np.nan)
    apps.decided = np.where(done, decided, np.nan)
    apps.paid_day = paid_day
    apps.parts["paid"], apps.parts["deferred"], apps.parts["cut"] = parts["paid"], parts["deferred"], parts["cut"]
    apps.parts["rejected"] = np.where(done & ~apps.approve, apps.amount, 0.0)
    days = np.arange(0, int(horizon))
    waiting, busy = _sampled(arrival, start, end, apps.bureau, len(reviewers), days)
    arrived = np.isfinite(arrival)
    events = (1 + 3  # the run's end, and the start of the arrivals, payments and monitor processes
              + arrival_timeouts + int(all_arrived) + int(arrived.sum())  # arrivals: waits, its end, each start
              + int(started.sum()) + 2 * int(reviewed.sum())  # the reviewer granted, the review's end, release
              + int((done & (apps.delay > 0)).sum()) + int(done.sum())  # notice over, the application's end
              + gets + payment_events
              + max(len(days) - 1, 0) + 1)  # the monitor's daily waits and its end
    return Year(waiting, busy, runout, np.array(level), events)


def _repeats(times: np.ndarray, domain: np.ndarray) -> bool:
    """Whether two of one domain's approvals are decided at the same instant."""
    order = np.lexsort((times, domain))
    t, d = times[order], domain[order]
    return bool(np.any((t[1:] == t[:-1]) & (d[1:] == d[:-1])))


def warm() -> None:
    """Compile (or load from the cache) the recursion's kernels here and now, so that worker processes forked
    from this one start with them."""
    clock = np.zeros(1)
    arrival_clock(np.zeros(1), 1.0, clock)
    review_clock(np.zeros(1, dtype=np.int64), np.zeros(1), np.zeros(1), np.zeros(1, dtype=np.int64),
                 np.full((1, 1), -np.inf), np.zeros(1), np.zeros(1))
    payment_runs(0, np.zeros(1), np.zeros(2, dtype=np.int64), np.zeros(1), np.ones(1), np.zeros(1), np.zeros(1),
                 np.zeros(1), np.zeros(1), np.zeros(1), np.zeros(1), np.zeros(1, dtype=np.int64))
