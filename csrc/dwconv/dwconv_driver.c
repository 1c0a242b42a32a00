/* The depthwise driver, for every ISA: job split, NHWC rows / row pairs / column strips, channel
 * groups for the threads (csrc/pool.c), output alignment and streamed stores, and the NCHW tiles
 * (16 planes transposed into a per-thread [row][W][16] tile, run through the same blocks, transposed
 * back).  The ISA's micro-kernel (fp_dw_ukernel, chosen by fp_dw_select) supplies the blocks, the
 * pixel path, the transposes and what of the above it supports (its caps). */
#include <stdint.h>
#include <string.h>

#include "../epilogue/epilogue.h"
#include "dwconv.h"

/* Output rows oy and oy + 1 by pairs (fp_dw_pair_fn), when the shape allows it. */
static int pair_ok(const fp_conv_problem *p) {
    return p->kh == 3 && p->kw == 3 && p->stride_h == 1 && p->stride_w == 1 && p->dil_h == 1 && p->dil_w == 1;
}

static void nhwc_row2(const fp_dw_ukernel *k, int64_t px, int64_t ow, const float *xrow, const float *w,
                      const fp_dw_geo *g, const float *bias, int64_t c0, int64_t c1, float *yrow) {
    for (int64_t ox = 0; ox < ow; ox += px) {
        const int64_t o = FP_MIN(ox, ow - px), col0 = o - g->pl;
        const int edge = col0 < 0 || col0 + px + 1 >= g->W;
        k->pairs[edge * k->tile_px + px - 1](xrow, col0, w, g, bias, c0, c1, yrow + o * g->C);
    }
}

/* One output row in blocks of px pixels (xrow: input row ky0 at column 0; w: taps of row ky0).  The
 * last block is shifted back to end at ow: it recomputes a few outputs with the same values rather
 * than running a narrower block.  span: input columns a block reads, minus one. */
static void nhwc_row(const fp_dw_ukernel *k, const fp_dw_block_fn *fns, int64_t px, int64_t span, int64_t ow,
                     const float *xrow, const float *w, const fp_dw_geo *g, int64_t nky, const float *bias, int64_t c0,
                     int64_t c1, float *yrow) {
    for (int64_t ox = 0; ox < ow; ox += px) {
        const int64_t o = FP_MIN(ox, ow - px), col0 = o * g->sw - g->pl;
        const int edge = col0 < 0 || col0 + span >= g->W;
        fns[edge * k->tile_px + px - 1](xrow, col0, w, g, nky, bias, c0, c1, yrow + o * g->C);
    }
}

/* With an epilogue on an output the kernel would stream: rows go through a per-thread buffer (scratch slot
 * 1) placed at y's address modulo 64 bytes, so that the blocks see the channel grid they would see in y;
 * the epilogue runs there and the rows stream into y (fp_ep_tile_out).  rows x ow pixels; NULL on failure. */
static float *ep_rows(int64_t rows, const fp_conv_problem *p, const float *y, int *failed) {
    const int64_t mis = (int64_t)((uintptr_t)y % 64) / (int64_t)sizeof(float);
    float *buf = (float *)fp_scratch_or_fail(1, (int64_t)sizeof(float) * (rows * p->ow * p->cout + 16), failed);
    return buf ? buf + mis : NULL; /* scratch is 64-byte aligned */
}

/* One-shot NHWC: the caller's [cout][kh*kw] weights packed into [tap][cpad] (as a layer packs them, dwconv.c)
 * by each thread that runs a chunk of the call, once per thread and call, into its scratch slot 2, with the
 * non-finite check on the same registers: no pass on the caller before the split.  `call` is the call's
 * number (each one-shot call takes a new one), so a thread's second chunk of a call finds its packing done. */
static int64_t nhwc_once_calls;
static _Thread_local int64_t packed_call = -1;
static _Thread_local const float *packed_at;

