/* F(4x4, 3x3) and F(2x2, 3x3) transforms in portable C: vectors of 4 floats (GCC/clang vector extensions, which
 * lower to SSE2 on x86-64 and to the baseline SIMD, or plain scalar code, elsewhere). */
#include "winograd.h"

#define WN_VW 4
#define WN_FN(name) wn128_##name
#define WN_ISA "scalar"
#define WN_ISA_LEVEL FP_ISA_SCALAR
#define WN_TABLE fp_wino_kernels_scalar
#include "winograd_transform_impl.h"

