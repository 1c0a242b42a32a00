/* A network's stem convolution, AVX-512: few-channel NCHW input (the graph's image) straight into an NHWC
 * output (the layout the rest of an NHWC plan runs in), bias and the fused epilogue applied per tile.
 *
 * Why its own loop: the NHWC direct kernel wants channels in the vector lanes, and an image has 3, so an
 * NHWC plan first copied the input into NHWC and then ran 3 of 16 lanes useful (lraspp's 3->16 3x3 s2
 * stem: 0.44 ms, 14 % of peak).  Here the output channels are the lanes (up to 32: two vectors) and each
 * input value is broadcast against them: a block of 8 output pixels of one row keeps 8 (or 16)
 * accumulators in registers over all C * KH * KW taps, reading the taps' input rows in place (NCHW). */
#include "ops.h"
#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
#include "../epilogue/epilogue.h"
#include "../isa_target.h"
FP_TARGET_AVX512
#include <immintrin.h>

#define STEM_P 8 /* output pixels per block */

/* P output pixels from ox0 (first tap column ix0 = ox0 * sw - pad_left) of row oy into buf (P rows of
 * 16 * NV floats): bias plus every tap; `checked`: some tap columns fall outside the image (the
 * padding) and are skipped, as are tap rows outside it (always). */
static inline __attribute__((always_inline)) void stem_block(const float *xn, const fp_stem_geom *g, const float *wp,
                                                             const float *bias, int64_t iy0, int64_t ix0, float *buf,
                                                             const int P, const int NV, const int checked) {
    __m512 acc[STEM_P][2];
    const int64_t OCP = 16 * NV;
#pragma GCC unroll 8
    for (int p = 0; p < P; p++)
        for (int v = 0; v < NV; v++) acc[p][v] = _mm512_loadu_ps(bias + 16 * v);
    for (int64_t c = 0; c < g->c; c++)
        for (int64_t ky = 0; ky < g->kh; ky++) {
            const int64_t iy = iy0 + ky * g->dh;
            if (iy < 0 || iy >= g->h) continue;
            const float *row = xn + (c * g->h + iy) * g->w;
            const float *wr = wp + ((c * g->kh + ky) * g->kw) * OCP;
            for (int64_t kx = 0; kx < g->kw; kx++) {
                const __m512 w0 = _mm512_loadu_ps(wr + kx * OCP);
                const __m512 w1 = NV > 1 ? _mm512_loadu_ps(wr + kx * OCP + 16) : w0;
                const int64_t ix = ix0 + kx * g->dw;
#pragma GCC unroll 8
                for (int p = 0; p < P; p++) {
                    const int64_t i = ix + p * g->sw;
                    if (checked && (i < 0 || i >= g->w)) continue;
                    const __m512 b = _mm512_set1_ps(row[i]);
                    acc[p][0] = _mm512_fmadd_ps(b, w0, acc[p][0]);
                    if (NV > 1) acc[p][1] = _mm512_fmadd_ps(b, w1, acc[p][1]);
                }
            }
        }
#pragma GCC unroll 8
    for (int p = 0; p < P; p++)
        for (int v = 0; v < NV; v++) _mm512_storeu_ps(buf + p * OCP + 16 * v, acc[p][v]);
}

/* buf's P pixels (16 * NV floats apart) into y (oc apart): the epilogue's tile and copy, or conv + bias
 * (ReLU'd when `relu`) stored with a mask for the last vector. */
static inline void stem_store(const fp_ep *ep, int relu, float *buf, int64_t OCP, float *y, int64_t oc, int64_t P) {
    if (ep) {
        fp_ep_tile_out(ep, buf, OCP, y, oc, P, oc, 0, 0, 1, 0);
        return;
    }
    const __m512 zero = _mm512_setzero_ps();
    for (int64_t p = 0; p < P; p++)
        for (int64_t v = 0; v < oc; v += 16) {
            const __mmask16 m = oc - v >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (oc - v)) - 1);
            __m512 r = _mm512_loadu_ps(buf + p * OCP + v);
            if (relu) r = _mm512_max_ps(r, zero);
            _mm512_mask_storeu_ps(y + p * oc + v, m, r);
        }
}

/* Output columns whose taps all fall inside the image: [lo, hi). */
static void inside_cols(const fp_stem_geom *g, int64_t *lo, int64_t *hi) {
    const int64_t span = (g->kw - 1) * g->dw;
    int64_t a = FP_CEIL_DIV(g->pl, g->sw), b = g->w - 1 - span + g->pl < 0 ? 0 : (g->w - 1 - span + g->pl) / g->sw + 1;
    *lo = FP_MIN(a, g->ow);
    *hi = FP_MAX(*lo, FP_MIN(b, g->ow));
}

#define STEM_ROW(NV)                                                                                              \
    static void stem_row_##NV(const float *x, const fp_stem_geom *g, const float *wp, const float *bias, float *y, \
                              const fp_ep *ep, int relu, int64_t n, int64_t oy, float *buf) {                      \
        const float *xn = x + n * g->c * g->h * g->w;                                                              \
        float *yr = y + (n * g->oh + oy) * g->ow * g->oc;                                                          \
        const int64_t iy0 = oy * g->sh - g->pt, OCP = 16 * NV;                                                     \
        int64_t lo, hi, ox = 0;                                                                                    \
        inside_cols(g, &lo, &hi);                                                                                  \
        for (; ox < lo; ox++) {                                                                                    \
            stem_block(xn, g, wp, bias, iy0, ox * g->sw - g->pl, buf, 1, NV, 1);                                   \
            stem_store(ep, relu, buf, OCP, yr + ox * g->oc, g->oc, 1);                                             \
        }                                                                                                          \
        for (; ox + STEM_P <= hi; ox += STEM_P) {                                                                  \
            stem_block(xn, g, wp, bias, iy0, ox * g->sw - g->pl, buf, STEM_P, NV, 0);                              \
            stem_store(ep, relu, buf, OCP, yr + ox * g->oc, g->oc, STEM_P);                                        \
        }                                                                                                          \
        for (; ox < g->ow; ox++) {                                                                                 \
            stem_block(xn, g, wp, bias, iy0, ox * g->sw - g->pl, buf, 1, NV, ox >= hi);                            \
            stem_store(ep, relu, buf, OCP, yr + ox * g->oc, g->oc, 1);                                             \
        }                                                                                                          \
    }
STEM_ROW(1)
STEM_ROW(2)

void fp_stem_row_avx512(const float *x, const fp_stem_geom *g, const float *wp, const float *bias, float *y,
                        const fp_ep *ep, int relu, int64_t n, int64_t oy, float *buf) {
    if (g->oc <= 16)
        stem_row_1(x, g, wp, bias, y, ep, relu, n, oy, buf);
    else
        stem_row_2(x, g, wp, bias, y, ep, relu, n, oy, buf);
}
FP_TARGET_END
#endif
