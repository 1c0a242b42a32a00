/* F(4x4, 3x3) driver: tile blocks, the thread split, and the fp_algo entry `fp_algo_winograd`.
 *
 * A job is one tile block (consecutive 4x4 output tiles of one image) times one slice of the output
 * channels.  It
 *   1. transforms the block's input tiles into V[36][nt][Cin] (NCHW: from a channel-last copy of the
 *      input window the block reads, so that every transform runs along contiguous channels);
 *   2. runs the 36 GEMMs M[k] = V[k] U[k] over its output-channel panels with the packed-GEMM
 *      micro-kernel (row-pointer A = rows of V, B = packed U[k]);
 *   3. inverse-transforms M into the output with bias and ReLU (NCHW: through a 4x4 x channels tile).
 * V and M of a block are sized to share half of the detected L2, so the transformed tensors are written
 * and read back in cache; U streams through once per block (each U value then feeds 2 nt flops).
 * Blocks are a segment of one tile row on wide maps, else whole tile rows, so the NCHW window is a
 * rectangle.  When the blocks are too few for the threads, the output channels are sliced as well
 * (every slice re-does the cheap input transform, and reads only its part of U). */
#include <string.h>

#include "winograd.h"

typedef struct plan {
    const fp_conv_problem *p;
    const fp_sgemm_ukr *uk;
    const fp_wino_kernel *wk;
    fp_wino_panels pn;
    int64_t th, tw;            /* tiles per image: rows, columns */
    int64_t segs, rpb;         /* segments per tile row (row mode) or tile rows per block */
    int64_t bpi, jobs, slices; /* blocks per image, jobs = n * bpi * slices */
    int64_t max_nt, max_rows, max_cols;
    int64_t ldv, ldm, kc;
    const float *x, *u, *bias;
    float *y;
    int failed;
} plan;

typedef struct block {
    int64_t n, ty0, ty1, tx0, tx1;
} block;

static block block_at(const plan *P, int64_t b) {
    block B;
    B.n = b / P->bpi;
    b %= P->bpi;
    if (P->segs > 1) {
        const int64_t seg = b % P->segs;
        B.ty0 = b / P->segs;
        B.ty1 = B.ty0 + 1;
        B.tx0 = seg * P->tw / P->segs;
        B.tx1 = (seg + 1) * P->tw / P->segs;
    } else {
        B.ty0 = b * P->rpb;
        B.ty1 = FP_MIN(P->th, B.ty0 + P->rpb);
        B.tx0 = 0;
        B.tx1 = P->tw;
    }
    return B;
}

static void make_plan(plan *P, const fp_conv_problem *p, int isa) {
    memset(P, 0, sizeof *P);
    P->p = p;
    P->uk = fp_sgemm_ukr_for(isa);
    P->wk = fp_wino_kernel_for(isa);
    P->pn = fp_wino_panels_for(p, P->uk);
    P->th = FP_CEIL_DIV(p->oh, FP_WINO_M);
    P->tw = FP_CEIL_DIV(p->ow, FP_WINO_M);
    P->ldv = FP_CEIL_DIV(p->cin, FP_WINO_CPAD) * FP_WINO_CPAD;
    const int64_t ldm_all = FP_CEIL_DIV(p->cout, FP_WINO_CPAD) * FP_WINO_CPAD;
    /* V + M of a block in half of L2; at least 32 tiles (4 row tiles of the 8-row micro-kernel), so that
     * U, which streams from L3 or memory on wide layers, is used often enough per load. */
    const int64_t per_tile = (int64_t)sizeof(float) * FP_WINO_NN * (P->ldv + ldm_all);
    const int64_t target = FP_MIN(FP_MAX(fp_cache_size(2) / 2 / per_tile, 32), 512);
    if (P->tw >= target) {
        P->segs = FP_CEIL_DIV(P->tw, target);
        P->rpb = 1;
        P->bpi = P->th * P->segs;
        P->max_nt = FP_CEIL_DIV(P->tw, P->segs);
    } else {
        P->segs = 1;
        P->rpb = FP_MIN(P->th, FP_MAX(1, target / P->tw));
        P->bpi = FP_CEIL_DIV(P->th, P->rpb);
        P->max_nt = P->rpb * P->tw;
    }
    P->max_rows = FP_MIN(p->h, FP_WINO_M * (P->max_nt / P->tw + 1) + 2);
    P->max_cols = FP_MIN(p->w, FP_WINO_M * FP_MIN(P->max_nt, P->tw) + 2);
    /* Slices of output-channel panels: enough jobs to keep every thread busy to the end. */
    const int threads = fp_threads(p);
    const int64_t blocks = p->n * P->bpi;
    P->slices = 1;
    while (P->slices < P->pn.count) {
        const int64_t j = blocks * P->slices;
        if (j >= 4 * (int64_t)threads || (j >= threads && j % threads == 0)) break;
        P->slices++;
    }
    P->jobs = blocks * P->slices;
    P->ldm = FP_CEIL_DIV(P->pn.count, P->slices) * P->pn.width;
    P->kc = fp_gemm_blocking(P->uk, P->max_nt, p->cout, p->cin).kc;
}

