/* The op loops (ops_impl.h) vectorised for AVX-512 (FMA contraction off in ops_impl.h: products round as NumPy's). */
#include "ops.h"
#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
#include "../isa_target.h"
FP_TARGET_AVX512
#include <immintrin.h>
/* the vectors of ops_impl.h's lerp_store: non-temporal stores of 64-byte lines */
#define OPS_STREAM_FLOATS 16
#define OPS_V __m512
#define OPS_SET1 _mm512_set1_ps
#define OPS_LOADU _mm512_loadu_ps
#define OPS_MUL _mm512_mul_ps
#define OPS_ADD _mm512_add_ps
#define OPS_STREAM _mm512_stream_ps

/* ops_impl.h's mx on 16 lanes: acc where acc > v or acc is NaN, else v (the same NaN and signed-zero
 * outcome, lane by lane) */
static inline __m512 ops_mx16(__m512 acc, __m512 v) {
    const __mmask16 keep = _mm512_cmp_ps_mask(acc, v, _CMP_GT_OQ) | _mm512_cmp_ps_mask(acc, acc, _CMP_UNORD_Q);
    return _mm512_mask_blend_ps(keep, v, acc);
}

/* One NCHW output row of 2x2 stride-2 max pooling: y[ox] = mx(mx(mx(q0[2ox], q0[2ox+1]), q1[2ox]),
 * q1[2ox+1]), the general loop's tap order, 16 outputs a step with the even and odd columns split in
 * registers. GCC's loops for this (three passes over an accumulator, each with its alias checks and
 * stride-2 permutes) cost ~100 cycles per row of a 32x32 map, where U-Nets' small levels have thousands
 * of rows. The tail reads and writes only its own elements (masked), never past a row. */
static void ops_max2x2_row(const float *q0, const float *q1, float *y, int64_t ow) {
    const __m512i ev = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i od = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    int64_t ox = 0;
    for (; ox + 16 <= ow; ox += 16) {
        const __m512 a0 = _mm512_loadu_ps(q0 + 2 * ox), a1 = _mm512_loadu_ps(q0 + 2 * ox + 16);
        const __m512 b0 = _mm512_loadu_ps(q1 + 2 * ox), b1 = _mm512_loadu_ps(q1 + 2 * ox + 16);
        __m512 m = ops_mx16(_mm512_permutex2var_ps(a0, ev, a1), _mm512_permutex2var_ps(a0, od, a1));
        m = ops_mx16(m, _mm512_permutex2var_ps(b0, ev, b1));
        _mm512_storeu_ps(y + ox, ops_mx16(m, _mm512_permutex2var_ps(b0, od, b1)));
    }
    if (ox < ow) {
        const int64_t n = 2 * (ow - ox); /* 2..30 input floats of each row */
        const __mmask16 lo = n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1);
        const __mmask16 hi = n > 16 ? (__mmask16)((1u << (n - 16)) - 1) : (__mmask16)0;
        const __m512 a0 = _mm512_maskz_loadu_ps(lo, q0 + 2 * ox), a1 = _mm512_maskz_loadu_ps(hi, q0 + 2 * ox + 16);
        const __m512 b0 = _mm512_maskz_loadu_ps(lo, q1 + 2 * ox), b1 = _mm512_maskz_loadu_ps(hi, q1 + 2 * ox + 16);
        __m512 m = ops_mx16(_mm512_permutex2var_ps(a0, ev, a1), _mm512_permutex2var_ps(a0, od, a1));
        m = ops_mx16(m, _mm512_permutex2var_ps(b0, ev, b1));
        _mm512_mask_storeu_ps(y + ox, (__mmask16)((1u << (ow - ox)) - 1), ops_mx16(m, _mm512_permutex2var_ps(b0, od, b1)));
    }
}
#define OPS_MAX2X2_ROW ops_max2x2_row
#include "ops_impl.h"

FP_OPS_TABLE(fp_ops_avx512, "avx512")
FP_TARGET_END
#endif
