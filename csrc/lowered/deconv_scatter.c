/* The general transposed convolution (any kernel, stride, padding, output_padding, dilation; groups 1) as
 * one GEMM per image, Y' (Cout*KH*KW x H*W) = W' @ X, rows (co, ky, kx), whose store adds each tile element
 * to the output pixel it reaches, (co, iy*s - p + ky*d, ix*s - p + kx*d), or drops it when that is cropped
 * by the padding.  That is ONNX Runtime's GEMM + col2im with the col2im fused into the store: no
 * (Cout*KH*KW x H*W) buffer, each tile added while it is in L1, and no multiply by a zero (the sub-pixel
 * phases' work exactly).  The outputs of an output channel are reached only by its own KH*KW rows, so the
 * threads split the rows in whole channels (row_unit) and each sets up (bias) and finishes (ReLU) its
 * own channels' outputs around its GEMM.  The micro-kernels are the gemm table's rows. */
#include <string.h>

#include "lowered.h"

typedef struct scatter_ctx {
    const float *bias;    /* per output channel, or NULL */
} scatter_ctx;

static int64_t gcd64(int64_t a, int64_t b) {
    while (b) {
        const int64_t r = a % b;
        a = b, b = r;
    }
    return a;
}

/* Index of the first u >= 0 with 0 <= o0 + u*s, and one past the last with o0 + u*s < size (s > 0). */
static void valid_run(int64_t o0, int64_t s, int64_t size, int64_t count, int64_t *lo, int64_t *hi) {
    *lo = o0 >= 0 ? 0 : (-o0 + s - 1) / s;
    *hi = o0 >= size ? 0 : FP_MIN(count, (size - o0 + s - 1) / s);
}

#define GROUP_MAX 16 /* the widest stride whose rows are interleaved before they are added */


/* Where the row group (ky, kx ..) of a run's pixels lands: its output row from position ox0 (returned, NULL
 * when the row is cropped) and the positions [lo, hi) of its `pixels * stride` that are inside. */
static float *group_run(const fp_conv_problem *p, float *yc, const fp_pixel_run *r, int64_t ky, int64_t kx,
                        int64_t pixels, int64_t *lo, int64_t *hi) {
    const int64_t oy = r->iy * p->stride_h - p->pad_top + ky * p->dil_h;
    if (oy < 0 || oy >= p->oh) return NULL;
    const int64_t ox0 = r->ix * p->stride_w - p->pad_left + kx;
    *lo = FP_MAX(0, -ox0), *hi = FP_MIN(pixels * p->stride_w, p->ow - ox0);
    return *hi > *lo ? yc + oy * p->ow + ox0 : NULL;
}

/* NCHW, dilation 1: the sw rows (co, ky, kx .. kx+sw-1) of a tile reach sw consecutive output columns from
 * each input pixel, so for the pixels of one input row they cover one contiguous run of an output row,
 * added front to back rather than in sw passes sw apart: at stride 2 by the `interleave` row's
 * interleave-add (two permutes and two adds per 16 pixels with AVX-512), at other strides through a
 * transposed copy in L1.
 *
 * g2 > 0 (sw < KW - kx <= 2*sw): the g2 = min(sw, KW - kx - sw) rows after the group are in the tile too.
 * Row kx + sw + r reaches, from pixel ix, the outputs that row kx + r reaches from pixel ix + 1, so the two
 * groups are summed first (the second shifted by one pixel, its rows past g2 zero) and the output run of
 * n + 1 pixels is added to once: fewer read-modify-writes of the output, and none of the loads that waited
 * on the previous group's overlapping stores (sw floats apart), which stalled the interleave-add of DCGAN's
 * and FCN-8s's K4 s2 layers (and the element-wise add of a 3x3 s2 layer's kx = 2 row).  At stride 2 the
 * interleave row's add2 sums in registers where it has one. */
