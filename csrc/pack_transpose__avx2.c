/* The AVX2 part of fp_pack_transpose (csrc/pack.c): 8 x 8 blocks transposed in registers (8 unpacks, 8
 * shuffles within 128-bit lanes, 8 lane permutes) and up to 8 full-vector stores into the panel, for panels
 * 8 lanes wide or a multiple of that: AVX2 machines' GEMM panels (16 lanes), and the AVX-512 GEMM's 8-row
 * A panels, which element by element cost 5 cycles a value (strided stores).  Rows in whole blocks of 8,
 * every column (a last, partial block of columns loaded masked: nothing past it is read); pack.c does the
 * other rows.  With check, answers 1 when some value read is NaN or +-Inf (all-ones exponent), as the
 * AVX-512 blocks do (pack_transpose__avx512.c). */
#include "internal.h"
#include "isa_target.h"

#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
FP_TARGET_AVX2
#include <immintrin.h>

/* prefetch, into L1, the lines each row reaches this many floats (four blocks) ahead, as the AVX-512 blocks */
#define FP_PACK_PF8 32

static inline __attribute__((always_inline)) int blocks8(const float *src, int64_t ld, int64_t rows8, int64_t cols,
                                                         int64_t width, float *dst, const int check) {
    const __m256i expo = _mm256_set1_epi32(0x7f800000), lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256i acc = _mm256_setzero_si256(); /* the largest exponent field seen, per lane */
    for (int64_t i0 = 0; i0 < rows8; i0 += 8)
        for (int64_t j0 = 0; j0 < cols; j0 += 8) {
            const int cw = cols - j0 < 8 ? (int)(cols - j0) : 8;
            const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(cw), lane);
            const float *s = src + i0 * ld + j0;
            if (j0 + FP_PACK_PF8 < cols)
                for (int k = 0; k < 8; k++) __builtin_prefetch(s + k * ld + FP_PACK_PF8, 0, 3);
            __m256 r[8];
            for (int k = 0; k < 8; k++) r[k] = cw == 8 ? _mm256_loadu_ps(s + k * ld) : _mm256_maskload_ps(s + k * ld, m);
            __m256 t[8], u[8];
            for (int k = 0; k < 4; k++) {
                t[2 * k] = _mm256_unpacklo_ps(r[2 * k], r[2 * k + 1]);
                t[2 * k + 1] = _mm256_unpackhi_ps(r[2 * k], r[2 * k + 1]);
            }
            for (int h = 0; h < 2; h++) { /* rows 4h..4h+3: u[4h + e] holds columns e (low lane) and 4 + e */
                u[4 * h] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0x44);
                u[4 * h + 1] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0xEE);
                u[4 * h + 2] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0x44);
                u[4 * h + 3] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0xEE);
            }
            for (int e = 0; e < 4; e++) {
                const __m256 lo = _mm256_permute2f128_ps(u[e], u[4 + e], 0x20); /* column e */
                const __m256 hi = _mm256_permute2f128_ps(u[e], u[4 + e], 0x31); /* column 4 + e */
                if (e < cw) {
                    if (check) acc = _mm256_max_epu32(acc, _mm256_and_si256(_mm256_castps_si256(lo), expo));
                    _mm256_storeu_ps(dst + (j0 + e) * width + i0, lo);
                }
                if (4 + e < cw) {
                    if (check) acc = _mm256_max_epu32(acc, _mm256_and_si256(_mm256_castps_si256(hi), expo));
                    _mm256_storeu_ps(dst + (j0 + 4 + e) * width + i0, hi);
                }
            }
        }
    return _mm256_movemask_epi8(_mm256_cmpeq_epi32(acc, expo)) != 0;
}

/* check: whether to look for non-finite values (one-shot calls with padding); else 0 */
int fp_pack_transpose_blocks_avx2(const float *src, int64_t ld, int64_t rows8, int64_t cols, int64_t width,
                                  float *dst, int check) {
    return check ? blocks8(src, ld, rows8, cols, width, dst, 1) : blocks8(src, ld, rows8, cols, width, dst, 0);
}
FP_TARGET_END
#endif
