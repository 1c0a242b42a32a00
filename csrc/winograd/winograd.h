/* Winograd minimal filtering F(4x4, 3x3), and F(2x2, 3x3) for small maps, for 3x3, stride-1, dilation-1,
 * ungrouped float32 convolutions
 * (opt-in: fp_conv_problem.algorithm == FP_ALGO_WINOGRAD).  Lavin & Gray, CVPR 2016; the matrices are
 * those of the points 0, 1, -1, 2, -2 and infinity (docs/winograd.md, fastpoint/backends/numpy_winograd.py):
 *
 *   one 4x4 output tile:   Y = A^T [ sum_c (G g_c G^T) * (B^T d_c B) ] A     (* element-wise, 6x6)
 *
 * so a block of T tiles is 36 independent GEMMs  M[k] (T x Cout) = V[k] (T x Cin) @ U[k] (Cin x Cout),
 * k = 6 i + j over the 6x6 transform positions (F(2x2): 2x2 tiles from 4x4 inputs, 16 GEMMs).  Files:
 *   winograd_pack.c                U[k] = G g G^T in float64 (one or both tile sizes), packed as GEMM B panels
 *   winograd_driver.c              tile blocks, threads, NCHW staging, the GEMMs, the fp_algo entry
 *   winograd_transform_impl.h      input transform (B^T d B) and output transform (A^T M A + bias, ReLU),
 *                                  vectorised over channels, compiled once per ISA by:
 *   f32_winograd__<isa>.c          the kernels f32_winograd_4x4__<isa> and f32_winograd_2x2__<isa>: avx512
 *                                  (16 lanes), avx2 (8 lanes), scalar (portable C, 4 lanes)
 * The GEMM stage runs the packed-GEMM micro-kernels of csrc/gemm (8x48 AVX-512, 6x16 AVX2, 4x16 C) in
 * their row-pointer mode: A rows are rows of V (channels contiguous), B is the packed U[k]. */
#ifndef FASTPOINT_WINOGRAD_H
#define FASTPOINT_WINOGRAD_H
#include "../gemm/gemm.h"

#define FP_WINO_NN_MAX 36        /* transform positions (GEMMs per tile block): 36 for F(4x4), 16 for F(2x2) */
#define FP_WINO_CPAD 16          /* channel rows of V and M are padded to 16 floats (64 bytes) */

/* Transforms of one tile of F(m x m, 3 x 3), n = m + 2, vectorised along channels [0, c).
 *   input:  src[n i + j] points at the c channels of input pixel (i, j) of the tile (a zero row when it
 *           lies in the padding); writes V position k (< n n) of the tile at dst + k * ldk.  next: the next tile's
 *           src, fetched into the cache meanwhile (V and M of a block live in L2 or L3, not L1), or NULL.
 *   output: reads M position k at m + k * ldk (c channels); dst[m a + b] receives output pixel (a, b)
 *           (+ bias, then ReLU when relu), or is NULL when that pixel lies past the output's edge; next
 *           (or NULL): the next tile's m, prefetched. */
typedef void (*fp_wino_input_fn)(const float *const *src, const float *const *next, int64_t c, float *dst,
                                 int64_t ldk);
typedef void (*fp_wino_output_fn)(const float *m, const float *next, int64_t ldk, int64_t c, const float *bias,
                                  int relu, float *const *dst);

/* NCHW layout changes (winograd_transform_impl.h says what they read and write). */
typedef void (*fp_wino_stage_fn)(const float *xn, int64_t C, int64_t H, int64_t W, int64_t iy0, int64_t iy1,
                                 int64_t ix0, int64_t ix1, int64_t ldv, float *s);
typedef void (*fp_wino_store_fn)(const float *o, int64_t ldm, int64_t c, int64_t plane, int64_t OW, int64_t rows,
                                 int64_t cols, int64_t m, int stream, float *y);

typedef struct fp_wino_kernel {
    fp_kernel k;                 /* the kernel-table row: f32_winograd_<m>x<m>__<isa>, family "winograd", tile m x m */
    int m;                       /* output tile side: 4 or 2 (n = m + 2, n n positions) */
    fp_wino_input_fn input;
    fp_wino_output_fn output;
    fp_wino_stage_fn stage;
    fp_wino_store_fn store;
} fp_wino_kernel;

/* [0]: F(4x4, 3x3), [1]: F(2x2, 3x3) */
extern const fp_wino_kernel fp_wino_kernels_scalar[2];
#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
extern const fp_wino_kernel fp_wino_kernels_avx2[2];
extern const fp_wino_kernel fp_wino_kernels_avx512[2];
#endif

/* The transform kernels of an ISA (the best compiled in at or below it): [0] F(4x4), [1] F(2x2). */
const fp_wino_kernel *fp_wino_kernels_for(int isa);

/* Output-channel panels of U: `count` panels of 16-column units, `units` in all (Cout rounded up to 16),
 * as even as the units allow and at most the micro-kernel's NR wide (256 columns: 4 x 48 + 2 x 32
 * rather than 5 x 48 + 16, whose last one-vector panel runs the micro-kernel at half speed). */
typedef struct fp_wino_panels {
    int64_t count, units, base, extra; /* panel p has base + (p < extra) units */
} fp_wino_panels;
fp_wino_panels fp_wino_panels_for(const fp_conv_problem *p, const fp_sgemm_ukr *uk);

/* First column of panel p (p == count: the padded width); panel p is col(p + 1) - col(p) wide. */
static inline int64_t fp_wino_col(fp_wino_panels pn, int64_t p) {
    return 16 * (p * pn.base + FP_MIN(p, pn.extra));
}

/* Packed U: a 64-byte head, then the U of F(4x4) (36 positions), of F(2x2) (16 positions), or of both.
 * A problem whose map is known (n, oh, ow >= 1: a network's plan, a one-shot call) packs only the set its
 * tile size runs (choose_kernel in winograd_driver.c); a layer packed before its map is known (fp.Conv2d)
 * packs both.  The head says where each set is (float offset from the head's start, or -1), so a run whose
 * map picks the other tile size runs the set that is there.  Each position is Cin x (16 units) floats,
 * position k of a set at set + k * fp_wino_u_stride(); panel p of a position starts Cin * col(p) floats in
 * and holds Cin rows of its width (k-major). */
#define FP_WINO_HEAD_FLOATS 16
#define FP_WINO_SET_4 1          /* sets mask bits */
#define FP_WINO_SET_2 2
typedef struct fp_wino_head {
    int64_t off[2];              /* [0] F(4x4), [1] F(2x2): float offset of the set from the head, or -1 */
} fp_wino_head;

static inline int64_t fp_wino_u_stride(const fp_conv_problem *p, fp_wino_panels pn) {
    return p->cin * 16 * pn.units;
}
/* The set of F(m) in a packed block, or NULL when it holds only the other one. */
static inline const float *fp_wino_u_set(const float *packed, int m) {
    const int64_t off = ((const fp_wino_head *)packed)->off[m == 4 ? 0 : 1];
    return off < 0 ? NULL : packed + off;
}
int64_t fp_wino_packed_floats(const fp_conv_problem *p, const fp_sgemm_ukr *uk, int sets);
void fp_wino_pack(const fp_conv_problem *p, const fp_sgemm_ukr *uk, int sets, const float *w, float *dst);

#endif
