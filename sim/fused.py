"""The hot path: every rule of a policy in one fused, compiled pass over a block of claimants.

The Monte Carlo engine needs per-rule totals, not per-claimant awards, so the fused kernel reads each
claimant's attribute columns once (in cache-sized chunks), evaluates every rule, and accumulates per
rule: the award total, the number of claimants with an award, and per domain the number of claimants
with any award.  Nothing per claimant is written back to memory.

The policy is turned into packed arrays (:func:`compile_rules`): one int row and one float row per rule,
its tiers and its eligibility conditions.  The kernels are module-level numba functions cached on disk;
each rule's award comes from its kind's compiled twin in :mod:`sim.kinds` (:func:`sim.kinds.award_into`),
read straight from float64 money and float32 flag columns.  No code is generated from text.

Where the speed comes from: rules are evaluated in the order of the columns they read (:func:`evaluation_order`),
so a chunk streams from memory front to back; a rule whose award is one formula of one column (a fixed amount,
or a capped product: :func:`direct_path`) is computed and reduced in one 8-wide vector pass
(:func:`direct_into`); every other rule's awards are reduced by one vector pass too (:func:`lanes_into`),
which sums, counts and flags domains at once.  Both are written as LLVM vector code, each with a plain-Python
twin that gives the same bits (:func:`lanes_python`, :func:`direct_python`).

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
CODE, BASE, BASE_WIDE, TIER, TIER_WIDE, N_TIERS, N_COND, DOMAIN, DIRECT = range(9)
# CompiledRules.ints[:, DIRECT]: how the kernel reduces a rule: its kind kernel into a buffer, then the reduction
# (DIRECT_NONE), or award and reduction in one pass: a fixed amount where the base is not zero (DIRECT_FIXED), or
# clip(number x base, cap) (DIRECT_CAPPED: rate or external share without threshold or tiers, per unit)
DIRECT_NONE, DIRECT_FIXED, DIRECT_CAPPED = range(3)


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
    order: np.ndarray  # (rules,) int64: the order the kernels evaluate the rules in (results stay in rule order)
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
    ints = np.zeros((r, 9), dtype=np.int64)
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
                   len(rule.eligibility), domains[rule.domain], direct_path(rule))
    return CompiledRules(
        columns=wide + narrow, wide=wide, narrow=narrow, ints=ints,
        params=np.array([kinds.packed(rule) for rule in rules]).reshape(r, kinds.NPARAM),
        intensity=np.array([rule.intensity.value for rule in rules]),
        share=np.array([rule.district_share.value for rule in rules]),
        tiers=tiers, cond_ints=cond_ints, cond_values=cond_values, order=evaluation_order(ints),
        n_domains=len(domains), inclusive=policy.reading.threshold_inclusive, policy=policy,
    )


def direct_path(rule) -> int:
    """How the kernel reduces the rule (:data:`DIRECT_NONE`, :data:`DIRECT_FIXED` or :data:`DIRECT_CAPPED`): in one
    pass where its award is one formula of its base column, with at most one eligibility condition and intensity 1;
    the numbers are the kind's packed ones (amount or rate first, cap second)."""
    if len(rule.eligibility) > 1 or rule.intensity.value != 1.0:
        return DIRECT_NONE
    if rule.kind == "fixed":
        return DIRECT_FIXED
    numbers = kinds.packed(rule)
    if rule.kind in ("external_share", "per_unit") or (rule.kind == "rate" and not rule.tiers and numbers[3] == 0.0):
        return DIRECT_CAPPED
    return DIRECT_NONE


def evaluation_order(ints: np.ndarray) -> np.ndarray:
    """Rules by the column their base is read from, money columns first: a chunk's columns are then read front
    to back, which the hardware prefetcher streams (in policy order the kernel jumps between columns and runs
    at less than half the memory bandwidth).  Each rule's results are its own, so the order changes no bit.

    >>> evaluation_order(np.array([[0, 3, 0], [0, 5, 1], [0, 1, 0], [0, 2, 1]])).tolist()
    [3, 1, 2, 0]
    """
    return np.lexsort((ints[:, BASE], 1 - ints[:, BASE_WIDE])).astype(np.int64)


