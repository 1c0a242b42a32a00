/* Transposed convolution whose kernel is a whole number of strides per axis (K = T*s, dilation 1, groups 1,
 * NCHW: FCN-8s's K16 s8 and K4 s2 upsamplings) as one GEMM whose outputs are each written once.
 *
 * Along one axis, output o = i*s - p + k.  With o + p = s*q + r (0 <= r < s), the taps that reach o are
 * k = r + s*a, a < T, from input i = q - a: every output of block q and phase r sums the same T inputs
 * q, q-1, .., q-T+1.  So the layer is a stride-1 convolution with T x T taps and Cout*s*s output channels,
 * followed by a depth-to-space (Shi et al. 2016, the sub-pixel convolution):
 *
 *   Y'' (Cout*sh*sw x QH*QW) = W'' @ B,   rows (co, ry, rx), columns the blocks (qy, qx),
 *   W''[(co, ry, rx)][(ci, a, b)] = w[ci][co][ry + sh*a][rx + sw*b],   B[(ci, a, b)][(qy, qx)] = x[ci][qy - a][qx - b]
 *
 * and the store puts element ((co, ry, rx), (qy, qx)) at output (co, sh*qy + ry - p_h, sw*qx + rx - p_w), or
 * drops it where the padding crops it.  Against the scatter-add GEMM (deconv_scatter.c, the same multiplies
 * less the blocks the crop leaves partly empty): the reduction is Cin*T*T long instead of Cin (21 -> 84 for
 * FCN-8s, whose K = 21 micro-kernel calls spent more on their tile's loads and stores than on FMAs), and
 * every output is written once, with the bias and ReLU in the micro-kernel, instead of set to the bias, read
 * and written T*T times (5.5 MB for FCN-8s's K16 s8 output, past L2) and finished by a ReLU pass.
 * B is an im2col of x for a T x T window (kc x nc per cache block, zeros outside the input), packed per block
 * as the other lowered GEMMs pack theirs. */
#include <string.h>
#if defined(__SSE__)
#include <xmmintrin.h>
#endif

#include "lowered.h"

#define GROUP_MAX 16 /* the widest stride whose sw rows are interleaved into one output run before the store */

/* The blocks' grid: the first block (q0 = floor(p / s)) and how many, per axis; taps T = K / s. */
typedef struct shuffle_geom {
    int64_t th, tw, qy0, qx0, qh, qw;
    int stream; /* the output is larger than L2: the store's runs are written with non-temporal stores */
} shuffle_geom;

static int geom_of(const fp_conv_problem *p, shuffle_geom *g) {
    if (p->groups != 1 || p->layout != 0 || p->dil_h != 1 || p->dil_w != 1 || p->stride_h < 1 || p->stride_w < 1 ||
        p->kh < p->stride_h || p->kw < p->stride_w || p->kh % p->stride_h || p->kw % p->stride_w || p->pad_top < 0 ||
        p->pad_left < 0 || p->n < 0 || p->oh < 1 || p->ow < 1 || p->h < 1 || p->w < 1)
        return 0;
    g->th = p->kh / p->stride_h, g->tw = p->kw / p->stride_w;
    g->qy0 = p->pad_top / p->stride_h, g->qx0 = p->pad_left / p->stride_w;
    g->qh = (p->oh - 1 + p->pad_top) / p->stride_h - g->qy0 + 1;
    g->qw = (p->ow - 1 + p->pad_left) / p->stride_w - g->qx0 + 1;
    g->stream = (int64_t)sizeof(float) * p->n * p->cout * p->oh * p->ow > fp_cache_size(2);
    return 1;
}

static int64_t gemm_m(const fp_conv_problem *p) { return p->cout * p->stride_h * p->stride_w; }
static int64_t gemm_k(const fp_conv_problem *p) { return p->cin * (p->kh / p->stride_h) * (p->kw / p->stride_w); }

int64_t fp_deconv_shuffle_packed_bytes(const fp_conv_problem *p) {
    shuffle_geom g;
    if (!geom_of(p, &g)) return FP_ERR_ARGS;
    return fp_lowered_packed_bytes(gemm_m(p), gemm_k(p));
}

/* W'' as MR-row panels from the caller's (Cin, Cout, KH, KW) weight: element (i, kk) at w[col(kk) + row(i)],
 * row(co, ry, rx) = (co*KH + ry)*KW + rx and col(ci, a, b) = ci*Cout*KH*KW + sh*a*KW + sw*b; a panel at a time,
 * its rows' taps of one ci read together.  (Reading w front to back instead, each value written to its panel,
 * spread every ci's writes over all the panels: 1.3x slower on DCGAN's 2 MB.) */
