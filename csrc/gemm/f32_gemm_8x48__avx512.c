/* AVX-512 micro-kernel: an 8 x 48 tile of C in 24 zmm accumulators (8 rows x 3 vectors of 16).
 * Per k: 3 vector loads of B, 8 broadcasts of A, 24 FMAs.  Tail columns use masked loads and stores,
 * and tiles of at most 32 (16) columns run a 2- (1-) vector instance, so no work is spent on vectors
 * past the last one.  Row tiles of at most 1, 2 or 4 valid rows (7x7 maps cut into 8-pixel tiles,
 * 2-class heads, NHWC 7x7 = 6 x 8 + 1 pixels) run instances that compute only that many rows; otherwise rows
 * past mr are computed on zero (packed) or repeated (row pointers) data and never stored.  The accumulators are named variables, not an array: GCC keeps those in registers. */
#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
#include <immintrin.h>

#include "../isa_target.h"
#include "gemm.h"
FP_TARGET_AVX512

#define MR 8
#define NR 48

/* One row of the rank-1 update: c_i += a_i * (b0 b1 b2). */
#define UPD(i, aval)                                                        \
    do {                                                                    \
        if (i >= MRA) break;                                                \
        const __m512 a_ = _mm512_set1_ps(aval);                             \
        c##i##0 = _mm512_fmadd_ps(a_, b0, c##i##0);                         \
        if (NV > 1) c##i##1 = _mm512_fmadd_ps(a_, b1, c##i##1);             \
        if (NV > 2) c##i##2 = _mm512_fmadd_ps(a_, b2, c##i##2);             \
    } while (0)

#define STORE_ROW(i)                                                                     \
    do {                                                                                 \
        if (i < MRA && i < u->mr) {                                                      \
            if (TRANS) store_row_t(u, i, NV, mlast, c##i##0, c##i##1, c##i##2);          \
            else store_row(u, i, NV, mlast, c##i##0, c##i##1, c##i##2);                  \
        }                                                                                \
    } while (0)

static inline __attribute__((always_inline)) __m512 finish(const fp_ukr_args *u, int64_t i, int v, __mmask16 m,
                                                          __m512 r, const float *c) {
    if (!u->first) r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(m, c + 16 * v));
    else if (u->bias) {
        if (u->bias_per_col) r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(m, u->bias + 16 * v));
        else r = _mm512_add_ps(r, _mm512_set1_ps(u->bias[i]));
    }
    if (u->relu) r = _mm512_max_ps(_mm512_setzero_ps(), r); /* max returns its 2nd operand on NaN */
    return r;
}

static inline __attribute__((always_inline)) void store_row(const fp_ukr_args *u, int64_t i, const int NV,
                                                           __mmask16 mlast, __m512 r0, __m512 r1, __m512 r2) {
    float *c = u->c + i * u->ldc;
    const __mmask16 full = (__mmask16)0xFFFF;
    if (u->stream && mlast == full && ((uintptr_t)c & 63) == 0) {
        /* Whole aligned row of a large output written once: bypass the caches (no read for ownership). */
        _mm512_stream_ps(c, finish(u, i, 0, full, r0, c));
        if (NV > 1) _mm512_stream_ps(c + 16, finish(u, i, 1, full, r1, c));
        if (NV > 2) _mm512_stream_ps(c + 32, finish(u, i, 2, full, r2, c));
        return;
    }
    _mm512_mask_storeu_ps(c, NV == 1 ? mlast : full, finish(u, i, 0, NV == 1 ? mlast : full, r0, c));
    if (NV > 1) _mm512_mask_storeu_ps(c + 16, NV == 2 ? mlast : full, finish(u, i, 1, NV == 2 ? mlast : full, r1, c));
    if (NV > 2) _mm512_mask_storeu_ps(c + 32, mlast, finish(u, i, 2, mlast, r2, c));
}

/* Transposed store: row i of the tile is one output pixel, its columns are output channels ldc apart
 * (NCHW output of the form Y^T = X^T W^T used for small images); scatter/gather, once per tile. */
