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

/* The first ncol (1..16) columns of the 16 x 16 block at s (rows ld floats apart) loaded transposed:
 * out[j] lane i = s[i * ld + j] for j < ncol; nothing past column ncol is read.  The first half of the
 * transpose (moving 128-bit quads of rows between lanes) is done by the loads: vector (c, f) takes columns
 * 4c..4c+3 of rows f, 4 + f, 8 + f, 12 + f, one 128-bit broadcast each (masked in a partial quad), merged
 * under lane masks; then a 4 x 4 transpose within each 128-bit lane (8 shuffles per four output columns, at
 * most 32, none across lanes).  fp_tr16_ps spends 64 shuffles, half of them across lanes, whatever the
 * columns: packing W^T panels of 48 x 960 floats from L2 (Zen 5, loaded box) 33-38 -> 15-21 ns a block. */
static inline __attribute__((always_inline)) __m128 fp_tr16_quad(const float *p, int qm) {
    return qm == 0xF ? _mm_loadu_ps(p) : _mm_maskz_loadu_ps((__mmask8)qm, p);
}

static inline __attribute__((always_inline)) __m512 fp_tr16_quads(const float *p, int64_t ld4, int qm) {
    __m512 v = _mm512_broadcast_f32x4(fp_tr16_quad(p, qm));
    v = _mm512_mask_broadcast_f32x4(v, 0x00F0, fp_tr16_quad(p + ld4, qm));
    v = _mm512_mask_broadcast_f32x4(v, 0x0F00, fp_tr16_quad(p + 2 * ld4, qm));
    return _mm512_mask_broadcast_f32x4(v, 0xF000, fp_tr16_quad(p + 3 * ld4, qm));
}

static inline __attribute__((always_inline)) void fp_tr16_load_ps(const float *s, int64_t ld, int ncol,
                                                                  __m512 out[16]) {
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
        if (4 * c >= ncol) break;
        const int qm = ncol - 4 * c >= 4 ? 0xF : (1 << (ncol - 4 * c)) - 1;
        const float *q = s + 4 * c;
        const __m512 v0 = fp_tr16_quads(q, 4 * ld, qm), v1 = fp_tr16_quads(q + ld, 4 * ld, qm);
        const __m512 v2 = fp_tr16_quads(q + 2 * ld, 4 * ld, qm), v3 = fp_tr16_quads(q + 3 * ld, 4 * ld, qm);
        const __m512 t0 = _mm512_unpacklo_ps(v0, v1), t1 = _mm512_unpackhi_ps(v0, v1);
        const __m512 t2 = _mm512_unpacklo_ps(v2, v3), t3 = _mm512_unpackhi_ps(v2, v3);
        out[4 * c] = _mm512_shuffle_ps(t0, t2, 0x44);
        out[4 * c + 1] = _mm512_shuffle_ps(t0, t2, 0xEE);
        out[4 * c + 2] = _mm512_shuffle_ps(t1, t3, 0x44);
        out[4 * c + 3] = _mm512_shuffle_ps(t1, t3, 0xEE);
    }
}
#endif
