/* In-register transpose of a 16 x 16 float block (r[i] lane k becomes r[k] lane i), shared by the
 * AVX-512 kernels that change layout on the fly: the direct kernels' NHWC strip fill and NCHW
 * output store, and the depthwise kernels' NCHW tiles.  Include it after the file's AVX-512 target
 * pragma: unpacks within 128-bit lanes, then shuffles within and across lanes (64 shuffles for 256
 * floats). */
#ifndef FP_TRANSPOSE16_AVX512_H
#define FP_TRANSPOSE16_AVX512_H
#include <immintrin.h>

static inline __attribute__((always_inline)) void fp_tr16_ps(__m512 r[16]) {
    __m512 t[16], u[16];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        u[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
        u[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
        u[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        u[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
    /* u[4i + e], 128-bit lane k: rows 4i..4i+3 of column 4k + e; a 4 x 4 transpose of lanes per e */
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        const __m512 v0 = _mm512_shuffle_f32x4(u[k], u[4 + k], 0x88), v1 = _mm512_shuffle_f32x4(u[k], u[4 + k], 0xDD);
        const __m512 w0 = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0x88);
        const __m512 w1 = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0xDD);
        r[k] = _mm512_shuffle_f32x4(v0, w0, 0x88);
        r[8 + k] = _mm512_shuffle_f32x4(v0, w0, 0xDD);
        r[4 + k] = _mm512_shuffle_f32x4(v1, w1, 0x88);
        r[12 + k] = _mm512_shuffle_f32x4(v1, w1, 0xDD);
    }
}
#endif
