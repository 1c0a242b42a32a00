/* One-shot 1x1 convolutions on small maps whose weights exceed L2: the operands swapped, W read in place.
 *
 * A prepacked layer on a small map (7x7) runs with vectors along output channels (NCHW: the transposed form
 * Y^T = X^T W^T; NHWC: Y = X W^T), so its B operand is W^T, packed once.  A one-shot call of that form must
 * transpose the caller's W on every call (gemm_driver.c packs each panel inside the loops): 4 MiB of weights
 * for 2048->512, read from L3 and transposed in 16 x 16 register blocks, about a fifth of the call, and not
 * hidden behind the FMAs (session 9 measured fused-transposition micro-kernels: no gain).
 *
 * Here the roles are swapped for this shape class: W is the broadcast operand, read through the
 * micro-kernel's row pointers (MR rows of the caller's Cout x Cin array, each contiguous in k), so each
 * weight is read once per call, in its natural order, as 8 sequential streams the hardware prefetcher
 * follows; X, small by definition of the class, is the packed operand (kc x NR panels of pixels, made by
 * each chunk in its scratch: NCHW copies rows, NHWC transposes 48 x kc blocks of X).  The price would be
 * the pixel lanes: 49 pixels are 48 + 1, and a tile for the 49th costs as many FMA instructions per row as
 * 16 pixels (that form measured 1.20-1.25x the prepacked layer, no better than transposing W).  So the last
 * 1-4 pixels are summed on W itself, 16 rows at a time right after the main tiles read them, on 16 x 16
 * blocks transposed in registers (gemm_once_wrows__avx512.c): 2-3 % of the call.  NHWC tiles go through a
 * 16-channel buffer and a register transpose, so each pixel's 16 outputs are one line.
 *
 * Bit-identical to the prepacked layer: every output element is the same FMA chain in k order (the
 * micro-kernels accumulate from zero and add the bias, or the previous k block's sum, after the chain), and
 * the k blocks are the prepacked form's own (fp_gemm_kc_transposed for NCHW, fp_gemm_blocking's kc for
 * NHWC), so only the tile shape differs, which no element's chain sees. */
#include <string.h>

#include "../epilogue/epilogue.h"
#include "gemm.h"
#include "gemm_once_wrows.h"

#define TILE_FLOATS (16 * 48) /* the NHWC tile buffer: 16 rows of the 8 x 48 kernel's tiles */

/* The form needs the AVX-512 parts (gemm_once_wrows__avx512.c); it runs only with the 8 x 48 kernel anyway. */
#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
#define WROWS_X86 1
#else
#define WROWS_X86 0
#endif

/* Whether a one-shot call takes this form: the prepacked layer runs vectors along channels on a small
 * map (NCHW: the transposed form; NHWC: at most 256 pixels, unit stride), W and X together exceed L2 (so
 * the transposition would read W from beyond it on every call) and X's panels fit in L2 beside a 16-row
 * group of W.  Sizes from the detected caches.  (1024->256 @14, W 1 MiB and X 0.8 MiB: 1.04-1.06x the
 * prepacked layer transposing W, 1.00x here, NCHW, 1 thread, loaded box.) */
int fp_gemm_once_wrows_applies(const fp_conv_problem *p, const fp_sgemm_ukr *uk) {
    const int64_t l2 = fp_cache_size(2), fsz = (int64_t)sizeof(float);
    const int64_t pixels = p->layout ? p->n * p->oh * p->ow : p->oh * p->ow;
    if (!WROWS_X86 || !uk->extended || 16 % uk->mr != 0 || 16 * uk->nr > TILE_FLOATS) return 0;
    if (p->cout < 16 || p->stride_h != 1 || p->stride_w != 1 || fp_ep_current()) return 0;
    const int64_t wb = fsz * p->cout * p->cin, xb = fsz * pixels * p->cin;
    if (wb + xb <= l2 || xb + 16 * fsz * p->cin > l2) return 0;
    if (!p->layout) return fp_gemm_use_transposed(p, uk);
    /* NHWC: where the prepacked form's reduction is more than one k block.  With one, the panel path
     * (gemm_driver.c) fetches each next panel's rows of W ahead (contiguous then) and its transposition
     * reads L2; with several it reads L3 (2048->512 @7: one-shot 1.19-1.23x the prepacked layer, 1.09x
     * here; 512->2048 @7, one block: 1.15x there, 1.19x here, 1 thread, loaded box). */
    return pixels <= 256 && fp_gemm_blocking(uk, pixels, p->cout, p->cin).kc < p->cin;
}

