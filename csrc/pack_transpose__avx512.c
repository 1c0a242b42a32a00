/* The AVX-512 part of fp_pack_transpose (csrc/pack.c): 16 x 16 blocks through registers, 16 full-vector
 * loads along the source rows and 16 full-vector stores into the panel, where element by element cost
 * 5 cycles each (strided stores).  Rows in whole blocks of 16, every column; pack.c does the other rows. */
#include "internal.h"
#include "isa_target.h"

#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
FP_TARGET_AVX512
#include "transpose16_avx512.h"

void fp_pack_transpose_blocks_avx512(const float *src, int64_t ld, int64_t rows16, int64_t cols, int64_t width,
                                     float *dst) {
    __m512 r[16];
    for (int64_t i0 = 0; i0 < rows16; i0 += 16)
        for (int64_t j0 = 0; j0 < cols; j0 += 16) {
            /* a last, partial block of columns (a depthwise kernel's 9 taps) is loaded under a mask:
             * the lanes past the columns are neither read nor stored */
            const int cw = cols - j0 < 16 ? (int)(cols - j0) : 16;
            const __mmask16 m = (__mmask16)((1u << cw) - 1u);
            for (int k = 0; k < 16; k++) r[k] = _mm512_maskz_loadu_ps(m, src + (i0 + k) * ld + j0);
            fp_tr16_ps(r);
            for (int k = 0; k < cw; k++) _mm512_storeu_ps(dst + (j0 + k) * width + i0, r[k]);
        }
}
FP_TARGET_END
#endif
