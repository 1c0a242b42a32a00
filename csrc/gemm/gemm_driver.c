/* The blocked loops (BLIS order: jc (NC) > pc (KC) > ic (MC) > jr (NR) > ir (MR) > micro-kernel; NHWC swaps
 * jr and ir) and the split of the work between threads.
 *
 * The work is cut along whichever GEMM dimension has enough micro-tiles for all threads (pixels when
 * there are many, output channels otherwise, e.g. 7x7 maps) into a few contiguous chunks per thread,
 * handed out by the pool (csrc/pool.c) to whichever thread asks first: no two threads write the same
 * C tile, and on a shared machine a thread that cannot get a core does not hold the call back. */
#include <string.h>

#include "../epilogue/epilogue.h"
#include "gemm.h"

typedef struct range { int64_t lo, hi; } range;

/* Part t of T of [0, tiles) in tiles, scaled by unit and clipped to total. */
static range part(int64_t tiles, int64_t t, int64_t T, int64_t unit, int64_t total) {
    range r;
    r.lo = FP_MIN(tiles * t / T * unit, total);
    r.hi = FP_MIN(tiles * (t + 1) / T * unit, total);
    return r;
}

/* Whether to split the pixel dimension (else the output channels): pixels when they give every
 * thread a few tiles or when they have more tiles than the channels do. */
static int split_pixels(int64_t pixel_tiles, int64_t channel_tiles, int T) {
    return pixel_tiles >= 4 * (int64_t)T || pixel_tiles >= channel_tiles;
}

/* Chunks of work for T threads over `tiles` micro-tiles: 4 a thread, so that a thread without a core
 * leaves its chunks to the others.  A pixel chunk runs the whole jc > pc loop, so it streams all of the
 * weights once; when they are larger than the L2 cache (w_bytes, a core's own), each pass comes from L3
 * and the weights are read once per chunk, so each thread takes one chunk of pixels (its share of the
 * weight passes falls from 4 to 1).  fcn's 32x32 layers at 2 threads, thread CPU time inside the chunks
 * (loaded box, alternating in one process): 512->2048 and 1024->2048 +1-7 %, 2048->512 and 1024->512
 * -1..+3 %; weights that fit in L2 (1024->256, 256->1024) stay in L2 between a thread's chunks and do
 * not care, so they keep the balance of 4 a thread. */
static int64_t chunks(int64_t tiles, int T, int by_pixels, int64_t w_bytes) {
    if (T == 1) return 1;
    if (by_pixels && w_bytes > fp_cache_size(2)) return FP_MIN(tiles, (int64_t)T);
    return FP_MIN(tiles, 4 * (int64_t)T);
}

/* The residual of the tile about to be computed at dst (ld floats apart), which the epilogue reads right
 * after the kernel: fetched by the kernel late in its k loop where it can (pf_tile), else now. */
static void prefetch_res(fp_ukr_args *u, const fp_sgemm_ukr *uk, const fp_ep *ep, const float *dst, int64_t ld) {
    u->pf_tile = NULL;
    if (!ep || !ep->has_res) return;
    if (uk->extended) {
        u->pf_tile = (const float *)((const char *)dst + ep->res_bytes);
        u->pf_ld = ld;
    } else {
        fp_ep_prefetch32(ep, dst, ld, u->mr, u->nr);
    }
}

void fp_gemm_fence(void) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_ia32_sfence();
#endif
}

/* ---------------------------------------------------------------- NCHW: Y[n] = W @ X[n] */

