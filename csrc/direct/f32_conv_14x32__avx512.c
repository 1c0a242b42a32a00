/* Direct-convolution micro-kernels for AVX-512: up to 14 pixels x 32 channels (28 zmm
 * accumulators), 7 pixels x 64 channels for small maps, and 14 x 16 for a lone last block. */
#include "../isa_target.h"
#include "direct.h"

#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
FP_TARGET_AVX512
#define VT __m512
#define VPB 1
#define VL 16
#define VZERO _mm512_setzero_ps
#define VLOAD _mm512_loadu_ps
#define VSTORE _mm512_storeu_ps
#define VBCAST(p) _mm512_set1_ps(*(p))
#define VFMA _mm512_fmadd_ps
#define VMAX _mm512_max_ps
#include "direct_tile_impl.h"

#define K14(NB) DTILE_DEFINE(k512, 1, NB) DTILE_DEFINE(k512, 2, NB) DTILE_DEFINE(k512, 3, NB) \
    DTILE_DEFINE(k512, 4, NB) DTILE_DEFINE(k512, 5, NB) DTILE_DEFINE(k512, 6, NB) DTILE_DEFINE(k512, 7, NB)
K14(1) K14(2) K14(4)
DTILE_DEFINE(k512, 8, 1) DTILE_DEFINE(k512, 9, 1) DTILE_DEFINE(k512, 10, 1) DTILE_DEFINE(k512, 11, 1)
DTILE_DEFINE(k512, 12, 1) DTILE_DEFINE(k512, 13, 1) DTILE_DEFINE(k512, 14, 1)
DTILE_DEFINE(k512, 8, 2) DTILE_DEFINE(k512, 9, 2) DTILE_DEFINE(k512, 10, 2) DTILE_DEFINE(k512, 11, 2)
DTILE_DEFINE(k512, 12, 2) DTILE_DEFINE(k512, 13, 2) DTILE_DEFINE(k512, 14, 2)

static const fp_dkernel K1[] = {k512_1x1, k512_2x1, k512_3x1, k512_4x1, k512_5x1, k512_6x1, k512_7x1,
                                k512_8x1, k512_9x1, k512_10x1, k512_11x1, k512_12x1, k512_13x1, k512_14x1};
static const fp_dkernel K2[] = {k512_1x2, k512_2x2, k512_3x2, k512_4x2, k512_5x2, k512_6x2, k512_7x2,
                                k512_8x2, k512_9x2, k512_10x2, k512_11x2, k512_12x2, k512_13x2, k512_14x2};
static const fp_dkernel K4[] = {k512_1x4, k512_2x4, k512_3x4, k512_4x4, k512_5x4, k512_6x4, k512_7x4};

static fp_dkernel kernel_avx512(int rw, int nb) { return nb == 4 ? K4[rw - 1] : nb == 2 ? K2[rw - 1] : K1[rw - 1]; }
const fp_direct_ukr fp_f32_conv_14x32__avx512 = {{"f32_conv_14x32__avx512", "conv", 0, FP_ISA_AVX512, 14, 32},
                                                 {14, 14, 7}, 1, kernel_avx512};
FP_TARGET_END
#endif
