"""The hot path: every rule of a policy in one fused, compiled pass over a block of claimants.

The Monte Carlo engine needs per-rule totals, not per-claimant awards, so the fused kernel reads each
claimant's attribute columns once (in cache-sized chunks), evaluates every rule, and accumulates per
rule: the award total, the number of claimants with an award, and per domain the number of claimants
with any award.  Nothing per claimant is written back to memory.

The policy is turned into arrays (:func:`compile_rules`); one generic compiled loop (numba) reads them,
with the inner loop over a 1-D column view per rule.  No code is generated from text.

Sums are defined so that the pure-NumPy fallback (:func:`totals_numpy`) gives bit-identical results:
per-claimant awards use the same IEEE operations as :mod:`sim.awards`, each chunk of :data:`CHUNK`
claimants is summed in :data:`LANES` interleaved sequential lanes added in lane order, and chunk
partials are added in chunk order, so the thread count does not change a bit.  The district-paid
total is the award total times the rule's district share.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.policy import Policy

CHUNK = 2048
LANES = 8  # the compiled kernel's accumulators are written out for 8 lanes
KINDS = {"rate": 0, "external_share": 1, "fixed": 2, "tiered": 3, "per_unit": 4}
OPS = {"equals": 0, "at_least": 1, "below": 2}


@dataclass(frozen=True)
class CompiledRules:
    """A policy's rules as arrays for the compiled kernel (attribute columns by index into ``columns``)."""

    columns: tuple[str, ...]  # money attributes (float64), then flags, counts and grades (float32, exact)
    wide: tuple[str, ...]  # the money attributes
    narrow: tuple[str, ...]  # flags, counts, grades: whole numbers far below 2**24, exact in float32
    kind: np.ndarray
    base: np.ndarray  # index within its group
    base_wide: np.ndarray
    tier_base: np.ndarray
    tier_wide: np.ndarray
    rate: np.ndarray
    cap: np.ndarray
    threshold: np.ndarray
    has_threshold: np.ndarray
    amount: np.ndarray
    intensity: np.ndarray
    share: np.ndarray
    tier_at: np.ndarray
    tier_amount: np.ndarray
    n_tiers: np.ndarray
    cond_attr: np.ndarray
    cond_wide: np.ndarray
    cond_op: np.ndarray
    cond_value: np.ndarray
    n_cond: np.ndarray
    domain: np.ndarray
    n_domains: int
    inclusive: bool


