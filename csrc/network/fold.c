/* The BatchNormalization fold of a network's convolution weights (fastpoint/network/graph.py fold_weight):
 * out[co, i] = w[co, i] * k[co], the product in double rounded once to the weight's type, as NumPy's
 * float64 multiply then cast gives (so the fold is bit for bit the same either way).  One pass over the
 * weights at memory speed, where NumPy's buffered mixed-type multiply ran at ~7 GB/s (lraspp: 1.1 ms of a
 * 35 ms load + first inference).  It runs on the caller's thread in the caller's floating-point mode (no
 * flush-to-zero: a subnormal weight or product is kept, as NumPy keeps it). */
#include "../internal.h"

int fp_fold_scale_f32(const float *w, const double *k, float *out, int64_t cout, int64_t per) {
    if (cout < 0 || per < 0) return FP_ERR_ARGS;
    for (int64_t co = 0; co < cout; co++) {
        const double s = k[co];
        const float *src = w + co * per;
        float *dst = out + co * per;
        for (int64_t i = 0; i < per; i++) dst[i] = (float)((double)src[i] * s);
    }
    return 0;
}

int fp_fold_scale_f64(const double *w, const double *k, double *out, int64_t cout, int64_t per) {
    if (cout < 0 || per < 0) return FP_ERR_ARGS;
    for (int64_t co = 0; co < cout; co++) {
        const double s = k[co];
        const double *src = w + co * per;
        double *dst = out + co * per;
        for (int64_t i = 0; i < per; i++) dst[i] = src[i] * s;
    }
    return 0;
}
