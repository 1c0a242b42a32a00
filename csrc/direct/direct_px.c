/* Direct KxK convolution with output pixels in the vector lanes, float32, NCHW and NHWC: the driver of
 * the convpx family (docs/direct.md, "Few input channels").
 *
 * For layers with few input channels per group (the 3-channel stems: 3x3 s2 3->16, 7x7 s2 3->64, 3x3
 * 3->32) the reduction of a tile is only cin x kh x kw = 27 or 147 steps, and direct.c's tiles (output
 * channels in the lanes) spend more time loading, storing and transposing than accumulating.  Here
 * each accumulator is one output channel's run of consecutive pixels: the input comes from the same
 * per-thread strip as direct.c's (stride phases split, horizontal padding in place, vertical borders by
 * tap range), read as whole vectors, and the weights are broadcast.  A tile's mc channels x nv pixel
 * vectors land channel-major in an L1 buffer; per pixel tile all output channels (up to FP_PX_CHUNK at
 * a time) are computed before the buffer goes out: as whole NCHW row pieces, or transposed into NHWC
 * pixel rows.  The fused epilogue (csrc/epilogue) runs on that buffer. */
#include <string.h>

#include "../epilogue/epilogue.h"
#include "direct_px.h"

static const fp_px_ukr *pick(int isa) { return (const fp_px_ukr *)fp_kernel_pick("convpx", 0, isa); }

/* Input channels per group up to which the convpx kernels run by default, on NCHW data (docs/direct.md: measured
 * against direct.c's tiles, Cin 1..16 x 3x3, 5x5, 7x7 x stride 1, 2 x 32, 64 output channels, AVX-512 and AVX2:
 * 1.0-2.8x up to 8 channels, mixed from 12).  NHWC stays with direct.c's tiles, which store NHWC straight from
 * their accumulators while these transpose theirs (0.6-0.95x at 96x96). */
#define FP_PX_MAX_CIN 8

static int applies(const fp_conv_problem *p, int isa, int f64) {
    (void)isa;
    if (!fp_direct_strip_applies(p, f64)) return 0;
    if (fp_kernel_forcing() && fp_kernel_forced("convpx", 0)) return 1; /* tests: every problem the strip serves */
    return p->layout == 0 && p->cin / p->groups <= FP_PX_MAX_CIN;
}

static const char *kernel_name(const fp_conv_problem *p, int isa, int f64) {
    (void)p; (void)f64;
    return pick(isa)->k.name;
}

static int64_t nblocks(const fp_conv_problem *p, int mc) { return FP_CEIL_DIV(p->cout / p->groups, mc); }

static int64_t packed_bytes(const fp_conv_problem *p, int isa, int f64) {
    (void)f64;
    const int mc = pick(isa)->mc;
    return (int64_t)sizeof(float) * p->groups * nblocks(p, mc) * (p->cin / p->groups) * p->kh * p->kw * mc;
}

/* [group][block of mc output channels][cin_g][kh * kw][mc], lanes past the group's Cout zero.  The weights
 * of these layers are a few KiB: one pass, no threads. */
static int pack(const fp_conv_problem *p, int isa, int f64, const void *wv, void *dst) {
    (void)f64;
    const int mc = pick(isa)->mc;
    const float *w = (const float *)wv;
    float *d = (float *)dst;
    const int64_t cin_g = p->cin / p->groups, cout_g = p->cout / p->groups, T = p->kh * p->kw, nb = nblocks(p, mc);
    for (int64_t g = 0; g < p->groups; g++)
        for (int64_t b = 0; b < nb; b++)
            for (int64_t ci = 0; ci < cin_g; ci++)
                for (int64_t t = 0; t < T; t++, d += mc)
                    for (int c = 0; c < mc; c++) {
                        const int64_t co = b * mc + c;
                        d[c] = co < cout_g ? w[((g * cout_g + co) * cin_g + ci) * T + t] : 0.0f;
                    }
    return FP_OK;
}

/* float32 tile copy of the running ISA (csrc/epilogue): rows x cols from src (lds apart) to dst (ld). */
static fp_ep_copy_fn copy_fn(int isa) {
#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
    if (isa == FP_ISA_AVX512) return fp_ep_copy_avx512;
    if (isa == FP_ISA_AVX2) return fp_ep_copy_avx2;
#endif
    (void)isa;
    return fp_ep_copy_scalar;
}

