/* Filter transforms U[k] = G g G^T (k = n i + j) of F(4x4) and F(2x2), done once per layer in float64 and
 * rounded once, then packed for the GEMM micro-kernel as column panels: position k, panel p holds Cin rows
 * of `width` output channels (k-major, columns past Cout zero), exactly the B operand layout the
 * micro-kernels read with ldb = width.  Only the sets asked for are packed (winograd.h: a network packs the
 * tile size its map runs, 4 x the weights for F(4x4), rather than both, 5.8 x).
 *
 * The work is threaded (the pool) over panels x blocks of input channels, and runs 16 output channels at a
 * time: the 9 taps of 16 filters are gathered once, the transform runs on 16-wide rows of doubles (which
 * the compiler vectorises), and each of the n n positions gets one 64-byte run of its panel row.  Writing
 * one value per position per filter instead (scattered over n n streams, a whole buffer zeroed first) took
 * the 151 MB of U of fcn_resnet50's 2048->512 classifier about 10 x as long. */
#include "winograd.h"

/* G of F(4x4): the points 0, 1, -1, 2, -2, infinity; of F(2x2): 0, 1, -1, infinity (rows scaled as in
 * fastpoint/backends/numpy_winograd.py). */
static const double G4[6][3] = {
    {1.0 / 4, 0.0, 0.0},
    {-1.0 / 6, -1.0 / 6, -1.0 / 6},
    {-1.0 / 6, 1.0 / 6, -1.0 / 6},
    {1.0 / 24, 1.0 / 12, 1.0 / 6},
    {1.0 / 24, -1.0 / 12, 1.0 / 6},
    {0.0, 0.0, 1.0},
};
static const double G2[4][3] = {{-1.0, 0.0, 0.0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0.0, 0.0, 1.0}};

#define CI_BLOCK 64 /* input channels per pack job */

fp_wino_panels fp_wino_panels_for(const fp_conv_problem *p, const fp_sgemm_ukr *uk) {
    fp_wino_panels pn;
    pn.units = FP_CEIL_DIV(p->cout, 16);
    pn.count = FP_CEIL_DIV(pn.units, FP_MAX(uk->nr / 16, 1));
    pn.base = pn.units / pn.count;
    pn.extra = pn.units % pn.count;
    return pn;
}

/* Floats of one set of F(m): n n positions. */
static int64_t set_floats(const fp_conv_problem *p, fp_wino_panels pn, int m) {
    return (int64_t)(m + 2) * (m + 2) * fp_wino_u_stride(p, pn);
}

int64_t fp_wino_packed_floats(const fp_conv_problem *p, const fp_sgemm_ukr *uk, int sets) {
    const fp_wino_panels pn = fp_wino_panels_for(p, uk);
    return FP_WINO_HEAD_FLOATS + (sets & FP_WINO_SET_4 ? set_floats(p, pn, 4) : 0) +
           (sets & FP_WINO_SET_2 ? set_floats(p, pn, 2) : 0);
}

typedef struct pack_ctx {
    const fp_conv_problem *p;
    fp_wino_panels pn;
    const float *w;
    float *set[2]; /* [0] F(4x4), [1] F(2x2), or NULL */
    int64_t ci_blocks;
} pack_ctx;

/* One set's positions for 16 filters of taps g[9][16] (t = G g, then t G^T): d + k * ks receives position k. */
static void store_set(int n, const double (*G)[3], const double (*g)[16], float *d, int64_t ks) {
    double t[6][3][16];
    for (int i = 0; i < n; i++)
        for (int b = 0; b < 3; b++)
            for (int j = 0; j < 16; j++)
                t[i][b][j] = G[i][0] * g[b][j] + G[i][1] * g[3 + b][j] + G[i][2] * g[6 + b][j];
    for (int i = 0; i < n; i++)
        for (int l = 0; l < n; l++) {
            float *o = d + (n * i + l) * ks;
            for (int j = 0; j < 16; j++)
                o[j] = (float)(t[i][0][j] * G[l][0] + t[i][1][j] * G[l][1] + t[i][2][j] * G[l][2]);
        }
}

static void pack_job(void *vctx, int64_t job, int worker) {
    const pack_ctx *c = (const pack_ctx *)vctx;
    const fp_conv_problem *p = c->p;
    (void)worker;
    const int64_t K = p->cin, M = p->cout, ks = fp_wino_u_stride(p, c->pn);
    const int64_t panel = job / c->ci_blocks, ci0 = job % c->ci_blocks * CI_BLOCK, ci1 = FP_MIN(K, ci0 + CI_BLOCK);
    const int64_t c0 = fp_wino_col(c->pn, panel), width = fp_wino_col(c->pn, panel + 1) - c0;
    for (int64_t ci = ci0; ci < ci1; ci++)
        for (int64_t jj = 0; jj < width; jj += 16) {
            double g[9][16];
            for (int j = 0; j < 16; j++) { /* columns past Cout: zero filters, so zero U */
                const int64_t co = c0 + jj + j;
                for (int q = 0; q < 9; q++) g[q][j] = co < M ? (double)c->w[(co * K + ci) * 9 + q] : 0.0;
            }
            const int64_t at = K * c0 + ci * width + jj;
            if (c->set[0]) store_set(6, G4, (const double(*)[16])g, c->set[0] + at, ks);
            if (c->set[1]) store_set(4, G2, (const double(*)[16])g, c->set[1] + at, ks);
        }
}

void fp_wino_pack(const fp_conv_problem *p, const fp_sgemm_ukr *uk, int sets, const float *w, float *dst) {
    pack_ctx c;
    c.p = p;
    c.pn = fp_wino_panels_for(p, uk);
    c.w = w;
    fp_wino_head *h = (fp_wino_head *)dst;
    int64_t at = FP_WINO_HEAD_FLOATS;
    for (int s = 0; s < 2; s++) {
        const int m = s == 0 ? 4 : 2;
        h->off[s] = -1;
        c.set[s] = NULL;
        if (sets & (s == 0 ? FP_WINO_SET_4 : FP_WINO_SET_2)) {
            h->off[s] = at;
            c.set[s] = dst + at;
            at += set_floats(p, c.pn, m);
        }
    }
    c.ci_blocks = FP_CEIL_DIV(p->cin, CI_BLOCK);
    const int64_t jobs = c.pn.count * c.ci_blocks;
    fp_pool_run((int)FP_MIN((int64_t)FP_MIN(fp_threads(p), fp_max_threads()), jobs), jobs, pack_job, &c);
}
