/* Depthwise convolution for AVX-512 (any kernel size, stride, dilation, multiplier).
 *
 * NCHW: 16 output columns per zmm; each tap is one masked load from the input row (the mask
 * zeroes columns outside the image, so borders need no padded copy and no branch), stride 2
 * deinterleaves two loads with one permute, other strides gather.
 * NHWC: 16 channels per zmm, with 4 output pixels sharing each weight load in the interior. */
#include "dwconv.h"

#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma"))), apply_to = function)
#else
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")
#endif
#include <immintrin.h>
#include <stdint.h>

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

static void nchw_row(const fp_conv_problem *p, const float *xc, const float *wc, float b, int64_t oy, float *yr) {
    const int64_t sw = p->stride_w, dw = p->dil_w, W = p->w, pl = p->pad_left;
    const int64_t iyb = oy * p->stride_h - p->pad_top;
    int64_t ky0 = iyb >= 0 ? 0 : FP_CEIL_DIV(-iyb, p->dil_h);
    int64_t ky1 = (p->h - 1 - iyb) < 0 ? 0 : FP_MIN(p->kh, (p->h - 1 - iyb) / p->dil_h + 1);
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i lane_sw = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                               _mm512_set1_epi32((int)sw));
    const __m512 zero = _mm512_setzero_ps();
    for (int64_t ox0 = 0; ox0 < p->ow; ox0 += 16) {
        const int64_t nout = FP_MIN(16, p->ow - ox0);
        const __mmask16 mo = (__mmask16)lanes32(0, nout);
        __m512 acc = _mm512_set1_ps(b);
        for (int64_t ky = ky0; ky < ky1; ky++) {
            const float *xr = xc + (iyb + ky * p->dil_h) * W;
            const float *wk = wc + ky * p->kw;
            for (int64_t kx = 0; kx < p->kw; kx++) {
                const int64_t base = ox0 * sw + kx * dw - pl;
                __m512 v;
                if (sw == 1) {
                    v = _mm512_maskz_loadu_ps((__mmask16)(lanes32(-base, W - base) & mo), at(xr, base));
                } else if (sw == 2) {
                    const uint32_t m = lanes32(-base, FP_MIN(W - base, 2 * nout - 1));
                    const __m512 lo = _mm512_maskz_loadu_ps((__mmask16)m, at(xr, base));
                    const __m512 hi = _mm512_maskz_loadu_ps((__mmask16)(m >> 16), at(xr, base + 16));
                    v = _mm512_permutex2var_ps(lo, even, hi);
                } else {
                    const __m512i ix = _mm512_add_epi32(lane_sw, _mm512_set1_epi32((int)base));
                    const __mmask16 m = _mm512_cmpge_epi32_mask(ix, _mm512_setzero_si512()) &
                                        _mm512_cmplt_epi32_mask(ix, _mm512_set1_epi32((int)W)) & mo;
                    v = _mm512_mask_i32gather_ps(zero, m, lane_sw, at(xr, base), 4);
                }
                acc = _mm512_fmadd_ps(_mm512_set1_ps(wk[kx]), v, acc);
            }
        }
        if (p->relu) acc = _mm512_max_ps(zero, acc);
        _mm512_mask_storeu_ps(yr + ox0, mo, acc);
    }
}

