/* Portable micro-kernel: a 4 x 16 tile of C in plain C arrays (the compiler vectorizes the j loops
 * with whatever the baseline ISA offers).  Full tiles run constant-trip loops; tail tiles loop to nr. */
#include "gemm.h"

#define MR 4
#define NR 16

static inline void body(const fp_ukr_args *u, const int64_t nr) {
    float acc[MR][NR] = {{0}};
    const float *b = u->b;
    const float *a = u->a;
    for (int64_t k = 0; k < u->kc; k++) {
        for (int i = 0; i < MR; i++) {
            const float av = u->arows ? u->arows[i][k] : a[i];
            for (int64_t j = 0; j < nr; j++) acc[i][j] += av * b[j];
        }
        if (!u->arows) a += MR;
        b += u->ldb;
    }
    for (int64_t i = 0; i < u->mr; i++) {
        float *c = u->c + i * u->ldc;
        for (int64_t j = 0; j < nr; j++) {
            float r = acc[i][j];
            if (!u->first) r += c[j];
            else if (u->bias) r += u->bias_per_col ? u->bias[j] : u->bias[i];
            if (u->relu) r = r < 0 ? 0.0f : r; /* NaN stays NaN */
            c[j] = r;
        }
    }
}

static void run(const fp_ukr_args *u) {
    if (u->nr == NR) body(u, NR);
    else body(u, u->nr);
}

const fp_sgemm_ukr fp_f32_gemm_4x16__scalar = {FP_SGEMM_ROW("f32_gemm_4x16__scalar", FP_ISA_SCALAR, MR, NR), run, 0};
