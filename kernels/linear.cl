/*
 * linear.cl: the fused linear cross-entropy as kernels of their own (the
 * host's opt-in path, Tuning.LinTile), over hidden states H (N × D, row
 * pitch ldh elements) and a classifier W (V × D, pitch ldw) of one
 * element type (after elem.cl, as rows.cl), the logits z = H·Wᵀ + b never
 * in global memory (Cut Cross-Entropy's way, in OpenCL C 1.2). The
 * arithmetic is float; the per-row math is xent.cl's (acc_t, grad_coef,
 * grad1), the row kernels' own.
 *
 * Tiles. A work-group of LS × LS work-items (LS = LT/LR, lid = ty·LS + tx)
 * computes tiles of LT rows × LT classes of z, work-item (tx, ty) the
 * LR² entries of rows ty + LS·i and classes tx + LS·j (i, j < LR: 4, or
 * 8 for half the local reads an fma), strided so
 * that its local reads are broadcasts or consecutive. The products run
 * over D in steps of LK, H's and W's LT × LK blocks in local memory
 * (k major), each entry a sum of fmas in order of k: the same bits on
 * every run and every launch.
 *
 * xent_lin_partial: work-group (b, s) takes row block b over split s of
 * W's classes ([s·VS, (s+1)·VS)), tile after tile, each work-item adding
 * its entries to one online accumulator a row (acc_add, as the row
 * kernels); the LS work-items of a row then merge theirs in a fixed tree
 * over tx and the partial of (split, row) is written, the target's
 * capped logit by the one work-item that holds it. The host merges the
 * splits in order (ce.Partial.Merge).
 *
 * xent_lin_dh: work-group (b, s) recomputes the tiles of row block b over
 * split s, turns each into its gradient G in local memory (grad1, the
 * target's gt, then the fix's entries, ce.Fix, set over them) and adds
 * G·W[tile] into rows b of dH's slice s (dense N × D): a work-group owns
 * its rows, so no entry has two writers and nothing is atomic; the first
 * tile sets, the others add. xent_lin_sum adds the slices in order of s.
 * With a gradient filter (ce.Linear.Filter, CCE's) a tile of G whose
 * every |g_ij|/|s_i| is below it adds nothing to dH, dW and dBias
 * (lin_skip): tiles of LT rows × LT classes where CLBlast's path skips
 * blocks of a chunk's rows × 256 classes, within the same bound.
 *
 * xent_lin_dw: work-group c recomputes the tiles of class block c over
 * every row block in order and adds Gᵀ·H[tile] into dW's rows of c (and
 * G's column sums into dBias): one owner an entry again, in a fixed
 * order, so two runs give the same bits.
 *
 * xent_lin_rank: work-group (b, s) recomputes the tiles of row block b
 * over split s, as xent_lin_partial, and ranks each row's entries against
 * its merged max and target logit (rows.cl's xent_rank on logits it
 * never stores); the host adds the splits in order (ce.Rank.Merge).
 *
 * Ignored rows (target < 0) have a zero gradient and their partials are
 * not written; rows and classes past N and V load zeros and are masked.
 * Barriers are unconditional and no kernel returns early (see xent.cl).
 */
#ifndef LT
#define LT 32
#endif
#ifndef LK
#define LK 8
#endif
#ifndef LR
#define LR 4
#endif
#define LS (LT / LR)
#define LWG (LS * LS)
#if LT % LR != 0 || LS < 2 || LWG < LT
#error "linear.cl: LT must be a multiple of LR with (LT/LR)² ≥ LT (dBias's sums take a work-item a class)"
#endif
#define LTP (LT + 1) /* the gradient tile's row pitch in local memory */
/* The k-major blocks' pitch: lin_load's work-items take LK consecutive k
 * of a row (coalesced reads of H and W); with LT + 4 the stores of 32
 * consecutive work-items (4 rows × 8 k) fall in 32 different banks of
 * local memory (NVIDIA's and AMD's 32 × 4 bytes), where a pitch of LT puts
 * a row's 8 in one. */
