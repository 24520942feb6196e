/*
 * rows.cl: the row kernels of xent.cl (see its opening comment), over
 * logits of one element type. The host's source holds this file once per
 * type, each time after elem.cl with ELEM_ID set: ELEM is the element,
 * LD/LD4 load one or four of them as float, ST/ST4 store float values
 * rounded to the type, and TYPED(name) suffixes the names (xent_ce_f32,
 * xent_ce_bf16, xent_ce_f16) so that one program holds every type. The
 * arithmetic is float whatever the type.
 */
#define row_scan TYPED(row_scan)
#define scan_cols TYPED(scan_cols)
#define scalar_col TYPED(scalar_col)
#define row_of TYPED(row_of)
#define row_acc TYPED(row_acc)
#define grad_row TYPED(grad_row)
#define grad_or_zero TYPED(grad_or_zero)
#define zero_row TYPED(zero_row)
#define xent_lse TYPED(xent_lse)
#define xent_ce TYPED(xent_ce)
#define xent_partial TYPED(xent_partial)
#define xent_backward TYPED(xent_backward)
#define partial_of TYPED(partial_of)
#define backward_of TYPED(backward_of)
#define xent_partial_split TYPED(xent_partial_split)
#define xent_backward_split TYPED(xent_backward_split)
#define xent_gather TYPED(xent_gather)
#define xent_lin_gather TYPED(xent_lin_gather)
#define xent_rank TYPED(xent_rank)
#define xent_widen TYPED(xent_widen)

/* The column of a row's i-th scalar column: i in the head (i < h), else
 * 4*n4 + i in the tail, past the n4 aligned float4s. */
inline int scalar_col(int i, int h, int n4) {
    return i < h ? i : 4 * n4 + i;
}

/* Adds this work-item's scalar columns numbered [i0, i1) to a, one at a
 * time: the row's i-th scalar column (scalar_col), which work-item i
 * mod RW of the row takes, in row_scan as in
 * grad_row (each work-item at most one when RW >= 8: kept in *ct). */
inline void scan_cols(acc_t *a, __global const ELEM *x, int h, int n4, int i0, int i1, __global const float *wts,
                      float cap, float icap, int flags, float *ct) {
    for (int i = LID; i < i1; i += RW) {
        if (i >= i0) {
            const int j = scalar_col(i, h, n4);
            const float z = LD(j, x);
            *ct = z;
            acc_add(a, capz(z, cap, icap, flags), z, j, (flags & F_WEIGHTS) ? wts[j] : 1.0f, flags & F_SMOOTH);
        }
    }
}

/* Walks this work-item's share of the row: its first h columns (h < 4,
 * before the first column whose address is a multiple of four elements,
 * see head_of) and the last cols - h mod 4 one at a time, the body between
 * as aligned float4s (LDA4: one wide load each). With keep (uniform: the
 * fused kernel's, for a row of at most 4*RC*RW columns, RW >= 8) it also
 * keeps its float4s in c (c[i] is float4 lid + i*RW, in registers: the
 * loop is unrolled) and its one scalar column, if any, in *ct, so that
 * the gradient pass reads nothing again (grad_row). Either way each
 * work-item adds its logits in the same order. */