static void nchw_block(const fp_conv_problem *p, const fp_sgemm_ukr *uk, const fp_gemm_blocks *bs,
                       const float *xn, const float *packed, const float *w_raw, const float *bias, float *yn,
                       range rows, range cols, float *buf, int64_t *off, const fp_ep *ep) {
    const int64_t M = p->cout, K = p->cin, N = p->oh * p->ow, MR = uk->mr, NR = uk->nr;
    const int unit_stride = p->stride_h == 1 && p->stride_w == 1;
    /* Stride 1 with a kernel that packs as it computes: the first row tile of each column tile reads
     * the input in place (overlapping the memory traffic with FMAs) and leaves a packed copy for the
     * others.  Otherwise a whole kc x nc block is packed first (strided pixels gathered). */
    /* Strided: the same, gathering the tile's pixels at fixed offsets in each channel row (AVX-512
     * gathers are slow, but only the first row tile uses them). */
    /* Strided, where the packing copies whole output-row runs (horizontal stride 1 or 2): the kc x nc block
     * is packed first instead, since gathering in the first row tile cost more (stride 2, 256->512@56 at 1
     * thread, loaded box: prepacked 1536-1874 -> 1102-1107 us with the element-by-element packing already,
     * Zen 5).  Other strides gather in the first row tile (32-bit offsets). */
    const int fused = uk->extended && (unit_stride || (!fp_gemm_pack_b_runs(p) && p->h * p->w < ((int64_t)1 << 31)));
    int32_t idx[64] = {0};
    const float *wrows[16]; /* one-shot: the tile's rows of the caller's W, read in place (no packing) */
    fp_ukr_args u = {0};
    u.bias_per_col = 0;
    /* An output larger than L2, written in one k block: stream it past the caches.  With an epilogue, each
     * tile goes through an L1 buffer, then streams into y (csrc/epilogue). */
    const int stream = uk->extended && K <= bs->kc && (int64_t)sizeof(float) * M * N * p->n > fp_cache_size(2);
    const int buffered = stream && ep && MR * NR <= FP_EP_TILE_FLOATS;
    float tbuf[FP_EP_TILE_FLOATS] __attribute__((aligned(64)));
    u.stream = stream && !ep;
    u.ldc = buffered ? NR : N;
    for (int64_t jc = cols.lo; jc < cols.hi; jc += bs->nc) {
        const int64_t jn = FP_MIN(bs->nc, cols.hi - jc);
        for (int64_t pc = 0; pc < K; pc += bs->kc) {
            const int64_t kc = FP_MIN(bs->kc, K - pc);
            u.kc = kc;
            u.first = pc == 0;
            u.relu = p->relu && pc + kc >= K;
            const fp_ep *tile_ep = pc + kc >= K ? ep : NULL; /* the epilogue: last k block only */
            if (!fused) fp_gemm_pack_b_nchw(p, xn, pc, kc, jc, jn, NR, buf, off);
            for (int64_t ic = rows.lo; ic < rows.hi; ic += bs->mc) {
                const int64_t ie = FP_MIN(ic + bs->mc, rows.hi);
                if (!w_raw && fused && unit_stride && uk->tall && ic == rows.lo && ie == rows.hi && ie - ic > MR &&
                    ie - ic <= uk->tall_mr) {
                    /* 9..24 channels: one tall tile covers them all, reading X once, in place (only when
                     * they are the whole row range: the regular path's first MC block must be the first,
                     * which leaves the packed panels of X for the others). */
                    fp_ukr_args v = u;
                    v.a = packed + ic * K + pc * MR;
                    v.a_panel = K * MR;
                    v.ldc = N;
                    v.mr = ie - ic;
                    v.ldb = N;
                    v.bias = bias ? bias + ic : NULL;
                    for (int64_t jr = jc; jr < jc + jn; jr += uk->tall_nr) {
                        v.nr = FP_MIN(uk->tall_nr, jc + jn - jr);
                        v.b = xn + pc * N + jr;
                        v.prefetch_next = jr + 4 * uk->tall_nr < jc + jn;
                        v.c = yn + ic * N + jr;
                        uk->tall(&v);
                        if (tile_ep) fp_ep_tile(tile_ep, v.c, v.mr, v.nr, N, ic, 1, 0);
                    }
                    continue;
                }
                /* When streaming, a narrow first column tile brings the others to 64-byte boundaries. */
                const int64_t lead = fused && stream ? (int64_t)((64 - ((uintptr_t)(yn + jc) & 63)) & 63) / 4 : 0;
                /* The first row tile of the first MC block reads each column tile's input in place and
                 * leaves its packed copy at panel q of buf (kc x NR each), so that the kc x nc block of X
                 * is read once per (jc, pc) and every other row tile, of every MC block, reads the copy. */
                const int keep = rows.hi - rows.lo > MR;
                for (int64_t jr = jc, jnext, q = 0; jr < jc + jn; jr = jnext, q++) {
                    u.nr = FP_MIN(jr == jc && lead ? lead : NR, jc + jn - jr);
                    jnext = jr + u.nr;
                    float *panel = buf + q * kc * NR;
                    for (int64_t ir = ic; ir < ie; ir += MR) {
                        const int in_place = fused && ir == rows.lo;
                        if (!fused) {
                            u.b = buf + (jr - jc) * kc;
                            u.ldb = NR;
                        } else if (in_place && !unit_stride) {
                            for (int64_t q2 = 0; q2 < u.nr; q2++) {
                                const int64_t j = jr + q2, oy = j / p->ow, ox = j % p->ow;
                                idx[q2] = (int32_t)(oy * p->stride_h * p->w + ox * p->stride_w);
                            }
                            u.b = xn + pc * p->h * p->w;
                            u.ldb = p->h * p->w;
                            u.bidx = idx;
                            u.bcopy = keep ? panel : NULL;
                            u.prefetch_next = 0;
                        } else if (in_place) {
                            u.b = xn + pc * N + jr;
                            u.ldb = N;
                            u.bcopy = keep ? panel : NULL;
                            /* prefetch the tile after next (kernel: b + 2 NR): input cold in L3 (batch 8
                             * after other work) ran at 116 GFLOP/s with one tile ahead, 146 with two */
                            u.prefetch_next = jr + 2 * NR < jc + jn;
                        } else {
                            u.b = panel;
                            u.ldb = NR;
                            u.bcopy = NULL;
                            u.bidx = NULL;
                            u.prefetch_next = 0;
                        }
                        u.mr = FP_MIN(MR, M - ir);
                        if (w_raw) { /* rows past mr repeat the last one: read, never stored */
                            for (int64_t i = 0; i < MR; i++) wrows[i] = w_raw + (ir + FP_MIN(i, u.mr - 1)) * K + pc;
                            u.arows = wrows;
                        } else {
                            u.a = packed + ir * K + pc * MR; /* panel ir/MR starts (ir/MR)*K*MR = ir*K in */
                        }
                        u.c = buffered ? tbuf : yn + ir * N + jr;
                        u.bias = bias ? bias + ir : NULL;
                        prefetch_res(&u, uk, tile_ep, yn + ir * N + jr, N);
                        uk->run(&u);
                        if (buffered) fp_ep_tile_out(tile_ep, tbuf, NR, yn + ir * N + jr, N, u.mr, u.nr, ir, 1, 0, 1);
                        else if (tile_ep) fp_ep_tile(tile_ep, u.c, u.mr, u.nr, N, ir, 1, 0);
                    }
                }
            }
        }
    }
}