static const float *nhwc_once_weights(const fp_conv_problem *p, const float *wraw, int64_t call, int *nonfinite,
                                      int *failed) {
    const int64_t taps = p->kh * p->kw, cpad = fp_dw_cpad(p);
    float *w = (float *)fp_scratch_or_fail(2, (int64_t)sizeof(float) * taps * cpad, failed);
    if (!w) return NULL;
    if (packed_call != call || packed_at != w) {
        if (fp_pack_transpose_check(wraw, taps, p->cout, taps, cpad, w)) __atomic_store_n(nonfinite, 1, __ATOMIC_RELAXED);
        packed_call = call;
        packed_at = w;
    }
    return w;
}

/* Shared state of an NHWC call; a job is one output row's channel group. */
typedef struct row_task {
    const fp_conv_problem *p;
    const float *x, *w, *bias;
    float *y;
    fp_dw_geo g;
    int64_t m, groups, gch, jobs, nchunks, px, rpu, top, upi;
    int64_t bs; /* channel groups end bs channels early: on output cache lines with several threads */
    const fp_dw_ukernel *k;
    const fp_dw_block_fn *fns; /* [edge][px - 1] */
    int failed;
    const fp_ep *ep; /* the call's epilogue (csrc/epilogue), applied to each finished row */
    int ep_stream;   /* with ep: rows through a buffer, then streamed into y (ep_rows) */
    const float *wraw; /* one-shot: the caller's weights, packed by each thread (nhwc_once_weights) */
    int64_t call;
    int nonfinite;
} row_task;

static void row_chunk(void *ctx, int64_t chunk, int worker) {
    (void)worker;
    row_task *rt = (row_task *)ctx;
    const fp_conv_problem *p = rt->p;
    const float *x = rt->x, *w = rt->w, *bias = rt->bias;
    if (rt->wraw && !(w = nhwc_once_weights(p, rt->wraw, rt->call, &rt->nonfinite, &rt->failed))) return;
    float *y = rt->y;
    const int64_t m = rt->m, C = p->cout, cpad = rt->g.cpad, px = rt->px;
    const int64_t span = (px - 1) * p->stride_w + (p->kw - 1) * p->dil_w;
    const fp_dw_ukernel *k = rt->k;
    float *acc = NULL; /* the pixels' accumulator row, for kernels that want one */
    if (k->caps & FP_DW_PIXEL_ACC) {
        acc = (float *)fp_scratch_or_fail(0, (int64_t)sizeof(float) * C, &rt->failed);
        if (!acc) return;
    }
    float *rbuf = rt->ep_stream ? ep_rows(2, p, y, &rt->failed) : NULL;
    if (rt->ep_stream && !rbuf) return;
    int64_t job_lo, job_hi;
    fp_chunk_range(rt->jobs, rt->nchunks, chunk, &job_lo, &job_hi);
    for (int64_t job = job_lo; job < job_hi; job++) {
        const int64_t unit = job / rt->groups, grp = job % rt->groups, upi = rt->upi, top = rt->top;
        /* units: the first `top` rows one by one (their top taps are padding), then pairs */
        const int64_t n = unit / upi, u = unit % upi;
        const int64_t oy0 = u < top ? u : top + (u - top) * rt->rpu;
        const int64_t oy1 = FP_MIN(p->oh, u < top ? u + 1 : oy0 + rt->rpu);
        /* group boundaries on the shifted vector grid: two threads never write one cache line */
        const int64_t c0 = grp == 0 ? 0 : grp * rt->gch - rt->bs;
        const int64_t c1 = grp == rt->groups - 1 ? C : FP_MIN(C, (grp + 1) * rt->gch - rt->bs);
        const float *xn = x + n * p->h * p->w * p->cin;
        if (oy1 - oy0 == 2) {
            const int64_t iyb = oy0 - p->pad_top; /* pairs: stride and dilation 1 */
            if (iyb >= 0 && iyb + 3 < p->h) {
                float *yrow = y + (n * p->oh + oy0) * p->ow * C;
                nhwc_row2(k, px, p->ow, xn + iyb * p->w * C, w, &rt->g, bias, c0, c1, rbuf ? rbuf : yrow);
                if (rbuf) fp_ep_tile_out(rt->ep, rbuf + c0, C, yrow + c0, C, 2 * p->ow, c1 - c0, c0, 0, 1, 1);
                else if (rt->ep) fp_ep_tile(rt->ep, yrow + c0, 2 * p->ow, c1 - c0, C, c0, 0, 1);
                continue;
            }
        }
        for (int64_t oy = oy0; oy < oy1; oy++) {
            const int64_t iyb = oy * p->stride_h - p->pad_top;
            int64_t ky0, ky1;
            fp_tap_range(iyb, p->kh, p->dil_h, p->h, &ky0, &ky1);
            float *yrow = y + (n * p->oh + oy) * p->ow * C, *dst = rbuf ? rbuf : yrow;
            if (!(k->caps & FP_DW_NHWC_BLOCKS) || m != 1 || ky1 <= ky0)
                k->pixels(p, xn, w, bias, m, iyb, ky0, ky1, 0, p->ow, c0, c1, dst, acc);
            else
                nhwc_row(k, rt->fns, px, span, p->ow, xn + (iyb + ky0 * p->dil_h) * p->w * C, w + ky0 * p->kw * cpad,
                         &rt->g, ky1 - ky0, bias, c0, c1, dst);
            if (rbuf) fp_ep_tile_out(rt->ep, rbuf + c0, C, yrow + c0, C, p->ow, c1 - c0, c0, 0, 1, 1);
            else if (rt->ep) fp_ep_tile(rt->ep, yrow + c0, p->ow, c1 - c0, C, c0, 0, 1);
        }
    }
    if (rt->g.nt || rbuf) k->fence(); /* streamed stores are weakly ordered: drain them before the chunk ends */
}

