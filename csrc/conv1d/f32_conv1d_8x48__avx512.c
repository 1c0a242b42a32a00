/* The AVX-512 conv1d micro-kernel (conv1d.h): 8 output channels x 48 positions, 24 accumulators; per
 * (ci, tap) three loads of the row and eight broadcast weights for 24 FMAs (loads within the two load
 * ports' share of the two FMA pipes; Zen 4's single 512-bit pipe only halves the rate).  The body is
 * conv1d_tile.h's. */
#include "../isa_target.h"
#include "conv1d.h"

#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
FP_TARGET_AVX512
#include <immintrin.h>

#define V __m512
#define VW 16
#define V_SET1(f) _mm512_set1_ps(f)
#define V_BCAST(p) _mm512_set1_ps(*(p))
#define V_LOAD(p) _mm512_loadu_ps(p)
#define V_FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define V_MAX0(v) _mm512_max_ps(_mm512_setzero_ps(), v) /* max returns its 2nd operand on NaN */
#define V_STORE(p, v) _mm512_storeu_ps(p, v)
#define CONV1D_MR 8
#define CONV1D_ROWS(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7)
#include "conv1d_tile.h"

const fp_conv1d_ukr fp_f32_conv1d_8x48__avx512 = {FP_CONV1D_ROW("f32_conv1d_8x48__avx512", FP_ISA_AVX512, 8, 48),
                                                  run};
FP_TARGET_END
#endif
