/* Depthwise convolution for AVX-512 (any kernel size, stride, dilation, multiplier).
 *
 * NHWC: vectors run along 16 channels; a block is up to 8 adjacent output pixels (x 2 output rows
 * for 3x3 stride 1) of one channel vector, so that each input vector loaded from cache feeds every
 * (pixel, tap) pair that reads it.  Borders: zero masks on the loads of columns outside the image.
 * NCHW: 16 planes at a time are transposed into a per-thread [row][W][16] tile and run through the
 * same blocks, and the output is transposed back (both transposes counted in the call). */
#include "dwconv.h"

#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma"))), apply_to = function)
#else
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")
#endif
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "../transpose16_avx512.h"

/* Lanes [lo, hi) of a 32-lane window, as a bit mask. */
static inline uint32_t lanes32(int64_t lo, int64_t hi) {
    lo = FP_MAX(lo, 0);
    hi = FP_MIN(hi, 32);
    if (hi <= lo) return 0;
    const uint64_t all = (1ull << hi) - 1ull, below = (1ull << lo) - 1ull;
    return (uint32_t)(all & ~below);
}

/* Masked lanes are never read, so the address may lie before the row (integer arithmetic). */
static inline const float *at(const float *row, int64_t off) { return (const float *)((uintptr_t)row + (uintptr_t)(off * 4)); }
static inline float *atw(float *row, int64_t off) { return (float *)((uintptr_t)row + (uintptr_t)(off * 4)); }

/* Loads and stores of one channel vector.  FULL (all 16 lanes inside the channel range and, for
 * inputs, the column inside the image) uses plain instructions (with nt, full output vectors,
 * 64-byte aligned then, see nhwc(), bypass the caches: no read-for-ownership of lines that would be
 * evicted before reuse): a masked load costs an extra uop on
 * the FMA ports (p0/p5), and the 3x3 blocks make about 4 loads per 9 FMAs. */
static inline __attribute__((always_inline)) __m512 ldv(__mmask16 m, const float *src, const int FULL) {
    return FULL ? _mm512_loadu_ps(src) : _mm512_maskz_loadu_ps(m, src);
}
static inline __attribute__((always_inline)) void stv(float *dst, __mmask16 mo, __m512 v, int nt, const int FULL) {
    if (!FULL) _mm512_mask_storeu_ps(dst, mo, v);
    else if (nt) _mm512_stream_ps(dst, v);
    else _mm512_storeu_ps(dst, v);
}

/* Input vector for output channels [cb, cb + 16) of one pixel: channel c reads input c / m. */
static inline __m512 in_vec(const float *xp, int64_t cb, int64_t nch, int64_t m, __mmask16 mo) {
    if (m == 1) return _mm512_maskz_loadu_ps(mo, xp + cb);
    const int64_t c0 = cb / m, c1 = (cb + nch - 1) / m;
    const __m512 v = _mm512_maskz_loadu_ps((__mmask16)lanes32(0, c1 - c0 + 1), xp + c0);
    int32_t idx[16];
    for (int l = 0; l < 16; l++) idx[l] = (int32_t)((cb + l) / m - c0) & 15;
    return _mm512_permutexvar_ps(_mm512_loadu_si512(idx), v);
}

/* NHWC geometry of one call. */
typedef struct nhwc_geo {
    int64_t C, cpad, W, kw, sw, dw, dh, pl, cin, ow;
    int64_t cs; /* channel blocks start cs channels early, so that output stores are 64-byte aligned */
    int nt;     /* full output vectors are streamed (non-temporal): the output does not fit in L2 */
    int relu;
} nhwc_geo;

/* PX adjacent output pixels x 16 channels.  xr points at input row ky0, column col0 (the first
 * pixel's first tap, possibly left of the image) and the channel block; w at tap (ky0, 0).  With
 * the shape known at compile time (KW > 0) each input vector of a row is loaded once and feeds
 * every (pixel, kx) pair that reads it: PX + KW - 1 loads per row for stride 1 instead of PX * KW.
 * EDGE: columns outside [0, W) load as zeros (a zero mask: nothing is read there). */
static inline __attribute__((always_inline)) void nhwc_block(const float *xr0, int64_t col0, const float *w,
                                                             const nhwc_geo *g, int64_t nky, __m512 b, __mmask16 mo,
                                                             float *yp, const int PX, const int KW, const int SW,
                                                             const int DW, const int EDGE, const int NKY, const int relu,
                                                             const int FULL) {
    __m512 acc[8];
#pragma GCC unroll 8
    for (int q = 0; q < PX; q++) acc[q] = b;
    const int64_t C = g->C, rs = g->dh * g->W * C, kw = KW ? KW : g->kw, W = g->W;
    const int64_t sw = SW ? SW : g->sw, dw = DW ? DW : g->dw;
    const int NI = KW ? (PX - 1) * SW + (KW - 1) * DW + 1 : 1; /* input vectors of a row */
    for (int64_t ky = 0; ky < (NKY ? NKY : nky); ky++) {
        const float *xr = xr0 + ky * rs;
        const float *wr = w + ky * kw * g->cpad;
        if (KW) {
            __m512 xin[24];
#pragma GCC unroll 24
            for (int j = 0; j < NI; j++) {
                const __mmask16 mj = EDGE ? ((uint64_t)(col0 + j) < (uint64_t)W ? mo : 0) : mo;
                if (EDGE && FULL)
                    xin[j] = (uint64_t)(col0 + j) < (uint64_t)W ? _mm512_loadu_ps(at(xr, j * C)) : _mm512_setzero_ps();
                else
                    xin[j] = EDGE ? _mm512_maskz_loadu_ps(mj, at(xr, j * C)) : ldv(mo, at(xr, j * C), FULL);
            }
#pragma GCC unroll 8
            for (int kx = 0; kx < KW; kx++) {
                const __m512 wv = ldv(mo, wr + kx * g->cpad, FULL);
#pragma GCC unroll 8
                for (int q = 0; q < PX; q++) acc[q] = _mm512_fmadd_ps(xin[q * SW + kx * DW], wv, acc[q]);
            }
        } else {
            for (int64_t kx = 0; kx < kw; kx++) {
                const __m512 wv = _mm512_maskz_loadu_ps(mo, wr + kx * g->cpad);
#pragma GCC unroll 8
                for (int q = 0; q < PX; q++) {
                    const int64_t j = q * sw + kx * dw;
                    const __mmask16 mj = EDGE ? ((uint64_t)(col0 + j) < (uint64_t)W ? mo : 0) : mo;
                    acc[q] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mj, at(xr, j * C)), wv, acc[q]);
                }
            }
        }
    }
    const __m512 z = _mm512_setzero_ps();