/* ------------------------------------------------ NCHW, small images: Y[n]^T = X[n]^T @ W^T */

/* Fraction of vector lanes doing useful work when n elements are cut into 16-lane vectors. */
static double lane_use(int64_t n) { return (double)n / (double)(FP_CEIL_DIV(n, 16) * 16); }

/* Small maps (7x7: 49 pixels fill 4 vectors at 77 %) run with vectors along Cout instead, reading X
 * in place as the broadcast operand and scattering the tile into Y's rows. */
int fp_gemm_use_transposed(const fp_conv_problem *p, const fp_sgemm_ukr *uk) {
    const int64_t N = p->oh * p->ow;
    /* Also reduction-heavy layers (Cin >= 2 Cout) at 14x14 = 196 pixels = 4 x 48 + 4, whose thin last
     * column tile costs the regular form more: 1024->256@14 0.95x -> 1.00x vs ONNX Runtime at 1 thread
     * (256->1024@14 lost 5 % in this form, so it keeps the regular one). */
    const int reduction_heavy = p->cin >= 2 * p->cout && lane_use(p->cout) >= lane_use(N);
    return uk->extended && p->stride_h == 1 && p->stride_w == 1 && N <= 256 &&
           ((lane_use(N) < 0.85 && lane_use(p->cout) > lane_use(N)) || reduction_heavy);
}

