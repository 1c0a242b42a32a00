/* F(4x4, 3x3) and F(2x2, 3x3) transforms in portable C: vectors of 4 floats (GCC/clang vector extensions, which
 * lower to SSE2 on x86-64 and to the baseline SIMD, or plain scalar code, elsewhere). */
#include "winograd.h"

#define WN_VW 4
#define WN_FN(name) wn128_##name
#include "winograd_transform_impl.h"

const fp_wino_kernel fp_wino_kernels_scalar[2] = {
    {"f32_winograd_4x4__scalar", 4, wn128_input4, wn128_output4, wn128_stage, wn128_store},
    {"f32_winograd_2x2__scalar", 2, wn128_input2, wn128_output2, wn128_stage, wn128_store},
};
