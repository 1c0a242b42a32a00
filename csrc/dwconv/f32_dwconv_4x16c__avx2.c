/* Depthwise micro-kernels for AVX2+FMA: the plain-C loops of f32_dwconv_4x16c_impl.h, whose inner
 * loops run along 16 channels (NCHW tiles) or all channels (NHWC), compiled for 256-bit FMA. */
#include "dwconv.h"
#include "../isa_target.h"

#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
FP_TARGET_AVX2
#define DW_FN(name) dw256_##name
#include "f32_dwconv_4x16c_impl.h"

const fp_dw_ukernel fp_f32_dwconv_4x16c__avx2 = {
    {"f32_dwconv_4x16c__avx2", "dwconv", 0, FP_ISA_AVX2, DW_PX, 16}, DW_CALL, 16, FP_DW_PIXEL_ACC, 32,
    dw256_blocks, NULL, dw256_pixels, dw256_px, dw256_tile_in, dw256_tile_out, NULL};
FP_TARGET_END
#endif