def compile_rules(policy: Policy) -> CompiledRules:
    rules = policy.rules
    inputs = policy.input_attributes()
    wide = tuple(a.name for a in inputs if a.type == "float")
    narrow = tuple(a.name for a in inputs if a.type != "float")
    where = {name: (True, i) for i, name in enumerate(wide)} | {name: (False, i) for i, name in enumerate(narrow)}
    r = len(rules)
    t = max([len(rule.tiers) for rule in rules] + [1])
    c = max([len(rule.eligibility) for rule in rules] + [1])
    tier_at = np.zeros((r, t))
    tier_amount = np.zeros((r, t))
    cond_attr = np.zeros((r, c), dtype=np.int64)
    cond_wide = np.zeros((r, c), dtype=np.bool_)
    cond_op = np.zeros((r, c), dtype=np.int64)
    cond_value = np.zeros((r, c))
    for i, rule in enumerate(rules):
        for j, tier in enumerate(rule.tiers):
            tier_at[i, j], tier_amount[i, j] = tier.at, tier.amount.value
        for j, cond in enumerate(rule.eligibility):
            cond_wide[i, j], cond_attr[i, j] = where[cond.attribute]
            cond_op[i, j], cond_value[i, j] = OPS[cond.op], cond.value
    domains = {d: k for k, d in enumerate(policy.domain_keys)}
    tier_names = [rule.tier_base or rule.base for rule in rules]
    return CompiledRules(
        columns=wide + narrow, wide=wide, narrow=narrow,
        kind=np.array([KINDS[rule.kind] for rule in rules], dtype=np.int64),
        base=np.array([where[rule.base][1] for rule in rules], dtype=np.int64),
        base_wide=np.array([where[rule.base][0] for rule in rules], dtype=np.bool_),
        tier_base=np.array([where[name][1] for name in tier_names], dtype=np.int64),
        tier_wide=np.array([where[name][0] for name in tier_names], dtype=np.bool_),
        rate=np.array([rule.rate.value if rule.rate else 0.0 for rule in rules]),
        cap=np.array([rule.cap.value if rule.cap else np.inf for rule in rules]),
        threshold=np.array([rule.threshold.value if rule.threshold else 0.0 for rule in rules]),
        has_threshold=np.array([rule.threshold is not None for rule in rules]),
        amount=np.array([rule.amount.value if rule.amount else 0.0 for rule in rules]),
        intensity=np.array([rule.intensity.value for rule in rules]),
        share=np.array([rule.district_share.value for rule in rules]),
        tier_at=tier_at, tier_amount=tier_amount,
        n_tiers=np.array([len(rule.tiers) for rule in rules], dtype=np.int64),
        cond_attr=cond_attr, cond_wide=cond_wide, cond_op=cond_op, cond_value=cond_value,
        n_cond=np.array([len(rule.eligibility) for rule in rules], dtype=np.int64),
        domain=np.array([domains[rule.domain] for rule in rules], dtype=np.int64),
        n_domains=len(domains), inclusive=policy.reading.threshold_inclusive,
    )


