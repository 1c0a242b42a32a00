/* Access to the activations: NCHW micro-panels of B are copied (stride folded into the copy);
 * NHWC rows of A are read in place through row pointers (stride and batch folded into the pointers). */
#include <string.h>

#include "gemm.h"

#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
void fp_decimate2_avx512(const float *src, int64_t n, float *dst); /* csrc/pack_decimate__avx512.c */
#endif

/* Whether the strided packing copies whole runs of an output row: horizontal stride 1 (memcpy) or 2
 * (AVX-512 even-element permutes); else element by element. */
int fp_gemm_pack_b_runs(const fp_conv_problem *p) {
#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
    if (p->stride_w == 2 && fp_isa() >= FP_ISA_AVX512) return 1;
#endif
    return p->stride_w == 1;
}

void fp_gemm_pack_b_nchw(const fp_conv_problem *p, const float *x, int64_t k0, int64_t kc, int64_t j0,
                         int64_t nc, int64_t NR, float *dst, int64_t *off) {
    const int64_t hw = p->h * p->w;
    const int strided = p->stride_h != 1 || p->stride_w != 1, runs = strided && fp_gemm_pack_b_runs(p);
    /* runs: rl[t] = the length of the run of one output row's pixels that starts at t inside its micro-panel
     * (0 inside a run), found once per block like the offsets */
    int64_t *rl = strided ? off + nc : NULL;
    if (strided) { /* input offset of each output pixel of the block, found once for all rows */
        int64_t oy = j0 / p->ow, ox = j0 % p->ow;
        for (int64_t t = 0; t < nc; t++) {
            off[t] = oy * p->stride_h * p->w + ox * p->stride_w;
            const int64_t in_panel = t % NR;
            if (runs) rl[t] = in_panel == 0 || ox == 0 ? FP_MIN(FP_MIN(p->ow - ox, NR - in_panel), nc - t) : 0;
            if (++ox == p->ow) { ox = 0; oy++; }
        }
    }
    /* Row by row: each input row segment is read front to back, which the hardware prefetchers follow. */
    for (int64_t k = 0; k < kc; k++) {
        const float *xr = x + (k0 + k) * hw;
        for (int64_t q = 0; q < nc; q += NR) {
            const int64_t w = FP_MIN(NR, nc - q);
            float *d = dst + q * kc + k * NR; /* micro-panel q/NR holds kc x NR floats */
            if (!strided) {
                memcpy(d, xr + j0 + q, sizeof(float) * (size_t)w);
            } else if (runs) { /* the pixels of one output row at a time */
                for (int64_t t = 0, run; t < w; t += run) {
                    run = rl[q + t];
                    if (p->stride_w == 1) memcpy(d + t, xr + off[q + t], sizeof(float) * (size_t)run);
#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
                    else fp_decimate2_avx512(xr + off[q + t], run, d + t);
#endif
                }
            } else {
                for (int64_t t = 0; t < w; t++) d[t] = xr[off[q + t]];
            }
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