/* One call's shared state; job = (image, group, row block). */
typedef struct px_task {
    const fp_conv_problem *p;
    const fp_px_ukr *uk;
    int isa;
    const float *x, *w, *bpad;
    int64_t wlanes, wbs, wgs; /* weights: lanes per (channel, tap) step, floats per block of wlanes channels, per group */
    const int64_t *toff;
    float *y;
    fp_dstrip S;
    int64_t R, nrb, nb, strip_bytes;
    int failed;
    const fp_ep *ep;
} px_task;

/* The finished channel chunk [c_abs, c_abs + nch) of a pixel tile, channel-major in tb (FP_PX_TILE_MAX
 * floats a channel), into y at output row oy, columns [ox0, ox0 + npx): the epilogue ep (NULL: none) on the
 * buffer, then NCHW row pieces, or (NHWC) the buffer transposed into pixel rows first. */
static void store_chunk(const px_task *t, const fp_ep *ep, float *tb, float *pb, int64_t n, int64_t c_abs,
                        int64_t nch, int64_t oy, int64_t ox0, int64_t npx) {
    const fp_conv_problem *p = t->p;
    const fp_ep_copy_fn copy = copy_fn(t->isa);
    if (p->layout == 0) {
        float *dst = t->y + ((n * p->cout + c_abs) * p->oh + oy) * p->ow + ox0;
        const int64_t ld = p->oh * p->ow;
        if (ep)
            fp_ep_tile_out(ep, tb, FP_PX_TILE_MAX, dst, ld, nch, npx, c_abs, 1, 0, 0);
        else
            copy(tb, FP_PX_TILE_MAX, dst, ld, nch, npx, 0);
        return;
    }
    float *dst = t->y + ((n * p->oh + oy) * p->ow + ox0) * p->cout + c_abs;
    if (t->isa == FP_ISA_AVX512 && !ep && nch % 16 == 0) {
        /* whole 16-channel vectors per pixel: transposed straight into y */
        for (int64_t j0 = 0; j0 < npx; j0 += 16)
            fp_direct_load_nchw_avx512(tb + j0, FP_PX_TILE_MAX, (int)FP_MIN(16, npx - j0), nch, dst + j0 * p->cout,
                                       p->cout);
        return;
    }
    if (t->isa == FP_ISA_AVX512) {
        for (int64_t j0 = 0; j0 < npx; j0 += 16)
            fp_direct_load_nchw_avx512(tb + j0, FP_PX_TILE_MAX, (int)FP_MIN(16, npx - j0), nch, pb + j0 * FP_PX_CHUNK,
                                       FP_PX_CHUNK);
    } else {
        for (int64_t j = 0; j < npx; j++)
            for (int64_t c = 0; c < nch; c++) pb[j * FP_PX_CHUNK + c] = tb[c * FP_PX_TILE_MAX + j];
    }
    if (ep)
        fp_ep_tile_out(ep, pb, FP_PX_CHUNK, dst, p->cout, npx, nch, c_abs, 0, 1, 0);
    else
        copy(pb, FP_PX_CHUNK, dst, p->cout, npx, nch, 0);
}

/* Input rows [iy, iy + nrows) of image n, group g (those inside the image) into L2. */
static void prefetch_rows(const fp_conv_problem *p, const float *x, int64_t n, int64_t g, int64_t cin_g, int64_t iy,
                          int64_t nrows) {
    for (int64_t r = FP_MAX(iy, 0); r < FP_MIN(iy + nrows, p->h); r++) {
        if (p->layout == 0) {
            for (int64_t c = 0; c < cin_g; c++) {
                const char *row = (const char *)(x + ((n * p->cin + g * cin_g + c) * p->h + r) * p->w);
                for (int64_t b = 0; b < (int64_t)sizeof(float) * p->w; b += 64) __builtin_prefetch(row + b, 0, 2);
            }
        } else {
            const char *row = (const char *)(x + (n * p->h + r) * p->w * p->cin + g * cin_g);
            const int64_t bytes = (int64_t)sizeof(float) * ((p->w - 1) * p->cin + cin_g);
            for (int64_t b = 0; b < bytes; b += 64) __builtin_prefetch(row + b, 0, 2);
        }
    }
}

