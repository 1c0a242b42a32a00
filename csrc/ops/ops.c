/* Drivers of the network ops (ops.h): argument-free of Python, each splits its jobs over the one pool
 * (csrc/pool.c) and runs the loops of the ISA fp_isa() names.  NCHW global average pooling, a reduction
 * along a plane that the compiler cannot vectorise without reassociating, is here once, with float64
 * partial sums; NHWC's runs along the channels (ops_impl.h's gap_nhwc, per ISA). */

#include "../epilogue/epilogue.h"
#include "../internal.h"
#include "ops.h"

static const fp_ops_isa *pick(void) {
#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
    const int isa = fp_isa();
    if (isa >= FP_ISA_AVX512) return &fp_ops_avx512;
    if (isa >= FP_ISA_AVX2) return &fp_ops_avx2;
#endif
    return &fp_ops_scalar;
}

const char *fp_op_isa_name(void) { return pick()->name; }

static int clamp_threads(int threads, int64_t jobs) {
    int T = threads > 0 ? threads : 1;
    if (T > fp_max_threads()) T = fp_max_threads();
    if (jobs < T) T = jobs > 0 ? (int)jobs : 1;
    return T;
}

/* Split `jobs` over up to `threads` threads of the pool, flush-to-zero on the caller as on the helpers;
 * *nchunks (read by fn through ctx) is set first. */
static void run_jobs(int threads, int64_t jobs, int64_t *nchunks, fp_task_fn fn, void *ctx) {
    const int T = clamp_threads(threads, jobs);
    *nchunks = fp_chunk_count(jobs, T);
    fp_flush_enter();
    fp_pool_run(T, *nchunks, fn, ctx);
    fp_flush_leave();
}

typedef struct image_task {
    const fp_ops_isa *k;
    const float *x;
    const int64_t *xs, *ys, *dims, *geom, *iy, *ix;
    const float *div, *ly, *lx;
    float *y;
    int kind, failed, nchw; /* nchw: jobs are (n, c, oy) rows of one plane, else (n, oy) rows of pixels */
    int c2p;                /* resize: linear from NHWC pixels into NCHW planes, (n, oy) jobs (resize_row_c2p) */
    int stream;             /* c2p: non-temporal stores (an output larger than L2, see fp_op_resize2d_f32) */
    int rows_nhwc;          /* resize: linear NHWC into NHWC with blended source rows kept (resize_row_nhwc) */
    int64_t jobs, nchunks;
} image_task;

/* NCHW unless the channels are the contiguous axis of both x and y (NHWC). */
static int is_nchw(const int64_t *xs, const int64_t *ys) { return !(xs[1] == 1 && ys[1] == 1); }

static void pool_chunk(void *arg, int64_t chunk, int worker) {
    (void)worker;
    image_task *t = (image_task *)arg;
    int64_t lo, hi;
    fp_chunk_range(t->jobs, t->nchunks, chunk, &lo, &hi);
    const int64_t C = t->dims[1], OH = t->dims[4], OW = t->dims[5];
    /* the rows' accumulator: this thread's scratch, kept across calls (no malloc per chunk) */
    float *acc = (float *)fp_scratch_or_fail(0, (int64_t)FP_MAX(C, OW) * (int64_t)sizeof(float), &t->failed);
    if (!acc) return;
    for (int64_t j = lo; j < hi; j++) {
        const int64_t oy = j % OH, nc = j / OH; /* NCHW: nc = n * C + c; NHWC: nc = n */
        const int64_t n = t->nchw ? nc / C : nc, c0 = t->nchw ? nc % C : 0, c1 = t->nchw ? c0 + 1 : C;
        t->k->pool_row(t->x, t->xs, t->y, t->ys, t->dims, t->geom, t->kind, t->div ? t->div + oy * OW : NULL, c0, c1,
                       n, oy, acc);
    }
}

int fp_op_pool2d_f32(const float *x, const int64_t *xs, float *y, const int64_t *ys, const int64_t *dims,
                     const int64_t *geom, int kind, const float *divisors, int threads) {
    if ((kind != 0 && kind != 1) || (kind == 1 && !divisors)) return FP_ERR_ARGS;
    const int nchw = is_nchw(xs, ys);
    image_task t = {pick(), x, xs, ys, dims, geom, NULL, NULL, kind == 1 ? divisors : NULL, NULL, NULL, y, kind, 0,
                    nchw, 0, 0, 0, dims[0] * (nchw ? dims[1] : 1) * dims[4], 0};
    if (t.jobs <= 0 || dims[1] <= 0 || dims[5] <= 0) return FP_OK;
    run_jobs(threads, t.jobs, &t.nchunks, pool_chunk, &t);
    return t.failed ? FP_ERR_ALLOC : FP_OK;
}