inline acc_t row_scan(__global const ELEM *x, int cols, int h, __global const float *wts,
                      float cap, float icap, int flags, int arg, float4 *c, float *ct, int keep) {
    const int lid = LID;
    const int smooth = flags & F_SMOOTH;
    const int hasw = flags & F_WEIGHTS;
    acc_t a = {-FLT_MAX, -1.0f, 0.0f, 0.0f, -FLT_MAX, -1, 0.0f, 0.0f, 0.0f};
    const int n4 = (cols - h) >> 2;
    __global const ELEM *xa = x + h; /* aligned */
    __global const float *wa = hasw ? wts + h : wts;
    scan_cols(&a, x, h, n4, 0, h, wts, cap, icap, flags, ct); /* the head, first: the first max's column wins ties */
    if (keep) {
#pragma unroll
        for (int i = 0; i < RC; i++) {
            int k = lid + i * RW;
            c[i] = k < n4 ? LDA4(k, xa) : (float4)(-INFINITY);
            if (k < n4) acc_add4(&a, capz4(c[i], cap, icap, flags), c[i], h + 4 * k, hasw ? vload4(k, wa) : (float4)(1.0f), flags, smooth, arg);
        }
    } else {
        for (int k0 = lid; k0 < n4; k0 += RW * UNR) {
            float4 v[UNR];
#pragma unroll
            for (int u = 0; u < UNR; u++) {
                int k = k0 + u * RW;
                v[u] = k < n4 ? LDA4(k, xa) : (float4)(-INFINITY);
            }
#pragma unroll
            for (int u = 0; u < UNR; u++) {
                int k = k0 + u * RW;
                if (k < n4) acc_add4(&a, capz4(v[u], cap, icap, flags), v[u], h + 4 * k, hasw ? vload4(k, wa) : (float4)(1.0f), flags, smooth, arg);
            }
        }
    }
    scan_cols(&a, x, h, n4, h, cols - 4 * n4, wts, cap, icap, flags, ct); /* the tail */
    a.s -= a.c; /* the compensated sums; the merges add only log2(RW) times */
    a.d -= a.cd;
    a.w -= a.cw;
    a.c = a.cd = a.cw = 0.0f;
    return a;
}

/* Row g of the launch (the launch's rows are p.rows from row_base). */
inline __global ELEM *row_of(__global ELEM *x, prob_t p, int g) {
    return x + row_off(p, g);
}

/* The work-groups walk the launch's p.rows rows: group g computes rows g,
 * g + G, g + 2G, ... (G work-groups: one a row, or fewer, so that the rows
 * in flight are few enough for the cache to hold them between the fused
 * kernel's two passes; the host chooses, see device/opencl's tuning).
 * With PACK > 1, group g computes rows PACK·g + LANE (LANE < PACK, each
 * by its RW work-items), then PACK·(g + G) + LANE, ...; a lane past the
 * last row (ok 0) takes the last row's index (g stays in range for its
 * reads of the per-row arrays) but reads no logit and writes nothing.
 * The loop is uniform: every work-item of a group reaches every barrier. */
#if PACK > 1
#define FOR_ROWS(g, ok)                                                                                      \
    for (int r_ = (int)get_group_id(0) * PACK, g = min(r_ + LANE, p.rows - 1), ok = r_ + LANE < p.rows;     \
         r_ < p.rows;                                                                                        \
         r_ += (int)get_num_groups(0) * PACK, g = min(r_ + LANE, p.rows - 1), ok = r_ + LANE < p.rows)
#else
#define FOR_ROWS(g, ok) for (int g = (int)get_group_id(0), ok = 1; g < p.rows; g += (int)get_num_groups(0))
#endif

/* Log-sum-exp of each row (no options). */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void xent_lse(__global ELEM *x, prob_t p, __global float *lse) {
    LOCALS;
    float4 c[1];
    float ct;
    FOR_ROWS(g, ok) {
        const int cols = ok ? p.cols : 0;
        acc_t a = row_scan(row_of(x, p, g), cols, HEAD(row_off(p, g), cols), 0, 0.0f, 0.0f, 0, 0, c, &ct, 0);
        a = row_reduce(a, lm, ls, ld, lw, lr, li, 0);
        if (ok && LID == 0) lse[p.prow0 + g] = acc_lse(a, log1p(a.s));
    }
}

/* The row's accumulator over its columns, merged over the work-group:
 * every work-item reaches every barrier; an ignored row scans nothing.
 * A row without options (p.flags 0, the common case) is scanned by a copy
 * of row_scan compiled for it, its flags a constant. h (head_of, 0 for an
 * ignored row), c, ct and keep are row_scan's. */
inline acc_t row_acc(__global const ELEM *xr, int counted, int h, __global const float *wts, prob_t p,
                     float icap, __local float *lm, __local float *ls, __local float *ld,
                     __local float *lw, __local float *lr, __local int *li, float4 *c, float *ct, int keep) {
    const int cols = counted ? p.cols : 0;
    acc_t a = p.flags == 0 ? row_scan(xr, cols, h, wts, 0.0f, 0.0f, 0, 1, c, ct, keep)
                           : row_scan(xr, cols, h, wts + p.col0, p.cap, icap, p.flags, 1, c, ct, keep);
    return row_reduce(a, lm, ls, ld, lw, lr, li, p.flags & F_SMOOTH);
}

