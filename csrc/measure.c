/* Machine measurements for `fastpoint info` and the "% of peak" columns of `fastpoint bench`:
 * the float32 FMA peak (GFLOP/s) and the STREAM-triad bandwidth (GB/s), at a given thread count.
 *
 * The peak kernel runs independent FMA chains (12 accumulators: more than latency x FMA ports on
 * current x86 cores, so the chains never wait on each other) in the widest vector ISA that fp_isa()
 * allows; each ISA body enables its own instructions with a target attribute, so the file builds
 * without -march and runs on any CPU.  Results are the best of a few repetitions, because a shared
 * machine only ever makes a measurement slower. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define FP_MEASURE_X86 1
#endif

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#define FP_CHAINS 12

/* Each function runs `iters` steps of FP_CHAINS independent chains acc = acc * m + a (fixed point
 * 1.0, so no overflow or denormals) and returns a sum so the compiler must keep the work.
 * Returns flops done per iteration through *flops_per_iter. */
#ifdef FP_MEASURE_X86
__attribute__((target("avx512f,avx2,fma")))
static float chains_avx512(int64_t iters, double *flops_per_iter) {
    __m512 acc[FP_CHAINS];
    const __m512 m = _mm512_set1_ps(0.9999f), a = _mm512_set1_ps(0.0001f);
    for (int j = 0; j < FP_CHAINS; j++) acc[j] = _mm512_set1_ps(1.0f + 0.001f * (float)j);
    for (int64_t i = 0; i < iters; i++) {
        for (int j = 0; j < FP_CHAINS; j++) acc[j] = _mm512_fmadd_ps(acc[j], m, a);
    }
    __m512 s = acc[0];
    for (int j = 1; j < FP_CHAINS; j++) s = _mm512_add_ps(s, acc[j]);
    *flops_per_iter = 2.0 * 16 * FP_CHAINS;
    return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma")))
static float chains_avx2(int64_t iters, double *flops_per_iter) {
    __m256 acc[FP_CHAINS];
    const __m256 m = _mm256_set1_ps(0.9999f), a = _mm256_set1_ps(0.0001f);
    for (int j = 0; j < FP_CHAINS; j++) acc[j] = _mm256_set1_ps(1.0f + 0.001f * (float)j);
    for (int64_t i = 0; i < iters; i++) {
        for (int j = 0; j < FP_CHAINS; j++) acc[j] = _mm256_fmadd_ps(acc[j], m, a);
    }
    __m256 s = acc[0];
    for (int j = 1; j < FP_CHAINS; j++) s = _mm256_add_ps(s, acc[j]);
    float out[8];
    _mm256_storeu_ps(out, s);
    *flops_per_iter = 2.0 * 8 * FP_CHAINS;
    return out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7];
}
#endif

/* Portable chains: the compiler may vectorise them for the baseline ISA (SSE2 on x86-64), which is
 * what the portable kernels get too. */
static float chains_portable(int64_t iters, double *flops_per_iter) {
    float acc[FP_CHAINS * 4];
    for (int j = 0; j < FP_CHAINS * 4; j++) acc[j] = 1.0f + 0.001f * (float)j;
    for (int64_t i = 0; i < iters; i++) {
        for (int j = 0; j < FP_CHAINS * 4; j++) acc[j] = acc[j] * 0.9999f + 0.0001f;
    }
    float s = 0;
    for (int j = 0; j < FP_CHAINS * 4; j++) s += acc[j];
    *flops_per_iter = 2.0 * 4 * FP_CHAINS;
    return s;
}

static float run_chains(int isa, int64_t iters, double *flops_per_iter) {
#ifdef FP_MEASURE_X86
    if (isa >= FP_ISA_AVX512) return chains_avx512(iters, flops_per_iter);
    if (isa >= FP_ISA_AVX2) return chains_avx2(iters, flops_per_iter);
#endif
    (void)isa;
    return chains_portable(iters, flops_per_iter);
}

volatile float fp_measure_sink; /* results land here so no chain is dead code */

/* One timed pass: every thread runs chunks of chains until `seconds` have passed. */
static double fma_pass(int threads, double seconds, int isa) {
    const int64_t chunk = 20000;
    double total_flops = 0.0, t0 = 0.0, t1 = 0.0;
#ifdef _OPENMP
#pragma omp parallel num_threads(threads) reduction(+ : total_flops)
#endif
    {
        double fpi = 0.0;
        float sink = run_chains(isa, 1000, &fpi); /* warm up: clocks and the wide units */
#ifdef _OPENMP
#pragma omp barrier
#pragma omp master
#endif
        t0 = now_s();
#ifdef _OPENMP
#pragma omp barrier
#endif
        int64_t done = 0;
        double start = now_s();
        while (now_s() - start < seconds) {
            sink += run_chains(isa, chunk, &fpi);
            done += chunk;
        }
        fp_measure_sink = sink;
        total_flops += fpi * (double)done;
#ifdef _OPENMP
#pragma omp barrier
#pragma omp master
#endif
        t1 = now_s();
    }
    (void)threads;
    return t1 > t0 ? total_flops / (t1 - t0) * 1e-9 : 0.0;
}

double fp_measure_fma_peak(int threads, double seconds) {
    if (threads < 1) threads = 1;
    if (seconds <= 0) seconds = 0.2;
    int isa = fp_isa();
    double best = 0.0;
    for (int rep = 0; rep < 3; rep++) {
        double g = fma_pass(threads, seconds / 3.0, isa);
        if (g > best) best = g;
    }
    return best;
}

double fp_measure_triad(int threads, int64_t bytes) {
    if (threads < 1) threads = 1;
    if (bytes < 3 * 4096) bytes = 3 * 4096;
    int64_t n = bytes / (3 * (int64_t)sizeof(double));
    double *a = fp_aligned_alloc(n * (int64_t)sizeof(double));
    double *b = fp_aligned_alloc(n * (int64_t)sizeof(double));
    double *c = fp_aligned_alloc(n * (int64_t)sizeof(double));
    if (!a || !b || !c) {
        fp_aligned_free(a);
        fp_aligned_free(b);
        fp_aligned_free(c);
        return -1.0;
    }
    /* First touch with the same static schedule as the timed loop, so pages sit near their thread. */
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(threads)
#endif
    for (int64_t i = 0; i < n; i++) {
        a[i] = 0.0;
        b[i] = 1.0;
        c[i] = 2.0;
    }
    const double s = 3.0;
    double best = 0.0;
    for (int rep = 0; rep < 6; rep++) {
        double t0 = now_s();
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(threads)
#endif
        for (int64_t i = 0; i < n; i++) a[i] = b[i] + s * c[i];
        double t = now_s() - t0;
        /* STREAM's convention: 3 arrays moved per element (the write-allocate read is not counted). */
        double gbs = t > 0 ? 3.0 * (double)sizeof(double) * (double)n / t * 1e-9 : 0.0;
        if (rep > 0 && gbs > best) best = gbs; /* rep 0 warms the TLB and the pages */
    }
    fp_measure_sink = (float)a[n / 2];
    fp_aligned_free(a);
    fp_aligned_free(b);
    fp_aligned_free(c);
    return best;
}