/* Column strips (multiplier 1): a job is one block of px output columns x one channel group, walked
 * down every output row (row pairs where the shape allows).  The input a step reads, (rows) x
 * (px + 2) pixels x the group's channels, stays in L1, so the rows that the next step shares with
 * this one (2 of 4 for pairs, 1 of 3 for single rows) come from L1 instead of L2: each input byte
 * crosses from L2 about (px + 2) / px times instead of 2-3 times.  The last block is narrower
 * (every width up to the kernel's tile_px has its own block), so no two jobs write the same output. */
typedef struct strip_task {
    const fp_conv_problem *p;
    const float *x, *w, *bias;
    float *y;
    fp_dw_geo g;
    int64_t groups, gch, cols, px, jobs, nchunks;
    int64_t bs; /* channel groups end bs channels early (see row_task) */
    int pair;
    const fp_dw_ukernel *k;
    const fp_dw_block_fn *fns; /* [edge][px - 1] */
    const fp_ep *ep; /* the call's epilogue, applied to each finished block */
    int ep_stream;   /* with ep: blocks through a buffer, then streamed into y (ep_rows) */
    int failed;
    const float *wraw; /* one-shot, as row_task's */
    int64_t call;
    int nonfinite;
} strip_task;

static void strip_chunk(void *ctx, int64_t chunk, int worker) {
    (void)worker;
    strip_task *st = (strip_task *)ctx;
    const fp_conv_problem *p = st->p;
    const fp_dw_ukernel *k = st->k;
    const int64_t C = p->cout, W = p->w, cpad = st->g.cpad, OH = p->oh, OW = p->ow;
    const float *w = st->w;
    if (st->wraw && !(w = nhwc_once_weights(p, st->wraw, st->call, &st->nonfinite, &st->failed))) return;
    /* a buffered block: its two rows OW pixels apart, as in y (pairs write the second row there) */
    float *sbuf = st->ep_stream ? ep_rows(2, p, st->y, &st->failed) : NULL;
    if (st->ep_stream && !sbuf) return;
    int64_t job_lo, job_hi;
    fp_chunk_range(st->jobs, st->nchunks, chunk, &job_lo, &job_hi);
    for (int64_t job = job_lo; job < job_hi; job++) {
        const int64_t n = job / (st->groups * st->cols), rem = job % (st->groups * st->cols);
        /* column blocks outer: a thread's consecutive jobs are neighbouring columns of all channels,
         * so two threads share output lines only where their columns meet (a channel split would
         * share one on every pixel when the groups are not on output lines) */
        const int64_t grp = rem % st->groups, o = (rem / st->groups) * st->px, pw = FP_MIN(st->px, OW - o);
        const int64_t c0 = grp == 0 ? 0 : grp * st->gch - st->bs;
        const int64_t c1 = grp == st->groups - 1 ? C : FP_MIN(C, (grp + 1) * st->gch - st->bs);
        const int64_t col0 = o * p->stride_w - p->pad_left, span = (pw - 1) * p->stride_w + (p->kw - 1) * p->dil_w;
        const int edge = col0 < 0 || col0 + span >= W;
        const float *xn = st->x + n * p->h * W * C;
        float *yn = st->y + (n * OH * OW + o) * C;
        for (int64_t oy = 0; oy < OH;) {
            const int64_t iyb = oy * p->stride_h - p->pad_top;
            if (st->pair && oy + 1 < OH && iyb >= 0 && iyb + 3 < p->h) {
                k->pairs[edge * k->tile_px + pw - 1](xn + iyb * W * C, col0, w, &st->g, st->bias, c0, c1,
                                                     sbuf ? sbuf : yn + oy * OW * C);
                for (int64_t r = 0; st->ep && r < 2; r++) {
                    if (sbuf) fp_ep_tile_out(st->ep, sbuf + r * OW * C + c0, C, yn + (oy + r) * OW * C + c0, C, pw, c1 - c0, c0, 0, 1, 1);
                    else fp_ep_tile(st->ep, yn + (oy + r) * OW * C + c0, pw, c1 - c0, C, c0, 0, 1);
                }
                oy += 2;
                continue;
            }
            int64_t ky0, ky1;
            fp_tap_range(iyb, p->kh, p->dil_h, p->h, &ky0, &ky1);
            if (ky1 <= ky0) { /* (a row all in the padding: in place) */
                k->pixels(p, xn, w, st->bias, 1, iyb, ky0, ky1, o, o + pw, c0, c1, st->y + (n * OH + oy) * OW * C, NULL);
                if (st->ep) fp_ep_tile(st->ep, yn + oy * OW * C + c0, pw, c1 - c0, C, c0, 0, 1);
            } else {
                st->fns[edge * k->tile_px + pw - 1](xn + (iyb + ky0 * p->dil_h) * W * C, col0, w + ky0 * p->kw * cpad,
                                                    &st->g, ky1 - ky0, st->bias, c0, c1, sbuf ? sbuf : yn + oy * OW * C);
                if (sbuf) fp_ep_tile_out(st->ep, sbuf + c0, C, yn + oy * OW * C + c0, C, pw, c1 - c0, c0, 0, 1, 1);
                else if (st->ep) fp_ep_tile(st->ep, yn + oy * OW * C + c0, pw, c1 - c0, C, c0, 0, 1);
            }
            oy += 1;
        }
    }
    if (st->g.nt || sbuf) k->fence();
}

