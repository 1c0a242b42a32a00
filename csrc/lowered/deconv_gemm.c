/* Transposed convolution with kernel == stride and no padding (U-Net's 2x2 s2 up-convolution): one GEMM
 * per image, Y' (Cout*KH*KW x H*W) = W' @ X, whose store puts each tile element straight at its output
 * pixel (lowered.h).  The output phases are disjoint, so nothing is accumulated, zeroed or buffered
 * beyond one MR x NR tile.  Rows of W' are (co, ky, kx), so that the kx rows land next to each other in an
 * output row.  NHWC output runs the transposed product instead, written in place (deconv_nhwc.c). */
#include <string.h>

#include "lowered.h"

/* NCHW: B = X[n] (Cin x H*W) as it is, copied into the micro-panels row by row (each input row segment read
 * front to back), a full micro-panel row by one constant-size copy */
void fp_deconv_pack_b_nchw(const fp_lowered *L, const float *xn, int64_t k0, int64_t kc, int64_t j0, int64_t nc,
                           float *dst) {
    const int64_t NR = L->uk->nr, hw = L->n;
    for (int64_t k = 0; k < kc; k++) {
        const float *xr = xn + (k0 + k) * hw + j0;
        for (int64_t q = 0; q < nc; q += NR) {
            float *d = dst + q * kc + k * NR; /* micro-panel q/NR holds kc x NR floats */
            if (q + NR <= nc) fp_copy_short(d, xr + q, NR);
            else memcpy(d, xr + q, sizeof(float) * (size_t)(nc - q));
        }
    }
}

/* NHWC (the scatter-add GEMM, deconv_scatter.c): B[ci][j] = x[j][ci], a transpose of kc channels of nc pixels
 * (read along the pixels' channel runs) */
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

/* NCHW: the kw rows (co, ky, 0 .. kw-1) of a tile interleave into one contiguous run of each output row,
 * kw * (pixels in the input row) floats, written front to back; a group cut by the tile's edge (kw not
 * dividing MR) is stored element by element.  The tile's runs of one input row are found once per tile (a
 * table of 48 output offsets per tile, rebuilt for every 8-row tile, was 20 % of BasicUNet's 32->32 @128). */
static void store_nchw(const fp_lowered *L, float *yn, int64_t i0, int64_t mr, int64_t j0, int64_t nr,
                       const float *tile, int64_t ldt) {
    const fp_conv_problem *p = L->p;
    const int64_t kw = p->kw, taps = p->kh * kw, plane = p->oh * p->ow;
    fp_pixel_run runs[64];
    const int nruns = fp_tile_runs(j0, nr, p->w, runs);
    if (kw == 2 && L->interleave->rows && i0 % 2 == 0 && mr >= 2) {
        /* the tile's whole row pairs in one call per run (a 2x2 layer's tile starts at kx = 0: MR is even) */
        float *bases[FP_LOWERED_MAX_MR / 2];
        const int64_t pairs = mr / 2;
        for (int64_t q = 0; q < pairs; q++) {
            const int64_t i = i0 + 2 * q;
            bases[q] = yn + i / taps * plane + i % taps / kw * p->ow;
        }
        for (int r = 0; r < nruns; r++)
            L->interleave->rows(bases, runs[r].iy * p->kh * p->ow + runs[r].ix * kw, tile + runs[r].t, ldt, pairs,
                                runs[r].n, *(const int *)L->ctx);
        i0 += 2 * pairs, tile += 2 * pairs * ldt, mr -= 2 * pairs; /* an odd last row: below */
    }
    for (int64_t i = i0; i < i0 + mr;) {
        const int64_t co = i / taps, ky = i % taps / kw, kx = i % kw;
        float *base = yn + co * plane + ky * p->ow;
        const float *tr = tile + (i - i0) * ldt;
        const int whole = kx == 0 && i + kw <= i0 + mr;
        for (int r = 0; r < nruns; r++) {
            const int64_t t = runs[r].t, n = runs[r].n;
            float *d = base + runs[r].iy * p->kh * p->ow + runs[r].ix * kw; /* pixel t's output, kx = 0 */
            if (!whole) {
                for (int64_t u = 0; u < n; u++) d[kw * u + kx] = tr[t + u];
            } else if (kw == 2) {
                L->interleave->run(d, tr + t, tr + ldt + t, n);
            } else {
                for (int64_t u = 0; u < n; u++)
                    for (int64_t c = 0; c < kw; c++) d[kw * u + c] = tr[c * ldt + t + u];
            }
        }
        i += whole ? kw : 1;
    }
}

/* NHWC runs deconv_nhwc.c: the micro-kernels write the output in place, W'^T's column panels packed. */
int64_t fp_deconv_gemm_packed_bytes(const fp_conv_problem *p) {
    if (p->layout != 0) return fp_deconv_nhwc_packed_bytes(p);
    return fp_lowered_packed_bytes(p->cout * p->kh * p->kw, p->cin);
}

