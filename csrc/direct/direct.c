/* Direct KxK convolution, float32, NCHW and NHWC, dense and grouped: the driver.
 *
 * Design (see docs/direct.md): output channels are the vector dimension (blocks of 16, weights
 * packed once as [group][block][cin][kh*kw][16]); a register tile of up to 14 output pixels x 16
 * channels accumulates the whole reduction over (cin, kh, kw) in registers, broadcasting input
 * pixels and streaming the packed weights from L1/L2 (Zhang, Franchetti & Low's zero-overhead
 * loop order with libxsmm-style register blocking).
 *
 * Borders, stride and dilation are handled without touching the whole input: each thread copies
 * the input rows one block of output rows needs into a small strip (row after row, each row
 * channel by channel), with the horizontal zero padding in place and the columns split by stride phase.  In that strip
 * consecutive output pixels read consecutive floats for every tap, whatever the stride, dilation
 * or input layout, so one micro-kernel with constant displacements serves every case.  Vertical
 * borders cost nothing: taps whose input row falls outside the image are skipped per output row.
 * Extra memory per call: one strip per thread (input rows of one row block, capped near 256 KiB)
 * plus the padded bias; no im2col buffer. */
#include <string.h>

#include "../epilogue/epilogue.h"
#include "direct_px.h"

/* Weight prefetch for the next chunk only when at least this many tiles share a chunk, so that
 * the prefetches stay a thin stream (on 512@7x7, 7 tiles per chunk and 42 prefetches per tile: -14 %). */
#define FP_DIRECT_PF_TILES 16

int fp_direct_strip_applies(const fp_conv_problem *p, int f64) {
    if (f64) return 0;
    if (p->groups > 1 && p->groups == p->cin) return 0; /* depthwise: dwconv or generic */
    if (p->kh == 1 && p->kw == 1 && p->groups == 1 && p->pad_top == 0 && p->pad_left == 0) return 0; /* 1x1 GEMM */
    /* The per-thread strip holds stride x (padded row) floats per input row: absurd strides, dilations
     * or paddings (valid, but far beyond any network) go to the generic kernel, which needs no buffer. */
    if (p->stride_h > 64 || p->stride_w > 64 || p->dil_h > 256 || p->dil_w > 256 || p->pad_top > 4096 ||
        p->pad_left > 4096)
        return 0;
    return 1;
}

static int applies(const fp_conv_problem *p, int isa, int f64) {
    (void)isa;
    return fp_direct_strip_applies(p, f64);
}

static const char *kernel_name(const fp_conv_problem *p, int isa, int f64) {
    (void)f64;
    if (fp_direct_px_pays(p, isa)) return fp_kernel_pick("convpx", 0, isa)->name; /* run_either's choice */
    return fp_direct_ukr_pick(isa)->k.name;
}

static int64_t nblocks(const fp_conv_problem *p) { return FP_CEIL_DIV(p->cout / p->groups, FP_DIRECT_CB); }

static int64_t packed_bytes(const fp_conv_problem *p, int isa, int f64) {
    (void)isa; (void)f64;
    return (int64_t)sizeof(float) * p->groups * nblocks(p) * (p->cin / p->groups) * p->kh * p->kw * FP_DIRECT_CB;
}

typedef struct pack_job {
    const fp_conv_problem *p;
    const float *w;
    float *d;
} pack_job;

/* Block `job` = g * nblocks + cb: [cin_g][kh*kw][FP_DIRECT_CB lanes], lanes past the group's Cout zero. */
static void pack_block(void *ctx, int64_t job) {
    const pack_job *j = (const pack_job *)ctx;
    const fp_conv_problem *p = j->p;
    const int64_t cin_g = p->cin / p->groups, cout_g = p->cout / p->groups, CT = cin_g * p->kh * p->kw;
    const int64_t g = job / nblocks(p), co0 = (job % nblocks(p)) * FP_DIRECT_CB;
    fp_pack_transpose(j->w + (g * cout_g + co0) * CT, CT, FP_MIN(FP_DIRECT_CB, cout_g - co0), CT, FP_DIRECT_CB,
                      j->d + job * CT * FP_DIRECT_CB);
}

static int pack(const fp_conv_problem *p, int isa, int f64, const void *wv, void *dst) {
    pack_job j = {p, (const float *)wv, (float *)dst};
    fp_pack_jobs(p, p->groups * nblocks(p), packed_bytes(p, isa, f64), pack_block, &j);
    return FP_OK;
}

