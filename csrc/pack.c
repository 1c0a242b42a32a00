/* Weight packing shared by the algorithms: a blocked transposition into vector-wide panels, and the split
 * of a packing's independent jobs (panels, channel blocks) across the pool.  Packing runs once per layer
 * for fp.Conv2d but on every one-shot call (csrc/oneshot.c), so it must cost little next to the kernel. */
#include "internal.h"

/* Copying a panel k by k across its `width` source rows touches `width` lines a row apart per k; rows of
 * a power-of-two length (2048 floats) all fall in one L1 set: measured 6 cycles per element.  Blocks of
 * PACK_COLS columns instead: each source row is read contiguously and the width x PACK_COLS block
 * written (12 KiB at width 48) stays in L1. */
#define PACK_COLS 64

#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
int fp_pack_transpose_blocks_avx512(const float *src, int64_t ld, int64_t rows16, int64_t cols, int64_t width,
                                    float *dst, int check);
int fp_pack_transpose_blocks_avx2(const float *src, int64_t ld, int64_t rows8, int64_t cols, int64_t width,
                                  float *dst, int check);
#endif

/* Element by element, rows [i0, rows), plus the zero lanes [rows, width). */
static void transpose_edges(const float *src, int64_t ld, int64_t rows, int64_t cols, int64_t width, float *dst,
                            int64_t i0) {
    for (int64_t jb = 0; jb < cols; jb += PACK_COLS) {
        const int64_t j1 = FP_MIN(cols, jb + PACK_COLS);
        for (int64_t i = i0; i < rows; i++) {
            const float *s = src + i * ld;
            for (int64_t j = jb; j < j1; j++) dst[j * width + i] = s[j];
        }
        /* the zero lanes of column j are one contiguous run: filled along it (a last panel of 32 rows in
         * 48 lanes had cost a strided store per zero, 16 x K of them) */
        for (int64_t j = jb; j < j1; j++)
            for (int64_t i = rows; i < width; i++) dst[j * width + i] = 0.0f;
    }
}

/* check: also answer whether some value read is NaN or +-Inf */
static int transpose(const float *src, int64_t ld, int64_t rows, int64_t cols, int64_t width, float *dst, int check) {
    int64_t rows16 = 0;
    int bad = 0;
#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
    /* rows in whole groups of 16 (AVX-512) or 8 (AVX2), through registers (the bytes written are the same
     * whichever ISA runs) */
    if (fp_isa() >= FP_ISA_AVX512 && width % 16 == 0) {
        rows16 = rows / 16 * 16;
        if (rows16) bad = fp_pack_transpose_blocks_avx512(src, ld, rows16, cols, width, dst, check);
    } else if (fp_isa() >= FP_ISA_AVX2 && width % 8 == 0) {
        rows16 = rows / 8 * 8;
        if (rows16) bad = fp_pack_transpose_blocks_avx2(src, ld, rows16, cols, width, dst, check);
    }
#endif
    transpose_edges(src, ld, rows, cols, width, dst, rows16);
    /* the other rows, just read (in L1 when they are a few): contiguous runs of cols floats */
    for (int64_t i = rows16; check && i < rows && !bad; i++) bad = fp_any_nonfinite_f32(src + i * ld, cols);
    return check && bad;
}

void fp_pack_transpose(const float *src, int64_t ld, int64_t rows, int64_t cols, int64_t width, float *dst) {
    (void)transpose(src, ld, rows, cols, width, dst, 0);
}

int fp_pack_transpose_check(const float *src, int64_t ld, int64_t rows, int64_t cols, int64_t width, float *dst) {
    return transpose(src, ld, rows, cols, width, dst, 1);
}

typedef struct pack_task {
    int64_t jobs, nchunks;
    fp_pack_fn fn;
    void *ctx;
} pack_task;

static void pack_chunk(void *arg, int64_t chunk, int worker) {
    (void)worker;
    const pack_task *t = (const pack_task *)arg;
    int64_t lo, hi;
    fp_chunk_range(t->jobs, t->nchunks, chunk, &lo, &hi);
    for (int64_t j = lo; j < hi; j++) t->fn(t->ctx, j);
}

/* Below this many bytes a packing runs on the caller: waking a helper costs more than the copy. */
#define PACK_PARALLEL_BYTES (256 << 10)

void fp_pack_jobs(const fp_conv_problem *p, int64_t jobs, int64_t bytes, fp_pack_fn fn, void *ctx) {
    int T = bytes < PACK_PARALLEL_BYTES ? 1 : fp_threads(p);
    const int cap = fp_max_threads();
    if (T > cap) T = cap;
    pack_task t = {jobs, fp_chunk_count(jobs, T), fn, ctx};
    if (t.nchunks <= 1) {
        for (int64_t j = 0; j < jobs; j++) fn(ctx, j);
        return;
    }
    fp_pool_run(T, t.nchunks, pack_chunk, &t);
}