/* NCHW: the window [iy0, iy1) x [ix0, ix1) of image n, channel-last with rows of ldv floats. */
static void stage_nchw(const plan *P, int64_t n, int64_t iy0, int64_t iy1, int64_t ix0, int64_t ix1, float *s) {
    const fp_conv_problem *p = P->p;
    const int64_t C = p->cin, cols = ix1 - ix0, ldv = P->ldv;
    const float *xn = P->x + n * C * p->h * p->w;
    for (int64_t c = 0; c < C; c++)
        for (int64_t iy = iy0; iy < iy1; iy++) {
            const float *row = xn + (c * p->h + iy) * p->w;
            float *d = s + (iy - iy0) * cols * ldv + c;
            for (int64_t ix = ix0; ix < ix1; ix++) d[(ix - ix0) * ldv] = row[ix];
        }
}

static void gemms(const plan *P, int64_t nt, int64_t p0, int64_t p1, const float *V, float *M) {
    const fp_conv_problem *p = P->p;
    const fp_sgemm_ukr *uk = P->uk;
    const int64_t K = p->cin, width = P->pn.width, ks = fp_wino_u_stride(p, P->pn), MR = uk->mr;
    const float *rows[16];
    fp_ukr_args u = {0};
    u.arows = rows;
    u.ldb = width;
    u.ldc = P->ldm;
    for (int k = 0; k < FP_WINO_NN; k++) {
        const float *Vk = V + k * nt * P->ldv;
        float *Mk = M + k * nt * P->ldm;
        for (int64_t k0 = 0; k0 < K; k0 += P->kc) {
            u.kc = FP_MIN(P->kc, K - k0);
            u.first = k0 == 0;
            for (int64_t pp = p0; pp < p1; pp++) {
                u.b = P->u + k * ks + pp * K * width + k0 * width;
                u.nr = FP_MIN(width, p->cout - pp * width);
                for (int64_t i0 = 0; i0 < nt; i0 += MR) {
                    u.mr = FP_MIN(MR, nt - i0);
                    for (int64_t i = 0; i < MR; i++) rows[i] = Vk + (i0 + FP_MIN(i, u.mr - 1)) * P->ldv + k0;
                    u.c = Mk + i0 * P->ldm + (pp - p0) * width;
                    uk->run(&u);
                }
            }
        }
    }
}

