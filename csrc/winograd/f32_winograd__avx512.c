/* F(4x4, 3x3) and F(2x2, 3x3) transforms for AVX-512: 16 channels per zmm vector (winograd_transform_impl.h). */
#include "winograd.h"

#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
#include "../isa_target.h"
FP_TARGET_AVX512
#define WN_VW 16
#define WN_FN(name) wn512_##name
#define WN_ISA "avx512"
#define WN_ISA_LEVEL FP_ISA_AVX512
#define WN_TABLE fp_wino_kernels_avx512
#include "winograd_transform_impl.h"
FP_TARGET_END

#endif
