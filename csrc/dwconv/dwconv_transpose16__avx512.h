/* The depthwise NCHW tiles' transposes for AVX-512 (16 planes <-> [pixel][16]), through the shared
 * 16 x 16 register transpose.  Included by f32_dwconv_8x16c__avx512.c after its target pragma. */
#ifndef FP_DWCONV_TRANSPOSE16_AVX512_H
#define FP_DWCONV_TRANSPOSE16_AVX512_H
#include "../transpose16_avx512.h"
#include "dwconv.h"

/* npix consecutive pixels from offset `at` of nch planes -> [pixel][16] (lanes >= nch zero). */
static void fp_dw_tile_in_avx512(const float *const *pl, int64_t nch, int64_t at, int64_t npix, float *dst) {
    const __m512 zero = _mm512_setzero_ps();
    for (int64_t i = 0; i < npix; i += 16) {
        const int64_t k = FP_MIN(16, npix - i);
        const __mmask16 mk = (__mmask16)((1u << k) - 1u);
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
static void fp_dw_tile_out_avx512(const float *src, int64_t npix, float *const *pl, int64_t nch, int64_t at) {
    const __m512 zero = _mm512_setzero_ps();
    for (int64_t i = 0; i < npix; i += 16) {
        const int64_t k = FP_MIN(16, npix - i);
        const __mmask16 mk = (__mmask16)((1u << k) - 1u);
        __m512 r[16];
#pragma GCC unroll 16
        for (int j = 0; j < 16; j++) r[j] = j < k ? _mm512_load_ps(src + (i + j) * 16) : zero;
        fp_tr16_ps(r);
#pragma GCC unroll 16
        for (int l = 0; l < 16; l++)
            if (l < nch) _mm512_mask_storeu_ps(pl[l] + at + i, mk, r[l]);
    }
}
#endif
