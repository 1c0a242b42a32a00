/* The AVX-512 conv1d micro-kernel (conv1d.h): 8 output channels x 48 positions, 24 accumulators; per
 * (ci, tap) three loads of the row and eight broadcast weights for 24 FMAs (loads within the two load
 * ports' share of the two FMA pipes; Zen 4's single 512-bit pipe only halves the rate).
 *
 * The accumulators are 24 named variables, not an array: with `__m512 c[8][3]` GCC kept the array on the
 * stack across the reduction's entry and exit (about 50 spilled 64-byte stores and reloads per tile), which
 * on a short reduction (wav2vec2's stem: Cin 1 x K 10, 240 FMAs a tile) cost more than the FMAs. */
#include "../isa_target.h"
#include "conv1d.h"

#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
FP_TARGET_AVX512
#include <immintrin.h>

#define ROW3(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7)

static void run(const fp_conv1d_args *a) {
#define DECL(i) __m512 c##i##0, c##i##1, c##i##2;
    ROW3(DECL)
#undef DECL
    const float *bias = a->bias;
#define INIT(i) c##i##0 = c##i##1 = c##i##2 = _mm512_set1_ps(bias ? bias[i] : 0.0f);
    ROW3(INIT)
#undef INIT
    const float *w = a->w, *xc = a->x;
    const int64_t *toff = a->toff, taps = a->taps, ldx = a->ldx;
    for (int64_t ci = 0; ci < a->cin; ci++, xc += ldx)
        for (int64_t t = 0; t < taps; t++, w += 8) {
            const float *xt = xc + toff[t];
            const __m512 x0 = _mm512_loadu_ps(xt), x1 = _mm512_loadu_ps(xt + 16), x2 = _mm512_loadu_ps(xt + 32);
#define FMA(i)                                        \
    {                                                 \
        const __m512 wi = _mm512_set1_ps(w[i]);       \
        c##i##0 = _mm512_fmadd_ps(x0, wi, c##i##0);   \
        c##i##1 = _mm512_fmadd_ps(x1, wi, c##i##1);   \
        c##i##2 = _mm512_fmadd_ps(x2, wi, c##i##2);   \
    }
            ROW3(FMA)
#undef FMA
        }
    float *y = a->y;
    const int64_t ldy = a->ldy;
    if (a->relu) { /* max returns its 2nd operand on NaN: NaN stays NaN */
        const __m512 z = _mm512_setzero_ps();
#define RELU(i) c##i##0 = _mm512_max_ps(z, c##i##0), c##i##1 = _mm512_max_ps(z, c##i##1), c##i##2 = _mm512_max_ps(z, c##i##2);
        ROW3(RELU)
#undef RELU
    }
#define STORE(i)                                         \
    _mm512_storeu_ps(y + (i) * ldy, c##i##0);            \
    _mm512_storeu_ps(y + (i) * ldy + 16, c##i##1);       \
    _mm512_storeu_ps(y + (i) * ldy + 32, c##i##2);
    ROW3(STORE)
#undef STORE
}
#undef ROW3

const fp_conv1d_ukr fp_f32_conv1d_8x48__avx512 = {FP_CONV1D_ROW("f32_conv1d_8x48__avx512", FP_ISA_AVX512, 8, 48),
                                                  run};
FP_TARGET_END
#endif