/* Geometry of one call, shared by all threads. */
typedef struct geom {
    const fp_direct_ukr *uk;
    int64_t cin_g, cout_g, T, ncb, nb, rwmax;
    int64_t R, nrb, nr;  /* output rows per block, row blocks, strip rows */
    int64_t Wq;          /* strip columns per stride phase */
    int64_t cs, rs;      /* strip floats between input channels, between input rows */
    int64_t cchunks, cbg_per_chunk, ncbg;
    int64_t kc;          /* input channels per reduction chunk (weights of a chunk stay in L1) */
    int64_t kcp;         /* one-shot: input channels packed at a time (a multiple of kc; L2) */
    int strip_pf;        /* prefetch the strip rows of the next chunk (the strip outgrows half of L2) */
    int64_t gblk;        /* channel blocks whose partial sums one pass over the reduction chunks keeps (>= nb) */
} geom;

/* Copy the input rows [iy0, iy0 + nrows) of group g, image n into the strip: row-major by channel,
 * horizontally zero-padded, columns split by stride phase (strip column c = q * sw + phase). */
void fp_direct_fill_strip(const fp_conv_problem *p, const fp_dstrip *G, int isa, const float *x, int64_t n,
                          int64_t g, int64_t iy0, int64_t nrows, float *strip) {
    const int64_t sw = p->stride_w, Wq = G->Wq, W = p->w, pl = p->pad_left;
    if (p->layout == 1 && isa == FP_ISA_AVX512) { /* NHWC: 16x16 register transposes, row by row */
        for (int64_t r = 0; r < nrows; r++) {
            const int64_t iy = iy0 + r;
            float *dst = strip + r * G->rs;
            if (iy < 0 || iy >= p->h) {
                for (int64_t ci = 0; ci < G->cin_g; ci++) memset(dst + ci * G->cs, 0, sizeof(float) * (size_t)(sw * Wq));
                continue;
            }
            fp_direct_fill_nhwc_avx512(x + ((n * p->h + iy) * W) * p->cin + g * G->cin_g, p->cin, G->cin_g, W, sw, pl,
                                       Wq, dst, G->cs);
        }
        return;
    }
    for (int64_t ci = 0; ci < G->cin_g; ci++) {
        const int64_t c_abs = g * G->cin_g + ci;
        for (int64_t r = 0; r < nrows; r++) {
            float *dst = strip + ci * G->cs + r * G->rs;
            const int64_t iy = iy0 + r;
            if (iy < 0 || iy >= p->h) {
                memset(dst, 0, sizeof(float) * (size_t)(sw * Wq));
                continue;
            }
            if (p->layout == 0) {
                const float *src = x + ((n * p->cin + c_abs) * p->h + iy) * W;
                /* The same row of the next channel, one channel (nrows rows) ahead: each channel's rows are
                 * one short stream (a few KiB) from L3 or memory, which the hardware prefetchers do not
                 * ramp up on before it ends; without this the copy took 13 % of 32->32 3x3 @256. */
                if (ci + 1 < G->cin_g)
                    for (int64_t f = 0; f < W; f += 16) __builtin_prefetch(src + p->h * W + f, 0, 3);
                if (sw == 2 && isa == FP_ISA_AVX512) {
                    fp_direct_split2_avx512(src, W, pl, Wq, dst, dst + Wq);
                } else if (sw == 1) {
                    const int64_t lo = FP_MIN(pl, Wq), hi = FP_MAX(lo, FP_MIN(Wq, pl + W));
                    memset(dst, 0, sizeof(float) * (size_t)lo);
                    memcpy(dst + lo, src + (lo - pl), sizeof(float) * (size_t)(hi - lo));
                    memset(dst + hi, 0, sizeof(float) * (size_t)(Wq - hi));
                } else {
                    for (int64_t ph = 0; ph < sw; ph++) {
                        float *dp = dst + ph * Wq;
                        /* q in [qlo, qhi) reads inside the row: ix = q * sw + ph - pl in [0, W) */
                        const int64_t off = ph - pl;
                        int64_t qlo = off >= 0 ? 0 : FP_CEIL_DIV(-off, sw);
                        int64_t qhi = W - 1 - off < 0 ? 0 : (W - 1 - off) / sw + 1;
                        qlo = FP_MIN(qlo, Wq);
                        qhi = FP_MAX(qlo, FP_MIN(qhi, Wq));
                        for (int64_t q = 0; q < qlo; q++) dp[q] = 0.0f;
                        if (sw == 2)
                            for (int64_t q = qlo; q < qhi; q++) dp[q] = src[2 * q + off];
                        else
                            for (int64_t q = qlo; q < qhi; q++) dp[q] = src[q * sw + off];
                        for (int64_t q = qhi; q < Wq; q++) dp[q] = 0.0f;
                    }
                }
            } else {
                const float *src = x + ((n * p->h + iy) * W) * p->cin + c_abs;
                for (int64_t ph = 0; ph < sw; ph++) {
                    float *dp = dst + ph * Wq;
                    for (int64_t q = 0; q < Wq; q++) {
                        const int64_t ix = q * sw + ph - pl;
                        dp[q] = (ix >= 0 && ix < W) ? src[ix * p->cin] : 0.0f;
                    }
                }
            }
        }
    }
}