/* Writes the gradient of a counted row's columns in place over xr (or
 * xr's values into xr, whose logits every work-item has read before the
 * last barrier), given m, s = Σ exp(z - m) and lsm = log s (from log1p of
 * the rest) of the whole vocabulary, lse, the
 * scale si, the target's weight wt and capped logit zt, and tl, the
 * target's column in the shard (outside [0, cols) when it is not there):
 *
 *   dz_j = si*(A*p_j - ec*w_j), A = (1-eps)w_t + ec*W + 2*lambda*lse, p_j = exp(z_j - m)/s
 *
 * with p_t - 1 from expm1 (nothing cancels as p_t -> 1) and p_t from exp,
 * not from pt1 + 1, which loses a small p_t (a target of weight 0 with
 * smoothing has only that term). With a soft cap each entry is multiplied
 * by 1 - tanh^2 = 1 - (z/cap)^2, and with a temperature by 1/tau (p.ts: z
 * is capz's, the gradient the raw logits'). With keep the logits are row_scan's c and ct, this
 * work-item's own, and the row is not read again: one read and one write.
 * Without, each work-item walks its columns backwards (REV): the end of
 * the row, read last by the first pass, is the likeliest still in cache.
 * flags are p.flags, or 0 for a row without options (see row_acc).
 */
inline void grad_row(__global ELEM *xr, int h, __global const float *wts, prob_t p, int flags, float icap,
                     float m, float s, float lsm, float lse, float si, float ex, float wt, float zt, int tl,
                     const float4 *c, float ct, int keep) {
    const int lid = LID;
    const int cols = p.cols;
    const float cap = p.cap;
    const gcoef_t gc = grad_coef(p, flags, m, s, lsm, lse, si, ex, wt, zt);
    const float aa = gc.aa, bb = gc.bb, gt = gc.gt;
    m = gc.m;
    const int hasw = flags & F_WEIGHTS;
    __global const float *ws = wts + p.col0;
    __global const float *wa = hasw ? ws + h : ws;
    __global ELEM *xa = xr + h; /* aligned: see row_scan */
    const int n4 = (cols - h) >> 2;
    if (keep) {
#pragma unroll
        for (int i = 0; i < RC; i++) {
            int k = lid + i * RW;
            if (k < n4) STA4(grad4(c[i], hasw ? vload4(k, wa) : (float4)(1.0f), cap, icap, flags, aa, bb, m, tl - h - 4 * k, gt), k, xa);
        }
    } else {
        /* lid, lid + RW, ..., last: backwards with REV */
        const int last = n4 > lid ? lid + (n4 - 1 - lid) / RW * RW : lid - RW;
        const int step = REV ? -RW : RW;
        for (int i = 0, k = REV ? last : lid; i <= (last - lid) / RW; i++, k += step)
            STA4(grad4(LDA4(k, xa), hasw ? vload4(k, wa) : (float4)(1.0f), cap, icap, flags, aa, bb, m, tl - h - 4 * k, gt), k, xa);
    }
    for (int i = lid; i < cols - 4 * n4; i += RW) { /* the head, then the tail */
        const int j = scalar_col(i, h, n4);
        ST((j == tl) ? gt : grad1(keep ? ct : LD(j, xr), hasw ? ws[j] : 1.0f, cap, icap, flags, gc), j, xr);
    }
}

/* Zeroes the row: an ignored row's gradient. */
inline void zero_row(__global ELEM *xr, int cols) {
    const int n4 = cols >> 2;
    for (int k = LID; k < n4; k += RW) ST4((float4)(0.0f), k, xr);
    for (int j = 4 * n4 + LID; j < cols; j += RW) ST(0.0f, j, xr);
}

/* The gradient of row xr (zero for an ignored one): grad_row, compiled
 * once for rows without options (flags 0) and once for the others. */
