/*
 * xent.cl: softmax cross-entropy over the rows of a matrix of float32,
 * bfloat16 or float16 logits (the row kernels are in rows.cl, once per
 * element type; see elem.cl). The arithmetic is float.
 *
 * Algorithm. One work-group computes one row (or, launched with fewer
 * groups than rows, one row after another: rows.cl's FOR_ROWS). Each
 * work-item walks its share of the row four logits at a time (vload4 from
 * an element-aligned address, or, with ALIGN, one wide load from the
 * first column at a multiple of four elements, the up to three before it
 * scalar; the tail is scalar), one compare and branch for the four
 * (acc_add4), and keeps an online (max m, rest s = Σ exp(z-m) - 1, argmax)
 * triple: s leaves out the max's own term, exp(0) = 1, so
 * that it keeps its relative precision however small it is (p_max -> 1,
 * where 1 + s rounds to 1 in float); a larger z makes it (1 + s)·exp(m_old
 * - z), the old max's term joining it, and s is a compensated (Kahan) sum,
 * accurate however many terms one work-item adds (a row of 131075 at WG 8
 * was off by 1e-5 with a plain sum). Empty, s is -1 (a sum of 0). The triples of
 * the work-items are merged in local memory by a tree of WG/2, WG/4, ...
 * steps, the max with the smallest index winning ties. Barriers are
 * unconditional (every work-item reaches every barrier): NVIDIA's OpenCL
 * and PoCL 3.1 have neither subgroups nor work-group collectives, and PoCL
 * miscompiles barriers in divergent code. The max starts at -FLT_MAX, not
 * -INFINITY: -inf - (-inf) is NaN, -inf - (-FLT_MAX) is -inf, exp gives 0.
 *
 * No kernel returns early, not even uniformly across the work-group: on
 * Intel AVX-512 CPUs, PoCL 3.1's default work-group method (loopvec)
 * turned `if (t < 0) { ...; return; }` before row_reduce's barriers into
 * code that crashed in the first launch (a segmentation fault, or its
 * assertions on the local memory size and on buffer migration), while its
 * loops and repl methods ran it. An ignored row (target < 0) therefore
 * takes the same path as the others: it scans no column (its loop bound
 * is 0), reaches every barrier, and is masked at the end (loss 0, lse 0,
 * a zero gradient row). Nothing is read at x[t] for t < 0.
 *
 * From m and s: lse = m + log1p(s) and, relative to the max as PyTorch's
 * log_softmax, with ls = log1p(s) (exact as p_max -> 1, where the loss is
 * about 1 - p_t), loss = (1-eps)*w_t*((m - z_t) + ls)
 *                   + (eps/C)*(W*ls - Σ_j w_j*(z_j - m)) + lambda*lse^2.
 * The smoothing sum Σ w_j (z_j - m) is carried online with Σ w_j, rescaled
 * when m moves. A row with +inf (m = +inf) or only -inf (s = -1) gives NaN.
 *
 * The fused kernel then makes a second pass over the row (from the
 * work-item's registers where the row fits, RC below; else from cache) and
 * writes dL/dz_j = scale*(a*exp(z_j - m) - b*w_j) with a = A/s, in place
 * or to another buffer; the target column comes from
 * p_t - 1 = expm1((z_t - m) - log s), so nothing cancels as p_t -> 1.
 * With a soft cap, z <- cap*tanh(z/cap) on load and the gradient is
 * multiplied by 1 - (z/cap)^2.
 *
 * All offsets are size_t: (row_base + row) * stride - base_off, so that
 * matrices past 2^31 elements index correctly (row_base/base_off let the
 * host run chunks and let tests check the arithmetic without 8 GB).
 * No -cl-fast-relaxed-math: it assumes no infinities.
 *
 * Tunables (-D): WG, the work-group size (a power of two); UNROLL, the
 * float4 loads in flight per work-item and loop step (UNROLL_HALF for
 * bfloat16 and float16 rows); RC, the float4s of
 * a row each work-item keeps in registers between the fused kernel's two
 * passes (0: none): a row of at most 4*RC*WG columns is read once and
 * written once (rows.cl's row_scan and grad_row), a longer one read twice
 * (the second time mostly from the cache); REV, 1 when the second pass
 * walks each work-item's columns backwards (from what the first read last,
 * the likeliest in cache), 0 forwards; ALIGN, the element types whose rows
 * are read and written in aligned four-element accesses past a scalar
 * head (1 float, 2 the half types; see elem.cl's LDA4); PACK, the rows of
 * one work-group (a power of two dividing WG, default 1): each row is
 * computed by RW = WG/PACK consecutive work-items as above, RW taking
 * WG's place, so that short rows keep every work-item busy (the host
 * builds a second program with PACK > 1 for them: device/opencl's
 * Tuning.Pack). The host launches one work-group a row (PACK rows) or
 * fewer, each then taking rows G apart (rows.cl's FOR_ROWS).
 */
