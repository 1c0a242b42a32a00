/* The BatchNormalization fold of a network's convolution weights (fastpoint/network/graph.py fold_weight):
 * out[co, i] = w[co, i] * k[co], the product in double rounded once to the weight's type, as NumPy's
 * float64 multiply then cast gives (so the fold is bit for bit the same either way).  One pass over the
 * weights at memory speed, where NumPy's buffered mixed-type multiply ran at ~7 GB/s (lraspp: 1.1 ms of a
 * 35 ms load + first inference).  It runs on the caller's thread in the caller's floating-point mode (no
 * flush-to-zero: a subnormal weight or product is kept, as NumPy keeps it).  out may be w (in place). */
#include "../internal.h"

#define FP_FOLD_SCALE(name, T)                                                     \
    int name(const T *w, const double *k, T *out, int64_t cout, int64_t per) {     \
        if (cout < 0 || per < 0) return FP_ERR_ARGS;                               \
        for (int64_t co = 0; co < cout; co++) {                                    \
            const double s = k[co];                                                \
            const T *src = w + co * per;                                           \
            T *dst = out + co * per;                                               \
            for (int64_t i = 0; i < per; i++) dst[i] = (T)((double)src[i] * s);    \
        }                                                                          \
        return 0;                                                                  \
    }

FP_FOLD_SCALE(fp_fold_scale_f32, float)
FP_FOLD_SCALE(fp_fold_scale_f64, double)
