/* The 1x1 (pointwise) convolution as a packed, cache-blocked GEMM (float32).
 *
 *   NCHW:  Y[n] (Cout x P) = W (Cout x Cin) @ X[n] (Cin x P)     A = packed W,  B = X (packed per micro-panel)
 *   NHWC:  Y (P x Cout)    = X (P x Cin)    @ W^T (Cin x Cout)   A = rows of X, B = packed W^T
 *
 * In both, the micro-kernel computes an MR x NR tile C[i][j] = sum_k A[i][k] B[k][j] with vectors along
 * j (contiguous in the output), broadcasts of A, and a fused epilogue.  Files:
 *   gemm_blocking.c       block sizes from the cache sizes
 *   gemm_pack_weights.c   prepacking of W (NCHW: MR-row panels) or W^T (NHWC: NR-column panels)
 *   gemm_pack_act.c       packing of an activation micro-panel (stride folded in), NHWC row pointers
 *   gemm_driver.c         the NC/KC/MC/NR/MR loops and the thread split
 *   gemm_algo.c           the fp_algo entry (applies / pack / run)
 *   f32_gemm_<MR>x<NR>__<isa>.c   the register-blocked micro-kernels, rows of the gemm table in
 *                         csrc/kernel_table.c
 */
#ifndef FASTPOINT_GEMM_H
#define FASTPOINT_GEMM_H
#include "../internal.h"
#include "../kernel_table.h"

/* Arguments of one micro-kernel call.  A is either a packed panel (a: k-major, MR values per k) or
 * MR row pointers (arows[i][k]; rows past mr repeat a valid row, so nothing is read out of bounds).
 * B is kc rows of at least nr valid floats, ldb apart; only the first nr columns are read. */
typedef struct fp_ukr_args {
    int64_t kc;
    const float *a;              /* packed A, or NULL when arows is used */
    const float *const *arows;   /* MR row pointers, already offset to the k block */
    const float *b;
    int64_t ldb;
    float *c;
    int64_t ldc;
    int64_t mr, nr;              /* valid rows / columns of this tile (<= MR, NR) */
    const float *bias;           /* NULL, or bias of this tile's first row / column */
    int bias_per_col;            /* 1: bias[j] (NHWC), 0: bias[i] (NCHW) */
    int first;                   /* first k block: start from bias, else add C read back */
    int relu;                    /* last k block with ReLU fused */
    /* Only for kernels with `extended` set: */
    float *bcopy;                /* also copy B into this kc x NR panel */
    int prefetch_next;           /* B rows are long (unpacked input): prefetch the columns 2 NR ahead */
    int64_t lda;                 /* packed-A mode: floats between successive k (0 means MR) */
    int c_trans;                 /* C(i, j) lives at c[j * ldc + i] (NCHW output of the transposed form) */
    int64_t a_panel;             /* tall kernel: floats between successive MR-row panels of packed A */
    const int32_t *bidx;         /* strided input: offsets of the tile's NR pixels in a channel row (b, ldb
                                    then address channel rows); B is gathered, and copied as with bcopy */
    const float *pf_lines;       /* transposed form: prefetch kc lines from here, one per k (next B panel) */
    int stream;                  /* non-temporal stores allowed for full, aligned rows (then fp_gemm_fence) */
    const float *pf_tile;        /* NULL, or a tile read right after this call (the epilogue's residual): its
                                    mr rows (pf_ld floats apart) x nr columns fetched into L1 late in the k loop */
    int64_t pf_ld;
} fp_ukr_args;

typedef void (*fp_sgemm_ukr_fn)(const fp_ukr_args *u);

/* A row of the gemm table: the common row (name, dtype, ISA, tile = mr x nr), then what the driver needs. */
typedef struct fp_sgemm_ukr {
    fp_kernel k;
    int mr, nr;                  /* = k.tile_m, k.tile_n (FP_SGEMM_ROW fills both) */
    fp_sgemm_ukr_fn run;
    int extended;                /* honours bcopy, prefetch_next, lda, c_trans, pf_lines, stream and pf_tile */
    fp_sgemm_ukr_fn tall;        /* optional: tall_mr x tall_nr tiles for small Cout (packed A, a_panel) */
    int tall_mr, tall_nr;
} fp_sgemm_ukr;

#define FP_SGEMM_ROW(NAME, ISA, MR_, NR_) {NAME, "gemm", 0, ISA, MR_, NR_}, MR_, NR_

extern const fp_sgemm_ukr fp_f32_gemm_4x16__scalar;
extern const fp_sgemm_ukr fp_f32_gemm_6x16__avx2;
extern const fp_sgemm_ukr fp_f32_gemm_8x48__avx512;