inline void grad_or_zero(__global ELEM *xr, int h, __global const float *wts, prob_t p, float icap, int counted,
                         float m, float s, float lsm, float lse, float si, float ex, float wt, float zt, int tl,
                         const float4 *c, float ct, int keep) {
    if (!counted) zero_row(xr, p.cols);
    else if (p.flags == 0 && ex == 0.0f) grad_row(xr, h, wts, p, 0, icap, m, s, lsm, lse, si, 0.0f, wt, zt, tl, c, ct, keep);
    else grad_row(xr, h, wts, p, p.flags, icap, m, s, lsm, lse, si, ex, wt, zt, tl, c, ct, keep);
}

/* Forward (p.grad == 0) or fused forward + backward over the whole
 * vocabulary (col0 0, vocab cols). Ignored rows run through the same code
 * with nothing to scan and are masked at the end (see the opening
 * comment: no early return). */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void xent_ce(__global ELEM *x, prob_t p, __global const int *targets, __global const float *wts,
             __global const float *scale, __global float *loss, __global float *lse_out,
             __global uchar *correct) {
    LOCALS;
    /* A fused row of at most 4*RC*RW columns is kept in registers: read once.
     * KEEP_ROWS is the build's half of that test, a constant; written as
     * the condition of ?:, it draws no compiler's warning. */
    const int keep = KEEP_ROWS ? p.grad && (p.cols >> 2) <= RC * RW : 0;
    float4 c[RC > 0 ? RC : 1];
    float ct = 0.0f;
    const float icap = p.ic;
    FOR_ROWS(g, ok) {
        __global ELEM *xr = row_of(x, p, g);
        const int row = p.prow0 + g; /* index of the per-row arrays */
        const int t = ok ? targets[row] : -1; /* a lane past the last row: as an ignored row, unwritten */
        const int counted = t >= 0; /* uniform across the work-group */
        const float zt = counted ? capz(LD(t, xr), p.cap, icap, p.flags) : 0.0f; /* read before any write */
        const int h = HEAD(row_off(p, g), counted ? p.cols : 0);
        acc_t a = row_acc(xr, counted, h, wts, p, icap, lm, ls, ld, lw, lr, li, c, &ct, keep);
        /* The last barrier is behind us: from here on, work-items only write. */

        const float lsm = log1p(a.s);
        const float lse = acc_lse(a, lsm);
        const float wt = (counted && (p.flags & F_WEIGHTS)) ? wts[t] : 1.0f;
        const float ec = p.eps / (float)p.cols;
        float L = (1.0f - p.eps) * wt * ((a.m - zt) + lsm);
        if (p.flags & F_SMOOTH) L += ec * (p.W * lsm - a.d);
        if (p.flags & F_ZLOSS) L += p.zl * lse * lse;
        if (isnan(lse)) L = NAN;
        if (ok && LID == 0) {
            loss[row] = counted ? L : 0.0f;
            lse_out[row] = counted ? lse : 0.0f;
            correct[row] = (counted && a.idx == t && !isnan(L)) ? 1 : 0;
        }
        if (p.grad && ok) grad_or_zero(xr, h, wts, p, icap, counted, a.m, 1.0f + a.s, lsm, lse, scale[row], 0.0f, wt, zt, t, c, ct, keep);
    }
}

/* Writes entry o of the partials (see xent_partial) of the row at xr,
 * element offset off in its buffer, whose target is t, over the columns
 * of p (a shard of the vocabulary, or of a row: xent_partial_split).
 * Every work-item reaches every barrier; an ignored row's entry is not
 * written. */
