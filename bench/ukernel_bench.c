/* Every gemm micro-kernel of the kernel table (csrc/kernel_table.c) alone on L1-resident panels, 1 thread
 * (dev tool): the full tile and the tail tiles one row and one column short.  A new row of the table is
 * benchmarked without a change here.
 * Build: gcc -O3 -std=gnu11 -pthread -Icsrc bench/ukernel_bench.c csrc/*.c csrc/{direct,dwconv,gemm,generic}/*.c -o /tmp/ukb -lm
 * Run:   /tmp/ukb [kc] [name]   (default kc 128, every available row) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gemm/gemm.h"

/* CPU time of this thread: other processes sharing the core do not count. */
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static void bench(const fp_sgemm_ukr *uk, int64_t kc, int64_t mr, int64_t nr) {
    float *a = fp_aligned_alloc(4 * kc * uk->mr), *b = fp_aligned_alloc(4 * kc * uk->nr), *c = fp_aligned_alloc(4 * 64 * 64);
    for (int64_t i = 0; i < kc * uk->mr; i++) a[i] = 1e-3f;
    for (int64_t i = 0; i < kc * uk->nr; i++) b[i] = 1e-3f;
    fp_ukr_args u = {0};
    u.kc = kc; u.a = a; u.b = b; u.ldb = uk->nr; u.c = c; u.ldc = 64; u.mr = mr; u.nr = nr; u.first = 1;
    const long reps = 2000000000L / (kc * uk->mr * uk->nr);
    double best = 0;
    for (int r = 0; r < 3; r++) {
        double t0 = cpu_now();
        for (long i = 0; i < reps; i++) uk->run(&u);
        const double g = 2.0 * kc * mr * nr * reps / (cpu_now() - t0) * 1e-9;
        if (g > best) best = g;
    }
    printf("%-24s %3ld x %-3ld kc=%ld: %6.1f GFLOP/s\n", uk->k.name, (long)mr, (long)nr, (long)kc, best);
    fp_aligned_free(a); fp_aligned_free(b); fp_aligned_free(c);
}

int main(int argc, char **argv) {
    const int64_t kc = argc > 1 ? atoll(argv[1]) : 128;
    for (int i = 0; i < fp_kernel_count(); i++) {
        const fp_kernel *k = fp_kernel_at(i);
        if (strcmp(k->family, "gemm") || !fp_kernel_available(i) || (argc > 2 && strcmp(k->name, argv[2]))) continue;
        const fp_sgemm_ukr *uk = (const fp_sgemm_ukr *)k; /* the row starts the family's struct */
        bench(uk, kc, uk->mr, uk->nr);
        bench(uk, kc, uk->mr, uk->nr - 1);
        bench(uk, kc, uk->mr - 1, uk->nr);
    }
    return 0;
}
