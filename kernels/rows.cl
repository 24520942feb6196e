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
#define row_of TYPED(row_of)
#define row_acc TYPED(row_acc)
#define grad_row TYPED(grad_row)
#define zero_row TYPED(zero_row)
#define xent_lse TYPED(xent_lse)
#define xent_ce TYPED(xent_ce)
#define xent_partial TYPED(xent_partial)
#define xent_backward TYPED(xent_backward)

/* Walks this work-item's share of the row. */
inline acc_t row_scan(__global const ELEM *x, int cols, __global const float *wts,
                      float cap, float icap, int flags) {
    const int lid = get_local_id(0);
    const int smooth = flags & F_SMOOTH;
    const int hasw = flags & F_WEIGHTS;
    acc_t a = {-FLT_MAX, 0.0f, 0.0f, 0.0f, -FLT_MAX, -1, 0.0f};
    const int n4 = cols >> 2;
    for (int k0 = lid; k0 < n4; k0 += WG * UNROLL) {
        float4 v[UNROLL];
#pragma unroll
        for (int u = 0; u < UNROLL; u++) {
            int k = k0 + u * WG;
            v[u] = k < n4 ? LD4(k, x) : (float4)(-INFINITY);
        }
#pragma unroll
        for (int u = 0; u < UNROLL; u++) {
            int k = k0 + u * WG;
            if (k < n4) {
                int j = 4 * k;
                float4 w4 = hasw ? vload4(k, wts) : (float4)(1.0f);
                acc_add(&a, capz(v[u].s0, cap, icap, flags), v[u].s0, j, w4.s0, smooth);
                acc_add(&a, capz(v[u].s1, cap, icap, flags), v[u].s1, j + 1, w4.s1, smooth);
                acc_add(&a, capz(v[u].s2, cap, icap, flags), v[u].s2, j + 2, w4.s2, smooth);
                acc_add(&a, capz(v[u].s3, cap, icap, flags), v[u].s3, j + 3, w4.s3, smooth);
            }
        }
    }
    for (int j = 4 * n4 + lid; j < cols; j += WG) {
        acc_add(&a, capz(LD(j, x), cap, icap, flags), LD(j, x), j, hasw ? wts[j] : 1.0f, smooth);
    }
    a.s -= a.c; /* the compensated sum; the merges add only log2(WG) times */
    a.c = 0.0f;
    return a;
}

inline __global ELEM *row_of(__global ELEM *x, prob_t p) {
    return x + ((p.row_base + get_group_id(0)) * p.stride - p.base_off);
}

/* Log-sum-exp of each row (no options). */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void xent_lse(__global ELEM *x, prob_t p, __global float *lse) {
    LOCALS;
    acc_t a = row_scan(row_of(x, p), p.cols, 0, 0.0f, 0.0f, 0);
    a = row_reduce(a, lm, ls, ld, lw, lr, li, 0);
    if (get_local_id(0) == 0) lse[p.prow0 + get_group_id(0)] = acc_lse(a, log(a.s));
}

/* The row's accumulator over its columns, merged over the work-group:
 * every work-item reaches both barriers; an ignored row scans nothing. */
inline acc_t row_acc(__global const ELEM *xr, int counted, __global const float *wts, prob_t p,
                     float icap, __local float *lm, __local float *ls, __local float *ld,
                     __local float *lw, __local float *lr, __local int *li) {
    acc_t a = row_scan(xr, counted ? p.cols : 0, wts + p.col0, p.cap, icap, p.flags);
    return row_reduce(a, lm, ls, ld, lw, lr, li, p.flags & F_SMOOTH);
}

