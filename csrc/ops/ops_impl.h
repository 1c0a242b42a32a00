/* The op loops, included by ops__<isa>.c after its target pragma: plain C written so the compiler
 * vectorises the innermost loop (along W for NCHW, along C for NHWC).  No FMA contraction: the
 * products and sums round exactly as the NumPy reference's separate ufuncs do. */
#include <math.h>
#include <string.h>

/* Contraction off for every function below, in the spelling each compiler knows (clang ignores GCC's
 * optimize pragma, GCC warns on the standard one). */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#else
#pragma GCC optimize("fp-contract=off")
#endif

#include "../internal.h"
#include "ops.h"

/* dims: n, c, h, w, oh, ow; xs/ys: element strides of n, c, h, w; geom: kh, kw, sh, sw, dh, dw, pt, pl */

static inline float mx(float acc, float v) { return (acc > v || acc != acc) ? acc : v; } /* NaN sticks */

/* Output columns [lo, hi) whose tap at offset `off` (= kx * dw - pl) falls on the image [0, w). */
static inline void tap_cols(int64_t off, int64_t sw, int64_t w, int64_t ow, int64_t *lo, int64_t *hi) {
    int64_t a = off >= 0 ? 0 : FP_CEIL_DIV(-off, sw);
    int64_t b = (w - 1 - off) < 0 ? 0 : (w - 1 - off) / sw + 1;
    *lo = FP_MIN(a, ow);
    *hi = FP_MIN(b, ow);
    if (*hi < *lo) *hi = *lo;
}

/* kind 0: max (-inf where no tap), kind 1: sum of the taps divided by div[ox] (the row's divisors), in
 * the reference's order: taps row by row, then one division.  NHWC: every channel of the row; NCHW:
 * channels [c0, c1) (the driver gives one, so a job walks one plane).  The sums and maxima build up in
 * `acc` (max(C, OW) floats of the chunk's own), and y is written once: accumulating in y itself runs at
 * a fifth of the speed when x and y lie a multiple of 4 KiB apart (every store then seems to alias the
 * next load, "4K aliasing"), which two page-aligned arrays of the same shape always do. */