#pragma GCC unroll 8
    for (int q = 0; q < PX; q++) stv(yp + q * C, mo, relu ? _mm512_max_ps(z, acc[q]) : acc[q], g->nt, FULL);
}

/* One block of PX output pixels, channels [c0, c1) in vectors of 16: channels inner, so the
 * input is walked in address order and the block's input (rows x pixels x C) stays in L1. */
static inline __attribute__((always_inline)) void nhwc_pixels(const float *xrow, int64_t col0, const float *w,
                                                              const nhwc_geo *g, int64_t nky, const float *bias,
                                                              int64_t c0, int64_t c1, float *yp, const int PX,
                                                              const int KW, const int SW, const int DW, const int EDGE) {
    const int64_t C = g->C;
    const float *xo = at(xrow, col0 * C);
    /* the common cases get straight-line code: all 3 kernel rows, ReLU or not known */
#define NHWC_CB_LOOP(NKY, RELU)                                                                                       \
    for (int64_t cb = c0 - ((c0 + g->cs) & 15); cb < c1; cb += FP_DW_CB) {                                            \
        const __mmask16 mo = (__mmask16)lanes32(c0 - cb, c1 - cb);                                                   \
        const __m512 b = bias ? _mm512_maskz_loadu_ps(mo, at(bias, cb)) : _mm512_setzero_ps();                       \
        if (KW && mo == 0xFFFF)                                                                                       \
            nhwc_block(at(xo, cb), col0, at(w, cb), g, nky, b, mo, atw(yp, cb), PX, KW, SW, DW, EDGE, NKY, RELU, 1);  \
        else                                                                                                          \
            nhwc_block(at(xo, cb), col0, at(w, cb), g, nky, b, mo, atw(yp, cb), PX, KW, SW, DW, EDGE, NKY, RELU, 0);  \
    }
    if (KW == 3 && nky == 3 && !g->relu) {
        NHWC_CB_LOOP(3, 0)
    } else if (KW == 3 && nky == 3) {
        NHWC_CB_LOOP(3, 1)
    } else {
        const int relu = g->relu;
        NHWC_CB_LOOP(0, relu)
    }
#undef NHWC_CB_LOOP
}

typedef void (*nhwc_fn)(const float *, int64_t, const float *, const nhwc_geo *, int64_t, const float *, int64_t,
                        int64_t, float *);
#define NHWC_PX(PX, KW, SW, DW, EDGE)                                                                                 \
    static void nhwc_##PX##_##KW##_##SW##_##DW##_##EDGE(const float *xrow, int64_t col0, const float *w,             \
                                                        const nhwc_geo *g, int64_t nky, const float *bias,          \
                                                        int64_t c0, int64_t c1, float *yp) {                         \
        nhwc_pixels(xrow, col0, w, g, nky, bias, c0, c1, yp, PX, KW, SW, DW, EDGE);                                  \
    }
