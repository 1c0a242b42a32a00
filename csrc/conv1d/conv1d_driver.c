/* The driver of the direct 1-d convolution (conv1d.h): weight panels, the phase split of a strided row,
 * the tiles (interior ones read the row in place, edge ones an im2col of their window) and the split of
 * the work between threads (Cout blocks x row segments). */
#include <string.h>

#include "conv1d.h"

#define CONV1D_MAGIC 0x46503144u /* "FP1D" */

typedef struct header {
    uint32_t magic;
    int32_t row;   /* the conv1d row packed for (fp_kernel_index): panels are MR rows wide */
    int64_t cout, cin, k;
    int64_t reserved[4];
} header;

static const fp_conv1d_ukr *pick(void) { return fp_conv1d_pick(fp_isa()); }

int64_t fp_conv1d_direct_packed_bytes(const fp_conv_problem *p) {
    const fp_conv1d_ukr *uk = pick();
    return (int64_t)sizeof(header) + (int64_t)sizeof(float) * FP_CEIL_DIV(p->cout, uk->mr) * uk->mr * p->cin * p->kw;
}

/* Panel cb holds w[cb*MR + i][ci][t] at ((ci*K + t)*MR + i), zero for rows past Cout; returns whether
 * every weight is finite (the one-shot call reports the others, core/nonfinite.py). */
static int pack(const fp_conv_problem *p, const fp_conv1d_ukr *uk, const float *w, void *packed) {
    const int64_t MR = uk->mr, CK = p->cin * p->kw;
    header *h = (header *)packed;
    memset(h, 0, sizeof *h);
    h->magic = CONV1D_MAGIC, h->row = fp_kernel_index(&uk->k), h->cout = p->cout, h->cin = p->cin, h->k = p->kw;
    float *dst = (float *)((char *)packed + sizeof(header));
    float sum = 0.0f; /* a non-finite weight makes the sum non-finite (overflow too: then just a false alarm) */
    for (int64_t cb = 0; cb < FP_CEIL_DIV(p->cout, MR); cb++)
        for (int64_t i = 0; i < MR; i++) {
            const int64_t co = cb * MR + i;
            float *d = dst + cb * CK * MR + i;
            if (co >= p->cout) {
                for (int64_t r = 0; r < CK; r++) d[r * MR] = 0.0f;
                continue;
            }
            const float *src = w + co * CK;
            for (int64_t r = 0; r < CK; r++) d[r * MR] = src[r], sum += src[r] * 0.0f;
        }
    return sum == 0.0f;
}

int fp_conv1d_direct_pack(const fp_conv_problem *p, const float *w, void *packed) {
    pack(p, pick(), w, packed);
    return FP_OK;
}

typedef struct task {
    const fp_conv_problem *p;
    const fp_conv1d_ukr *uk;
    const float *w, *bias, *x; /* x: the input rows, or their phases (x_phased) */
    float *y;
    int64_t ldx, x_image;      /* floats between channels (s * plen) and images of x */
    int64_t plen;              /* floats per phase (the row length at stride 1) */
    const int64_t *toff;       /* per tap: r*plen + q, the phase and the offset in it of output 0's input */
    const int64_t *tq, *tlen;  /* per tap: q, and the valid length of its phase */
    int64_t lo, hi;            /* interior tiles start at o0 with lo <= o0 <= hi */
    int64_t seg_cols, segs, cgroups, ncb, cbb; /* cbb: Cout blocks per run (job) */
    int failed;
} task;

/* The im2col of an edge tile's window: loc[(ci*K + t)*NR + j] = input of output o0 + j at tap t, zero
 * where that is padding or past the row (or past Lout).  The valid j of a tap are one run [j0, j1). */