#ifndef WG
#define WG 256
#endif
#ifndef UNROLL
#define UNROLL 2
#endif
#ifndef UNROLL_HALF
#define UNROLL_HALF UNROLL
#endif
#ifndef RC
#define RC 0
#endif
#ifndef REV
#define REV 1
#endif
#ifndef ALIGN
#define ALIGN 1
#endif
#ifndef PACK
#define PACK 1
#endif
#if PACK < 1 || (PACK & (PACK - 1)) != 0 || WG % PACK != 0
#error "PACK, the rows of a work-group, must be a power of two dividing WG"
#endif
/* RW is the work-items of a row, WG/PACK; LID, this work-item's index
 * among its row's; LANE, its row's index in the work-group (rows.cl's
 * FOR_ROWS). With PACK 1 they are WG, the local id and 0. */
#define RW (WG / PACK)
#if PACK > 1
#define LID ((int)get_local_id(0) % RW)
#define LANE ((int)get_local_id(0) / RW)
#else
#define LID ((int)get_local_id(0))
#define LANE 0
#endif
/* KEEP_ROWS: whether this build may keep a fused row in registers (RC > 0,
 * and at least 8 work-items a row): rows.cl's xent_ce. */
#if RC > 0 && WG / PACK >= 8
#define KEEP_ROWS 1
#else
#define KEEP_ROWS 0
#endif

typedef struct {
    float m, s, d, w; /* max, Σ exp(z-m) - 1 (the max's own term left out), Σ w (z-m), Σ w (z capped) */
    float r;          /* the max of the raw logits, whose first column is idx */
    int idx;
    float c;      /* what s has lost to rounding (Kahan), 0 once merged */
    float cd, cw; /* what d and w have lost to rounding, likewise */
} acc_t;

/* Optional features are uniform run-time flags: one program serves all.
   Their values come from the host's build options (-DF_SMOOTH=...), which
   define them once, beside prob_t's Go twin. */
#if !defined(F_SMOOTH) || !defined(F_WEIGHTS) || !defined(F_SOFTCAP) || !defined(F_ZLOSS) || !defined(F_TEMP)
#error "build with -DF_SMOOTH -DF_WEIGHTS -DF_SOFTCAP -DF_ZLOSS -DF_TEMP (device/opencl's buildOptions)"
#endif

/* The load transform (ce.Problem.Transform): the soft cap, then the
 * temperature, z = cap*tanh(x*icap) with cap = c/tau and icap = 1/c, or
 * z = x*icap with icap = 1/tau (F_TEMP alone). */
inline float capz(float z, float cap, float icap, int flags) {
    return (flags & F_SOFTCAP) ? cap * tanh(z * icap) : (flags & F_TEMP) ? z * icap : z;
}

inline float4 capz4(float4 z, float cap, float icap, int flags) {
    return (flags & F_SOFTCAP) ? cap * tanh(z * icap) : (flags & F_TEMP) ? z * icap : z;
}

/* Adds y to the sum *s whose lost low bits are *c (Kahan). */
inline void kahan(float *s, float *c, float y) {
    y -= *c;
    const float t = *s + y;
    *c = (t - *s) - y;
    *s = t;
}

/* kahan for the smoothing sum, whose terms may be -Inf (a -Inf logit's):
 * once the sum is infinite nothing is lost, c is 0, not Inf - Inf, so
 * that the sum stays -Inf instead of becoming NaN. (The sum of exps, whose
 * terms are in [0, 1], takes the plain one.) */
inline void kahan_inf(float *s, float *c, float y) {
    kahan(s, c, y);
    if (isinf(*s)) *c = 0.0f;
}

/* Moves a's max to M > a->m: the rest becomes (1 + s)·exp(m - M) (the old
 * max's term joins it) and the smoothing sum Σ w (z - m) shifts by (m - M)·Σ w. */