static void store_add_group(const fp_lowered *L, float *yc, int64_t ky, int64_t kx, int64_t g2,
                            const fp_pixel_run *runs, int nruns, const float *tr, int64_t ldt) {
    const fp_conv_problem *p = L->p;
    const int64_t sw = p->stride_w;
    float sum[GROUP_MAX * 65], run[GROUP_MAX * 65];
    for (int k = 0; k < nruns; k++) {
        const int64_t t = runs[k].t, n = runs[k].n, pixels = n + (g2 > 0);
        int64_t lo, hi;
        float *yr = group_run(p, yc, &runs[k], ky, kx, pixels, &lo, &hi);
        if (!yr) continue;
        const float *src = tr + t; /* the group's rows, lds apart */
        int64_t lds = ldt;
        if (g2 > 0) {
            const float *b = src + sw * ldt; /* the second group's rows */
            if (sw == 2 && L->interleave->add2) {
                L->interleave->add2(yr + lo, src, src + ldt, b, g2 == 2 ? b + ldt : NULL, n, lo, hi);
                continue;
            }
            for (int64_t r = 0; r < sw; r++) { /* row r of the summed group: n + 1 pixels, sum + r*65 */
                float *d = sum + r * 65;
                const float *ar = src + r * ldt, *br = b + r * ldt;
                if (r >= g2) {
                    memcpy(d, ar, sizeof(float) * (size_t)n);
                    d[n] = 0.0f;
                    continue;
                }
                d[0] = ar[0];
                for (int64_t u = 1; u < n; u++) d[u] = ar[u] + br[u - 1];
                d[n] = br[n - 1];
            }
            src = sum, lds = 65;
        }
        if (sw == 2) { /* the interleave-add of the kx and kx + 1 rows, edges included */
            L->interleave->add(yr + lo, src, src + lds, lo, hi);
            continue;
        }
        for (int64_t r = 0; r < sw; r++)
            for (int64_t u = 0; u < pixels; u++) run[u * sw + r] = src[r * lds + u];
        for (int64_t q = lo; q < hi; q++) yr[q] += run[q];
    }
}

/* Adds rows i0 .. i0+mr-1 x columns j0 .. j0+nr-1 of Y' to the output: input pixels of one input row at a
 * time, whose outputs in an output row are stride_w apart (contiguous at stride 1). */
static void store_add(const fp_lowered *L, float *yn, int64_t i0, int64_t mr, int64_t j0, int64_t nr,
                      const float *tile, int64_t ldt) {
    const fp_conv_problem *p = L->p;
    const int64_t kw = p->kw, taps = p->kh * kw, sw = p->stride_w;
    const int nhwc = p->layout != 0;
    const int64_t C = p->cout, pix = nhwc ? C : 1, plane = nhwc ? 1 : p->oh * p->ow;
    const int grouped = !nhwc && sw > 1 && sw <= GROUP_MAX && p->dil_w == 1;
    fp_pixel_run runs[64];
    const int nruns = fp_tile_runs(j0, nr, p->w, runs);
    for (int64_t i = i0; i < i0 + mr; i++) {
        const int64_t co = i / taps, ky = i % taps / kw, kx = i % kw;
        float *yc = yn + co * plane;
        const float *tr = tile + (i - i0) * ldt;
        const int64_t g2 = FP_MIN(sw, kw - kx - sw); /* rows of a second group after this one's */
        if (grouped && kx % (2 * sw) == 0 && g2 >= 1 && i + sw + g2 <= i0 + mr) {
            store_add_group(L, yc, ky, kx, g2, runs, nruns, tr, ldt);
            i += sw + g2 - 1;
            continue;
        }
        if (grouped && kx % sw == 0 && kx + sw <= kw && i + sw <= i0 + mr) {
            store_add_group(L, yc, ky, kx, 0, runs, nruns, tr, ldt);
            i += sw - 1;
            continue;
        }
        for (int k = 0; k < nruns; k++) {
            const int64_t t = runs[k].t;
            const int64_t oy = runs[k].iy * p->stride_h - p->pad_top + ky * p->dil_h;
            if (oy < 0 || oy >= p->oh) continue;
            const int64_t ox0 = runs[k].ix * sw - p->pad_left + kx * p->dil_w;
            int64_t lo, hi;
            valid_run(ox0, sw, p->ow, runs[k].n, &lo, &hi);
            float *yr = yc + (oy * p->ow + ox0) * pix;
            const float *v = tr + t;
            if (!nhwc && sw == 1) {
                for (int64_t u = lo; u < hi; u++) yr[u] += v[u];
            } else {
                const int64_t step = sw * pix;
                for (int64_t u = lo; u < hi; u++) yr[u * step] += v[u];
            }
        }
    }
}

