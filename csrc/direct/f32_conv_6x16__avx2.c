/* Direct-convolution micro-kernels for AVX2+FMA: up to 6 pixels x 16 channels (12 of the 16 ymm
 * registers hold accumulators) or 3 pixels x 32 channels. */
#include "../isa_target.h"
#include "direct.h"

#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
FP_TARGET_AVX2
#define VT __m256
#define VPB 2
#define VL 8
#define VZERO _mm256_setzero_ps
#define VLOAD _mm256_loadu_ps
#define VSTORE _mm256_storeu_ps
#define VBCAST(p) _mm256_broadcast_ss(p)
#define VFMA _mm256_fmadd_ps
#define VMAX _mm256_max_ps
#include "direct_tile_impl.h"

DTILE_DEFINE(k256, 1, 1) DTILE_DEFINE(k256, 2, 1) DTILE_DEFINE(k256, 3, 1)
DTILE_DEFINE(k256, 4, 1) DTILE_DEFINE(k256, 5, 1) DTILE_DEFINE(k256, 6, 1)
DTILE_DEFINE(k256, 1, 2) DTILE_DEFINE(k256, 2, 2) DTILE_DEFINE(k256, 3, 2)

static const fp_dkernel K1[] = {k256_1x1, k256_2x1, k256_3x1, k256_4x1, k256_5x1, k256_6x1};
static const fp_dkernel K2[] = {k256_1x2, k256_2x2, k256_3x2};

static fp_dkernel kernel_avx2(int rw, int nb) { return nb >= 2 ? K2[rw - 1] : K1[rw - 1]; }
const fp_direct_ukr fp_f32_conv_6x16__avx2 = {{"f32_conv_6x16__avx2", "conv", 0, FP_ISA_AVX2, 6, 16}, {6, 3, 0}, 1,
                                              kernel_avx2};

FP_TARGET_END
#endif