static void nchw_t_block(const fp_conv_problem *p, const fp_sgemm_ukr *uk, int64_t kcb, const float *xn,
                         const float *wt, const float *w_raw, float *wbuf, const float *bias, float *yn, range pix,
                         range cols, float *tail, const fp_ep *ep) {
    const int64_t K = p->cin, N = p->oh * p->ow, MR = uk->mr, NR = uk->nr;
    /* The last, partial pixel tile is read in place when the kernel has an instance computing exactly
     * its rows (1, 2 or 4: 7x7 = 6 x 8 + 1, 14x14 = 24 x 8 + 4), else packed once with zero rows so that
     * nothing past X is read.  (Packing it cost each chunk of a threaded call K strided reads.) */
    const int64_t rem = (pix.hi - pix.lo) % MR;
    const int64_t full_end = rem == 1 || rem == 2 || rem == 4 ? pix.hi : pix.hi - rem;
    if (full_end < pix.hi) {
        for (int64_t k = 0; k < K; k++)
            for (int64_t i = 0; i < MR; i++) tail[k * MR + i] = full_end + i < pix.hi ? xn[k * N + full_end + i] : 0.0f;
    }
    fp_ukr_args u = {0};
    u.ldc = N;
    u.ldb = NR;
    u.bias_per_col = 1;
    u.c_trans = 1;
    const int big_w = (int64_t)sizeof(float) * K * p->cout > fp_cache_size(2);
    for (int64_t pc = 0; pc < K; pc += kcb) {
        const int64_t kc = FP_MIN(kcb, K - pc);
        u.kc = kc;
        u.first = pc == 0;
        u.relu = p->relu && pc + kc >= K;
        const fp_ep *tile_ep = pc + kc >= K ? ep : NULL; /* the epilogue: last k block only */
        for (int64_t jr = cols.lo; jr < cols.hi; jr += NR) {
            u.nr = FP_MIN(NR, cols.hi - jr);
            if (w_raw) { /* one-shot: this kc x NR panel packed here, then used by every pixel tile from L2 */
                fp_pack_transpose(w_raw + jr * K + pc, K, FP_MIN(NR, p->cout - jr), kc, NR, wbuf);
                u.b = wbuf;
            } else {
                u.b = wt + jr * K + pc * NR;
            }
            u.bias = bias ? bias + jr : NULL;
            for (int64_t ir = pix.lo; ir < pix.hi; ir += MR) {
                u.mr = FP_MIN(MR, pix.hi - ir);
                if (ir < full_end) {
                    u.a = xn + pc * N + ir;
                    u.lda = N;
                } else {
                    u.a = tail + pc * MR;
                    u.lda = MR;
                }
                /* Row tiles 1..3 of this panel fetch the next weight panel (kc x NR = 3 x kc lines) into
                 * L2, so that only the first panel of a call waits on memory (weights past L2 only:
                 * smaller ones stay cached between calls, and the prefetches then only cost issue slots). */
                const int64_t t = (ir - pix.lo) / MR;
                const int pf = big_w && t >= 1 && t <= 3 && jr + NR < cols.hi;
                /* one-shot, one k block: the next panel's rows of W are contiguous and as long as its
                 * packing (NR x K floats), so the same lines are fetched; a partial last panel is not */
                if (!w_raw) u.pf_lines = pf ? wt + (jr + NR) * K + pc * NR + (t - 1) * kc * 16 : NULL;
                else u.pf_lines = pf && kc == K && jr + 2 * NR <= p->cout ? w_raw + (jr + NR) * K + (t - 1) * kc * 16 : NULL;
                u.c = yn + jr * N + ir;
                uk->run(&u);
                if (tile_ep) fp_ep_tile(tile_ep, u.c, u.nr, u.mr, N, jr, 1, 0); /* C^T: channel rows */
            }
        }
    }
}

/* What a chunk of a call needs; scratch is the running thread's own (fp_scratch), kept across calls. */
typedef struct task {
    const fp_conv_problem *p;
    const fp_sgemm_ukr *uk;
    fp_gemm_blocks bs;
    const float *x, *packed, *bias;
    const float *w_raw; /* one-shot (fp_gemm_run_unpacked): the caller's Cout x Cin weights, packed per panel */
    float *y;
    int by_pixels;
    int64_t nch, pix_tiles, ch_tiles;
    int failed;
    const fp_ep *ep; /* the call's epilogue (csrc/epilogue), applied to each finished tile */
} task;

static void task_init(task *t, const fp_conv_problem *p, const fp_sgemm_ukr *uk, const float *x,
                      const float *packed, const float *bias, float *y) {
    memset(t, 0, sizeof *t);
    t->p = p; t->uk = uk; t->x = x; t->packed = packed; t->bias = bias; t->y = y;
    t->ep = fp_ep_current(); /* on the calling thread */
}

static int task_finish(task *t, int T) {
    (void)T;
    return t->failed ? FP_ERR_ALLOC : FP_OK;
}