static void edge_window(const task *T, const float *xn, int64_t o0, float *loc) {
    const fp_conv_problem *p = T->p;
    const int64_t NR = T->uk->nr, K = p->kw, cols = FP_MIN(NR, p->ow - o0);
    for (int64_t t = 0; t < K; t++) {
        const int64_t q = T->tq[t];
        const int64_t j0 = FP_MIN(cols, FP_MAX(0, -(o0 + q))), j1 = FP_MAX(j0, FP_MIN(cols, T->tlen[t] - o0 - q));
        for (int64_t ci = 0; ci < p->cin; ci++) {
            const float *src = xn + ci * T->ldx + (T->toff[t] - q) + o0 + q; /* the tap's phase at output o0 */
            float *d = loc + (ci * K + t) * NR;
            memset(d, 0, sizeof(float) * (size_t)j0);
            if (j1 > j0) memcpy(d + j0, src + j0, sizeof(float) * (size_t)(j1 - j0));
            memset(d + j1, 0, sizeof(float) * (size_t)(NR - j1));
        }
    }
}

static void job(void *ctx, int64_t c, int worker) {
    task *T = (task *)ctx;
    const fp_conv_problem *p = T->p;
    const fp_conv1d_ukr *uk = T->uk;
    const int64_t MR = uk->mr, NR = uk->nr, K = p->kw, CK = p->cin * K, OW = p->ow;
    (void)worker;
    /* scratch: a partial tile, a partial block's bias, the window's tap offsets; the im2col of an edge tile */
    const int64_t buf_floats = FP_CEIL_DIV(MR * NR + MR, 2) * 2; /* the offsets after it 8-byte aligned */
    float *buf = (float *)fp_scratch_or_fail(0, (int64_t)sizeof(float) * buf_floats + 8 * K, &T->failed);
    float *loc = (float *)fp_scratch_or_fail(1, (int64_t)sizeof(float) * CK * NR, &T->failed);
    if (!buf || !loc) return;
    float *bias_tail = buf + MR * NR;
    int64_t *loc_off = (int64_t *)(buf + buf_floats);
    for (int64_t t = 0; t < K; t++) loc_off[t] = t * NR;

    const int64_t cg = c % T->cgroups, seg = (c / T->cgroups) % T->segs, img = c / T->cgroups / T->segs;
    int64_t cb0, cb1;
    fp_chunk_range(T->ncb, T->cgroups, cg, &cb0, &cb1);
    const int64_t c0 = seg * T->seg_cols, c1 = FP_MIN(OW, c0 + T->seg_cols);
    const float *xn = T->x + img * T->x_image;
    float *yn = T->y + img * p->cout * OW;
    fp_conv1d_args a;
    a.cin = p->cin, a.taps = K, a.relu = p->relu;
    /* Window outer: each window of NR positions (Cin rows of its taps, in L1) serves every Cout block of a
     * run of blocks whose panels take a quarter of L2 (T->cbb), read from there in turn. */
    for (int64_t cbr = cb0; cbr < cb1; cbr += T->cbb) {
        const int64_t cbe = FP_MIN(cb1, cbr + T->cbb);
        for (int64_t o0 = c0; o0 < c1; o0 += NR) {
            const int64_t cols = FP_MIN(NR, OW - o0);
            if (o0 >= T->lo && o0 <= T->hi) { /* every tap of the NR columns inside the row: read in place */
                a.x = xn + o0, a.ldx = T->ldx, a.toff = T->toff;
            } else {
                edge_window(T, xn, o0, loc);
                a.x = loc, a.ldx = K * NR, a.toff = loc_off;
            }
            for (int64_t cb = cbr; cb < cbe; cb++) {
                const int64_t rows = FP_MIN(MR, p->cout - cb * MR);
                a.w = T->w + cb * CK * MR;
                a.bias = T->bias ? T->bias + cb * MR : NULL;
                if (T->bias && rows < MR) {
                    for (int64_t i = 0; i < MR; i++) bias_tail[i] = i < rows ? T->bias[cb * MR + i] : 0.0f;
                    a.bias = bias_tail;
                }
                float *yb = yn + cb * MR * OW;
                if (rows == MR && cols == NR) {
                    a.y = yb + o0, a.ldy = OW;
                    uk->run(&a);
                } else {
                    a.y = buf, a.ldy = NR;
                    uk->run(&a);
                    for (int64_t i = 0; i < rows; i++)
                        memcpy(yb + i * OW + o0, buf + i * NR, sizeof(float) * (size_t)cols);
                }
            }
        }
    }
}

