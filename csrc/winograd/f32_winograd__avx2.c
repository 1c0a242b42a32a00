/* F(4x4, 3x3) and F(2x2, 3x3) transforms for AVX2+FMA: 8 channels per ymm vector (winograd_transform_impl.h). */
#include "winograd.h"

#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
#include "../isa_target.h"
FP_TARGET_AVX2
#define WN_VW 8
#define WN_FN(name) wn256_##name
#define WN_ISA "avx2"
#define WN_ISA_LEVEL FP_ISA_AVX2
#define WN_TABLE fp_wino_kernels_avx2
#include "winograd_transform_impl.h"
FP_TARGET_END

#endif