static void resize_chunk(void *arg, int64_t chunk, int worker) {
    (void)worker;
    image_task *t = (image_task *)arg;
    int64_t lo, hi;
    fp_chunk_range(t->jobs, t->nchunks, chunk, &lo, &hi);
    const int64_t C = t->dims[1], OH = t->dims[4], OW = t->dims[5];
    float *scratch = NULL;
    if (t->c2p || t->rows_nhwc) { /* two source rows blended along W ([C][OW] each for c2p, [OW][C] for NHWC)
                                   * and their two int64 tags, none valid yet */
        scratch = (float *)fp_scratch_or_fail(0, 2 * C * OW * (int64_t)sizeof(float) + 2 * (int64_t)sizeof(int64_t),
                                              &t->failed);
        if (!scratch) return;
        int64_t *tags = (int64_t *)(scratch + 2 * C * OW);
        tags[0] = tags[1] = -1;
        for (int64_t j = lo; j < hi; j++) {
            if (t->c2p)
                t->k->resize_row_c2p(t->x, t->xs, t->y, t->ys, t->dims, t->iy, t->ly, t->ix, t->lx, j / OH, j % OH,
                                     scratch, t->stream);
            else
                t->k->resize_row_nhwc(t->x, t->xs, t->y, t->ys, t->dims, t->iy, t->ly, t->ix, t->lx, j / OH, j % OH,
                                      scratch);
        }
#if defined(__x86_64__) || defined(__i386__)
        if (t->stream) __builtin_ia32_sfence(); /* the streamed lines visible before the chunk counts as done */
#endif
        return;
    }
    if (t->lx) { /* two blended rows (or pixels) and their four int64 tags, none valid yet (thread scratch) */
        scratch = (float *)fp_scratch_or_fail(0, 2 * (C + OW) * (int64_t)sizeof(float) + 4 * (int64_t)sizeof(int64_t),
                                              &t->failed);
        if (!scratch) return;
        int64_t *tags = (int64_t *)(scratch + 2 * (C + OW));
        for (int i = 0; i < 4; i++) tags[i] = -1;
    }
    for (int64_t j = lo; j < hi; j++) {
        const int64_t oy = j % OH, nc = j / OH;
        const int64_t n = t->nchw ? nc / C : nc, c0 = t->nchw ? nc % C : 0, c1 = t->nchw ? c0 + 1 : C;
        t->k->resize_row(t->x, t->xs, t->y, t->ys, t->dims, t->iy, t->ly, t->ix, t->lx, c0, c1, n, oy, scratch);
    }
}

int fp_op_resize2d_f32(const float *x, const int64_t *xs, float *y, const int64_t *ys, const int64_t *dims,
                       const int64_t *iy, const float *ly, const int64_t *ix, const float *lx, int threads) {
    if ((ly == NULL) != (lx == NULL)) return FP_ERR_ARGS;
    /* channels-last pixels into planes (more than one channel, so the strides say which is which) */
    const int c2p = ly && dims[1] > 1 && xs[1] == 1 && ys[1] != 1 && ys[3] == 1;
    const int nchw = is_nchw(xs, ys) && !c2p;
    /* c2p's output is a graph output or the input of a later op, larger than L2 in the networks it
     * serves (lraspp: 5.5 MB): streamed past the cache, no line is read for ownership before it is
     * written (the rule, total output > L2, is gemm_driver.c's; docs/ops.md has the measurement). */
    const int stream = c2p && (int64_t)sizeof(float) * dims[0] * dims[1] * dims[4] * dims[5] > fp_cache_size(2);
    /* NHWC into NHWC: the blended source rows kept per thread while they fit in a quarter of L2 (an
     * upsampling's output rows share them: lraspp's 128-channel 16x16 -> 32x32, 32 KiB of rows) */
    const int rows_nhwc = ly && !nchw && !c2p && ys[3] == dims[1] &&
                          2 * (int64_t)sizeof(float) * dims[1] * dims[5] <= fp_cache_size(2) / 4;
    image_task t = {pick(), x, xs, ys, dims, NULL, iy, ix, NULL, ly, lx, y, 0, 0, nchw, c2p, stream, rows_nhwc,
                    dims[0] * (nchw ? dims[1] : 1) * dims[4], 0};
    if (t.jobs <= 0 || dims[1] <= 0 || dims[5] <= 0) return FP_OK;
    run_jobs(threads, t.jobs, &t.nchunks, resize_chunk, &t);
    return t.failed ? FP_ERR_ALLOC : FP_OK;
}

