/* Depthwise convolution in plain C, instantiated by dwconv_f32_c.c (portable) and
 * dwconv_f32_avx2.c (the same loops compiled for AVX2+FMA).  DW_FN(name) names the functions.
 *
 * NCHW (planes narrower than 32 columns; wider ones go to the generic loops, see dwconv.c): 16
 * planes, a band of rows at a time, are transposed into a per-thread [row][W][16] tile; blocks of
 * DW_PX adjacent output pixels x 16 channels (each tap's 16 weights loaded once for the DW_PX
 * pixels, the compiler vectorizing along the channels) fill an output tile, transposed back.
 * On a 7x7 or 14x14 plane this keeps the vectors full, where a row-vectorized loop runs 7 or 14
 * lanes.  NHWC: one pixel at a time, all channels in the inner loops. */

#define DW_PX 4

/* Geometry of the data the blocks read and write: C and YC are the input and output pixel strides
 * (cin and cout for NHWC, 16 for a tile); input rows [iy0, H) are stored, row iy0 first. */
typedef struct DW_FN(geo) {
    const fp_conv_problem *p;
    int64_t C, YC, cpad, W, H, iy0;
} DW_FN(geo);

/* npx (<= DW_PX) output pixels from column ox, NC channels of one output row.  xn: input image at
 * the block's first channel; w: packed weights [tap][cpad] at that channel; b: 16 bias values.
 * M1: input channel = output channel (else output channel cb + c reads input (cb + c) / m, with
 * xn at input channel 0 and cb given). */
static inline __attribute__((always_inline)) void DW_FN(block)(const DW_FN(geo) *g, const float *xn, const float *w,
                                                             const float *b, int64_t iyb, int64_t ky0, int64_t ky1,
                                                             int64_t ox, int npx_rt, float *yp, const int NC,
                                                             int64_t nc, const int M1, int64_t m, int64_t cb,
                                                             const int INNER) {
    const fp_conv_problem *p = g->p;
    const int64_t n = NC ? NC : nc, C = g->C, W = g->W;
    const int npx = INNER ? DW_PX : npx_rt; /* INNER: DW_PX pixels, every tap inside the row */
    float acc[DW_PX][16];
    for (int q = 0; q < DW_PX; q++)
        for (int64_t c = 0; c < 16; c++) acc[q][c] = b[c];
    for (int64_t ky = ky0; ky < ky1; ky++) {
        const float *xr = xn + (iyb + ky * p->dil_h - g->iy0) * W * C;
        for (int64_t kx = 0; kx < p->kw; kx++) {
            const float *wt = w + (ky * p->kw + kx) * g->cpad;
            for (int q = 0; q < npx; q++) {
                const int64_t ix = (ox + q) * p->stride_w - p->pad_left + kx * p->dil_w;
                if (!INNER && (uint64_t)ix >= (uint64_t)W) continue;
                const float *xp = xr + ix * C;
                if (M1)
                    for (int64_t c = 0; c < n; c++) acc[q][c] += wt[c] * xp[c];
                else
                    for (int64_t c = 0; c < n; c++) acc[q][c] += wt[c] * xp[(cb + c) / m];
            }
        }
    }
    for (int q = 0; q < npx; q++)
        for (int64_t c = 0; c < n; c++) {
            const float v = acc[q][c];
            yp[q * g->YC + c] = p->relu && v < 0 ? 0.0f : v;
        }
}