static void pool_row(const float *x, const int64_t *xs, float *y, const int64_t *ys, const int64_t *dims,
                     const int64_t *geom, int kind, const float *div, int64_t c0, int64_t c1, int64_t n,
                     int64_t oy, float *acc) {
    const int64_t C = dims[1], H = dims[2], W = dims[3], OW = dims[5];
    const int64_t kh = geom[0], kw = geom[1], sh = geom[2], sw = geom[3], dh = geom[4], dw = geom[5];
    const int64_t pt = geom[6], pl = geom[7];
    const float init = kind == 0 ? -INFINITY : 0.0f;
    const float *xn = x + n * xs[0];
    float *yrow = y + n * ys[0] + oy * ys[2];
    float *restrict a = acc;
    /* 2x2 stride-2 max pooling with every window inside the image (U-Nets' downsampling): the four taps
     * in one pass, in the general loop's order (row 0 then row 1, left then right; mx keeps the order's
     * NaN and signed-zero outcome), three short passes over the accumulator (GCC vectorises a loop of one
     * mx, not a chain of them), the last into y: no per-tap column ranges, no -inf pass, no copy pass */
    if (kind == 0 && kh == 2 && kw == 2 && sh == 2 && sw == 2 && dh == 1 && dw == 1 && pt == 0 && pl == 0 &&
        2 * oy + 1 < H && 2 * OW <= W) {
        const float *r0 = xn + 2 * oy * xs[2], *r1 = r0 + xs[2];
        if (xs[1] == 1 && ys[1] == 1) {
            const int64_t xw = xs[3];
            for (int64_t ox = 0; ox < OW; ox++) {
                const float *restrict p0 = r0 + 2 * ox * xw, *restrict p1 = r1 + 2 * ox * xw;
                float *restrict yp = yrow + ox * ys[3];
                for (int64_t c = 0; c < C; c++) a[c] = mx(p0[c], p0[c + xw]);
                for (int64_t c = 0; c < C; c++) a[c] = mx(a[c], p1[c]);
                for (int64_t c = 0; c < C; c++) yp[c] = mx(a[c], p1[c + xw]);
            }
            return;
        }
        if (xs[3] == 1 && ys[3] == 1) {
            for (int64_t c = c0; c < c1; c++) {
                const float *restrict q0 = r0 + c * xs[1], *restrict q1 = r1 + c * xs[1];
                float *restrict yp = yrow + c * ys[1];
#ifdef OPS_MAX2X2_ROW /* the ISA's own row (ops__avx512.c): the same taps in the same order */
                OPS_MAX2X2_ROW(q0, q1, yp, OW);
                continue;
#endif
                for (int64_t ox = 0; ox < OW; ox++) a[ox] = mx(q0[2 * ox], q0[2 * ox + 1]);
                for (int64_t ox = 0; ox < OW; ox++) a[ox] = mx(a[ox], q1[2 * ox]);
                for (int64_t ox = 0; ox < OW; ox++) yp[ox] = mx(a[ox], q1[2 * ox + 1]);
            }
            return;
        }
    }
    if (xs[1] == 1 && ys[1] == 1) { /* NHWC: channels contiguous, vectorised along C */
        for (int64_t ox = 0; ox < OW; ox++) {
            for (int64_t c = 0; c < C; c++) a[c] = init;
            for (int64_t ky = 0; ky < kh; ky++) {
                const int64_t iy = oy * sh - pt + ky * dh;
                if (iy < 0 || iy >= H) continue;
                for (int64_t kx = 0; kx < kw; kx++) {
                    const int64_t ix = ox * sw - pl + kx * dw;
                    if (ix < 0 || ix >= W) continue;
                    const float *restrict xp = xn + iy * xs[2] + ix * xs[3];
                    if (kind == 0)
                        for (int64_t c = 0; c < C; c++) a[c] = mx(a[c], xp[c]);
                    else
                        for (int64_t c = 0; c < C; c++) a[c] = a[c] + xp[c];
                }
            }
            float *restrict yp = yrow + ox * ys[3];
            if (kind == 1) {
                const float d = div[ox];
                for (int64_t c = 0; c < C; c++) yp[c] = a[c] / d;
            } else {
                for (int64_t c = 0; c < C; c++) yp[c] = a[c];
            }
        }
        return;
    }
    for (int64_t c = c0; c < c1; c++) { /* NCHW (any strides): vectorised along the output row */
        for (int64_t ox = 0; ox < OW; ox++) a[ox] = init;
        for (int64_t ky = 0; ky < kh; ky++) {
            const int64_t iy = oy * sh - pt + ky * dh;
            if (iy < 0 || iy >= H) continue;
            const float *restrict xr = xn + c * xs[1] + iy * xs[2];
            const int64_t xw = xs[3];
            for (int64_t kx = 0; kx < kw; kx++) {
                const int64_t off = kx * dw - pl;
                int64_t lo, hi;
                tap_cols(off, sw, W, OW, &lo, &hi);
                const float *restrict xt = xr + off * xw;
                if (xw == 1 && sw == 2) { /* the common stride-2 pooling, a constant stride */
                    if (kind == 0)
                        for (int64_t ox = lo; ox < hi; ox++) a[ox] = mx(a[ox], xt[2 * ox]);
                    else
                        for (int64_t ox = lo; ox < hi; ox++) a[ox] = a[ox] + xt[2 * ox];
                } else if (xw == 1 && sw == 1) {
                    if (kind == 0)
                        for (int64_t ox = lo; ox < hi; ox++) a[ox] = mx(a[ox], xt[ox]);
                    else
                        for (int64_t ox = lo; ox < hi; ox++) a[ox] = a[ox] + xt[ox];
                } else {
                    const int64_t step = sw * xw;
                    if (kind == 0)
                        for (int64_t ox = lo; ox < hi; ox++) a[ox] = mx(a[ox], xt[ox * step]);
                    else
                        for (int64_t ox = lo; ox < hi; ox++) a[ox] = a[ox] + xt[ox * step];
                }
            }
        }
        float *restrict yp = yrow + c * ys[1];
        const int64_t yw = ys[3];
        if (kind == 1)
            for (int64_t ox = 0; ox < OW; ox++) yp[ox * yw] = a[ox] / div[ox];
        else if (yw == 1)
            for (int64_t ox = 0; ox < OW; ox++) yp[ox] = a[ox];
        else
            for (int64_t ox = 0; ox < OW; ox++) yp[ox * yw] = a[ox];
    }
}

/* One output row of a separable resize.  iy/ix: source indices, two per output position (i0, i1);
 * ly/lx: the weight of i1 (NULL: nearest, i0 only).  Width first, then height, as the reference:
 * t = x[i0] * (1 - l) + x[i1] * l per axis.  scratch: 2 * (OW + C) floats, then 4 int64 tags set to -1 by
 * the chunk before its first row. */