#define NHWC_SHAPE(KW, SW, DW)                                                                                        \
    NHWC_PX(1, KW, SW, DW, 0) NHWC_PX(2, KW, SW, DW, 0) NHWC_PX(3, KW, SW, DW, 0) NHWC_PX(4, KW, SW, DW, 0)           \
    NHWC_PX(5, KW, SW, DW, 0) NHWC_PX(6, KW, SW, DW, 0) NHWC_PX(7, KW, SW, DW, 0) NHWC_PX(8, KW, SW, DW, 0)           \
    NHWC_PX(1, KW, SW, DW, 1) NHWC_PX(2, KW, SW, DW, 1) NHWC_PX(3, KW, SW, DW, 1) NHWC_PX(4, KW, SW, DW, 1)           \
    NHWC_PX(5, KW, SW, DW, 1) NHWC_PX(6, KW, SW, DW, 1) NHWC_PX(7, KW, SW, DW, 1) NHWC_PX(8, KW, SW, DW, 1)           \
    static const nhwc_fn nhwc_fns_##KW##_##SW##_##DW[2][8] = {                                                         \
        {nhwc_1_##KW##_##SW##_##DW##_0, nhwc_2_##KW##_##SW##_##DW##_0, nhwc_3_##KW##_##SW##_##DW##_0,                 \
         nhwc_4_##KW##_##SW##_##DW##_0, nhwc_5_##KW##_##SW##_##DW##_0, nhwc_6_##KW##_##SW##_##DW##_0,                 \
         nhwc_7_##KW##_##SW##_##DW##_0, nhwc_8_##KW##_##SW##_##DW##_0},                                               \
        {nhwc_1_##KW##_##SW##_##DW##_1, nhwc_2_##KW##_##SW##_##DW##_1, nhwc_3_##KW##_##SW##_##DW##_1,                 \
         nhwc_4_##KW##_##SW##_##DW##_1, nhwc_5_##KW##_##SW##_##DW##_1, nhwc_6_##KW##_##SW##_##DW##_1,                 \
         nhwc_7_##KW##_##SW##_##DW##_1, nhwc_8_##KW##_##SW##_##DW##_1}};
NHWC_SHAPE(3, 1, 1)
NHWC_SHAPE(3, 2, 1)
NHWC_SHAPE(0, 0, 0)

/* One output pixel, channels [c0, c1), taps checked one by one (borders, and multiplier > 1). */
static void nhwc_pixel(const fp_conv_problem *p, const float *xn, const float *w, const float *bias, int64_t m,
                       int64_t cpad, int64_t iyb, int64_t ky0, int64_t ky1, int64_t ox, int64_t c0, int64_t c1,
                       float *yrow) {
    const int64_t C = p->cout;
    for (int64_t cb = c0; cb < c1; cb += FP_DW_CB) {
        const int64_t nch = FP_MIN(FP_DW_CB, c1 - cb); /* c0 may be off the 16-grid (shifted groups) */
        const __mmask16 mo = (__mmask16)lanes32(0, nch);
        __m512 acc = bias ? _mm512_maskz_loadu_ps(mo, bias + cb) : _mm512_setzero_ps();
        for (int64_t ky = ky0; ky < ky1; ky++) {
            const int64_t iy = iyb + ky * p->dil_h;
            for (int64_t kx = 0; kx < p->kw; kx++) {
                const int64_t ix = ox * p->stride_w - p->pad_left + kx * p->dil_w;
                if (ix < 0 || ix >= p->w) continue;
                const __m512 wv = _mm512_maskz_loadu_ps(mo, w + (ky * p->kw + kx) * cpad + cb);
                acc = _mm512_fmadd_ps(in_vec(xn + (iy * p->w + ix) * p->cin, cb, nch, m, mo), wv, acc);
            }
        }
        if (p->relu) acc = _mm512_max_ps(_mm512_setzero_ps(), acc);
        _mm512_mask_storeu_ps(yrow + ox * C + cb, mo, acc);
    }
}

/* One channel vector of a row pair (see nhwc_pair); mo: its lanes inside [c0, c1). */
static inline __attribute__((always_inline)) void pair_vec(const float *xo, int64_t col0, const float *wc,
                                                           const nhwc_geo *g, __m512 b, __mmask16 mo, float *yp,
                                                           const int PX, const int EDGE, const int relu,
                                                           const int FULL) {
    const int64_t C = g->C, rs = g->W * C, cpad = g->cpad, W = g->W, ys = g->ow * C;
    const __m512 z = _mm512_setzero_ps();
    __m512 a0[8], a1[8];
#pragma GCC unroll 8
    for (int q = 0; q < PX; q++) a0[q] = a1[q] = b;
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        const float *xr = at(xo, i * rs);
        __m512 xin[10];
#pragma GCC unroll 10
        for (int j = 0; j < PX + 2; j++) {
            if (EDGE && FULL) {
                /* a branch per column (the same outcome for every channel vector of the block)
                 * instead of a masked load */
                xin[j] = (uint64_t)(col0 + j) < (uint64_t)W ? _mm512_loadu_ps(at(xr, j * C)) : z;
            } else if (EDGE) {
                const __mmask16 mj = (uint64_t)(col0 + j) < (uint64_t)W ? mo : 0;
                xin[j] = _mm512_maskz_loadu_ps(mj, at(xr, j * C));
            } else {
                xin[j] = ldv(mo, at(xr, j * C), FULL);
            }
        }
#pragma GCC unroll 3
        for (int kx = 0; kx < 3; kx++) {
            if (i < 3) {
                const __m512 wv = ldv(mo, wc + (i * 3 + kx) * cpad, FULL);
#pragma GCC unroll 8
                for (int q = 0; q < PX; q++) a0[q] = _mm512_fmadd_ps(xin[q + kx], wv, a0[q]);
            }
            if (i > 0) {
                const __m512 wv = ldv(mo, wc + ((i - 1) * 3 + kx) * cpad, FULL);
#pragma GCC unroll 8
                for (int q = 0; q < PX; q++) a1[q] = _mm512_fmadd_ps(xin[q + kx], wv, a1[q]);
            }
        }
    }
#pragma GCC unroll 8
    for (int q = 0; q < PX; q++) {
        stv(yp + q * C, mo, relu ? _mm512_max_ps(z, a0[q]) : a0[q], g->nt, FULL);
        stv(yp + ys + q * C, mo, relu ? _mm512_max_ps(z, a1[q]) : a1[q], g->nt, FULL);
    }
}

/* Two output rows at once for 3x3, stride 1, dilation 1, both rows with all 3 kernel rows inside
 * the image: the 4 input rows are each loaded once (PX + 2 vectors) and feed both output rows, so
 * per output row 2 input rows come from cache instead of 3.  yp: row 0; row 1 is g->ow pixels on. */
static inline __attribute__((always_inline)) void nhwc_pair(const float *xrow, int64_t col0, const float *w,
                                                            const nhwc_geo *g, const float *bias, int64_t c0,
                                                            int64_t c1, float *yp, const int PX, const int EDGE,
                                                            const int relu) {
    const float *xo = at(xrow, col0 * g->C);
    for (int64_t cb = c0 - ((c0 + g->cs) & 15); cb < c1; cb += FP_DW_CB) {
        const __mmask16 mo = (__mmask16)lanes32(c0 - cb, c1 - cb);
        const __m512 b = bias ? _mm512_maskz_loadu_ps(mo, at(bias, cb)) : _mm512_setzero_ps();
        if (mo == 0xFFFF) pair_vec(at(xo, cb), col0, at(w, cb), g, b, mo, atw(yp, cb), PX, EDGE, relu, 1);
        else pair_vec(at(xo, cb), col0, at(w, cb), g, b, mo, atw(yp, cb), PX, EDGE, relu, 0);
    }
}

typedef void (*pair_fn)(const float *, int64_t, const float *, const nhwc_geo *, const float *, int64_t, int64_t,
                        float *);
#define PAIR_PX(PX, EDGE)                                                                                             \
    static void pair_##PX##_##EDGE(const float *xrow, int64_t col0, const float *w, const nhwc_geo *g,                \
                                   const float *bias, int64_t c0, int64_t c1, float *yp) {                            \
        if (g->relu) nhwc_pair(xrow, col0, w, g, bias, c0, c1, yp, PX, EDGE, 1);                                      \
        else nhwc_pair(xrow, col0, w, g, bias, c0, c1, yp, PX, EDGE, 0);                                              \
    }