static inline __attribute__((always_inline)) void store_row_t(const fp_ukr_args *u, int64_t i, const int NV,
                                                             __mmask16 mlast, __m512 r0, __m512 r1, __m512 r2) {
    float *c = u->c + i;
    const __m512i step = _mm512_set1_epi32((int)(16 * u->ldc));
    __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                     _mm512_set1_epi32((int)u->ldc));
    const __m512 r[3] = {r0, r1, r2};
    for (int v = 0; v < NV; v++) {
        const __mmask16 m = v == NV - 1 ? mlast : (__mmask16)0xFFFF;
        __m512 x = r[v];
        if (!u->first) x = _mm512_add_ps(x, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, c, 4));
        else if (u->bias) x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(m, u->bias + 16 * v));
        if (u->relu) x = _mm512_max_ps(_mm512_setzero_ps(), x); /* max returns its 2nd operand on NaN */
        _mm512_mask_i32scatter_ps(c, m, idx, x, 4);
        idx = _mm512_add_epi32(idx, step);
    }
}

/* One k iteration of the tile (the loop body, run by the three k loops of body()). */
#define K_STEP()                                                                                                 \
    do {                                                                                                         \
        __m512 b0, b1 = z, b2 = z;                                                                               \
        if (COPY == 2) {                                                                                         \
            b0 = _mm512_mask_i32gather_ps(z, m0, g0, b, 4);                                                      \
            if (NV > 1) b1 = _mm512_mask_i32gather_ps(z, m1, g1, b, 4);                                          \
            if (NV > 2) b2 = _mm512_mask_i32gather_ps(z, mlast, g2, b, 4);                                       \
        } else {                                                                                                 \
            b0 = _mm512_maskz_loadu_ps(m0, b);                                                                   \
            if (NV > 1) b1 = _mm512_maskz_loadu_ps(m1, b + 16);                                                  \
            if (NV > 2) b2 = _mm512_maskz_loadu_ps(mlast, b + 32);                                               \
        }                                                                                                        \
        if (COPY && docopy) {                                                                                    \
            /* First row tile of a column tile: read the input rows in place, keep a packed copy                 \
             * for the other row tiles, and fetch a later column tile's lines into L2 meanwhile. */              \
            _mm512_mask_storeu_ps(bc, m0, b0);                                                                   \
            if (NV > 1) _mm512_mask_storeu_ps(bc + 16, m1, b1);                                                  \
            if (NV > 2) _mm512_mask_storeu_ps(bc + 32, mlast, b2);                                               \
            bc += NR;                                                                                            \
        }                                                                                                        \
        if (COPY == 1 && pf) { /* two column tiles ahead (one tile's time was too short for DRAM) */             \
            _mm_prefetch((const char *)(b + 2 * NR), _MM_HINT_T1);                                               \
            _mm_prefetch((const char *)(b + 2 * NR + 16), _MM_HINT_T1);                                          \
            _mm_prefetch((const char *)(b + 2 * NR + 32), _MM_HINT_T1);                                          \
        }                                                                                                        \
        if (ROWS) {                                                                                              \
            if (pfl) _mm_prefetch((const char *)(pfl + 16 * k), _MM_HINT_T1); /* NHWC one-shot: next W panel */  \
            UPD(0, r0[k]); UPD(1, r1[k]); UPD(2, r2[k]); UPD(3, r3[k]);                                          \
            UPD(4, r4[k]); UPD(5, r5[k]); UPD(6, r6[k]); UPD(7, r7[k]);                                          \
        } else {                                                                                                 \
            _mm_prefetch((const char *)(a + 16 * lda), _MM_HINT_T0);                                             \
            if (TRANS && pfl) _mm_prefetch((const char *)(pfl + 16 * k), _MM_HINT_T1);                           \
            UPD(0, a[0]); UPD(1, a[1]); UPD(2, a[2]); UPD(3, a[3]);                                              \
            UPD(4, a[4]); UPD(5, a[5]); UPD(6, a[6]); UPD(7, a[7]);                                              \
            a += lda;                                                                                            \
        }                                                                                                        \
        b += ldb;                                                                                                \
    } while (0)