/* The output lines a chunk will store, requested (for writing) before its tiles run, so that the store
 * does not wait for lines that a large output has to fetch from L3 or memory (as direct.c's NCHW tiles). */
static void prefetch_out(const px_task *t, int64_t n, int64_t c_abs, int64_t nch, int64_t oy, int64_t ox0,
                         int64_t npx) {
    const fp_conv_problem *p = t->p;
    if (p->layout == 0) {
        const float *y = t->y + ((n * p->cout + c_abs) * p->oh + oy) * p->ow + ox0;
        for (int64_t c = 0; c < nch; c++)
            for (int64_t j = 0; j < npx + 15; j += 16)
                __builtin_prefetch(y + c * p->oh * p->ow + FP_MIN(j, npx - 1), 1, 3);
    } else {
        const float *y = t->y + ((n * p->oh + oy) * p->ow + ox0) * p->cout + c_abs;
        for (int64_t j = 0; j < npx; j++)
            for (int64_t c = 0; c < nch + 15; c += 16)
                __builtin_prefetch(y + j * p->cout + FP_MIN(c, nch - 1), 1, 3);
    }
}

static void px_job(void *ctx, int64_t job, int worker) {
    px_task *t = (px_task *)ctx;
    (void)worker;
    const fp_conv_problem *p = t->p;
    const fp_px_ukr *uk = t->uk;
    float *strip = (float *)fp_scratch_or_fail(0, t->strip_bytes, &t->failed);
    if (!strip) return;
    float tb[FP_PX_CHUNK * FP_PX_TILE_MAX] __attribute__((aligned(64))); /* channel-major tile */
    float pb[FP_PX_TILE_MAX * FP_PX_CHUNK] __attribute__((aligned(64))); /* NHWC: pixel-major tile */
    const int64_t rb = job % t->nrb, g = job / t->nrb % p->groups, n = job / t->nrb / p->groups;
    const int64_t oy0 = rb * t->R, nrows = FP_MIN(t->R, p->oh - oy0);
    const int64_t iy0 = oy0 * p->stride_h - p->pad_top, span = (p->kh - 1) * p->dil_h + 1;
    int64_t filled = 0; /* strip rows filled so far */
    const int64_t cin_g = t->S.cin_g, cout_g = p->cout / p->groups, T = p->kh * p->kw, mc = uk->mc, vl = uk->vl;
    /* Pixel tiles of whole vectors as far as the row allows, spread evenly (a lone 1-vector tile would
     * leave the FMA pipes waiting on its mc accumulators); only the row's last vector is masked. */
    const int64_t nvec = FP_CEIL_DIV(p->ow, vl), ntl = FP_CEIL_DIV(nvec, uk->pv);
    const int64_t vbase = nvec / ntl, vextra = nvec % ntl;
    fp_pxtile a;
    a.toff = t->toff;
    a.ntaps = T;
    a.cin = cin_g;
    a.cs = t->S.cs;
    a.wstep = t->wlanes;
    /* The activations the kernels apply in registers (no residual): the tile then goes straight to an NCHW
     * output, or through the transposing buffer alone (NHWC); any other epilogue runs on the buffer. */
    const fp_ep *ep = t->ep;
    const int inreg = !ep || (!ep->has_res && (ep->kind == FP_ACT_RELU || ep->kind == FP_ACT_CLIP ||
                                               ep->kind == FP_ACT_LEAKY || ep->kind == FP_ACT_HARDSWISH));
    a.act = ep && inreg ? ep->kind : p->relu ? FP_ACT_RELU : FP_ACT_NONE;
    a.alpha = ep ? ep->a32 : 0.0f;
    a.beta = ep ? ep->b32 : 0.0f;
    const fp_ep *ep_buf = inreg ? NULL : ep;
    for (int64_t i = 0; i < nrows; i++) {
        const int64_t oy = oy0 + i, need = i * p->stride_h + span;
        /* The strip is filled as the rows go, and the input rows the next output row adds are prefetched
         * over this row's tiles: the input (an image of a few channels, read once) comes from L3 or memory,
         * and a fill of the whole row block up front left that latency exposed. */
        if (need > filled) {
            fp_direct_fill_strip(p, &t->S, t->isa, t->x, n, g, iy0 + filled, need - filled, strip + filled * t->S.rs);
            filled = need;
        }
        if (i + 1 < nrows) prefetch_rows(p, t->x, n, g, cin_g, iy0 + need, p->stride_h);
        fp_direct_row_taps(p, oy, &a.t0, &a.t1);
        const float *row = strip + i * p->stride_h * t->S.rs;
        for (int64_t tl = 0, ox0 = 0; tl < ntl; tl++) {
            const int nv = (int)(vbase + (tl < vextra));
            a.npx = FP_MIN(nv * vl, p->ow - ox0);
            const fp_pxkernel k = uk->kernel(nv, a.npx < nv * vl);
            a.pix = row + ox0;
            for (int64_t c0 = 0; c0 < cout_g; c0 += FP_PX_CHUNK) {
                const int64_t nch = FP_MIN(FP_PX_CHUNK, cout_g - c0);
                prefetch_out(t, n, g * cout_g + c0, nch, oy, ox0, a.npx);
                for (int64_t cb = 0; cb * mc < nch; cb++) {
                    const int64_t co = c0 + cb * mc, blk = g * t->nb + co / mc;
                    a.w = t->w + g * t->wgs + co / t->wlanes * t->wbs + co % t->wlanes;
                    a.bias = t->bpad + blk * mc;
                    const int64_t c_abs = g * cout_g + c0 + cb * mc, nc = FP_MIN(mc, nch - cb * mc);
                    /* NCHW with the activation in registers: whole channel rows straight into y (a block
                     * past the last channel goes to the buffer); otherwise into the buffer */
                    const int direct = p->layout == 0 && !ep_buf && nc == mc;
                    a.out = direct ? t->y + ((n * p->cout + c_abs) * p->oh + oy) * p->ow + ox0
                                   : tb + cb * mc * FP_PX_TILE_MAX;
                    a.ocs = direct ? p->oh * p->ow : FP_PX_TILE_MAX;
                    k(&a);
                    /* NCHW: each block's channel rows go out as soon as they are done, so that the stores
                     * drain while the next block computes rather than in one burst per chunk */
                    if (p->layout == 0 && !direct) store_chunk(t, ep_buf, a.out, pb, n, c_abs, nc, oy, ox0, a.npx);
                }
                if (p->layout == 1) store_chunk(t, ep_buf, tb, pb, n, g * cout_g + c0, nch, oy, ox0, a.npx);
            }
            ox0 += a.npx;
        }
    }
}

