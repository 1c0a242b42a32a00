/* F(4x4, 3x3) driver: tile blocks, the thread split, and the fp_algo entry `fp_algo_winograd`.
 *
 * A job is one tile block (consecutive 4x4 output tiles of one image, or the whole maps of a few images when
 * one image has too few tiles) times one slice of the output channels.  It
 *   1. transforms the block's input tiles into V[nt][36][Cin] (NCHW: from a channel-last copy of the
 *      input window the block reads, so that every transform runs along contiguous channels);
 *   2. runs the 36 GEMMs M[k] = V[k] U[k] over its output-channel panels with the packed-GEMM
 *      micro-kernel (row-pointer A = rows of V, B = packed U[k]);
 *   3. inverse-transforms M into the output with bias and ReLU (NCHW: 4 tiles side by side through a
 *      channel-last buffer, turned into rows of 16 pixels).
 * Block size (make_plan): V and M in half of L2 where U is small, else up to 128 tiles, which keeps them in
 * L3 (the transforms prefetch the next tile) while the V[k], M[k] of the GEMM at work stay in L2; U then
 * streams through once per block (each U value feeds 2 nt flops).
 * Blocks are a segment of one tile row on wide maps, else whole tile rows, so the NCHW window is a
 * rectangle.
 * Dilation d (NHWC only): the output pixels (py + dh sy, px + dw sx) of one phase (py, px) are a 3x3
 * dilation-1 convolution of the input pixels (py - pad_top + dh r, px - pad_left + dw c), so the driver
 * runs each image as dh dw "phase images" of ceil(OH / dh) x ceil(OW / dw) outputs: only the pixel
 * pointers of the tiles change (fcn_resnet50's layer3 / layer4, dilation 2 and 4).  When the blocks are too few for the threads, the output channels are sliced as well
 * (every slice re-does the cheap input transform, and reads only its part of U). */
#include <string.h>

#include "../epilogue/epilogue.h"
#include "../kernel_table.h"
#include "winograd.h"

/* V and M are tile-major: tile t's 36 rows (one per transform position, channels contiguous, ld floats
 * each) form one contiguous run, so that each transform reads or writes one stream.  The GEMM of position
 * k reads every TILE_STRIDE-th row; the extra cache line keeps successive tiles' rows off the same L1 sets. */
#define TILE_STRIDE(ld) (P->nn * (ld) + 16)

typedef struct plan {
    const fp_conv_problem *p;
    const fp_sgemm_ukr *uk;
    const fp_wino_kernel *wk;
    int64_t m, n, nn;          /* F(m x m, 3 x 3): output tile side, input tile side n = m + 2, n n positions */
    int64_t images, phases;    /* phase images: batch x phases, phases = dil_h x dil_w (1: no dilation) */
    fp_wino_panels pn;
    int64_t th, tw;            /* tiles per image: rows, columns */
    int64_t segs, rpb;         /* segments per tile row (row mode) or tile rows per block */
    int64_t ipb;               /* images per block: > 1 only when a whole image has too few tiles (bpi == 1) */
    int64_t bpi, jobs, slices; /* blocks per image (group of ipb images), jobs = blocks * slices */
    int64_t max_nt, max_rows, max_cols;
    int64_t ldv, ldm, kc;
    const float *x, *u, *bias;
    float *y;
    int stream;                /* NCHW output past L2: non-temporal stores of whole aligned rows */
    int failed;
    const fp_ep *ep;           /* the call's epilogue (csrc/epilogue), applied to each stored tile */
} plan;

/* Images [n0, n1), the same tile rows [ty0, ty1) and columns [tx0, tx1) of each. */
typedef struct block {
    int64_t n0, n1, ty0, ty1, tx0, tx1;
} block;

