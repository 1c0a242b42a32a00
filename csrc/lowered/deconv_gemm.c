/* Transposed convolution with kernel == stride and no padding (U-Net's 2x2 s2 up-convolution): one GEMM
 * per image, Y' (Cout*KH*KW x H*W) = W' @ X, whose store puts each tile element straight at its output
 * pixel (lowered.h).  The output phases are disjoint, so nothing is accumulated, zeroed or buffered
 * beyond one MR x NR tile.  Rows of W' are (co, ky, kx) for NCHW output, (ky, kx, co) for NHWC, so that
 * consecutive rows land next to each other (kx in NCHW rows, co in NHWC pixels). */
#include <string.h>

#include "lowered.h"

/* NCHW: B = X[n] (Cin x H*W) as it is, copied into the micro-panels */
void fp_deconv_pack_b_nchw(const fp_lowered *L, const float *xn, int64_t k0, int64_t kc, int64_t j0, int64_t nc,
                           float *dst) {
    fp_gemm_pack_b_nchw((const fp_conv_problem *)L->ctx, xn, k0, kc, j0, nc, L->uk->nr, dst, NULL);
}

/* NHWC: B[ci][j] = x[j][ci], a transpose of kc channels of nc pixels (read along the pixels' channel runs) */
void fp_deconv_pack_b_nhwc(const fp_lowered *L, const float *xn, int64_t k0, int64_t kc, int64_t j0, int64_t nc,
                           float *dst) {
    const int64_t NR = L->uk->nr, C = L->k;
    for (int64_t q = 0; q < nc; q += NR) {
        const int64_t w = FP_MIN(NR, nc - q);
        float *d = dst + q * kc;
        for (int64_t t = 0; t < w; t++) {
            const float *xp = xn + (j0 + q + t) * C + k0;
            for (int64_t r = 0; r < kc; r++) d[r * NR + t] = xp[r];
        }
    }
}

/* Output offset (in pixels) of the top-left output pixel of each input pixel j0 .. j0+nr-1. */
static void pixel_offsets(const fp_conv_problem *p, int64_t j0, int64_t nr, int64_t *off) {
    int64_t iy = j0 / p->w, ix = j0 % p->w;
    for (int64_t t = 0; t < nr; t++) {
        off[t] = iy * p->kh * p->ow + ix * p->kw;
        if (++ix == p->w) ix = 0, iy++;
    }
}

/* Input pixels [t, end) of a tile that sit in one input row: their outputs are kw apart in each output row. */
static int64_t row_end(const fp_conv_problem *p, int64_t j0, int64_t t, int64_t nr) {
    const int64_t ix = (j0 + t) % p->w;
    return FP_MIN(nr, t + p->w - ix);
}

/* NCHW: the kw rows (co, ky, 0 .. kw-1) of a tile interleave into one contiguous run of each output row,
 * kw * (pixels in the input row) floats, written front to back; a group cut by the tile's edge (kw not
 * dividing MR) is stored element by element. */
static void store_nchw(const fp_lowered *L, float *yn, int64_t i0, int64_t mr, int64_t j0, int64_t nr,
                       const float *tile, int64_t ldt) {
    const fp_conv_problem *p = L->p;
    const int64_t kw = p->kw, taps = p->kh * kw, plane = p->oh * p->ow;
    int64_t off[64];
    pixel_offsets(p, j0, nr, off);
    for (int64_t i = i0; i < i0 + mr;) {
        const int64_t co = i / taps, ky = i % taps / kw, kx = i % kw;
        float *base = yn + co * plane + ky * p->ow;
        const float *tr = tile + (i - i0) * ldt;
        if (kx == 0 && i + kw <= i0 + mr) {
            for (int64_t t = 0, end; t < nr; t = end) {
                end = row_end(p, j0, t, nr);
                float *d = base + off[t];
                if (kw == 2) {
                    L->interleave->run(d, tr + t, tr + ldt + t, end - t);
                } else {
                    for (int64_t u = 0; u < end - t; u++)
                        for (int64_t c = 0; c < kw; c++) d[kw * u + c] = tr[c * ldt + t + u];
                }
            }
            i += kw;
        } else {
            for (int64_t t = 0; t < nr; t++) base[off[t] + kx] = tr[t];
            i++;
        }
    }
}

