/* Convolutions lowered onto the packed GEMM micro-kernels (csrc/gemm/) by their own packing of B and
 * their own store of C, with no im2col or col2im buffer in memory:
 *
 *   conv1d (NCL, K > 1):   Y[n] (Cout x Lout) = W (Cout x Cin*K) @ B,  B[(ci, k)][o] = x[ci][o*s + k*d - left]
 *                          B is packed per cache block straight from x (zeros for the padding): an
 *                          im2col of one kc x nc block at a time, in L2, never of the whole row.
 *   transposed, K == s:    Y' (Cout*s*s x H*W) = W' @ X[n];  each GEMM row (co, ky, kx) (NHWC: (ky, kx, co))
 *                          and column (iy, ix) is the output (co, s*iy + ky, s*ix + kx): the store
 *                          scatters each tile into place (U-Net's 2x2 s2 up-convolution).
 *   transposed, general:   the same GEMM with rows (co, ky, kx), whose store adds each tile element to
 *                          the output (co, iy*s - p + ky*d, ix*s - p + kx*d) it reaches: col2im fused into
 *                          the store, no (Cout*KH*KW x H*W) buffer (deconv_scatter.c).
 *
 * lowered_driver.c holds the loops and the thread split for both; conv1d_gemm.c and deconv_gemm.c the
 * B packing, the stores and the entry points (fastpoint.h).  The micro-kernels are the gemm table's rows
 * (csrc/kernel_table.c), the 2x2 store's interleave the `interleave` family's (interleave.h). */
#ifndef FASTPOINT_LOWERED_H
#define FASTPOINT_LOWERED_H
#include "../gemm/gemm.h"
#include "interleave.h"

typedef struct fp_lowered fp_lowered;
struct fp_lowered {
    const fp_conv_problem *p;
    const fp_sgemm_ukr *uk;
    int64_t m, k, n;                  /* the GEMM of one image */
    const float *a;                   /* W as MR-row panels (fp_gemm_pack_weights, k-major) */
    const float *bias;                /* one value per GEMM row, or NULL */
    const float *x;
    float *y;
    int64_t x_image, y_image;         /* floats between images */
    int single_k_block;               /* the store needs each tile finished in one k block */
    /* Scatter-add (the general transposed conv): every k block's tile is computed fresh, without bias or
     * ReLU, and the store adds it to the output; threads split the rows in units of row_unit (a multiple of
     * MR) that own disjoint outputs, and the outputs of each row block (whole units) are set up by init just
     * before its first tile and finished (ReLU) by finish after its last. */
    int accumulate;
    int64_t row_unit;
    void (*init)(const fp_lowered *L, float *yn, int64_t r0, int64_t r1);
    void (*finish)(const fp_lowered *L, float *yn, int64_t r0, int64_t r1);
    const void *ctx;                  /* what pack_b / store need besides the problem */
    const fp_interleave_kernel *interleave; /* the stores' 2-wide interleave (a table row) */
    /* B rows [k0, k0+kc) x columns [j0, j0+nc) of image xn, as NR-column micro-panels of kc x NR floats */
    void (*pack_b)(const fp_lowered *L, const float *xn, int64_t k0, int64_t kc, int64_t j0, int64_t nc, float *dst);
    /* NULL: C rows are written in place (ldc = n); else a finished mr x nr tile (ldt apart) goes to yn */
    void (*store)(const fp_lowered *L, float *yn, int64_t i0, int64_t mr, int64_t j0, int64_t nr, const float *tile,
                  int64_t ldt);
};

int fp_lowered_run(const fp_lowered *L);

/* B of a transposed conv's GEMM: X[n] as it is (NCHW) or transposed (NHWC); L->ctx starts with the
 * problem of the input read at stride 1 (deconv_gemm.c). */
void fp_deconv_pack_b_nchw(const fp_lowered *L, const float *xn, int64_t k0, int64_t kc, int64_t j0, int64_t nc,
                           float *dst);
void fp_deconv_pack_b_nhwc(const fp_lowered *L, const float *xn, int64_t k0, int64_t kc, int64_t j0, int64_t nc,
                           float *dst);


/* The checks and set-up every lowered entry point shares: the panels of `packed` for an m x k GEMM
 * (NULL: FP_ERR_PACKED) and a copy of the problem with the thread count clamped, as conv.c does. */
const float *fp_lowered_begin(const fp_conv_problem *p, const void *packed, int64_t m, int64_t k,
                              const fp_sgemm_ukr **uk, fp_conv_problem *q);

/* Packed weights of a lowered GEMM: a 64-byte header (the gemm row, the GEMM's M and K) and the A panels. */
int64_t fp_lowered_packed_bytes(int64_t m, int64_t k);
int fp_lowered_pack(int64_t m, int64_t k, const float *w, void *packed, int threads);
/* The same from a k-major source: element (i, k) of W at w[k*m + (i % mdiv) * mstride + i / mdiv] (mdiv = 1:
 * the plain transpose; a transposed conv's (Cin, Cout, KH, KW) weight read with rows (tap, co): mdiv = Cout,
 * mstride = KH*KW).  Copying MR consecutive values of one k row at a time, in blocks of k rows; `threads`
 * split the panels once the weights are large. */
int fp_lowered_pack_kmajor(int64_t m, int64_t k, const float *w, int64_t mdiv, int64_t mstride, void *packed,
                           int threads);

#endif
