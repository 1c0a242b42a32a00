/* Direct 1-d convolution blocked for one long row (NCL, float32, groups 1, K > 1): the `conv1d` family of
 * the kernel table (csrc/kernel_table.c, docs/conv1d-transposed.md).
 *
 *   y[co][o] = bias[co] + sum_ci sum_t w[co][ci][t] * x[ci][o*s + t*d - left]
 *
 * A micro-kernel computes an MR x NR register tile: MR output channels x NR consecutive output positions,
 * vectors along the positions (contiguous in NCL), each weight broadcast.  The whole reduction (Cin x K)
 * runs in one call, so bias and ReLU are fused into the one store of the tile.  The tile reads tap t of
 * channel ci at x[ci*ldx + toff[t] + j], j < NR, contiguous: at stride 1 that is the input row itself
 * (toff[t] = t*d - left + o0), at stride s > 1 the row split into its s phases x[ci][j*s + r] once per call
 * (conv1d_driver.c), so that every tap reads a contiguous run of one phase.  Tiles that reach the padding
 * or the row's end read a small im2col of their own window instead (toff[t] = t*NR): no padded copy of a
 * long input.  Files:
 *   conv1d_driver.c                 weight packing, phases, edge tiles, the Cout-block x segment split
 *   f32_conv1d_<MR>x<NR>__<isa>.c   the micro-kernels, rows of the conv1d table */
#ifndef FASTPOINT_CONV1D_H
#define FASTPOINT_CONV1D_H
#include "../internal.h"
#include "../kernel_table.h"

typedef struct fp_conv1d_args {
    const float *x;        /* the tile's input: tap t of channel ci at x[ci * ldx + toff[t] + j], j < NR */
    int64_t ldx;
    const int64_t *toff;   /* K offsets */
    int64_t cin, taps;
    const float *w;        /* packed panel: MR values per (ci, t), ci-major */
    const float *bias;     /* MR values, or NULL */
    int relu;              /* max(0, y), NaN stays NaN */
    float *y;              /* MR rows x NR columns, ldy apart, all written */
    int64_t ldy;
} fp_conv1d_args;

typedef struct fp_conv1d_ukr {
    fp_kernel k;           /* tile_m = MR output channels, tile_n = NR output positions */
    int mr, nr;
    void (*run)(const fp_conv1d_args *a);
} fp_conv1d_ukr;

#define FP_CONV1D_ROW(NAME, ISA, MR, NR) {NAME, "conv1d", 0, ISA, MR, NR}, MR, NR

extern const fp_conv1d_ukr fp_f32_conv1d_4x16__scalar;
extern const fp_conv1d_ukr fp_f32_conv1d_4x24__avx2;
extern const fp_conv1d_ukr fp_f32_conv1d_8x48__avx512;

static inline const fp_conv1d_ukr *fp_conv1d_pick(int isa) {
    return (const fp_conv1d_ukr *)fp_kernel_pick("conv1d", 0, isa);
}

#endif