/* The row loop over weights whose output channel co (group-relative, a multiple of the kernel's mc) starts at
 * w + g * wgs + co / wlanes * wbs + co % wlanes, wlanes floats between its (channel, tap) steps; the strip
 * of a row block takes at most `budget` bytes. */
static int px_run(const fp_conv_problem *p, int isa, const float *x, const float *w, int64_t wlanes, int64_t wbs,
                  int64_t wgs, int64_t budget, const float *bias, float *y) {
    if (p->n == 0 || p->oh == 0 || p->ow == 0 || p->cout == 0) return FP_OK;
    const fp_px_ukr *uk = pick(isa);
    const int64_t cin_g = p->cin / p->groups, cout_g = p->cout / p->groups, sw = p->stride_w, sh = p->stride_h;
    const int64_t Wq = FP_CEIL_DIV((p->ow - 1) * sw + (p->kw - 1) * p->dil_w + 1, sw);
    const fp_dstrip S = {cin_g, Wq, sw * Wq, cin_g * sw * Wq};
    /* Rows per block: the strip within the budget (the weights a tile reads are a few KiB and stay in
     * L1), and several jobs per thread. */
    const int64_t row_bytes = (int64_t)sizeof(float) * S.rs;
    const int nt = fp_threads(p);
    int64_t R = p->oh;
    while (R > 1 && ((R - 1) * sh + (p->kh - 1) * p->dil_h + 1) * row_bytes > budget) R = (R + 1) / 2;
    while (R > 1 && nt > 1 && p->n * p->groups * FP_CEIL_DIV(p->oh, R) < 4 * nt) R = (R + 1) / 2;
    const int64_t nrb = FP_CEIL_DIV(p->oh, R), nb = nblocks(p, uk->mc);
    int64_t *toff = (int64_t *)fp_aligned_alloc((int64_t)sizeof(int64_t) * p->kh * p->kw);
    float *bpad = (float *)fp_aligned_alloc((int64_t)sizeof(float) * p->groups * nb * uk->mc);
    if (!toff || !bpad) {
        fp_aligned_free(toff);
        fp_aligned_free(bpad);
        return FP_ERR_ALLOC;
    }
    fp_direct_tap_offsets(p, Wq, S.rs, toff);
    for (int64_t g = 0; g < p->groups; g++)
        for (int64_t co = 0; co < nb * uk->mc; co++)
            bpad[g * nb * uk->mc + co] = bias && co < cout_g ? bias[g * cout_g + co] : 0.0f;
    const int64_t nr = (R - 1) * sh + (p->kh - 1) * p->dil_h + 1;
    px_task t = {p, uk, isa, x, w, bpad, wlanes, wbs, wgs, toff, y, S, R, nrb, nb,
                 (int64_t)sizeof(float) * nr * S.rs, 0, fp_ep_current()};
    fp_pool_run(nt, p->n * p->groups * nrb, px_job, &t);
    fp_aligned_free(toff);
    fp_aligned_free(bpad);
    return t.failed ? FP_ERR_ALLOC : FP_OK;
}