static void store_nhwc(const fp_lowered *L, float *yn, int64_t i0, int64_t mr, int64_t j0, int64_t nr,
                       const float *tile, int64_t ldt) {
    const fp_conv_problem *p = L->p;
    const int64_t C = p->cout;
    int64_t off[64];
    pixel_offsets(p, j0, nr, off);
    for (int64_t i = i0; i < i0 + mr; i++) {
        const int64_t co = i % C, tap = i / C, ky = tap / p->kw, kx = tap % p->kw;
        float *base = yn + (ky * p->ow + kx) * C + co;
        const float *tr = tile + (i - i0) * ldt;
        for (int64_t t = 0; t < nr; t++) base[off[t] * C] = tr[t];
    }
}

int64_t fp_deconv_gemm_packed_bytes(const fp_conv_problem *p) {
    return fp_lowered_packed_bytes(p->cout * p->kh * p->kw, p->cin);
}

int fp_deconv_gemm_pack(const fp_conv_problem *p, const float *w, void *packed) {
    /* w is (Cin, Cout, KH, KW): W'^T as it lies for NCHW rows (co, ky, kx); NHWC rows (ky, kx, co) gather */
    const int64_t taps = p->kh * p->kw, m = p->cout * taps;
    return fp_lowered_pack_kmajor(m, p->cin, w, p->layout == 0 ? 1 : p->cout, p->layout == 0 ? 0 : taps, packed,
                                  p->num_threads);
}

int fp_deconv_gemm_f32(const fp_conv_problem *p, const float *x, const void *packed, const float *bias, float *y) {
    if (p->groups != 1 || p->kh != p->stride_h || p->kw != p->stride_w || p->oh != p->h * p->kh ||
        p->ow != p->w * p->kw || p->n < 0)
        return FP_ERR_ARGS;
    fp_conv_problem q;
    const fp_sgemm_ukr *uk;
    const int64_t m = p->cout * p->kh * p->kw;
    const float *a = fp_lowered_begin(p, packed, m, p->cin, &uk, &q);
    if (!a) return FP_ERR_PACKED;
    fp_conv_problem rows = q; /* B's packing sees the input image, read with stride 1 */
    rows.stride_h = rows.stride_w = 1;
    rows.oh = q.h, rows.ow = q.w;
    fp_lowered L;
    memset(&L, 0, sizeof L);
    L.p = &q, L.uk = uk, L.m = m, L.k = p->cin, L.n = p->h * p->w, L.a = a, L.bias = bias;
    L.x = x, L.y = y, L.x_image = p->cin * p->h * p->w, L.y_image = p->cout * p->oh * p->ow;
    L.single_k_block = 1;
    L.interleave = fp_interleave_pick(fp_isa());
    L.ctx = &rows;
    L.pack_b = p->layout == 0 ? fp_deconv_pack_b_nchw : fp_deconv_pack_b_nhwc;
    L.store = p->layout == 0 ? store_nchw : store_nhwc;
    return fp_lowered_run(&L);
}

/* The one-shot call of the K == stride GEMM: the caller's (Cin, Cout, KH, KW) weights packed into this thread's
 * scratch (on the pool), with the bias per GEMM row after them, and used once (as fp_deconv_scatter_once_f32). */
int fp_deconv_gemm_once_f32(const fp_conv_problem *p, const float *x, const float *w, const float *bias, float *y) {
    const int64_t taps = p->kh * p->kw, m = p->cout * taps, bytes = fp_deconv_gemm_packed_bytes(p);
    char *packed = (char *)fp_scratch(FP_SCRATCH_ONCE, bytes + (int64_t)sizeof(float) * m);
    if (!packed) return FP_ERR_ALLOC;
    const int rc = fp_deconv_gemm_pack(p, w, packed);
    if (rc < 0) return rc;
    float *rows = NULL;
    if (bias) { /* NCHW rows (co, ky, kx), NHWC (ky, kx, co) */
        rows = (float *)(packed + bytes);
        for (int64_t r = 0; r < m; r++) rows[r] = bias[p->layout == 0 ? r / taps : r % p->cout];
    }
    return fp_deconv_gemm_f32(p, x, packed, rows, y);
}