def column_matrix(compiled: CompiledRules, columns, into: tuple[np.ndarray, np.ndarray] | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Claimant attributes in the kernel's layout: money as (chunks, attributes, CHUNK) float64 and flags,
    counts and grades as (chunks, attributes, CHUNK) float32 (whole numbers, exact), chunk-major so
    that each chunk's columns lie together in memory.  The last chunk's tail is left as it is: no result depends
    on it.  With the kernels run as plain Python (``FISCALSIM_JIT=python``) flags and counts are float64 too:
    numba widens a float32 before arithmetic with a float64, NumPy's scalars would not.

    ``into``: buffers from :func:`layout_buffers` to write into (their first chunks are returned), so that a
    task laying out block after block touches the same memory instead of fresh pages each time."""
    n = len(columns[compiled.columns[0]])
    chunks = max(1, -(-n // CHUNK))
    full = n // CHUNK
    out = []
    buffers = into or layout_buffers(compiled, n)
    for names, buffer in zip((compiled.wide, compiled.narrow), buffers, strict=True):
        if len(buffer) < chunks:
            raise ValueError(f"layout buffers hold {len(buffer) * CHUNK:,} claimants, not {n:,}")
        matrix = buffer[:chunks]
        for a, name in enumerate(names):
            column = np.asarray(columns[name])
            matrix[:full, a, :] = column[:full * CHUNK].reshape(full, CHUNK)
            if full < chunks:  # past n nothing is written: the kernels stop at m, or mask the last 8
                matrix[full, a, :n - full * CHUNK] = column[full * CHUNK:n]
        out.append(matrix)
    return out[0], out[1]


def layout_buffers(compiled: CompiledRules, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Uninitialised buffers for :func:`column_matrix` of up to n claimants."""
    chunks = max(1, -(-n // CHUNK))
    narrow = np.float64 if jit.MODE == "python" else np.float32
    return (np.empty((chunks, max(len(compiled.wide), 1), CHUNK)),
            np.empty((chunks, max(len(compiled.narrow), 1), CHUNK), dtype=narrow))


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
def award_of(x64, x32, c, m, r, ints, params, tiers, inclusive, out):
    """Rule r's award by its kind for the first m claimants of chunk c, read straight from the chunk's columns
    (money float64; flags, counts and grades float32, which widen exactly): numba compiles the kind kernels
    once for each pair of widths, so no column is copied."""
    row = ints[r]
    code, base, tier, n_tiers = row[0], row[1], row[3], row[5]
    if n_tiers == 0:  # the tier column is not read
        if row[2]:
            kinds.award_into(code, x64[c, base], x64[c, base], m, params[r], tiers[r], 0, inclusive, out)
        else:
            kinds.award_into(code, x32[c, base], x32[c, base], m, params[r], tiers[r], 0, inclusive, out)
    elif row[2] and row[4]:
        kinds.award_into(code, x64[c, base], x64[c, tier], m, params[r], tiers[r], n_tiers, inclusive, out)
    elif row[2]:
        kinds.award_into(code, x64[c, base], x32[c, tier], m, params[r], tiers[r], n_tiers, inclusive, out)
    elif row[4]:
        kinds.award_into(code, x32[c, base], x64[c, tier], m, params[r], tiers[r], n_tiers, inclusive, out)
    else:
        kinds.award_into(code, x32[c, base], x32[c, tier], m, params[r], tiers[r], n_tiers, inclusive, out)


@_jit()
def rule_chunk(x64, x32, c, m, r, ints, params, intensity, tiers, cond_ints, cond_values, inclusive, out):
    """Rule r's award for the first m claimants of chunk c into out[:m]: kind, conditions, intensity."""
    award_of(x64, x32, c, m, r, ints, params, tiers, inclusive, out)
    for j in range(ints[r, 6]):
        attribute, is_wide, op = cond_ints[r, j, 0], cond_ints[r, j, 1], cond_ints[r, j, 2]
        if is_wide:
            condition_loop(x64[c, attribute], m, op, cond_values[r, j], out)
        else:
            condition_loop(x32[c, attribute], m, op, cond_values[r, j], out)
    if intensity[r] != 1.0:
        g = intensity[r]
        for i in range(m):
            out[i] = out[i] * g


def lanes_python(out, dom, lanes, n):
    """The reduction of one rule's awards on a chunk (``n`` a multiple of :data:`LANES`): ``lanes[k]`` the
    sequential sum of ``out[k], out[k + 8], ...``; ``dom[i]`` set to 1 where ``out[i] > 0``; the number of
    positive awards returned.  The plain-Python twin of :func:`lanes_into`."""
    for k in range(LANES):
        lanes[k] = 0.0
    hits = 0
    for i in range(n):
        lanes[i % LANES] += out[i]
        if out[i] > 0.0:
            dom[i] = 1
            hits += 1
    return hits


def direct_python(column, how, amount, cap, where, op, value, m, out, keep, dom, lanes, n):
    """A rule whose award is one formula of one column, reduced in the same pass (the plain-Python twin of
    :func:`direct_into`): ``how`` 1, a fixed amount where the column is not zero (:func:`sim.kinds.fixed_kernel`);
    2, ``clip(amount * column, cap)`` (rate or external share without threshold or tiers, per unit:
    :func:`sim.kinds.clip`); zero where the eligibility condition ``where <op> value`` fails (:data:`OPS`; op -1:
    none; :func:`condition_loop`); the first m claimants, zero past them.  With ``keep`` the awards go to ``out``
    too.
    """
    values = np.zeros(n)
    for i in range(m):
        x = float(column[i])  # float32 widens exactly; NumPy would multiply a float32 in float32
        if how == DIRECT_FIXED:
            values[i] = amount if x != 0.0 else 0.0
        else:
            values[i] = kinds.clip(amount * x, cap)
        w = float(where[i])
        if op >= 0 and not ((w == value) if op == 0 else ((w >= value) if op == 1 else (w < value))):
            values[i] = 0.0
    if keep:  # the groups of 8 claimants it reads, the last one's tail as zeros
        end = min(n, -(-m // LANES) * LANES)
        out[:end] = values[:end]
    return lanes_python(values, dom, lanes, n)


if jit.numba is not None:
    from llvmlite import ir
    from numba.core import types
    from numba.extending import intrinsic

    def _lane_loop(builder, groups, value_of, dom, lanes, out, keep, last=None):
        """Emit the reduction loop over ``groups`` groups of 8 awards (``value_of(j)`` the j-th group as an
        8-double vector); with ``last = (j, mask, more)`` then group j with the lanes outside the mask zero, and
        one zero vector where ``more`` (the chunk's tail, which the scalar reduction adds as 0.0: -0.0 + 0.0 is
        +0.0, so this too keeps every bit); return the positive count."""
        f64, i8, i64 = ir.DoubleType(), ir.IntType(8), ir.IntType(64)
        vector, flags, zero = ir.VectorType(f64, LANES), ir.VectorType(i8, LANES), ir.Constant(i64, 0)
        nothing = ir.Constant(vector, [0.0] * LANES)
        domain = builder.bitcast(dom.data, flags.as_pointer())
        kept = builder.bitcast(out.data, vector.as_pointer())
        popcount = builder.module.declare_intrinsic("llvm.ctpop", [i8])

        def step(j, total, hits, value):
            positive = builder.fcmp_ordered(">", value, nothing)
            where = builder.gep(domain, [j])
            builder.store(builder.or_(builder.load(where, align=1), builder.zext(positive, flags)), where, align=1)
            with builder.if_then(builder.icmp_unsigned("!=", keep, zero)):
                builder.store(value, builder.gep(kept, [j]), align=8)
            count = builder.zext(builder.call(popcount, [builder.bitcast(positive, i8)]), i64)
            return builder.fadd(total, value), builder.add(hits, count)

        entry = builder.block
        head, body, done = (builder.append_basic_block(f"lanes.{name}") for name in ("head", "body", "done"))
        builder.branch(head)
        builder.position_at_end(head)
        j, total, hits = builder.phi(i64), builder.phi(vector), builder.phi(i64)
        j.add_incoming(zero, entry)
        total.add_incoming(nothing, entry)
        hits.add_incoming(zero, entry)
        builder.cbranch(builder.icmp_unsigned("<", j, groups), body, done)
        builder.position_at_end(body)
        new_total, new_hits = step(j, total, hits, value_of(j))
        j.add_incoming(builder.add(j, ir.Constant(i64, 1)), builder.block)
        total.add_incoming(new_total, builder.block)
        hits.add_incoming(new_hits, builder.block)
        builder.branch(head)
        builder.position_at_end(done)
        if last is None:
            builder.store(total, builder.bitcast(lanes.data, vector.as_pointer()), align=8)
            return hits
        at, mask, more = last
        before = builder.block
        with builder.if_then(builder.icmp_unsigned("!=", builder.bitcast(mask, i8), ir.Constant(i8, 0))):
            part_total, part_hits = step(at, total, hits, builder.select(mask, value_of(at), nothing))
            part_block = builder.block
        final_total, final_hits = builder.phi(vector), builder.phi(i64)
        final_total.add_incoming(part_total, part_block)
        final_total.add_incoming(total, before)
        final_hits.add_incoming(part_hits, part_block)
        final_hits.add_incoming(hits, before)
        tail = builder.select(more, builder.fadd(final_total, nothing), final_total)
        builder.store(tail, builder.bitcast(lanes.data, vector.as_pointer()), align=8)
        return final_hits

    def _arrays(context, builder, sig, args):
        return [context.make_array(t)(context, builder, a) if isinstance(t, types.Array) else a
                for t, a in zip(sig.args, args)]

    @intrinsic
    def lanes_into(typingctx, out_type, dom_type, lanes_type, n_type):
        """:func:`lanes_python` as explicit 8-wide vector code: one vector add per 8 awards (lane k of the
        vector is lane k of the sum, added in order: the same IEEE additions, so the same bits), the
        comparison, the domain flags and the count in the same pass.  numba leaves such lane sums scalar
        (its SLP vectoriser is off, for miscompilations), at more than twice the cost."""
        signature = types.int64(out_type, dom_type, lanes_type, n_type)

        def codegen(context, builder, sig, args):
            out, dom, lanes, n = _arrays(context, builder, sig, args)
            vector = ir.VectorType(ir.DoubleType(), LANES)
            awards = builder.bitcast(out.data, vector.as_pointer())
            return _lane_loop(builder, builder.lshr(n, ir.Constant(n.type, 3)),
                              lambda j: builder.load(builder.gep(awards, [j]), align=8), dom, lanes, out,
                              ir.Constant(ir.IntType(64), 0))

        return signature, codegen

    @intrinsic
    def direct_into(typingctx, column_type, how_type, amount_type, cap_type, where_type, op_type, value_type, m_type,
                    out_type, keep_type, dom_type, lanes_type, n_type):
        """:func:`direct_python` as explicit 8-wide vector code: the award of each group of 8 claimants computed
        and reduced at once, never stored unless kept (float32 columns widen exactly, as in the kind kernels; the
        same IEEE operations and comparisons as :func:`sim.kinds.fixed_kernel`, :func:`sim.kinds.clip` and
        :func:`condition_loop`)."""
        signature = types.int64(column_type, how_type, amount_type, cap_type, where_type, op_type, value_type,
                                m_type, out_type, keep_type, dom_type, lanes_type, n_type)
        widths = [t.dtype == types.float32 for t in (column_type, where_type)]

        def codegen(context, builder, sig, args):
            column, how, amount, cap, where, op, value, m, out, keep, dom, lanes, n = _arrays(context, builder, sig,
                                                                                               args)
            f64, i64, i32 = ir.DoubleType(), ir.IntType(64), ir.IntType(32)
            vector = ir.VectorType(f64, LANES)
            nothing = ir.Constant(vector, [0.0] * LANES)

            def splat(x, of=vector):
                one = builder.insert_element(ir.Constant(of, ir.Undefined), x, ir.Constant(i32, 0))
                return builder.shuffle_vector(one, ir.Constant(of, ir.Undefined),
                                              ir.Constant(ir.VectorType(i32, LANES), [0] * LANES))

            def reader(array, narrow):
                source = builder.bitcast(array.data, ir.VectorType(ir.FloatType() if narrow else f64,
                                                                   LANES).as_pointer())

                def read(j):
                    raw = builder.load(builder.gep(source, [j]), align=4 if narrow else 8)
                    return builder.fpext(raw, vector) if narrow else raw
                return read

            base_of, where_of = reader(column, widths[0]), reader(where, widths[1])
            amounts, caps, values = splat(amount), splat(cap), splat(value)

            def fixed(j):
                return builder.select(builder.fcmp_unordered("!=", base_of(j), nothing), amounts, nothing)

            def capped(j):
                product = builder.fmul(amounts, base_of(j))
                high = builder.select(builder.fcmp_ordered(">", product, caps), caps, product)
                return builder.select(builder.fcmp_ordered("<", product, nothing), nothing, high)

            def eligible(award):
                def of(j):
                    w = where_of(j)
                    bound = builder.select(builder.icmp_signed("==", op, ir.Constant(i64, OPS["at_least"])),
                                           builder.fcmp_ordered(">=", w, values), builder.fcmp_ordered("<", w, values))
                    ok = builder.select(builder.icmp_signed("==", op, ir.Constant(i64, OPS["equals"])),
                                        builder.fcmp_ordered("==", w, values), bound)
                    return builder.select(ok, award(j), nothing)
                return of

            full = builder.lshr(m, ir.Constant(i64, 3))
            rest = builder.and_(m, ir.Constant(i64, LANES - 1))
            index = ir.Constant(ir.VectorType(i64, LANES), list(range(LANES)))
            mask = builder.icmp_unsigned("<", index, splat(rest, ir.VectorType(i64, LANES)))
            more = builder.icmp_unsigned("<", builder.mul(builder.add(full, builder.zext(
                builder.icmp_unsigned("!=", rest, ir.Constant(i64, 0)), i64)), ir.Constant(i64, LANES)), n)
            result = builder.alloca(i64)
            is_fixed = builder.icmp_signed("==", how, ir.Constant(i64, DIRECT_FIXED))
            has_condition = builder.icmp_signed(">=", op, ir.Constant(i64, 0))
            with builder.if_else(is_fixed) as (then, otherwise):  # one loop per formula, with or without condition
                for branch, formula in ((then, fixed), (otherwise, capped)):
                    with branch, builder.if_else(has_condition) as (conditioned, plain):
                        with conditioned:
                            builder.store(_lane_loop(builder, full, eligible(formula), dom, lanes, out, keep,
                                                     (full, mask, more)), result)
                        with plain:
                            builder.store(_lane_loop(builder, full, formula, dom, lanes, out, keep,
                                                     (full, mask, more)), result)
            return builder.load(result)

        return signature, codegen

else:
    lanes_into = lanes_python
    direct_into = direct_python


@_jit()
def direct_rule(x64, x32, c, m, r, ints, params, cond_ints, cond_values, out, keep, dom, lanes):
    """Rule r on chunk c by :func:`direct_into`, its base and its condition's column each of its own width."""
    how, base, amount, cap, chunk = ints[r, DIRECT], ints[r, BASE], params[r, 0], params[r, 1], x64.shape[2]
    attribute, is_wide, op, value = base, ints[r, BASE_WIDE], -1, 0.0  # no condition: the base column, unread
    if ints[r, N_COND] > 0:
        attribute, is_wide, op, value = cond_ints[r, 0, 0], cond_ints[r, 0, 1], cond_ints[r, 0, 2], cond_values[r, 0]
    if ints[r, BASE_WIDE]:
        if is_wide:
            return direct_into(x64[c, base], how, amount, cap, x64[c, attribute], op, value, m, out, keep, dom, lanes,
                               chunk)
        return direct_into(x64[c, base], how, amount, cap, x32[c, attribute], op, value, m, out, keep, dom, lanes,
                           chunk)
    if is_wide:
        return direct_into(x32[c, base], how, amount, cap, x64[c, attribute], op, value, m, out, keep, dom, lanes,
                           chunk)
    return direct_into(x32[c, base], how, amount, cap, x32[c, attribute], op, value, m, out, keep, dom, lanes, chunk)


@_jit()
def chunk_totals(x64, x32, n, c, ints, params, intensity, tiers, cond_ints, cond_values, order, n_domains, inclusive,
                 sums, counts, firms, gross, out, lanes, per_domain, anywhere):
    """Every rule on chunk c: lane sums, claimant counts per rule, claimant firms (all, per domain); and, where
    ``gross`` has a column per claimant, each claimant's award (rules x n) too.  ``out``, ``lanes``,
    ``per_domain`` and ``anywhere`` are scratch of the chunk's size, reused chunk after chunk."""
    chunk = x64.shape[2]
    m = min(chunk, n - c * chunk)
    out[m:] = 0.0  # stays zero past m: adding 0.0 leaves a lane unchanged
    per_domain[:, :] = 0  # 1 where a claimant has an award
    keep = gross.shape[0] == ints.shape[0] and gross.shape[1] == n
    for r in order:
        how, dom = ints[r, DIRECT], per_domain[ints[r, DOMAIN]]
        if how == DIRECT_NONE:
            rule_chunk(x64, x32, c, m, r, ints, params, intensity, tiers, cond_ints, cond_values, inclusive, out)
            counts[c, r] = lanes_into(out, dom, lanes, chunk)
        else:
            counts[c, r] = direct_rule(x64, x32, c, m, r, ints, params, cond_ints, cond_values, out, keep, dom, lanes)
        if keep:
            row = gross[r]
            for i in range(m):
                row[c * chunk + i] = out[i]
        sums[c, r] = lanes[0] + lanes[1] + lanes[2] + lanes[3] + lanes[4] + lanes[5] + lanes[6] + lanes[7]
    anywhere[:] = 0  # branch-free, domain by domain: vectorised loops
    for d in range(n_domains):
        flags = per_domain[d]
        found = np.int64(0)  # not a Python int: plain Python would add uint8 flags in uint8
        for i in range(m):
            found += flags[i]
            anywhere[i] |= flags[i]
        firms[c, 1 + d] += found
    found = np.int64(0)
    for i in range(m):
        found += anywhere[i]
    firms[c, 0] += found


@_jit()
def chunk_range(x64, x32, n, first, last, ints, params, intensity, tiers, cond_ints, cond_values, order, n_domains,
                inclusive, sums, counts, firms, gross):
    """Chunks first .. last - 1 in order, on one thread, with one set of scratch buffers."""
    chunk = x64.shape[2]
    out, lanes = np.zeros(chunk), np.zeros(LANES)
    per_domain, anywhere = np.zeros((n_domains, chunk), dtype=np.uint8), np.zeros(chunk, dtype=np.uint8)
    for c in range(first, last):
        chunk_totals(x64, x32, n, c, ints, params, intensity, tiers, cond_ints, cond_values, order, n_domains,
                     inclusive, sums, counts, firms, gross, out, lanes, per_domain, anywhere)


@_jit()
def fused_serial(x64, x32, n, ints, params, intensity, tiers, cond_ints, cond_values, order, n_domains, inclusive,
                 gross, runs=1):
    n_chunks, rules = x64.shape[0], ints.shape[0]
    sums = np.zeros((n_chunks, rules))
    counts = np.zeros((n_chunks, rules), dtype=np.int64)
    firms = np.zeros((n_chunks, n_domains + 1), dtype=np.int64)
    chunk_range(x64, x32, n, 0, n_chunks, ints, params, intensity, tiers, cond_ints, cond_values, order, n_domains,
                inclusive, sums, counts, firms, gross)
    return sums, counts, firms


@_jit(parallel=True)
def fused_parallel(x64, x32, n, ints, params, intensity, tiers, cond_ints, cond_values, order, n_domains, inclusive,
                   gross, runs):
    """``runs`` contiguous runs of chunks shared among the threads (each run one stream through memory, one set
    of scratch); a chunk's results are its own, so how the chunks are shared changes no bit."""
    n_chunks, rules = x64.shape[0], ints.shape[0]
    sums = np.zeros((n_chunks, rules))
    counts = np.zeros((n_chunks, rules), dtype=np.int64)
    firms = np.zeros((n_chunks, n_domains + 1), dtype=np.int64)
    runs = min(n_chunks, runs)
    for k in prange(runs):
        chunk_range(x64, x32, n, k * n_chunks // runs, (k + 1) * n_chunks // runs, ints, params, intensity, tiers,
                    cond_ints, cond_values, order, n_domains, inclusive, sums, counts, firms, gross)
    return sums, counts, firms


@_jit()
def chunk_awards(x64, x32, n, c, ints, params, intensity, tiers, cond_ints, cond_values, order, inclusive, gross):
    chunk = x64.shape[2]
    m = min(chunk, n - c * chunk)
    out = np.zeros(chunk)
    for r in order:
        rule_chunk(x64, x32, c, m, r, ints, params, intensity, tiers, cond_ints, cond_values, inclusive, out)
        row = gross[r]
        for i in range(m):
            row[c * chunk + i] = out[i]


@_jit()
def per_claimant_serial(x64, x32, n, ints, params, intensity, tiers, cond_ints, cond_values, order, inclusive, gross):
    for c in range(x64.shape[0]):
        chunk_awards(x64, x32, n, c, ints, params, intensity, tiers, cond_ints, cond_values, order, inclusive, gross)


@_jit(parallel=True)
def per_claimant_parallel(x64, x32, n, ints, params, intensity, tiers, cond_ints, cond_values, order, inclusive, gross):
    for c in prange(x64.shape[0]):
        chunk_awards(x64, x32, n, c, ints, params, intensity, tiers, cond_ints, cond_values, order, inclusive, gross)


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
            compiled.cond_values, compiled.order)


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
                   cond_ints=compiled.cond_ints[rows], cond_values=compiled.cond_values[rows],
                   order=evaluation_order(compiled.ints[rows]))
    return awards_per_claimant(part, columns, n)


def totals(policy: Policy, columns, compiled: CompiledRules | None = None,
           matrix: tuple[np.ndarray, np.ndarray] | None = None, n: int | None = None, awards: bool = False,
           awards_into: np.ndarray | None = None):
    """Per-rule (award, district) totals, claimant counts per rule, and claimant firms (all, per domain); with
    ``awards`` (compiled path only) also the (rules x n) per-claimant awards, computed in the same pass, in the
    start of the flat float64 buffer ``awards_into`` when given (reused block after block: fresh pages cost).

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
    size = (compiled.n_rules, n if awards else 0)  # the kernel writes every award: no need to zero the memory
    gross = np.empty(size) if awards_into is None or not awards else awards_into[:size[0] * size[1]].reshape(size)
    sums, counts, firms = kernel(x64, x32, n, *rule_arrays(compiled), compiled.n_domains, compiled.inclusive, gross,
                                 4 * jit.threads())
    found = _combine(sums, compiled), counts.sum(axis=0), firms.sum(axis=0)
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