#ifndef FP_DW_NT_BYTES
#define FP_DW_NT_BYTES (((int64_t)3 << 20) / 2)
#endif

#ifndef FP_DW_STRIP_BYTES
#define FP_DW_STRIP_BYTES 32768
#endif

/* Column strips for multiplier 1 (see strip_chunk). */
static int nhwc_strips(const fp_dw_ukernel *k, const fp_conv_problem *p, const float *x, const float *w,
                       const float *wraw, int64_t call, const float *bias, float *y, const fp_dw_geo *g, int64_t px,
                       int64_t T, int64_t bs, int ep_stream) {
    strip_task t;
    memset(&t, 0, sizeof t);
    t.p = p; t.x = x; t.w = w; t.wraw = wraw; t.call = call; t.bias = bias; t.y = y; t.g = *g;
    t.ep = fp_ep_current(); /* on the calling thread */
    t.ep_stream = ep_stream;
    t.px = px;
    t.bs = bs;
    t.pair = pair_ok(p);
    t.k = k;
    t.fns = k->blocks(p);
    t.cols = FP_CEIL_DIV(p->ow, px);
    const int64_t C = p->cout, cblocks = FP_CEIL_DIV(C, FP_DW_CB);
    /* input rows one step reads (4 for pairs), each (px - 1) * stride + reach pixels wide */
    const int64_t rows = t.pair ? 4 : (p->kh - 1) * p->dil_h + 1;
    const int64_t pix = (px - 1) * p->stride_w + (p->kw - 1) * p->dil_w + 1;
    const int64_t vmax = FP_MAX(1, FP_DW_STRIP_BYTES / (rows * pix * FP_DW_CB * (int64_t)sizeof(float)));
    int64_t groups = FP_CEIL_DIV(cblocks, vmax);
    /* enough jobs for the threads: narrower channel groups when there are few column blocks */
    if (T > 1) groups = FP_MAX(groups, FP_MIN(cblocks, FP_CEIL_DIV(2 * T, p->n * t.cols)));
    /* few jobs: as many for each thread (960@7 made 5 groups, 3 jobs on one thread and 2 on the other) */
    while (T > 1 && groups < cblocks && p->n * t.cols * groups < 8 * T && (p->n * t.cols * groups) % T) groups++;
    t.gch = FP_CEIL_DIV(cblocks, groups) * FP_DW_CB;
    t.groups = FP_CEIL_DIV(C, t.gch);
    t.jobs = p->n * t.groups * t.cols;
    t.nchunks = fp_chunk_count(t.jobs, (int)T);
    fp_pool_run((int)T, t.nchunks, strip_chunk, &t);
    if (t.failed) return FP_ERR_ALLOC;
    return !wraw ? FP_OK : t.nonfinite ? FP_RAN_NONFINITE : FP_RAN_FINITE;
}

