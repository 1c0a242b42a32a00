/* Micro-kernel alone on L1-resident panels, 1 thread (dev tool).
 * Build: gcc -O3 -fopenmp -Icsrc bench/ukernel_bench.c csrc/gemm/*.c csrc/cpu.c -o /tmp/ukb */
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

#include "gemm/gemm.h"

int main(int argc, char **argv) {
    int isa = argc > 1 ? atoi(argv[1]) : 2;
    int64_t kc = argc > 2 ? atoll(argv[2]) : 128;
    const fp_sgemm_ukr *uk = fp_sgemm_ukr_for(isa);
    float *a = fp_aligned_alloc(4 * kc * uk->mr), *b = fp_aligned_alloc(4 * kc * uk->nr), *c = fp_aligned_alloc(4 * 64 * 64);
    for (int64_t i = 0; i < kc * uk->mr; i++) a[i] = 1e-3f;
    for (int64_t i = 0; i < kc * uk->nr; i++) b[i] = 1e-3f;
    fp_ukr_args u = {0};
    u.kc = kc; u.a = a; u.b = b; u.ldb = uk->nr; u.c = c; u.ldc = 64; u.mr = uk->mr; u.nr = uk->nr; u.first = 1;
    const long reps = 4000000000L / (kc * uk->mr * uk->nr);
    for (int r = 0; r < 3; r++) {
        double t0 = cpu_now();
        for (long i = 0; i < reps; i++) uk->run(&u);
        double dt = cpu_now() - t0;
        printf("%s kc=%ld: %.1f GFLOP/s\n", uk->name, (long)kc, 2.0 * kc * uk->mr * uk->nr * reps / dt * 1e-9);
    }
    return 0;
}
