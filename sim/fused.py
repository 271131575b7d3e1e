"""The hot path: every rule of a policy in one fused, compiled pass over a block of claimants.

The Monte Carlo engine needs per-rule totals, not per-claimant awards, so the fused kernel reads each
claimant's attribute columns once (in cache-sized chunks), evaluates every rule, and accumulates per
rule: the award total, the number of claimants with an award, and per domain the number of claimants
with any award.  Nothing per claimant is written back to memory.

The policy is turned into packed arrays (:func:`compile_rules`): one int row and one float row per rule,
its tiers and its eligibility conditions.  The kernels are module-level numba functions cached on disk;
each rule's award comes from its kind's compiled twin in :mod:`sim.kinds` (:func:`sim.kinds.award_into`).
No code is generated from text.

Sums are defined so that the pure-NumPy path (:func:`totals_numpy`) gives bit-identical results:
per-claimant awards use the same IEEE operations as :mod:`sim.awards`, each chunk of :data:`CHUNK`
claimants is summed in :data:`LANES` interleaved sequential lanes added in lane order, and chunk
partials are added in chunk order, so the thread count does not change a bit.  The district-paid
total is the award total times the rule's district share.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from sim import jit, kinds
from sim.policy import Policy

CHUNK = 2048
LANES = 8  # the compiled kernel's accumulators are written out for 8 lanes
OPS = {"equals": 0, "at_least": 1, "below": 2}
PARALLEL_FROM = 64 * CHUNK  # smaller blocks run on one thread: waking a thread pool costs more than it saves

# Columns of CompiledRules.ints
CODE, BASE, BASE_WIDE, TIER, TIER_WIDE, N_TIERS, N_COND, DOMAIN = range(8)


@dataclass(frozen=True)
class CompiledRules:
    """A policy's rules as packed arrays for the compiled kernels (attributes by index into their group)."""

    columns: tuple[str, ...]  # money attributes (float64), then flags, counts and grades (float32, exact)
    wide: tuple[str, ...]  # the money attributes
    narrow: tuple[str, ...]  # flags, counts, grades: whole numbers far below 2**24, exact in float32
    ints: np.ndarray  # (rules, 8) int64: kind code, base, base is wide, tier base, tier base is wide, tiers,
    #                   conditions, domain
    params: np.ndarray  # (rules, kinds.NPARAM) float64: the kind's numbers (sim.kinds.packed)
    intensity: np.ndarray  # (rules,)
    share: np.ndarray  # (rules,) district share
    tiers: np.ndarray  # (rules, max tiers, 2): at, value
    cond_ints: np.ndarray  # (rules, max conditions, 3): attribute, attribute is wide, operator
    cond_values: np.ndarray  # (rules, max conditions)
    n_domains: int
    inclusive: bool
    policy: Policy

    @property
    def n_rules(self) -> int:
        return len(self.ints)


def compile_rules(policy: Policy) -> CompiledRules:
    rules = policy.rules
    inputs = policy.input_attributes()
    wide = tuple(a.name for a in inputs if a.type == "float")
    narrow = tuple(a.name for a in inputs if a.type != "float")
    where = {name: (1, i) for i, name in enumerate(wide)} | {name: (0, i) for i, name in enumerate(narrow)}
    r = len(rules)
    tiers = np.zeros((r, max([len(rule.tiers) for rule in rules] + [1]), 2))
    n_cond = max([len(rule.eligibility) for rule in rules] + [1])
    cond_ints = np.zeros((r, n_cond, 3), dtype=np.int64)
    cond_values = np.zeros((r, n_cond))
    ints = np.zeros((r, 8), dtype=np.int64)
    domains = {d: k for k, d in enumerate(policy.domain_keys)}
    for i, rule in enumerate(rules):
        for j, tier in enumerate(rule.tiers):
            tiers[i, j] = tier.at, tier.value.value
        for j, cond in enumerate(rule.eligibility):
            cond_ints[i, j] = (*reversed(where[cond.attribute]), OPS[cond.op])
            cond_values[i, j] = cond.value
        base_wide, base = where[rule.base]
        tier_wide, tier = where[rule.tier_base or rule.base]
        ints[i] = (kinds.KINDS[rule.kind].code, base, base_wide, tier, tier_wide, len(rule.tiers),
                   len(rule.eligibility), domains[rule.domain])
    return CompiledRules(
        columns=wide + narrow, wide=wide, narrow=narrow, ints=ints,
        params=np.array([kinds.packed(rule) for rule in rules]).reshape(r, kinds.NPARAM),
        intensity=np.array([rule.intensity.value for rule in rules]),
        share=np.array([rule.district_share.value for rule in rules]),
        tiers=tiers, cond_ints=cond_ints, cond_values=cond_values,
        n_domains=len(domains), inclusive=policy.reading.threshold_inclusive, policy=policy,
    )