/* NHWC: a job is one output row (or row pair) of one channel group. */
static int nhwc(const fp_dw_ukernel *k, const fp_conv_problem *p, const float *x, const float *w, const float *wraw,
                const float *bias, float *y) {
    const int64_t m = p->cout / p->cin, C = p->cout, T = fp_threads(p);
    const int64_t sw = p->stride_w, dw = p->dil_w;
    /* Few rows (7x7 maps) would leave a thread idle: split rows into channel groups too. */
    const int64_t cblocks = FP_CEIL_DIV(C, FP_DW_CB);
    const int pairs = k->pairs && (k->caps & FP_DW_NHWC_BLOCKS) && pair_ok(p);
    const int64_t rpu = m == 1 && pairs ? 2 : 1; /* output rows per job */
    const int64_t top = rpu == 2 ? FP_MIN(p->oh, p->pad_top) : 0;
    const int64_t upi = top + FP_CEIL_DIV(p->oh - top, rpu), units = p->n * upi;
    const int split = (k->caps & FP_DW_GROUPS) && T > 1 && units < 16 * T;
    const int64_t groups = split ? FP_MIN(cblocks, FP_CEIL_DIV(16 * T, units)) : 1;
    const int64_t gch = FP_CEIL_DIV(cblocks, groups) * FP_DW_CB;
    row_task t;
    memset(&t, 0, sizeof t);
    t.p = p; t.x = x; t.w = w; t.wraw = wraw; t.bias = bias; t.y = y;
    if (wraw) t.call = __atomic_fetch_add(&nhwc_once_calls, 1, __ATOMIC_RELAXED);
    t.ep = fp_ep_current(); /* on the calling thread */
    t.g = (fp_dw_geo){C, fp_dw_cpad(p), p->w, p->kw, sw, dw, p->dil_h, p->pad_left, p->cin, p->ow, 0, 0, p->relu};
    /* Channel blocks are shifted so that full vectors are 64-byte aligned: the loads' when the
     * output is cached (with unmasked loads a misaligned input costs 15 % in L1, a misaligned store
     * nothing measurable), the stores' when they stream.  The shift costs one more (partial) vector
     * per pixel: worth it from 6 vectors a pixel on (32@112: shifted 50 % slower).
     * Outputs over 1.5 MiB are streamed: then the input stays in L2 (144@56: 56 -> 82 GFLOP/s raw;
     * the stride-2 layer, whose input alone overflows L2, lost 5 % with it, so the rule is on the
     * output).  Streaming stores need every full vector 64-byte aligned: pixels a multiple of 64
     * bytes apart and the first one aligned by the shift (or by the array itself). */
    const int aligned = (k->caps & FP_DW_ALIGNED) != 0; /* the kernel shifts its channel grid, streams stores */
    const int64_t ymis = (int64_t)(((uintptr_t)y / sizeof(float)) % 16);
    const int64_t xmis = (int64_t)(((uintptr_t)x / sizeof(float)) % 16);
    const int y4 = aligned && (uintptr_t)y % sizeof(float) == 0, x4 = aligned && (uintptr_t)x % sizeof(float) == 0;
    const int64_t out_bytes = (int64_t)sizeof(float) * p->n * p->oh * p->ow * C;
    const int stream = y4 && C % 16 == 0 && m == 1 && out_bytes > FP_DW_NT_BYTES;
    const int by_x = !stream && m == 1 && x4;
    t.g.cs = C % 16 == 0 && C >= 96 && (by_x || y4) ? (by_x ? xmis : ymis) : 0;
    t.g.nt = stream && t.g.cs == ymis && !t.ep;
    t.ep_stream = stream && t.g.cs == ymis && t.ep && k->fence; /* the epilogue's rows then stream (ep_rows) */
    /* With several threads, group boundaries fall on output cache lines (two threads writing one
     * line made 192@28 slower at 2 threads than at 1); with one, on the load grid (no extra vector). */
    t.bs = T > 1 && y4 && C % 16 == 0 ? ymis : t.g.cs;
    t.m = m; t.groups = FP_CEIL_DIV(C, gch); t.gch = gch;
    t.rpu = rpu;
    t.top = top;
    t.upi = upi;
    t.jobs = units * t.groups;
    t.nchunks = fp_chunk_count(t.jobs, (int)T);
    t.px = k->px(p->ow);
    t.k = k;
    t.fns = k->blocks(p);
    /* Strips pay where rows are wide in bytes and pairs share rows (raw call, offsets as NumPy's:
     * 144@56 +5-7 %, 192@28 +4-8 %, 960@7 +3-5 %; 32@112 -19 % and stride 2 -4 %, so those keep rows). */
    /* With several threads, strips split columns between them; maps with fewer than 2 column blocks
     * per thread keep the row order, which splits rows (2 threads, raw: 384@14 9.6 us in rows
     * against 10.5-21 us in strips, 960@7 9.0 against 13.1-13.7). */
    if (m == 1 && C >= 64 && pairs && (T == 1 || FP_CEIL_DIV(p->ow, t.px) >= 2 * T)) {
        const int rc = nhwc_strips(k, p, x, w, wraw, t.call, bias, y, &t.g, t.px, T, t.bs, t.ep_stream);
        if (t.g.nt || t.ep_stream) k->fence();
        return rc;
    }
    fp_pool_run((int)T, t.nchunks, row_chunk, &t);
    if (t.g.nt || t.ep_stream) k->fence();
    if (t.failed) return FP_ERR_ALLOC;
    return !wraw ? FP_OK : t.nonfinite ? FP_RAN_NONFINITE : FP_RAN_FINITE;
}

