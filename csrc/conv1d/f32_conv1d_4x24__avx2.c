/* The AVX2 + FMA conv1d micro-kernel (conv1d.h): 4 output channels x 24 positions, 12 accumulators; per
 * (ci, tap) three loads of the row and four broadcast weights for 12 FMAs. */
#include "../isa_target.h"
#include "conv1d.h"

#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
FP_TARGET_AVX2
#include <immintrin.h>

static void run(const fp_conv1d_args *a) {
    __m256 c[4][3];
    for (int i = 0; i < 4; i++) {
        const __m256 b = _mm256_set1_ps(a->bias ? a->bias[i] : 0.0f);
        c[i][0] = c[i][1] = c[i][2] = b;
    }
    const float *w = a->w;
    for (int64_t ci = 0; ci < a->cin; ci++) {
        const float *xc = a->x + ci * a->ldx;
        for (int64_t t = 0; t < a->taps; t++, w += 4) {
            const float *xt = xc + a->toff[t];
            const __m256 x0 = _mm256_loadu_ps(xt), x1 = _mm256_loadu_ps(xt + 8), x2 = _mm256_loadu_ps(xt + 16);
            for (int i = 0; i < 4; i++) {
                const __m256 wi = _mm256_broadcast_ss(w + i);
                c[i][0] = _mm256_fmadd_ps(x0, wi, c[i][0]);
                c[i][1] = _mm256_fmadd_ps(x1, wi, c[i][1]);
                c[i][2] = _mm256_fmadd_ps(x2, wi, c[i][2]);
            }
        }
    }
    const __m256 z = _mm256_setzero_ps();
    for (int i = 0; i < 4; i++)
        for (int v = 0; v < 3; v++) {
            __m256 r = c[i][v];
            if (a->relu) r = _mm256_max_ps(z, r); /* max returns its 2nd operand on NaN */
            _mm256_storeu_ps(a->y + i * a->ldy + 8 * v, r);
        }
}

const fp_conv1d_ukr fp_f32_conv1d_4x24__avx2 = {FP_CONV1D_ROW("f32_conv1d_4x24__avx2", FP_ISA_AVX2, 4, 24), run};
FP_TARGET_END
#endif