static void job(void *ctx, int64_t j, int worker) {
    plan *P = (plan *)ctx;
    const fp_conv_problem *p = P->p;
    (void)worker;
    const int64_t C = p->cin, K = p->cout, H = p->h, W = p->w, OH = p->oh, OW = p->ow, ldv = P->ldv;
    const int64_t slice = j % P->slices;
    const block B = block_at(P, j / P->slices);
    const int64_t nt = (B.ty1 - B.ty0) * (B.tx1 - B.tx0);
    const int64_t p0 = slice * P->pn.count / P->slices, p1 = (slice + 1) * P->pn.count / P->slices;
    const int64_t co0 = p0 * P->pn.width, co1 = FP_MIN(K, p1 * P->pn.width);
    float *V = (float *)fp_scratch_or_fail(0, (int64_t)sizeof(float) * FP_WINO_NN * P->max_nt * ldv, &P->failed);
    float *M = (float *)fp_scratch_or_fail(1, (int64_t)sizeof(float) * FP_WINO_NN * P->max_nt * P->ldm, &P->failed);
    float *S = p->layout == 0 ? (float *)fp_scratch_or_fail(2, (int64_t)sizeof(float) * P->max_rows * P->max_cols * ldv,
                                                            &P->failed)
                              : NULL;
    float *zero = (float *)fp_scratch_or_fail(3, (int64_t)sizeof(float) * (ldv + 16 * P->ldm), &P->failed);
    if (!V || !M || !zero || (p->layout == 0 && !S)) return;
    float *O = zero + ldv;
    memset(zero, 0, sizeof(float) * (size_t)ldv);

    /* 1. input transform */
    const int64_t iy0 = FP_MAX(0, B.ty0 * FP_WINO_M - p->pad_top), iy1 = FP_MIN(H, B.ty1 * FP_WINO_M + 2 - p->pad_top);
    const int64_t ix0 = FP_MAX(0, B.tx0 * FP_WINO_M - p->pad_left), ix1 = FP_MIN(W, B.tx1 * FP_WINO_M + 2 - p->pad_left);
    if (p->layout == 0 && iy0 < iy1 && ix0 < ix1) stage_nchw(P, B.n, iy0, iy1, ix0, ix1, S);
    const float *src[FP_WINO_NN];
    int64_t t = 0;
    for (int64_t ty = B.ty0; ty < B.ty1; ty++)
        for (int64_t tx = B.tx0; tx < B.tx1; tx++, t++) {
            for (int i = 0; i < FP_WINO_N; i++)
                for (int q = 0; q < FP_WINO_N; q++) {
                    const int64_t iy = ty * FP_WINO_M - p->pad_top + i, ix = tx * FP_WINO_M - p->pad_left + q;
                    const float *s = zero;
                    if (iy >= 0 && iy < H && ix >= 0 && ix < W)
                        s = p->layout == 0 ? S + ((iy - iy0) * (ix1 - ix0) + (ix - ix0)) * ldv
                                           : P->x + ((B.n * H + iy) * W + ix) * C;
                    src[FP_WINO_N * i + q] = s;
                }
            P->wk->input(src, C, V + t * ldv, nt * ldv);
        }

    /* 2. the 36 GEMMs */
    gemms(P, nt, p0, p1, V, M);

    /* 3. output transform, bias, ReLU, store */
    const float *bias = P->bias ? P->bias + co0 : NULL;
    float *dst[16];
    t = 0;
    for (int64_t ty = B.ty0; ty < B.ty1; ty++)
        for (int64_t tx = B.tx0; tx < B.tx1; tx++, t++) {
            for (int a = 0; a < FP_WINO_M; a++)
                for (int b = 0; b < FP_WINO_M; b++) {
                    const int64_t oy = ty * FP_WINO_M + a, ox = tx * FP_WINO_M + b;
                    float *d = NULL;
                    if (oy < OH && ox < OW)
                        d = p->layout == 0 ? O + (FP_WINO_M * a + b) * P->ldm : P->y + ((B.n * OH + oy) * OW + ox) * K + co0;
                    dst[FP_WINO_M * a + b] = d;
                }
            P->wk->output(M + t * P->ldm, nt * P->ldm, co1 - co0, bias, p->relu, dst);
            if (p->layout != 0) continue;
            /* NCHW: the 4x4 x channels tile into the channel planes */
            const int64_t ah = FP_MIN(FP_WINO_M, OH - ty * FP_WINO_M), bw = FP_MIN(FP_WINO_M, OW - tx * FP_WINO_M);
            for (int64_t co = co0; co < co1; co++) {
                float *yc = P->y + ((B.n * K + co) * OH + ty * FP_WINO_M) * OW + tx * FP_WINO_M;
                const float *o = O + (co - co0);
                for (int64_t a = 0; a < ah; a++)
                    for (int64_t b = 0; b < bw; b++) yc[a * OW + b] = o[(FP_WINO_M * a + b) * P->ldm];
            }
        }
}

/* ------------------------------------------------------------------ the fp_algo entry */

const fp_wino_kernel *fp_wino_kernel_for(int isa) {
#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
    if (isa >= FP_ISA_AVX512) return &fp_wino_kernel_avx512;
    if (isa >= FP_ISA_AVX2) return &fp_wino_kernel_avx2;
#endif
    (void)isa;
    return &fp_wino_kernel_scalar;
}

/* Only when asked for: the results differ from the direct kernel's by rounding (docs/winograd.md).
 * float64 problems asking for Winograd run the direct kernel. */
static int applies(const fp_conv_problem *p, int isa, int f64) {
    (void)isa;
    return !f64 && p->algorithm == FP_ALGO_WINOGRAD && p->kh == 3 && p->kw == 3 && p->stride_h == 1 &&
           p->stride_w == 1 && p->dil_h == 1 && p->dil_w == 1 && p->groups == 1 && p->cin >= 1 && p->cout >= 1;
}

static const char *kernel_name(const fp_conv_problem *p, int isa, int f64) {
    (void)p; (void)f64;
    return fp_wino_kernel_for(isa)->name;
}

static int64_t packed_bytes(const fp_conv_problem *p, int isa, int f64) {
    (void)f64;
    return (int64_t)sizeof(float) * fp_wino_packed_floats(p, fp_sgemm_ukr_for(isa));
}

static int pack(const fp_conv_problem *p, int isa, int f64, const void *w, void *dst) {
    (void)f64;
    fp_wino_pack(p, fp_sgemm_ukr_for(isa), (const float *)w, (float *)dst);
    return FP_OK;
}

static int run(const fp_conv_problem *p, int isa, int f64, const void *x, const void *packed, const void *bias,
               void *y) {
    (void)f64;
    if (p->n == 0 || p->oh < 1 || p->ow < 1) return FP_OK;
    if (p->pad_top < 0 || p->pad_left < 0) return FP_ERR_ARGS;
    plan P;
    make_plan(&P, p, isa);
    P.x = (const float *)x;
    P.u = (const float *)packed;
    P.bias = (const float *)bias;
    P.y = (float *)y;
    const int threads = (int)FP_MIN((int64_t)fp_threads(p), P.jobs);
    fp_pool_run(threads, P.jobs, job, &P);
    return P.failed ? FP_ERR_ALLOC : FP_OK;
}

const fp_algo fp_algo_winograd = {"winograd", applies, kernel_name, packed_bytes, pack, run};