PAIR_PX(1, 0) PAIR_PX(2, 0) PAIR_PX(3, 0) PAIR_PX(4, 0) PAIR_PX(5, 0) PAIR_PX(6, 0) PAIR_PX(7, 0) PAIR_PX(8, 0)
PAIR_PX(1, 1) PAIR_PX(2, 1) PAIR_PX(3, 1) PAIR_PX(4, 1) PAIR_PX(5, 1) PAIR_PX(6, 1) PAIR_PX(7, 1) PAIR_PX(8, 1)
static const pair_fn pair_fns[2][8] = {{pair_1_0, pair_2_0, pair_3_0, pair_4_0, pair_5_0, pair_6_0, pair_7_0, pair_8_0},
                                       {pair_1_1, pair_2_1, pair_3_1, pair_4_1, pair_5_1, pair_6_1, pair_7_1, pair_8_1}};

/* Output rows oy and oy + 1 by pairs, when the shape allows it (see nhwc_pair). */
static int pair_ok(const fp_conv_problem *p) {
    return p->kh == 3 && p->kw == 3 && p->stride_h == 1 && p->stride_w == 1 && p->dil_h == 1 && p->dil_w == 1;
}

static void nhwc_row2(int64_t px, int64_t ow, const float *xrow, const float *w, const nhwc_geo *g,
                      const float *bias, int64_t c0, int64_t c1, float *yrow) {
    for (int64_t ox = 0; ox < ow; ox += px) {
        const int64_t o = FP_MIN(ox, ow - px), col0 = o - g->pl;
        const int edge = col0 < 0 || col0 + px + 1 >= g->W;
        pair_fns[edge][px - 1](xrow, col0, w, g, bias, c0, c1, yrow + o * g->C);
    }
}

/* The NHWC block table for a kernel shape. */
static const nhwc_fn *nhwc_pick(const fp_conv_problem *p) {
    if (p->kw == 3 && p->dil_w == 1 && p->stride_w == 1) return &nhwc_fns_3_1_1[0][0];
    if (p->kw == 3 && p->dil_w == 1 && p->stride_w == 2) return &nhwc_fns_3_2_1[0][0];
    return &nhwc_fns_0_0_0[0][0];
}

/* One output row in blocks of px pixels (xrow: input row ky0 at column 0; w: taps of row ky0).  The
 * last block is shifted back to end at ow: it recomputes a few outputs with the same values rather
 * than running a narrower block.  span: input columns a block reads, minus one. */
static void nhwc_row(const nhwc_fn *fns, int64_t px, int64_t span, int64_t ow, const float *xrow, const float *w,
                     const nhwc_geo *g, int64_t nky, const float *bias, int64_t c0, int64_t c1, float *yrow) {
    for (int64_t ox = 0; ox < ow; ox += px) {
        const int64_t o = FP_MIN(ox, ow - px), col0 = o * g->sw - g->pl;
        const int edge = col0 < 0 || col0 + span >= g->W;
        fns[edge * 8 + px - 1](xrow, col0, w, g, nky, bias, c0, c1, yrow + o * g->C);
    }
}

/* Shared state of an NHWC call; a job is one output row's channel group. */
typedef struct row_task {
    const fp_conv_problem *p;
    const float *x, *w, *bias;
    float *y;
    nhwc_geo g;
    int64_t m, groups, gch, jobs, nchunks, px, rpu, top, upi;
    int64_t bs; /* channel groups end bs channels early: on output cache lines with several threads */
    const nhwc_fn *fns; /* [edge][px - 1] */
} row_task;