/* The stems' strips take a quarter of L2 (as measured for them; their rows are a few KiB). */
static int run(const fp_conv_problem *p, int isa, int f64, const void *x, const void *packed, const void *bias,
               void *y) {
    (void)f64;
    const int64_t mc = pick(isa)->mc, wbs = (p->cin / p->groups) * p->kh * p->kw * mc;
    return px_run(p, isa, (const float *)x, (const float *)packed, mc, wbs, nblocks(p, (int)mc) * wbs,
                  fp_cache_size(2) / 4, (const float *)bias, (float *)y);
}

/* Reductions of at most this many (input channel, tap) steps go through the pixel-lane loop when direct.c's
 * layer allows it (fp_direct_px_pays).  Measured, AVX-512, 1 thread, NCHW 3x3, LeakyReLU: 32->32 @256 and
 * @128, 32->64 @128, 64->64 @64 (288-576 steps) 8-11 % faster than direct.c's tiles; 128->64 @64 and
 * 128->128 @32 (1152 steps) equal or 2 % slower: the transposing NCHW store those tiles pay per output is
 * spread over the reduction, which grows with it. */
#define FP_PX_MAX_STEPS 576

int fp_direct_px_pays(const fp_conv_problem *p, int isa) {
    if (fp_kernel_forcing()) return 0; /* a forced kernel runs where it is forced (tests, benchmarks) */
    const fp_px_ukr *uk = pick(isa);
    /* Output rows of whole vectors: a masked last vector cost more than the store saves (64->64 @56, 3.5
     * vectors a row: 10 % slower); and at least two, since a lone vector leaves a tile of mc accumulators,
     * too few to cover the FMA latency (32->32 @16: 14 % slower).  Stride and dilation 1, one group: what
     * was measured. */
    return p->layout == 0 && p->groups == 1 && p->stride_h == 1 && p->stride_w == 1 && p->dil_h == 1 &&
           p->dil_w == 1 && p->ow % uk->vl == 0 && p->ow >= 2 * uk->vl &&
           (p->cin / p->groups) * p->kh * p->kw <= FP_PX_MAX_STEPS &&
           FP_DIRECT_CB % uk->mc == 0;
}

/* direct.c's packing: mc of each block's 16 lanes per tile.  Their strips take half of L2, as direct.c's
 * (rows of 32-64 channels are 33-66 KiB on a 256-pixel map: a quarter of L2 held 1-3 output rows, and
 * 64->32 @256 ran 3.5 % slower that way). */
int fp_direct_px_run16(const fp_conv_problem *p, int isa, const float *x, const float *wpk, const float *bias,
                       float *y) {
    const int64_t wbs = (p->cin / p->groups) * p->kh * p->kw * FP_DIRECT_CB;
    return px_run(p, isa, x, wpk, FP_DIRECT_CB, wbs, FP_CEIL_DIV(p->cout / p->groups, FP_DIRECT_CB) * wbs,
                  FP_MAX(256 * 1024, fp_cache_size(2) / 2), bias, y);
}

const fp_algo fp_algo_direct_px = {"direct_px", applies, kernel_name, packed_bytes, pack, run, "convpx", NULL};