static void pack_panels(const fp_conv_problem *p, const float *w, float *dst, int64_t MR) {
    const int64_t sh = p->stride_h, sw = p->stride_w, kh = p->kh, kw = p->kw, m = gemm_m(p), k = gemm_k(p);
    const int64_t th = kh / sh, tw = kw / sw, plane = p->cout * kh * kw;
    int64_t roff[64];
    for (int64_t pi = 0; pi * MR < m; pi++) {
        for (int64_t r = 0; r < MR; r++) {
            const int64_t i = pi * MR + r, co = i / (sh * sw), ry = i / sw % sh, rx = i % sw;
            roff[r] = i < m ? (co * kh + ry) * kw + rx : -1;
        }
        float *d = dst + pi * k * MR;
        for (int64_t ci = 0; ci < p->cin; ci++)
            for (int64_t a = 0; a < th; a++)
                for (int64_t b = 0; b < tw; b++, d += MR) {
                    const float *src = w + ci * plane + sh * a * kw + sw * b;
                    for (int64_t r = 0; r < MR; r++) d[r] = roff[r] >= 0 ? src[roff[r]] : 0.0f;
                }
    }
}

int fp_deconv_shuffle_pack(const fp_conv_problem *p, const float *w, void *packed) {
    shuffle_geom g;
    const fp_sgemm_ukr *uk = fp_sgemm_ukr_pick(fp_isa());
    if (!geom_of(p, &g) || uk->mr > 64) return FP_ERR_ARGS;
    pack_panels(p, w, fp_lowered_header_init(packed, gemm_m(p), gemm_k(p), FP_LOWERED_PANELS_SHUFFLE), uk->mr);
    return FP_OK;
}

/* B rows [k0, k0+kc) x blocks [j0, j0+nc) as NR-column micro-panels (kc x NR floats each): row (ci, a, b) of
 * block (qy, qx) is x[ci][qy - a][qx - b], zero outside the input; each piece of one grid row within one
 * micro-panel is one run of an input row. */
static void pack_b(const fp_lowered *L, const float *xn, int64_t k0, int64_t kc, int64_t j0, int64_t nc,
                   float *dst) {
    const fp_conv_problem *p = L->p;
    const shuffle_geom *g = (const shuffle_geom *)L->ctx;
    const int64_t NR = L->uk->nr, H = p->h, W = p->w, taps = g->th * g->tw;
    for (int64_t k = 0; k < kc; k++) {
        const int64_t kk = k0 + k, ci = kk / taps, a = kk % taps / g->tw, b = kk % g->tw;
        const float *xc = xn + ci * H * W;
        for (int64_t c = 0; c < nc;) {
            const int64_t j = j0 + c, gy = j / g->qw, gx = j % g->qw;
            const int64_t seg = FP_MIN(FP_MIN(nc - c, g->qw - gx), NR - c % NR);
            float *d = dst + c / NR * NR * kc + k * NR + c % NR;
            const int64_t iy = g->qy0 + gy - a, ix0 = g->qx0 + gx - b;
            int64_t lo = 0, hi = 0; /* the run's columns inside the input row */
            if (iy >= 0 && iy < H) lo = FP_MIN(seg, FP_MAX(0, -ix0)), hi = FP_MAX(lo, FP_MIN(seg, W - ix0));
            for (int64_t u = 0; u < lo; u++) d[u] = 0.0f;
            if (hi > lo) memcpy(d + lo, xc + iy * W + ix0 + lo, sizeof(float) * (size_t)(hi - lo));
            for (int64_t u = hi; u < seg; u++) d[u] = 0.0f;
            c += seg;
        }
    }
}

/* d[0, n) = s[0, n), with non-temporal stores past the first 16-byte boundary when `stream` (an output larger
 * than L2, written once: no read of its lines before the write). */
static void copy_run(float *d, const float *s, int64_t n, int stream) {
#if defined(__SSE__)
    if (stream) {
        int64_t u = 0;
        for (; u < n && ((uintptr_t)(d + u) & 15); u++) d[u] = s[u];
        for (; u + 4 <= n; u += 4) _mm_stream_ps(d + u, _mm_loadu_ps(s + u));
        for (; u < n; u++) d[u] = s[u];
        return;
    }
#endif
    (void)stream;
    memcpy(d, s, sizeof(float) * (size_t)n);
}

/* Rows i0 .. i0+mr-1 x blocks j0 .. j0+nr-1 of Y'' to their outputs.  The sw rows (co, ry, 0 .. sw-1) of a run of
 * blocks in one grid row cover one contiguous run of an output row, sw floats per block: interleaved in L1
 * (at stride 2 by the `interleave` row when nothing is cropped) and written front to back; a row whose group
 * the tile's edge cuts is written element by element. */
