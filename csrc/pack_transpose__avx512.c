/* The AVX-512 part of fp_pack_transpose (csrc/pack.c): 16 x 16 blocks loaded transposed (fp_tr16_load_ps)
 * and up to 16 full-vector stores into the panel, where element by element cost 5 cycles each (strided
 * stores).  Rows in whole blocks of 16, every column; pack.c does the other rows.  Returns 1 when some value
 * read is NaN or +-Inf (all-ones exponent): the one-shot check of the caller's weights on the transposed
 * registers, two integer operations a vector beside the transpose's two shuffles, where a second pass over
 * the packed panel took 14 % of a one-shot 512->512 3x3 @7 call. */
#include "internal.h"
#include "isa_target.h"

#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
FP_TARGET_AVX512
#include "transpose16_avx512.h"

/* Each block prefetches, into L1, the lines its rows reach FP_PACK_PF floats (four blocks) ahead: 16 rows
 * a whole layer's weights apart (Cin x taps floats) are more streams than the hardware prefetchers keep
 * ahead, and the packing waited on L3 for each line.  One-shot 512->512 3x3 @7 at 1 thread (loaded box,
 * CPU time, against the prepacked layer): 1.07-1.17x -> 0.94-0.99x; 256->256 3x3 @14 1.06-1.09x -> 0.98-1.03x
 * (a further prefetch of the next packed block into L2 over the kernel's tiles added nothing). */
#define FP_PACK_PF 64

static inline __attribute__((always_inline)) int blocks(const float *src, int64_t ld, int64_t rows16, int64_t cols,
                                                        int64_t width, float *dst, const int check) {
    __m512 r[16];
    const __m512i expo = _mm512_set1_epi32(0x7f800000);
    __m512i acc = _mm512_setzero_si512(); /* the largest exponent field seen, per lane */
    for (int64_t i0 = 0; i0 < rows16; i0 += 16)
        for (int64_t j0 = 0; j0 < cols; j0 += 16) {
            /* a last, partial block of columns (a depthwise kernel's 9 taps): the columns past it are
             * neither read nor stored */
            const int cw = cols - j0 < 16 ? (int)(cols - j0) : 16;
            if (j0 + FP_PACK_PF < cols)
                for (int k = 0; k < 16; k++) __builtin_prefetch(src + (i0 + k) * ld + j0 + FP_PACK_PF, 0, 3);
            if (cw == 16) fp_tr16_load_ps(src + i0 * ld + j0, ld, 16, r);
            else fp_tr16_load_ps(src + i0 * ld + j0, ld, cw, r);
            for (int k = 0; k < cw; k++) {
                if (check) acc = _mm512_max_epu32(acc, _mm512_and_si512(_mm512_castps_si512(r[k]), expo));
                _mm512_storeu_ps(dst + (j0 + k) * width + i0, r[k]);
            }
        }
    return _mm512_cmpeq_epi32_mask(acc, expo) != 0;
}

/* check: whether to look for non-finite values (one-shot calls with padding); else 0 */
int fp_pack_transpose_blocks_avx512(const float *src, int64_t ld, int64_t rows16, int64_t cols, int64_t width,
                                    float *dst, int check) {
    return check ? blocks(src, ld, rows16, cols, width, dst, 1) : blocks(src, ld, rows16, cols, width, dst, 0);
}
FP_TARGET_END
#endif