static void plan(const fp_conv_problem *p, int isa, geom *G) {
    const int nt = fp_threads(p);
    G->cin_g = p->cin / p->groups;
    G->cout_g = p->cout / p->groups;
    G->T = p->kh * p->kw;
    G->ncb = FP_CEIL_DIV(G->cout_g, FP_DIRECT_CB);
    /* More channel blocks per tile where the kernel has them and they cost no tile width, or the
     * row is narrow enough anyway (AVX-512: 28 zmm accumulators hold 14 pixels x 32 channels, or
     * 7 x 64 on small maps). */
    const fp_direct_ukr *uk = G->uk = fp_direct_ukr_pick(isa);
    const int wider4 = uk->rw[2] > 0 && G->ncb >= 4 && (uk->rw[2] == uk->rw[0] || p->ow <= uk->rw[2]);
    const int wider2 = uk->rw[1] > 0 && G->ncb >= 2 && (uk->rw[1] == uk->rw[0] || p->ow <= uk->rw[1]);
    G->nb = wider4 ? 4 : wider2 ? 2 : 1;
    G->rwmax = uk->rw[G->nb == 4 ? 2 : G->nb - 1];
    const int64_t sw = p->stride_w, sh = p->stride_h;
    const int64_t Wp = (p->ow - 1) * sw + (p->kw - 1) * p->dil_w + 1;
    G->Wq = FP_CEIL_DIV(Wp, sw);
    /* Rows per block.  Every row block streams all of the group's weights once, so a block of R rows
     * reuses each weight R x ow times: when the weights outgrow half of L2 (they then come from L3 on
     * every pass), the strip takes the thread's share of L3 (fp_cache_share) rather than half of L2.
     * The tiles of one (channel block, input-channel chunk) still read only that chunk's rows, a few
     * KiB per row, which stay in L2 while the rows of the block sweep it.  1 thread, loaded box, CPU time:
     * 512->512 3x3 dilation 4 @32 (R 1 -> 32) 47-56 % -> 86-90 % of peak; 2048->512 @32 (R 1 -> 8)
     * 53-56 % -> 75-80 %.  Weights that fit keep the strip in L2: nothing to amortize. */
    const int64_t row_bytes = (int64_t)sizeof(float) * G->cin_g * sw * G->Wq;
    const int64_t wbytes = (int64_t)sizeof(float) * G->cin_g * G->T * G->ncb * FP_DIRECT_CB;
    const int64_t half_l2 = FP_MAX(256 * 1024, fp_cache_size(2) / 2);
    const int64_t budget = wbytes > half_l2 ? FP_MAX(half_l2, fp_cache_share()) : half_l2;
    int64_t R = p->oh;
    while (R > 1 && ((R - 1) * sh + (p->kh - 1) * p->dil_h + 1) * row_bytes > budget) R = (R + 1) / 2;
    const int64_t outer = p->n * p->groups;
    G->ncbg = FP_CEIL_DIV(G->ncb, G->nb);
    /* When a group's weights outgrow L2, threads first split the output channels (each streams
     * its share of the weights) and only then the rows (each row block streams all of them). */
    int64_t cc = (wbytes > 2 * fp_cache_size(2) && nt > 1) ? FP_MIN(G->ncbg, nt) : 1;
    /* Weights that do not stay in L2 beside the strip: split only the output channels for the
     * threads, as far as the blocks allow, before any row split.  The channel chunks of one row
     * block are consecutive jobs, so a thread that runs several reuses its strip (no refill), and
     * each thread streams only its share of the weights once per row block. */
    if (nt > 1 && wbytes > fp_cache_size(2) / 2) {
        const int64_t jpt0 = (p->stride_h > 1 || p->stride_w > 1) && G->cin_g >= 16 ? 2 : 4;
        const int64_t nrb0 = FP_CEIL_DIV(p->oh, R);
        cc = FP_MIN(G->ncbg, FP_MAX(cc, FP_CEIL_DIV(jpt0 * nt, outer * nrb0)));
    }
    /* Several jobs per thread, so a thread that the OS delays leaves little work behind.  One thread
     * needs no spare jobs: splitting its rows only streams the weights once more per row block
     * (measured +4 % on 256@14x14, +10 % on 512@7x7). */
    /* Strided layers with many input channels fill their strips at a high cost per output (each job
     * copies its rows' strip, and a channel split copies it again): fewer, longer jobs there (measured
     * at 2 threads on 128->128 s2 @56: +13 %; the stem, Cin = 3, and stride 1 were better with 4). */
    const int64_t jpt = (p->stride_h > 1 || p->stride_w > 1) && G->cin_g >= 16 ? 2 : 4;
    const int64_t want = nt > 1 ? jpt * nt : 1;
    while (R > 4 && outer * cc * FP_CEIL_DIV(p->oh, R) < want) R = (R + 1) / 2;
    G->R = R;
    G->nrb = FP_CEIL_DIV(p->oh, R);
    G->nr = (R - 1) * sh + (p->kh - 1) * p->dil_h + 1;
    /* Row-major strip, [row][channel][phase][Wq]: the rows one tile reads for a chunk of input
     * channels are one contiguous run each (A/B against channel-planar: +3-5 % on the dilated
     * 256@28 layer, +1 % on 512@32, equal elsewhere). */
    G->cs = sw * G->Wq;
    G->rs = G->cin_g * sw * G->Wq;
    /* Stride 1 only: on stride-2 layers (128 and 256 s2, NCHW and NHWC) the prefetch measured 5-20 %
     * slower, even with at most 8 lines a tile. */
    G->strip_pf = (int64_t)sizeof(float) * G->nr * G->rs > half_l2 && sh == 1;
    if (outer * cc * G->nrb < want) cc = FP_MIN(G->ncbg, FP_CEIL_DIV(want, outer * G->nrb));
    G->cbg_per_chunk = FP_CEIL_DIV(G->ncbg, cc);
    /* Reduction chunks: a chunk's weights (kc x taps x nb blocks) take 5/12 of L1 (20 KiB of 48: the
     * strip rows and partial sums a row of tiles reads share the rest) while every tile of the row block
     * uses them; partial sums wait in a per-thread buffer.  On 48 KiB L1s (Sapphire Rapids, Zen 5) 12 and
     * 28 KiB measured within noise to -7 %. */
    const int64_t per_ci = G->T * G->nb * FP_DIRECT_CB * (int64_t)sizeof(float);
    int64_t kc = FP_MAX(8, fp_cache_size(1) * 5 / 12 / per_ci);
    /* One chunk, no partial sums, also when the whole reduction's weights fit in L1 (36 KiB on 32->32
     * layers: two chunks had cost 0-8 % on NCHW 32->32 @128-256, 1 thread, loaded box). */
    if (!uk->chunk_cin || G->cin_g <= kc + kc / 2 || G->cin_g * per_ci <= fp_cache_size(1)) kc = G->cin_g;
    G->kc = kc;
    /* One-shot calls pack the caller's weights a few chunks at a time: rows of kcp x taps floats are long
     * enough for the hardware to stream them (8 channels x 9 taps is 288 bytes a row), and the packed
     * block (nb x kcp x taps x 16 lanes) takes a quarter of L2, from where the chunks' tiles read it. */
    G->kcp = FP_MIN(G->cin_g, kc * FP_MAX(1, fp_cache_size(2) / 4 / (kc * per_ci)));
    G->cchunks = FP_CEIL_DIV(G->ncbg, G->cbg_per_chunk);
    /* A strip in the L3 share (larger than half of L2) would be swept from L3 once per step of nb
     * channel blocks.  Instead every reduction chunk runs over a group of gblk blocks before the next
     * chunk, so the chunk's strip rows serve the whole group from L1/L2; the group's partial sums, a
     * quarter of L2, wait in pbuf (L2).  Half of L2 measured slower (the partial sums push out the
     * weights being prefetched), an eighth between. */
    G->gblk = G->nb;
    if (G->strip_pf && kc < G->cin_g) {
        const int64_t step = (int64_t)sizeof(float) * G->R * p->ow * G->nb * FP_DIRECT_CB;
        G->gblk = G->nb * FP_MAX(1, FP_MIN(G->cbg_per_chunk, fp_cache_size(2) / 4 / step));
    }
}

