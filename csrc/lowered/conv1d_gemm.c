/* conv1d (NCL, groups 1, any K, stride, dilation and (left, right) padding) as one GEMM per image whose B,
 * the im2col of the row, is packed block by block from x (lowered.h). */
#include <string.h>

#include "lowered.h"

/* B[(ci, tap)][o] = x[ci][o*s + tap*d - left], zero in the padding; the valid run of each micro-panel row
 * is one copy (stride 1) or one strided gather, the rest zero fill. */
static void pack_b(const fp_lowered *L, const float *xn, int64_t k0, int64_t kc, int64_t j0, int64_t nc, float *dst) {
    const fp_conv_problem *p = L->p;
    const int64_t K = p->kw, s = p->stride_w, len = p->w, NR = L->uk->nr;
    for (int64_t r = k0; r < k0 + kc; r++) {
        const float *xr = xn + (r / K) * len;
        const int64_t base = (r % K) * p->dil_w - p->pad_left; /* input index read by output column 0 */
        for (int64_t q = 0; q < nc; q += NR) {
            const int64_t w = FP_MIN(NR, nc - q), first = (j0 + q) * s + base; /* column t reads first + t*s */
            float *d = dst + q * kc + (r - k0) * NR;
            /* columns [lo, hi) read inside the row */
            int64_t lo = first >= 0 ? 0 : FP_CEIL_DIV(-first, s);
            int64_t hi = first >= len ? 0 : FP_MIN(w, (len - 1 - first) / s + 1);
            if (lo > w) lo = w;
            if (hi < lo) hi = lo;
            for (int64_t t = 0; t < lo; t++) d[t] = 0.0f;
            if (s == 1) memcpy(d + lo, xr + first + lo, sizeof(float) * (size_t)(hi - lo));
            else for (int64_t t = lo; t < hi; t++) d[t] = xr[first + t * s];
            for (int64_t t = hi; t < w; t++) d[t] = 0.0f;
        }
    }
}

int64_t fp_conv1d_gemm_packed_bytes(const fp_conv_problem *p) { return fp_lowered_packed_bytes(p->cout, p->cin * p->kw); }

int fp_conv1d_gemm_pack(const fp_conv_problem *p, const float *w, void *packed) {
    /* (Cout, Cin, K) is already Cout x (Cin*K); the call's threads split the panels (a one-shot call packs
     * on every call: wav2vec2's conv1, 3 MB, had packed on the calling thread alone) */
    return fp_lowered_pack(p->cout, p->cin * p->kw, w, packed, p->num_threads);
}

int fp_conv1d_gemm_f32(const fp_conv_problem *p, const float *x, const void *packed, const float *bias, float *y) {
    if (p->groups != 1 || p->layout != 0 || p->h != 1 || p->oh != 1 || p->kh != 1 || p->n < 0 || p->ow < 1)
        return FP_ERR_ARGS;
    fp_conv_problem q;
    const fp_sgemm_ukr *uk;
    const float *a = fp_lowered_begin(p, packed, p->cout, p->cin * p->kw, &uk, &q);
    if (!a) return FP_ERR_PACKED;
    fp_lowered L;
    memset(&L, 0, sizeof L);
    L.p = &q, L.uk = uk, L.m = p->cout, L.k = p->cin * p->kw, L.n = p->ow, L.a = a, L.bias = bias;
    L.x = x, L.y = y, L.x_image = p->cin * p->w, L.y_image = p->cout * p->ow, L.pack_b = pack_b;
    return fp_lowered_run(&L);
}

/* The one-shot call: the caller's (Cout, Cin, K) weights packed into this thread's scratch (kept across calls,
 * as csrc/oneshot.c does for conv2d: no fresh buffer to fault in per call) and used once. */
int fp_conv1d_gemm_once_f32(const fp_conv_problem *p, const float *x, const float *w, const float *bias, float *y) {
    void *packed = fp_scratch(FP_SCRATCH_ONCE, fp_conv1d_gemm_packed_bytes(p));
    if (!packed) return FP_ERR_ALLOC;
    const int rc = fp_conv1d_gemm_pack(p, w, packed);
    return rc < 0 ? rc : fp_conv1d_gemm_f32(p, x, packed, bias, y);
}