static block block_at(const plan *P, int64_t b) {
    block B;
    B.n0 = b / P->bpi * P->ipb;
    B.n1 = FP_MIN(P->images, B.n0 + P->ipb);
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

/* The GEMM micro-kernel of an ISA, by ISA alone: the U panels are packed for its NR, so a forced gemm row
 * (fp_force_kernels) between packing and running must not change it. */
static const fp_sgemm_ukr *gemm_ukr(int isa) {
#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
    if (isa >= FP_ISA_AVX512) return &fp_f32_gemm_8x48__avx512;
    if (isa >= FP_ISA_AVX2) return &fp_f32_gemm_6x16__avx2;
#endif
    (void)isa;
    return &fp_f32_gemm_4x16__scalar;
}

/* F(4x4) unless its tiles are too few to reuse U (about 2.25 x the weights, streamed once per block): then
 * F(2x2), whose U is 16/36 as large and whose tiles are 4 times as many, though it saves only 2.25x of the
 * multiplications against 4x.  Measured at 1 thread, effective GFLOP/s F(4x4) / F(2x2): 512->512@7 (4 tiles)
 * 152 / 209, 256->256@14 (16 tiles) 275 / 271, 8 x 256->256@14 316 / 324, 256->256@28 (49 tiles) 507 / 305. */
static const fp_wino_kernel *choose_kernel(const fp_conv_problem *p, int isa) {
    if (fp_kernel_forcing()) { /* a forced row (tests, benchmarks) runs on every map */
        const fp_kernel *f = fp_kernel_forced("winograd", 0);
        if (f) return (const fp_wino_kernel *)f; /* the row starts the struct */
    }
    const fp_wino_kernel *k = fp_wino_kernels_for(isa);
    if (p->n < 1 || p->oh < 1 || p->ow < 1) return &k[0]; /* the map unknown (a layer's name before a call) */
    const int64_t tiles4 = p->n * p->dil_h * p->dil_w * FP_CEIL_DIV(FP_CEIL_DIV(p->oh, p->dil_h), 4) *
                           FP_CEIL_DIV(FP_CEIL_DIV(p->ow, p->dil_w), 4);
    return tiles4 < 32 ? &k[1] : &k[0];
}

/* The U sets a packing of p holds: the one its map runs where the map is known (a network's plan, a one-shot
 * call), else both (fp.Conv2d packs before its first call). */
static int sets_for(const fp_conv_problem *p, int isa) {
    if (p->n < 1 || p->oh < 1 || p->ow < 1) return FP_WINO_SET_4 | FP_WINO_SET_2;
    return choose_kernel(p, isa)->m == 4 ? FP_WINO_SET_4 : FP_WINO_SET_2;
}

/* The kernel of tile side m beside k (each ISA's kernels are one array: [0] F(4x4), [1] F(2x2)). */
static const fp_wino_kernel *with_tile(const fp_wino_kernel *k, int m) {
    return k->m == m ? k : k->m == 4 ? k + 1 : k - 1;
}

/* packed: the layer's U sets (winograd.h); a map whose tile size's set is not there runs the other one. */
static void make_plan(plan *P, const fp_conv_problem *p, int isa, const float *packed) {
    memset(P, 0, sizeof *P);
    P->p = p;
    P->uk = gemm_ukr(isa);
    P->wk = choose_kernel(p, isa);
    if (!fp_wino_u_set(packed, P->wk->m)) P->wk = with_tile(P->wk, P->wk->m == 4 ? 2 : 4);
    P->u = fp_wino_u_set(packed, P->wk->m);
    P->m = P->wk->m;
    P->n = P->m + 2;
    P->nn = P->n * P->n;
    P->pn = fp_wino_panels_for(p, P->uk);
    P->phases = p->dil_h * p->dil_w;
    P->images = p->n * P->phases;
    P->th = FP_CEIL_DIV(FP_CEIL_DIV(p->oh, p->dil_h), P->m); /* of a phase image (the largest phase's) */
    P->tw = FP_CEIL_DIV(FP_CEIL_DIV(p->ow, p->dil_w), P->m);
    P->ldv = FP_CEIL_DIV(p->cin, FP_WINO_CPAD) * FP_WINO_CPAD;
    const int64_t ldm_all = FP_CEIL_DIV(p->cout, FP_WINO_CPAD) * FP_WINO_CPAD;
    /* V + M of a block in half of L2 when that leaves U few tiles to work on; else as many tiles as keep
     * V + M within a share of L3 (up to 128): each U value loaded then serves 2 nt flops, and the V[k], M[k]
     * of the GEMM at work still sit in L2.  Measured at 1 thread (docs/winograd.md): 128 tiles against 32
     * took 256->256@64 from 310 to 460 and 512->512@32 from 400 to 560 effective GFLOP/s. */
    const int64_t per_tile = (int64_t)sizeof(float) * P->nn * (P->ldv + ldm_all);
    const int64_t l3_share = fp_cache_size(3) / (2 * (int64_t)fp_max_threads());
    int64_t target = FP_MAX(32, FP_MAX(fp_cache_size(2) / 2 / per_tile, FP_MIN(128, l3_share / per_tile)));
    /* Big channel counts on a small L3 (U of 512->512 is 38 MB, of 2048->512 151 MB): U, streamed from memory
     * once per block, then costs a tile more than its own V and M unless a block has U / (V + M of a tile)
     * tiles; up to 128 of them, even where V and M then leave L3. */
    const int64_t u_bytes = (int64_t)sizeof(float) * P->nn * p->cin * ldm_all;
    target = FP_MAX(target, FP_MIN(128, u_bytes / per_tile));
    if (P->tw >= target) {
        P->segs = FP_CEIL_DIV(P->tw, target);
        P->rpb = 1;
        P->bpi = P->th * P->segs;
        P->max_nt = FP_CEIL_DIV(P->tw, P->segs);
    } else {
        P->segs = 1;
        P->rpb = FP_MIN(P->th, FP_MAX(1, target / P->tw));
        P->bpi = FP_CEIL_DIV(P->th, P->rpb);
        P->rpb = FP_CEIL_DIV(P->th, P->bpi); /* the same blocks, as even as they go */
        P->max_nt = P->rpb * P->tw;
    }
    P->max_rows = FP_MIN(p->h, P->m * (P->max_nt / P->tw + 1) + 2);
    P->max_cols = FP_MIN(p->w, P->m * FP_MIN(P->max_nt, P->tw) + 2);
    /* Small maps of a batch (or the phase images of a dilated layer): blocks of several whole images, so that
     * U serves more tiles per pass (one image of 8 x 128->128@28 has 49 tiles of 4x4), while there are still
     * blocks for every thread; unless U outweighs the V + M of all the tiles: then the threads take slices
     * of the output channels of fewer blocks, each streaming its part of U rather than all of it (2 threads,
     * NHWC, wall medians of 41 alternating calls, loaded box, blocks / slices: 512->512@32 dilation 4
     * 31.7 / 28.0 ms, dilation 2 25.5 / 24.1, 256->256@32 dilation 2 8.1 / 6.5). */
    const int threads = fp_threads(p);
    const int u_bound = u_bytes > per_tile * P->images * P->th * P->tw;
    P->ipb = 1;
    if (P->bpi == 1 && P->images > 1) {
        const int64_t ipb = FP_MIN(FP_MAX(1, target / (P->th * P->tw)),
                                   u_bound ? P->images : FP_CEIL_DIV(P->images, threads));
        const int64_t groups = FP_CEIL_DIV(P->images, ipb);
        P->ipb = FP_CEIL_DIV(P->images, groups); /* the same groups, as even as they go */
        P->max_nt *= P->ipb;
    }
    /* Slices of the output channels (16-column units, evenly): enough jobs to keep every thread busy to the
     * end. */
    const int64_t blocks = FP_CEIL_DIV(P->images, P->ipb) * P->bpi;
    P->slices = 1;
    while (P->slices < P->pn.units) {
        const int64_t j = blocks * P->slices;
        if (j >= 4 * (int64_t)threads || (j >= threads && j % threads == 0)) break;
        P->slices++;
    }
    P->jobs = blocks * P->slices;
    P->ldm = 16 * FP_CEIL_DIV(P->pn.units, P->slices);
    P->ep = fp_ep_current(); /* on the calling thread; an epilogue rereads the stored tile: no streaming */
    P->stream = !P->ep && (int64_t)sizeof(float) * p->n * p->cout * p->oh * p->ow > fp_cache_size(2);
    P->kc = fp_gemm_blocking(P->uk, P->max_nt, p->cout, p->cin).kc;
}

/* Output channels [co0, co1) of M (column 0 = co0) for nt tiles: the panels they cross, or the part of a
 * panel that a slice boundary cuts (the micro-kernel reads nr columns from b, ldb apart). */
static void gemms(const plan *P, int64_t nt, int64_t co0, int64_t co1, const float *V, float *M) {
    const fp_conv_problem *p = P->p;
    const fp_sgemm_ukr *uk = P->uk;
    const int64_t K = p->cin, ks = fp_wino_u_stride(p, P->pn), MR = uk->mr;
    const float *U = P->u;
    const float *rows[16];
    fp_ukr_args u = {0};
    u.arows = rows;
    u.ldc = TILE_STRIDE(P->ldm);
    for (int k = 0; k < P->nn; k++) {
        const float *Vk = V + k * P->ldv;
        float *Mk = M + k * P->ldm;
        for (int64_t k0 = 0; k0 < K; k0 += P->kc) {
            u.kc = FP_MIN(P->kc, K - k0);
            u.first = k0 == 0;
            for (int64_t pp = 0; pp < P->pn.count; pp++) {
                const int64_t c0 = fp_wino_col(P->pn, pp), width = fp_wino_col(P->pn, pp + 1) - c0;
                const int64_t lo = FP_MAX(co0, c0), hi = FP_MIN(co1, c0 + width);
                if (lo >= hi) continue;
                u.b = U + k * ks + K * c0 + k0 * width + (lo - c0);
                u.ldb = width;
                u.nr = hi - lo;
                for (int64_t i0 = 0; i0 < nt; i0 += MR) {
                    u.mr = FP_MIN(MR, nt - i0);
                    for (int64_t i = 0; i < MR; i++) rows[i] = Vk + (i0 + FP_MIN(i, u.mr - 1)) * TILE_STRIDE(P->ldv) + k0;
                    u.c = Mk + i0 * TILE_STRIDE(P->ldm) + lo - co0;
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
    const int64_t bw = B.tx1 - B.tx0, per = (B.ty1 - B.ty0) * bw, nt = (B.n1 - B.n0) * per; /* per: tiles per image */
    const int64_t co0 = 16 * (slice * P->pn.units / P->slices), co1 = FP_MIN(K, 16 * ((slice + 1) * P->pn.units / P->slices));
    float *V = (float *)fp_scratch_or_fail(0, (int64_t)sizeof(float) * P->max_nt * TILE_STRIDE(ldv), &P->failed);
    float *M = (float *)fp_scratch_or_fail(1, (int64_t)sizeof(float) * P->max_nt * TILE_STRIDE(P->ldm), &P->failed);
    /* slot 2 (slot FP_SCRATCH_ONCE holds a one-shot call's packed weights): a zero row for the padding,
     * the NCHW output buffer O, then the NCHW input windows S (one per image of the block) */
    const int64_t s_floats = p->layout == 0 ? P->ipb * P->max_rows * P->max_cols * ldv : 0;
    float *zero = (float *)fp_scratch_or_fail(2, (int64_t)sizeof(float) * (ldv + 16 * P->m * P->ldm + s_floats),
                                              &P->failed);
    if (!V || !M || !zero) return;
    float *O = zero + ldv, *S = O + 16 * P->m * P->ldm;
    memset(zero, 0, sizeof(float) * (size_t)ldv);

    /* 1. input transform */
    const int64_t m = P->m, n = P->n;
    const int64_t iy0 = FP_MAX(0, B.ty0 * m - p->pad_top), iy1 = FP_MIN(H, B.ty1 * m + 2 - p->pad_top);
    const int64_t ix0 = FP_MAX(0, B.tx0 * m - p->pad_left), ix1 = FP_MIN(W, B.tx1 * m + 2 - p->pad_left);
    const int64_t win = (iy1 - iy0) * (ix1 - ix0) * ldv; /* floats of one image's window in S */
    if (p->layout == 0 && iy0 < iy1 && ix0 < ix1)
        for (int64_t img = B.n0; img < B.n1; img++)
            P->wk->stage(P->x + img * C * H * W, C, H, W, iy0, iy1, ix0, ix1, ldv, S + (img - B.n0) * win);
    const float *srcs[2][FP_WINO_NN_MAX];
    for (int64_t t = 0; t < nt; t++) {
        /* pointers of tile t + 1 in srcs[(t + 1) & 1] (the first tile's made before the loop) */
        for (int64_t u = t == 0 ? 0 : 1; u < 2; u++) {
            const int64_t tn = t + u, v = B.n0 + tn / per, r = tn % per; /* v: phase image */
            const int64_t img = v / P->phases, py = v % P->phases / p->dil_w, px = v % p->dil_w;
            const int64_t ny = B.ty0 + r / bw, nx = B.tx0 + r % bw;
            if (tn >= nt) break;
            for (int64_t i = 0; i < n; i++)
                for (int64_t q = 0; q < n; q++) {
                    const int64_t iy = py - p->pad_top + p->dil_h * (ny * m + i);
                    const int64_t ix = px - p->pad_left + p->dil_w * (nx * m + q);
                    const float *s = zero;
                    if (iy >= 0 && iy < H && ix >= 0 && ix < W)
                        s = p->layout == 0 ? S + (v - B.n0) * win + ((iy - iy0) * (ix1 - ix0) + (ix - ix0)) * ldv
                                           : P->x + ((img * H + iy) * W + ix) * C;
                    srcs[tn & 1][n * i + q] = s;
                }
        }
        P->wk->input(srcs[t & 1], t + 1 < nt ? srcs[(t + 1) & 1] : NULL, C, V + t * TILE_STRIDE(ldv), ldv);
    }

    /* 2. the n n GEMMs */
    gemms(P, nt, co0, co1, V, M);

    /* 3. output transform, bias, ReLU, store (NCHW: 16 / m tiles side by side through O, turned into rows) */
    const float *bias = P->bias ? P->bias + co0 : NULL;
    float *dst[16];
    int64_t t = 0;
    for (int64_t v = B.n0; v < B.n1; v++) {
        const int64_t img = v / P->phases, py = v % P->phases / p->dil_w, px = v % p->dil_w;
        for (int64_t ty = B.ty0; ty < B.ty1; ty++)
            for (int64_t tx = B.tx0; tx < B.tx1; tx += 16 / m) {
                const int64_t group = FP_MIN(16 / m, B.tx1 - tx);
                for (int64_t g = 0; g < group; g++, t++) {
                    for (int64_t a = 0; a < m; a++)
                        for (int64_t b = 0; b < m; b++) {
                            const int64_t oy = py + p->dil_h * (ty * m + a), ox = px + p->dil_w * ((tx + g) * m + b);
                            float *d = NULL;
                            if (p->layout == 0) d = O + (m * m * g + m * a + b) * P->ldm;
                            else if (oy < OH && ox < OW) d = P->y + ((img * OH + oy) * OW + ox) * K + co0;
                            dst[m * a + b] = d;
                        }
                    P->wk->output(M + t * TILE_STRIDE(P->ldm), t + 1 < nt ? M + (t + 1) * TILE_STRIDE(P->ldm) : NULL,
                                  P->ldm, co1 - co0, bias, p->relu, dst);
                    for (int64_t q = 0; P->ep && p->layout != 0 && q < m * m; q++)
                        if (dst[q]) fp_ep_tile(P->ep, dst[q], 1, co1 - co0, 0, co0, 0, 1);
                }
                if (p->layout == 0) {
                    float *yt = P->y + ((img * K + co0) * OH + ty * m) * OW + tx * m;
                    const int64_t rows = FP_MIN(m, OH - ty * m), cols = FP_MIN(m * group, OW - tx * m);
                    P->wk->store(O, P->ldm, co1 - co0, OH * OW, OW, rows, cols, m, P->stream, yt);
                    for (int64_t c = 0; P->ep && c < co1 - co0; c++)
                        fp_ep_tile(P->ep, yt + c * OH * OW, rows, cols, OW, co0 + c, 0, 0);
                }
            }
    }
    if (P->stream) fp_gemm_fence(); /* this thread's non-temporal stores, ordered before the call returns */
}

/* ------------------------------------------------------------------ the fp_algo entry */

const fp_wino_kernel *fp_wino_kernels_for(int isa) {
#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
    if (isa >= FP_ISA_AVX512) return fp_wino_kernels_avx512;
    if (isa >= FP_ISA_AVX2) return fp_wino_kernels_avx2;
#endif
    (void)isa;
    return fp_wino_kernels_scalar;
}

/* Only when asked for: the results differ from the direct kernel's by rounding (docs/winograd.md).
 * float64 problems asking for Winograd run the direct kernel.  Dilation only in NHWC (phase images: the
 * NCHW stage and store copy unit-stride windows). */
static int applies(const fp_conv_problem *p, int isa, int f64) {
    (void)isa;
    const int dilated = p->dil_h != 1 || p->dil_w != 1;
    return !f64 && p->algorithm == FP_ALGO_WINOGRAD && p->kh == 3 && p->kw == 3 && p->stride_h == 1 &&
           p->stride_w == 1 && p->dil_h >= 1 && p->dil_w >= 1 && (!dilated || p->layout == 1) &&
           p->groups == 1 && p->cin >= 1 && p->cout >= 1;
}

static const char *kernel_name(const fp_conv_problem *p, int isa, int f64) {
    (void)f64;
    return choose_kernel(p, isa)->k.name; /* F(4x4) while the map is unknown (choose_kernel) */
}

static int64_t packed_bytes(const fp_conv_problem *p, int isa, int f64) {
    (void)f64;
    return (int64_t)sizeof(float) * fp_wino_packed_floats(p, gemm_ukr(isa), sets_for(p, isa));
}

static int pack(const fp_conv_problem *p, int isa, int f64, const void *w, void *dst) {
    (void)f64;
    fp_wino_pack(p, gemm_ukr(isa), sets_for(p, isa), (const float *)w, (float *)dst);
    return FP_OK;
}

static int run(const fp_conv_problem *p, int isa, int f64, const void *x, const void *packed, const void *bias,
               void *y) {
    (void)f64;
    if (p->n == 0 || p->oh < 1 || p->ow < 1) return FP_OK;
    if (p->pad_top < 0 || p->pad_left < 0) return FP_ERR_ARGS;
    plan P;
    make_plan(&P, p, isa, (const float *)packed);
    P.x = (const float *)x;
    P.bias = (const float *)bias;
    P.y = (float *)y;
    const int threads = (int)FP_MIN((int64_t)fp_threads(p), P.jobs);
    fp_pool_run(threads, P.jobs, job, &P);
    return P.failed ? FP_ERR_ALLOC : FP_OK;
}

const fp_algo fp_algo_winograd = {"winograd", applies, kernel_name, packed_bytes, pack, run, "winograd"};
