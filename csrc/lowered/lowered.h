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
#include <string.h>

#include "interleave.h"

typedef struct fp_lowered fp_lowered;
struct fp_lowered {
    const fp_conv_problem *p;
    const fp_sgemm_ukr *uk;
    int64_t m, k, n;                  /* the GEMM of one image */
    const float *a;                   /* W as MR-row panels (fp_gemm_pack_weights, k-major) */
    const float *a_raw;               /* or (a NULL) W k-major as fp_lowered_kmajor_panels reads it, packed per
                                         MC-row block just before its first tile (a one-shot call on one
                                         thread; fp_lowered_run: FP_DECLINED unless one nc block) */
    const float *a_rows;              /* or (a and a_raw NULL) W row-major, m x k, read in place by the micro-kernels
                                         as MR row pointers (a one-shot conv1d: no packing of W at all) */
    const float *bias;                /* one value per GEMM row, or NULL */
    const float *x;
    float *y;
    int64_t x_image, y_image;         /* floats between images */
    int single_k_block;               /* the store needs each tile finished in one k block */
    int nc_shared;                    /* B blocks of the thread's L3 share (fp_gemm_nc_shared), not half of L2 */
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
    /* NULL, or the part [k0, k1) of the one k block (single_k_block, a store) that the MR-row panel from row i
     * reads (the sub-pixel GEMM's phases, deconv_shuffle.c: a phase with fewer taps reads fewer B rows) */
    void (*krange)(const fp_lowered *L, int64_t i, int64_t *k0, int64_t *k1);
    /* NULL: C rows are written in place (ldc = n); else a finished mr x nr tile (ldt apart) goes to yn */
    void (*store)(const fp_lowered *L, float *yn, int64_t i0, int64_t mr, int64_t j0, int64_t nr, const float *tile,
                  int64_t ldt);
};

/* Rows of a micro-kernel tile fp_lowered_run accepts (the table's rows have 4..8). */
#define FP_LOWERED_MAX_MR 16

int fp_lowered_run(const fp_lowered *L);

/* n floats, n a micro-kernel's MR or NR: constant-size copies for the usual sizes, which the compiler inlines as
 * a few vector moves (a libc memcpy call per 32 bytes was 10 % of a one-shot U-Net up-convolution's weight
 * packing; one per 192-byte row of a B micro-panel, 10 % of BasicUNet's 32->32 @128). */
static inline void fp_copy_short(float *d, const float *s, int64_t n) {
    if (n == 48) memcpy(d, s, 192);
    else if (n == 16) memcpy(d, s, 64);
    else if (n == 8) memcpy(d, s, 32);
    else if (n == 4) memcpy(d, s, 16);
    else memcpy(d, s, sizeof(float) * (size_t)n);
}

/* The tile's columns [t, t + n) that are pixels (iy, ix ..) of one input row: found once per tile (no
 * division per row of it), at most one per column (nr <= 64, fp_lowered_run). */
typedef struct fp_pixel_run {
    int64_t t, n, iy, ix;
} fp_pixel_run;

static inline int fp_tile_runs(int64_t j0, int64_t nr, int64_t W, fp_pixel_run *r) {
    int64_t iy = j0 / W, ix = j0 % W;
    int c = 0;
    for (int64_t t = 0; t < nr; iy++, ix = 0) {
        const int64_t n = FP_MIN(nr - t, W - ix);
        r[c].t = t, r[c].n = n, r[c].iy = iy, r[c].ix = ix;
        c++, t += n;
    }
    return c;
}

/* B of a transposed conv's GEMM: X[n] (L->k x L->n) as it is (NCHW) or transposed (NHWC) (deconv_gemm.c). */
void fp_deconv_pack_b_nchw(const fp_lowered *L, const float *xn, int64_t k0, int64_t kc, int64_t j0, int64_t nc,
                           float *dst);
void fp_deconv_pack_b_nhwc(const fp_lowered *L, const float *xn, int64_t k0, int64_t kc, int64_t j0, int64_t nc,
                           float *dst);


/* The checks and set-up every lowered entry point shares: the panels of `packed` for an m x k GEMM
 * (NULL: FP_ERR_PACKED) and a copy of the problem with the thread count clamped, as conv.c does. */
const float *fp_lowered_begin(const fp_conv_problem *p, const void *packed, int64_t m, int64_t k,
                              const fp_sgemm_ukr **uk, fp_conv_problem *q);
/* A copy of the problem with the thread count clamped (what fp_lowered_begin does besides the checks). */
void fp_lowered_problem(const fp_conv_problem *p, fp_conv_problem *q);
/* The same for a packing of the given form (the header's: which panels follow). */
const float *fp_lowered_begin_form(const fp_conv_problem *p, const void *packed, int64_t m, int64_t k, int form,
                                   const fp_sgemm_ukr **uk, fp_conv_problem *q);

/* Packed weights of a lowered GEMM: a 64-byte header (the gemm row, the GEMM's M and K) and the A panels
 * (or, for the NHWC K == stride transposed conv, W'^T's column panels: deconv_nhwc.c).  header_init writes the
 * header and returns where the panels start. */
/* MR-row panels of W / NR-column panels of W^T / MR-row panels of the sub-pixel GEMM's W'' (deconv_shuffle.c) */
enum { FP_LOWERED_PANELS_A = 0, FP_LOWERED_PANELS_B = 1, FP_LOWERED_PANELS_SHUFFLE = 2 };
int64_t fp_lowered_header_bytes(void);
float *fp_lowered_header_init(void *packed, int64_t m, int64_t k, int form);
int64_t fp_lowered_packed_bytes(int64_t m, int64_t k);
/* `threads` split the panels across the pool once the weights are large (fp_pack_jobs). */
int fp_lowered_pack(int64_t m, int64_t k, const float *w, void *packed, int threads);
/* The same from a k-major source, element (i, k) of W at w[k*m + i] (a transposed conv's (Cin, Cout, KH, KW)
 * weight read with rows (co, ky, kx)): MR consecutive values of one k row at a time, in blocks of k rows;
 * `threads` split the panels once the weights are large.  kmajor_panels: panels [pi0, pi1) only, into dst
 * (panel pi at (pi - pi0) * k * MR), with no header (a one-shot call's row block, packed just before use). */
int fp_lowered_pack_kmajor(int64_t m, int64_t k, const float *w, void *packed, int threads);
void fp_lowered_kmajor_panels(int64_t m, int64_t k, const float *w, int64_t pi0, int64_t pi1, float *dst);

/* A one-shot call's scratch (deconv_gemm.c): `bytes` (packed weights, or none) and then the bias per GEMM row,
 * `taps` rows per output channel, NCHW rows (co, tap), NHWC (tap, co); *rows NULL without a bias. */
char *fp_lowered_once_scratch(const fp_conv_problem *p, const float *bias, int64_t bytes, int64_t taps,
                              float **rows);

/* The NHWC K == stride transposed conv written in place by the micro-kernels (deconv_nhwc.c): packed bytes,
 * packing of the (Cin, Cout, KH, KW) weights, and the run (bias: one value per column (kx, co), or NULL). */
int64_t fp_deconv_nhwc_packed_bytes(const fp_conv_problem *p);
int fp_deconv_nhwc_pack(const fp_conv_problem *p, const float *w, void *packed);
int fp_deconv_nhwc_run(const fp_conv_problem *p, const float *x, const void *packed, const float *bias, float *y);

#endif
