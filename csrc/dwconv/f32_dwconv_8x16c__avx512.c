/* Depthwise micro-kernels for AVX-512 (any kernel size, stride, dilation, multiplier): vectors run
 * along 16 channels; a block is up to 8 adjacent output pixels (x 2 output rows for 3x3 stride 1) of
 * one channel vector, so that each input vector loaded from cache feeds every (pixel, tap) pair that
 * reads it.  Borders: a branch per column (zero vectors) or zero masks on the loads of columns
 * outside the image.  The driver (dwconv_driver.c) runs them on NHWC images and on NCHW tiles. */
#include "dwconv.h"
#include "../isa_target.h"

#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
FP_TARGET_AVX512
#include <immintrin.h>
#include <stdint.h>

#include "dwconv_transpose16__avx512.h"

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
 * 64-byte aligned then, see the driver, bypass the caches: no read-for-ownership of lines that would be
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

/* PX adjacent output pixels x 16 channels.  xr points at input row ky0, column col0 (the first
 * pixel's first tap, possibly left of the image) and the channel block; w at tap (ky0, 0).  With
 * the shape known at compile time (KW > 0) each input vector of a row is loaded once and feeds
 * every (pixel, kx) pair that reads it: PX + KW - 1 loads per row for stride 1 instead of PX * KW.
 * EDGE: columns outside [0, W) load as zeros (a zero mask: nothing is read there). */
static inline __attribute__((always_inline)) void nhwc_block(const float *xr0, int64_t col0, const float *w,
                                                             const fp_dw_geo *g, int64_t nky, __m512 b, __mmask16 mo,
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
                                                              const fp_dw_geo *g, int64_t nky, const float *bias,
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

#define NHWC_PX(PX, KW, SW, DW, EDGE)                                                                                 \
    static void nhwc_##PX##_##KW##_##SW##_##DW##_##EDGE(const float *xrow, int64_t col0, const float *w,             \
                                                        const fp_dw_geo *g, int64_t nky, const float *bias,          \
                                                        int64_t c0, int64_t c1, float *yp) {                         \
        nhwc_pixels(xrow, col0, w, g, nky, bias, c0, c1, yp, PX, KW, SW, DW, EDGE);                                  \
    }
