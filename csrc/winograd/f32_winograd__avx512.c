/* F(4x4, 3x3) and F(2x2, 3x3) transforms for AVX-512: 16 channels per zmm vector (winograd_transform_impl.h). */
#include "winograd.h"

#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
#include "../isa_target.h"
FP_TARGET_AVX512
#define WN_VW 16
#define WN_FN(name) wn512_##name
#include "winograd_transform_impl.h"
FP_TARGET_END

const fp_wino_kernel fp_wino_kernels_avx512[2] = {
    {"f32_winograd_4x4__avx512", 4, wn512_input4, wn512_output4, wn512_stage, wn512_store},
    {"f32_winograd_2x2__avx512", 2, wn512_input2, wn512_output2, wn512_stage, wn512_store},
};
#endif
