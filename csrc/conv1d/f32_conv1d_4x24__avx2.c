/* The AVX2 + FMA conv1d micro-kernel (conv1d.h): 4 output channels x 24 positions, 12 accumulators; per
 * (ci, tap) three loads of the row and four broadcast weights for 12 FMAs.  The accumulators are named
 * variables (12 + 3 row vectors + 1 weight = the 16 ymm registers): an array of them was kept on the stack
 * around the reduction by GCC (f32_conv1d_8x48__avx512.c says what that cost). */
#include "../isa_target.h"
#include "conv1d.h"

#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
FP_TARGET_AVX2
#include <immintrin.h>

#define ROW3(M) M(0) M(1) M(2) M(3)

static void run(const fp_conv1d_args *a) {
#define DECL(i) __m256 c##i##0, c##i##1, c##i##2;
    ROW3(DECL)
#undef DECL
    const float *bias = a->bias;
#define INIT(i) c##i##0 = c##i##1 = c##i##2 = _mm256_set1_ps(bias ? bias[i] : 0.0f);
    ROW3(INIT)
#undef INIT
    const float *w = a->w, *xc = a->x;
    const int64_t *toff = a->toff, taps = a->taps, ldx = a->ldx;
    for (int64_t ci = 0; ci < a->cin; ci++, xc += ldx)
        for (int64_t t = 0; t < taps; t++, w += 4) {
            const float *xt = xc + toff[t];
            const __m256 x0 = _mm256_loadu_ps(xt), x1 = _mm256_loadu_ps(xt + 8), x2 = _mm256_loadu_ps(xt + 16);
#define FMA(i)                                        \
    {                                                 \
        const __m256 wi = _mm256_broadcast_ss(w + i); \
        c##i##0 = _mm256_fmadd_ps(x0, wi, c##i##0);   \
        c##i##1 = _mm256_fmadd_ps(x1, wi, c##i##1);   \
        c##i##2 = _mm256_fmadd_ps(x2, wi, c##i##2);   \
    }
            ROW3(FMA)
#undef FMA
        }
    float *y = a->y;
    const int64_t ldy = a->ldy;
    if (a->relu) { /* max returns its 2nd operand on NaN: NaN stays NaN */
        const __m256 z = _mm256_setzero_ps();
#define RELU(i) c##i##0 = _mm256_max_ps(z, c##i##0), c##i##1 = _mm256_max_ps(z, c##i##1), c##i##2 = _mm256_max_ps(z, c##i##2);
        ROW3(RELU)
#undef RELU
    }
#define STORE(i)                                    \
    _mm256_storeu_ps(y + (i) * ldy, c##i##0);       \
    _mm256_storeu_ps(y + (i) * ldy + 8, c##i##1);   \
    _mm256_storeu_ps(y + (i) * ldy + 16, c##i##2);
    ROW3(STORE)
#undef STORE
}
#undef ROW3

const fp_conv1d_ukr fp_f32_conv1d_4x24__avx2 = {FP_CONV1D_ROW("f32_conv1d_4x24__avx2", FP_ISA_AVX2, 4, 24), run};
FP_TARGET_END
#endif
