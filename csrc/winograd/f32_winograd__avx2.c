/* F(4x4, 3x3) and F(2x2, 3x3) transforms for AVX2+FMA: 8 channels per ymm vector (winograd_transform_impl.h). */
#include "winograd.h"

#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
#include "../isa_target.h"
FP_TARGET_AVX2
#define WN_VW 8
#define WN_FN(name) wn256_##name
#include "winograd_transform_impl.h"
FP_TARGET_END

const fp_wino_kernel fp_wino_kernels_avx2[2] = {
    {"f32_winograd_4x4__avx2", 4, wn256_input4, wn256_output4, wn256_stage, wn256_store},
    {"f32_winograd_2x2__avx2", 2, wn256_input2, wn256_output2, wn256_stage, wn256_store},
};
#endif