/* One output row of channels [0, nch) of the data g describes (NHWC: all of cout). */
static void DW_FN(row)(const DW_FN(geo) *g, const float *xn, const float *w, const float *bias, int64_t oy,
                       int64_t nch, int64_t m, float *yrow) {
    const fp_conv_problem *p = g->p;
    const int64_t iyb = oy * p->stride_h - p->pad_top;
    int64_t ky0, ky1;
    fp_tap_range(iyb, p->kh, p->dil_h, g->H, &ky0, &ky1);
    if (ky1 < ky0) ky1 = ky0;
    for (int64_t ox = 0; ox < p->ow; ox += DW_PX) {
        const int npx = (int)FP_MIN(DW_PX, p->ow - ox);
        const int64_t c0 = ox * p->stride_w - p->pad_left;
        const int inner = npx == DW_PX && c0 >= 0 && c0 + (DW_PX - 1) * p->stride_w + (p->kw - 1) * p->dil_w < g->W;
        for (int64_t cb = 0; cb < nch; cb += 16) {
            const int64_t nc = FP_MIN(16, nch - cb);
            float b[16];
            for (int64_t c = 0; c < 16; c++) b[c] = bias && c < nc ? bias[cb + c] : 0.0f;
            float *yp = yrow + ox * g->YC + cb;
            const float *wc = w + cb;
            if (m != 1)
                DW_FN(block)(g, xn, wc, b, iyb, ky0, ky1, ox, npx, yp, 0, nc, 0, m, cb, 0);
            else if (nc == 16 && inner)
                DW_FN(block)(g, xn + cb, wc, b, iyb, ky0, ky1, ox, npx, yp, 16, 16, 1, 1, cb, 1);
            else if (nc == 16)
                DW_FN(block)(g, xn + cb, wc, b, iyb, ky0, ky1, ox, npx, yp, 16, 16, 1, 1, cb, 0);
            else
                DW_FN(block)(g, xn + cb, wc, b, iyb, ky0, ky1, ox, npx, yp, 0, nc, 1, 1, cb, 0);
        }
    }
}

/* Shared state of one call; a chunk is a run of consecutive jobs. */
typedef struct DW_FN(task) {
    const fp_conv_problem *p;
    const float *x, *w, *bias;
    float *y;
    int64_t jobs, nchunks;
    int failed;
} DW_FN(task);

/* NHWC: one output pixel at a time, all channels in the inner loops (long contiguous loops that
 * the compiler vectorizes; measured faster than the 16-channel blocks here), accumulators in the
 * thread's scratch row. */
static void DW_FN(nhwc_chunk)(void *ctx, int64_t chunk, int worker) {
    DW_FN(task) *t = (DW_FN(task) *)ctx;
    (void)worker;
    const fp_conv_problem *p = t->p;
    const float *x = t->x, *w = t->w, *bias = t->bias;
    float *y = t->y, *acc = (float *)fp_scratch_or_fail(0, (int64_t)sizeof(float) * p->cout, &t->failed);
    if (!acc) return;
    const int64_t m = p->cout / p->cin, C = p->cout, cpad = fp_dw_cpad(p);
    int64_t job_lo, job_hi;
    fp_chunk_range(t->jobs, t->nchunks, chunk, &job_lo, &job_hi);
    for (int64_t job = job_lo; job < job_hi; job++) {
        const int64_t n = job / p->oh, oy = job % p->oh;
        const int64_t iyb = oy * p->stride_h - p->pad_top;
        int64_t ky0, ky1;
        fp_tap_range(iyb, p->kh, p->dil_h, p->h, &ky0, &ky1);
        for (int64_t ox = 0; ox < p->ow; ox++) {
            for (int64_t c = 0; c < C; c++) acc[c] = bias ? bias[c] : 0.0f;
            for (int64_t ky = ky0; ky < ky1; ky++) {
                const float *xr = x + (n * p->h + iyb + ky * p->dil_h) * p->w * p->cin;
                for (int64_t kx = 0; kx < p->kw; kx++) {
                    const int64_t ix = ox * p->stride_w - p->pad_left + kx * p->dil_w;
                    if ((uint64_t)ix >= (uint64_t)p->w) continue;
                    const float *xp = xr + ix * p->cin;
                    const float *wt = w + (ky * p->kw + kx) * cpad;
                    if (m == 1)
                        for (int64_t c = 0; c < C; c++) acc[c] += wt[c] * xp[c];
                    else
                        for (int64_t c = 0; c < C; c++) acc[c] += wt[c] * xp[c / m];
                }
            }
            float *yp = y + ((n * p->oh + oy) * p->ow + ox) * C;
            for (int64_t c = 0; c < C; c++) yp[c] = p->relu && acc[c] < 0 ? 0.0f : acc[c];
        }
    }
}