static void row_chunk(void *ctx, int64_t chunk, int worker) {
    (void)worker;
    const row_task *rt = (const row_task *)ctx;
    const fp_conv_problem *p = rt->p;
    const float *x = rt->x, *w = rt->w, *bias = rt->bias;
    float *y = rt->y;
    const int64_t m = rt->m, C = p->cout, cpad = rt->g.cpad, px = rt->px;
    const int64_t span = (px - 1) * p->stride_w + (p->kw - 1) * p->dil_w;
    int64_t job_lo, job_hi;
    fp_chunk_range(rt->jobs, rt->nchunks, chunk, &job_lo, &job_hi);
    for (int64_t job = job_lo; job < job_hi; job++) {
        const int64_t unit = job / rt->groups, grp = job % rt->groups, upi = rt->upi, top = rt->top;
        /* units: the first `top` rows one by one (their top taps are padding), then pairs */
        const int64_t n = unit / upi, u = unit % upi;
        const int64_t oy0 = u < top ? u : top + (u - top) * rt->rpu;
        const int64_t oy1 = FP_MIN(p->oh, u < top ? u + 1 : oy0 + rt->rpu);
        /* group boundaries on the shifted vector grid: two threads never write one cache line */
        const int64_t c0 = grp == 0 ? 0 : grp * rt->gch - rt->bs;
        const int64_t c1 = grp == rt->groups - 1 ? C : FP_MIN(C, (grp + 1) * rt->gch - rt->bs);
        const float *xn = x + n * p->h * p->w * p->cin;
        if (oy1 - oy0 == 2) {
            const int64_t iyb = oy0 - p->pad_top; /* pairs: stride and dilation 1 */
            if (iyb >= 0 && iyb + 3 < p->h) {
                nhwc_row2(px, p->ow, xn + iyb * p->w * C, w, &rt->g, bias, c0, c1, y + (n * p->oh + oy0) * p->ow * C);
                continue;
            }
        }
        for (int64_t oy = oy0; oy < oy1; oy++) {
            const int64_t iyb = oy * p->stride_h - p->pad_top;
            int64_t ky0, ky1;
            fp_tap_range(iyb, p->kh, p->dil_h, p->h, &ky0, &ky1);
            float *yrow = y + (n * p->oh + oy) * p->ow * C;
            if (m != 1 || ky1 <= ky0) {
                for (int64_t ox = 0; ox < p->ow; ox++)
                    nhwc_pixel(p, xn, w, bias, m, cpad, iyb, ky0, ky1, ox, c0, c1, yrow);
                continue;
            }
            nhwc_row(rt->fns, px, span, p->ow, xn + (iyb + ky0 * p->dil_h) * p->w * C, w + ky0 * p->kw * cpad,
                     &rt->g, ky1 - ky0, bias, c0, c1, yrow);
        }
    }
    if (rt->g.nt) _mm_sfence(); /* streamed stores are weakly ordered: drain them before the chunk ends */
}

/* Column strips (multiplier 1): a job is one block of px output columns x one channel group, walked
 * down every output row (row pairs where the shape allows).  The input a step reads, (rows) x
 * (px + 2) pixels x the group's channels, stays in L1, so the rows that the next step shares with
 * this one (2 of 4 for pairs, 1 of 3 for single rows) come from L1 instead of L2: each input byte
 * crosses from L2 about (px + 2) / px times instead of 2-3 times.  The last block is narrower
 * (px in 1..8 each have their own function), so no two jobs write the same output. */
typedef struct strip_task {
    const fp_conv_problem *p;
    const float *x, *w, *bias;
    float *y;
    nhwc_geo g;
    int64_t groups, gch, cols, px, jobs, nchunks;
    int64_t bs; /* channel groups end bs channels early (see row_task) */
    int pair;
    const nhwc_fn *fns; /* [edge][px - 1] */
} strip_task;

static void strip_chunk(void *ctx, int64_t chunk, int worker) {
    (void)worker;
    const strip_task *st = (const strip_task *)ctx;
    const fp_conv_problem *p = st->p;
    const int64_t C = p->cout, W = p->w, cpad = st->g.cpad, OH = p->oh, OW = p->ow;
    int64_t job_lo, job_hi;
    fp_chunk_range(st->jobs, st->nchunks, chunk, &job_lo, &job_hi);
    for (int64_t job = job_lo; job < job_hi; job++) {
        const int64_t n = job / (st->groups * st->cols), rem = job % (st->groups * st->cols);
        /* column blocks outer: a thread's consecutive jobs are neighbouring columns of all channels,
         * so two threads share output lines only where their columns meet (a channel split would
         * share one on every pixel when the groups are not on output lines) */
        const int64_t grp = rem % st->groups, o = (rem / st->groups) * st->px, pw = FP_MIN(st->px, OW - o);
        const int64_t c0 = grp == 0 ? 0 : grp * st->gch - st->bs;
        const int64_t c1 = grp == st->groups - 1 ? C : FP_MIN(C, (grp + 1) * st->gch - st->bs);
        const int64_t col0 = o * p->stride_w - p->pad_left, span = (pw - 1) * p->stride_w + (p->kw - 1) * p->dil_w;
        const int edge = col0 < 0 || col0 + span >= W;
        const float *xn = st->x + n * p->h * W * C;
        float *yn = st->y + (n * OH * OW + o) * C;
        for (int64_t oy = 0; oy < OH;) {
            const int64_t iyb = oy * p->stride_h - p->pad_top;
            if (st->pair && oy + 1 < OH && iyb >= 0 && iyb + 3 < p->h) {
                pair_fns[edge][pw - 1](xn + iyb * W * C, col0, st->w, &st->g, st->bias, c0, c1, yn + oy * OW * C);
                oy += 2;
                continue;
            }
            int64_t ky0, ky1;
            fp_tap_range(iyb, p->kh, p->dil_h, p->h, &ky0, &ky1);
            if (ky1 <= ky0) {
                for (int64_t ox = o; ox < o + pw; ox++)
                    nhwc_pixel(p, xn, st->w, st->bias, 1, cpad, iyb, ky0, ky1, ox, c0, c1, st->y + (n * OH + oy) * OW * C);
            } else {
                st->fns[edge * 8 + pw - 1](xn + (iyb + ky0 * p->dil_h) * W * C, col0, st->w + ky0 * p->kw * cpad, &st->g,
                                           ky1 - ky0, st->bias, c0, c1, yn + oy * OW * C);
            }
            oy += 1;
        }
    }
    if (st->g.nt) _mm_sfence();
}

