/* The direct kernels' layout changes for AVX-512, kept apart from the micro-kernels: the strip
 * fills (an NCHW row split into its stride-2 phase rows, an NHWC row transposed into its strip row)
 * and the transposing NCHW output store (and its inverse for a residual).  The portable build gets
 * plain loops with the same results. */
#include "direct.h"
#include "../isa_target.h"

#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
FP_TARGET_AVX512
#include <immintrin.h>

#include "../transpose16_avx512.h"

static inline __mmask16 first_n(int64_t n) { return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? 0 : (__mmask16)((1u << n) - 1u); }

/* Transposing store: 16 channels at a time, the tile's rows (pixels) go through a 16x16 register
 * transpose, then one masked contiguous store per channel into its output row. */
void fp_direct_store_nchw_avx512(const float *tbuf, int64_t ops, int rw, int64_t nch, float *y, int64_t ystride) {
    const __mmask16 m = first_n(rw);
    for (int64_t c0 = 0; c0 < nch; c0 += 16) {
        __m512 r[16];
#pragma GCC unroll 16
        for (int j = 0; j < 16; j++) r[j] = j < rw ? _mm512_load_ps(tbuf + j * ops + c0) : _mm512_setzero_ps();
        fp_tr16_ps(r);
        const int64_t nc = FP_MIN(16, nch - c0);
#pragma GCC unroll 16
        for (int c = 0; c < 16; c++)
            if (c < nc) _mm512_mask_storeu_ps(y + (c0 + c) * ystride, m, r[c]);
    }
}

/* The inverse, for a residual of the NCHW output: channel rows y[c * ystride + j] (rw floats each) into
 * the pixel-major tile buf[j * ops + c], 16 channels at a time through a 16x16 register transpose. */
void fp_direct_load_nchw_avx512(const float *y, int64_t ystride, int rw, int64_t nch, float *buf, int64_t ops) {
    const __mmask16 m = first_n(rw);
    for (int64_t c0 = 0; c0 < nch; c0 += 16) {
        const int64_t nc = FP_MIN(16, nch - c0);
        __m512 r[16];
#pragma GCC unroll 16
        for (int c = 0; c < 16; c++) r[c] = c < nc ? _mm512_maskz_loadu_ps(m, y + (c0 + c) * ystride) : _mm512_setzero_ps();
        fp_tr16_ps(r);
#pragma GCC unroll 16
        for (int j = 0; j < 16; j++)
            if (j < rw) _mm512_storeu_ps(buf + j * ops + c0, r[j]);
    }
}

/* Lanes e of a 16-float block at padded column c0 + e whose input column c0 + e - pl lies in [0, w). */
static inline __mmask16 cols_in(int64_t c0, int64_t pl, int64_t w) {
    const int64_t lo = FP_MAX(0, pl - c0), hi = FP_MIN(16, w + pl - c0);
    return hi <= lo ? 0 : (__mmask16)(first_n(hi) & ~first_n(lo));
}

/* One NCHW input row into its two stride-2 strip rows, zero padding included: even[q] and odd[q] are
 * padded columns 2q and 2q + 1 (input column minus pl), for q < wq.  Masked loads never touch memory
 * outside the row. */
void fp_direct_split2_avx512(const float *src, int64_t w, int64_t pl, int64_t wq, float *even, float *odd) {
    const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i io = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    for (int64_t q = 0; q < wq; q += 16) {
        const int64_t c0 = 2 * q;
        const __mmask16 ma = cols_in(c0, pl, w), mb = cols_in(c0 + 16, pl, w);
        const __m512 a = ma ? _mm512_maskz_loadu_ps(ma, src + (c0 - pl)) : _mm512_setzero_ps();
        const __m512 b = mb ? _mm512_maskz_loadu_ps(mb, src + (c0 + 16 - pl)) : _mm512_setzero_ps();
        const __mmask16 ms = first_n(wq - q);
        _mm512_mask_storeu_ps(even + q, ms, _mm512_permutex2var_ps(a, ie, b));
        _mm512_mask_storeu_ps(odd + q, ms, _mm512_permutex2var_ps(a, io, b));
    }
}

/* One NHWC input row into its strip row (channel by channel): dst[c * cs + ph * wq + q] = src[ix * pstride + c]
 * with ix = q * sw + ph - pl (zero outside [0, w)), for c < nc and q < wq.  16 pixels x 16 channels
 * go through a register transpose. */
/* Few channels (the 3-channel stems): a 16x16 transpose per 16 pixels would move 16 channels to use nc (and
 * gathers measured ~37 cycles each here), so 16 columns of one phase, whose pixels span s = sw * pstride <= 8
 * vectors of the row, are loaded once (masked at the row's end) and each channel's 16 floats picked from
 * them by s / 2 two-source permutes.  Columns in the padding are zeroed. */
