/* Winograd minimal filtering F(4x4, 3x3) for 3x3, stride-1, dilation-1, ungrouped float32 convolutions
 * (opt-in: fp_conv_problem.algorithm == FP_ALGO_WINOGRAD).  Lavin & Gray, CVPR 2016; the matrices are
 * those of the points 0, 1, -1, 2, -2 and infinity (docs/winograd.md, fastpoint/backends/numpy_winograd.py):
 *
 *   one 4x4 output tile:   Y = A^T [ sum_c (G g_c G^T) * (B^T d_c B) ] A     (* element-wise, 6x6)
 *
 * so a block of T tiles is 36 independent GEMMs  M[k] (T x Cout) = V[k] (T x Cin) @ U[k] (Cin x Cout),
 * k = 6 i + j over the 6x6 transform positions.  Files:
 *   winograd_pack.c                U[k] = G g G^T in float64, packed as column panels for the GEMM micro-kernel
 *   winograd_driver.c              tile blocks, threads, NCHW staging, the 36 GEMMs, the fp_algo entry
 *   winograd_transform_impl.h      input transform (B^T d B) and output transform (A^T M A + bias, ReLU),
 *                                  vectorised over channels, compiled once per ISA by:
 *   f32_winograd_4x4__<isa>.c      avx512 (16 lanes), avx2 (8 lanes), scalar (portable C, 4 lanes)
 * The GEMM stage runs the packed-GEMM micro-kernels of csrc/gemm (8x48 AVX-512, 6x16 AVX2, 4x16 C) in
 * their row-pointer mode: A rows are rows of V (channels contiguous), B is the packed U[k]. */
#ifndef FASTPOINT_WINOGRAD_H
#define FASTPOINT_WINOGRAD_H
#include "../gemm/gemm.h"

#define FP_WINO_M 4              /* output tile side */
#define FP_WINO_N 6              /* transform (input tile) side */
#define FP_WINO_NN 36            /* transform positions = GEMMs per tile block */
#define FP_WINO_CPAD 16          /* channel rows of V and M are padded to 16 floats (64 bytes) */

/* Transforms of one tile, vectorised along channels [0, c).
 *   input:  src[6 i + j] points at the c channels of input pixel (i, j) of the tile (a zero row when it
 *           lies in the padding); writes V position k of the tile at dst + k * ldk.
 *   output: reads M position k at m + k * ldk (c channels); dst[4 a + b] receives output pixel (a, b)
 *           (+ bias, then ReLU when relu), or is NULL when that pixel lies past the output's edge. */
typedef void (*fp_wino_input_fn)(const float *const src[FP_WINO_NN], int64_t c, float *dst, int64_t ldk);
typedef void (*fp_wino_output_fn)(const float *m, int64_t ldk, int64_t c, const float *bias, int relu,
                                  float *const dst[16]);

typedef struct fp_wino_kernel {
    const char *name;            /* f32_winograd_4x4__<isa> */
    fp_wino_input_fn input;
    fp_wino_output_fn output;
} fp_wino_kernel;

extern const fp_wino_kernel fp_wino_kernel_scalar;
#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
extern const fp_wino_kernel fp_wino_kernel_avx2;
extern const fp_wino_kernel fp_wino_kernel_avx512;
#endif

/* The transform kernel of an ISA (the best one compiled in at or below it). */
const fp_wino_kernel *fp_wino_kernel_for(int isa);

/* Output-channel panels of U: `count` panels of `width` columns (a multiple of 16, <= the micro-kernel's
 * NR), balanced so that the last one is not a sliver (64 -> 2 x 32 rather than 48 + 16). */
typedef struct fp_wino_panels {
    int64_t width, count;
} fp_wino_panels;
fp_wino_panels fp_wino_panels_for(const fp_conv_problem *p, const fp_sgemm_ukr *uk);

/* Packed U: 36 x [count panels x (Cin x width)] floats, position k at k * fp_wino_u_stride(). */
static inline int64_t fp_wino_u_stride(const fp_conv_problem *p, fp_wino_panels pn) {
    return p->cin * pn.count * pn.width;
}
int64_t fp_wino_packed_floats(const fp_conv_problem *p, const fp_sgemm_ukr *uk);
void fp_wino_pack(const fp_conv_problem *p, const fp_sgemm_ukr *uk, const float *w, float *dst);

#endif
