/* Generic direct convolution for every problem of the contract, instantiated for one element type.
 * Included by conv_generic.c with T (element type) and SFX (name suffix) defined.
 *
 * Plain loops the compiler can vectorize, correct for any stride, padding, dilation, groups and
 * layout.  It is the portable fallback that the specialised algorithms are measured against. */

#define GLUE_(a, b) a##_##b
#define GLUE(a, b) GLUE_(a, b)
#define FN(name) GLUE(name, SFX)

/* Range of output columns ox whose input column ox*sw + off falls inside [0, w). */
static inline void FN(valid_cols)(int64_t off, int64_t sw, int64_t w, int64_t ow, int64_t *lo, int64_t *hi) {
    int64_t l = off < 0 ? FP_CEIL_DIV(-off, sw) : 0;
    int64_t last = w - 1 - off; /* largest ox*sw allowed */
    int64_t h = last < 0 ? 0 : FP_MIN(ow, last / sw + 1);
    *lo = l;
    *hi = h < l ? l : h;
}

/* Shared state of one call; a chunk is a run of consecutive jobs (output planes or rows). */
typedef struct FN(generic_task) {
    const fp_conv_problem *p;
    const T *x, *w, *bias;
    T *y;
    int64_t jobs, nchunks;
    int64_t acc_bytes; /* the running thread's accumulator row: fp_scratch slot 0 */
    int failed;
    const fp_ep *ep;   /* the call's epilogue (csrc/epilogue), applied to each row as it is stored */
} FN(generic_task);

static int FN(generic_launch)(const fp_conv_problem *p, const T *x, const T *w, const T *bias, T *y, int64_t jobs,
                              int64_t acc_elems, fp_task_fn fn) {
    const int threads = fp_threads(p);
    FN(generic_task) t = {p, x, w, bias, y, jobs, fp_chunk_count(jobs, threads), (int64_t)sizeof(T) * acc_elems, 0,
                          fp_ep_current()};
    fp_pool_run(threads, t.nchunks, fn, &t);
    return t.failed ? FP_ERR_ALLOC : FP_OK;
}

static void FN(generic_nchw_chunk)(void *ctx, int64_t chunk, int worker) {
    FN(generic_task) *t = (FN(generic_task) *)ctx;
    (void)worker;
    const fp_conv_problem *p = t->p;
    const T *x = t->x, *wt = t->w, *bias = t->bias;
    T *y = t->y, *acc = (T *)fp_scratch_or_fail(0, t->acc_bytes, &t->failed);
    if (!acc) return;
    const int64_t cin_g = p->cin / p->groups, cout_g = p->cout / p->groups;
    int64_t job_lo, job_hi;
    fp_chunk_range(t->jobs, t->nchunks, chunk, &job_lo, &job_hi);
    {
        for (int64_t job = job_lo; job < job_hi; job++) {
            const int64_t n = job / p->cout, co = job % p->cout, g = co / cout_g;
            const T b = bias ? bias[co] : (T)0;
            for (int64_t oy = 0; oy < p->oh; oy++) {
                for (int64_t ox = 0; ox < p->ow; ox++) acc[ox] = b;
                for (int64_t ci = 0; ci < cin_g; ci++) {
                    const T *xc = x + (n * p->cin + g * cin_g + ci) * p->h * p->w;
                    const T *wc = wt + (co * cin_g + ci) * p->kh * p->kw;
                    for (int64_t ky = 0; ky < p->kh; ky++) {
                        const int64_t iy = oy * p->stride_h - p->pad_top + ky * p->dil_h;
                        if (iy < 0 || iy >= p->h) continue;
                        const T *xr = xc + iy * p->w;
                        for (int64_t kx = 0; kx < p->kw; kx++) {
                            const T wv = wc[ky * p->kw + kx];
                            const int64_t off = kx * p->dil_w - p->pad_left;
                            int64_t lo, hi;
                            FN(valid_cols)(off, p->stride_w, p->w, p->ow, &lo, &hi);
                            if (p->stride_w == 1)
                                for (int64_t ox = lo; ox < hi; ox++) acc[ox] += wv * xr[ox + off];
                            else
                                for (int64_t ox = lo; ox < hi; ox++) acc[ox] += wv * xr[ox * p->stride_w + off];
                        }
                    }
                }
                T *yr = y + ((n * p->cout + co) * p->oh + oy) * p->ow;
                if (p->relu)
                    for (int64_t ox = 0; ox < p->ow; ox++) yr[ox] = acc[ox] < 0 ? (T)0 : acc[ox];
                else
                    for (int64_t ox = 0; ox < p->ow; ox++) yr[ox] = acc[ox];
                if (t->ep) fp_ep_tile(t->ep, yr, 1, p->ow, 0, co, 0, 0);
            }
        }
    }
}

