/* The tile kernel of the epilogues, instantiated for one element type and ISA: plain loops over
 * contiguous outputs, one per activation, that the compiler vectorizes for the ISA the including file
 * targets (epilogue__<isa>.c), so every ISA runs the same arithmetic.
 *
 * Included with T (float or double), U (the unsigned integer of T's size), EP_FN(name) (a unique name),
 * EP_A / EP_B (the fp_ep fields of alpha, beta in T) and the exp constants of the type defined
 * (epilogue_types.h).  Non-finite values: NaN stays NaN for every activation (comparisons are
 * written so that NaN takes the branch that returns it); +-Inf map to the formula's limits (sigmoid 1 / 0,
 * tanh +-1, hardswish +Inf / 0, clip and hardsigmoid their bounds, relu +Inf / 0). */

/* exp(t) - 1 for EP_TMIN <= t <= 0, accurate near 0: t = n ln2 + r with |r| <= ln2 / 2, then
 * exp(t) - 1 = 2^n q(r) + (2^n - 1), q(r) = exp(r) - 1 by its Taylor series to r^EP_TERMS (truncation
 * below an ulp on |r| <= ln2 / 2).  n comes from the round-to-nearest trick (adding 1.5 * 2^mantissa),
 * 2^n from n's bits in the exponent field, so nothing converts a float to an int; NaN propagates. */
static inline __attribute__((always_inline)) T EP_FN(expm1_neg)(T t) {
    const T shift = (T)EP_SHIFT;
    const T k = t * (T)1.44269504088896340736 + shift; /* n + shift, rounded to an integer */
    const T n = k - shift;
    const T r = (t - n * (T)EP_LN2_HI) - n * (T)EP_LN2_LO;
    T q = (T)0;
    for (int i = EP_TERMS; i >= 1; i--) q = (q + (T)EP_FN(invfact)[i]) * r; /* r/1! + r^2/2! + ... */
    U kb, sb;
    memcpy(&kb, &k, sizeof kb);
    sb = (kb - (U)EP_SHIFT_BITS + (U)EP_BIAS) << EP_MANT; /* 2^n (n >= 1 - EP_BIAS from the clamp) */
    T s;
    memcpy(&s, &sb, sizeof s);
    return s * q + (s - (T)1);
}

/* act(v) for the activations with no per-element parameter */
#define EP_CLAMP_LOW(t) ((t) < (T)EP_TMIN ? (T)EP_TMIN : (t))
static inline __attribute__((always_inline)) T EP_FN(sigmoid)(T v) {
    const T a = v < 0 ? -v : v;
    const T e = EP_FN(expm1_neg)(EP_CLAMP_LOW(-a)) + (T)1; /* exp(-|v|) */
    const T s = (T)1 / ((T)1 + e);
    return v < 0 ? e * s : s;
}
static inline __attribute__((always_inline)) T EP_FN(tanh)(T v) {
    const T a = v < 0 ? -v : v;
    const T m = EP_FN(expm1_neg)(EP_CLAMP_LOW(-2 * a)); /* exp(-2|v|) - 1 */
    const T t = -m / ((T)2 + m);
    return v < 0 ? -t : t;
}

/* The loops: BODY computes the new value of v (the conv output plus the residual) */
#define EP_LOOP(BODY)                                                                                     \
    for (int64_t i = 0; i < rows; i++) {                                                                  \
        T *restrict yr = y + i * ld;                                                                      \
        const int64_t ch = ch0 + i * ch_row;                                                              \
        (void)ch;                                                                                         \
        if (res) {                                                                                        \
            const T *restrict rr = res + i * ldr;                                                         \
            for (int64_t j = 0; j < cols; j++) {                                                          \
                T v = yr[j] + rr[j];                                                                      \
                BODY;                                                                                     \
                yr[j] = v;                                                                                \
            }                                                                                             \
        } else {                                                                                          \
            for (int64_t j = 0; j < cols; j++) {                                                          \
                T v = yr[j];                                                                              \
                BODY;                                                                                     \
                yr[j] = v;                                                                                \
            }                                                                                             \
        }                                                                                                 \
    }

static void EP_FN(tile)(const fp_ep *ep, void *yv, int64_t ld, const void *resv, int64_t ldr, int64_t rows,
                        int64_t cols, int64_t ch0, int64_t ch_row, int64_t ch_col) {
    T *y = (T *)yv;
    const T *res = (const T *)resv;
    const T a = (T)ep->EP_A, b = (T)ep->EP_B;
    const T *slope = (const T *)ep->slope;
    switch (ep->kind) {
    case FP_ACT_NONE: EP_LOOP((void)0) break;
    case FP_ACT_RELU: EP_LOOP(v = v < 0 ? (T)0 : v) break;
    case FP_ACT_CLIP: EP_LOOP(v = v < a ? a : v > b ? b : v) break;
    case FP_ACT_LEAKY: EP_LOOP(v = v < 0 ? a * v : v) break;
    case FP_ACT_HARDSWISH: EP_LOOP(v = v <= (T)-3 ? (T)0 : v >= (T)3 ? v : v * (v + (T)3) * (T)(1.0 / 6.0)) break;
    case FP_ACT_HARDSIGMOID: EP_LOOP(v = a * v + b; v = v < 0 ? (T)0 : v > 1 ? (T)1 : v) break;
    case FP_ACT_SIGMOID: EP_LOOP(v = EP_FN(sigmoid)(v)) break;
    case FP_ACT_TANH: EP_LOOP(v = EP_FN(tanh)(v)) break;
    case FP_ACT_PRELU:
        if (ch_col) {
            EP_LOOP(v = v < 0 ? slope[ch + j] * v : v)
        } else {
            EP_LOOP(const T s = slope[ch]; v = v < 0 ? s * v : v)
        }
        break;
    default: break;
    }
}

#undef EP_LOOP
#undef EP_CLAMP_LOW