/* Writes the gradient of a counted row's columns in place over xr (or
 * xr's values into xr, whose logits every work-item has read before the
 * last barrier), given m, s and lsm = log s of the whole vocabulary, lse, the
 * scale si, the target's weight wt and capped logit zt, and tl, the
 * target's column in the shard (outside [0, cols) when it is not there):
 *
 *   dz_j = si*(A*p_j - ec*w_j), A = (1-eps)w_t + ec*W + 2*lambda*lse, p_j = exp(z_j - m)/s
 *
 * with p_t - 1 from expm1 (nothing cancels as p_t -> 1) and p_t from exp,
 * not from pt1 + 1, which loses a small p_t (a target of weight 0 with
 * smoothing has only that term). With a soft cap each entry is multiplied
 * by 1 - (z/cap)^2. */
inline void grad_row(__global ELEM *xr, __global const float *wts, prob_t p, float icap,
                     float m, float s, float lsm, float lse, float si, float wt, float zt, int tl) {
    const int lid = get_local_id(0);
    const int flags = p.flags, cols = p.cols;
    const float cap = p.cap;
    const float ec = p.eps / (float)p.vocab;
    const float zterm = (flags & F_ZLOSS) ? 2.0f * p.zl * lse : 0.0f;
    const float A = (1.0f - p.eps) * wt + ec * p.W + zterm;
    const float aa = si * A / s;
    const float bb = si * ec;
    const float dt = (zt - m) - lsm;
    const float pt1 = expm1(dt);
    float gt = si * ((1.0f - p.eps) * wt * pt1 + (ec * p.W + zterm) * exp(dt) - ec * wt);
    if (flags & F_SOFTCAP) { float r = zt * icap; gt *= 1.0f - r * r; }
    if (isnan(lse)) { gt = NAN; m = NAN; } /* every p_j becomes NaN, as the reference */
    const int hasw = flags & F_WEIGHTS;
    __global const float *ws = wts + p.col0;
    const int n4 = cols >> 2;
    for (int k = lid; k < n4; k += WG) {
        float4 z = LD4(k, xr);
        float4 w4 = hasw ? vload4(k, ws) : (float4)(1.0f);
        if (flags & F_SOFTCAP) z = cap * tanh(z * icap);
        float4 g = aa * exp(z - m) - bb * w4;
        if (flags & F_SOFTCAP) { float4 r = z * icap; g *= 1.0f - r * r; }
        int d = tl - 4 * k;
        if (d == 0) g.s0 = gt;
        if (d == 1) g.s1 = gt;
        if (d == 2) g.s2 = gt;
        if (d == 3) g.s3 = gt;
        ST4(g, k, xr);
    }
    for (int j = 4 * n4 + lid; j < cols; j += WG) {
        float z = capz(LD(j, xr), cap, icap, flags);
        float g = aa * exp(z - m) - bb * (hasw ? ws[j] : 1.0f);
        if (flags & F_SOFTCAP) { float r = z * icap; g *= 1.0f - r * r; }
        ST((j == tl) ? gt : g, j, xr);
    }
}

/* Zeroes the row: an ignored row's gradient. */
inline void zero_row(__global ELEM *xr, int cols) {
    const int n4 = cols >> 2;
    for (int k = get_local_id(0); k < n4; k += WG) ST4((float4)(0.0f), k, xr);
    for (int j = 4 * n4 + get_local_id(0); j < cols; j += WG) ST(0.0f, j, xr);
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
    __global ELEM *xr = row_of(x, p);
    const int row = p.prow0 + (int)get_group_id(0); /* index of the per-row arrays */
    const int t = targets[row];
    const int counted = t >= 0; /* uniform across the work-group */
    const float icap = (p.flags & F_SOFTCAP) ? 1.0f / p.cap : 0.0f;
    const float zt = counted ? capz(LD(t, xr), p.cap, icap, p.flags) : 0.0f; /* read before any write */
    acc_t a = row_acc(xr, counted, wts, p, icap, lm, ls, ld, lw, lr, li);
    /* The last barrier is behind us: from here on, work-items only write. */

    const float lsm = log(a.s);
    const float lse = acc_lse(a, lsm);
    const float wt = (counted && (p.flags & F_WEIGHTS)) ? wts[t] : 1.0f;
    const float ec = p.eps / (float)p.cols;
    float L = (1.0f - p.eps) * wt * ((a.m - zt) + lsm);
    if (p.flags & F_SMOOTH) L += ec * (p.W * lsm - a.d);
    if (p.flags & F_ZLOSS) L += p.zl * lse * lse;
    if (isnan(lse)) L = NAN;
    if (get_local_id(0) == 0) {
        loss[row] = counted ? L : 0.0f;
        lse_out[row] = counted ? lse : 0.0f;
        correct[row] = (counted && a.idx == t && !isnan(L)) ? 1 : 0;
    }
    if (p.grad && !counted) zero_row(xr, p.cols);
    if (p.grad && counted) grad_row(xr, wts, p, icap, a.m, a.s, lsm, lse, scale[row], wt, zt, t);
}

