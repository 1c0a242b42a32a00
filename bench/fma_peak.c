/* FMA peak of one core: independent FMA chains in registers (dev tool, not part of the package).
 * Build: gcc -O3 -fopenmp bench/fma_peak.c -o /tmp/fma_peak ; run: /tmp/fma_peak [threads] */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#define CHAINS 12

__attribute__((target("avx512f"))) static double run512(long iters) {
    __m512 acc[CHAINS];
    for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_set1_ps((float)i);
    const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
    for (long t = 0; t < iters; t++) {
        for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
        __asm__ volatile("" : "+v"(acc[0]), "+v"(acc[1]), "+v"(acc[2]), "+v"(acc[3]), "+v"(acc[4]), "+v"(acc[5]),
                         "+v"(acc[6]), "+v"(acc[7]), "+v"(acc[8]), "+v"(acc[9]), "+v"(acc[10]), "+v"(acc[11]));
    }
    float s = 0;
    for (int i = 0; i < CHAINS; i++) s += _mm512_reduce_add_ps(acc[i]);
    return s;
}

__attribute__((target("avx2,fma"))) static double run256(long iters) {
    __m256 acc[CHAINS];
    for (int i = 0; i < CHAINS; i++) acc[i] = _mm256_set1_ps((float)i);
    const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
    for (long t = 0; t < iters; t++) {
        for (int i = 0; i < CHAINS; i++) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
        __asm__ volatile("" : "+x"(acc[0]), "+x"(acc[1]), "+x"(acc[2]), "+x"(acc[3]), "+x"(acc[4]), "+x"(acc[5]),
                         "+x"(acc[6]), "+x"(acc[7]), "+x"(acc[8]), "+x"(acc[9]), "+x"(acc[10]), "+x"(acc[11]));
    }
    float s = 0;
    float tmp[8];
    for (int i = 0; i < CHAINS; i++) { _mm256_storeu_ps(tmp, acc[i]); for (int j = 0; j < 8; j++) s += tmp[j]; }
    return s;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    long iters = 200000000L / 4;
    for (int rep = 0; rep < 3; rep++) {
        for (int w = 0; w < 2; w++) {
            double t0 = omp_get_wtime(), sink = 0;
#pragma omp parallel num_threads(threads) reduction(+ : sink)
            sink += w ? run512(iters) : run256(iters);
            double dt = omp_get_wtime() - t0;
            double flops = 2.0 * CHAINS * (w ? 16 : 8) * iters * threads;
            printf("%s %d thr: %.1f GFLOP/s (%g)\n", w ? "avx512" : "avx2  ", threads, flops / dt * 1e-9, sink);
        }
    }
    return 0;
}
