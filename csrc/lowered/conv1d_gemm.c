/* conv1d (NCL, groups 1, any K, stride, dilation and (left, right) padding) as one GEMM per image whose B,
 * the im2col of the row, is packed block by block from x (lowered.h). */
#include <string.h>

#include "lowered.h"

/* d[t] = src[2t], t < n: a constant stride, which the compiler vectorizes (even lanes of two loads) where
 * the variable-stride loop below stays scalar (9 % of wav2vec2's 512->512 K3 s2 at 1 thread, perf cpu-clock). */
static void gather2(float *restrict d, const float *restrict src, int64_t n) {
    for (int64_t t = 0; t < n; t++) d[t] = src[2 * t];
}

/* The channel rows are len floats apart and a block reads a few lines of each (7 for wav2vec2's 48 columns at
 * stride 2, 12.8 KB apart): the hardware prefetchers do not follow them and every line came from L3 or memory
 * on demand.  Fetching the window of the channel PACK_PREFETCH_ROWS rows ahead overlaps those misses. */
#define PACK_PREFETCH_ROWS 8

static void prefetch_run(const float *a, int64_t n) {
#if defined(__GNUC__)
    const char *c = (const char *)a, *e = (const char *)(a + n - 1);
    for (c = (const char *)((uintptr_t)c & ~(uintptr_t)63); c <= e; c += 64) __builtin_prefetch(c, 0, 3);
#else
    (void)a, (void)n;
#endif
}

/* B[(ci, tap)][o] = x[ci][o*s + tap*d - left], zero in the padding; the valid run of each micro-panel row
 * is one copy (stride 1) or one strided gather, the rest zero fill. */
static void pack_b(const fp_lowered *L, const float *xn, int64_t k0, int64_t kc, int64_t j0, int64_t nc, float *dst) {
    const fp_conv_problem *p = L->p;
    const int64_t K = p->kw, s = p->stride_w, len = p->w, NR = L->uk->nr, cin = p->cin;
    /* the input window of the block's columns in each channel row, clipped to the row */
    const int64_t wlo = FP_MAX(0, j0 * s - p->pad_left);
    const int64_t whi = FP_MIN(len, (j0 + nc - 1) * s + (K - 1) * p->dil_w - p->pad_left + 1);
    /* row r of B is channel ci, tap `tap`: counted, not divided out per row */
    int64_t ci = k0 / K, tap = k0 % K;
    for (int64_t r = k0; r < k0 + kc; r++) {
        const float *xr = xn + ci * len;
        if (tap == 0 && ci + PACK_PREFETCH_ROWS < cin && whi > wlo)
            prefetch_run(xr + PACK_PREFETCH_ROWS * len + wlo, whi - wlo);
        const int64_t base = tap * p->dil_w - p->pad_left; /* input index read by output column 0 */
        for (int64_t q = 0; q < nc; q += NR) {
            const int64_t w = FP_MIN(NR, nc - q), first = (j0 + q) * s + base; /* column t reads first + t*s */
            float *d = dst + q * kc + (r - k0) * NR;
            /* columns [lo, hi) read inside the row: all of them but near the ends of the row (two integer
             * divisions per row and panel otherwise: 2-3 % of wav2vec2's conv1 at 1 thread) */
            int64_t lo = 0, hi = w;
            if (first < 0 || first + (w - 1) * s >= len) {
                lo = first >= 0 ? 0 : FP_CEIL_DIV(-first, s);
                hi = first >= len ? 0 : FP_MIN(w, (len - 1 - first) / s + 1);
                if (lo > w) lo = w;
                if (hi < lo) hi = lo;
            }
            for (int64_t t = 0; t < lo; t++) d[t] = 0.0f;
            if (s == 1) memcpy(d + lo, xr + first + lo, sizeof(float) * (size_t)(hi - lo));
            else if (s == 2) gather2(d + lo, xr + first + lo * 2, hi - lo);
            else for (int64_t t = lo; t < hi; t++) d[t] = xr[first + t * s];
            for (int64_t t = hi; t < w; t++) d[t] = 0.0f;
        }
        if (++tap == K) tap = 0, ci++;
    }
}

int64_t fp_conv1d_gemm_packed_bytes(const fp_conv_problem *p) { return fp_lowered_packed_bytes(p->cout, p->cin * p->kw); }

int fp_conv1d_gemm_pack(const fp_conv_problem *p, const float *w, void *packed) {
    /* (Cout, Cin, K) is already Cout x (Cin*K); the call's threads split the panels (a one-shot call packs
     * on every call: wav2vec2's conv1, 3 MB, had packed on the calling thread alone) */
    return fp_lowered_pack(p->cout, p->cin * p->kw, w, packed, p->num_threads);
}

static int valid(const fp_conv_problem *p) {
    return p->groups == 1 && p->layout == 0 && p->h == 1 && p->oh == 1 && p->kh == 1 && p->n >= 0 && p->ow >= 1;
}

/* W as packed panels (a) or the caller's (Cout, Cin*K) rows read in place (a_rows). */
static int run(const fp_conv_problem *q, const fp_sgemm_ukr *uk, const float *a, const float *a_rows,
               const float *x, const float *bias, float *y) {
    fp_lowered L;
    memset(&L, 0, sizeof L);
    L.p = q, L.uk = uk, L.m = q->cout, L.k = q->cin * q->kw, L.n = q->ow, L.a = a, L.a_rows = a_rows, L.bias = bias;
    L.x = x, L.y = y, L.x_image = q->cin * q->w, L.y_image = q->cout * q->ow, L.pack_b = pack_b;
    return fp_lowered_run(&L);
}

int fp_conv1d_gemm_f32(const fp_conv_problem *p, const float *x, const void *packed, const float *bias, float *y) {
    if (!valid(p)) return FP_ERR_ARGS;
    fp_conv_problem q;
    const fp_sgemm_ukr *uk;
    const float *a = fp_lowered_begin(p, packed, p->cout, p->cin * p->kw, &uk, &q);
    if (!a) return FP_ERR_PACKED;
    return run(&q, uk, a, NULL, x, bias, y);
}

/* The one-shot call: the micro-kernels read the caller's (Cout, Cin, K) weights in place, MR rows at a time
 * (their A operand's row-pointer form, as the 1x1 GEMM's one-shot NCHW calls do), so nothing is packed:
 * packing them (3 MB for wav2vec2's 512->512 K3, on the calling thread while the other waited) was the
 * call's largest cost after the GEMM. */
int fp_conv1d_gemm_once_f32(const fp_conv_problem *p, const float *x, const float *w, const float *bias, float *y) {
    if (!valid(p)) return FP_ERR_ARGS;
    fp_conv_problem q;
    fp_lowered_problem(p, &q);
    return run(&q, fp_sgemm_ukr_pick(fp_isa()), NULL, w, x, bias, y);
}