static int run(const fp_conv_problem *p0, const fp_conv1d_ukr *uk, const float *x, const float *w,
               const float *bias, float *y) {
    fp_conv_problem q = *p0;
    const int cap = fp_max_threads();
    q.num_threads = q.num_threads < 1 ? 1 : q.num_threads > cap ? cap : q.num_threads;
    const fp_conv_problem *p = &q;
    const int64_t s = p->stride_w, d = p->dil_w, L = p->w, K = p->kw, NR = uk->nr, MR = uk->mr;
    if (p->n == 0) return FP_OK;
    const int64_t plen = FP_CEIL_DIV(L, s);
    int64_t *offs = (int64_t *)fp_aligned_alloc((int64_t)sizeof(int64_t) * 3 * K);
    float *phased = NULL;
    if (!offs) return FP_ERR_ALLOC;
    task T;
    memset(&T, 0, sizeof T);
    T.p = p, T.uk = uk, T.w = w, T.bias = bias, T.y = y, T.plen = plen;
    T.toff = offs, T.tq = offs + K, T.tlen = offs + 2 * K;
    T.lo = INT64_MIN, T.hi = INT64_MAX;
    for (int64_t t = 0; t < K; t++) {
        const int64_t off = t * d - p->pad_left, r = ((off % s) + s) % s, qq = (off - r) / s;
        offs[t] = r * plen + qq, offs[K + t] = qq, offs[2 * K + t] = (L - r + s - 1) / s;
        T.lo = FP_MAX(T.lo, -qq);
        T.hi = FP_MIN(T.hi, offs[2 * K + t] - qq - NR);
    }
    if (s == 1) {
        T.x = x, T.ldx = L, T.x_image = p->cin * L;
    } else { /* phase r of channel ci: x[ci][j*s + r], j < plen (zero past the row, never read as input) */
        phased = (float *)fp_aligned_alloc((int64_t)sizeof(float) * p->n * p->cin * s * plen);
        if (!phased) {
            fp_aligned_free(offs);
            return FP_ERR_ALLOC;
        }
        for (int64_t row = 0; row < p->n * p->cin; row++) {
            const float *src = x + row * L;
            float *dst = phased + row * s * plen;
            for (int64_t r = 0; r < s; r++)
                for (int64_t j = 0; j < plen; j++) dst[r * plen + j] = j * s + r < L ? src[j * s + r] : 0.0f;
        }
        T.x = phased, T.ldx = s * plen, T.x_image = p->cin * s * plen;
    }
    /* Segments: a whole number of tiles whose input (Cin rows of seg_cols*s + span floats) takes half of L2,
     * so that every Cout block of the segment reads it from there; runs of Cout blocks whose panels take a
     * quarter of it (each window, in L1, serves all the run's blocks). */
    const int threads = fp_threads(p);
    const int64_t span = (K - 1) * d + 1, row_bytes = (int64_t)sizeof(float) * p->cin;
    const int64_t l2 = fp_cache_size(2), tiles = FP_CEIL_DIV(p->ow, NR);
    const int64_t cols = (l2 / 2 / row_bytes - span) / s;
    T.seg_cols = FP_MIN(tiles, FP_MAX(1, cols / NR)) * NR;
    T.ncb = FP_CEIL_DIV(p->cout, MR);
    T.cbb = FP_MAX(1, l2 / 4 / ((int64_t)sizeof(float) * p->cin * K * MR));
    T.segs = FP_CEIL_DIV(p->ow, T.seg_cols), T.cgroups = 1;
    if (threads > 1) {
        /* Enough jobs for every thread (FP_CHUNKS_PER_THREAD each), a whole number of them per thread.  A row
         * that is one segment (its input in L2: wav2vec2's stem) is split by Cout blocks, so that each thread
         * writes whole output rows of its own; a longer one by shorter segments (down to 4 tiles), then by
         * Cout blocks. */
        const int64_t want = (int64_t)FP_CHUNKS_PER_THREAD * threads;
        if (p->n * T.segs < want) {
            if (T.segs == 1 && p->n * T.ncb >= want) {
                T.cgroups = FP_CEIL_DIV(want, p->n);
            } else {
                T.seg_cols = NR * FP_MAX(FP_MIN(4, tiles), FP_CEIL_DIV(tiles * p->n, want));
                T.segs = FP_CEIL_DIV(p->ow, T.seg_cols);
                T.cgroups = FP_MIN(T.ncb, FP_MAX(1, FP_CEIL_DIV(want, p->n * T.segs)));
            }
        }
        const int64_t jobs = p->n * T.segs * T.cgroups;
        if (T.cgroups == 1 && jobs % threads) { /* equal segments, a multiple of the threads in all */
            const int64_t segs = FP_CEIL_DIV(FP_CEIL_DIV(jobs, threads) * threads, p->n);
            T.seg_cols = NR * FP_CEIL_DIV(tiles, segs);
            T.segs = FP_CEIL_DIV(p->ow, T.seg_cols);
        }
    }
    fp_flush_enter(); /* subnormals flushed on this thread, as conv.c does around every kernel */
    fp_pool_run(threads, p->n * T.segs * T.cgroups, job, &T);
    fp_flush_leave();
    fp_aligned_free(phased);
    fp_aligned_free(offs);
    return T.failed ? FP_ERR_ALLOC : FP_OK;
}