#define LKP (LT + 4)

#define lin_z TYPED(lin_z)
#define lin_load TYPED(lin_load)
#define lin_grad TYPED(lin_grad)
#define lin_skip TYPED(lin_skip)
#define lin_gprod TYPED(lin_gprod)
#define xent_lin_partial TYPED(xent_lin_partial)
#define xent_lin_dh TYPED(xent_lin_dh)
#define xent_lin_dw TYPED(xent_lin_dw)
#define xent_lin_rank TYPED(xent_lin_rank)

/* Runs its statements (the arguments) for each of this work-item's
 * entries (i, j) of the tiles of rows [r0, r0 + LT) and classes [v0, v1)
 * (lin_z, tile after tile), in a counted row (t[i] >= 0): cls its class
 * of W, zr its logit and zc that capped (capz). A kernel's body, with its
 * names (H, W, the work-item's tx, ...) in scope; every work-item runs
 * every tile (lin_z's barriers). */
#define LIN_ENTRIES(...)                                                                   \
    for (int c0 = v0; c0 < v1; c0 += LT) {                                                \
        float z[LR * LR];                                                                 \
        lin_z(z, H, ldh, N, W, ldw, V, bias, hasb, D, r0, c0, hs, ws);                    \
        for (int i = 0; i < LR; i++)                                                      \
            for (int j = 0; j < LR; j++) {                                                \
                const int cls = c0 + tx + LS * j;                                         \
                if (t[i] >= 0 && cls < v1) {                                              \
                    const float zr = z[LR * i + j], zc = capz(zr, p.cap, p.ic, p.flags); \
                    __VA_ARGS__                                                           \
                }                                                                         \
            }                                                                             \
    }

/* Loads the LT × LK block of rows [r0, r0 + LT) and columns [k0, k0 + LK)
 * of X (n rows of D, pitch ld) into xs, k major (xs[k·LKP + r]); entries
 * past n or D are 0. */
inline void lin_load(__local float *xs, __global const ELEM *X, ulong ld, int n, int D, int r0, int k0) {
    for (int e = get_local_id(0); e < LT * LK; e += LWG) {
        const int r = e / LK, k = e % LK;
        xs[k * LKP + r] = (r0 + r < n && k0 + k < D) ? LD(k0 + k, X + (size_t)(r0 + r) * ld) : 0.0f;
    }
}

/* Sets z to this work-item's entries of the tile of rows [r0, r0 + LT) of
 * H and classes [c0, c0 + LT) of W (z[4i + j]: row ty + LS·i, class tx +
 * LS·j), plus the bias when there is one. Every work-item reaches every
 * barrier. */