static void fill_nhwc_permute(const float *src, int64_t pstride, int64_t nc, int64_t w, int64_t sw, int64_t pl,
                              int64_t wq, float *dst, int64_t cs) {
    const int S = (int)(sw * pstride), npair = (S + 1) / 2;
    __m512i idx[8][4];
    __mmask16 msk[8][4];
    for (int c = 0; c < nc; c++)
        for (int k = 0; k < npair; k++) {
            int32_t lane[16];
            unsigned m = 0;
            for (int j = 0; j < 16; j++) {
                const int f = j * S + c; /* float j of channel c, from the span's start */
                lane[j] = f & 31;
                m |= (unsigned)((f >> 5) == k) << j;
            }
            idx[c][k] = _mm512_loadu_si512(lane);
            msk[c][k] = (__mmask16)m;
        }
    const int64_t nfl = (w - 1) * pstride + nc; /* floats from src to this group's last channel of the row */
    for (int64_t ph = 0; ph < sw; ph++) {
        /* columns q in [qlo, qhi) read inside the row: ix = q * sw + off in [0, w) */
        const int64_t off = ph - pl;
        int64_t qlo = off >= 0 ? 0 : FP_CEIL_DIV(-off, sw);
        int64_t qhi = w - 1 - off < 0 ? 0 : (w - 1 - off) / sw + 1;
        qlo = FP_MIN(qlo, wq);
        qhi = FP_MAX(qlo, FP_MIN(qhi, wq));
        for (int64_t c = 0; c < nc; c++) {
            float *d = dst + c * cs + ph * wq;
            for (int64_t q = 0; q < qlo; q++) d[q] = 0.0f;
            for (int64_t q = qhi; q < wq; q++) d[q] = 0.0f;
        }
        for (int64_t q = qlo; q < qhi; q += 16) {
            const int64_t f0 = (q * sw + off) * pstride;
            __m512 r[9];
            for (int i = 0; i < S; i++) r[i] = _mm512_maskz_loadu_ps(first_n(nfl - f0 - 16 * i), src + f0 + 16 * i);
            r[S] = r[S - 1]; /* an odd span's last pair: no lane reads its second source */
            const __mmask16 qm = first_n(qhi - q);
            for (int64_t c = 0; c < nc; c++) {
                __m512 v = _mm512_setzero_ps();
                for (int k = 0; k < npair; k++)
                    v = _mm512_mask_mov_ps(v, msk[c][k], _mm512_permutex2var_ps(r[2 * k], idx[c][k], r[2 * k + 1]));
                _mm512_mask_storeu_ps(dst + c * cs + ph * wq + q, qm, v);
            }
        }
    }
}

void fp_direct_fill_nhwc_avx512(const float *src, int64_t pstride, int64_t nc, int64_t w, int64_t sw, int64_t pl,
                                int64_t wq, float *dst, int64_t cs) {
    if (sw * pstride <= 8) {
        fill_nhwc_permute(src, pstride, nc, w, sw, pl, wq, dst, cs);
        return;
    }
    for (int64_t ph = 0; ph < sw; ph++)
        for (int64_t q0 = 0; q0 < wq; q0 += 16) {
            const __mmask16 qm = first_n(wq - q0);
            /* The next block's pixels (all phases: the first phase's pass fetches them for the others), one
             * block ahead.  The row usually comes from L3 or memory (the previous layer's output), and the
             * hardware prefetchers leave this loop latency-bound: streaming a 256-pixel row of 32 or 64
             * channels ran 3.4-3.9 GB/s without, 13-23 GB/s with (Zen 5, 1 thread, loaded box; 2 or more
             * blocks ahead was slower). */
            if (ph == 0) {
                const int64_t ia = FP_MAX(0, (q0 + 16) * sw - pl), ib = FP_MIN(w, (q0 + 32) * sw - pl);
                if (nc == pstride) {
                    for (int64_t f = ia * pstride; f < ib * pstride; f += 16) __builtin_prefetch(src + f, 0, 3);
                } else {
                    for (int64_t ix = ia; ix < ib; ix++)
                        for (int64_t c = 0; c < nc; c += 16) __builtin_prefetch(src + ix * pstride + c, 0, 3);
                }
            }
            for (int64_t c0 = 0; c0 < nc; c0 += 16) {
                const __mmask16 cm = first_n(nc - c0);
                __m512 r[16];
#pragma GCC unroll 16
                for (int k = 0; k < 16; k++) {
                    const int64_t ix = (q0 + k) * sw + ph - pl;
                    r[k] = (ix >= 0 && ix < w && q0 + k < wq) ? _mm512_maskz_loadu_ps(cm, src + ix * pstride + c0)
                                                               : _mm512_setzero_ps();
                }
                fp_tr16_ps(r);
                float *d = dst + c0 * cs + ph * wq + q0;
                const int64_t ncc = FP_MIN(16, nc - c0);
#pragma GCC unroll 16
                for (int c = 0; c < 16; c++)
                    if (c < ncc) _mm512_mask_storeu_ps(d + c * cs, qm, r[c]);
            }
        }
}

FP_TARGET_END
#else
void fp_direct_store_nchw_avx512(const float *tbuf, int64_t ops, int rw, int64_t nch, float *y, int64_t ystride) {
    for (int64_t c = 0; c < nch; c++)
        for (int j = 0; j < rw; j++) y[c * ystride + j] = tbuf[j * ops + c];
}
void fp_direct_split2_avx512(const float *src, int64_t w, int64_t pl, int64_t wq, float *even, float *odd) {
    for (int64_t q = 0; q < wq; q++) {
        const int64_t ie = 2 * q - pl, io = 2 * q + 1 - pl;
        even[q] = (ie >= 0 && ie < w) ? src[ie] : 0.0f;
        odd[q] = (io >= 0 && io < w) ? src[io] : 0.0f;
    }
}
void fp_direct_fill_nhwc_avx512(const float *src, int64_t pstride, int64_t nc, int64_t w, int64_t sw, int64_t pl,
                                int64_t wq, float *dst, int64_t cs) {
    for (int64_t c = 0; c < nc; c++)
        for (int64_t ph = 0; ph < sw; ph++)
            for (int64_t q = 0; q < wq; q++) {
                const int64_t ix = q * sw + ph - pl;
                dst[c * cs + ph * wq + q] = (ix >= 0 && ix < w) ? src[ix * pstride + c] : 0.0f;
            }
}
#endif
