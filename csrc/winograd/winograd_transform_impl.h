/* Input and output transforms of F(4x4, 3x3) and F(2x2, 3x3) on one tile, vectorised along channels with
 * GCC/clang vector extensions of WN_VW floats; the including file sets the target ISA, WN_VW and WN_FN(name).
 * The last c % WN_VW channels go through the same code on lanes copied into zeroed vectors, so no
 * load or store touches memory past channel c.
 *
 * 1-D transforms (rows of B^T and A^T for the points 0, 1, -1, 2, -2, infinity):
 *   B^T d:  v0 = 4 d0 - 5 d2 + d4          A^T m:  o0 = m0 + (m1 + m2) + (m3 + m4)
 *           v1 = -4 (d1 + d2) + d3 + d4            o1 = (m1 - m2) + 2 (m3 - m4)
 *           v2 = 4 (d1 - d2) + d4 - d3             o2 = (m1 + m2) + 4 (m3 + m4)
 *           v3 = 2 (d3 - d1) + d4 - d2             o3 = (m1 - m2) + 8 (m3 - m4) + m5
 *           v4 = 2 (d1 - d3) + d4 - d2
 *           v5 = 4 d1 - 5 d3 + d5
 * and for F(2x2, 3x3) (points 0, 1, -1, infinity):
 *   B^T d:  v0 = d2 - d0,  v1 = d1 + d2,  v2 = d2 - d1,  v3 = d3 - d1     A^T m:  o0 = m0 + m1 + m2
 *                                                                                 o1 = m1 - m2 + m3
 * Each 2-D transform applies the 1-D one to the columns of the tile, then to the rows of the result. */
#include <string.h>

typedef float WN_FN(vec) __attribute__((vector_size(WN_VW * 4)));
typedef int WN_FN(ivec) __attribute__((vector_size(WN_VW * 4)));
#define WV WN_FN(vec)
#define WI WN_FN(ivec)