/* Global average pooling: y[n, c] = mean of x[n, c, :, :] (x contiguous NCHW: planes; NHWC: pixels). */
typedef struct gap_task {
    const fp_ops_isa *k;
    const float *x;
    float *y;
    int64_t N, C, HW, nchunks;
    int nhwc, failed;
    int64_t splits; /* NHWC: channel runs per image (see gap_chunk) */
} gap_task;

static void gap_chunk(void *arg, int64_t chunk, int worker) {
    (void)worker;
    gap_task *t = (gap_task *)arg;
    const int64_t C = t->C, HW = t->HW;
    int64_t lo, hi;
    if (!t->nhwc) { /* one job per plane, 4 float64 partial sums */
        fp_chunk_range(t->N * C, t->nchunks, chunk, &lo, &hi);
        for (int64_t j = lo; j < hi; j++) {
            const float *p = t->x + j * HW;
            double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            int64_t i = 0;
            for (; i + 4 <= HW; i += 4) {
                s0 += p[i];
                s1 += p[i + 1];
                s2 += p[i + 2];
                s3 += p[i + 3];
            }
            for (; i < HW; i++) s0 += p[i];
            t->y[j] = (float)(((s0 + s1) + (s2 + s3)) / (double)HW);
        }
        return;
    }
    /* NHWC: a job is one image's channels [c0, c1), float64 sums per channel, pixels in order; an image
     * is cut into `splits` runs of whole vectors only when there are fewer images than threads (an SE
     * block's one image ran on one thread at 2; on one thread, 64-channel runs measured 25 % slower) */
    const int64_t S = t->splits, run = FP_CEIL_DIV(FP_CEIL_DIV(C, S), 16) * 16;
    fp_chunk_range(t->N * S, t->nchunks, chunk, &lo, &hi);
    double *acc = (double *)fp_scratch_or_fail(0, FP_MIN(C, run) * (int64_t)sizeof(double), &t->failed);
    if (!acc) return;
    for (int64_t j = lo; j < hi; j++) {
        const int64_t n = j / S, c0 = FP_MIN(C, (j % S) * run), nc = FP_MIN(run, C - c0);
        if (nc > 0) t->k->gap_nhwc(t->x + n * HW * C, t->y + n * C, C, HW, c0, nc, acc);
    }
}

int fp_op_gap_f32(const float *x, float *y, int64_t n, int64_t c, int64_t hw, int nhwc, int threads) {
    if (n <= 0 || c <= 0) return FP_OK;
    if (hw <= 0) return FP_ERR_ARGS;
    const int T = clamp_threads(threads, n * c);
    const int64_t splits = nhwc && n < T ? FP_MIN(FP_CEIL_DIV(T, n), FP_CEIL_DIV(c, 16)) : 1;
    const int64_t jobs = nhwc ? n * splits : n * c;
    gap_task t = {pick(), x, y, n, c, hw, 0, nhwc, 0, splits};
    run_jobs(threads, jobs, &t.nchunks, gap_chunk, &t);
    return t.failed ? FP_ERR_ALLOC : FP_OK;
}

/* Elementwise y = act(a op b) (ops_impl.h's eltwise): jobs are blocks of rows; a flat operation (b of a's
 * shape, a scalar or none) is cut into rows of FLAT_ROW elements first. */
#define FLAT_ROW 4096
typedef struct elt_task {
    const fp_ops_isa *k;
    const float *a, *b;
    float *y;
    int64_t rows, mid, inner, total, nchunks;
    int bmode, op, act;
    float alpha, beta;
} elt_task;

static void elt_chunk(void *arg, int64_t chunk, int worker) {
    (void)worker;
    const elt_task *t = (const elt_task *)arg;
    int64_t lo, hi;
    fp_chunk_range(t->rows, t->nchunks, chunk, &lo, &hi);
    if (t->total < 0) {
        t->k->eltwise(t->a, t->b, t->y, t->mid, t->inner, t->bmode, t->op, t->act, t->alpha, t->beta, lo, hi);
        return;
    }
    for (int64_t r = lo; r < hi; r++) { /* flat: row r is elements [r * FLAT_ROW, ...) */
        const int64_t off = r * FLAT_ROW, len = FP_MIN(FLAT_ROW, t->total - off);
        const float *b = t->bmode == 1 ? t->b + off : t->b;
        t->k->eltwise(t->a + off, b, t->y + off, 1, len, t->bmode, t->op, t->act, t->alpha, t->beta, 0, 1);
    }
}