static inline __attribute__((always_inline)) void body(const fp_ukr_args *u, const int NV, const int ROWS,
                                                      const int COPY, const int TRANS, const int MRA) {
    const __m512 z = _mm512_setzero_ps();
    __m512 c00 = z, c01 = z, c02 = z, c10 = z, c11 = z, c12 = z, c20 = z, c21 = z, c22 = z, c30 = z, c31 = z,
           c32 = z, c40 = z, c41 = z, c42 = z, c50 = z, c51 = z, c52 = z, c60 = z, c61 = z, c62 = z, c70 = z,
           c71 = z, c72 = z;
    const int64_t tail = u->nr - (int64_t)(NV - 1) * 16;
    const __mmask16 mlast = tail >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << tail) - 1u);
    const __mmask16 m0 = NV == 1 ? mlast : (__mmask16)0xFFFF, m1 = NV == 2 ? mlast : (__mmask16)0xFFFF;
    const float *b = u->b;
    const int64_t ldb = u->ldb, kc = u->kc;
    /* with a residual to fetch (pf_tile), the last 192 iterations run in loops of their own (below) */
    const int64_t kmain = u->pf_tile && kc > 192 ? kc - 192 : u->pf_tile ? 0 : kc;
    /* A: packed (MR values per k, lda apart) or MR row pointers (NHWC input rows; a one-shot NCHW call's
     * rows of the caller's W, read in place instead of packed) */
    const float *a = u->a;
    const int64_t lda = TRANS ? u->lda : MR;
    const float *const *ar = u->arows;
    const float *r0 = ROWS ? ar[0] : a, *r1 = ROWS ? ar[1] : a, *r2 = ROWS ? ar[2] : a, *r3 = ROWS ? ar[3] : a;
    const float *r4 = ROWS ? ar[4] : a, *r5 = ROWS ? ar[5] : a, *r6 = ROWS ? ar[6] : a, *r7 = ROWS ? ar[7] : a;
    const float *pfl = u->pf_lines;
    float *bc = u->bcopy;
    const int pf = u->prefetch_next, docopy = bc != NULL;
    /* COPY == 2: strided input, the tile's pixels gathered at fixed offsets from each channel row */
    const __m512i g0 = COPY == 2 ? _mm512_loadu_si512(u->bidx) : _mm512_setzero_si512();
    const __m512i g1 = COPY == 2 && NV > 1 ? _mm512_loadu_si512(u->bidx + 16) : _mm512_setzero_si512();
    const __m512i g2 = COPY == 2 && NV > 2 ? _mm512_loadu_si512(u->bidx + 32) : _mm512_setzero_si512();
    int64_t k = 0;
#pragma GCC unroll 4
    for (; k < kmain; k++) K_STEP();
    if (kmain < kc) {
        /* The epilogue's residual tile, fetched one line an iteration from 192 iterations before the end
         * (~2000 cycles, past a DRAM miss under load, while the ~36 KiB of B the last iterations stream
         * leave it in L1).  Fetched before the call instead, the tile's kc x 48 panel of B (96 KiB at kc
         * 512) pushed it out of L1, and the epilogue's loads of it were 84 % of its time (fcn 512->2048@32
         * with Add+Relu, perf cpu-clock: the epilogue 15 % of the kernel's samples; three lines an
         * iteration over 8 iterations from 64 or 128 before the end: 9 %; one a line from 192: 4 %).  Its
         * own loops, so that the main loop has no test for it and no more live registers (a per-iteration
         * test spilled the row pointers: 0.90-0.97x on every layer). */
        const char *pft = (const char *)u->pf_tile;
        const int64_t pf_ld = u->pf_ld * (int64_t)sizeof(float), kpf = k, kpe = FP_MIN(kc, k + MR * NV);
        for (; k < kpe; k++) {
            const int64_t l = k - kpf, row = l / NV; /* one line an iteration: row, vector l % NV */
            if (row < u->mr) _mm_prefetch(pft + row * pf_ld + (l % NV) * 64, _MM_HINT_T0);
            K_STEP();
        }
#pragma GCC unroll 4
        for (; k < kc; k++) K_STEP();
    }
    STORE_ROW(0); STORE_ROW(1); STORE_ROW(2); STORE_ROW(3);
    STORE_ROW(4); STORE_ROW(5); STORE_ROW(6); STORE_ROW(7);
}