typedef struct wrows_task {
    const fp_conv_problem *p;
    const fp_sgemm_ukr *uk;
    const float *x, *w, *bias;
    float *y;
    int64_t kcb, groups, nch; /* groups: 16-row blocks of output channels */
    int failed;
} wrows_task;

/* Pixels [p0, p0 + width) of channels [pc, pc + kc) as a kc x width panel (k-major). */
static void pack_x(const fp_conv_problem *p, const float *x, int64_t pixels, int64_t pc, int64_t kc, int64_t p0,
                   int64_t width, float *dst) {
    if (p->layout) { /* NHWC: pixel rows of K channels, transposed */
        fp_pack_transpose(x + p0 * p->cin + pc, p->cin, width, kc, width, dst);
        return;
    }
    for (int64_t k = 0; k < kc; k++) memcpy(dst + k * width, x + (pc + k) * pixels + p0, (size_t)width * sizeof(float));
}

/* The tail pixels' outputs of rows [r0, r1) from their sums (row i of the 16-row window at ws: sums[j * 16
 * + i - ws]), with the bias (first k block) or the previous sum added as the micro-kernels do, then ReLU. */
static void store_tail(const fp_conv_problem *p, const float *sums, int64_t ws, int64_t r0, int64_t r1,
                       int64_t nt, int64_t full, int64_t pixels, const float *bias, int first, int relu, float *yn) {
    const int64_t M = p->cout;
    for (int64_t j = 0; j < nt; j++)
        for (int64_t c = r0; c < r1; c++) {
            float *o = p->layout ? yn + (full + j) * M + c : yn + c * pixels + full + j;
            float v = sums[j * 16 + c - ws];
            if (!first) v += *o;
            else if (bias) v += bias[c];
            *o = relu && v < 0.0f ? 0.0f : v; /* NaN stays NaN, as the kernels' max */
        }
}