static void resize_row(const float *x, const int64_t *xs, float *y, const int64_t *ys, const int64_t *dims,
                       const int64_t *iy, const float *ly, const int64_t *ix, const float *lx, int64_t c0,
                       int64_t c1, int64_t n, int64_t oy, float *scratch) {
    const int64_t C = dims[1], OW = dims[5];
    const float *xn = x + n * xs[0];
    float *yrow = y + n * ys[0] + oy * ys[2];
    const int64_t y0 = iy[2 * oy], y1 = iy[2 * oy + 1];
    if (!lx) { /* nearest */
        if (xs[1] == 1 && ys[1] == 1) {
            for (int64_t ox = 0; ox < OW; ox++)
                memcpy(yrow + ox * ys[3], xn + y0 * xs[2] + ix[2 * ox] * xs[3], (size_t)C * sizeof(float));
            return;
        }
        for (int64_t c = c0; c < c1; c++) {
            const float *restrict xr = xn + c * xs[1] + y0 * xs[2];
            float *restrict yp = yrow + c * ys[1];
            for (int64_t ox = 0; ox < OW; ox++) yp[ox * ys[3]] = xr[ix[2 * ox] * xs[3]];
        }
        return;
    }
    const float wy = ly[oy], vy = 1.0f - wy;
    if (xs[1] == 1 && ys[1] == 1) { /* NHWC: blend whole pixels, vectorised along C */
        float *restrict t0 = scratch, *restrict t1 = scratch + C;
        for (int64_t ox = 0; ox < OW; ox++) {
            const float wx = lx[ox], vx = 1.0f - wx;
            const float *a0 = xn + y0 * xs[2] + ix[2 * ox] * xs[3], *b0 = xn + y0 * xs[2] + ix[2 * ox + 1] * xs[3];
            const float *a1 = xn + y1 * xs[2] + ix[2 * ox] * xs[3], *b1 = xn + y1 * xs[2] + ix[2 * ox + 1] * xs[3];
            float *restrict yp = yrow + ox * ys[3];
            for (int64_t c = 0; c < C; c++) t0[c] = a0[c] * vx + b0[c] * wx;
            for (int64_t c = 0; c < C; c++) t1[c] = a1[c] * vx + b1[c] * wx;
            for (int64_t c = 0; c < C; c++) yp[c] = t0[c] * vy + t1[c] * wy;
        }
        return;
    }
    /* NCHW: t0/t1 hold source rows y0/y1 of plane n * C + c blended along W, tagged (plane, row) in the
     * four int64 after the floats; the rows of a chunk walk one plane, so output rows that share source
     * rows (most rows of an upsampling) blend each along W once */
    float *restrict t0 = scratch, *restrict t1 = scratch + OW;
    int64_t *tags = (int64_t *)(scratch + 2 * (C + OW));
    for (int64_t c = c0; c < c1; c++) {
        const int64_t xw = xs[3];
        const int64_t plane = n * C + c;
        for (int r = 0; r < 2; r++) {
            const int64_t src = r ? y1 : y0;
            float *restrict t = r ? t1 : t0;
            if (tags[2 * r] == plane && tags[2 * r + 1] == src) continue;
            const int64_t other = r ? 0 : 1; /* the other row may hold this source row: copy it */
            if (tags[2 * other] == plane && tags[2 * other + 1] == src) {
                memcpy(t, r ? t0 : t1, (size_t)OW * sizeof(float));
            } else {
                const float *row = xn + c * xs[1] + src * xs[2];
                for (int64_t ox = 0; ox < OW; ox++) {
                    const float wx = lx[ox], vx = 1.0f - wx;
                    t[ox] = row[ix[2 * ox] * xw] * vx + row[ix[2 * ox + 1] * xw] * wx;
                }
            }
            tags[2 * r] = plane;
            tags[2 * r + 1] = src;
        }
        float *restrict yp = yrow + c * ys[1];
        if (ys[3] == 1)
            for (int64_t ox = 0; ox < OW; ox++) yp[ox] = t0[ox] * vy + t1[ox] * wy;
        else
            for (int64_t ox = 0; ox < OW; ox++) yp[ox * ys[3]] = t0[ox] * vy + t1[ox] * wy;
    }
}