inline void partial_of(__global ELEM *xr, ulong off, prob_t p, int t, size_t o, __global const float *wts,
                       __global float *pm, __global float *ps, __global float *pd, __global float *pw,
                       __global float *pr, __global int *parg, __global float *pzt, __global uchar *phas,
                       __local float *lm, __local float *ls, __local float *ld, __local float *lw,
                       __local float *lr, __local int *li) {
    float4 c[1];
    float ct;
    const float icap = p.ic;
    const int counted = t >= 0;
    const int tl = t - p.col0;
    const int has = counted && tl >= 0 && tl < p.cols;
    const float zt = has ? capz(LD(tl, xr), p.cap, icap, p.flags) : 0.0f;
    acc_t a = row_acc(xr, counted, HEAD(off, counted ? p.cols : 0), wts, p, icap, lm, ls, ld, lw, lr, li, c, &ct, 0);
    if (LID == 0 && counted) {
        pm[o] = a.m == -FLT_MAX ? -INFINITY : a.m;
        ps[o] = (isinf(a.m) && a.m > 0) ? NAN : a.s;
        pd[o] = a.d;
        pw[o] = a.w;
        pr[o] = a.r == -FLT_MAX ? -INFINITY : a.r;
        parg[o] = a.idx < 0 ? -1 : p.col0 + a.idx;
        pzt[o] = zt;
        phas[o] = has;
    }
}

/* The partial of each counted row over the shard's columns: max, Σ exp(z
 * - max) - 1 (the rest: -1 for only -inf), Σ w (z - max), Σ w, the raw logits' max and its first class
 * (col0 + its column, -1 when every z is -inf) and, when the target is a column of the
 * shard, its capped logit. Ignored rows' entries are not written. */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void xent_partial(__global ELEM *x, prob_t p, __global const int *targets, __global const float *wts,
                  __global float *pm, __global float *ps, __global float *pd, __global float *pw,
                  __global float *pr, __global int *parg, __global float *pzt, __global uchar *phas) {
    LOCALS;
    FOR_ROWS(g, ok) {
        const int row = p.prow0 + g;
        partial_of(row_of(x, p, g), row_off(p, g), p, ok ? targets[row] : -1, row, wts, pm, ps, pd, pw, pr, parg, pzt, phas,
                   lm, ls, ld, lw, lr, li);
    }
}

/* Splits of rows (few rows, long: one work-group a row would leave most
 * compute units idle): the launch's work-group k takes split s = k / rows
 * of row g = k % rows, its columns [s·cs, min(cols, (s+1)·cs)) as a shard
 * of their own (split_of), so that rows × ceil(cols/cs) work-groups share
 * the rows; the host merges the splits' partials in order (ce.Partial's
 * Merge), then xent_backward_split writes each split's gradient from the
 * merged ones. The loop over k is uniform, as FOR_ROWS. A program built
 * with PACK > 1 (for short rows, which the host never splits) has no
 * split kernels. */
#if PACK == 1
#define FOR_SPLITS(g, s, cs) \
    for (int k_ = (int)get_group_id(0), g = k_ % p.rows, s = k_ / p.rows; k_ < p.rows * ((p.cols + (cs) - 1) / (cs)); \
         k_ += (int)get_num_groups(0), g = k_ % p.rows, s = k_ / p.rows)

/* xent_partial over the splits of each row (see FOR_SPLITS): split s of
 * the launch's row g is entry s·nrows + prow0 + g of the outputs. */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void xent_partial_split(__global ELEM *x, prob_t p, int cs, int nrows, __global const int *targets,
                        __global const float *wts, __global float *pm, __global float *ps, __global float *pd,
                        __global float *pw, __global float *pr, __global int *parg, __global float *pzt,
                        __global uchar *phas) {
    LOCALS;
    FOR_SPLITS(g, s, cs) {
        const int row = p.prow0 + g;
        const ulong off = row_off(p, g) + (ulong)s * cs;
        partial_of(x + off, off, split_of(p, s, cs), targets[row], (size_t)s * nrows + row, wts, pm, ps, pd, pw, pr,
                   parg, pzt, phas, lm, ls, ld, lw, lr, li);
    }
}
#endif

/* Writes the gradient of the row at xr (element offset off; row, its
 * index in the per-row arrays) over the columns of p (a shard, or a
 * split), then the fix's entries among them; nothing when ok is 0 (a
 * lane past the last row: FOR_ROWS). Every work-item reaches every
 * barrier. */
