/* The AVX2 + FMA conv1d micro-kernel (conv1d.h): 4 output channels x 24 positions, 12 accumulators (+ 3 row
 * vectors + 1 weight = the 16 ymm registers); per (ci, tap) three loads of the row and four broadcast weights
 * for 12 FMAs.  The body is conv1d_tile.h's. */
#include "../isa_target.h"
#include "conv1d.h"

#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
FP_TARGET_AVX2
#include <immintrin.h>

#define V __m256
#define VW 8
#define V_SET1(f) _mm256_set1_ps(f)
#define V_BCAST(p) _mm256_broadcast_ss(p)
#define V_LOAD(p) _mm256_loadu_ps(p)
#define V_FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define V_MAX0(v) _mm256_max_ps(_mm256_setzero_ps(), v) /* max returns its 2nd operand on NaN */
#define V_STORE(p, v) _mm256_storeu_ps(p, v)
#define CONV1D_MR 4
#define CONV1D_ROWS(M) M(0) M(1) M(2) M(3)
#include "conv1d_tile.h"

const fp_conv1d_ukr fp_f32_conv1d_4x24__avx2 = {FP_CONV1D_ROW("f32_conv1d_4x24__avx2", FP_ISA_AVX2, 4, 24), run};
FP_TARGET_END
#endif