inline void acc_rebase(acc_t *a, float M, int smooth) {
    const float r = exp(a->m - M);
    a->s = (1.0f + a->s) * r;
    a->c *= r;
    if (smooth) kahan_inf(&a->d, &a->cd, (a->m - M) * a->w);
    a->m = M;
}

/* Adds logit z, capped from zr (column j, weight wj), to a. The argmax
 * is that of the raw logits (the cap is monotonic; raw values are the same
 * on every device, capped ones may round apart). The sums are compensated
 * (Kahan): a work-item may add cols/WG terms in a row (131072 at WG 1),
 * and a plain float sum of n terms drifts by up to n ulps (the smoothing
 * sum, 6221 terms of about -10 at WG 1, was 1.3e-6 of the loss off). */
inline void acc_add(acc_t *a, float z, float zr, int j, float wj, int smooth) {
    float e;
    if (zr > a->r) {
        a->r = zr;
        a->idx = j;
    }
    if (z > a->m) { /* z's own term, 1, is left out; the old max's joins the rest */
        acc_rebase(a, z, smooth);
        e = 0.0f;
    } else {
        e = exp(z - a->m);
    }
    kahan(&a->s, &a->c, e);
    if (smooth) {
        kahan_inf(&a->d, &a->cd, wj * (z - a->m));
        kahan(&a->w, &a->cw, wj);
    }
}

/* Returns the first lane of v equal to m (3 when none is: m is v's max). */
inline int lane_of(float4 v, float m) {
    return v.s0 == m ? 0 : v.s1 == m ? 1 : v.s2 == m ? 2 : 3;
}

/* Adds the four logits z of columns j..j+3 (capped from raw; weights w4)
 * to a, as acc_add would one by one, with one branch for the four: their
 * max m4 (fmax: a NaN lane is not the max, its term makes s NaN), when
 * larger than a's, rescales the rest once and its first lane's term, 1,
 * is left out; the four terms are added in pairs, then to the Kahan sum.
 * With arg, the raw logits' max and its first column are kept too (the
 * same lane as the max's when nothing is capped). A plain row (flags 0)
 * costs a max of four, a compare, four exps and six adds per four logits. */
inline void acc_add4(acc_t *a, float4 z, float4 raw, int j, float4 w4, int flags, int smooth, int arg) {
    const int capped = flags & (F_SOFTCAP | F_TEMP); /* z/tau may tie where x does not */
    if (arg && capped) {
        const float r4 = fmax(fmax(raw.s0, raw.s1), fmax(raw.s2, raw.s3));
        if (r4 > a->r) {
            a->r = r4;
            a->idx = j + lane_of(raw, r4);
        }
    }
    const float m4 = fmax(fmax(z.s0, z.s1), fmax(z.s2, z.s3));
    float4 e;
    if (m4 > a->m) {
        const int l = lane_of(z, m4);
        if (arg && !capped) {
            a->r = m4;
            a->idx = j + l;
        }
        acc_rebase(a, m4, smooth);
        e = exp(z - m4);
        e.s0 = l == 0 ? 0.0f : e.s0;
        e.s1 = l == 1 ? 0.0f : e.s1;
        e.s2 = l == 2 ? 0.0f : e.s2;
        e.s3 = l == 3 ? 0.0f : e.s3;
    } else {
        e = exp(z - a->m);
    }
    kahan(&a->s, &a->c, (e.s0 + e.s1) + (e.s2 + e.s3));
    if (smooth) {
        const float4 dz = w4 * (z - a->m);
        kahan_inf(&a->d, &a->cd, (dz.s0 + dz.s1) + (dz.s2 + dz.s3));
        kahan(&a->w, &a->cw, (w4.s0 + w4.s1) + (w4.s2 + w4.s3));
    }
}

/* The gradient of four raw logits z (weights w4): aa*exp(z - m) - bb*w4,
 * transformed (capz4) and times 1 - t^2, t = tanh(z*icap), with a soft
 * cap, gt at lane d (the target's, when d is in [0, 4)); see grad_row. */
inline float4 grad4(float4 z, float4 w4, float cap, float icap, int flags, float aa, float bb, float m, int d, float gt) {
    float4 f = (float4)(1.0f);
    if (flags & F_SOFTCAP) {
        const float4 t = tanh(z * icap);
        z = cap * t;
        f = 1.0f - t * t;
    } else if (flags & F_TEMP) {
        z *= icap;
    }
    float4 g = aa * exp(z - m) - bb * w4;
    if (flags & F_SOFTCAP) g *= f;
    if (d == 0) g.s0 = gt;
    if (d == 1) g.s1 = gt;
    if (d == 2) g.s2 = gt;
    if (d == 3) g.s3 = gt;
    return g;
}

