/* Filter transforms U[k] = G g G^T (k = n i + j) of F(4x4) and F(2x2), done once per layer in float64 and
 * rounded once, then
 * packed for the GEMM micro-kernel as column panels: position k, panel p holds Cin rows of `width`
 * output channels (k-major, columns past Cout zero), exactly the B operand layout the micro-kernels read
 * with ldb = width. */
#include <string.h>

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

fp_wino_panels fp_wino_panels_for(const fp_conv_problem *p, const fp_sgemm_ukr *uk) {
    fp_wino_panels pn;
    pn.units = FP_CEIL_DIV(p->cout, 16);
    pn.count = FP_CEIL_DIV(pn.units, FP_MAX(uk->nr / 16, 1));
    pn.base = pn.units / pn.count;
    pn.extra = pn.units % pn.count;
    return pn;
}

int64_t fp_wino_packed_floats(const fp_conv_problem *p, const fp_sgemm_ukr *uk) {
    return (36 + 16) * fp_wino_u_stride(p, fp_wino_panels_for(p, uk));
}

/* One F(m) set of positions, n = m + 2, G of n rows, at dst. */
static void pack_variant(const fp_conv_problem *p, fp_wino_panels pn, int n, const double (*G)[3], const float *w,
                         float *dst) {
    const int64_t K = p->cin, M = p->cout, ks = fp_wino_u_stride(p, pn);
    for (int64_t co = 0, panel = 0; co < M; co++) {
        if (co >= fp_wino_col(pn, panel + 1)) panel++;
        const int64_t c0 = fp_wino_col(pn, panel), width = fp_wino_col(pn, panel + 1) - c0, j = co - c0;
        for (int64_t ci = 0; ci < K; ci++) {
            const float *g = w + (co * K + ci) * 9;
            double t[6][3]; /* G g */
            for (int i = 0; i < n; i++)
                for (int b = 0; b < 3; b++)
                    t[i][b] = G[i][0] * g[b] + G[i][1] * g[3 + b] + G[i][2] * g[6 + b];
            float *d = dst + K * c0 + ci * width + j;
            for (int i = 0; i < n; i++)
                for (int l = 0; l < n; l++)
                    d[(n * i + l) * ks] = (float)(t[i][0] * G[l][0] + t[i][1] * G[l][1] + t[i][2] * G[l][2]);
        }
    }
}

void fp_wino_pack(const fp_conv_problem *p, const fp_sgemm_ukr *uk, const float *w, float *dst) {
    const fp_wino_panels pn = fp_wino_panels_for(p, uk);
    memset(dst, 0, sizeof(float) * (size_t)fp_wino_packed_floats(p, uk));
    pack_variant(p, pn, 6, G4, w, dst + fp_wino_u_offset(p, pn, 4));
    pack_variant(p, pn, 4, G2, w, dst + fp_wino_u_offset(p, pn, 2));
}