static int args_ok(const fp_conv_problem *p) {
    return p->groups == 1 && p->layout == 0 && p->h == 1 && p->oh == 1 && p->kh == 1 && p->n >= 0 && p->ow >= 1 &&
           p->stride_w >= 1 && p->dil_w >= 1 && p->pad_left >= 0 && p->kw >= 1;
}

int fp_conv1d_direct_f32(const fp_conv_problem *p, const float *x, const void *packed, const float *bias, float *y) {
    if (!args_ok(p)) return FP_ERR_ARGS;
    const fp_conv1d_ukr *uk = pick();
    const header *h = (const header *)packed;
    if (h->magic != CONV1D_MAGIC || h->row != fp_kernel_index(&uk->k) || h->cout != p->cout || h->cin != p->cin ||
        h->k != p->kw)
        return FP_ERR_PACKED;
    return run(p, uk, x, (const float *)((const char *)packed + sizeof(header)), bias, y);
}

int fp_conv1d_direct_once_f32(const fp_conv_problem *p, const float *x, const float *w, const float *bias, float *y,
                              int check_finite) {
    if (!args_ok(p)) return FP_ERR_ARGS;
    const fp_conv1d_ukr *uk = pick();
    void *packed = fp_scratch(FP_SCRATCH_ONCE, fp_conv1d_direct_packed_bytes(p));
    if (!packed) return FP_ERR_ALLOC;
    const int finite = pack(p, uk, w, packed);
    const int rc = run(p, uk, x, (const float *)((const char *)packed + sizeof(header)), bias, y);
    return rc < 0 ? rc : check_finite && !finite;
}

/* Whether conv1d layers take this path: 2 while a conv1d row is forced (then wherever it applies), 0 while rows
 * of other families are (a forced gemm row runs strided conv1d on the lowered GEMM, a forced conv row the 2-d
 * kernels, as everywhere), else 1 (the layers the Python side chooses, backends/c_lowered.py). */
int fp_conv1d_direct_choice(void) {
    if (!fp_kernel_forcing()) return 1;
    return fp_kernel_forced("conv1d", 0) ? 2 : 0;
}

const char *fp_conv1d_direct_kernel_name(void) { return pick()->k.name; }