inline void backward_of(__global ELEM *xr, ulong off, prob_t p, int row, int ok, __global const int *targets,
                        __global const float *wts, __global const float *scale, __global const float *gm,
                        __global const float *gs, __global const float *glsm, __global const float *gzt, int fk,
                        __global const float *fex, __global const int *fcols, __global const float *fvals) {
    const float icap = p.ic;
    float4 c[1];
    const int t = ok ? targets[row] : -1;
    const float wt = (t >= 0 && (p.flags & F_WEIGHTS)) ? wts[t] : 1.0f;
    const int counted = t >= 0; /* an ignored row's entries are not read */
    const float m = counted ? gm[row] : 0.0f, s = counted ? gs[row] : 1.0f, lsm = counted ? glsm[row] : 0.0f;
    const float si = counted ? scale[row] : 0.0f, zt = counted ? gzt[row] : 0.0f;
    const float ex = (counted && fk > 0) ? fex[row] : 0.0f;
    if (ok) grad_or_zero(xr, HEAD(off, p.cols), wts, p, icap, counted, m, s, lsm, m + lsm, si, ex, wt, zt, t - p.col0, c, 0.0f, 0);
    /* The fix's entries (ce.Fix), once the whole row is written. The
     * barrier is unconditional: PoCL 3.1 mishandles one in a branch
     * (uniform as it is) inside the rows' loop. */
    barrier(CLK_GLOBAL_MEM_FENCE);
    for (int k = LID; counted && k < fk; k += RW) {
        const int j = fcols[(size_t)row * fk + k] - p.col0;
        if (j >= 0 && j < p.cols) ST(fvals[(size_t)row * fk + k], j, xr);
    }
}

/* The gradient of the shard's columns in place, given each row's m, s
 * = Σ exp(z - m) and lsm = log s (log1p of the rest) merged over the
 * whole vocabulary (NaN for a NaN row),
 * and the target's capped logit zt (from the shard that holds it). */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void xent_backward(__global ELEM *x, prob_t p, __global const int *targets, __global const float *wts,
                   __global const float *scale, __global const float *gm, __global const float *gs,
                   __global const float *glsm, __global const float *gzt, int fk, __global const float *fex,
                   __global const int *fcols, __global const float *fvals) {
    FOR_ROWS(g, ok) {
        backward_of(row_of(x, p, g), row_off(p, g), p, p.prow0 + g, ok, targets, wts, scale, gm, gs, glsm, gzt, fk, fex,
                    fcols, fvals);
    }
}

#if PACK == 1
/* xent_backward over the splits of each row (see FOR_SPLITS). */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void xent_backward_split(__global ELEM *x, prob_t p, int cs, __global const int *targets,
                         __global const float *wts, __global const float *scale, __global const float *gm,
                         __global const float *gs, __global const float *glsm, __global const float *gzt, int fk,
                         __global const float *fex, __global const int *fcols, __global const float *fvals) {
    FOR_SPLITS(g, s, cs) {
        const ulong off = row_off(p, g) + (ulong)s * cs;
        backward_of(x + off, off, split_of(p, s, cs), p.prow0 + g, 1, targets, wts, scale, gm, gs, glsm, gzt, fk, fex,
                    fcols, fvals);
    }
}
#endif

#if PACK == 1
/* A distillation's gathers (device.Gatherer), for matrices the device
 * holds: entry e < n of row e / k and column c = cols[e] (-1: none, 0)
 * is the raw logit (no cap, no temperature; the host applies them):
 *
 *   xent_gather:      z[e] = x[row][c], the row at x + row·ld;
 *   xent_lin_gather:  z[e] = Σ_d H[row][d]·W[c][d] + bias[c], the products
 *                     fma'd in order of d from 0 and the bias added last,
 *                     as linear.cl's lin_z: on its path, the same bits as
 *                     the tiles' logits that the row's sums are made of.
 *
 * One work-item an entry; no barrier. */
__kernel void xent_gather(__global const ELEM *x, const ulong ld, const int k, const ulong n,
                          __global const int *cols, __global float *z) {
    const size_t e = get_global_id(0);
    if (e < n) {
        const int c = cols[e];
        z[e] = c >= 0 ? LD(c, x + (e / k) * ld) : 0.0f;
    }
}