/* Threads for a call, and whether to cut pixels (else output channels). */
static int plan(task *t, int64_t pix_tiles, int64_t ch_tiles, int pixels_first) {
    const int64_t w_bytes = (int64_t)sizeof(float) * t->p->cin * t->p->cout;
    int T = fp_threads(t->p);
    t->pix_tiles = pix_tiles;
    t->ch_tiles = ch_tiles;
    t->by_pixels = pixels_first ? split_pixels(pix_tiles, ch_tiles, T) : (ch_tiles < T && pix_tiles > ch_tiles);
    const int64_t tiles = t->by_pixels ? pix_tiles : ch_tiles;
    if (tiles < T) T = (int)FP_MAX(tiles, 1);
    t->nch = chunks(tiles, T, t->by_pixels, w_bytes);
    return T;
}

static void nchw_t_chunk(void *ctx, int64_t c, int worker) {
    task *t = (task *)ctx;
    const fp_conv_problem *p = t->p;
    const fp_sgemm_ukr *uk = t->uk;
    const int64_t M = p->cout, K = p->cin, N = p->oh * p->ow;
    (void)worker;
    float *buf = (float *)fp_scratch_or_fail(0, (int64_t)sizeof(float) * K * uk->mr, &t->failed);
    float *wbuf = t->w_raw ? (float *)fp_scratch_or_fail(2, (int64_t)sizeof(float) * t->bs.kc * uk->nr, &t->failed)
                           : NULL;
    if (!buf || (t->w_raw && !wbuf)) return;
    range pix = {0, N}, cols = {0, M};
    if (t->by_pixels) pix = part(t->pix_tiles, c, t->nch, uk->mr, N);
    else cols = part(t->ch_tiles, c, t->nch, uk->nr, M);
    if (pix.lo < pix.hi && cols.lo < cols.hi)
        for (int64_t img = 0; img < p->n; img++)
            nchw_t_block(p, uk, t->bs.kc, t->x + img * K * N, t->packed ? fp_gemm_packed_wt(p, uk, t->packed) : NULL,
                         t->w_raw, wbuf, t->bias, t->y + img * M * N, pix, cols, buf, t->ep);
}

/* One k block up to 2048: the kc x NR weight panel then sits in L2 and C is never read back. */
int64_t fp_gemm_kc_transposed(const fp_conv_problem *p) {
    const int64_t K = p->cin;
    return K <= 2048 ? K : FP_CEIL_DIV(K, FP_CEIL_DIV(K, 2048));
}

static int run_nchw_t(const fp_conv_problem *p, const fp_sgemm_ukr *uk, const float *x, const float *packed,
                      const float *w_raw, const float *bias, float *y) {
    const int64_t M = p->cout, N = p->oh * p->ow;
    task t;
    task_init(&t, p, uk, x, packed, bias, y);
    t.w_raw = w_raw;
    t.bs.kc = fp_gemm_kc_transposed(p);
    const int T = plan(&t, FP_CEIL_DIV(N, uk->mr), FP_CEIL_DIV(M, uk->nr), 0);
    if (w_raw && t.by_pixels && T > 1) return FP_DECLINED; /* every thread would pack every panel */
    fp_pool_run(T, t.nch, nchw_t_chunk, &t);
    return task_finish(&t, T);
}

static void nchw_chunk(void *ctx, int64_t c, int worker) {
    task *t = (task *)ctx;
    const fp_conv_problem *p = t->p;
    const fp_sgemm_ukr *uk = t->uk;
    const int64_t M = p->cout, K = p->cin, N = p->oh * p->ow, HW = p->h * p->w, col_tiles = FP_CEIL_DIV(N, uk->nr);
    (void)worker;
    /* nc columns plus one: a narrow lead tile (streaming) takes a whole panel */
    float *buf = (float *)fp_scratch_or_fail(0, (int64_t)sizeof(float) * t->bs.kc * (t->bs.nc + uk->nr), &t->failed);
    int64_t *off = (int64_t *)fp_scratch_or_fail(1, (int64_t)sizeof(int64_t) * 2 * t->bs.nc, &t->failed);
    if (!buf || !off) return;
    if (t->by_pixels) {
        /* Tiles of all images in one sequence, so batch and pixels share the split. */
        const range tr = part(t->pix_tiles, c, t->nch, 1, t->pix_tiles);
        for (int64_t img = tr.lo / col_tiles; img < p->n && img * col_tiles < tr.hi; img++) {
            const int64_t t0 = FP_MAX(tr.lo, img * col_tiles) - img * col_tiles;
            const int64_t t1 = FP_MIN(tr.hi, (img + 1) * col_tiles) - img * col_tiles;
            const range cols = {FP_MIN(t0 * uk->nr, N), FP_MIN(t1 * uk->nr, N)};
            const range rows = {0, M};
            if (cols.lo < cols.hi)
                nchw_block(p, uk, &t->bs, t->x + img * K * HW, t->packed, t->w_raw, t->bias, t->y + img * M * N,
                           rows, cols, buf, off, t->ep);
        }
    } else {
        const range rows = part(t->ch_tiles, c, t->nch, uk->mr, M);
        const range cols = {0, N};
        for (int64_t img = 0; img < p->n && rows.lo < rows.hi; img++)
            nchw_block(p, uk, &t->bs, t->x + img * K * HW, t->packed, t->w_raw, t->bias, t->y + img * M * N, rows,
                       cols, buf, off, t->ep);
    }
    fp_gemm_fence(); /* non-temporal stores of this thread are ordered before the call returns */
}

