/* Portable depthwise convolution (plain C; see dwconv_c_impl.h). */
#include "dwconv.h"

#define DW_FN(name) dwc_##name
#include "dwconv_c_impl.h"

int fp_dwconv_run_c(const fp_conv_problem *p, const float *x, const float *w, const float *bias, float *y) {
    return p->layout == 0 ? dwc_nchw(p, x, w, bias, y) : dwc_nhwc(p, x, w, bias, y);
}