/* Source row `src` of image n blended along W into t: t[ox * so + c * sc] = x[i0] * (1 - l) + x[i1] * l
 * ([C][OW] for resize_row_c2p: so 1, sc OW; [OW][C] for resize_row_nhwc: so C, sc 1, inlined with the
 * constant so the channel loop stores contiguously). */
static inline __attribute__((always_inline)) void blend_row(const float *x, const int64_t *xs, const int64_t *ix,
                                                            const float *lx, int64_t C, int64_t OW, int64_t n,
                                                            int64_t src, float *restrict t, int64_t so, int64_t sc) {
    const float *row = x + n * xs[0] + src * xs[2];
    for (int64_t ox = 0; ox < OW; ox++) {
        const float wx = lx[ox], vx = 1.0f - wx;
        const float *restrict a = row + ix[2 * ox] * xs[3], *restrict b = row + ix[2 * ox + 1] * xs[3];
        float *restrict tp = t + ox * so;
        for (int64_t c = 0; c < C; c++) tp[c * sc] = a[c] * vx + b[c] * wx;
    }
}

/* Output row oy's two source rows of image n blended along W, from scratch's two buffers (C * OW floats
 * each, then two int64 tags: image * H + row, -1 for none): a row no buffer holds is blended into the buffer
 * the other source row does not need; t[0], t[1] are the rows of taps iy[2 oy], iy[2 oy + 1]. */
static inline __attribute__((always_inline)) void kept_source_rows(const float *x, const int64_t *xs,
                                                                   const int64_t *dims, const int64_t *iy,
                                                                   const int64_t *ix, const float *lx, int64_t n,
                                                                   int64_t oy, float *scratch, int64_t so,
                                                                   int64_t sc, const float **t) {
    const int64_t C = dims[1], H = dims[2], OW = dims[5];
    float *bufs[2] = {scratch, scratch + C * OW};
    int64_t *tags = (int64_t *)(scratch + 2 * C * OW);
    const int64_t src[2] = {iy[2 * oy], iy[2 * oy + 1]};
    int h[2]; /* the buffer holding each source row, -1 while neither does */
    for (int r = 0; r < 2; r++) h[r] = tags[0] == n * H + src[r] ? 0 : tags[1] == n * H + src[r] ? 1 : -1;
    for (int r = 0; r < 2; r++) {
        if (h[r] >= 0) continue;
        h[r] = h[1 - r] == 0 ? 1 : 0; /* the buffer the other source row does not need */
        blend_row(x, xs, ix, lx, C, OW, n, src[r], bufs[h[r]], so, sc);
        tags[h[r]] = n * H + src[r];
        if (r == 0 && src[1] == src[0]) h[1] = h[0]; /* an edge row: both taps on one source row */
    }
    t[0] = bufs[h[0]];
    t[1] = bufs[h[1]];
}

/* y[i] = a[i] * vy + b[i] * wy for i < n.  stream: with non-temporal stores where the ISA file defines
 * OPS_STREAM_FLOATS (an output larger than the cache, written once and read by the next op or the caller
 * after the cache has turned over: a normal store first reads each line from memory, which doubled the
 * traffic of lraspp's 5.5 MB logits); the caller fences (ops.c).  The same products and sum either way. */
static inline void lerp_store(float *restrict y, const float *restrict a, const float *restrict b, float vy,
                              float wy, int64_t n, int stream) {
    int64_t i = 0;
#ifdef OPS_STREAM_FLOATS
    if (stream) {
        const uintptr_t line = sizeof(float) * OPS_STREAM_FLOATS - 1; /* the first aligned float on */
        for (; i < n && ((uintptr_t)(y + i) & line); i++) y[i] = a[i] * vy + b[i] * wy;
        const OPS_V v = OPS_SET1(vy), w = OPS_SET1(wy);
        for (; i + OPS_STREAM_FLOATS <= n; i += OPS_STREAM_FLOATS)
            OPS_STREAM(y + i, OPS_ADD(OPS_MUL(OPS_LOADU(a + i), v), OPS_MUL(OPS_LOADU(b + i), w)));
    }
#else
    (void)stream;
#endif
    for (; i < n; i++) y[i] = a[i] * vy + b[i] * wy;
}

/* One output row of a linear resize from channels-last pixels (x: NHWC in memory, xs[1] == 1) into
 * channel planes (y: NCHW, ys[3] == 1): a network's NHWC activations resized into its NCHW graph
 * output (lraspp's last Resize, 21@32^2 -> 21@256^2), every row of every plane written once, along W.
 * Each source row is blended along W once per chunk into a [C][OW] buffer (the pixel's channels read
 * contiguously, written per plane), so an output row is C contiguous blends of two such rows.  The same
 * products and sums as resize_row: bit-equal results.  scratch: 2 * C * OW floats, then 2 int64 tags
 * (n * H + source row of each buffer) set to -1 by the chunk before its first row; stream: lerp_store's. */