inline void lin_z(float *z, __global const ELEM *H, ulong ldh, int N, __global const ELEM *W, ulong ldw, int V,
                  __global const float *bias, int hasb, int D, int r0, int c0, __local float *hs, __local float *ws) {
    const int tx = get_local_id(0) % LS, ty = get_local_id(0) / LS;
    for (int e = 0; e < LR * LR; e++) z[e] = 0.0f;
    for (int k0 = 0; k0 < D; k0 += LK) {
        lin_load(hs, H, ldh, N, D, r0, k0);
        lin_load(ws, W, ldw, V, D, c0, k0);
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int k = 0; k < LK; k++) {
            float a[LR], b[LR];
            for (int i = 0; i < LR; i++) a[i] = hs[k * LKP + ty + LS * i];
            for (int j = 0; j < LR; j++) b[j] = ws[k * LKP + tx + LS * j];
            for (int i = 0; i < LR; i++)
                for (int j = 0; j < LR; j++) z[LR * i + j] = fma(a[i], b[j], z[LR * i + j]);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (hasb)
        for (int j = 0; j < LR; j++) {
            const int c = c0 + tx + LS * j;
            const float b = c < V ? bias[c] : 0.0f;
            for (int i = 0; i < LR; i++) z[LR * i + j] += b;
        }
}

/* Writes the gradient of the tile of rows [r0, r0 + LT) and classes [c0,
 * c0 + LT) into G (G[r·LTP + c]; 0 past N and V and for ignored rows):
 * its logits from lin_z, each row's coefficients from the merged partials
 * (gm, gs, glsm, gzt: xent_backward's inputs) and grad_coef, then the
 * fix's fk entries a row (ce.Fix: classes fcols, values fvals) over them.
 * Ends with a barrier: G is whole. */
inline void lin_grad(__local float *G, __global const ELEM *H, ulong ldh, int N, __global const ELEM *W, ulong ldw,
                     __global const float *bias, int hasb, int D, prob_t p, __global const int *targets,
                     __global const float *wts, __global const float *scale, __global const float *gm,
                     __global const float *gs, __global const float *glsm, __global const float *gzt, int fk,
                     __global const float *fex, __global const int *fcols, __global const float *fvals, int r0,
                     int c0, __local float *hs, __local float *ws) {
    const int tx = get_local_id(0) % LS, ty = get_local_id(0) / LS;
    const int V = p.cols, flags = p.flags;
    float z[LR * LR];
    lin_z(z, H, ldh, N, W, ldw, V, bias, hasb, D, r0, c0, hs, ws);
    for (int i = 0; i < LR; i++) {
        const int r = ty + LS * i, row = r0 + r;
        const int t = row < N ? targets[row] : -1;
        const int counted = t >= 0;
        const float m = counted ? gm[row] : 0.0f, s = counted ? gs[row] : 1.0f, lsm = counted ? glsm[row] : 0.0f;
        const float wt = (counted && (flags & F_WEIGHTS)) ? wts[t] : 1.0f;
        const gcoef_t gc = grad_coef(p, flags, m, s, lsm, m + lsm, counted ? scale[row] : 0.0f,
                                     (counted && fk > 0) ? fex[row] : 0.0f, wt, counted ? gzt[row] : 0.0f);
        for (int j = 0; j < LR; j++) {
            const int c = tx + LS * j, cls = c0 + c;
            float g = 0.0f;
            if (counted && cls < V)
                g = cls == t - p.col0 ? gc.gt : grad1(z[LR * i + j], (flags & F_WEIGHTS) ? wts[p.col0 + cls] : 1.0f, p.cap, p.ic, flags, gc);
            G[r * LTP + c] = g;
        }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int e = get_local_id(0); e < LT * fk; e += LWG) {
        const int r = e / fk, row = r0 + r;
        if (row < N && targets[row] >= 0) {
            const int c = fcols[(size_t)row * fk + e % fk] - p.col0 - c0;
            if (c >= 0 && c < LT && c0 + c < V) G[r * LTP + c] = fvals[(size_t)row * fk + e % fk];
        }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
}

/* Sets acc to this work-item's entries of a gradient tile's product with
 * columns [d0, d0 + LT) of X's rows [x0, x0 + LT) (those past xn or D
 * read as 0): acc[LR·i + j] = Σ_k G[(ty + LS·i)·si + k·sk] · X[x0 + k][d0
 * + tx + LS·j], k in order. G·W (dH's: si = LTP, sk = 1, X = W, the
 * tile's classes) and Gᵀ·H (dW's: si = 1, sk = LTP, X = H, the tile's
 * rows). xs is LT × LK floats of local memory; every work-item reaches
 * every barrier. */
inline void lin_gprod(float *acc, __local const float *G, int si, int sk, __global const ELEM *X, ulong ld, int x0,
                      int xn, int D, int d0, __local float *xs) {
    const int tx = get_local_id(0) % LS, ty = get_local_id(0) / LS;
    for (int e = 0; e < LR * LR; e++) acc[e] = 0.0f;
    for (int k0 = 0; k0 < LT; k0 += LK) {
        for (int e = get_local_id(0); e < LT * LK; e += LWG) { /* xs[k·LT + d] = X[x0 + k0 + k][d0 + d] */
            const int k = e / LT, d = e % LT, x = x0 + k0 + k;
            xs[e] = (x < xn && d0 + d < D) ? LD(d0 + d, X + (size_t)x * ld) : 0.0f;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int k = 0; k < LK; k++)
            for (int i = 0; i < LR; i++) {
                const float g = G[(ty + LS * i) * si + (k0 + k) * sk];
                for (int j = 0; j < LR; j++) acc[LR * i + j] = fma(g, xs[k * LT + tx + LS * j], acc[LR * i + j]);
            }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
}

/* Whether the gradient filter (ce.Linear.Filter f > 0, CCE's) skips the
 * tile G of rows [r0, r0 + LT): every |g_ij|/|s_i| below f (a row of
 * scale 0 counts 0; a NaN entry keeps the tile). Every work-item reaches
 * every barrier and returns the same; red is LWG floats of local memory. */
inline int lin_skip(__local const float *G, __local float *red, float f, int r0, int N,
                    __global const float *scale, __global const int *targets) {
    const int lid = get_local_id(0), tx = lid % LS, ty = lid / LS;
    float m = 0.0f;
    for (int i = 0; i < LR; i++) {
        const int row = r0 + ty + LS * i;
        const float s = (row < N && targets[row] >= 0) ? fabs(scale[row]) : 0.0f;
        const float inv = s > 0.0f ? 1.0f / s : 0.0f;
        for (int j = 0; j < LR; j++) {
            const float v = fabs(G[(ty + LS * i) * LTP + tx + LS * j]) * inv;
            m = (v > m || isnan(v)) ? v : m;
        }
    }
    red[lid] = m;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int h = LWG / 2; h > 0; h >>= 1) {
        if (lid < h) {
            const float a = red[lid], b = red[lid + h];
            red[lid] = (b > a || isnan(b)) ? b : a;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const float r = red[0];
    barrier(CLK_LOCAL_MEM_FENCE); /* red is read: it may be written again */
    return f > 0.0f && r < f;
}

/* The partial of each counted row over each split of W's classes (see the
 * opening comment): entry s·N + row of pm (max), ps (rest), pd, pw (the
 * smoothing sums), pr, parg (the raw max and its class of the
 * vocabulary), pzt and phas (the target's capped logit, whether the split
 * holds it). The launch is ceil(N/LT) × S work-groups. */
__kernel __attribute__((reqd_work_group_size(LWG, 1, 1)))
void xent_lin_partial(__global const ELEM *H, ulong ldh, __global const ELEM *W, ulong ldw, __global const float *bias,
                      int hasb, int N, int D, int VS, prob_t p, __global const int *targets, __global const float *wts,
                      __global float *pm, __global float *ps, __global float *pd, __global float *pw,
                      __global float *pr, __global int *parg, __global float *pzt, __global uchar *phas) {
    __local float hs[LKP * LK], ws[LKP * LK];
    __local float lm[LWG], ls[LWG], ld[LWG], lw[LWG], lr[LWG];
    __local int li[LWG];
    const int lid = get_local_id(0), tx = lid % LS, ty = lid / LS;
    const int nb = (N + LT - 1) / LT, b = get_group_id(0) % nb, sp = get_group_id(0) / nb;
    const int V = p.cols, flags = p.flags, smooth = flags & F_SMOOTH, r0 = b * LT;
    const int v0 = sp * VS, v1 = min(V, v0 + VS);
    acc_t a[LR];
    int t[LR];
    for (int i = 0; i < LR; i++) {
        const acc_t e = {-FLT_MAX, -1.0f, 0.0f, 0.0f, -FLT_MAX, -1, 0.0f, 0.0f, 0.0f};
        a[i] = e;
        const int row = r0 + ty + LS * i;
        t[i] = row < N ? targets[row] : -1;
    }
    LIN_ENTRIES(acc_add(&a[i], zc, zr, p.col0 + cls, (flags & F_WEIGHTS) ? wts[p.col0 + cls] : 1.0f, smooth);
                if (cls == t[i] - p.col0) pzt[(size_t)sp * N + r0 + ty + LS * i] = zc;)
    for (int i = 0; i < LR; i++) {
        acc_t x = a[i];
        x.s -= x.c; /* the compensated sums (row_scan's) */
        x.d -= x.cd;
        x.w -= x.cw;
        const acc_t u = acc_tree(x, LS, lm, ls, ld, lw, lr, li, smooth); /* the row's LS work-items */
        const int row = r0 + ty + LS * i;
        if (tx == 0 && t[i] >= 0) {
            const size_t o = (size_t)sp * N + row;
            const int has = t[i] - p.col0 >= v0 && t[i] - p.col0 < v1;
            pm[o] = u.m == -FLT_MAX ? -INFINITY : u.m;
            ps[o] = (isinf(u.m) && u.m > 0) ? NAN : u.s;
            pd[o] = u.d;
            pw[o] = u.w;
            pr[o] = u.r == -FLT_MAX ? -INFINITY : u.r;
            parg[o] = u.idx;
            phas[o] = has;
            if (!has) pzt[o] = 0.0f;
        }
        barrier(CLK_LOCAL_MEM_FENCE); /* the slots are read: the next row's may be written */
    }
}

/* dH's slice s (rows of dh + s·N·D, dense) of split s of W's classes: see
 * the opening comment. The launch is ceil(N/LT) × S work-groups. */
__kernel __attribute__((reqd_work_group_size(LWG, 1, 1)))
void xent_lin_dh(__global const ELEM *H, ulong ldh, __global const ELEM *W, ulong ldw, __global const float *bias,
                 int hasb, int N, int D, int VS, prob_t p, __global const int *targets, __global const float *wts,
                 __global const float *scale, __global const float *gm, __global const float *gs,
                 __global const float *glsm, __global const float *gzt, int fk, __global const float *fex,
                 __global const int *fcols, __global const float *fvals, float filter, __global float *dh) {
    __local float hs[LKP * LK], ws[LKP * LK], G[LT * LTP], red[LWG];
    const int tx = get_local_id(0) % LS, ty = get_local_id(0) / LS;
    const int nb = (N + LT - 1) / LT, b = get_group_id(0) % nb, sp = get_group_id(0) / nb;
    const int V = p.cols, r0 = b * LT, v0 = sp * VS, v1 = min(V, v0 + VS);
    __global float *out = dh + (size_t)sp * N * D;
    int wrote = 0; /* uniform: whether a tile has set the slice's rows */
    for (int c0 = v0; c0 < v1; c0 += LT) {
        lin_grad(G, H, ldh, N, W, ldw, bias, hasb, D, p, targets, wts, scale, gm, gs, glsm, gzt, fk, fex, fcols,
                 fvals, r0, c0, hs, ws);
        /* A tile the filter skips adds nothing: a loop bound of 0, not a branch around barriers. */
        const int Dt = lin_skip(G, red, filter, r0, N, scale, targets) ? 0 : D;
        for (int d0 = 0; d0 < Dt; d0 += LT) { /* out[rows, d0:d0+LT] += G · W[c0:c0+LT, d0:d0+LT] */
            float acc[LR * LR];
            lin_gprod(acc, G, LTP, 1, W, ldw, c0, v1, D, d0, ws);
            for (int i = 0; i < LR; i++) {
                const int row = r0 + ty + LS * i;
                for (int j = 0; j < LR; j++) {
                    const int d = d0 + tx + LS * j;
                    if (row < N && d < D) {
                        __global float *o = out + (size_t)row * D + d;
                        *o = wrote ? *o + acc[LR * i + j] : acc[LR * i + j];
                    }
                }
            }
        }
        wrote = wrote || Dt > 0;
    }
    for (int e = get_local_id(0); !wrote && e < LT * D; e += LWG) { /* every tile skipped: the rows are 0 */
        const int row = r0 + e / D;
        if (row < N) out[(size_t)row * D + e % D] = 0.0f;
    }
}

/* dW's rows [c0, c0 + LT) (pitch lddw, added to, when hasdw) and dBias's (when hasdb),
 * c0 = LT × the work-group's index: see the opening comment. */
__kernel __attribute__((reqd_work_group_size(LWG, 1, 1)))
void xent_lin_dw(__global const ELEM *H, ulong ldh, __global const ELEM *W, ulong ldw, __global const float *bias,
                 int hasb, int N, int D, prob_t p, __global const int *targets, __global const float *wts,
                 __global const float *scale, __global const float *gm, __global const float *gs,
                 __global const float *glsm, __global const float *gzt, int fk, __global const float *fex,
                 __global const int *fcols, __global const float *fvals, float filter, __global float *dw,
                 ulong lddw, int hasdw, __global float *db, int hasdb) {
    __local float hs[LKP * LK], ws[LKP * LK], G[LT * LTP], red[LWG];
    const int lid = get_local_id(0), tx = lid % LS, ty = lid / LS;
    const int V = p.cols, c0 = get_group_id(0) * LT;
    const int Dw = hasdw ? D : 0; /* a loop bound, not a branch around barriers */
    float bsum = 0.0f;
    for (int r0 = 0; r0 < N; r0 += LT) {
        lin_grad(G, H, ldh, N, W, ldw, bias, hasb, D, p, targets, wts, scale, gm, gs, glsm, gzt, fk, fex, fcols,
                 fvals, r0, c0, hs, ws);
        const int skip = lin_skip(G, red, filter, r0, N, scale, targets);
        if (lid < LT && !skip)
            for (int r = 0; r < LT; r++) bsum += G[r * LTP + lid];
        for (int d0 = 0; d0 < (skip ? 0 : Dw); d0 += LT) { /* dW[c0:c0+LT, d0:d0+LT] += Gᵀ · H[r0:r0+LT, d0:d0+LT] */
            float acc[LR * LR];
            lin_gprod(acc, G, 1, LTP, H, ldh, r0, N, D, d0, hs);
            for (int i = 0; i < LR; i++) {
                const int c = c0 + ty + LS * i;
                for (int j = 0; j < LR; j++) {
                    const int d = d0 + tx + LS * j;
                    if (c < V && d < D) dw[(size_t)c * lddw + d] += acc[LR * i + j];
                }
            }
        }
    }
    if (hasdb && lid < LT && c0 + lid < V) db[c0 + lid] += bsum;
}

/* The rank pass (ce.Rank; device.LinearRanker) of split s of W's classes
 * for row block b, rows.cl's xent_rank on the tiles' logits: given row
 * g's max m and target logit zt merged over the whole vocabulary (gm,
 * gzt; a row of target -1 is one the host skips: ignored, or of a NaN
 * sum), entry s·N + g of pn counts the split's classes whose logit z
 * (capz) is strictly greater than zt, the target's own never, and that of
 * pe is Σ exp(z - m)·(z - m) over them, a term whose exp is 0 adding 0,
 * with z taken as m where it is above it and computed (soft cap,
 * temperature). Each work-item sums its entries in order of the tiles
 * (Kahan), then a fixed tree over the row's LS work-items, the lower
 * tx's on the left. The launch is ceil(N/LT) × S work-groups. */
__kernel __attribute__((reqd_work_group_size(LWG, 1, 1)))
void xent_lin_rank(__global const ELEM *H, ulong ldh, __global const ELEM *W, ulong ldw, __global const float *bias,
                   int hasb, int N, int D, int VS, prob_t p, __global const int *targets, __global const float *gm,
                   __global const float *gzt, __global int *pn, __global float *pe) {
    __local float hs[LKP * LK], ws[LKP * LK], le[LWG];
    __local int ln[LWG];
    const int lid = get_local_id(0), tx = lid % LS, ty = lid / LS;
    const int nb = (N + LT - 1) / LT, b = get_group_id(0) % nb, sp = get_group_id(0) / nb;
    const int V = p.cols, flags = p.flags, tr = flags & (F_SOFTCAP | F_TEMP), r0 = b * LT;
    const int v0 = sp * VS, v1 = min(V, v0 + VS);
    int t[LR], n[LR];
    float m[LR], zt[LR], e[LR], c[LR];
    for (int i = 0; i < LR; i++) {
        const int row = r0 + ty + LS * i;
        t[i] = row < N ? targets[row] : -1;
        m[i] = t[i] >= 0 ? gm[row] : 0.0f;
        zt[i] = t[i] >= 0 ? gzt[row] : 0.0f;
        n[i] = 0;
        e[i] = c[i] = 0.0f;
    }
    LIN_ENTRIES(n[i] += zc > zt[i] && cls != t[i] - p.col0;
                const float d = (tr && zc > m[i] ? m[i] : zc) - m[i], ex = exp(d); /* d may overflow to -Inf: ex is 0 */
                if (ex != 0.0f) kahan(&e[i], &c[i], ex * d);)
    for (int i = 0; i < LR; i++) {
        ln[lid] = n[i];
        le[lid] = e[i];
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int h = 1; h < LS; h <<= 1) {
            if (tx % (2 * h) == 0 && tx + h < LS) {
                ln[lid] += ln[lid + h];
                le[lid] += le[lid + h];
            }
            barrier(CLK_LOCAL_MEM_FENCE);
        }
        /* Work-item tx = 0 reads its own slots, which it alone writes next. */
        if (tx == 0 && t[i] >= 0) {
            const size_t o = (size_t)sp * N + r0 + ty + LS * i;
            pn[o] = ln[lid];
            pe[o] = le[lid];
        }
    }
}

#if ELEM_ID == 0
/* dst[i] = Σ_s src[s·n + i], s = 0, 1, ..., S - 1 in order: dH from the
 * slices of xent_lin_dh's splits. Grid-stride. */
__kernel void xent_lin_sum(__global const float *src, int S, ulong n, __global float *dst) {
    for (size_t i = get_global_id(0); i < n; i += get_global_size(0)) {
        float v = src[i];
        for (int s = 1; s < S; s++) v += src[(size_t)s * n + i];
        dst[i] = v;
    }
}

/* The backward's inputs of each counted row from xent_lin_partial's S
 * splits (entry s·N + i), merged in order of s as ce.Partial.Merge merges
 * them (in float): the max gm, the sum gs = 1 + s of exp(z - gm), glsm =
 * log1p(s) (NaN for an empty or NaN sum) and the target's capped logit
 * gzt, from the split that holds it; so that the host waits for no
 * partial between the passes. Ignored rows' entries are not read or
 * written. Grid-stride. */
__kernel void xent_lin_merge(__global const float *pm, __global const float *ps, __global const float *pzt,
                             __global const uchar *phas, int S, int N, __global const int *targets,
                             __global float *gm, __global float *gs, __global float *glsm, __global float *gzt) {
    for (int i = get_global_id(0); i < N; i += get_global_size(0)) {
        if (targets[i] < 0) continue;
        float m = pm[i], r = ps[i], zt = phas[i] ? pzt[i] : 0.0f;
        for (int k = 1; k < S; k++) {
            const size_t o = (size_t)k * N + i;
            const float m2 = pm[o], r2 = ps[o], M = fmax(m, m2);
            if (isnan(r) || isnan(r2)) r = NAN;
            else if (isinf(M) && M < 0) r = -1.0f; /* both empty */
            else if (m == M && m2 == M) r = r + (1.0f + r2);
            else if (m == M) r = r + (1.0f + r2) * exp(m2 - M);
            else r = r2 + (1.0f + r) * exp(m - M);
            m = M;
            if (phas[o]) zt = pzt[o];
        }
        gm[i] = m;
        gs[i] = 1.0f + r;
        glsm[i] = r > -1.0f ? log1p(r) : NAN;
        gzt[i] = zt;
    }
}
#endif

#undef lin_z
#undef lin_load
#undef lin_grad
#undef lin_skip
#undef lin_gprod
#undef xent_lin_partial
#undef xent_lin_dh
#undef xent_lin_dw
#undef xent_lin_rank
#undef LIN_ENTRIES
