/* STREAM-style triad a[i] = b[i] + s*c[i] over 3 x 64 MiB (dev tool, not part of the package).
 * Counts 3 x 4 bytes per element (the STREAM convention; write-allocate traffic not counted).
 * Build: gcc -O3 -fopenmp bench/stream_triad.c -o /tmp/triad ; run: /tmp/triad [threads] */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    const long n = 16L << 20;
    float *a = aligned_alloc(64, n * 4), *b = aligned_alloc(64, n * 4), *c = aligned_alloc(64, n * 4);
#pragma omp parallel for num_threads(threads)
    for (long i = 0; i < n; i++) { a[i] = 0; b[i] = 1; c[i] = 2; }
    double best = 0;
    for (int rep = 0; rep < 10; rep++) {
        double t0 = omp_get_wtime();
#pragma omp parallel for num_threads(threads)
        for (long i = 0; i < n; i++) a[i] = b[i] + 3.0f * c[i];
        double gbs = 12.0 * n / (omp_get_wtime() - t0) * 1e-9;
        if (gbs > best) best = gbs;
    }
    printf("triad %d thr: best %.1f GB/s (a[7]=%g)\n", threads, best, a[7]);
    return 0;
}