/* NCHW through the NHWC blocks: a job is 16 channels x a band of output rows.  Input rows of the
 * 16 planes are transposed, as they are first needed, into a per-thread tile [row][W][16] (L1/L2
 * resident), each output row is computed into a [ow][16] row buffer by the kernel's blocks and
 * transposed back into the 16 output planes.  Vectors then run along channels, so 14x14 and 7x7
 * planes keep every lane busy, and each input row is read from memory once per band. */
typedef struct tile_task {
    const fp_conv_problem *p;
    const float *x, *w, *bias;
    float *y;
    fp_dw_geo g;
    const fp_dw_ukernel *k;
    const fp_dw_block_fn *fns;
    fp_dw_bands b;
    int64_t m, px, span, out_rows, nchunks;
    int pair, failed;
    const fp_ep *ep; /* the call's epilogue, applied to the output rows as they are transposed back */
    const float *wraw; /* one-shot (fp_dw_drive_unpacked): the caller's [cout][kh*kw] weights, packed per chunk */
    int nonfinite;     /* with wraw: some weight a chunk packed is NaN or +-Inf */
} tile_task;

static void tile_chunk(void *ctx, int64_t chunk, int worker) {
    (void)worker;
    tile_task *tt = (tile_task *)ctx;
    const fp_conv_problem *p = tt->p;
    const int64_t W = p->w, C = p->cout, OW = p->ow, OH = p->oh, m = tt->m, taps = p->kh * p->kw;
    const fp_dw_geo g = tt->g;
    const int64_t cpad = g.cpad;
    /* one-shot: the chunk transposes the taps of the channels its jobs compute into [tap][cpad] beside its
     * tile, as a layer packs them (dwconv.c), from the caller's weights: each thread packs only its own
     * channels, after the split, with the non-finite check on the same registers (packed by the caller
     * before the split, a 7-13 us layer such as 960 @7x7 ran no faster at 2 threads than at 1).  One
     * transposition per chunk: one per job cost 60 calls on 960 channels. */
    const int64_t tbytes = (int64_t)sizeof(float) *
                           (16 * (tt->b.tile_rows * W + (tt->out_rows + 1) * OW) + (tt->wraw ? (taps + 1) * cpad : 0));
    float *tile = (float *)fp_scratch_or_fail(0, tbytes, &tt->failed);
    if (!tile) return;
    float *rowbuf = tile + tt->b.tile_rows * W * 16;
    int64_t job_lo, job_hi;
    fp_chunk_range(tt->b.jobs, tt->nchunks, chunk, &job_lo, &job_hi);
    const float *wts = tt->w;
    if (tt->wraw && job_lo < job_hi) {
        float *wbuf = rowbuf + (tt->out_rows + 1) * OW * 16; /* (taps + 1) * cpad floats: see below */
        /* jobs run image by image, channel block by channel block: one image's jobs cover a range of
         * blocks, jobs of two images all of them */
        const int64_t per_image = tt->b.cblocks * tt->b.bands;
        const int one_image = job_lo / per_image == (job_hi - 1) / per_image;
        const int64_t c_lo = one_image ? fp_dw_job_at(p, &tt->b, job_lo).cb : 0;
        const int64_t c_hi = one_image ? FP_MIN(C, fp_dw_job_at(p, &tt->b, job_hi - 1).cb + 16) : C;
        /* rows [c_lo, c_hi) land in their own columns; the zero lanes after them run up to cpad floats
         * past c_lo's row, into the next row's unused columns or the buffer's last cpad floats */
        if (fp_pack_transpose_check(tt->wraw + c_lo * taps, taps, c_hi - c_lo, taps, cpad, wbuf + c_lo))
            __atomic_store_n(&tt->nonfinite, 1, __ATOMIC_RELAXED);
        wts = wbuf;
    }
    for (int64_t job = job_lo; job < job_hi; job++) {
        const fp_dw_job jb = fp_dw_job_at(p, &tt->b, job);
        const int64_t n = jb.n, cb = jb.cb, nch = jb.nch, oy0 = jb.oy0, oy1 = jb.oy1, iy_lo = jb.iy_lo, iy_end = jb.iy_hi;
        const float *xpl[16];
        float *ypl[16];
        for (int64_t l = 0; l < nch; l++) {
            xpl[l] = tt->x + (n * p->cin + (cb + l) / m) * p->h * W;
            ypl[l] = tt->y + (n * C + cb + l) * OH * OW;
        }
        float b16[16];
        for (int64_t l = 0; l < 16; l++) b16[l] = tt->bias && l < nch ? tt->bias[cb + l] : 0.0f;
        const float *wc = wts + cb; /* tap 0 of channel block cb, taps cpad apart */
        int64_t done = iy_lo; /* input rows [iy_lo, done) are in the tile */
        int64_t ob = oy0;     /* output rows [ob, oy) wait in the row buffer */
        for (int64_t oy = oy0; oy < oy1;) {
            const int64_t iyb = oy * p->stride_h - p->pad_top;
            /* two rows at once where both have all 3 kernel rows inside (fp_dw_pair_fn) */
            const int two = tt->pair && oy + 1 < oy1 && iyb >= 0 && iyb + 3 < p->h;
            const int64_t need = FP_MIN(p->h, iyb + (two ? 4 : (p->kh - 1) * p->dil_h + 1));
            if (done < need) {
                /* rows are consecutive pixels of a plane: transpose at least 256 of them at once */
                const int64_t upto = FP_MIN(iy_end, FP_MAX(need, done + FP_CEIL_DIV(256, W)));
                tt->k->tile_in(xpl, nch, done * W, (upto - done) * W, tile + (done - iy_lo) * W * 16);
                done = upto;
            }
            if (two) {
                nhwc_row2(tt->k, tt->px, OW, tile + (iyb - iy_lo) * W * 16, wc, &g, b16, 0, 16,
                          rowbuf + (oy - ob) * OW * 16);
                oy += 2;
            } else {
                int64_t ky0, ky1;
                fp_tap_range(iyb, p->kh, p->dil_h, p->h, &ky0, &ky1);
                const int64_t nky = ky1 > ky0 ? ky1 - ky0 : 0;
                const float *xrow = nky ? tile + (iyb + ky0 * p->dil_h - iy_lo) * W * 16 : tile;
                nhwc_row(tt->k, tt->fns, tt->px, tt->span, OW, xrow, wc + (nky ? ky0 : 0) * p->kw * cpad, &g, nky,
                         b16, 0, 16, rowbuf + (oy - ob) * OW * 16);
                oy += 1;
            }
            if (oy - ob >= tt->out_rows || oy == oy1) {
                tt->k->tile_out(rowbuf, (oy - ob) * OW, ypl, nch, ob * OW);
                if (tt->ep) fp_ep_tile(tt->ep, ypl[0] + ob * OW, nch, (oy - ob) * OW, OH * OW, cb, 1, 0);
                ob = oy;
            }
        }
    }
}