#ifndef FP_DW_NT_BYTES
#define FP_DW_NT_BYTES (((int64_t)3 << 20) / 2)
#endif

#ifndef FP_DW_STRIP_BYTES
#define FP_DW_STRIP_BYTES 32768
#endif

/* Column strips for multiplier 1 (see strip_chunk). */
static void nhwc_strips(const fp_conv_problem *p, const float *x, const float *w, const float *bias, float *y,
                        const nhwc_geo *g, int64_t px, int64_t T, int64_t bs) {
    strip_task t;
    memset(&t, 0, sizeof t);
    t.p = p; t.x = x; t.w = w; t.bias = bias; t.y = y; t.g = *g;
    t.px = px;
    t.bs = bs;
    t.pair = pair_ok(p);
    t.fns = nhwc_pick(p);
    t.cols = FP_CEIL_DIV(p->ow, px);
    const int64_t C = p->cout, cblocks = FP_CEIL_DIV(C, FP_DW_CB);
    /* input rows one step reads (4 for pairs), each (px - 1) * stride + reach pixels wide */
    const int64_t rows = t.pair ? 4 : (p->kh - 1) * p->dil_h + 1;
    const int64_t pix = (px - 1) * p->stride_w + (p->kw - 1) * p->dil_w + 1;
    const int64_t vmax = FP_MAX(1, FP_DW_STRIP_BYTES / (rows * pix * FP_DW_CB * (int64_t)sizeof(float)));
    int64_t groups = FP_CEIL_DIV(cblocks, vmax);
    /* enough jobs for the threads: narrower channel groups when there are few column blocks */
    if (T > 1) groups = FP_MAX(groups, FP_MIN(cblocks, FP_CEIL_DIV(2 * T, p->n * t.cols)));
    /* few jobs: as many for each thread (960@7 made 5 groups, 3 jobs on one thread and 2 on the other) */
    while (T > 1 && groups < cblocks && p->n * t.cols * groups < 8 * T && (p->n * t.cols * groups) % T) groups++;
    t.gch = FP_CEIL_DIV(cblocks, groups) * FP_DW_CB;
    t.groups = FP_CEIL_DIV(C, t.gch);
    t.jobs = p->n * t.groups * t.cols;
    t.nchunks = fp_chunk_count(t.jobs, (int)T);
    fp_pool_run((int)T, t.nchunks, strip_chunk, &t);
}

/* Pixels per block: all of a short row, else the size in 5..8 that wastes least on the last block. */
static int64_t nhwc_px(int64_t ow) {
    if (ow <= 8) return ow;
    int64_t best = 8;
    for (int64_t q = 8; q >= 5; q--)
        if (FP_CEIL_DIV(ow, q) * q < FP_CEIL_DIV(ow, best) * best) best = q;
    return best;
}