void fp_direct_row_taps(const fp_conv_problem *p, int64_t oy, int64_t *t0, int64_t *t1) {
    const int64_t iyb = oy * p->stride_h - p->pad_top, dh = p->dil_h;
    int64_t ky0, ky1;
    fp_tap_range(iyb, p->kh, dh, p->h, &ky0, &ky1);
    if (ky0 > p->kh) ky0 = p->kh;
    if (ky1 < ky0) ky1 = ky0;
    *t0 = ky0 * p->kw;
    *t1 = ky1 * p->kw;
}

void fp_direct_tap_offsets(const fp_conv_problem *p, int64_t Wq, int64_t rs, int64_t *toff) {
    const int64_t sw = p->stride_w;
    for (int64_t ky = 0; ky < p->kh; ky++)
        for (int64_t kx = 0; kx < p->kw; kx++) {
            const int64_t cx = kx * p->dil_w;
            toff[ky * p->kw + kx] = ky * p->dil_h * rs + (cx % sw) * Wq + cx / sw;
        }
}

/* One call's shared state; chunk `job` is one (image, group, row block, channel chunk). */
typedef struct direct_task {
    const fp_conv_problem *p;
    const geom *G;
    int isa;
    const float *x, *wpk, *bpad;
    const float *wraw;               /* one-shot (run_unpacked): the caller's weights, packed per chunk */
    const int64_t *toff;
    float *y;
    int64_t wblk;
    int64_t strip_bytes, pbuf_bytes; /* the running thread's fp_scratch slots 0 and 1 (pbuf: 0 if unused) */
    int failed;
    int nonfinite;                   /* one-shot: some packed weight is NaN or +-Inf */
    uint64_t call;                   /* this call's number (g_calls) */
    const fp_ep *ep;                 /* the call's epilogue (csrc/epilogue), applied to each stored tile */
} direct_task;