static void resize_row_c2p(const float *x, const int64_t *xs, float *y, const int64_t *ys, const int64_t *dims,
                           const int64_t *iy, const float *ly, const int64_t *ix, const float *lx, int64_t n,
                           int64_t oy, float *scratch, int stream) {
    const int64_t C = dims[1], OW = dims[5];
    const float *t[2];
    kept_source_rows(x, xs, dims, iy, ix, lx, n, oy, scratch, 1, OW, t);
    const float wy = ly[oy], vy = 1.0f - wy;
    for (int64_t c = 0; c < C; c++)
        lerp_store(y + n * ys[0] + c * ys[1] + oy * ys[2], t[0] + c * OW, t[1] + c * OW, vy, wy, OW, stream);
}

/* Linear resize of output row oy of image n, x and y channels-last (xs[1] == ys[1] == 1): resize_row's NHWC
 * arithmetic, but each source row is blended along W once into scratch ([2][OW][C] floats, then two int64
 * tags: image * H + row, -1 for none) and kept while the chunk's next output rows use it, so an output row
 * costs one vertical blend (and at most one new source row) instead of two horizontal blends per pixel.
 * y's pixels are contiguous (ys[3] == C: the driver's condition). */
static void resize_row_nhwc(const float *x, const int64_t *xs, float *y, const int64_t *ys, const int64_t *dims,
                            const int64_t *iy, const float *ly, const int64_t *ix, const float *lx, int64_t n,
                            int64_t oy, float *scratch) {
    const int64_t C = dims[1], OW = dims[5];
    const float *t[2];
    kept_source_rows(x, xs, dims, iy, ix, lx, n, oy, scratch, C, 1, t);
    const float wy = ly[oy], vy = 1.0f - wy;
    const float *restrict t0 = t[0], *restrict t1 = t[1];
    float *restrict yp = y + n * ys[0] + oy * ys[2]; /* a contiguous row of OW * C floats (ys[3] == C) */
    for (int64_t i = 0; i < OW * C; i++) yp[i] = t0[i] * vy + t1[i] * wy;
}

/* exp for the sigmoid, vectorisable: 2^k * p(r), r = x - k ln2 in [-ln2/2, ln2/2], degree-6
 * polynomial (relative error ~2e-7); x clamped to [-88, 88] (the sigmoid saturates long before). */
static inline float vexp(float x) {
    x = x < -88.0f ? -88.0f : x > 88.0f ? 88.0f : x;
    const float k = floorf(x * 1.44269504f + 0.5f);
    const float r = (x - k * 0.693145752f) - k * 1.42860677e-6f;
    float p = 1.38888889e-3f;
    p = p * r + 8.33333333e-3f;
    p = p * r + 4.16666667e-2f;
    p = p * r + 1.66666667e-1f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    union { float f; int32_t i; } s;
    s.i = ((int32_t)k + 127) << 23;
    return p * s.f;
}

static inline float act_apply(float v, int act, float alpha, float beta) {
    switch (act) {
    case 1: return v < 0.0f ? 0.0f : v;                                     /* relu (NaN stays NaN) */
    case 2: return 1.0f / (1.0f + vexp(-v));                                /* sigmoid */
    case 3: { float t = alpha * v + beta; return t < 0.0f ? 0.0f : t > 1.0f ? 1.0f : t; } /* hardsigmoid */
    case 4: { float t = v * (1.0f / 6.0f) + 0.5f; t = t < 0.0f ? 0.0f : t > 1.0f ? 1.0f : t; return v * t; }
    case 5: return v < alpha ? alpha : v > beta ? beta : v;                 /* clip */
    default: return v;
    }
}

static inline float bin_apply(float a, float b, int op) {
    switch (op) {
    case 1: return a + b;
    case 2: return a - b;
    case 3: return a * b;
    case 4: return a / b;
    default: return a;
    }
}

/* One row: the operand a vector (br) or one value (bv); op and act are constants in every call below
 * (always inlined), so each of the 30 loops compiles to straight vector code.  No restrict: y may be a
 * (element for element the same as a or b: the network writes an op's output over its input). */
