/* Access to the activations: NCHW micro-panels of B are copied (stride folded into the copy);
 * NHWC rows of A are read in place through row pointers (stride and batch folded into the pointers). */
#include <string.h>

#include "gemm.h"

void fp_gemm_pack_b_nchw(const fp_conv_problem *p, const float *x, int64_t k0, int64_t kc, int64_t j0,
                         int64_t nr, float *dst, int64_t ldd) {
    const int64_t hw = p->h * p->w;
    if (p->stride_h == 1 && p->stride_w == 1) {
        for (int64_t k = 0; k < kc; k++) memcpy(dst + k * ldd, x + (k0 + k) * hw + j0, sizeof(float) * (size_t)nr);
        return;
    }
    const int64_t sh = p->stride_h, sw = p->stride_w, ow = p->ow;
    /* Walk the nr output pixels once to find their input offsets, then gather every channel row. */
    int64_t off[64];
    for (int64_t base = 0; base < nr; base += 64) {
        const int64_t cnt = FP_MIN(64, nr - base);
        int64_t oy = (j0 + base) / ow, ox = (j0 + base) % ow;
        for (int64_t t = 0; t < cnt; t++) {
            off[t] = oy * sh * p->w + ox * sw;
            if (++ox == ow) { ox = 0; oy++; }
        }
        for (int64_t k = 0; k < kc; k++) {
            const float *xr = x + (k0 + k) * hw;
            float *d = dst + k * ldd + base;
            for (int64_t t = 0; t < cnt; t++) d[t] = xr[off[t]];
        }
    }
}

void fp_gemm_rows_nhwc(const fp_conv_problem *p, const float *x, int64_t r0, int64_t mr, int MR, int64_t k0,
                       const float **rows) {
    const int64_t ohw = p->oh * p->ow;
    for (int i = 0; i < MR; i++) {
        const int64_t r = r0 + (i < mr ? i : mr - 1);
        if (p->stride_h == 1 && p->stride_w == 1) {
            rows[i] = x + r * p->cin + k0; /* oh == h and ow == w: pixels are consecutive */
        } else {
            const int64_t n = r / ohw, q = r % ohw, oy = q / p->ow, ox = q % p->ow;
            rows[i] = x + ((n * p->h + oy * p->stride_h) * p->w + ox * p->stride_w) * p->cin + k0;
        }
    }
}