int fp_op_eltwise_f32(const float *a, const float *b, float *y, int64_t outer, int64_t mid, int64_t inner,
                      int bmode, int op, int act, float alpha, float beta, int threads) {
    if (bmode < 0 || bmode > 4 || op < 0 || op > 4 || act < 0 || act > 5 || (bmode && !b)) return FP_ERR_ARGS;
    if (outer <= 0 || mid <= 0 || inner <= 0) return FP_OK;
    elt_task t = {pick(), a, b, y, outer * mid, mid, inner, -1, 0, bmode, op, act, alpha, beta};
    if (bmode != 2 && bmode != 3) { /* no per-channel operand: flat */
        t.total = outer * mid * inner;
        t.rows = FP_CEIL_DIV(t.total, FLAT_ROW);
    }
    run_jobs(threads, t.rows, &t.nchunks, elt_chunk, &t);
    return FP_OK;
}

/* y[n, j, i] = x[n, i, j] for x of shape (n, a, b): NCHW -> NHWC with (a, b) = (C, H * W), NHWC -> NCHW
 * with (H * W, C).  Jobs are blocks of TR_J columns j of one image; a block walks the rows i in tiles of
 * TR_I (TR_I rows of TR_J floats read, TR_J rows of TR_I floats written: both stay in L1). */
#define TR_I 16
#define TR_J 64
typedef struct tr_task {
    const fp_ops_isa *k;
    const float *x;
    float *y;
    int64_t a, b, jblocks, jobs, nchunks;
} tr_task;

static void tr_chunk(void *arg, int64_t chunk, int worker) {
    (void)worker;
    const tr_task *t = (const tr_task *)arg;
    int64_t lo, hi;
    fp_chunk_range(t->jobs, t->nchunks, chunk, &lo, &hi);
    for (int64_t job = lo; job < hi; job++) {
        const int64_t n = job / t->jblocks, j0 = (job % t->jblocks) * TR_J, j1 = FP_MIN(j0 + TR_J, t->b);
        const float *x = t->x + n * t->a * t->b;
        float *y = t->y + n * t->a * t->b;
        for (int64_t i0 = 0; i0 < t->a; i0 += TR_I)
            t->k->transpose_tile(x, y, t->a, t->b, i0, FP_MIN(i0 + TR_I, t->a), j0, j1);
    }
}

int fp_op_transpose_f32(const float *x, float *y, int64_t n, int64_t a, int64_t b, int threads) {
    if (n <= 0 || a <= 0 || b <= 0) return FP_OK;
    tr_task t = {pick(), x, y, a, b, FP_CEIL_DIV(b, TR_J), 0, 0};
    t.jobs = n * t.jblocks;
    run_jobs(threads, t.jobs, &t.nchunks, tr_chunk, &t);
    return FP_OK;
}

/* The stem convolution: one job per output row (n, oy), the rows' loop in stem__avx512.c. */
typedef struct stem_task {
    const fp_stem_geom *g;
    const float *x, *wp, *bias;
    float *y;
    const fp_ep *ep;
    int relu, failed;
    int64_t jobs, nchunks;
} stem_task;

static void stem_chunk(void *arg, int64_t chunk, int worker) {
    (void)worker;
    stem_task *t = (stem_task *)arg;
    int64_t lo, hi;
    fp_chunk_range(t->jobs, t->nchunks, chunk, &lo, &hi);
    float *buf = (float *)fp_scratch_or_fail(0, 8 * 32 * (int64_t)sizeof(float), &t->failed);
    if (!buf) return;
#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
    for (int64_t j = lo; j < hi; j++)
        fp_stem_row_avx512(t->x, t->g, t->wp, t->bias, t->y, t->ep, t->relu, j / t->g->oh, j % t->g->oh, buf);
#endif
}

int fp_op_conv_stem_f32(const float *x, const int64_t *dims, const int64_t *geom, const float *wp, const float *bias,
                        int64_t oc, float *y, const fp_epilogue *e, int relu, int threads) {
#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
    const int avx512 = fp_isa() >= FP_ISA_AVX512;
#else
    const int avx512 = 0;
#endif
    if (!avx512 || oc < 1 || oc > 32 || dims[1] < 1 || geom[0] < 1 || geom[1] < 1 || geom[2] < 1 || geom[3] < 1 ||
        geom[4] < 1 || geom[5] < 1 || (e && e->residual))
        return FP_ERR_ARGS;
    const fp_stem_geom g = {dims[0], dims[1], dims[2], dims[3], dims[4], dims[5], oc,
                            geom[0], geom[1], geom[2], geom[3], geom[4], geom[5], geom[6], geom[7]};
    if (g.n <= 0 || g.oh <= 0 || g.ow <= 0) return FP_OK;
    fp_ep ep;
    const int has_ep = fp_ep_resolve(e, 0, fp_isa(), y, &relu, &ep);
    stem_task t = {&g, x, wp, bias, y, has_ep ? &ep : NULL, relu, 0, g.n * g.oh, 0};
    run_jobs(threads, t.jobs, &t.nchunks, stem_chunk, &t);
    return t.failed ? FP_ERR_ALLOC : FP_OK;
}