static inline __attribute__((always_inline)) void elt_run(const float *ar, const float *br, float bv, float *yr,
                                                          int64_t n, const int op, const int act, float alpha,
                                                          float beta) {
    if (br)
        for (int64_t i = 0; i < n; i++) yr[i] = act_apply(bin_apply(ar[i], br[i], op), act, alpha, beta);
    else
        for (int64_t i = 0; i < n; i++) yr[i] = act_apply(bin_apply(ar[i], bv, op), act, alpha, beta);
}

static void elt_row(const float *ar, const float *br, float bv, float *yr, int64_t n, int op, int act, float alpha,
                    float beta) {
#define FP_ELT_CASE(o, a) case (o) * 8 + (a): elt_run(ar, br, bv, yr, n, o, a, alpha, beta); return;
#define FP_ELT_OP(o) FP_ELT_CASE(o, 0) FP_ELT_CASE(o, 1) FP_ELT_CASE(o, 2) FP_ELT_CASE(o, 3) FP_ELT_CASE(o, 4) \
    FP_ELT_CASE(o, 5)
    switch (op * 8 + act) {
        FP_ELT_OP(0) FP_ELT_OP(1) FP_ELT_OP(2) FP_ELT_OP(3) FP_ELT_OP(4)
    default: return;
    }
#undef FP_ELT_OP
#undef FP_ELT_CASE
}

/* Rows [lo, hi) of y = act(a op b): a and y contiguous, viewed as (outer, mid, inner) with rows of `inner`
 * elements; b per bmode: 0 none, 1 same shape, 2 one value per mid index (NCHW's channel), 3 one per inner
 * index (NHWC's channel), 4 a scalar. */
static void eltwise(const float *a, const float *b, float *y, int64_t mid, int64_t inner, int bmode, int op,
                    int act, float alpha, float beta, int64_t lo, int64_t hi) {
    if (bmode == 0) op = 0;
    for (int64_t row = lo; row < hi; row++) {
        const float *br = bmode == 1 ? b + row * inner : bmode == 3 ? b : NULL;
        const float bv = bmode == 2 ? b[row % mid] : bmode == 4 ? b[0] : 0.0f;
        elt_row(a + row * inner, br, bv, y + row * inner, inner, op, act, alpha, beta);
    }
}

/* y[j * a + i] = x[i * b + j] for rows [i0, i1) and columns [j0, j1) of one (a, b) matrix: the layout
 * conversion of an image (fp_op_transpose_f32).  The inner loop runs along y's contiguous axis. */
static void transpose_tile(const float *x, float *y, int64_t a, int64_t b, int64_t i0, int64_t i1, int64_t j0,
                           int64_t j1) {
    if (a == 3 && i0 == 0 && i1 == 3) { /* an RGB image into pixels: one pass, the stores interleaved in vectors */
        const float *restrict x0 = x, *restrict x1 = x + b, *restrict x2 = x + 2 * b;
        float *restrict yp = y;
        for (int64_t j = j0; j < j1; j++) {
            yp[3 * j] = x0[j];
            yp[3 * j + 1] = x1[j];
            yp[3 * j + 2] = x2[j];
        }
        return;
    }
    for (int64_t j = j0; j < j1; j++) {
        const float *restrict xc = x + j;
        float *restrict yr = y + j * a;
        for (int64_t i = i0; i < i1; i++) yr[i] = xc[i * b];
    }
}

/* Global average pooling of one NHWC image's channels [c0, c0 + nc): float64 sums per channel, the pixels
 * in order (the same sums at any ISA and thread split), vectorised along the channels (the float ->
 * double conversions and adds: 8 channels per instruction with AVX-512, where the baseline build has 2). */
static void gap_nhwc(const float *x, float *y, int64_t C, int64_t HW, int64_t c0, int64_t nc, double *acc) {
    double *restrict a = acc;
    for (int64_t c = 0; c < nc; c++) a[c] = 0;
    const float *p = x + c0;
    for (int64_t i = 0; i < HW; i++) {
        const float *restrict q = p + i * C;
        for (int64_t c = 0; c < nc; c++) a[c] += q[c];
    }
    for (int64_t c = 0; c < nc; c++) y[c0 + c] = (float)(a[c] / (double)HW);
}

#define FP_OPS_TABLE(var, isa_name) \
    const fp_ops_isa var = {isa_name, pool_row, resize_row, resize_row_c2p, resize_row_nhwc, eltwise, transpose_tile, \
                            gap_nhwc};
