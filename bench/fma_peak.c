/* FMA peak per core: 24 independent FMA chains held in registers (dev tool, not part of the package).
 * Build: gcc -O3 -fopenmp bench/fma_peak.c -o /tmp/fma_peak ; run: /tmp/fma_peak [threads] */
#include <immintrin.h>
#include <omp.h>
#include <time.h>

/* CPU time of this thread: other processes sharing the core do not count. */
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}
#include <stdio.h>
#include <stdlib.h>

#define CHAINS 24

__attribute__((target("avx512f,avx512vl,fma"))) static float run512(long iters) {
    const __m512 m = _mm512_set1_ps(0.999f), c = _mm512_set1_ps(1e-7f);
    __m512 acc[CHAINS];
    for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_set1_ps((float)i);
    for (long t = 0; t < iters; t++) {
#pragma GCC unroll 24
        for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_fmadd_ps(acc[i], m, c);
    }
    float s = 0;
    for (int i = 0; i < CHAINS; i++) s += _mm512_reduce_add_ps(acc[i]);
    return s;
}

__attribute__((target("avx2,fma"))) static float run256(long iters) {
    const __m256 m = _mm256_set1_ps(0.999f), c = _mm256_set1_ps(1e-7f);
    __m256 acc[12]; /* AVX2 has 16 registers */
    for (int i = 0; i < 12; i++) acc[i] = _mm256_set1_ps((float)i);
    for (long t = 0; t < iters; t++) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++) acc[i] = _mm256_fmadd_ps(acc[i], m, c);
    }
    float s = 0, tmp[8];
    for (int i = 0; i < 12; i++) { _mm256_storeu_ps(tmp, acc[i]); s += tmp[0]; }
    return s;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    const long iters = 20000000L;
    for (int rep = 0; rep < 3; rep++) {
        for (int w = 0; w < 2; w++) {
            double t0 = omp_get_wtime();
            float sink = 0;
#pragma omp parallel num_threads(threads) reduction(+ : sink)
            sink += w ? run512(iters) : run256(2 * iters);
            double dt = omp_get_wtime() - t0;
            double flops = w ? 2.0 * CHAINS * 16 * iters * threads : 2.0 * 12 * 8 * 2 * iters * threads;
            printf("%s %d thr: %.1f GFLOP/s (%g)\n", w ? "avx512" : "avx2  ", threads, flops / dt * 1e-9, sink);
        }
    }
    return 0;
}