static int nchw(const fp_conv_problem *p, const float *x, const float *w, const float *bias, float *y) {
    const int64_t m = p->cout / p->cin, T = p->kh * p->kw, planes = p->n * p->cout;
#pragma omp parallel for num_threads(fp_threads(p)) schedule(static)
    for (int64_t job = 0; job < planes; job++) {
        const int64_t n = job / p->cout, co = job % p->cout;
        const float *xc = x + (n * p->cin + co / m) * p->h * p->w;
        const float b = bias ? bias[co] : 0.0f;
        for (int64_t oy = 0; oy < p->oh; oy++) nchw_row(p, xc, w + co * T, b, oy, y + (job * p->oh + oy) * p->ow);
    }
    return FP_OK;
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

static int nhwc(const fp_conv_problem *p, const float *x, const float *w, const float *bias, float *y) {
    const int64_t m = p->cout / p->cin, C = p->cout, cpad = fp_dw_cpad(p), rows = p->n * p->oh;
    const int64_t sw = p->stride_w, dw = p->dil_w, pl = p->pad_left;
    /* Output columns whose every tap is inside the image. */
    int64_t ox_lo = FP_CEIL_DIV(pl, sw), ox_hi = p->w - 1 - (p->kw - 1) * dw + pl;
    ox_hi = ox_hi < 0 ? 0 : FP_MIN(p->ow, ox_hi / sw + 1);
    if (ox_lo > ox_hi) ox_lo = ox_hi;
#pragma omp parallel for num_threads(fp_threads(p)) schedule(static)
    for (int64_t job = 0; job < rows; job++) {
        const int64_t n = job / p->oh, oy = job % p->oh;
        const int64_t iyb = oy * p->stride_h - p->pad_top;
        const int64_t ky0 = iyb >= 0 ? 0 : FP_CEIL_DIV(-iyb, p->dil_h);
        const int64_t ky1 = (p->h - 1 - iyb) < 0 ? 0 : FP_MIN(p->kh, (p->h - 1 - iyb) / p->dil_h + 1);
        const float *xn = x + n * p->h * p->w * p->cin;
        float *yrow = y + (n * p->oh + oy) * p->ow * C;
        for (int64_t cb = 0; cb < C; cb += FP_DW_CB) {
            const int64_t nch = FP_MIN(FP_DW_CB, C - cb);
            const __mmask16 mo = (__mmask16)lanes32(0, nch);
            const __m512 b = bias ? _mm512_maskz_loadu_ps(mo, bias + cb) : _mm512_setzero_ps();
            int64_t ox = 0;
            while (ox < p->ow) {
                if (m == 1 && ox >= ox_lo && ox + 4 <= ox_hi) {
                    /* interior: 4 pixels share each weight vector, no bounds checks */
                    __m512 a0 = b, a1 = b, a2 = b, a3 = b;
                    const int64_t ps = sw * p->cin;
                    for (int64_t ky = ky0; ky < ky1; ky++) {
                        const float *xr = xn + ((iyb + ky * p->dil_h) * p->w + ox * sw - pl) * p->cin + cb;
                        for (int64_t kx = 0; kx < p->kw; kx++) {
                            const __m512 wv = _mm512_loadu_ps(w + (ky * p->kw + kx) * cpad + cb);
                            const float *xp = xr + kx * dw * p->cin;
                            a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mo, xp), wv, a0);
                            a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mo, xp + ps), wv, a1);
                            a2 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mo, xp + 2 * ps), wv, a2);
                            a3 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mo, xp + 3 * ps), wv, a3);
                        }
                    }
                    if (p->relu) {
                        const __m512 z = _mm512_setzero_ps();
                        a0 = _mm512_max_ps(z, a0); a1 = _mm512_max_ps(z, a1);
                        a2 = _mm512_max_ps(z, a2); a3 = _mm512_max_ps(z, a3);
                    }
                    float *yp = yrow + ox * C + cb;
                    _mm512_mask_storeu_ps(yp, mo, a0);
                    _mm512_mask_storeu_ps(yp + C, mo, a1);
                    _mm512_mask_storeu_ps(yp + 2 * C, mo, a2);
                    _mm512_mask_storeu_ps(yp + 3 * C, mo, a3);
                    ox += 4;
                    continue;
                }
                __m512 acc = b;
                for (int64_t ky = ky0; ky < ky1; ky++) {
                    const int64_t iy = iyb + ky * p->dil_h;
                    for (int64_t kx = 0; kx < p->kw; kx++) {
                        const int64_t ix = ox * sw - pl + kx * dw;
                        if (ix < 0 || ix >= p->w) continue;
                        const __m512 wv = _mm512_loadu_ps(w + (ky * p->kw + kx) * cpad + cb);
                        acc = _mm512_fmadd_ps(in_vec(xn + (iy * p->w + ix) * p->cin, cb, nch, m, mo), wv, acc);
                    }
                }
                if (p->relu) acc = _mm512_max_ps(_mm512_setzero_ps(), acc);
                _mm512_mask_storeu_ps(yrow + ox * C + cb, mo, acc);
                ox++;
            }
        }
    }
    return FP_OK;
}

int fp_dwconv_run_avx512(const fp_conv_problem *p, const float *x, const float *w, const float *bias, float *y) {
    return p->layout == 0 ? nchw(p, x, w, bias, y) : nhwc(p, x, w, bias, y);
}

#if defined(__clang__)
#pragma clang attribute pop
#endif
#else
int fp_dwconv_run_avx512(const fp_conv_problem *p, const float *x, const float *w, const float *bias, float *y) {
    return fp_dwconv_run_avx2(p, x, w, bias, y);
}
#endif