/* The instances: NAME<rows>_<vectors> for 1, 2, 4, 8 computed rows and 1..3 vectors. */
#define INSTANCES(NAME, ROWS, COPY, TRANS)                                                        \
    static void NAME##1_1(const fp_ukr_args *u) { body(u, 1, ROWS, COPY, TRANS, 1); }             \
    static void NAME##1_2(const fp_ukr_args *u) { body(u, 2, ROWS, COPY, TRANS, 1); }             \
    static void NAME##1_3(const fp_ukr_args *u) { body(u, 3, ROWS, COPY, TRANS, 1); }             \
    static void NAME##2_1(const fp_ukr_args *u) { body(u, 1, ROWS, COPY, TRANS, 2); }             \
    static void NAME##2_2(const fp_ukr_args *u) { body(u, 2, ROWS, COPY, TRANS, 2); }             \
    static void NAME##2_3(const fp_ukr_args *u) { body(u, 3, ROWS, COPY, TRANS, 2); }             \
    static void NAME##4_1(const fp_ukr_args *u) { body(u, 1, ROWS, COPY, TRANS, 4); }             \
    static void NAME##4_2(const fp_ukr_args *u) { body(u, 2, ROWS, COPY, TRANS, 4); }             \
    static void NAME##4_3(const fp_ukr_args *u) { body(u, 3, ROWS, COPY, TRANS, 4); }             \
    static void NAME##8_1(const fp_ukr_args *u) { body(u, 1, ROWS, COPY, TRANS, 8); }             \
    static void NAME##8_2(const fp_ukr_args *u) { body(u, 2, ROWS, COPY, TRANS, 8); }             \
    static void NAME##8_3(const fp_ukr_args *u) { body(u, 3, ROWS, COPY, TRANS, 8); }
#define ROW_OF(NAME) {{NAME##1_1, NAME##1_2, NAME##1_3}, {NAME##2_1, NAME##2_2, NAME##2_3}, \
                      {NAME##4_1, NAME##4_2, NAME##4_3}, {NAME##8_1, NAME##8_2, NAME##8_3}}
INSTANCES(kp, 0, 0, 0)
INSTANCES(kc, 0, 1, 0)
INSTANCES(kt, 0, 0, 1)
INSTANCES(kr, 1, 0, 0)
INSTANCES(kg, 0, 2, 0)
INSTANCES(krc, 1, 1, 0)
INSTANCES(krg, 1, 2, 0)

/* [mode][rows computed: 1, 2, 4, 8][vectors - 1]; mode: packed A, packed A + copy/prefetch of B,
 * transposed store, row pointers, gathered (strided) B + copy, and the last two with row pointers (one-shot
 * NCHW calls, W read in place). */
static const fp_sgemm_ukr_fn TABLE[7][4][3] = {
    ROW_OF(kp), ROW_OF(kc), ROW_OF(kt), ROW_OF(kr), ROW_OF(kg), ROW_OF(krc), ROW_OF(krg),
};

static void run(const fp_ukr_args *u) {
    const int nv = (int)((u->nr + 15) / 16);
    const int rows = u->mr <= 1 ? 0 : u->mr <= 2 ? 1 : u->mr <= 4 ? 2 : 3;
    const int copy = u->bidx ? 2 : (u->bcopy || u->prefetch_next) ? 1 : 0;
    const int mode = u->arows ? (copy == 2 ? 6 : copy == 1 ? 5 : 3) : u->c_trans ? 2 : copy == 2 ? 4 : copy;
    TABLE[mode][rows][nv - 1](u);
}


/* Tall variant for 9..16 output channels (MobileNetV2 32->16): up to 24 rows x 16 pixels in 24 zmm,
 * the input read in place exactly once (no copy, one pass over X), rows taken from consecutive 8-row
 * weight panels.  Per k: 1 load, up to 24 broadcasts and FMAs, 1 prefetch 4 tiles ahead.  Used up to
 * 16 rows only: at 17..24 (144->24, 64->21) the 24 broadcasts per 24 FMAs made it 2-5 % slower than
 * three 8 x 48 tiles (bench/layer_bench.c), while 32->16 gained 5-9 %. */
#define TUPD(i, pa, o)                                                        \
    do {                                                                      \
        if (i < MRT) c##i = _mm512_fmadd_ps(_mm512_set1_ps((pa)[o]), bv, c##i); \
    } while (0)
#define TSTORE(i)                                                             \
    do {                                                                      \
        if (i < MRT && i < u->mr) {                                           \
            float *c_ = u->c + (int64_t)(i) * u->ldc;                         \
            __m512 r_ = c##i;                                                 \
            if (!u->first) r_ = _mm512_add_ps(r_, _mm512_maskz_loadu_ps(m, c_)); \
            else if (u->bias) r_ = _mm512_add_ps(r_, _mm512_set1_ps(u->bias[i])); \
            if (u->relu) r_ = _mm512_max_ps(_mm512_setzero_ps(), r_);         \
            _mm512_mask_storeu_ps(c_, m, r_);                                 \
        }                                                                     \
    } while (0)

static inline __attribute__((always_inline)) void tall_body(const fp_ukr_args *u, const int MRT) {
    const __m512 z = _mm512_setzero_ps();
    __m512 c0 = z, c1 = z, c2 = z, c3 = z, c4 = z, c5 = z, c6 = z, c7 = z, c8 = z, c9 = z, c10 = z, c11 = z,
           c12 = z, c13 = z, c14 = z, c15 = z, c16 = z, c17 = z, c18 = z, c19 = z, c20 = z, c21 = z, c22 = z,
           c23 = z;
    const __mmask16 m = u->nr >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << u->nr) - 1u);
    const float *a0 = u->a, *a1 = MRT > 8 ? u->a + u->a_panel : u->a, *a2 = MRT > 16 ? u->a + 2 * u->a_panel : u->a;
    const float *b = u->b;
    const int64_t ldb = u->ldb, kc = u->kc;
    const int pf = u->prefetch_next;