def column_matrix(compiled: CompiledRules, columns) -> tuple[np.ndarray, np.ndarray]:
    """Claimant attributes in the kernel's layout: money as (chunks, attributes, CHUNK) float64 and flags,
    counts and grades as (chunks, attributes, CHUNK) float32 (whole numbers, exact), chunk-major so
    that each chunk's columns lie together in memory.  The last chunk's tail is left as it is: never read."""
    n = len(columns[compiled.columns[0]])
    chunks = max(1, -(-n // CHUNK))
    full = n // CHUNK
    out = []
    for names, dtype in ((compiled.wide, np.float64), (compiled.narrow, np.float32)):
        matrix = np.empty((chunks, max(len(names), 1), CHUNK), dtype=dtype)
        for a, name in enumerate(names):
            column = np.asarray(columns[name])
            matrix[:full, a, :] = column[:full * CHUNK].reshape(full, CHUNK)
            if full < chunks:  # the tail past n is never read (the kernels stop at each chunk's m)
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
    compiled = compiled or compile_rules(policy)
    n = len(columns[compiled.columns[0]])
    return totals_from_awards(_evaluate(compiled, columns, n), compiled)


def _evaluate(compiled: CompiledRules, columns, n: int) -> np.ndarray:
    """(rules x n) awards by the NumPy kernels of :mod:`sim.awards` (the path without numba)."""
    from sim.awards import evaluate
    from sim.firms import FirmTable

    return evaluate(compiled.policy, FirmTable({k: np.asarray(columns[k]) for k in compiled.columns}, n)).gross


def totals_from_awards(gross: np.ndarray, compiled: CompiledRules):
    """Per-rule totals, claimant counts and claimant firms from (rules x n) awards, reduced like the kernel."""
    n = gross.shape[1]
    chunks = []
    firms = np.zeros(1 + compiled.n_domains, dtype=np.int64)
    counts = np.zeros(compiled.n_rules, dtype=np.int64)
    domain = compiled.ints[:, DOMAIN]
    for lo in range(0, n, CHUNK):
        part = gross[:, lo:lo + CHUNK]
        chunks.append(lane_sum(part))
        positive = part > 0
        counts += positive.sum(axis=1)
        firms[0] += positive.any(axis=0).sum()
        for d in range(compiled.n_domains):
            firms[1 + d] += positive[domain == d].any(axis=0).sum()
    return _combine(chunks, compiled), counts, firms


def _combine(chunks, compiled: CompiledRules):
    """Chunk partials added in chunk order (sequentially): the same bits for any thread count."""
    if len(chunks) == 0:
        return np.zeros(compiled.n_rules), np.zeros(compiled.n_rules)
    award = np.cumsum(np.asarray(chunks), axis=0)[-1]
    return award, award * compiled.share


# ----------------------------------------------------------------------------- the compiled kernels
_jit = jit.kernel
prange = jit.prange


@_jit()
def condition_loop(col, m, op, v, out):
    for i in range(m):
        ok = (col[i] == v) if op == 0 else ((col[i] >= v) if op == 1 else (col[i] < v))
        if not ok:
            out[i] = 0.0


@_jit()
def widen(x64, x32, c, index, is_wide, m, buffer):
    """A chunk's column as float64: the money matrix's row itself, or a flag/count row copied (exactly)."""
    if is_wide:
        return x64[c, index]
    row = x32[c, index]
    for i in range(m):
        buffer[i] = row[i]
    return buffer


@_jit()
def rule_chunk(x64, x32, c, m, r, ints, params, intensity, tiers, cond_ints, cond_values, inclusive,
               base_buffer, tier_buffer, out):
    """Rule r's award for the first m claimants of chunk c into out[:m]: kind, conditions, intensity."""
    row = ints[r]
    base = widen(x64, x32, c, row[1], row[2], m, base_buffer)
    tier_col = base
    if row[5] > 0:
        tier_col = widen(x64, x32, c, row[3], row[4], m, tier_buffer)
    kinds.award_into(row[0], base, tier_col, m, params[r], tiers[r], row[5], inclusive, out)
    for j in range(row[6]):
        attribute, is_wide, op = cond_ints[r, j, 0], cond_ints[r, j, 1], cond_ints[r, j, 2]
        if is_wide:
            condition_loop(x64[c, attribute], m, op, cond_values[r, j], out)
        else:
            condition_loop(x32[c, attribute], m, op, cond_values[r, j], out)
    if intensity[r] != 1.0:
        g = intensity[r]
        for i in range(m):
            out[i] = out[i] * g


@_jit()
def chunk_totals(x64, x32, n, c, ints, params, intensity, tiers, cond_ints, cond_values, n_domains, inclusive,
                 sums, counts, firms, gross):
    """Every rule on chunk c: lane sums, claimant counts per rule, claimant firms (all, per domain); and, where
    ``gross`` has a column per claimant, each claimant's award (rules x n) too."""
    chunk = x64.shape[2]
    m = min(chunk, n - c * chunk)
    out = np.zeros(chunk)  # stays zero past m: adding 0.0 leaves a lane unchanged
    base_buffer = np.zeros(chunk)
    tier_buffer = np.zeros(chunk)
    per_domain = np.zeros((n_domains, chunk), dtype=np.uint8)  # 1 where a claimant has an award
    for r in range(ints.shape[0]):
        rule_chunk(x64, x32, c, m, r, ints, params, intensity, tiers, cond_ints, cond_values, inclusive,
                   base_buffer, tier_buffer, out)
        if gross.shape[0] == ints.shape[0] and gross.shape[1] == n:
            row = gross[r]
            for i in range(m):
                row[c * chunk + i] = out[i]
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
        dom = per_domain[ints[r, 7]]
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


@_jit()
def fused_serial(x64, x32, n, ints, params, intensity, tiers, cond_ints, cond_values, n_domains, inclusive, gross):
    n_chunks, rules = x64.shape[0], ints.shape[0]
    sums = np.zeros((n_chunks, rules))
    counts = np.zeros((n_chunks, rules), dtype=np.int64)
    firms = np.zeros((n_chunks, n_domains + 1), dtype=np.int64)
    for c in range(n_chunks):
        chunk_totals(x64, x32, n, c, ints, params, intensity, tiers, cond_ints, cond_values, n_domains, inclusive,
                     sums, counts, firms, gross)
    return sums, counts, firms


@_jit(parallel=True)
def fused_parallel(x64, x32, n, ints, params, intensity, tiers, cond_ints, cond_values, n_domains, inclusive, gross):
    n_chunks, rules = x64.shape[0], ints.shape[0]
    sums = np.zeros((n_chunks, rules))
    counts = np.zeros((n_chunks, rules), dtype=np.int64)
    firms = np.zeros((n_chunks, n_domains + 1), dtype=np.int64)
    for c in prange(n_chunks):
        chunk_totals(x64, x32, n, c, ints, params, intensity, tiers, cond_ints, cond_values, n_domains, inclusive,
                     sums, counts, firms, gross)
    return sums, counts, firms


@_jit()
def chunk_awards(x64, x32, n, c, ints, params, intensity, tiers, cond_ints, cond_values, inclusive, gross):
    chunk = x64.shape[2]
    m = min(chunk, n - c * chunk)
    out = np.zeros(chunk)
    base_buffer = np.zeros(chunk)
    tier_buffer = np.zeros(chunk)
    for r in range(ints.shape[0]):
        rule_chunk(x64, x32, c, m, r, ints, params, intensity, tiers, cond_ints, cond_values, inclusive,
                   base_buffer, tier_buffer, out)
        row = gross[r]
        for i in range(m):
            row[c * chunk + i] = out[i]


@_jit()
def per_claimant_serial(x64, x32, n, ints, params, intensity, tiers, cond_ints, cond_values, inclusive, gross):
    for c in range(x64.shape[0]):
        chunk_awards(x64, x32, n, c, ints, params, intensity, tiers, cond_ints, cond_values, inclusive, gross)


@_jit(parallel=True)
def per_claimant_parallel(x64, x32, n, ints, params, intensity, tiers, cond_ints, cond_values, inclusive, gross):
    for c in prange(x64.shape[0]):
        chunk_awards(x64, x32, n, c, ints, params, intensity, tiers, cond_ints, cond_values, inclusive, gross)


@_jit()
def positive_awards(gross, share):
    """Every positive award of a (rules x claimants) award matrix, rule by rule and claimant by claimant (the
    order of ``np.nonzero(gross > 0)``), as (rule, award x district share): what the process stage needs."""
    found = 0
    for r in range(gross.shape[0]):
        for i in range(gross.shape[1]):
            if gross[r, i] > 0.0:
                found += 1
    rules = np.empty(found, dtype=np.int64)
    amounts = np.empty(found)
    k = 0
    for r in range(gross.shape[0]):
        for i in range(gross.shape[1]):
            if gross[r, i] > 0.0:
                rules[k] = r
                amounts[k] = gross[r, i] * share[r]
                k += 1
    return rules, amounts


def rule_arrays(compiled: CompiledRules) -> tuple:
    return (compiled.ints, compiled.params, compiled.intensity, compiled.tiers, compiled.cond_ints,
            compiled.cond_values)


def awards_per_claimant(compiled: CompiledRules, columns, n: int, block: int = 1 << 16) -> np.ndarray:
    """(rules x n) float64 awards, the same bits as the NumPy kernels; inputs re-laid out block by block
    so the extra memory is one block's columns, not the population's."""
    if not jit.AVAILABLE:
        return _evaluate(compiled, columns, n)
    gross = np.empty((compiled.n_rules, n))
    kernel = per_claimant_parallel if n >= PARALLEL_FROM else per_claimant_serial
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        x64, x32 = column_matrix(compiled, {k: np.asarray(columns[k])[lo:hi] for k in compiled.columns})
        kernel(x64, x32, hi - lo, *rule_arrays(compiled), compiled.inclusive, gross[:, lo:hi])
    return gross


def awards_of_rules(compiled: CompiledRules, rows: np.ndarray, columns, n: int) -> np.ndarray:
    """(len(rows) x n) awards of the rules at ``rows`` only (the same bits as :func:`awards_per_claimant`'s
    rows): the compiled kernel on those rules' packed arrays, or the NumPy kernels' rows."""
    if not jit.AVAILABLE:
        return _evaluate(compiled, columns, n)[rows]
    part = replace(compiled, ints=compiled.ints[rows], params=compiled.params[rows],
                   intensity=compiled.intensity[rows], share=compiled.share[rows], tiers=compiled.tiers[rows],
                   cond_ints=compiled.cond_ints[rows], cond_values=compiled.cond_values[rows])
    return awards_per_claimant(part, columns, n)


def totals(policy: Policy, columns, compiled: CompiledRules | None = None,
           matrix: tuple[np.ndarray, np.ndarray] | None = None, n: int | None = None, awards: bool = False):
    """Per-rule (award, district) totals, claimant counts per rule, and claimant firms (all, per domain); with
    ``awards`` (compiled path only) also the (rules x n) per-claimant awards, computed in the same pass.

    Uses the compiled kernel when numba is installed, else :func:`totals_numpy`; both give the same bits.
    """
    compiled = compiled or compile_rules(policy)
    if not jit.AVAILABLE:
        return totals_numpy(policy, columns, compiled)
    if matrix is None:
        n = len(columns[compiled.columns[0]])
        matrix = column_matrix(compiled, columns)
    x64, x32 = matrix
    kernel = fused_parallel if n >= PARALLEL_FROM else fused_serial
    gross = np.zeros((compiled.n_rules, n if awards else 0))
    sums, counts, firms = kernel(x64, x32, n, *rule_arrays(compiled), compiled.n_domains, compiled.inclusive, gross)
    found = _combine(list(sums), compiled), counts.sum(axis=0), firms.sum(axis=0)
    return (*found, gross) if awards else found


def warm(compiled: CompiledRules) -> None:
    """Compile (or load from the cache) the one-thread kernels the claims engine calls, here and now, so that
    worker processes forked from this one start with them instead of compiling each its own copy."""
    if jit.AVAILABLE:
        columns = {name: np.zeros(1) for name in compiled.columns}
        matrix = column_matrix(compiled, columns)
        fused_serial(*matrix, 1, *rule_arrays(compiled), compiled.n_domains, compiled.inclusive,
                     np.zeros((compiled.n_rules, 1)))
        awards_per_claimant(compiled, columns, 1)  # the kept claimants of a multi-year run
        positive_awards(np.zeros((compiled.n_rules, 1)), compiled.share)