/* Merges b into a (a's index wins ties only when smaller): the rest of
 * the one at the max is kept, the other's whole sum 1 + s added to it,
 * rescaled (both at the max: the rests and one 1). */
inline void acc_merge(acc_t *a, acc_t b, int smooth) {
    float M = fmax(a->m, b.m);
    if (isnan(a->m) || isnan(b.m)) M = NAN;
    float ra = exp(a->m - M), rb = exp(b.m - M);
    int idx = a->idx;
    if (b.r > a->r || (b.r == a->r && b.idx >= 0 && (a->idx < 0 || b.idx < a->idx))) idx = b.idx;
    a->r = fmax(a->r, b.r);
    if (smooth) a->d = a->d + (a->m - M) * a->w + b.d + (b.m - M) * b.w;
    if (a->m == M && b.m == M) a->s = a->s + b.s + 1.0f;
    else if (a->m == M) a->s = a->s + (1.0f + b.s) * rb;
    else a->s = b.s + (1.0f + a->s) * ra;
    if ((isinf(M) && M > 0) || isnan(M)) a->s = NAN;
    a->w += b.w;
    a->m = M;
    a->idx = idx;
}

/* Returns the log-sum-exp m + log1p(s) of a merged accumulator (lsm =
 * log1p(s)): NaN for a row holding +inf (m = +inf; with one work-item no
 * merge has seen it), NaN or only -inf (s = -1). */
inline float acc_lse(acc_t a, float lsm) {
    if (!(a.s > -1.0f) || (isinf(a.m) && a.m > 0)) return NAN;
    return a.m + lsm;
}

/* Merges the accumulators of each n consecutive work-items (n a power of
 * two dividing the work-group's size) by a tree of n/2, n/4, ... steps in
 * local memory, the lower index's on the left; every work-item returns
 * its n's merged result (from the first of them's slots, which the
 * caller may overwrite only after another barrier). */
inline acc_t acc_tree(acc_t a, int n, __local float *lm, __local float *ls, __local float *ld,
                      __local float *lw, __local float *lr, __local int *li, int smooth) {
    const int lid = get_local_id(0), k = lid % n, base = lid - k;
    lm[lid] = a.m; ls[lid] = a.s; ld[lid] = a.d; lw[lid] = a.w; lr[lid] = a.r; li[lid] = a.idx;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int h = n / 2; h > 0; h >>= 1) {
        if (k < h) {
            acc_t x = {lm[lid], ls[lid], ld[lid], lw[lid], lr[lid], li[lid], 0.0f, 0.0f, 0.0f};
            acc_t y = {lm[lid + h], ls[lid + h], ld[lid + h], lw[lid + h], lr[lid + h], li[lid + h], 0.0f, 0.0f, 0.0f};
            acc_merge(&x, y, smooth);
            lm[lid] = x.m; ls[lid] = x.s; ld[lid] = x.d; lw[lid] = x.w; lr[lid] = x.r; li[lid] = x.idx;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    acc_t r = {lm[base], ls[base], ld[base], lw[base], lr[base], li[base], 0.0f, 0.0f, 0.0f};
    return r;
}

/* Reduces the row's accumulators over its RW work-items (acc_tree: the
 * work-group, or its PACK rows' each); every work-item returns its row's
 * merged result. The last barrier also fences global memory:
 * every work-item has read the target's logit (xent_ce's zt), which
 * another may overwrite with its gradient in place after it, and a
 * barrier orders only the memory its flags name (a local fence alone
 * leaves the read and the write unordered: a data race by the
 * specification, which Oclgrind reports). */
inline acc_t row_reduce(acc_t a, __local float *lm, __local float *ls, __local float *ld,
                        __local float *lw, __local float *lr, __local int *li, int smooth) {
    const acc_t r = acc_tree(a, RW, lm, ls, ld, lw, lr, li, smooth);
    barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE);
    return r;
}

#define LOCALS                                                                  \
    __local float lm[WG], ls[WG], ld[WG], lw[WG], lr[WG];                       \
    __local int li[WG]