static int FN(generic_nchw)(const fp_conv_problem *p, const T *x, const T *wt, const T *bias, T *y) {
    return FN(generic_launch)(p, x, wt, bias, y, p->n * p->cout, p->ow, FN(generic_nchw_chunk));
}

/* NHWC weights are packed as (groups, kh, kw, cin_g, cout_g) so the innermost loop runs over
 * contiguous output channels. */
static void FN(generic_nhwc_chunk)(void *ctx, int64_t chunk, int worker) {
    FN(generic_task) *t = (FN(generic_task) *)ctx;
    (void)worker;
    const fp_conv_problem *p = t->p;
    const T *x = t->x, *wp = t->w, *bias = t->bias;
    T *y = t->y, *acc = (T *)fp_scratch_or_fail(0, t->acc_bytes, &t->failed);
    if (!acc) return;
    const int64_t cin_g = p->cin / p->groups, cout_g = p->cout / p->groups;
    int64_t job_lo, job_hi;
    fp_chunk_range(t->jobs, t->nchunks, chunk, &job_lo, &job_hi);
    {
        for (int64_t job = job_lo; job < job_hi; job++) {
            const int64_t n = job / p->oh, oy = job % p->oh;
            for (int64_t ox = 0; ox < p->ow; ox++) {
                T *yp = y + ((n * p->oh + oy) * p->ow + ox) * p->cout;
                for (int64_t g = 0; g < p->groups; g++) {
                    for (int64_t co = 0; co < cout_g; co++) acc[co] = bias ? bias[g * cout_g + co] : (T)0;
                    for (int64_t ky = 0; ky < p->kh; ky++) {
                        const int64_t iy = oy * p->stride_h - p->pad_top + ky * p->dil_h;
                        if (iy < 0 || iy >= p->h) continue;
                        for (int64_t kx = 0; kx < p->kw; kx++) {
                            const int64_t ix = ox * p->stride_w - p->pad_left + kx * p->dil_w;
                            if (ix < 0 || ix >= p->w) continue;
                            const T *xp = x + ((n * p->h + iy) * p->w + ix) * p->cin + g * cin_g;
                            const T *wk = wp + ((g * p->kh + ky) * p->kw + kx) * cin_g * cout_g;
                            for (int64_t ci = 0; ci < cin_g; ci++) {
                                const T xv = xp[ci];
                                const T *wr = wk + ci * cout_g;
                                for (int64_t co = 0; co < cout_g; co++) acc[co] += xv * wr[co];
                            }
                        }
                    }
                    T *yg = yp + g * cout_g;
                    if (p->relu)
                        for (int64_t co = 0; co < cout_g; co++) yg[co] = acc[co] < 0 ? (T)0 : acc[co];
                    else
                        for (int64_t co = 0; co < cout_g; co++) yg[co] = acc[co];
                    if (t->ep) fp_ep_tile(t->ep, yg, 1, cout_g, 0, g * cout_g, 0, 1);
                }
            }
        }
    }
}

/* NHWC weights are packed as (groups, kh, kw, cin_g, cout_g) (see generic_pack). */
static int FN(generic_nhwc)(const fp_conv_problem *p, const T *x, const T *wp, const T *bias, T *y) {
    return FN(generic_launch)(p, x, wp, bias, y, p->n * p->oh, p->cout / p->groups, FN(generic_nhwc_chunk));
}

static void FN(generic_pack)(const fp_conv_problem *p, const T *w, T *dst) {
    const int64_t cin_g = p->cin / p->groups, cout_g = p->cout / p->groups, taps = p->kh * p->kw;
    if (p->layout == 0) {
        memcpy(dst, w, sizeof(T) * p->cout * cin_g * taps);
        return;
    }
    for (int64_t g = 0; g < p->groups; g++)
        for (int64_t co = 0; co < cout_g; co++)
            for (int64_t ci = 0; ci < cin_g; ci++)
                for (int64_t t = 0; t < taps; t++)
                    dst[((g * taps + t) * cin_g + ci) * cout_g + co] = w[((g * cout_g + co) * cin_g + ci) * taps + t];
}

#undef FN
#undef GLUE
#undef GLUE_