static int nchw_tiled(const fp_dw_ukernel *k, const fp_conv_problem *p, const float *x, const float *w,
                      const float *wraw, const float *bias, float *y) {
    const int64_t T = fp_threads(p), W = p->w;
    tile_task t;
    memset(&t, 0, sizeof t);
    t.p = p; t.x = x; t.w = w; t.wraw = wraw; t.bias = bias; t.y = y;
    t.g = (fp_dw_geo){16, fp_dw_cpad(p), W, p->kw, p->stride_w, p->dil_w, p->dil_h, p->pad_left, 16, p->ow, 0, 0, p->relu};
    t.ep = fp_ep_current(); /* on the calling thread */
    t.k = k;
    t.fns = k->blocks(p);
    t.m = p->cout / p->cin;
    t.px = k->px(p->ow);
    t.span = (t.px - 1) * p->stride_w + (p->kw - 1) * p->dil_w;
    t.b = fp_dw_plan(p, T);
    /* output rows transposed back together (the row buffer holds one more: pairs may overshoot) */
    t.out_rows = FP_MIN(t.b.brows, FP_CEIL_DIV(64, p->ow));
    t.pair = k->pairs && pair_ok(p);
    t.nchunks = fp_chunk_count(t.b.jobs, (int)T);
    fp_pool_run((int)T, t.nchunks, tile_chunk, &t);
    if (t.failed) return FP_ERR_ALLOC;
    return !wraw ? FP_OK : t.nonfinite ? FP_RAN_NONFINITE : FP_RAN_FINITE;
}


int fp_dw_drive(const fp_dw_ukernel *k, const fp_conv_problem *p, const float *x, const float *w, const float *bias,
                float *y) {
    return p->layout != 0 ? nhwc(k, p, x, w, NULL, bias, y) : nchw_tiled(k, p, x, w, NULL, bias, y);
}

int fp_dw_drive_unpacked(const fp_dw_ukernel *k, const fp_conv_problem *p, const float *x, const float *w,
                         const float *bias, float *y) {
    return p->layout != 0 ? nhwc(k, p, x, NULL, w, bias, y) : nchw_tiled(k, p, x, NULL, w, bias, y);
}