/* The strip this OS thread filled last: call number, buffer and (image, group, row block), so that
 * consecutive channel chunks of one row block skip the refill.  Kept per thread rather than per
 * worker id, so no array has to be as large as the pool (the strip is the thread's scratch anyway). */
static _Thread_local struct {
    uint64_t call;
    int64_t key;
    const float *strip;
} last_strip;
static uint64_t g_calls;

/* Lines to prefetch: nseg runs of `lines` 64-byte lines, seg floats apart (nseg 0: nothing), with a
 * cursor (run i, line l) of those already issued.  The cursor steps without divisions: with a division
 * per line (k / lines, k % lines) the two prefetch streams took 9 % of 2048->512 @32. */
typedef struct in_span {
    const float *base;
    int64_t nseg, seg, lines;
    int64_t i, l;
} in_span;

/* The next `step` prefetches of span s (into L2). */
static inline void prefetch_next(in_span *s, int64_t step) {
    for (; step > 0 && s->i < s->nseg; step--) {
        __builtin_prefetch(s->base + s->i * s->seg + s->l * 16, 0, 2);
        if (++s->l == s->lines) {
            s->l = 0;
            s->i++;
        }
    }
}

/* Channel blocks of the next tile: nb, or what is left (kernels exist for 1, 2 and 4 blocks). */
static inline int step_blocks(int64_t nb, int64_t left) {
    const int b = (int)FP_MIN(nb, left);
    return b == 3 ? 2 : b;
}

