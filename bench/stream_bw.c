/* Stream bandwidth of this machine (dev benchmark): copy and triad over arrays much larger than
 * the caches, per thread count, best of 5; bytes counted as read + written (no write-allocate).
 *   gcc -O2 -fopenmp -o /tmp/stream_bw bench/stream_bw.c && flock /tmp/fp-bench.lock /tmp/stream_bw 1 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    int nt = argc > 1 ? atoi(argv[1]) : 1;
    long n = argc > 2 ? atol(argv[2]) : 32L << 20; /* floats per array: 128 MiB */
    float *a = aligned_alloc(64, n * 4), *b = aligned_alloc(64, n * 4), *c = aligned_alloc(64, n * 4);
#pragma omp parallel for num_threads(nt)
    for (long i = 0; i < n; i++) { a[i] = 1; b[i] = 2; c[i] = 0; }
    double best_copy = 0, best_triad = 0;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = omp_get_wtime();
#pragma omp parallel for num_threads(nt)
        for (long i = 0; i < n; i++) c[i] = a[i];
        double t1 = omp_get_wtime();
#pragma omp parallel for num_threads(nt)
        for (long i = 0; i < n; i++) a[i] = b[i] + 3.0f * c[i];
        double t2 = omp_get_wtime();
        double copy = 8.0 * n / (t1 - t0) / 1e9, triad = 12.0 * n / (t2 - t1) / 1e9;
        if (copy > best_copy) best_copy = copy;
        if (triad > best_triad) best_triad = triad;
    }
    printf("threads %d, %ld MiB arrays: copy %.1f GB/s, triad %.1f GB/s (%g)\n", nt, n * 4 >> 20, best_copy, best_triad,
           (double)a[n / 2]);
    return 0;
}