/* The outputs of channels [r0, r1) / taps: the bias (or zero) before the GEMM adds to them ... */
static void init_channels(const fp_lowered *L, float *yn, int64_t r0, int64_t r1) {
    const fp_conv_problem *p = L->p;
    const scatter_ctx *s = (const scatter_ctx *)L->ctx;
    const int64_t taps = p->kh * p->kw, c0 = r0 / taps, c1 = r1 / taps, hw = p->oh * p->ow, C = p->cout;
    if (p->layout == 0) {
        for (int64_t co = c0; co < c1; co++) {
            float *y = yn + co * hw;
            if (!s->bias) memset(y, 0, sizeof(float) * (size_t)hw);
            else for (int64_t q = 0; q < hw; q++) y[q] = s->bias[co];
        }
    } else {
        for (int64_t q = 0; q < hw; q++)
            for (int64_t co = c0; co < c1; co++) yn[q * C + co] = s->bias ? s->bias[co] : 0.0f;
    }
}

/* ... and ReLU after (NaN stays NaN), while the channels are this thread's. */
static void finish_channels(const fp_lowered *L, float *yn, int64_t r0, int64_t r1) {
    const fp_conv_problem *p = L->p;
    if (!p->relu) return;
    const int64_t taps = p->kh * p->kw, c0 = r0 / taps, c1 = r1 / taps, hw = p->oh * p->ow, C = p->cout;
    for (int64_t q = 0; q < hw; q++)
        for (int64_t co = c0; co < c1; co++) {
            float *v = p->layout == 0 ? yn + co * hw + q : yn + q * C + co;
            if (*v < 0.0f) *v = 0.0f;
        }
}

int fp_deconv_scatter_f32(const fp_conv_problem *p, const float *x, const void *packed, const float *bias, float *y) {
    if (p->groups != 1 || p->n < 0 || p->stride_h < 1 || p->stride_w < 1 || p->dil_h < 1 || p->dil_w < 1)
        return FP_ERR_ARGS;
    fp_conv_problem q;
    const fp_sgemm_ukr *uk;
    const int64_t taps = p->kh * p->kw, m = p->cout * taps;
    const float *a = fp_lowered_begin(p, packed, m, p->cin, &uk, &q);
    if (!a) return FP_ERR_PACKED;
    scatter_ctx ctx;
    ctx.bias = bias;
    fp_lowered L;
    memset(&L, 0, sizeof L);
    L.p = &q, L.uk = uk, L.m = m, L.k = p->cin, L.n = p->h * p->w, L.a = a, L.bias = NULL;
    L.x = x, L.y = y, L.x_image = p->cin * p->h * p->w, L.y_image = p->cout * p->oh * p->ow;
    L.accumulate = 1;
    L.row_unit = uk->mr / gcd64(uk->mr, taps) * taps; /* whole channels, whole MR panels */
    L.init = init_channels;
    L.finish = finish_channels;
    L.ctx = &ctx;
    L.pack_b = p->layout == 0 ? fp_deconv_pack_b_nchw : fp_deconv_pack_b_nhwc;
    L.store = store_add;
    L.interleave = fp_interleave_pick(fp_isa());
    return fp_lowered_run(&L);
}

/* One-shot form: w, the caller's (Cin, Cout, KH, KW) weight, packed into this thread's scratch (kept across
 * calls, as csrc/oneshot.c does for conv2d) and used once. */
int fp_deconv_scatter_once_f32(const fp_conv_problem *p, const float *x, const float *w, const float *bias, float *y) {
    fp_conv_problem q = *p;
    q.layout = 0; /* rows (co, ky, kx) whatever the data layout */
    void *packed = fp_scratch(FP_SCRATCH_ONCE, fp_deconv_gemm_packed_bytes(&q));
    if (!packed) return FP_ERR_ALLOC;
    const int rc = fp_deconv_gemm_pack(&q, w, packed);
    return rc < 0 ? rc : fp_deconv_scatter_f32(p, x, packed, bias, y);
}