static void store(const fp_lowered *L, float *yn, int64_t i0, int64_t mr, int64_t j0, int64_t nr, const float *tile,
                  int64_t ldt) {
    const fp_conv_problem *p = L->p;
    const shuffle_geom *g = (const shuffle_geom *)L->ctx;
    const int64_t sh = p->stride_h, sw = p->stride_w, phases = sh * sw, plane = p->oh * p->ow;
    float run[GROUP_MAX * 64];
    fp_pixel_run runs[64];
    const int nruns = fp_tile_runs(j0, nr, g->qw, runs);
    for (int64_t i = i0; i < i0 + mr;) {
        const int64_t co = i / phases, ry = i / sw % sh, rx = i % sw;
        const float *tr = tile + (i - i0) * ldt;
        const int whole = rx == 0 && sw <= GROUP_MAX && i + sw <= i0 + mr;
        for (int k = 0; k < nruns; k++) {
            const int64_t t = runs[k].t, n = runs[k].n;
            const int64_t oy = sh * (g->qy0 + runs[k].iy) + ry - p->pad_top;
            if (oy < 0 || oy >= p->oh) continue;
            const int64_t ox0 = sw * (g->qx0 + runs[k].ix) + rx - p->pad_left; /* block ix's first output */
            float *yr = yn + co * plane + oy * p->ow + ox0;
            if (whole) {
                const int64_t lo = FP_MAX(0, -ox0), hi = FP_MIN(sw * n, p->ow - ox0);
                if (sw == 2) { /* the pairs inside by the interleave, the cropped edges' single values around it */
                    const int64_t u0 = (lo + 1) / 2, u1 = FP_MAX(u0, hi / 2);
                    for (int64_t q = lo; q < FP_MIN(hi, 2 * u0); q++) yr[q] = tr[q % 2 * ldt + t + q / 2];
                    if (u1 > u0) L->interleave->run(yr + 2 * u0, tr + t + u0, tr + ldt + t + u0, u1 - u0);
                    for (int64_t q = FP_MAX(lo, 2 * u1); q < hi; q++) yr[q] = tr[q % 2 * ldt + t + q / 2];
                    continue;
                }
                for (int64_t c = 0; c < sw; c++)
                    for (int64_t u = 0; u < n; u++) run[u * sw + c] = tr[c * ldt + t + u];
                if (hi > lo) copy_run(yr + lo, run + lo, hi - lo, g->stream);
                continue;
            }
            for (int64_t u = 0; u < n; u++) {
                const int64_t ox = ox0 + sw * u;
                if (ox >= 0 && ox < p->ow) yr[sw * u] = tr[t + u];
            }
        }
        i += whole ? sw : 1;
    }
}

/* bias: one value per GEMM row (co, ry, rx), or NULL; a_packed the panels of fp_deconv_shuffle_pack. */
int fp_deconv_shuffle_f32(const fp_conv_problem *p, const float *x, const void *packed, const float *bias,
                          float *y) {
    shuffle_geom g;
    if (!geom_of(p, &g)) return FP_ERR_ARGS;
    fp_conv_problem q;
    const fp_sgemm_ukr *uk;
    const int64_t m = gemm_m(p), k = gemm_k(p);
    const float *a = fp_lowered_begin_form(p, packed, m, k, FP_LOWERED_PANELS_SHUFFLE, &uk, &q);
    if (!a) return FP_ERR_PACKED;
    fp_lowered L;
    memset(&L, 0, sizeof L);
    L.p = &q, L.uk = uk, L.m = m, L.k = k, L.n = g.qh * g.qw, L.a = a, L.bias = bias;
    L.x = x, L.y = y, L.x_image = p->cin * p->h * p->w, L.y_image = p->cout * p->oh * p->ow;
    L.single_k_block = 1;
    L.nc_shared = 1;
    L.ctx = &g;
    L.interleave = fp_interleave_pick(fp_isa());
    L.pack_b = pack_b;
    L.store = store;
    return fp_lowered_run(&L);
}

/* One-shot form: w the caller's (Cin, Cout, KH, KW) weight packed into this thread's scratch, bias one value per
 * output channel (the GEMM rows' bias made here). */
int fp_deconv_shuffle_once_f32(const fp_conv_problem *p, const float *x, const float *w, const float *bias,
                               float *y) {
    const int64_t bytes = fp_deconv_shuffle_packed_bytes(p);
    if (bytes < 0) return (int)bytes;
    float *rows;
    char *packed = fp_lowered_once_scratch(p, bias, bytes, p->stride_h * p->stride_w, &rows);
    if (!packed) return FP_ERR_ALLOC;
    const int rc = fp_deconv_shuffle_pack(p, w, packed);
    return rc < 0 ? rc : fp_deconv_shuffle_f32(p, x, packed, rows, y);
}