static int run_nchw(const fp_conv_problem *p, const fp_sgemm_ukr *uk, const float *x, const float *packed,
                    const float *w_raw, const float *bias, float *y) {
    const int64_t M = p->cout, K = p->cin, N = p->oh * p->ow;
    task t;
    task_init(&t, p, uk, x, packed, bias, y);
    t.w_raw = w_raw;
    t.bs = fp_gemm_blocking(uk, M, N, K);
    t.bs.nc = fp_gemm_nc_shared(uk, t.bs.kc, N);
    const int T = plan(&t, p->n * FP_CEIL_DIV(N, uk->nr), FP_CEIL_DIV(M, uk->mr), 1);
    fp_pool_run(T, t.nch, nchw_chunk, &t);
    return task_finish(&t, T);
}

int fp_gemm_run_nchw(const fp_conv_problem *p, const fp_sgemm_ukr *uk, const float *x, const float *packed,
                     const float *bias, float *y) {
    if (fp_gemm_use_transposed(p, uk)) return run_nchw_t(p, uk, x, packed, NULL, bias, y);
    return run_nchw(p, uk, x, packed, NULL, bias, y);
}

/* ---------------------------------------------------------------- NHWC: Y = X @ W^T */

static void nhwc_block(const fp_conv_problem *p, const fp_sgemm_ukr *uk, const fp_gemm_blocks *bs,
                       const float *x, const float *packed, const float *w_raw, float *wbuf, const float *bias,
                       float *y, range rows, range cols, const fp_ep *ep) {
    const int64_t N = p->cout, K = p->cin, MR = uk->mr, NR = uk->nr;
    const float *arows[16];
    fp_ukr_args u = {0};
    u.ldb = NR;
    u.bias_per_col = 1;
    u.arows = arows;
    /* An output larger than L2, written in one k block: stream it past the caches (as NCHW does;
     * 16->96@112 writes 4.8 MB).  Full 48-column tiles of 64-byte aligned rows only (store_row), so only
     * when every row starts a cache line: with rows of 72 floats every other row streams, the rest and
     * the tail tiles go through the caches, and the mix lost (24->72@64, 1.2 MB: ~127 us with no
     * streaming vs ~275-315 us, 1 thread, thread CPU time, loaded box). */
    const int stream = uk->extended && K <= bs->kc && N % 16 == 0 &&
                       (int64_t)sizeof(float) * p->n * p->oh * p->ow * N > fp_cache_size(2);
    /* with an epilogue: each tile through an L1 buffer, then streamed into y (csrc/epilogue) */
    const int buffered = stream && ep && MR * NR <= FP_EP_TILE_FLOATS;
    float tbuf[FP_EP_TILE_FLOATS] __attribute__((aligned(64)));
    u.stream = stream && !ep;
    u.ldc = buffered ? NR : N;
    for (int64_t jc = cols.lo; jc < cols.hi; jc += bs->nc) {
        const int64_t jn = FP_MIN(bs->nc, cols.hi - jc);
        for (int64_t pc = 0; pc < K; pc += bs->kc) {
            const int64_t kc = FP_MIN(bs->kc, K - pc);
            u.kc = kc;
            u.first = pc == 0;
            u.relu = p->relu && pc + kc >= K;
            const fp_ep *tile_ep = pc + kc >= K ? ep : NULL; /* the epilogue: last k block only */
            /* one-shot: the kc x nc block of W^T packed here (panel by panel, kc * NR floats each), as BLIS
             * packs B per block, then read from L2 by every row tile */
            for (int64_t jr = jc; w_raw && jr < jc + jn; jr += NR)
                fp_pack_transpose(w_raw + jr * K + pc, K, FP_MIN(NR, N - jr), kc, NR, wbuf + (jr - jc) * kc);
            for (int64_t ic = rows.lo; ic < rows.hi; ic += bs->mc) {
                const int64_t ie = FP_MIN(ic + bs->mc, rows.hi);
                /* Pixel tiles outside, weight panels inside: the tile's 8 input rows stay in L1 while
                 * the kc x nc weight block (L2) streams past them, and each output row is written in
                 * one sweep.  Against the BLIS order (panels outside), vs XNNPACK at 1 thread: 64->256@56
                 * 0.82x -> 0.95x, 16->96@112 0.77x -> 0.86x, 256->64@56 0.96x -> 1.05x. */
                for (int64_t ir = ic; ir < ie; ir += MR) {
                    u.mr = FP_MIN(MR, ie - ir);
                    fp_gemm_rows_nhwc(p, x, ir, u.mr, (int)MR, pc, arows);
                    for (int64_t jr = jc; jr < jc + jn; jr += NR) {
                        u.nr = FP_MIN(NR, jc + jn - jr);
                        u.b = w_raw ? wbuf + (jr - jc) * kc : packed + jr * K + pc * NR; /* panel jr/NR starts jr*K floats in */
                        u.bias = bias ? bias + jr : NULL;
                        u.c = buffered ? tbuf : y + ir * N + jr;
                        prefetch_res(&u, uk, tile_ep, y + ir * N + jr, N);
                        uk->run(&u);
                        if (buffered) fp_ep_tile_out(tile_ep, tbuf, NR, y + ir * N + jr, N, u.mr, u.nr, jr, 0, 1, 1);
                        else if (tile_ep) fp_ep_tile(tile_ep, u.c, u.mr, u.nr, N, jr, 0, 1);
                    }
                }
            }
        }
    }
}