#define NHWC_SHAPE(KW, SW, DW)                                                                                        \
    NHWC_PX(1, KW, SW, DW, 0) NHWC_PX(2, KW, SW, DW, 0) NHWC_PX(3, KW, SW, DW, 0) NHWC_PX(4, KW, SW, DW, 0)           \
    NHWC_PX(5, KW, SW, DW, 0) NHWC_PX(6, KW, SW, DW, 0) NHWC_PX(7, KW, SW, DW, 0) NHWC_PX(8, KW, SW, DW, 0)           \
    NHWC_PX(1, KW, SW, DW, 1) NHWC_PX(2, KW, SW, DW, 1) NHWC_PX(3, KW, SW, DW, 1) NHWC_PX(4, KW, SW, DW, 1)           \
    NHWC_PX(5, KW, SW, DW, 1) NHWC_PX(6, KW, SW, DW, 1) NHWC_PX(7, KW, SW, DW, 1) NHWC_PX(8, KW, SW, DW, 1)           \
    static const fp_dw_block_fn nhwc_fns_##KW##_##SW##_##DW[2][8] = {                                                         \
        {nhwc_1_##KW##_##SW##_##DW##_0, nhwc_2_##KW##_##SW##_##DW##_0, nhwc_3_##KW##_##SW##_##DW##_0,                 \
         nhwc_4_##KW##_##SW##_##DW##_0, nhwc_5_##KW##_##SW##_##DW##_0, nhwc_6_##KW##_##SW##_##DW##_0,                 \
         nhwc_7_##KW##_##SW##_##DW##_0, nhwc_8_##KW##_##SW##_##DW##_0},                                               \
        {nhwc_1_##KW##_##SW##_##DW##_1, nhwc_2_##KW##_##SW##_##DW##_1, nhwc_3_##KW##_##SW##_##DW##_1,                 \
         nhwc_4_##KW##_##SW##_##DW##_1, nhwc_5_##KW##_##SW##_##DW##_1, nhwc_6_##KW##_##SW##_##DW##_1,                 \
         nhwc_7_##KW##_##SW##_##DW##_1, nhwc_8_##KW##_##SW##_##DW##_1}};
/* The shapes of the depthwise layers of MobileNet V2/V3, EfficientNet, ConvNeXt and dilated backbones
 * (DeepLab, LR-ASPP) get straight-line blocks: the generic ones (KW = 0) load each input vector once per
 * (pixel, tap) pair, with the column and tap offsets computed at run time (LR-ASPP's 5x5 dilation-2
 * 960@16: 600 -> 210 us at 1 thread, loaded box).  Every (PX, KW, SW, DW) keeps (PX-1)*SW+(KW-1)*DW+1 <= 24
 * input vectors (xin). */
NHWC_SHAPE(3, 1, 1)
NHWC_SHAPE(3, 2, 1)
NHWC_SHAPE(3, 1, 2)
NHWC_SHAPE(5, 1, 1)
NHWC_SHAPE(5, 2, 1)
NHWC_SHAPE(5, 1, 2)
NHWC_SHAPE(7, 1, 1)
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
                                                           const fp_dw_geo *g, __m512 b, __mmask16 mo, float *yp,
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
                                                            const fp_dw_geo *g, const float *bias, int64_t c0,
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

#define PAIR_PX(PX, EDGE)                                                                                             \
    static void pair_##PX##_##EDGE(const float *xrow, int64_t col0, const float *w, const fp_dw_geo *g,                \
                                   const float *bias, int64_t c0, int64_t c1, float *yp) {                            \
        if (g->relu) nhwc_pair(xrow, col0, w, g, bias, c0, c1, yp, PX, EDGE, 1);                                      \
        else nhwc_pair(xrow, col0, w, g, bias, c0, c1, yp, PX, EDGE, 0);                                              \
    }
PAIR_PX(1, 0) PAIR_PX(2, 0) PAIR_PX(3, 0) PAIR_PX(4, 0) PAIR_PX(5, 0) PAIR_PX(6, 0) PAIR_PX(7, 0) PAIR_PX(8, 0)
PAIR_PX(1, 1) PAIR_PX(2, 1) PAIR_PX(3, 1) PAIR_PX(4, 1) PAIR_PX(5, 1) PAIR_PX(6, 1) PAIR_PX(7, 1) PAIR_PX(8, 1)
static const fp_dw_pair_fn pair_fns[2][8] = {{pair_1_0, pair_2_0, pair_3_0, pair_4_0, pair_5_0, pair_6_0, pair_7_0, pair_8_0},
                                       {pair_1_1, pair_2_1, pair_3_1, pair_4_1, pair_5_1, pair_6_1, pair_7_1, pair_8_1}};

/* The NHWC block table for a kernel shape. */
static const fp_dw_block_fn *nhwc_pick(const fp_conv_problem *p) {
    if (p->kw == 3 && p->dil_w == 1 && p->stride_w == 1) return &nhwc_fns_3_1_1[0][0];
    if (p->kw == 3 && p->dil_w == 1 && p->stride_w == 2) return &nhwc_fns_3_2_1[0][0];
    if (p->kw == 3 && p->dil_w == 2 && p->stride_w == 1) return &nhwc_fns_3_1_2[0][0];
    if (p->kw == 5 && p->dil_w == 1 && p->stride_w == 1) return &nhwc_fns_5_1_1[0][0];
    if (p->kw == 5 && p->dil_w == 1 && p->stride_w == 2) return &nhwc_fns_5_2_1[0][0];
    if (p->kw == 5 && p->dil_w == 2 && p->stride_w == 1) return &nhwc_fns_5_1_2[0][0];
    if (p->kw == 7 && p->dil_w == 1 && p->stride_w == 1) return &nhwc_fns_7_1_1[0][0];
    return &nhwc_fns_0_0_0[0][0];
}

/* Pixels per block: all of a short row, else the size in 5..8 that wastes least on the last block. */
static int64_t nhwc_px(int64_t ow) {
    if (ow <= 8) return ow;
    int64_t best = 8;
    for (int64_t q = 8; q >= 5; q--)
        if (FP_CEIL_DIV(ow, q) * q < FP_CEIL_DIV(ow, best) * best) best = q;
    return best;
}


static void pixels(const fp_conv_problem *p, const float *xn, const float *w, const float *bias, int64_t m, int64_t iyb,
                   int64_t ky0, int64_t ky1, int64_t ox0, int64_t ox1, int64_t c0, int64_t c1, float *yrow, float *acc) {
    (void)acc;
    const int64_t cpad = fp_dw_cpad(p);
    for (int64_t ox = ox0; ox < ox1; ox++) nhwc_pixel(p, xn, w, bias, m, cpad, iyb, ky0, ky1, ox, c0, c1, yrow);
}

static void fence(void) { _mm_sfence(); }

const fp_dw_ukernel fp_f32_dwconv_8x16c__avx512 = {
    {"f32_dwconv_8x16c__avx512", "dwconv", 0, FP_ISA_AVX512, 8, 16}, 8, 16, FP_DW_ALIGNED | FP_DW_GROUPS | FP_DW_NHWC_BLOCKS, 0,
    nhwc_pick, &pair_fns[0][0], pixels, nhwc_px, fp_dw_tile_in_avx512, fp_dw_tile_out_avx512, fence};

FP_TARGET_END
#endif