int fp_deconv_gemm_pack(const fp_conv_problem *p, const float *w, void *packed) {
    if (p->layout != 0) return fp_deconv_nhwc_pack(p, w, packed);
    /* w is (Cin, Cout, KH, KW): W'^T as it lies for the NCHW rows (co, ky, kx) */
    return fp_lowered_pack_kmajor(p->cout * p->kh * p->kw, p->cin, w, packed, p->num_threads);
}

static int shape_ok(const fp_conv_problem *p) {
    return p->groups == 1 && p->kh == p->stride_h && p->kw == p->stride_w && p->oh == p->h * p->kh &&
           p->ow == p->w * p->kw && p->n >= 0;
}

/* An output larger than L2 is written with non-temporal stores, as the 1x1 GEMM writes its own (a smaller one
 * stays in cache for the next node). */
static int stream_output(const fp_conv_problem *q) {
    return (int64_t)sizeof(float) * q->n * q->cout * q->oh * q->ow > fp_cache_size(2);
}

/* NCHW: the GEMM on panels `a`, or (a NULL) on the caller's k-major weights `a_raw`, packed per row block. */
static int run_nchw(const fp_conv_problem *q, const fp_sgemm_ukr *uk, const float *a, const float *a_raw,
                    const float *x, const float *bias, float *y) {
    fp_lowered L;
    memset(&L, 0, sizeof L);
    L.p = q, L.uk = uk, L.m = q->cout * q->kh * q->kw, L.k = q->cin, L.n = q->h * q->w, L.a = a, L.a_raw = a_raw;
    L.bias = bias, L.x = x, L.y = y, L.x_image = q->cin * q->h * q->w, L.y_image = q->cout * q->oh * q->ow;
    L.single_k_block = 1;
    L.nc_shared = 1;
    L.interleave = fp_interleave_pick(fp_isa());
    int stream = stream_output(q); /* the store's (ctx) */
    L.ctx = &stream;
    L.pack_b = fp_deconv_pack_b_nchw;
    L.store = store_nchw;
    return fp_lowered_run(&L);
}

int fp_deconv_gemm_f32(const fp_conv_problem *p, const float *x, const void *packed, const float *bias, float *y) {
    if (!shape_ok(p)) return FP_ERR_ARGS;
    if (p->layout != 0) return fp_deconv_nhwc_run(p, x, packed, bias, y); /* bias rows (ky, kx, co): ky 0's */
    fp_conv_problem q;
    const fp_sgemm_ukr *uk;
    const float *a = fp_lowered_begin(p, packed, p->cout * p->kh * p->kw, p->cin, &uk, &q);
    if (!a) return FP_ERR_PACKED;
    return run_nchw(&q, uk, a, NULL, x, bias, y);
}

char *fp_lowered_once_scratch(const fp_conv_problem *p, const float *bias, int64_t bytes, int64_t taps,
                              float **rows) {
    const int64_t m = p->cout * taps;
    char *s = (char *)fp_scratch(FP_SCRATCH_ONCE, bytes + (int64_t)sizeof(float) * m);
    *rows = NULL;
    if (s && bias) {
        *rows = (float *)(s + bytes);
        for (int64_t r = 0; r < m; r++) (*rows)[r] = bias[p->layout == 0 ? r / taps : r % p->cout];
    }
    return s;
}

/* The one-shot call of the K == stride GEMM.  NCHW on one thread reads the caller's (Cin, Cout, KH, KW) weights
 * (W'^T, k-major) in the GEMM's loops when they are swept once (one column block): each MC-row block of panels
 * is packed just before its tiles use it, from there in L2, instead of the whole 8 MiB of U-Net's 1024->512 W'
 * written to memory and read back (fp_lowered.a_raw).  Otherwise (more column blocks, which would each pack
 * it again; more threads, which split the columns; NHWC) the weights are packed first, on the pool, into this
 * thread's scratch. */
int fp_deconv_gemm_once_f32(const fp_conv_problem *p, const float *x, const float *w, const float *bias, float *y) {
    if (!shape_ok(p)) return FP_ERR_ARGS;
    float *rows;
    if (p->layout == 0 && FP_MIN(fp_threads(p), fp_max_threads()) == 1) {
        if (!fp_lowered_once_scratch(p, bias, 0, p->kh * p->kw, &rows)) return FP_ERR_ALLOC;
        fp_conv_problem q = *p;
        q.num_threads = 1;
        const int rc = run_nchw(&q, fp_sgemm_ukr_pick(fp_isa()), NULL, w, x, rows, y);
        if (rc != FP_DECLINED) return rc;
    }
    const int64_t bytes = fp_deconv_gemm_packed_bytes(p);
    char *packed = fp_lowered_once_scratch(p, bias, bytes, p->kh * p->kw, &rows);
    if (!packed) return FP_ERR_ALLOC;
    const int rc = fp_deconv_gemm_pack(p, w, packed);
    return rc < 0 ? rc : fp_deconv_gemm_f32(p, x, packed, rows, y);
}