static inline __attribute__((always_inline)) WV WN_FN(ld)(const float *p) {
    WV v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline __attribute__((always_inline)) void WN_FN(st)(float *p, WV v) { memcpy(p, &v, sizeof v); }
static inline __attribute__((always_inline)) WV WN_FN(splat)(float f) {
    WV v = {0};
    return v + f;
}

static inline __attribute__((always_inline)) void WN_FN(bt6)(const WV d[6], WV v[6]) {
    const WV four = WN_FN(splat)(4.0f), five = WN_FN(splat)(5.0f), two = WN_FN(splat)(2.0f);
    v[0] = four * d[0] - five * d[2] + d[4];
    v[1] = d[3] + d[4] - four * (d[1] + d[2]);
    v[2] = four * (d[1] - d[2]) + (d[4] - d[3]);
    v[3] = two * (d[3] - d[1]) + (d[4] - d[2]);
    v[4] = two * (d[1] - d[3]) + (d[4] - d[2]);
    v[5] = four * d[1] - five * d[3] + d[5];
}

static inline __attribute__((always_inline)) void WN_FN(at6)(const WV m[6], WV o[4]) {
    const WV s12 = m[1] + m[2], d12 = m[1] - m[2], s34 = m[3] + m[4], d34 = m[3] - m[4];
    o[0] = m[0] + s12 + s34;
    o[1] = d12 + WN_FN(splat)(2.0f) * d34;
    o[2] = s12 + WN_FN(splat)(4.0f) * s34;
    o[3] = d12 + WN_FN(splat)(8.0f) * d34 + m[5];
}

static inline __attribute__((always_inline)) void WN_FN(bt4)(const WV d[4], WV v[4]) {
    v[0] = d[2] - d[0];
    v[1] = d[1] + d[2];
    v[2] = d[2] - d[1];
    v[3] = d[3] - d[1];
}

static inline __attribute__((always_inline)) void WN_FN(at4)(const WV m[4], WV o[2]) {
    o[0] = m[0] + m[1] + m[2];
    o[1] = m[1] - m[2] + m[3];
}

/* 1-D transforms of N = 6 (F(4x4)) or 4 (F(2x2)) points. */
static inline __attribute__((always_inline)) void WN_FN(bt)(const WV *d, WV *v, const int N) {
    if (N == 6) WN_FN(bt6)(d, v);
    else WN_FN(bt4)(d, v);
}
static inline __attribute__((always_inline)) void WN_FN(at)(const WV *m, WV *o, const int N) {
    if (N == 6) WN_FN(at6)(m, o);
    else WN_FN(at4)(m, o);
}

static inline __attribute__((always_inline)) WV WN_FN(relu)(WV y) {
    const WI neg = y < WN_FN(splat)(0.0f); /* false for NaN: NaN stays NaN, as max(0, y) in PyTorch */
    return (WV)((WI)y & ~neg);
}

/* One tile's transforms for one vector of channels, N = n = 6 (F(4x4)) or 4 (F(2x2)).  The columns are
 * transformed straight from memory into t, the rows of t straight into memory: only t (n n vectors)
 * goes through the stack, where keeping d, t and v in arrays had the compiler spill about 100 vectors.
 * Input:  V[n k + l] at dst + (n k + l) * ldk + off from src[n i + j] + off. */
static inline __attribute__((always_inline)) void WN_FN(in_tile)(const float *const *src, int64_t off, float *dst,
                                                                int64_t ldk, const int N) {
    WV t[36];
    for (int j = 0; j < N; j++) {
        WV col[6], r[6];
        for (int i = 0; i < N; i++) col[i] = WN_FN(ld)(src[N * i + j] + off);
        WN_FN(bt)(col, r, N);
        for (int k = 0; k < N; k++) t[N * k + j] = r[k];
    }
    for (int k = 0; k < N; k++) {
        WV r[6];
        WN_FN(bt)(&t[N * k], r, N);
        for (int l = 0; l < N; l++) WN_FN(st)(dst + (N * k + l) * ldk + off, r[l]);
    }
}

/* Output: pixel (a, b) (+ bias, ReLU) at dst[m a + b] + off, from M[n k + l] at m + (n k + l) * ldk + off. */
static inline __attribute__((always_inline)) void WN_FN(out_tile)(const float *m, int64_t off, int64_t ldk, WV bias,
                                                                 int relu, float *const *dst, const int N) {
    const int MO = N - 2;
    WV t[24]; /* t[N a + l] = sum_k A^T[a][k] M[k][l] */
    for (int l = 0; l < N; l++) {
        WV col[6], r[4];
        for (int k = 0; k < N; k++) col[k] = WN_FN(ld)(m + (N * k + l) * ldk + off);
        WN_FN(at)(col, r, N);
        for (int a = 0; a < MO; a++) t[N * a + l] = r[a];
    }
    for (int a = 0; a < MO; a++) {
        WV r[4];
        WN_FN(at)(&t[N * a], r, N);
        for (int b = 0; b < MO; b++) {
            if (!dst[MO * a + b]) continue;
            WV y = r[b] + bias;
            if (relu) y = WN_FN(relu)(y);
            WN_FN(st)(dst[MO * a + b] + off, y);
        }
    }
}

/* Whole vectors in place; the last c % WN_VW channels through zero-padded copies, so that nothing past
 * channel c is read or written. */
static inline __attribute__((always_inline)) void WN_FN(input_t)(const float *const *src, const float *const *next,
                                                                int64_t c, float *dst, int64_t ldk, const int N) {
    int64_t c0 = 0;
    for (; c0 + WN_VW <= c; c0 += WN_VW) {
        if (next && c0 % 16 == 0)
            for (int q = 0; q < N * N; q++) __builtin_prefetch(next[q] + c0, 0, 3);
        WN_FN(in_tile)(src, c0, dst, ldk, N);
    }
    if (c0 < c) {
        const size_t bytes = sizeof(float) * (size_t)(c - c0);
        float in[36][WN_VW], out[36][WN_VW];
        const float *ptr[36];
        for (int q = 0; q < N * N; q++) {
            memset(in[q], 0, sizeof in[q]);
            memcpy(in[q], src[q] + c0, bytes);
            ptr[q] = in[q];
        }
        WN_FN(in_tile)(ptr, 0, &out[0][0], WN_VW, N);
        for (int k = 0; k < N * N; k++) memcpy(dst + k * ldk + c0, out[k], bytes);
    }
}

static inline __attribute__((always_inline)) void WN_FN(output_t)(const float *m, const float *next, int64_t ldk,
                                                                 int64_t c, const float *bias, int relu,
                                                                 float *const *dst, const int N) {
    int64_t c0 = 0;
    const WV zero = WN_FN(splat)(0.0f);
    for (; c0 + WN_VW <= c; c0 += WN_VW) {
        if (next && c0 % 16 == 0)
            for (int k = 0; k < N * N; k++) __builtin_prefetch(next + k * ldk + c0, 0, 3);
        WN_FN(out_tile)(m, c0, ldk, bias ? WN_FN(ld)(bias + c0) : zero, relu, dst, N);
    }
    if (c0 < c) {
        const size_t bytes = sizeof(float) * (size_t)(c - c0);
        float in[36][WN_VW], out[16][WN_VW], bv[WN_VW] = {0};
        float *ptr[16];
        for (int k = 0; k < N * N; k++) {
            memset(in[k], 0, sizeof in[k]);
            memcpy(in[k], m + k * ldk + c0, bytes);
        }
        for (int q = 0; q < (N - 2) * (N - 2); q++) ptr[q] = dst[q] ? out[q] : NULL;
        if (bias) memcpy(bv, bias + c0, bytes);
        WN_FN(out_tile)(&in[0][0], 0, WN_VW, WN_FN(ld)(bv), relu, ptr, N);
        for (int q = 0; q < (N - 2) * (N - 2); q++)
            if (dst[q]) memcpy(dst[q] + c0, out[q], bytes);
    }
}

static void WN_FN(input4)(const float *const *src, const float *const *next, int64_t c, float *dst, int64_t ldk) {
    WN_FN(input_t)(src, next, c, dst, ldk, 6);
}
static void WN_FN(input2)(const float *const *src, const float *const *next, int64_t c, float *dst, int64_t ldk) {
    WN_FN(input_t)(src, next, c, dst, ldk, 4);
}
static void WN_FN(output4)(const float *m, const float *next, int64_t ldk, int64_t c, const float *bias, int relu,
                           float *const *dst) {
    WN_FN(output_t)(m, next, ldk, c, bias, relu, dst, 6);
}
static void WN_FN(output2)(const float *m, const float *next, int64_t ldk, int64_t c, const float *bias, int relu,
                           float *const *dst) {
    WN_FN(output_t)(m, next, ldk, c, bias, relu, dst, 4);
}

/* NCHW layout changes around the transforms (the transforms run along channels):
 *   stage: the window [iy0, iy1) x [ix0, ix1) of one image (C planes of H x W) into s, channel-last
 *          (pixel (iy, ix) at s + ((iy - iy0) * (ix1 - ix0) + ix - ix0) * ldv; ldv >= C rounded up to 16,
 *          the lanes past C may be written);
 *   store: output rows a < rows, columns x < cols (<= 16: up to 16 / m tiles of m x m side by side) of
 *          channels [0, c) from o (pixel (a, x) of channel ch at o[(m m (x / m) + m a + x % m) * ldm + ch]) into y (channel
 *          planes `plane` floats apart, rows OW apart); with `stream`, whole 64-byte aligned rows of 16
 *          go past the caches (non-temporal; the caller fences). */
#if WN_VW == 16
#include <immintrin.h>

#include "../transpose16_avx512.h"

/* stage, one input row: pixels [ix0, ix1) of cn <= 16 channel rows (HW floats apart) into d, one pixel
 * every ldv floats; 16 pixels per in-register 16 x 16 transpose. */
static inline void WN_FN(stage_row)(const float *row, int64_t HW, int64_t cn, int64_t ix0, int64_t ix1, float *d,
                                    int64_t ldv) {
    for (int64_t ix = ix0; ix < ix1; ix += 16) {
        const int64_t n = FP_MIN(16, ix1 - ix);
        const __mmask16 m = (__mmask16)((1u << n) - 1u);
        __m512 r[16];
        for (int64_t i = 0; i < 16; i++)
            r[i] = i < cn ? _mm512_maskz_loadu_ps(m, row + i * HW + ix) : _mm512_setzero_ps();
        fp_tr16_ps(r);
        for (int64_t q = 0; q < n; q++) _mm512_storeu_ps(d + (ix - ix0 + q) * ldv, r[q]);
    }
}

static void WN_FN(store)(const float *o, int64_t ldm, int64_t c, int64_t plane, int64_t OW, int64_t rows,
                         int64_t cols, int64_t m, int stream, float *y) {
    const __mmask16 mcols = (__mmask16)((1u << cols) - 1u);
    for (int64_t a = 0; a < rows; a++)
        for (int64_t c0 = 0; c0 < c; c0 += 16) {
            const int64_t cn = FP_MIN(16, c - c0);
            const __mmask16 mc = (__mmask16)((1u << cn) - 1u);
            __m512 r[16];
            for (int64_t x = 0; x < 16; x++)
                r[x] = x < cols ? _mm512_maskz_loadu_ps(mc, o + (m * m * (x / m) + m * a + x % m) * ldm + c0)
                                : _mm512_setzero_ps();
            fp_tr16_ps(r);
            for (int64_t i = 0; i < cn; i++) {
                float *d = y + (c0 + i) * plane + a * OW;
                if (stream && cols == 16 && ((uintptr_t)d & 63) == 0) _mm512_stream_ps(d, r[i]);
                else _mm512_mask_storeu_ps(d, mcols, r[i]);
            }
        }
}
#elif WN_VW == 8
#include <immintrin.h>

/* In-register transpose of an 8 x 8 block (r[i] lane k becomes r[k] lane i): unpacks and shuffles within
 * 128-bit lanes, then a lane permute. */
static inline __attribute__((always_inline)) void WN_FN(tr8)(__m256 r[8]) {
    __m256 t[8], u[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 2; i++) {
        u[4 * i] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
        u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
        u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
    for (int k = 0; k < 4; k++) {
        r[k] = _mm256_permute2f128_ps(u[k], u[4 + k], 0x20);
        r[4 + k] = _mm256_permute2f128_ps(u[k], u[4 + k], 0x31);
    }
}

/* lanes [0, n) of a mask for maskload / maskstore (which never touch the other lanes' memory) */
static inline __m256i WN_FN(lanes)(int64_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* stage, one input row: as the AVX-512 one, 8 channels x 8 pixels per in-register transpose. */
static inline void WN_FN(stage_row)(const float *row, int64_t HW, int64_t cn, int64_t ix0, int64_t ix1, float *d,
                                    int64_t ldv) {
    for (int64_t ix = ix0; ix < ix1; ix += 8) {
        const int64_t n = FP_MIN(8, ix1 - ix);
        const __m256i mk = WN_FN(lanes)(n);
        for (int64_t c0 = 0; c0 < cn; c0 += 8) {
            __m256 r[8];
            for (int64_t i = 0; i < 8; i++)
                r[i] = c0 + i < cn ? _mm256_maskload_ps(row + (c0 + i) * HW + ix, mk) : _mm256_setzero_ps();
            WN_FN(tr8)(r);
            for (int64_t q = 0; q < n; q++) _mm256_storeu_ps(d + (ix - ix0 + q) * ldv + c0, r[q]);
        }
    }
}

static void WN_FN(store)(const float *o, int64_t ldm, int64_t c, int64_t plane, int64_t OW, int64_t rows,
                         int64_t cols, int64_t m, int stream, float *y) {
    for (int64_t a = 0; a < rows; a++)
        for (int64_t c0 = 0; c0 < c; c0 += 8) {
            const int64_t cn = FP_MIN(8, c - c0);
            const __m256i mc = WN_FN(lanes)(cn);
            for (int64_t x0 = 0; x0 < cols; x0 += 8) {
                const int64_t nx = FP_MIN(8, cols - x0);
                const __m256i mx = WN_FN(lanes)(nx);
                __m256 r[8];
                for (int64_t q = 0; q < 8; q++) {
                    const int64_t x = x0 + q;
                    r[q] = q < nx ? _mm256_maskload_ps(o + (m * m * (x / m) + m * a + x % m) * ldm + c0, mc)
                                  : _mm256_setzero_ps();
                }
                WN_FN(tr8)(r);
                for (int64_t i = 0; i < cn; i++) {
                    float *d = y + (c0 + i) * plane + a * OW + x0;
                    if (stream && cols == 16 && ((uintptr_t)(d - x0) & 63) == 0) _mm256_stream_ps(d, r[i]);
                    else _mm256_maskstore_ps(d, mx, r[i]);
                }
            }
        }
}
#else
/* Portable C: 4 channels x 4 pixels per transpose of vectors (lane subscripts, which GCC and clang turn into
 * shuffles); partial blocks through zeroed copies, so nothing past the window or channel c is touched. */
static inline __attribute__((always_inline)) void WN_FN(tr4)(const WV r[4], WV o[4]) {
    for (int q = 0; q < 4; q++) {
        WV v = {r[0][q], r[1][q], r[2][q], r[3][q]};
        o[q] = v;
    }
}

static inline void WN_FN(stage_row)(const float *row, int64_t HW, int64_t cn, int64_t ix0, int64_t ix1, float *d,
                                    int64_t ldv) {
    for (int64_t ix = ix0; ix < ix1; ix += 4) {
        const int64_t n = FP_MIN(4, ix1 - ix);
        for (int64_t c0 = 0; c0 < cn; c0 += 4) {
            WV r[4], o[4];
            for (int64_t i = 0; i < 4; i++) {
                r[i] = WN_FN(splat)(0.0f);
                if (c0 + i >= cn) continue;
                if (n == 4) r[i] = WN_FN(ld)(row + (c0 + i) * HW + ix);
                else memcpy(&r[i], row + (c0 + i) * HW + ix, sizeof(float) * (size_t)n);
            }
            WN_FN(tr4)(r, o);
            for (int64_t q = 0; q < n; q++) WN_FN(st)(d + (ix - ix0 + q) * ldv + c0, o[q]);
        }
    }
}

static void WN_FN(store)(const float *o, int64_t ldm, int64_t c, int64_t plane, int64_t OW, int64_t rows,
                         int64_t cols, int64_t m, int stream, float *y) {
    (void)stream;
    for (int64_t a = 0; a < rows; a++)
        for (int64_t c0 = 0; c0 < c; c0 += 4) {
            const int64_t cn = FP_MIN(4, c - c0);
            for (int64_t x0 = 0; x0 < cols; x0 += 4) {
                const int64_t nx = FP_MIN(4, cols - x0);
                WV r[4], t[4];
                for (int64_t q = 0; q < 4; q++) {
                    const int64_t x = x0 + q;
                    r[q] = WN_FN(splat)(0.0f);
                    if (q < nx) memcpy(&r[q], o + (m * m * (x / m) + m * a + x % m) * ldm + c0, sizeof(float) * (size_t)cn);
                }
                WN_FN(tr4)(r, t);
                for (int64_t i = 0; i < cn; i++) {
                    float *d = y + (c0 + i) * plane + a * OW + x0;
                    if (nx == 4) WN_FN(st)(d, t[i]);
                    else memcpy(d, &t[i], sizeof(float) * (size_t)nx);
                }
            }
        }
}
#endif

/* 16 channels at a time, row by row of the window. */
static void WN_FN(stage)(const float *xn, int64_t C, int64_t H, int64_t W, int64_t iy0, int64_t iy1, int64_t ix0,
                         int64_t ix1, int64_t ldv, float *s) {
    const int64_t cols = ix1 - ix0, HW = H * W;
    for (int64_t c0 = 0; c0 < C; c0 += 16)
        for (int64_t iy = iy0; iy < iy1; iy++)
            WN_FN(stage_row)(xn + c0 * HW + iy * W, HW, FP_MIN(16, C - c0), ix0, ix1, s + (iy - iy0) * cols * ldv + c0,
                             ldv);
}

/* The kernel rows of this ISA, [0] F(4x4), [1] F(2x2) (winograd.h). */
const fp_wino_kernel WN_TABLE[2] = {
    {{"f32_winograd_4x4__" WN_ISA, "winograd", 0, WN_ISA_LEVEL, 4, 4}, 4, WN_FN(input4), WN_FN(output4), WN_FN(stage),
     WN_FN(store)},
    {{"f32_winograd_2x2__" WN_ISA, "winograd", 0, WN_ISA_LEVEL, 2, 2}, 2, WN_FN(input2), WN_FN(output2), WN_FN(stage),
     WN_FN(store)},
};

#undef WV
#undef WI
