/* Transposed convolution (any K >= stride per axis, padding, output_padding; dilation 1, groups 1, NCHW) as one
 * GEMM whose outputs are each written once: the sub-pixel GEMM.
 *
 * Along one axis, output o = i*s - p + k.  With o + p = s*q + r (0 <= r < s), the taps that reach o are
 * k = r + s*a, a < T_r = ceil((K - r) / s), from input i = q - a: every output of block q and phase r sums the
 * inputs q, q-1, .., q-T_r+1.  T_r is T = ceil(K / s) or T - 1.  So the layer is a stride-1 convolution of x with
 * T x T taps whose sh*sw phases have Cout output channels each, followed by a depth-to-space (Shi et al. 2016):
 *
 *   Y'' (sh*sw*Cp x QH*QW) = W'' @ B,  rows (ry, rx, co) (Cp: Cout rounded up to MR), columns the blocks (qy, qx),
 *   W''[(ry, rx, co)][(a, b, ci)] = w[ci][co][ry + sh*a][rx + sw*b],  B[(a, b, ci)][(qy, qx)] = x[ci][qy - a][qx - b]
 *
 * (zeros outside the input), and the store puts element ((ry, rx, co), (qy, qx)) at output (co, sh*qy + ry - p_h,
 * sw*qx + rx - p_w), or drops it where the padding crops it.  Each MR-row panel lies in one phase, whose taps
 * (a < T_ry, b < T_rx) are one contiguous range of B's rows in the tap order below, so a phase with fewer taps
 * (a 3x3 s2 layer: 4, 2, 2 and 1) reads only its part of the k block (fp_lowered.krange): no multiply by a zero.
 * Against the scatter-add GEMM (deconv_scatter.c, the same multiplies, less the blocks the crop leaves partly
 * empty): a reduction of up to Cin*T*T instead of Cin (84 instead of 21 on FCN-8s, whose K = 21 micro-kernel
 * calls spent more on their tile's loads and stores than on FMAs), and every output written once, with the bias
 * and ReLU in the micro-kernel, instead of set to the bias, read and written per tap, and passed over for ReLU.
 * B is an im2col of x for a T x T window, packed per cache block as the other lowered GEMMs pack theirs. */
#include <string.h>

#include "lowered.h"

/* The blocks' grid (the first block q0 = floor(p / s) and how many, per axis), the taps per axis T = ceil(K / s),
 * the tap order's parts (below), and the GEMM's rows: Cp per phase. */
typedef struct shuffle_geom {
    int64_t th, tw, qy0, qx0, qh, qw, cp, m, k;
    int64_t nr_, nc_, ncc; /* tap blocks in R, C, Cc (tap_of) */
} shuffle_geom;

static int geom_of(const fp_conv_problem *p, int64_t MR, shuffle_geom *g) {
    if (p->groups != 1 || p->layout != 0 || p->dil_h != 1 || p->dil_w != 1 || p->stride_h < 1 || p->stride_w < 1 ||
        p->kh < p->stride_h || p->kw < p->stride_w || p->pad_top < 0 || p->pad_left < 0 || p->n < 0 || p->oh < 1 ||
        p->ow < 1 || p->h < 1 || p->w < 1 || p->cin < 1 || p->cout < 1)
        return 0;
    g->th = FP_CEIL_DIV(p->kh, p->stride_h), g->tw = FP_CEIL_DIV(p->kw, p->stride_w);
    g->qy0 = p->pad_top / p->stride_h, g->qx0 = p->pad_left / p->stride_w;
    g->qh = (p->oh - 1 + p->pad_top) / p->stride_h - g->qy0 + 1;
    g->qw = (p->ow - 1 + p->pad_left) / p->stride_w - g->qx0 + 1;
    g->cp = FP_CEIL_DIV(p->cout, MR) * MR;
    g->m = p->stride_h * p->stride_w * g->cp, g->k = p->cin * g->th * g->tw;
    g->nr_ = g->tw - 1, g->nc_ = (g->th - 1) * (g->tw - 1), g->ncc = g->th - 1;
    return 1;
}

