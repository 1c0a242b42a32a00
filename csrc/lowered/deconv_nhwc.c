/* NHWC transposed convolution with kernel == stride and no padding (U-Net's 2x2 s2 up-convolution, as a
 * network runs it NHWC) written in place by the GEMM micro-kernels, with no tile buffer and no scatter.
 *
 * In NHWC the product is the 1x1 GEMM's own orientation, Y'^T (H*W x KH*KW*Cout) = X (H*W x Cin) @ W'^T, with
 * W'^T's columns ordered (ky, kx, co).  For one input row iy and one ky, the kw*Cout columns (kx, co) of pixel
 * ix land at output row s*iy + ky, pixel s*ix + kx, channel co, that is at
 *     y[((s*iy + ky) * OW) * Cout + ix * (kw*Cout) + (kx*Cout + co)]
 * (kw == stride), contiguous in the column and kw*Cout floats from one pixel to the next: an ordinary C block
 * with ldc = kw*Cout.  So each tile of MR pixels of one input row x NR columns of one ky is a plain micro-kernel
 * call into the output: bias per column and ReLU fused in its store, non-temporal stores for large outputs,
 * any Cin (k blocks read C back, as the 1x1 GEMM does), and every output written once.  The weights are packed
 * as NR-column panels of W'^T per ky (each ky's kw*Cout columns padded to whole panels), the layout the NHWC
 * 1x1 GEMM reads.  Replaced the GEMM with rows (ky, kx, co) whose tiles were stored element by element
 * (deconv_gemm.c): BasicUNet's 32->32 @128 went from a tile buffer and 64 scattered 4-byte stores per pixel to
 * the micro-kernel's vector stores. */
#include <string.h>

#include "lowered.h"

#define ROWS_MAX 32 /* row pointers on the stack: MR of every gemm row is far below */

typedef struct nhwc_task {
    const fp_conv_problem *p;
    const fp_sgemm_ukr *uk;
    const float *panels, *x, *bias;
    float *y;
    int64_t kc, panels_per_ky, panel_block; /* k block; NR-column panels per ky; panels per L2 block */
    int64_t rows_per_job, jobs, nchunks;
    int stream;
} nhwc_task;

static int64_t panels_per_ky(const fp_conv_problem *p, int64_t NR) { return FP_CEIL_DIV(p->kw * p->cout, NR); }

int64_t fp_deconv_nhwc_packed_bytes(const fp_conv_problem *p) {
    const fp_sgemm_ukr *uk = fp_sgemm_ukr_pick(fp_isa());
    return fp_lowered_header_bytes() +
           (int64_t)sizeof(float) * p->kh * panels_per_ky(p, uk->nr) * uk->nr * p->cin;
}

/* Panel q = ky * P + jp, row k, column c holds W'^T[k][(ky, kx, co)] for kx*Cout + co = jp*NR + c, that is
 * w[k][co][ky][kx] of the (Cin, Cout, KH, KW) weights, or zero past the ky's kw*Cout columns.  Written along
 * the columns (kx, co) of each k row with running panel / column counters (no division per element). */
int fp_deconv_nhwc_pack(const fp_conv_problem *p, const float *w, void *packed) {
    const fp_sgemm_ukr *uk = fp_sgemm_ukr_pick(fp_isa());
    const int64_t NR = uk->nr, K = p->cin, C = p->cout, kw = p->kw, taps = p->kh * kw, P = panels_per_ky(p, NR);
    float *d = fp_lowered_header_init(packed, C * taps, K, FP_LOWERED_PANELS_B);
    for (int64_t ky = 0; ky < p->kh; ky++) {
        float *dk = d + ky * P * K * NR; /* this ky's P panels, K x NR each */
        for (int64_t k = 0; k < K; k++) {
            const float *src = w + k * C * taps + ky * kw;
            int64_t jp = 0, c = 0;
            for (int64_t kx = 0; kx < kw; kx++)
                for (int64_t co = 0; co < C; co++) {
                    dk[(jp * K + k) * NR + c] = src[co * taps + kx];
                    if (++c == NR) c = 0, jp++;
                }
            for (; c > 0 && c < NR; c++) dk[(jp * K + k) * NR + c] = 0.0f; /* the last panel's columns past kw*Cout */
        }
    }
    return FP_OK;
}

/* Input rows [r0, r1) of the batch (image n = r / H): for each k block, each block of panels (within half of
 * L2), each row, each MR-pixel tile (its MR x kc input in L1), every panel of the block. */