/* The micro-kernel to run at ISA level isa (the table's choice, csrc/kernel_table.c). */
static inline const fp_sgemm_ukr *fp_sgemm_ukr_pick(int isa) {
    return (const fp_sgemm_ukr *)fp_kernel_pick("gemm", 0, isa); /* the row starts the struct */
}

typedef struct fp_gemm_blocks {
    int64_t kc, mc, nc;
} fp_gemm_blocks;

/* Block sizes for an m x n x k product with micro-kernel uk. */
fp_gemm_blocks fp_gemm_blocking(const fp_sgemm_ukr *uk, int64_t m, int64_t n, int64_t k);
/* NCHW: nc for a kc x nc block of X packed once and re-read by every MC block (L3 share). */
int64_t fp_gemm_nc_shared(const fp_sgemm_ukr *uk, int64_t kc, int64_t n);

/* NCHW: whether a problem (its output size known) runs the transposed form Y^T = X^T W^T. */
int fp_gemm_use_transposed(const fp_conv_problem *p, const fp_sgemm_ukr *uk);

/* Prepacked weight sizes (floats) and packing. */
int64_t fp_gemm_packed_floats(const fp_conv_problem *p, const fp_sgemm_ukr *uk);
void fp_gemm_pack_weights(const fp_conv_problem *p, const fp_sgemm_ukr *uk, const float *w, float *dst);
/* The W^T panels (NR columns each) inside a packing: all of it for NHWC, the second part for NCHW. */
const float *fp_gemm_packed_wt(const fp_conv_problem *p, const fp_sgemm_ukr *uk, const float *packed);

/* NCHW: copy channels [k0, k0+kc) x output pixels [j0, j0+nc) of image x (C x H x W) into dst as
 * micro-panels of NR pixels (each kc x NR, k-major), gathering strided pixels (output pixel (oy, ox)
 * reads input (oy*sh, ox*sw)); off is scratch for 2 nc entries (offsets, run lengths). */
void fp_gemm_pack_b_nchw(const fp_conv_problem *p, const float *x, int64_t k0, int64_t kc, int64_t j0,
                         int64_t nc, int64_t NR, float *dst, int64_t *off);

/* Whether fp_gemm_pack_b_nchw copies a strided block in whole output-row runs (horizontal stride 1, or 2 with
 * AVX-512), which beats gathering them in the first row tile. */
int fp_gemm_pack_b_runs(const fp_conv_problem *p);

/* NHWC: pointers to the channel vectors of output pixels [r0, r0+mr) (batch folded), offset by k0;
 * entries mr..MR-1 repeat the last valid row. */
void fp_gemm_rows_nhwc(const fp_conv_problem *p, const float *x, int64_t r0, int64_t mr, int MR, int64_t k0,
                       const float **rows);

/* The thread pool, fp_pool_run, is csrc/pool.c (declared in internal.h). */

/* Orders non-temporal stores before the call returns. */
void fp_gemm_fence(void);

int fp_gemm_run_nchw(const fp_conv_problem *p, const fp_sgemm_ukr *uk, const float *x, const float *packed,
                     const float *bias, float *y);
int fp_gemm_run_nhwc(const fp_conv_problem *p, const fp_sgemm_ukr *uk, const float *x, const float *packed,
                     const float *bias, float *y);
/* One-shot calls: the same products on the caller's Cout x Cin weights.  The regular NCHW form reads W in
 * place (the micro-kernel's row pointers: MR rows of W, each contiguous in k), nothing packed.  NHWC and the
 * NCHW transposed form pack each W^T panel inside the loops just before its first use (per-thread scratch
 * slot 2), as BLIS packs per block, when the threads split output channels (else every thread would pack
 * every panel).  FP_DECLINED otherwise (and for the tall tile's 9..16 channels), and the caller packs. */
int fp_gemm_run_unpacked(const fp_conv_problem *p, const fp_sgemm_ukr *uk, const float *x, const float *w,
                         const float *bias, float *y);
/* The NCHW transposed form's k block (one up to K = 2048). */
int64_t fp_gemm_kc_transposed(const fp_conv_problem *p);
/* One-shot calls on small maps whose weights exceed L2 (gemm_once_wrows.c): the operands swapped, W's rows
 * read in place as the broadcast operand, X packed; bit-identical to the prepacked layer. */
int fp_gemm_once_wrows_applies(const fp_conv_problem *p, const fp_sgemm_ukr *uk);
int fp_gemm_once_wrows(const fp_conv_problem *p, const fp_sgemm_ukr *uk, const float *x, const float *w,
                       const float *bias, float *y);

#endif