/* The tap blocks (a, b) in B's row order: R = {a = T_h-1, b < T_w-1}, then C = {a < T_h-1, b < T_w-1}, then
 * Cc = {a < T_h-1, b = T_w-1}, then (T_h-1, T_w-1).  A phase's taps {a < T_ry} x {b < T_rx}, T_r in {T, T-1},
 * are then one range: all of them; C and Cc; R and C; C. */
static void tap_of(const shuffle_geom *g, int64_t tb, int64_t *a, int64_t *b) {
    if (tb < g->nr_) *a = g->th - 1, *b = tb;
    else if ((tb -= g->nr_) < g->nc_) *a = tb / (g->tw - 1), *b = tb % (g->tw - 1);
    else if ((tb -= g->nc_) < g->ncc) *a = tb, *b = g->tw - 1;
    else *a = g->th - 1, *b = g->tw - 1;
}

/* B rows [k0, k1) that phase (ry, rx) reads. */
static void phase_range(const fp_conv_problem *p, const shuffle_geom *g, int64_t ry, int64_t rx, int64_t *k0,
                        int64_t *k1) {
    const int full_y = FP_CEIL_DIV(p->kh - ry, p->stride_h) == g->th;
    const int full_x = FP_CEIL_DIV(p->kw - rx, p->stride_w) == g->tw;
    const int64_t lo = full_y ? 0 : g->nr_;
    const int64_t hi = full_x ? (full_y ? g->th * g->tw : g->nr_ + g->nc_ + g->ncc) : g->nr_ + g->nc_;
    *k0 = lo * p->cin, *k1 = hi * p->cin;
}

static void krange(const fp_lowered *L, int64_t i, int64_t *k0, int64_t *k1) {
    const shuffle_geom *g = (const shuffle_geom *)L->ctx;
    const int64_t ph = i / g->cp;
    phase_range(L->p, g, ph / L->p->stride_w, ph % L->p->stride_w, k0, k1);
}

int64_t fp_deconv_shuffle_packed_bytes(const fp_conv_problem *p) {
    shuffle_geom g;
    if (!geom_of(p, fp_sgemm_ukr_pick(fp_isa())->mr, &g)) return FP_ERR_ARGS;
    return fp_lowered_packed_bytes(g.m, g.k);
}

/* W'' as MR-row panels from the caller's (Cin, Cout, KH, KW) weight; each panel one phase's channels
 * [co0, co0 + MR), its columns (a, b, ci) in the tap order, zero for the taps past the kernel (the phase's
 * range leaves them out) and for the channels past Cout.  One job per panel (disjoint outputs): the pool's
 * threads split them once the panels are large (fp_pack_jobs), as a one-shot call packs them per call and the
 * other threads had waited for it (3x3 s2 128->64: 512 KB of strided gathers). */
typedef struct pack_task {
    const fp_conv_problem *p;
    const shuffle_geom *g;
    const float *w;
    float *dst;
    int64_t MR;
} pack_task;

static void pack_panel(void *ctx, int64_t pi) {
    const pack_task *T = (const pack_task *)ctx;
    const fp_conv_problem *p = T->p;
    const shuffle_geom *g = T->g;
    const int64_t MR = T->MR, sh = p->stride_h, sw = p->stride_w, kh = p->kh, kw = p->kw, taps = kh * kw;
    const int64_t ph = pi * MR / g->cp, co0 = pi * MR % g->cp, ry = ph / sw, rx = ph % sw;
    const int64_t nco = FP_MAX(0, FP_MIN(MR, p->cout - co0));
    float *d = T->dst + pi * g->k * MR;
    for (int64_t tb = 0; tb < g->th * g->tw; tb++) {
        int64_t a, b;
        tap_of(g, tb, &a, &b);
        const int64_t ky = ry + sh * a, kx = rx + sw * b;
        const int inside = ky < kh && kx < kw;
        for (int64_t ci = 0; ci < p->cin; ci++, d += MR) {
            int64_t r = 0;
            if (inside && nco > 0) { /* (no pointer formed for a block of padding channels past Cout) */
                const float *src = T->w + (ci * p->cout + co0) * taps + ky * kw + kx;
                for (; r < nco; r++) d[r] = src[r * taps];
            }
            for (; r < MR; r++) d[r] = 0.0f;
        }
    }
}