static void wrows_chunk(void *ctx, int64_t c, int worker) {
    wrows_task *t = (wrows_task *)ctx;
    const fp_conv_problem *p = t->p;
    const fp_sgemm_ukr *uk = t->uk;
    const int64_t M = p->cout, K = p->cin, MR = uk->mr, NR = uk->nr;
    const int nhwc = p->layout != 0;
    /* NCHW: one image's pixels at a time; NHWC: all images' pixels are one sequence of rows */
    const int64_t pixels = nhwc ? p->n * p->oh * p->ow : p->oh * p->ow, images = nhwc ? 1 : p->n;
    const int64_t full = pixels / NR * NR, tail = pixels - full;
    /* a tail of up to FP_WROWS_TAIL_MAX pixels is summed 16 rows at a time on transposed blocks of W
     * (gemm_once_wrows__avx512.c) rather than in a tile of its own (16-row windows: Cout >= 16) */
    const int tail16 = tail >= 1 && tail <= FP_WROWS_TAIL_MAX;
    const int64_t ncols = tail16 ? full : pixels; /* the columns the micro-kernel computes */
    (void)worker;
    int64_t lo, hi;
    fp_chunk_range(t->groups, t->nch, c, &lo, &hi);
    lo *= 16;
    hi = FP_MIN(hi * 16, M);
    if (lo >= hi) return;
    float *xp = (float *)fp_scratch_or_fail(2, (int64_t)sizeof(float) * t->kcb * pixels, &t->failed);
    if (!xp) return;
    float tbuf[TILE_FLOATS] __attribute__((aligned(64))); /* NHWC: 16 channels x NR pixels, before their transpose */
    float sums[16 * FP_WROWS_TAIL_MAX] __attribute__((aligned(64)));
    const float *wrows[16];
    fp_ukr_args u = {0};
    u.arows = wrows;
    u.bias_per_col = 0;
    for (int64_t img = 0; img < images; img++) {
        const float *xn = t->x + img * K * pixels;
        float *yn = t->y + img * M * pixels;
        for (int64_t pc = 0; pc < K; pc += t->kcb) {
            const int64_t kc = FP_MIN(t->kcb, K - pc);
            /* the panels: full NR-pixel ones, then the tail's (tail x kc, so nothing past X is read) */
            for (int64_t p0 = 0; p0 < full; p0 += NR) pack_x(p, xn, pixels, pc, kc, p0, NR, xp + p0 * kc);
            if (tail) pack_x(p, xn, pixels, pc, kc, full, tail, xp + full * kc);
            u.kc = kc;
            u.first = pc == 0;
            u.relu = p->relu && pc + kc >= K;
            for (int64_t g = lo; g < hi; g += 16) {
                const int64_t ge = FP_MIN(g + 16, hi);
                for (int64_t p0 = 0; p0 < ncols; p0 += NR) {
                    u.nr = FP_MIN(NR, ncols - p0);
                    u.b = xp + p0 * kc;
                    u.ldb = u.nr;
                    for (int64_t ir = g; ir < ge; ir += MR) {
                        u.mr = FP_MIN(MR, ge - ir);
                        for (int64_t i = 0; i < MR; i++) wrows[i] = t->w + (ir + FP_MIN(i, u.mr - 1)) * K + pc;
                        u.bias = t->bias ? t->bias + ir : NULL;
                        if (!nhwc) {
                            u.c = yn + ir * pixels + p0;
                            u.ldc = pixels;
                            uk->run(&u);
                            continue;
                        }
                        /* NHWC: the tiles are channels x pixels, Y pixels x channels.  The kernel leaves the
                         * bare sums of the group's rows in tbuf (first block, no bias, no ReLU); the
                         * transposing store adds what the kernel would have, in the same single additions,
                         * 16 channels (a line) per pixel. */
                        fp_ukr_args v = u;
                        v.c = tbuf + (ir - g) * NR;
                        v.ldc = NR;
                        v.first = 1;
                        v.bias = NULL;
                        v.relu = 0;
                        uk->run(&v);
                    }
#if WROWS_X86
                    if (nhwc)
                        fp_wrows_store_nhwc_avx512(tbuf, NR, ge - g, u.nr, t->bias ? t->bias + g : NULL, u.first,
                                                   u.relu, yn + p0 * M + g, M);
#endif
                }
#if WROWS_X86
                if (tail16) { /* the window of 16 rows holding [g, ge): the last one shifted back to stay in W */
                    const int64_t ws = FP_MIN(g, M - 16);
                    fp_wrows_tail16_avx512(t->w + ws * K + pc, K, kc, xp + full * kc, (int)tail, sums);
                    store_tail(p, sums, ws, g, ge, tail, full, pixels, t->bias, u.first, u.relu, yn);
                }
#endif
            }
        }
    }
}

int fp_gemm_once_wrows(const fp_conv_problem *p, const fp_sgemm_ukr *uk, const float *x, const float *w,
                       const float *bias, float *y) {
    wrows_task t;
    memset(&t, 0, sizeof t);
    t.p = p; t.uk = uk; t.x = x; t.w = w; t.bias = bias; t.y = y;
    /* the prepacked form's k blocks, so that each output element's sum is the same */
    t.kcb = p->layout ? fp_gemm_blocking(uk, p->n * p->oh * p->ow, p->cout, p->cin).kc : fp_gemm_kc_transposed(p);
    t.groups = FP_CEIL_DIV(p->cout, 16);
    /* output channels split between the threads, one chunk each: every chunk packs X once */
    int T = fp_threads(p);
    if (T > t.groups) T = (int)t.groups;
    t.nch = T;
    fp_pool_run(T, t.nch, wrows_chunk, &t);
    return t.failed ? FP_ERR_ALLOC : FP_OK;
}