static void direct_chunk(void *ctx, int64_t job, int worker) {
    direct_task *t = (direct_task *)ctx;
    (void)worker;
    const fp_conv_problem *p = t->p;
    const geom G = *t->G;
    const int isa = t->isa;
    const float *x = t->x, *wpk = t->wpk, *bpad = t->bpad;
    const int64_t *toff = t->toff;
    float *y = t->y;
    const int64_t wblk = t->wblk;
    float *strip = (float *)fp_scratch_or_fail(0, t->strip_bytes, &t->failed);
    float *pbuf = t->pbuf_bytes ? (float *)fp_scratch_or_fail(1, t->pbuf_bytes, &t->failed) : NULL;
    const float *wraw = t->wraw;
    float *wbuf = wraw ? (float *)fp_scratch_or_fail(
                             2, (int64_t)sizeof(float) * G.nb * G.kcp * G.T * FP_DIRECT_CB, &t->failed)
                       : NULL;
    if (!strip || (t->pbuf_bytes && !pbuf) || (wraw && !wbuf)) return;
    float tbuf[FP_DIRECT_TILE_MAX * FP_DIRECT_CB] __attribute__((aligned(64)));
    float rbuf[FP_DIRECT_TILE_MAX * FP_DIRECT_CB] __attribute__((aligned(64))); /* an NCHW residual tile */
    int64_t rest = job;
    const int64_t cc = rest % G.cchunks; rest /= G.cchunks;
    const int64_t rb = rest % G.nrb; rest /= G.nrb;
    const int64_t g = rest % p->groups;
    const int64_t n = rest / p->groups;
    const int64_t oy0 = rb * G.R, nrows = FP_MIN(G.R, p->oh - oy0);
    const int64_t iy0 = oy0 * p->stride_h - p->pad_top;
    const int64_t key = job / G.cchunks;
    const int64_t nr_job = (nrows - 1) * p->stride_h + (p->kh - 1) * p->dil_h + 1;
    if (last_strip.call != t->call || last_strip.strip != strip || last_strip.key != key)
    {
        const fp_dstrip S = {G.cin_g, G.Wq, G.cs, G.rs};
        fp_direct_fill_strip(p, &S, isa, x, n, g, iy0, nr_job, strip);
    }
    last_strip.call = t->call;
    last_strip.strip = strip;
    last_strip.key = key;
    const int64_t cbg_lo = cc * G.cbg_per_chunk, cbg_hi = FP_MIN(G.ncbg, cbg_lo + G.cbg_per_chunk);
    const int64_t cb_hi = FP_MIN(G.ncb, cbg_hi * G.nb);
    /* Groups of gblk channel blocks (plan): each reduction chunk runs over the whole group before the next. */
    for (int64_t gb = cbg_lo * G.nb; gb < cb_hi; gb += G.gblk) {
        const int64_t gb_hi = FP_MIN(cb_hi, gb + G.gblk);
        int64_t nsteps = 0;
        for (int64_t cb = gb; cb < gb_hi; cb += step_blocks(G.nb, gb_hi - cb)) nsteps++;
        for (int64_t k0 = 0; k0 < G.cin_g; k0 += G.kc) {
            const int first = k0 == 0, last = k0 + G.kc >= G.cin_g;
            /* A strip larger than half of L2 (weights past L2: the strip has the L3 share) is read one
             * chunk of input channels at a time, and that chunk's rows come from L3 on the first tile
             * that reads them (measured: an L1-hot strip would run 2048->512 @32 and 256@64 9-10 %
             * faster).  So the next chunk's rows (the next input channels, or the first chunk of the
             * next group of channel blocks) are prefetched over this chunk's tiles of the whole group. */
            in_span sp = {NULL, 0, 0, 0, 0, 0};
            int64_t sp_step = 0;
            if (G.strip_pf) {
                const int64_t kq = k0 + G.kc < G.cin_g ? k0 + G.kc : gb_hi < cb_hi ? 0 : -1;
                if (kq >= 0) {
                    sp.base = strip + kq * G.cs;
                    sp.nseg = nr_job;
                    sp.seg = G.rs;
                    sp.lines = FP_CEIL_DIV(FP_MIN(G.kc, G.cin_g - kq) * G.cs, 16) + 1;
                    sp_step = FP_CEIL_DIV(sp.nseg * sp.lines, nsteps * nrows * FP_CEIL_DIV(p->ow, G.rwmax));
                }
            }
            for (int64_t cb = gb, nbb_used = 0; cb < gb_hi; cb += nbb_used) {
                const int nbb = step_blocks(G.nb, gb_hi - cb);
                nbb_used = nbb;
                const int64_t nch = FP_MIN(nbb * FP_DIRECT_CB, G.cout_g - cb * FP_DIRECT_CB);
                fp_dtile a;
                a.toff = toff;
                a.ntaps = G.T;
                a.cs = G.cs;
                a.wblk = wblk;
                const float *bias_blk = bpad + (g * G.ncb + cb) * FP_DIRECT_CB;
                const int64_t c_abs = g * G.cout_g + cb * FP_DIRECT_CB;
                const int direct_store = p->layout == 1 && nch == nbb * FP_DIRECT_CB;
                const int64_t ntl = FP_CEIL_DIV(p->ow, G.rwmax), base = p->ow / ntl, extra = p->ow % ntl;
                const int64_t pps = nbb * FP_DIRECT_CB; /* floats per pixel in pbuf */
                a.cin = FP_MIN(G.kc, G.cin_g - k0);
                a.relu = last ? p->relu : 0;
                if (wraw) {
                    /* One-shot: the weights of channels [kp, kp + kcp) (nbb blocks x kcp channels x taps x 16
                     * lanes: the layout of the prepacked blocks, cut to those channels) packed when the first
                     * of their chunks comes, then read from L2/L1 by every tile of the row block.  Only when
                     * this job is the only one to use them (run_unpacked), so nothing is packed twice. */
                    const int64_t CT = G.cin_g * G.T, kp = k0 / G.kcp * G.kcp, kpn = FP_MIN(G.kcp, G.cin_g - kp);
                    if (k0 == kp) {
                        /* the non-finite check of the weights (csrc/oneshot.c) on the registers the packing
                         * loads: every weight is packed exactly once */
                        int bad = 0;
                        for (int b = 0; b < nbb; b++) {
                            const int64_t co0 = (cb + b) * FP_DIRECT_CB;
                            bad |= fp_pack_transpose_check(wraw + (g * G.cout_g + co0) * CT + kp * G.T, CT,
                                                           FP_MIN(FP_DIRECT_CB, G.cout_g - co0), kpn * G.T, FP_DIRECT_CB,
                                                           wbuf + b * kpn * G.T * FP_DIRECT_CB);
                        }
                        if (bad) __atomic_store_n(&t->nonfinite, 1, __ATOMIC_RELAXED);
                    }
                    a.w = wbuf + (k0 - kp) * G.T * FP_DIRECT_CB;
                    a.wblk = kpn * G.T * FP_DIRECT_CB;
                } else {
                    a.w = wpk + (g * G.ncb + cb) * wblk + k0 * G.T * FP_DIRECT_CB;
                }
                /* The weights of the next chunk (the next input channels, or the first chunk of the next
                 * channel blocks) are prefetched into L2 a few lines per tile, so that they do not come
                 * from L3 on the first tile that needs them (large layers' weights do not stay in L2). */
                in_span wp = {NULL, 0, wblk, 0, 0, 0};
                if (cb + nbb < gb_hi) { /* the same input channels of the group's next channel blocks */
                    wp.base = wpk + (g * G.ncb + cb + nbb) * wblk + k0 * G.T * FP_DIRECT_CB;
                    wp.nseg = FP_MIN(G.nb, gb_hi - cb - nbb);
                    wp.lines = a.cin * G.T;
                } else if (!last) { /* the next input channels of the group's first blocks */
                    wp.base = wpk + (g * G.ncb + gb) * wblk + (k0 + G.kc) * G.T * FP_DIRECT_CB;
                    wp.nseg = FP_MIN(G.nb, gb_hi - gb);
                    wp.lines = FP_MIN(G.kc, G.cin_g - k0 - G.kc) * G.T;
                } else if (gb_hi < cb_hi) { /* the first chunk of the next group */
                    wp.base = wpk + (g * G.ncb + gb_hi) * wblk;
                    wp.nseg = FP_MIN(G.nb, cb_hi - gb_hi);
                    wp.lines = FP_MIN(G.kc, G.cin_g) * G.T;
                }
                const int64_t wp_step = FP_CEIL_DIV(wp.nseg * wp.lines, nrows * ntl);
                if (nrows * ntl < FP_DIRECT_PF_TILES || wraw) wp.nseg = 0; /* one-shot: no packed weights to fetch */
                for (int64_t i = 0; i < nrows; i++) {
                    const int64_t oy = oy0 + i;
                    fp_direct_row_taps(p, oy, &a.t0, &a.t1);
                    const float *row = strip + k0 * G.cs + i * p->stride_h * G.rs;
                    int64_t ox0 = 0;
                    for (int64_t tl = 0; tl < ntl; tl++) {
                        const int rw = (int)(base + (tl < extra));
                        float *part = pbuf ? pbuf + (cb - gb) * G.R * p->ow * FP_DIRECT_CB + (i * p->ow + ox0) * pps : NULL;
                        a.pix = row + ox0;
                        if (first) {
                            a.init = bias_blk;
                            a.init_ps = 0;
                        } else {
                            a.init = part;
                            a.init_ps = pps;
                        }
                        if (!last) {
                            a.out = part;
                            a.ops = pps;
                        } else if (direct_store) {
                            a.out = y + ((n * p->oh + oy) * p->ow + ox0) * p->cout + c_abs;
                            a.ops = p->cout;
                        } else {
                            a.out = tbuf;
                            a.ops = pps;
                        }
                        prefetch_next(&wp, wp_step);
                        prefetch_next(&sp, sp_step);
                        /* NCHW: the output lines this tile will store (the first and last pixel of each channel
                         * row: nch short runs, more streams than the hardware prefetchers follow) are requested
                         * before its reduction runs, so the store does not wait for them.  An NHWC tile is one
                         * contiguous run, which they do follow (prefetching it measured 10-15 % slower with
                         * Cin = 3). */
                        if (last && p->layout == 0) {
                            float *yo = y + ((n * p->cout + c_abs) * p->oh + oy) * p->ow + ox0;
                            for (int64_t c = 0; c < nch; c++) {
                                __builtin_prefetch(yo + c * p->oh * p->ow, 1, 3);
                                __builtin_prefetch(yo + c * p->oh * p->ow + rw - 1, 1, 3);
                            }
                        }
                        G.uk->kernel(rw, nbb)(&a);
                        if (last) {
                            float *ynchw = y + ((n * p->cout + c_abs) * p->oh + oy) * p->ow + ox0; /* NCHW: the tile */
                            /* The epilogue runs on the pixel-major tile buffer (rows of nch contiguous
                             * channels: whole vectors) before the store, an NCHW residual transposed into a
                             * second such buffer.  On the NCHW output it would read channel rows of rw floats
                             * just written by masked stores, which do not forward to loads: LeakyReLU on
                             * 3->32 @256 took 5x the convolution, a residual 64@56 +30 %. */
                            const int ep_buf = t->ep && !direct_store && (!t->ep->has_res || p->layout == 0);
                            if (ep_buf) {
                                const float *res = NULL;
                                if (t->ep->has_res) {
                                    const float *ry = (const float *)((const char *)ynchw + t->ep->res_bytes);
                                    if (isa == FP_ISA_AVX512) {
                                        fp_direct_load_nchw_avx512(ry, p->oh * p->ow, rw, nch, rbuf, a.ops);
                                    } else {
                                        for (int64_t c = 0; c < nch; c++)
                                            for (int j = 0; j < rw; j++) rbuf[j * a.ops + c] = ry[c * p->oh * p->ow + j];
                                    }
                                    res = rbuf;
                                }
                                t->ep->tile(t->ep, tbuf, a.ops, res, a.ops, rw, nch, c_abs, 0, 1);
                            }
                            if (p->layout == 0 && isa == FP_ISA_AVX512) {
                                fp_direct_store_nchw_avx512(tbuf, a.ops, rw, nch, ynchw, p->oh * p->ow);
                            } else if (p->layout == 0) {
                                for (int64_t c = 0; c < nch; c++) {
                                    float *yc = y + ((n * p->cout + c_abs + c) * p->oh + oy) * p->ow + ox0;
                                    for (int j = 0; j < rw; j++) yc[j] = tbuf[j * a.ops + c];
                                }
                            } else if (!direct_store) {
                                for (int j = 0; j < rw; j++) {
                                    float *yp = y + ((n * p->oh + oy) * p->ow + ox0 + j) * p->cout + c_abs;
                                    for (int64_t c = 0; c < nch; c++) yp[c] = tbuf[j * a.ops + c];
                                }
                            }
                            if (t->ep && !ep_buf && p->layout == 0)
                                fp_ep_tile(t->ep, ynchw, nch, rw, p->oh * p->ow, c_abs, 1, 0);
                            else if (t->ep && !ep_buf)
                                fp_ep_tile(t->ep, y + ((n * p->oh + oy) * p->ow + ox0) * p->cout + c_abs, rw, nch, p->cout,
                                           c_abs, 0, 1);
                        }
                        ox0 += rw;
                    }
                }
            }
        }
    }
}