static int nhwc(const fp_conv_problem *p, const float *x, const float *w, const float *bias, float *y) {
    const int64_t m = p->cout / p->cin, C = p->cout, T = fp_threads(p);
    const int64_t sw = p->stride_w, dw = p->dil_w;
    /* Few rows (7x7 maps) would leave a thread idle: split rows into channel groups too. */
    const int64_t cblocks = FP_CEIL_DIV(C, FP_DW_CB);
    const int64_t rpu = m == 1 && pair_ok(p) ? 2 : 1; /* output rows per job */
    const int64_t top = rpu == 2 ? FP_MIN(p->oh, p->pad_top) : 0;
    const int64_t upi = top + FP_CEIL_DIV(p->oh - top, rpu), units = p->n * upi;
    const int64_t groups = T > 1 && units < 16 * T ? FP_MIN(cblocks, FP_CEIL_DIV(16 * T, units)) : 1;
    const int64_t gch = FP_CEIL_DIV(cblocks, groups) * FP_DW_CB;
    row_task t;
    memset(&t, 0, sizeof t);
    t.p = p; t.x = x; t.w = w; t.bias = bias; t.y = y;
    t.g = (nhwc_geo){C, fp_dw_cpad(p), p->w, p->kw, sw, dw, p->dil_h, p->pad_left, p->cin, p->ow, 0, 0, p->relu};
    /* Channel blocks are shifted so that full vectors are 64-byte aligned: the loads' when the
     * output is cached (with unmasked loads a misaligned input costs 15 % in L1, a misaligned store
     * nothing measurable), the stores' when they stream.  The shift costs one more (partial) vector
     * per pixel: worth it from 6 vectors a pixel on (32@112: shifted 50 % slower).
     * Outputs over 1.5 MiB are streamed: then the input stays in L2 (144@56: 56 -> 82 GFLOP/s raw;
     * the stride-2 layer, whose input alone overflows L2, lost 5 % with it, so the rule is on the
     * output).  Streaming stores need every full vector 64-byte aligned: pixels a multiple of 64
     * bytes apart and the first one aligned by the shift (or by the array itself). */
    const int64_t ymis = (int64_t)(((uintptr_t)y / sizeof(float)) % 16);
    const int64_t xmis = (int64_t)(((uintptr_t)x / sizeof(float)) % 16);
    const int y4 = (uintptr_t)y % sizeof(float) == 0, x4 = (uintptr_t)x % sizeof(float) == 0;
    const int64_t out_bytes = (int64_t)sizeof(float) * p->n * p->oh * p->ow * C;
    const int stream = y4 && C % 16 == 0 && m == 1 && out_bytes > FP_DW_NT_BYTES;
    const int by_x = !stream && m == 1 && x4;
    t.g.cs = C % 16 == 0 && C >= 96 && (by_x || y4) ? (by_x ? xmis : ymis) : 0;
    t.g.nt = stream && t.g.cs == ymis;
    /* With several threads, group boundaries fall on output cache lines (two threads writing one
     * line made 192@28 slower at 2 threads than at 1); with one, on the load grid (no extra vector). */
    t.bs = T > 1 && y4 && C % 16 == 0 ? ymis : t.g.cs;
    t.m = m; t.groups = FP_CEIL_DIV(C, gch); t.gch = gch;
    t.rpu = rpu;
    t.top = top;
    t.upi = upi;
    t.jobs = units * t.groups;
    t.nchunks = fp_chunk_count(t.jobs, (int)T);
    t.px = nhwc_px(p->ow);
    t.fns = nhwc_pick(p);
    /* Strips pay where rows are wide in bytes and pairs share rows (raw call, offsets as NumPy's:
     * 144@56 +5-7 %, 192@28 +4-8 %, 960@7 +3-5 %; 32@112 -19 % and stride 2 -4 %, so those keep rows). */
    /* With several threads, strips split columns between them; maps with fewer than 2 column blocks
     * per thread keep the row order, which splits rows (2 threads, raw: 384@14 9.6 us in rows
     * against 10.5-21 us in strips, 960@7 9.0 against 13.1-13.7). */
    if (m == 1 && C >= 64 && pair_ok(p) && (T == 1 || FP_CEIL_DIV(p->ow, t.px) >= 2 * T)) {
        nhwc_strips(p, x, w, bias, y, &t.g, t.px, T, t.bs);
        if (t.g.nt) _mm_sfence();
        return FP_OK;
    }
    fp_pool_run((int)T, t.nchunks, row_chunk, &t);
    if (t.g.nt) _mm_sfence();
    return FP_OK;
}

/* NCHW through the NHWC blocks: a job is 16 channels x a band of output rows.  Input rows of the
 * 16 planes are transposed, as they are first needed, into a per-thread tile [row][W][16] (L1/L2
 * resident), each output row is computed into a [ow][16] row buffer by the NHWC blocks and
 * transposed back into the 16 output planes.  Vectors then run along channels, so 14x14 and 7x7
 * planes keep every lane busy, and each input row is read from memory once per band. */
typedef struct tile_task {
    const fp_conv_problem *p;
    const float *x, *w, *bias;
    float *y;
    nhwc_geo g;
    const nhwc_fn *fns;
    fp_dw_bands b;
    int64_t m, px, span, out_rows, nchunks;
    int pair, failed;
} tile_task;

/* npix consecutive pixels from offset `at` of nch planes -> [pixel][16] (lanes >= nch zero). */
static void transpose_in(const float *const *pl, int64_t nch, int64_t at, int64_t npix, float *dst) {
    const __m512 zero = _mm512_setzero_ps();
    for (int64_t i = 0; i < npix; i += 16) {
        const int64_t k = FP_MIN(16, npix - i);
        const __mmask16 mk = (__mmask16)lanes32(0, k);
        __m512 r[16];
#pragma GCC unroll 16
        for (int l = 0; l < 16; l++) r[l] = l < nch ? _mm512_maskz_loadu_ps(mk, pl[l] + at + i) : zero;
        fp_tr16_ps(r);
#pragma GCC unroll 16
        for (int j = 0; j < 16; j++)
            if (j < k) _mm512_store_ps(dst + (i + j) * 16, r[j]);
    }
}

/* [pixel][16] for npix pixels -> offset `at` of the first nch planes. */
static void transpose_out(const float *src, int64_t npix, float *const *pl, int64_t nch, int64_t at) {
    const __m512 zero = _mm512_setzero_ps();
    for (int64_t i = 0; i < npix; i += 16) {
        const int64_t k = FP_MIN(16, npix - i);
        const __mmask16 mk = (__mmask16)lanes32(0, k);
        __m512 r[16];
#pragma GCC unroll 16
        for (int j = 0; j < 16; j++) r[j] = j < k ? _mm512_load_ps(src + (i + j) * 16) : zero;
        fp_tr16_ps(r);
#pragma GCC unroll 16
        for (int l = 0; l < 16; l++)
            if (l < nch) _mm512_mask_storeu_ps(pl[l] + at + i, mk, r[l]);
    }
}