/* One-shot NHWC on a small map (its input in half of L2): weight panels outside, pixel tiles inside, each
 * kc x NR panel of W^T packed just before its tiles use it while pixel tiles 1..3 prefetch the next
 * panel's rows of W into L2, so that the packing reads L2 rather than L3 (as the NCHW transposed form).
 * Packing the whole kc x nc block first read W from L3 with nothing to overlap: 512->2048@7 spent a
 * quarter of its time in the packing. */
static int nhwc_panels_first(const fp_conv_problem *p) {
    const int64_t R = p->n * p->oh * p->ow;
    return R <= 256 && (int64_t)sizeof(float) * R * p->cin <= fp_cache_size(2) / 2;
}

static void nhwc_panels_block(const fp_conv_problem *p, const fp_sgemm_ukr *uk, int64_t kcb, const float *x,
                              const float *w_raw, float *wbuf, const float *bias, float *y, range rows, range cols,
                              const fp_ep *ep) {
    const int64_t N = p->cout, K = p->cin, MR = uk->mr, NR = uk->nr;
    const float *arows[16];
    fp_ukr_args u = {0};
    u.ldb = NR;
    u.ldc = N;
    u.bias_per_col = 1;
    u.arows = arows;
    for (int64_t pc = 0; pc < K; pc += kcb) {
        const int64_t kc = FP_MIN(kcb, K - pc);
        u.kc = kc;
        u.first = pc == 0;
        u.relu = p->relu && pc + kc >= K;
        const fp_ep *tile_ep = pc + kc >= K ? ep : NULL;
        for (int64_t jr = cols.lo; jr < cols.hi; jr += NR) {
            u.nr = FP_MIN(NR, cols.hi - jr);
            fp_pack_transpose(w_raw + jr * K + pc, K, FP_MIN(NR, N - jr), kc, NR, wbuf);
            u.b = wbuf;
            u.bias = bias ? bias + jr : NULL;
            /* the next panel's NR rows of W are NR * K contiguous floats when kc == K: 3 tiles x kc lines */
            const int next = kc == K && jr + 2 * NR <= cols.hi && uk->extended;
            for (int64_t ir = rows.lo; ir < rows.hi; ir += MR) {
                u.mr = FP_MIN(MR, rows.hi - ir);
                fp_gemm_rows_nhwc(p, x, ir, u.mr, (int)MR, pc, arows);
                const int64_t t = (ir - rows.lo) / MR;
                u.pf_lines = next && t >= 1 && t <= 3 ? w_raw + (jr + NR) * K + (t - 1) * kc * 16 : NULL;
                u.c = y + ir * N + jr;
                uk->run(&u);
                if (tile_ep) fp_ep_tile(tile_ep, u.c, u.mr, u.nr, N, jr, 0, 1);
            }
        }
    }
}

