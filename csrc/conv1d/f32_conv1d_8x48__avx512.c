/* The AVX-512 conv1d micro-kernel (conv1d.h): 8 output channels x 48 positions, 24 accumulators; per
 * (ci, tap) three loads of the row and eight broadcast weights for 24 FMAs (loads within the two load
 * ports' share of the two FMA pipes; Zen 4's single 512-bit pipe only halves the rate). */
#include "../isa_target.h"
#include "conv1d.h"

#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
FP_TARGET_AVX512
#include <immintrin.h>

static void run(const fp_conv1d_args *a) {
    __m512 c[8][3];
    for (int i = 0; i < 8; i++) {
        const __m512 b = _mm512_set1_ps(a->bias ? a->bias[i] : 0.0f);
        c[i][0] = c[i][1] = c[i][2] = b;
    }
    const float *w = a->w;
    for (int64_t ci = 0; ci < a->cin; ci++) {
        const float *xc = a->x + ci * a->ldx;
        for (int64_t t = 0; t < a->taps; t++, w += 8) {
            const float *xt = xc + a->toff[t];
            const __m512 x0 = _mm512_loadu_ps(xt), x1 = _mm512_loadu_ps(xt + 16), x2 = _mm512_loadu_ps(xt + 32);
            for (int i = 0; i < 8; i++) {
                const __m512 wi = _mm512_set1_ps(w[i]);
                c[i][0] = _mm512_fmadd_ps(x0, wi, c[i][0]);
                c[i][1] = _mm512_fmadd_ps(x1, wi, c[i][1]);
                c[i][2] = _mm512_fmadd_ps(x2, wi, c[i][2]);
            }
        }
    }
    const __m512 z = _mm512_setzero_ps();
    for (int i = 0; i < 8; i++)
        for (int v = 0; v < 3; v++) {
            __m512 r = c[i][v];
            if (a->relu) r = _mm512_max_ps(z, r); /* max returns its 2nd operand on NaN */
            _mm512_storeu_ps(a->y + i * a->ldy + 16 * v, r);
        }
}

const fp_conv1d_ukr fp_f32_conv1d_8x48__avx512 = {FP_CONV1D_ROW("f32_conv1d_8x48__avx512", FP_ISA_AVX512, 8, 48),
                                                  run};
FP_TARGET_END
#endif