static void nhwc_rows(const nhwc_task *t, int64_t r0, int64_t r1) {
    const fp_conv_problem *p = t->p;
    const fp_sgemm_ukr *uk = t->uk;
    const int64_t MR = uk->mr, NR = uk->nr, K = p->cin, C = p->cout, W = p->w, kw = p->kw, rowc = kw * C;
    const int64_t P = t->panels_per_ky, Q = p->kh * P;
    const float *rows[ROWS_MAX];
    fp_ukr_args u;
    memset(&u, 0, sizeof u);
    u.arows = rows;
    u.ldb = NR;
    u.ldc = rowc;
    u.bias_per_col = 1;
    u.stream = t->stream;
    for (int64_t pc = 0; pc < K; pc += t->kc) {
        const int64_t kc = FP_MIN(t->kc, K - pc);
        u.kc = kc;
        u.first = pc == 0;
        u.relu = p->relu && pc + kc >= K;
        for (int64_t q0 = 0; q0 < Q; q0 += t->panel_block) {
            const int64_t q1 = FP_MIN(Q, q0 + t->panel_block);
            for (int64_t r = r0; r < r1; r++) {
                const int64_t n = r / p->h, iy = r % p->h;
                const float *xr = t->x + r * W * K + pc;
                for (int64_t ix = 0; ix < W; ix += MR) {
                    u.mr = FP_MIN(MR, W - ix);
                    for (int64_t i = 0; i < MR; i++) rows[i] = xr + (ix + FP_MIN(i, u.mr - 1)) * K;
                    for (int64_t q = q0; q < q1; q++) {
                        const int64_t ky = q / P, j0 = q % P * NR;
                        u.nr = FP_MIN(NR, rowc - j0);
                        u.b = t->panels + q * K * NR + pc * NR;
                        u.bias = t->bias ? t->bias + j0 : NULL;
                        u.c = t->y + ((n * p->oh + iy * p->kh + ky) * p->ow) * C + ix * rowc + j0;
                        uk->run(&u);
                    }
                }
            }
        }
    }
}

static void nhwc_chunk(void *ctx, int64_t c, int worker) {
    const nhwc_task *t = (const nhwc_task *)ctx;
    int64_t lo, hi;
    (void)worker;
    fp_chunk_range(t->jobs, t->nchunks, c, &lo, &hi);
    nhwc_rows(t, lo * t->rows_per_job, FP_MIN(hi * t->rows_per_job, t->p->n * t->p->h));
    fp_gemm_fence(); /* the micro-kernel's non-temporal stores are ordered before the call returns */
}

/* bias: kw*Cout values, one per column (kx, co) of a ky (the same for every ky), or NULL. */
int fp_deconv_nhwc_run(const fp_conv_problem *p, const float *x, const void *packed, const float *bias, float *y) {
    fp_conv_problem q;
    const fp_sgemm_ukr *uk;
    const float *panels = fp_lowered_begin_form(p, packed, p->cout * p->kh * p->kw, p->cin, FP_LOWERED_PANELS_B, &uk,
                                                &q);
    if (!panels) return FP_ERR_PACKED;
    if (uk->mr > ROWS_MAX) return FP_ERR_ARGS;
    nhwc_task t;
    memset(&t, 0, sizeof t);
    t.p = &q, t.uk = uk, t.panels = panels, t.x = x, t.bias = bias, t.y = y;
    const int64_t NR = uk->nr, rows = q.n * q.h;
    const fp_gemm_blocks bs = fp_gemm_blocking(uk, q.w, q.cout * q.kh * q.kw, q.cin);
    t.kc = bs.kc;
    t.panels_per_ky = panels_per_ky(&q, NR);
    /* the panels of one block take half of L2 (the detected machine), re-read from there by every tile */
    t.panel_block = FP_MAX(1, fp_cache_size(2) / 2 / ((int64_t)sizeof(float) * t.kc * NR));
    /* written once in one k block, an output larger than L2 streams past the caches (the micro-kernel does so
     * for full 64-byte aligned rows only), as the 1x1 GEMM's */
    t.stream = uk->extended && q.cin <= t.kc && (int64_t)sizeof(float) * q.n * q.oh * q.ow * q.cout > fp_cache_size(2);
    const int T = fp_threads(&q);
    /* jobs of whole input rows: FP_CHUNKS_PER_THREAD per thread where there are enough rows */
    t.rows_per_job = FP_MAX(1, rows / ((int64_t)T * FP_CHUNKS_PER_THREAD));
    t.jobs = FP_CEIL_DIV(rows, t.rows_per_job);
    t.nchunks = fp_chunk_count(t.jobs, T);
    if (t.nchunks < 1) return FP_OK;
    fp_flush_enter();
    fp_pool_run(T, t.nchunks, nhwc_chunk, &t);
    fp_flush_leave();
    return FP_OK;
}