static void nhwc_chunk(void *ctx, int64_t c, int worker) {
    task *t = (task *)ctx;
    const fp_conv_problem *p = t->p;
    const fp_sgemm_ukr *uk = t->uk;
    const int64_t R = p->n * p->oh * p->ow, N = p->cout;
    (void)worker;
    float *wbuf = NULL;
    if (t->w_raw) {
        wbuf = (float *)fp_scratch_or_fail(2, (int64_t)sizeof(float) * t->bs.kc * FP_CEIL_DIV(t->bs.nc, uk->nr) * uk->nr,
                                           &t->failed);
        if (!wbuf) return;
    }
    range rows = {0, R}, cols = {0, N};
    if (t->by_pixels) rows = part(t->pix_tiles, c, t->nch, uk->mr, R);
    else cols = part(t->ch_tiles, c, t->nch, uk->nr, N);
    if (rows.lo < rows.hi && cols.lo < cols.hi) {
        if (t->w_raw && nhwc_panels_first(p))
            nhwc_panels_block(p, uk, t->bs.kc, t->x, t->w_raw, wbuf, t->bias, t->y, rows, cols, t->ep);
        else
            nhwc_block(p, uk, &t->bs, t->x, t->packed, t->w_raw, wbuf, t->bias, t->y, rows, cols, t->ep);
    }
    fp_gemm_fence(); /* non-temporal stores of this thread are ordered before the call returns */
}

static int run_nhwc(const fp_conv_problem *p, const fp_sgemm_ukr *uk, const float *x, const float *packed,
                    const float *w_raw, const float *bias, float *y) {
    const int64_t R = p->n * p->oh * p->ow, N = p->cout, K = p->cin;
    task t;
    task_init(&t, p, uk, x, packed, bias, y);
    t.w_raw = w_raw;
    t.bs = fp_gemm_blocking(uk, R, N, K);
    /* one-shot, small map: output channels split between threads (each packs only its own panels) */
    const int T = plan(&t, FP_CEIL_DIV(R, uk->mr), FP_CEIL_DIV(N, uk->nr), !(w_raw && nhwc_panels_first(p)));
    if (w_raw && t.by_pixels && T > 1) return FP_DECLINED; /* every thread would pack every panel */
    fp_pool_run(T, t.nch, nhwc_chunk, &t);
    return task_finish(&t, T);
}

int fp_gemm_run_nhwc(const fp_conv_problem *p, const fp_sgemm_ukr *uk, const float *x, const float *packed,
                     const float *bias, float *y) {
    return run_nhwc(p, uk, x, packed, NULL, bias, y);
}

int fp_gemm_run_unpacked(const fp_conv_problem *p, const fp_sgemm_ukr *uk, const float *x, const float *w,
                         const float *bias, float *y) {
    /* small maps with weights past L2: W read in place as the broadcast operand (gemm_once_wrows.c) */
    if (fp_gemm_once_wrows_applies(p, uk)) return fp_gemm_once_wrows(p, uk, x, w, bias, y);
    if (p->layout != 0) return run_nhwc(p, uk, x, NULL, w, bias, y);
    if (fp_gemm_use_transposed(p, uk)) return run_nchw_t(p, uk, x, NULL, w, bias, y);
    /* The regular NCHW form broadcasts W's elements: a tile's MR rows of W are read in place through row
     * pointers (each row contiguous in k), so nothing is packed, and every thread reads the caller's W.
     * 9..16 output channels run the tall tile on packed panels (a few KB of weights): left to packing. */
    if (uk->tall && p->cout > uk->mr && p->cout <= uk->tall_mr) return FP_DECLINED;
    return run_nchw(p, uk, x, NULL, w, bias, y);
}