int fp_deconv_shuffle_pack(const fp_conv_problem *p, const float *w, void *packed) {
    shuffle_geom g;
    const int64_t MR = fp_sgemm_ukr_pick(fp_isa())->mr;
    if (!geom_of(p, MR, &g)) return FP_ERR_ARGS;
    pack_task T = {p, &g, w, fp_lowered_header_init(packed, g.m, g.k, FP_LOWERED_PANELS_SHUFFLE), MR};
    const int64_t panels = FP_CEIL_DIV(g.m, MR);
    fp_pack_jobs(p, panels, (int64_t)sizeof(float) * panels * MR * g.k, pack_panel, &T);
    return FP_OK;
}

/* B rows [k0, k0+kc) x blocks [j0, j0+nc) as NR-column micro-panels (kc x NR floats each): row (a, b, ci) of
 * block (qy, qx) is x[ci][qy - a][qx - b], zero outside the input; each piece of one grid row within one
 * micro-panel is one run of an input row. */
static void pack_b(const fp_lowered *L, const float *xn, int64_t k0, int64_t kc, int64_t j0, int64_t nc,
                   float *dst) {
    const fp_conv_problem *p = L->p;
    const shuffle_geom *g = (const shuffle_geom *)L->ctx;
    const int64_t NR = L->uk->nr, H = p->h, W = p->w;
    for (int64_t k = 0; k < kc; k++) {
        const int64_t kk = k0 + k, ci = kk % p->cin;
        int64_t a, b;
        tap_of(g, kk / p->cin, &a, &b);
        const float *xc = xn + ci * H * W;
        /* the block (gy, gx) of column c and c's place in its micro-panel, advanced without a division per run
         * (its own samples 6.5 -> 5.2 % on a 3x3 s2 128->64@64, perf cpu-clock; the layer time within noise) */
        int64_t gy = j0 / g->qw, gx = j0 % g->qw, off = 0;
        float *panel = dst + k * NR;
        for (int64_t c = 0; c < nc;) {
            const int64_t seg = FP_MIN(FP_MIN(nc - c, g->qw - gx), NR - off);
            float *d = panel + off;
            const int64_t iy = g->qy0 + gy - a, ix0 = g->qx0 + gx - b;
            int64_t lo = 0, hi = 0; /* the run's columns inside the input row */
            if (iy >= 0 && iy < H) lo = FP_MIN(seg, FP_MAX(0, -ix0)), hi = FP_MAX(lo, FP_MIN(seg, W - ix0));
            for (int64_t u = 0; u < lo; u++) d[u] = 0.0f;
            if (hi > lo) memcpy(d + lo, xc + iy * W + ix0 + lo, sizeof(float) * (size_t)(hi - lo));
            for (int64_t u = hi; u < seg; u++) d[u] = 0.0f;
            c += seg, gx += seg, off += seg;
            if (gx == g->qw) gx = 0, gy++;
            if (off == NR) off = 0, panel += NR * kc;
        }
    }
}

/* Rows i0 .. i0+mr-1 (one phase (ry, rx), channels co0 ..) x blocks j0 .. j0+nr-1 of Y'' to their outputs, sw
 * apart in an output row; channels past Cout dropped.  The sh*sw phases' tiles of the same blocks that complete
 * an output line follow each other in the GEMM's loops while the row block holds all phases (mc rows, half of
 * L2 for the panels: FCN-8s's 1536 rows of K 84, a 3x3 s2 layer's 256 of K up to 512). */
static void store(const fp_lowered *L, float *yn, int64_t i0, int64_t mr, int64_t j0, int64_t nr, const float *tile,
                  int64_t ldt) {
    const fp_conv_problem *p = L->p;
    const shuffle_geom *g = (const shuffle_geom *)L->ctx;
    const int64_t sh = p->stride_h, sw = p->stride_w, plane = p->oh * p->ow;
    const int64_t ph = i0 / g->cp, co0 = i0 % g->cp, ry = ph / sw, rx = ph % sw;
    const int64_t rows = FP_MIN(mr, p->cout - co0);
    fp_pixel_run runs[64];
    const int nruns = fp_tile_runs(j0, nr, g->qw, runs);
    for (int k = 0; k < nruns; k++) {
        const int64_t t = runs[k].t, n = runs[k].n;
        const int64_t oy = sh * (g->qy0 + runs[k].iy) + ry - p->pad_top;
        if (oy < 0 || oy >= p->oh) continue;
        const int64_t ox0 = sw * (g->qx0 + runs[k].ix) + rx - p->pad_left; /* block ix's output */
        const int64_t u0 = ox0 >= 0 ? 0 : FP_CEIL_DIV(-ox0, sw), u1 = FP_MIN(n, FP_CEIL_DIV(p->ow - ox0, sw));
        for (int64_t r = 0; r < rows; r++) {
            float *yr = yn + (co0 + r) * plane + oy * p->ow + ox0 + sw * u0; /* block u0's output, inside */
            const float *v = tile + r * ldt + t + u0;
            for (int64_t u = 0; u < u1 - u0; u++) yr[sw * u] = v[u];
        }
    }
}