#pragma GCC unroll 2
    for (int64_t k = 0; k < kc; k++) {
        const __m512 bv = _mm512_maskz_loadu_ps(m, b);
        if (pf) _mm_prefetch((const char *)(b + 64), _MM_HINT_T0);
        TUPD(0, a0, 0); TUPD(1, a0, 1); TUPD(2, a0, 2); TUPD(3, a0, 3);
        TUPD(4, a0, 4); TUPD(5, a0, 5); TUPD(6, a0, 6); TUPD(7, a0, 7);
        TUPD(8, a1, 0); TUPD(9, a1, 1); TUPD(10, a1, 2); TUPD(11, a1, 3);
        TUPD(12, a1, 4); TUPD(13, a1, 5); TUPD(14, a1, 6); TUPD(15, a1, 7);
        TUPD(16, a2, 0); TUPD(17, a2, 1); TUPD(18, a2, 2); TUPD(19, a2, 3);
        TUPD(20, a2, 4); TUPD(21, a2, 5); TUPD(22, a2, 6); TUPD(23, a2, 7);
        a0 += MR;
        if (MRT > 8) a1 += MR;
        if (MRT > 16) a2 += MR;
        b += ldb;
    }
    TSTORE(0); TSTORE(1); TSTORE(2); TSTORE(3); TSTORE(4); TSTORE(5); TSTORE(6); TSTORE(7);
    TSTORE(8); TSTORE(9); TSTORE(10); TSTORE(11); TSTORE(12); TSTORE(13); TSTORE(14); TSTORE(15);
    TSTORE(16); TSTORE(17); TSTORE(18); TSTORE(19); TSTORE(20); TSTORE(21); TSTORE(22); TSTORE(23);
}

static void run_tall(const fp_ukr_args *u) { tall_body(u, 16); }

const fp_sgemm_ukr fp_f32_gemm_8x48__avx512 = {FP_SGEMM_ROW("f32_gemm_8x48__avx512", FP_ISA_AVX512, MR, NR), run, 1,
                                                run_tall, 16, 16};
FP_TARGET_END
#endif
