/* Portable depthwise micro-kernels (plain C; see f32_dwconv_4x16c_impl.h). */
#include "dwconv.h"

#define DW_FN(name) dwc_##name
#include "f32_dwconv_4x16c_impl.h"

const fp_dw_ukernel fp_f32_dwconv_4x16c__scalar = {
    {"f32_dwconv_4x16c__scalar", "dwconv", 0, FP_ISA_SCALAR, DW_PX, 16}, DW_CALL, 16, FP_DW_PIXEL_ACC, 32,
    dwc_blocks, NULL, dwc_pixels, dwc_px, dwc_tile_in, dwc_tile_out, NULL};