/* prob_t is the call's one descriptor (the host's struct mirrors it field
 * for field, and a test checks the layout): where the rows are, the
 * options, and the shard of the vocabulary the columns are. Work-group g
 * computes logit row row_base + g, at x + (row_base + g) * stride -
 * base_off, and per-row entry prow0 + g. Targets are classes of the
 * vocabulary (-1: ignored); the columns are classes [col0, col0 + cols)
 * of vocab, and wts, when F_WEIGHTS, the weights of the whole vocabulary. */
typedef struct {
    ulong base_off, stride, row_base;
    int cols, prow0, flags, grad, col0, vocab, rows;
    float eps, zl, cap, W;
    float ic, ts; /* the transform's multiplier (capz's icap) and the temperature's 1/tau */
    int pad;      /* no trailing padding, whose size implementations disagree on (device/opencl's probArg) */
} prob_t;

/* The gradient of a counted row (rows.cl's grad_row, linear.cl's tiles),
 * given its m, s = Σ exp(z - m) and lsm = log s over the whole vocabulary,
 * lse, the scale si, a fix's Extra ex (0 without), the target's weight wt
 * and capped logit zt: with ec = eps/C and the temperature's 1/tau folded
 * into si and ex,
 *
 *   dz_j = aa*exp(z_j - m) - bb*w_j,  aa = (si*A + ex)/s,  bb = si*ec,
 *   A = (1-eps)w_t + ec*W + 2*lambda*lse,
 *
 * and at the target gt, from p_t - 1 = expm1(dt), dt = (z_t - m) - lsm,
 * so that nothing cancels as p_t -> 1, and p_t from exp (not pt1 + 1,
 * which loses a small p_t); a soft cap multiplies each entry by 1 -
 * (z/cap)^2 (grad1 and grad4 do for the others). A NaN lse makes m NaN:
 * every entry NaN, as the reference. */
typedef struct {
    float aa, bb, gt, m;
} gcoef_t;

inline gcoef_t grad_coef(prob_t p, int flags, float m, float s, float lsm, float lse, float si, float ex, float wt, float zt) {
    if (flags & F_TEMP) { si *= p.ts; ex *= p.ts; } /* the temperature's chain factor 1/tau */
    const float ec = p.eps / (float)p.vocab;
    const float zterm = (flags & F_ZLOSS) ? 2.0f * p.zl * lse : 0.0f;
    const float A = (1.0f - p.eps) * wt + ec * p.W + zterm;
    const float dt = (zt - m) - lsm;
    gcoef_t c;
    c.aa = (si * A + ex) / s;
    c.bb = si * ec;
    c.gt = si * ((1.0f - p.eps) * wt * expm1(dt) + (ec * p.W + zterm) * exp(dt) - ec * wt) + ex * exp(dt);
    if (flags & F_SOFTCAP) { float r = zt / p.cap; c.gt *= 1.0f - r * r; }
    c.m = isnan(lse) ? NAN : m;
    if (isnan(lse)) c.gt = NAN;
    return c;
}

/* The gradient of one raw logit z of weight w but the target's (see
 * grad_coef): transformed (capz), and times 1 - tanh^2 with a soft cap. */
inline float grad1(float z, float w, float cap, float icap, int flags, gcoef_t c) {
    z = capz(z, cap, icap, flags);
    float g = c.aa * exp(z - c.m) - c.bb * w;
    if (flags & F_SOFTCAP) { float r = z / cap; g *= 1.0f - r * r; } /* tanh: cap is c/tau */
    return g;
}

/* The element offset of the launch's row g in its buffer. */
inline ulong row_off(prob_t p, int g) {
    return (p.row_base + g) * p.stride - p.base_off;
}

/* The problem of split s of p's columns, cs columns a split. */
inline prob_t split_of(prob_t p, int s, int cs) {
    prob_t q = p;
    q.col0 = p.col0 + s * cs;
    q.cols = min(cs, p.cols - s * cs);
    return q;
}

/* The columns of a row at element offset off before its first one whose
 * offset is a multiple of 4 (at most cols): the row kernels' aligned loads
 * start there. A buffer's start is aligned to the largest built-in type
 * (CL_DEVICE_MEM_BASE_ADDR_ALIGN), so 4 elements are 16 or 8 bytes
 * aligned. */
inline int head_of(ulong off, int cols) {
    return min((int)((4 - off % 4) % 4), cols);
}

/* Rounds f to the nearest bfloat16 (ties to even; NaN stays NaN, quiet):
 * a bfloat16 gradient's store (see elem.cl). */