/* The GEMM on packed panels `a` (fp_deconv_shuffle_pack); rows: one bias value per GEMM row, or NULL. */
static int run(const fp_conv_problem *p, const float *x, const void *packed, const float *rows, float *y) {
    const fp_sgemm_ukr *uk;
    fp_conv_problem q;
    shuffle_geom g;
    if (!geom_of(p, fp_sgemm_ukr_pick(fp_isa())->mr, &g)) return FP_ERR_ARGS;
    const float *a = fp_lowered_begin_form(p, packed, g.m, g.k, FP_LOWERED_PANELS_SHUFFLE, &uk, &q);
    if (!a) return FP_ERR_PACKED;
    fp_lowered L;
    memset(&L, 0, sizeof L);
    L.p = &q, L.uk = uk, L.m = g.m, L.k = g.k, L.n = g.qh * g.qw, L.a = a, L.bias = rows;
    L.x = x, L.y = y, L.x_image = p->cin * p->h * p->w, L.y_image = p->cout * p->oh * p->ow;
    L.single_k_block = 1;
    L.nc_shared = 1;
    L.ctx = &g;
    L.pack_b = pack_b;
    L.krange = krange;
    L.store = store;
    return fp_lowered_run(&L);
}

/* The bias of each GEMM row (ry, rx, co): bias[co], zero past Cout. */
static void bias_rows(const fp_conv_problem *p, const float *bias, float *rows) {
    const int64_t cp = FP_CEIL_DIV(p->cout, fp_sgemm_ukr_pick(fp_isa())->mr) * fp_sgemm_ukr_pick(fp_isa())->mr;
    for (int64_t i = 0; i < p->stride_h * p->stride_w * cp; i++) rows[i] = i % cp < p->cout ? bias[i % cp] : 0.0f;
}

static int64_t rows_bytes(const fp_conv_problem *p) {
    const int64_t MR = fp_sgemm_ukr_pick(fp_isa())->mr;
    return (int64_t)sizeof(float) * p->stride_h * p->stride_w * FP_CEIL_DIV(p->cout, MR) * MR;
}

/* bias: one value per output channel, or NULL (the GEMM rows' bias made in this thread's one-shot scratch). */
int fp_deconv_shuffle_f32(const fp_conv_problem *p, const float *x, const void *packed, const float *bias,
                          float *y) {
    float *rows = NULL;
    if (bias) {
        rows = (float *)fp_scratch(FP_SCRATCH_ONCE, rows_bytes(p));
        if (!rows) return FP_ERR_ALLOC;
        bias_rows(p, bias, rows);
    }
    return run(p, x, packed, rows, y);
}

/* One-shot form: w the caller's (Cin, Cout, KH, KW) weight packed into this thread's scratch, then the rows' bias. */
int fp_deconv_shuffle_once_f32(const fp_conv_problem *p, const float *x, const float *w, const float *bias,
                               float *y) {
    const int64_t bytes = fp_deconv_shuffle_packed_bytes(p);
    if (bytes < 0) return (int)bytes;
    char *s = (char *)fp_scratch(FP_SCRATCH_ONCE, bytes + rows_bytes(p));
    if (!s) return FP_ERR_ALLOC;
    const int rc = fp_deconv_shuffle_pack(p, w, s);
    if (rc < 0) return rc;
    float *rows = bias ? (float *)(s + bytes) : NULL;
    if (rows) bias_rows(p, bias, rows);
    return run(p, x, s, rows, y);
}