__kernel void xent_lin_gather(__global const ELEM *H, const ulong ldh, __global const ELEM *W, const ulong ldw,
                              __global const float *bias, const int hasb, const int D, const int k, const ulong n,
                              __global const int *cols, __global float *z) {
    const size_t e = get_global_id(0);
    if (e < n) {
        const int c = cols[e];
        float s = 0.0f;
        if (c >= 0) {
            __global const ELEM *h = H + (e / k) * ldh, *w = W + (size_t)c * ldw;
            for (int d = 0; d < D; d++) s = fma(LD(d, h), LD(d, w), s);
            if (hasb) s += bias[c];
        }
        z[e] = s;
    }
}

/* y[i] = x[i] as float, i < n (grid-stride): a held half-precision W
 * widened on the device for a call that takes float32 (CLBlast's
 * products, or hidden states of another type). */
__kernel void xent_widen(__global const ELEM *x, const ulong n, __global float *y) {
    for (size_t i = get_global_id(0); i < n; i += get_global_size(0)) y[i] = LD(i, x);
}

/* The rank pass (ce.Rank; device.Ranker) of the rows of a matrix the
 * device holds: given row g's max m and target logit zt as the loss sees
 * them, merged over the whole vocabulary (gm, gzt; a row of target -1 is
 * one the host skips: ignored, or of a NaN sum), gr[g] counts its columns
 * whose logit z (capz) is strictly greater than zt, the target's own
 * column never (another device's rounding of it), and ge[g] is
 * Σ_j exp(z_j - m)·(z_j - m), a term whose exp is 0 adding 0 (a -Inf
 * logit's, or one of z_j - m past float's range), with z taken as m
 * where it is above it and computed (soft cap, temperature: another
 * device's rounding of the max). Each work-item sums its columns (Kahan),
 * then a tree over the work-group, the lower index's on the left. */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void xent_rank(__global ELEM *x, prob_t p, __global const int *targets, __global const float *gm,
               __global const float *gzt, __global int *gr, __global float *ge) {
    __local int ln[WG];
    __local float le[WG];
    const int lid = get_local_id(0);
    const int tr = p.flags & (F_SOFTCAP | F_TEMP);
    for (int g = (int)get_group_id(0); g < p.rows; g += (int)get_num_groups(0)) {
        const int t = targets[p.prow0 + g];
        const float m = t >= 0 ? gm[p.prow0 + g] : 0.0f, zt = t >= 0 ? gzt[p.prow0 + g] : 0.0f;
        __global const ELEM *xr = row_of(x, p, g);
        int n = 0;
        float e = 0.0f, c = 0.0f;
        for (int j = lid; t >= 0 && j < p.cols; j += WG) {
            float z = capz(LD(j, xr), p.cap, p.ic, p.flags);
            n += z > zt && j != t - p.col0;
            if (tr && z > m) z = m;
            const float d = z - m, ex = exp(d); /* d may overflow to -Inf (z = -3e38, m = 3e38): ex is 0 */
            if (ex != 0.0f) kahan(&e, &c, ex * d);
        }
        ln[lid] = n;
        le[lid] = e;
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int h = WG / 2; h > 0; h >>= 1) {
            if (lid < h) {
                ln[lid] += ln[lid + h];
                le[lid] += le[lid + h];
            }
            barrier(CLK_LOCAL_MEM_FENCE);
        }
        if (lid == 0 && t >= 0) { /* ln[0] and le[0]: the next row's first writer of them is this work-item */
            gr[p.prow0 + g] = ln[0];
            ge[p.prow0 + g] = le[0];
        }
    }
}
#endif

#undef row_scan
#undef scan_cols
#undef scalar_col
#undef row_of
#undef row_acc
#undef grad_row
#undef grad_or_zero
#undef FOR_ROWS
#undef FOR_SPLITS
#undef zero_row
#undef xent_lse
#undef xent_ce
#undef xent_partial
#undef xent_backward
#undef partial_of
#undef backward_of
#undef xent_partial_split
#undef xent_backward_split
#undef xent_gather
#undef xent_lin_gather
#undef xent_rank
#undef xent_widen