static void tile_chunk(void *ctx, int64_t chunk, int worker) {
    (void)worker;
    tile_task *tt = (tile_task *)ctx;
    const fp_conv_problem *p = tt->p;
    const int64_t W = p->w, C = p->cout, OW = p->ow, OH = p->oh, m = tt->m, cpad = tt->g.cpad;
    const int64_t tbytes = (int64_t)sizeof(float) * 16 * (tt->b.tile_rows * W + (tt->out_rows + 1) * OW);
    float *tile = (float *)fp_scratch_or_fail(0, tbytes, &tt->failed);
    if (!tile) return;
    float *rowbuf = tile + tt->b.tile_rows * W * 16;
    int64_t job_lo, job_hi;
    fp_chunk_range(tt->b.jobs, tt->nchunks, chunk, &job_lo, &job_hi);
    for (int64_t job = job_lo; job < job_hi; job++) {
        const fp_dw_job jb = fp_dw_job_at(p, &tt->b, job);
        const int64_t n = jb.n, cb = jb.cb, nch = jb.nch, oy0 = jb.oy0, oy1 = jb.oy1, iy_lo = jb.iy_lo, iy_end = jb.iy_hi;
        const float *xpl[16];
        float *ypl[16];
        for (int64_t l = 0; l < nch; l++) {
            xpl[l] = tt->x + (n * p->cin + (cb + l) / m) * p->h * W;
            ypl[l] = tt->y + (n * C + cb + l) * OH * OW;
        }
        float b16[16];
        for (int64_t l = 0; l < 16; l++) b16[l] = tt->bias && l < nch ? tt->bias[cb + l] : 0.0f;
        int64_t done = iy_lo; /* input rows [iy_lo, done) are in the tile */
        int64_t ob = oy0;     /* output rows [ob, oy) wait in the row buffer */
        for (int64_t oy = oy0; oy < oy1;) {
            const int64_t iyb = oy * p->stride_h - p->pad_top;
            /* two rows at once where both have all 3 kernel rows inside (see nhwc_pair) */
            const int two = tt->pair && oy + 1 < oy1 && iyb >= 0 && iyb + 3 < p->h;
            const int64_t need = FP_MIN(p->h, iyb + (two ? 4 : (p->kh - 1) * p->dil_h + 1));
            if (done < need) {
                /* rows are consecutive pixels of a plane: transpose at least 256 of them at once */
                const int64_t upto = FP_MIN(iy_end, FP_MAX(need, done + FP_CEIL_DIV(256, W)));
                transpose_in(xpl, nch, done * W, (upto - done) * W, tile + (done - iy_lo) * W * 16);
                done = upto;
            }
            if (two) {
                nhwc_row2(tt->px, OW, tile + (iyb - iy_lo) * W * 16, tt->w + cb, &tt->g, b16, 0, 16,
                          rowbuf + (oy - ob) * OW * 16);
                oy += 2;
            } else {
                int64_t ky0, ky1;
                fp_tap_range(iyb, p->kh, p->dil_h, p->h, &ky0, &ky1);
                const int64_t nky = ky1 > ky0 ? ky1 - ky0 : 0;
                const float *xrow = nky ? tile + (iyb + ky0 * p->dil_h - iy_lo) * W * 16 : tile;
                nhwc_row(tt->fns, tt->px, tt->span, OW, xrow, tt->w + (nky ? ky0 : 0) * p->kw * cpad + cb, &tt->g,
                         nky, b16, 0, 16, rowbuf + (oy - ob) * OW * 16);
                oy += 1;
            }
            if (oy - ob >= tt->out_rows || oy == oy1) {
                transpose_out(rowbuf, (oy - ob) * OW, ypl, nch, ob * OW);
                ob = oy;
            }
        }
    }
}

static int nchw_tiled(const fp_conv_problem *p, const float *x, const float *w, const float *bias, float *y) {
    const int64_t T = fp_threads(p), W = p->w;
    tile_task t;
    memset(&t, 0, sizeof t);
    t.p = p; t.x = x; t.w = w; t.bias = bias; t.y = y;
    t.g = (nhwc_geo){16, fp_dw_cpad(p), W, p->kw, p->stride_w, p->dil_w, p->dil_h, p->pad_left, 16, p->ow, 0, 0, p->relu};
    t.fns = nhwc_pick(p);
    t.m = p->cout / p->cin;
    t.px = nhwc_px(p->ow);
    t.span = (t.px - 1) * p->stride_w + (p->kw - 1) * p->dil_w;
    t.b = fp_dw_plan(p, T);
    /* output rows transposed back together (the row buffer holds one more: pairs may overshoot) */
    t.out_rows = FP_MIN(t.b.brows, FP_CEIL_DIV(64, p->ow));
    t.pair = pair_ok(p);
    t.nchunks = fp_chunk_count(t.b.jobs, (int)T);
    fp_pool_run((int)T, t.nchunks, tile_chunk, &t);
    return t.failed ? FP_ERR_ALLOC : FP_OK;
}

int fp_dwconv_run_avx512(const fp_conv_problem *p, const float *x, const float *w, const float *bias, float *y) {
    return p->layout != 0 ? nhwc(p, x, w, bias, y) : nchw_tiled(p, x, w, bias, y);
}

#if defined(__clang__)
#pragma clang attribute pop
#endif
#else
int fp_dwconv_run_avx512(const fp_conv_problem *p, const float *x, const float *w, const float *bias, float *y) {
    return fp_dwconv_run_avx2(p, x, w, bias, y);
}
#endif
