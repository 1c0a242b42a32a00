/* Depthwise convolution in plain C, instantiated by dwconv_f32_c.c (portable) and
 * dwconv_f32_avx2.c (the same loops compiled for AVX2+FMA).  DW_FN(name) names the functions.
 *
 * NCHW: one output row at a time, vectorized along the row: per tap, the range of output columns
 * whose input column is inside the image is computed once, so the inner loop has no branch.
 * NHWC: one output pixel at a time, vectorized along channels. */

static inline void DW_FN(cols)(int64_t off, int64_t sw, int64_t w, int64_t ow, int64_t *lo, int64_t *hi) {
    int64_t l = off < 0 ? FP_CEIL_DIV(-off, sw) : 0;
    int64_t last = w - 1 - off;
    int64_t h = last < 0 ? 0 : FP_MIN(ow, last / sw + 1);
    *lo = FP_MIN(l, ow);
    *hi = h < *lo ? *lo : h;
}

/* Shared state of one call; a chunk is a run of consecutive jobs (planes or rows). */
typedef struct DW_FN(task) {
    const fp_conv_problem *p;
    const float *x, *w, *bias;
    float *y;
    int64_t jobs, nchunks;
    int64_t acc_bytes; /* the running thread's accumulator row: fp_scratch slot 0 */
    int failed;
} DW_FN(task);

static int DW_FN(launch)(const fp_conv_problem *p, const float *x, const float *w, const float *bias, float *y,
                         int64_t jobs, int64_t acc_floats, fp_task_fn fn) {
    const int T = fp_threads(p);
    DW_FN(task) t = {p, x, w, bias, y, jobs, fp_chunk_count(jobs, T), (int64_t)sizeof(float) * acc_floats, 0};
    fp_pool_run(T, t.nchunks, fn, &t);
    return t.failed ? FP_ERR_ALLOC : FP_OK;
}

static void DW_FN(nchw_chunk)(void *ctx, int64_t chunk, int worker) {
    DW_FN(task) *t = (DW_FN(task) *)ctx;
    (void)worker;
    const fp_conv_problem *p = t->p;
    const float *x = t->x, *w = t->w, *bias = t->bias;
    float *y = t->y, *acc = (float *)fp_scratch_or_fail(0, t->acc_bytes, &t->failed);
    if (!acc) return;
    const int64_t m = p->cout / p->cin, T = p->kh * p->kw;
    int64_t job_lo, job_hi;
    fp_chunk_range(t->jobs, t->nchunks, chunk, &job_lo, &job_hi);
    {
        for (int64_t job = job_lo; job < job_hi; job++) {
            const int64_t n = job / p->cout, co = job % p->cout;
            const float *xc = x + (n * p->cin + co / m) * p->h * p->w;
            const float *wc = w + co * T;
            const float b = bias ? bias[co] : 0.0f;
            float *yc = y + job * p->oh * p->ow;
            for (int64_t oy = 0; oy < p->oh; oy++) {
                for (int64_t ox = 0; ox < p->ow; ox++) acc[ox] = b;
                for (int64_t ky = 0; ky < p->kh; ky++) {
                    const int64_t iy = oy * p->stride_h - p->pad_top + ky * p->dil_h;
                    if (iy < 0 || iy >= p->h) continue;
                    const float *xr = xc + iy * p->w;
                    for (int64_t kx = 0; kx < p->kw; kx++) {
                        const float wv = wc[ky * p->kw + kx];
                        const int64_t off = kx * p->dil_w - p->pad_left;
                        int64_t lo, hi;
                        DW_FN(cols)(off, p->stride_w, p->w, p->ow, &lo, &hi);
                        if (p->stride_w == 1)
                            for (int64_t ox = lo; ox < hi; ox++) acc[ox] += wv * xr[ox + off];
                        else
                            for (int64_t ox = lo; ox < hi; ox++) acc[ox] += wv * xr[ox * p->stride_w + off];
                    }
                }
                float *yr = yc + oy * p->ow;
                if (p->relu)
                    for (int64_t ox = 0; ox < p->ow; ox++) yr[ox] = acc[ox] < 0 ? 0.0f : acc[ox];
                else
                    for (int64_t ox = 0; ox < p->ow; ox++) yr[ox] = acc[ox];
            }
        }
    }
}

static int DW_FN(nchw)(const fp_conv_problem *p, const float *x, const float *w, const float *bias, float *y) {
    return DW_FN(launch)(p, x, w, bias, y, p->n * p->cout, p->ow, DW_FN(nchw_chunk));
}

static void DW_FN(nhwc_chunk)(void *ctx, int64_t chunk, int worker) {
    DW_FN(task) *t = (DW_FN(task) *)ctx;
    (void)worker;
    const fp_conv_problem *p = t->p;
    const float *x = t->x, *w = t->w, *bias = t->bias;
    float *y = t->y, *acc = (float *)fp_scratch_or_fail(0, t->acc_bytes, &t->failed);
    if (!acc) return;
    const int64_t m = p->cout / p->cin, C = p->cout, cpad = fp_dw_cpad(p);
    int64_t job_lo, job_hi;
    fp_chunk_range(t->jobs, t->nchunks, chunk, &job_lo, &job_hi);
    {
        for (int64_t job = job_lo; job < job_hi; job++) {
            const int64_t n = job / p->oh, oy = job % p->oh;
            for (int64_t ox = 0; ox < p->ow; ox++) {
                for (int64_t c = 0; c < C; c++) acc[c] = bias ? bias[c] : 0.0f;
                for (int64_t ky = 0; ky < p->kh; ky++) {
                    const int64_t iy = oy * p->stride_h - p->pad_top + ky * p->dil_h;
                    if (iy < 0 || iy >= p->h) continue;
                    for (int64_t kx = 0; kx < p->kw; kx++) {
                        const int64_t ix = ox * p->stride_w - p->pad_left + kx * p->dil_w;
                        if (ix < 0 || ix >= p->w) continue;
                        const float *xp = x + ((n * p->h + iy) * p->w + ix) * p->cin;
                        const float *wt = w + (ky * p->kw + kx) * cpad;
                        if (m == 1)
                            for (int64_t c = 0; c < C; c++) acc[c] += wt[c] * xp[c];
                        else
                            for (int64_t c = 0; c < C; c++) acc[c] += wt[c] * xp[c / m];
                    }
                }
                float *yp = y + ((n * p->oh + oy) * p->ow + ox) * C;
                if (p->relu)
                    for (int64_t c = 0; c < C; c++) yp[c] = acc[c] < 0 ? 0.0f : acc[c];
                else
                    for (int64_t c = 0; c < C; c++) yp[c] = acc[c];
            }
        }
    }
}

static int DW_FN(nhwc)(const fp_conv_problem *p, const float *x, const float *w, const float *bias, float *y) {
    return DW_FN(launch)(p, x, w, bias, y, p->n * p->oh, p->cout, DW_FN(nhwc_chunk));
}