inline ushort bf16_of(float f) {
    uint u = as_uint(f);
    if (isnan(f)) return (ushort)((u >> 16) | 0x40);
    u += 0x7fff + ((u >> 16) & 1);
    return (ushort)(u >> 16);
}

inline ushort4 bf16_of4(float4 v) {
    return (ushort4)(bf16_of(v.s0), bf16_of(v.s1), bf16_of(v.s2), bf16_of(v.s3));
}

/* Bandwidth probe for the roofline: dst = src, float4 at a time, grid-stride. */
__kernel void xent_copy(__global const float4 *src, __global float4 *dst, ulong n4) {
    for (size_t i = get_global_id(0); i < n4; i += get_global_size(0)) dst[i] = src[i];
}

/* FMA probe for the fused linear's roofline: each work-item runs iters
 * steps of 8 independent fmas (16 flops a lane a step) on registers and
 * writes their sum, so that nothing is optimised away; out has one float
 * per work-item. Each fma is on FMA_W lanes: 1 on a GPU, whose lanes are
 * its work-items; 16 on a CPU runtime (the host's -DFMA_W=16), which runs
 * a work-group's items as a loop that its compiler does not vectorise
 * around this one (PoCL with AVX-512: 27 GFLOP/s at 1 lane, 387 at 16). */
#ifndef FMA_W
#define FMA_W 1
#endif
#if FMA_W == 16
typedef float16 fma_t;
inline float fma_sum(fma_t v) {
    float8 h = v.lo + v.hi;
    float4 q = h.lo + h.hi;
    return (q.x + q.y) + (q.z + q.w);
}
#else
typedef float fma_t;
inline float fma_sum(fma_t v) { return v; }
#endif
__kernel void xent_fma(__global float *out, int iters, float a) {
    fma_t v0 = (fma_t)(get_global_id(0) * 1e-9f), v1 = v0 + 1e-9f, v2 = v0 + 2e-9f, v3 = v0 + 3e-9f;
    fma_t v4 = v0 + 4e-9f, v5 = v0 + 5e-9f, v6 = v0 + 6e-9f, v7 = v0 + 7e-9f;
    for (int i = 0; i < iters; i++) {
        v0 = fma(v0, a, a); v1 = fma(v1, a, a); v2 = fma(v2, a, a); v3 = fma(v3, a, a);
        v4 = fma(v4, a, a); v5 = fma(v5, a, a); v6 = fma(v6, a, a); v7 = fma(v7, a, a);
    }
    out[get_global_id(0)] = fma_sum(((v0 + v1) + (v2 + v3)) + ((v4 + v5) + (v6 + v7)));
}

/* The logits of a tile of the fused linear's CLBlast path at chosen
   classes (device.LinearPicker, opt-in: Tuning.Pick): for the tile's n
   rows r, H's rows rix[r], and each of their k entries e = rix[r]·k + j
   whose class c = cols[e] is one of the tile's [v0, v1), z[e] =
   tile[r·ld + c - v0], the logit the tile's partials read. One work-item
   an entry; no barrier. */
__kernel void xent_tile_pick(__global const float *tile, const int ld, const int n, __global const int *rix,
                             __global const int *cols, const int k, const int v0, const int v1, __global float *z) {
    const int q = get_global_id(0);
    if (q < n * k) {
        const int r = q / k;
        const size_t e = (size_t)rix[r] * k + q % k;
        const int c = cols[e];
        if (c >= v0 && c < v1) z[e] = tile[(size_t)r * ld + c - v0];
    }
}

/* Gradient filtering of the fused linear (CCE's): out[b] = max over the
   rows i and the columns j of block b (block columns of cols) of
   |g_ij|·inv_i, the unscaled gradient of a tile whose rows are scaled by
   1/inv_i. A NaN entry makes the block's max NaN, so that it is never
   skipped. One work-item per block; no barrier. */
__kernel void xent_blockmax(__global const float *g, const int rows, const int cols, const int block,
                            __global const float *inv, __global float *out, const int nblocks) {
    const int b = get_global_id(0);
    if (b < nblocks) {
        const int j0 = b * block, j1 = min(cols, j0 + block);
        float m = 0.0f;
        for (int i = 0; i < rows; i++) {
            const float s = inv[i];
            for (int j = j0; j < j1; j++) {
                const float v = fabs(g[(size_t)i * cols + j]) * s;
                m = (v > m || isnan(v)) ? v : m;
                if (isnan(m)) break;
            }
        }
        out[b] = m;
    }
}