def column_matrix(compiled: CompiledRules, columns, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Claimant attributes in the kernel's layout: money as (chunks, attributes, CHUNK) float64 and flags,
    counts and grades as (chunks, attributes, CHUNK) float32 (whole numbers, exact), chunk-major so
    that each chunk's columns lie together in memory.  The last chunk's tail is zero and never read."""
    n = len(columns[compiled.columns[0]]) if n is None else n
    chunks = max(1, -(-n // CHUNK))
    full = n // CHUNK
    out = []
    for names, dtype in ((compiled.wide, np.float64), (compiled.narrow, np.float32)):
        matrix = np.empty((chunks, max(len(names), 1), CHUNK), dtype=dtype)
        for a, name in enumerate(names):
            column = np.asarray(columns[name])
            matrix[:full, a, :] = column[:full * CHUNK].reshape(full, CHUNK)
            if full < chunks:
                matrix[full, a, :] = 0
                matrix[full, a, :n - full * CHUNK] = column[full * CHUNK:n]
        out.append(matrix)
    return out[0], out[1]


# ----------------------------------------------------------------------------- the reference reduction
def lane_sum(values: np.ndarray) -> np.ndarray:
    """Sum along the last axis in :data:`LANES` interleaved sequential lanes, lanes added in order.

    Both paths reduce a chunk this way, so their totals agree to the bit.

    >>> float(lane_sum(np.arange(20.0)))
    190.0
    """
    n = values.shape[-1]
    pad = (-n) % LANES
    if pad:
        values = np.concatenate([values, np.zeros(values.shape[:-1] + (pad,))], axis=-1)
    lanes = values.reshape(values.shape[:-1] + (-1, LANES))
    partial = np.cumsum(lanes, axis=-2)[..., -1, :]  # sequential within each lane
    total = partial[..., 0].copy()
    for k in range(1, LANES):
        total = total + partial[..., k]
    return total


def totals_numpy(policy: Policy, columns, compiled: CompiledRules | None = None):
    """The reference: awards from :func:`sim.awards.evaluate`, reduced chunk by chunk."""
    from sim.awards import evaluate
    from sim.firms import FirmTable

    compiled = compiled or compile_rules(policy)
    n = len(columns[compiled.columns[0]])
    gross = evaluate(policy, FirmTable({k: columns[k] for k in compiled.columns}, n)).gross
    chunks = []
    firms = np.zeros(1 + compiled.n_domains, dtype=np.int64)
    counts = np.zeros(len(policy.rules), dtype=np.int64)
    for lo in range(0, n, CHUNK):
        part = gross[:, lo:lo + CHUNK]
        chunks.append(lane_sum(part))
        positive = part > 0
        counts += positive.sum(axis=1)
        firms[0] += positive.any(axis=0).sum()
        for d in range(compiled.n_domains):
            firms[1 + d] += positive[compiled.domain == d].any(axis=0).sum()
    return _combine(chunks, compiled, len(policy.rules)), counts, firms


def _combine(chunks, compiled: CompiledRules, rules: int):
    """Chunk partials added in chunk order (sequentially): the same bits for any thread count."""
    if len(chunks) == 0:
        return np.zeros(rules), np.zeros(rules)
    award = np.cumsum(np.asarray(chunks), axis=0)[-1]
    return award, award * compiled.share


# ----------------------------------------------------------------------------- the compiled kernel
try:
    import numba
except ImportError:  # pragma: no cover - numba is a dependency; the fallback keeps results identical
    numba = None


def _kernel_source(parallel: bool):
    from numba import njit, prange

    @njit(cache=True, nogil=True, inline="always")
    def clip(value, cap):
        if value < 0.0:
            return 0.0
        if value > cap:
            return cap
        return value

    @njit(cache=True, nogil=True)
    def rate_loop(col, m, f, top, has_threshold, threshold, inclusive, out):
        for i in range(m):
            out[i] = clip(f * col[i], top)
        if has_threshold:
            if inclusive:
                for i in range(m):
                    if not col[i] >= threshold:
                        out[i] = 0.0
            else:
                for i in range(m):
                    if not col[i] > threshold:
                        out[i] = 0.0

    @njit(cache=True, nogil=True)
    def direct_loop(col, m, at, direct, inclusive, out):
        if inclusive:
            for i in range(m):
                if col[i] >= at and direct > out[i]:
                    out[i] = direct
        else:
            for i in range(m):
                if col[i] > at and direct > out[i]:
                    out[i] = direct

    @njit(cache=True, nogil=True)
    def fixed_loop(col, m, a, out):
        for i in range(m):
            out[i] = a if col[i] != 0.0 else 0.0

    @njit(cache=True, nogil=True)
    def step_loop(col, m, at, value, inclusive, out):
        if inclusive:
            for i in range(m):
                if col[i] >= at:
                    out[i] = value
        else:
            for i in range(m):
                if col[i] > at:
                    out[i] = value

    @njit(cache=True, nogil=True)
    def unit_loop(col, m, a, top, out):
        for i in range(m):
            out[i] = clip(col[i] * a, top)

    @njit(cache=True, nogil=True)
    def condition_loop(col, m, op, v, out):
        for i in range(m):
            ok = (col[i] == v) if op == 0 else ((col[i] >= v) if op == 1 else (col[i] < v))
            if not ok:
                out[i] = 0.0

    @njit(cache=True, nogil=True)
    def awards(x64, x32, c, m, r, kind, base, base_wide, tier_base, tier_wide, rate, cap, threshold,
               has_threshold, amount, intensity, tier_at, tier_amount, n_tiers, cond_attr, cond_wide, cond_op,
               cond_value, n_cond, inclusive, out):
        """One rule's award for the first m claimants of chunk c into out[0:m]; one tight loop per kind,
        compiled once for float64 (money) and once for float32 (flags, counts) columns."""
        k = kind[r]
        b = base[r]
        if k == 0 or k == 1:
            threshold_on = k == 0 and has_threshold[r]
            if base_wide[r]:
                rate_loop(x64[c, b], m, rate[r], cap[r], threshold_on, threshold[r], inclusive, out)
            else:
                rate_loop(x32[c, b], m, rate[r], cap[r], threshold_on, threshold[r], inclusive, out)
            for t in range(n_tiers[r]):  # tiers rise in `at` and amount: the last reached wins
                if tier_wide[r]:
                    direct_loop(x64[c, tier_base[r]], m, tier_at[r, t], tier_amount[r, t], inclusive, out)
                else:
                    direct_loop(x32[c, tier_base[r]], m, tier_at[r, t], tier_amount[r, t], inclusive, out)
        elif k == 2:
            if base_wide[r]:
                fixed_loop(x64[c, b], m, amount[r], out)
            else:
                fixed_loop(x32[c, b], m, amount[r], out)
        elif k == 3:
            for i in range(m):
                out[i] = 0.0
            for t in range(n_tiers[r]):
                if base_wide[r]:
                    step_loop(x64[c, b], m, tier_at[r, t], tier_amount[r, t], inclusive, out)
                else:
                    step_loop(x32[c, b], m, tier_at[r, t], tier_amount[r, t], inclusive, out)
        else:
            if base_wide[r]:
                unit_loop(x64[c, b], m, amount[r], cap[r], out)
            else:
                unit_loop(x32[c, b], m, amount[r], cap[r], out)
        for j in range(n_cond[r]):
            if cond_wide[r, j]:
                condition_loop(x64[c, cond_attr[r, j]], m, cond_op[r, j], cond_value[r, j], out)
            else:
                condition_loop(x32[c, cond_attr[r, j]], m, cond_op[r, j], cond_value[r, j], out)
        if intensity[r] != 1.0:
            g = intensity[r]
            for i in range(m):
                out[i] = out[i] * g

    @njit(cache=True, parallel=parallel, nogil=True)
    def fused(x64, x32, n, kind, base, base_wide, tier_base, tier_wide, rate, cap, threshold, has_threshold,
              amount, intensity, tier_at, tier_amount, n_tiers, cond_attr, cond_wide, cond_op, cond_value, n_cond,
              domain, n_domains, inclusive, chunk, lanes):
        r_count = kind.shape[0]
        n_chunks = x64.shape[0]
        sums = np.zeros((n_chunks, r_count))
        counts = np.zeros((n_chunks, r_count), dtype=np.int64)
        firms = np.zeros((n_chunks, n_domains + 1), dtype=np.int64)
        for c in prange(n_chunks):
            m = min(chunk, n - c * chunk)
            out = np.zeros(chunk)  # stays zero past m: adding 0.0 leaves a lane unchanged
            per_domain = np.zeros((n_domains, chunk), dtype=np.uint8)  # 1 where a claimant has an award
            for r in range(r_count):
                awards(x64, x32, c, m, r, kind, base, base_wide, tier_base, tier_wide, rate, cap, threshold,
                       has_threshold, amount, intensity, tier_at, tier_amount, n_tiers, cond_attr, cond_wide,
                       cond_op, cond_value, n_cond, inclusive, out)
                a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = 0.0
                i = 0
                while i < chunk:  # a while loop compiles to tighter code than range(0, chunk, 8)
                    a0 += out[i]
                    a1 += out[i + 1]
                    a2 += out[i + 2]
                    a3 += out[i + 3]
                    a4 += out[i + 4]
                    a5 += out[i + 5]
                    a6 += out[i + 6]
                    a7 += out[i + 7]
                    i += 8
                dom = per_domain[domain[r]]
                hits = 0
                for i in range(chunk):
                    positive = out[i] > 0.0
                    dom[i] |= positive
                    hits += positive
                sums[c, r] = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7
                counts[c, r] = hits
            for i in range(m):
                some = False
                for d in range(n_domains):
                    if per_domain[d, i]:
                        firms[c, 1 + d] += 1
                        some = True
                if some:
                    firms[c, 0] += 1
        return sums, counts, firms

    @njit(cache=True, parallel=parallel, nogil=True)
    def per_claimant(x64, x32, n, kind, base, base_wide, tier_base, tier_wide, rate, cap, threshold,
                     has_threshold, amount, intensity, tier_at, tier_amount, n_tiers, cond_attr, cond_wide,
                     cond_op, cond_value, n_cond, inclusive, chunk, gross):
        """Every rule's award for every claimant into gross (rules x n), chunk by chunk."""
        for c in prange(x64.shape[0]):
            m = min(chunk, n - c * chunk)
            out = np.zeros(chunk)
            for r in range(kind.shape[0]):
                awards(x64, x32, c, m, r, kind, base, base_wide, tier_base, tier_wide, rate, cap, threshold,
                       has_threshold, amount, intensity, tier_at, tier_amount, n_tiers, cond_attr, cond_wide,
                       cond_op, cond_value, n_cond, inclusive, out)
                row = gross[r]
                for i in range(m):
                    row[c * chunk + i] = out[i]

    return fused, per_claimant


_KERNELS: dict[bool, object] = {}
PARALLEL_FROM = 64 * CHUNK  # smaller blocks run on one thread: waking a thread pool costs more than it saves


def _kernels(parallel: bool):
    if parallel not in _KERNELS:
        _KERNELS[parallel] = _kernel_source(parallel)
    return _KERNELS[parallel]


def awards_per_claimant(compiled: CompiledRules, columns, n: int, block: int = 1 << 16) -> np.ndarray:
    """(rules x n) float64 awards, the same bits as the NumPy kernels; inputs re-laid out block by block
    so the extra memory is one block's columns, not the population's."""
    gross = np.empty((len(compiled.kind), n))
    per_claimant = _kernels(n >= PARALLEL_FROM)[1]
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        x64, x32 = column_matrix(compiled, {k: np.asarray(columns[k])[lo:hi] for k in compiled.columns}, hi - lo)
        per_claimant(x64, x32, hi - lo, compiled.kind, compiled.base, compiled.base_wide, compiled.tier_base,
                     compiled.tier_wide, compiled.rate, compiled.cap, compiled.threshold, compiled.has_threshold,
                     compiled.amount, compiled.intensity, compiled.tier_at, compiled.tier_amount, compiled.n_tiers,
                     compiled.cond_attr, compiled.cond_wide, compiled.cond_op, compiled.cond_value, compiled.n_cond,
                     compiled.inclusive, CHUNK, gross[:, lo:hi])
    return gross


def totals(policy: Policy, columns, compiled: CompiledRules | None = None,
           matrix: tuple[np.ndarray, np.ndarray] | None = None, n: int | None = None):
    """Per-rule (award, district) totals, claimant counts per rule, and claimant firms (all, per domain).

    Uses the compiled kernel when numba is installed, else :func:`totals_numpy`; both give the same bits.
    """
    compiled = compiled or compile_rules(policy)
    if numba is None:
        return totals_numpy(policy, columns, compiled)
    if matrix is None:
        n = len(columns[compiled.columns[0]])
        matrix = column_matrix(compiled, columns, n)
    x64, x32 = matrix
    sums, counts, firms = _kernels(n >= PARALLEL_FROM)[0](
        x64, x32, n, compiled.kind, compiled.base, compiled.base_wide, compiled.tier_base, compiled.tier_wide,
        compiled.rate, compiled.cap, compiled.threshold, compiled.has_threshold, compiled.amount,
        compiled.intensity, compiled.tier_at, compiled.tier_amount, compiled.n_tiers, compiled.cond_attr,
        compiled.cond_wide, compiled.cond_op, compiled.cond_value, compiled.n_cond, compiled.domain,
        compiled.n_domains, compiled.inclusive, CHUNK, LANES)
    return _combine(list(sums), compiled, len(policy.rules)), counts.sum(axis=0), firms.sum(axis=0)