static int DW_FN(nhwc)(const fp_conv_problem *p, const float *x, const float *w, const float *bias, float *y) {
    const int T = fp_threads(p);
    DW_FN(task) t = {p, x, w, bias, y, p->n * p->oh, fp_chunk_count(p->n * p->oh, T), 0};
    fp_pool_run(T, t.nchunks, DW_FN(nhwc_chunk), &t);
    return t.failed ? FP_ERR_ALLOC : FP_OK;
}

/* NCHW: a job is 16 output channels x a band of output rows, run on a transposed tile. */
typedef struct DW_FN(tile_task) {
    const fp_conv_problem *p;
    const float *x, *w, *bias;
    float *y;
    fp_dw_bands b;
    int64_t nchunks;
    int failed;
} DW_FN(tile_task);

static void DW_FN(nchw_chunk)(void *ctx, int64_t chunk, int worker) {
    DW_FN(tile_task) *t = (DW_FN(tile_task) *)ctx;
    (void)worker;
    const fp_conv_problem *p = t->p;
    const int64_t W = p->w, OW = p->ow, OH = p->oh, C = p->cout, m = p->cout / p->cin;
    const int64_t tbytes = (int64_t)sizeof(float) * 16 * (t->b.tile_rows * W + t->b.brows * OW);
    float *tile = (float *)fp_scratch_or_fail(0, tbytes, &t->failed);
    if (!tile) return;
    float *otile = tile + t->b.tile_rows * W * 16;
    int64_t job_lo, job_hi;
    fp_chunk_range(t->b.jobs, t->nchunks, chunk, &job_lo, &job_hi);
    for (int64_t job = job_lo; job < job_hi; job++) {
        const fp_dw_job jb = fp_dw_job_at(p, &t->b, job);
        for (int64_t l = 0; l < 16; l++) {
            const float *xp = l < jb.nch ? t->x + (jb.n * p->cin + (jb.cb + l) / m) * p->h * W : NULL;
            for (int64_t i = 0; i < (jb.iy_hi - jb.iy_lo) * W; i++) tile[i * 16 + l] = xp ? xp[jb.iy_lo * W + i] : 0.0f;
        }
        const DW_FN(geo) g = {p, 16, 16, fp_dw_cpad(p), W, jb.iy_hi, jb.iy_lo};
        float b[16];
        for (int64_t l = 0; l < 16; l++) b[l] = t->bias && l < jb.nch ? t->bias[jb.cb + l] : 0.0f;
        for (int64_t oy = jb.oy0; oy < jb.oy1; oy++)
            DW_FN(row)(&g, tile, t->w + jb.cb, b, oy, 16, 1, otile + (oy - jb.oy0) * OW * 16);
        for (int64_t l = 0; l < jb.nch; l++) {
            float *yp = t->y + ((jb.n * C + jb.cb + l) * OH + jb.oy0) * OW;
            for (int64_t i = 0; i < (jb.oy1 - jb.oy0) * OW; i++) yp[i] = otile[i * 16 + l];
        }
    }
}

static int DW_FN(nchw)(const fp_conv_problem *p, const float *x, const float *w, const float *bias, float *y) {
    const int T = fp_threads(p);
    DW_FN(tile_task) t = {p, x, w, bias, y, fp_dw_plan(p, T), 0, 0};
    t.nchunks = fp_chunk_count(t.b.jobs, T);
    fp_pool_run(T, t.nchunks, DW_FN(nchw_chunk), &t);
    return t.failed ? FP_ERR_ALLOC : FP_OK;
}