/* The weights are either packed (wpk) or the caller's (wraw, packed per chunk inside the loops). */
static int run_either(const fp_conv_problem *p, int isa, const float *x, const float *wpk, const float *wraw,
                      const float *bias, float *y) {
    if (p->n == 0 || p->oh == 0 || p->ow == 0 || p->cout == 0) return wraw ? FP_DECLINED : FP_OK;
    /* Narrow NCHW layers on wide maps: output pixels in the lanes (direct_px.c) on the same packed weights */
    if (!wraw && fp_direct_px_pays(p, isa)) return fp_direct_px_run16(p, isa, x, wpk, bias, y);
    geom G;
    plan(p, isa, &G);
    /* Packing per chunk inside the loops pays when each chunk's weights serve one job: a single image
     * and row block (the weight-heavy layers: small maps, or strips in the L3 share).  Otherwise every
     * row block would pack them again, and the caller packs them once, split across the pool. */
    if (wraw && p->n * G.nrb > 1) return FP_DECLINED;
    if (wraw) G.gblk = G.nb; /* the one-shot pack holds one step's blocks */
    int64_t *toff = (int64_t *)fp_aligned_alloc((int64_t)sizeof(int64_t) * G.T);
    float *bpad = (float *)fp_aligned_alloc((int64_t)sizeof(float) * p->groups * G.ncb * FP_DIRECT_CB);
    if (!toff || !bpad) {
        fp_aligned_free(toff);
        fp_aligned_free(bpad);
        return FP_ERR_ALLOC;
    }
    fp_direct_tap_offsets(p, G.Wq, G.rs, toff);
    memset(bpad, 0, sizeof(float) * (size_t)(p->groups * G.ncb * FP_DIRECT_CB));
    if (bias)
        for (int64_t g = 0; g < p->groups; g++)
            for (int64_t co = 0; co < G.cout_g; co++) bpad[g * G.ncb * FP_DIRECT_CB + co] = bias[g * G.cout_g + co];

    const int64_t jobs = p->n * p->groups * G.nrb * G.cchunks;
    const int T = fp_threads(p);
    direct_task t = {p, &G, isa, x, wpk, bpad, wraw, toff, y, G.cin_g * G.T * FP_DIRECT_CB,
                     (int64_t)sizeof(float) * G.nr * G.rs,
                     G.kc < G.cin_g ? (int64_t)sizeof(float) * G.R * p->ow * G.gblk * FP_DIRECT_CB : 0, 0, 0,
                     __atomic_add_fetch(&g_calls, 1, __ATOMIC_RELAXED), fp_ep_current()};
    fp_pool_run(T, jobs, direct_chunk, &t); /* one job per chunk, claimed dynamically */
    fp_aligned_free(toff);
    fp_aligned_free(bpad);
    if (t.failed) return FP_ERR_ALLOC;
    return !wraw ? FP_OK : t.nonfinite ? FP_RAN_NONFINITE : FP_RAN_FINITE;
}

static int run(const fp_conv_problem *p, int isa, int f64, const void *x, const void *packed, const void *bias,
               void *y) {
    (void)f64;
    return run_either(p, isa, (const float *)x, (const float *)packed, NULL, (const float *)bias, (float *)y);
}

static int run_unpacked(const fp_conv_problem *p, int isa, int f64, const void *x, const void *w, const void *bias,
                        void *y) {
    (void)f64;
    return run_either(p, isa, (const float *)x, NULL, (const float *)w, (const float *)bias, (float *)y);
}

const fp_algo fp_algo_direct = {"direct", applies, kernel_name, packed_bytes, pack, run, "conv", run_unpacked};