/* The partial of each counted row over the shard's columns: max, Σ exp(z
 * - max), Σ w (z - max), Σ w, the raw logits' max and its first class
 * (col0 + its column, -1 when every z is -inf) and, when the target is a column of the
 * shard, its capped logit. Ignored rows' entries are not written. */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void xent_partial(__global ELEM *x, prob_t p, __global const int *targets, __global const float *wts,
                  __global float *pm, __global float *ps, __global float *pd, __global float *pw,
                  __global float *pr, __global int *parg, __global float *pzt, __global uchar *phas) {
    LOCALS;
    __global ELEM *xr = row_of(x, p);
    const int row = p.prow0 + (int)get_group_id(0);
    const int t = targets[row];
    const int counted = t >= 0;
    const int tl = t - p.col0;
    const int has = counted && tl >= 0 && tl < p.cols;
    const float icap = (p.flags & F_SOFTCAP) ? 1.0f / p.cap : 0.0f;
    const float zt = has ? capz(LD(tl, xr), p.cap, icap, p.flags) : 0.0f;
    acc_t a = row_acc(xr, counted, wts, p, icap, lm, ls, ld, lw, lr, li);
    if (get_local_id(0) == 0 && counted) {
        pm[row] = a.m == -FLT_MAX ? -INFINITY : a.m;
        ps[row] = (isinf(a.m) && a.m > 0) ? NAN : a.s;
        pd[row] = a.d;
        pw[row] = a.w;
        pr[row] = a.r == -FLT_MAX ? -INFINITY : a.r;
        parg[row] = a.idx < 0 ? -1 : p.col0 + a.idx;
        pzt[row] = zt;
        phas[row] = has;
    }
}

/* The gradient of the shard's columns in place, given each row's m, s
 * and lsm = log s merged over the whole vocabulary (NaN for a NaN row),
 * and the target's capped logit zt (from the shard that holds it). */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void xent_backward(__global ELEM *x, prob_t p, __global const int *targets, __global const float *wts,
                   __global const float *scale, __global const float *gm, __global const float *gs,
                   __global const float *glsm, __global const float *gzt) {
    __global ELEM *xr = row_of(x, p);
    const int row = p.prow0 + (int)get_group_id(0);
    const int t = targets[row];
    const float icap = (p.flags & F_SOFTCAP) ? 1.0f / p.cap : 0.0f;
    if (t < 0) zero_row(xr, p.cols);
    if (t >= 0) {
        const float wt = (p.flags & F_WEIGHTS) ? wts[t] : 1.0f;
        const float m = gm[row], lsm = glsm[row];
        grad_row(xr, wts, p, icap, m, gs[row], lsm, m + lsm, scale[row], wt, gzt[row], t - p.col0);
    }
}

#undef row_scan
#undef row_of
#undef row_acc
#undef grad_row
#undef zero_row
#undef xent_lse
#undef xent_ce
#undef xent_partial
#undef xent_backward
