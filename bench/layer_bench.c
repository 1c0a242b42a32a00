/* One 1x1 layer through the C entry points, 1 thread, CPU time of this thread (dev tool).
 * Build: gcc -O3 -fopenmp -Icsrc bench/layer_bench.c csrc/gemm/*.c csrc/generic/*.c csrc/conv.c csrc/cpu.c -o /tmp/lb
 * Run:   /tmp/lb cin cout hw [stride] [layout 0|1] [threads] [batch] */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "fastpoint.h"
#include "internal.h"

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

int main(int argc, char **argv) {
    fp_conv_problem p = {0};
    p.n = 1; p.cin = atoll(argv[1]); p.cout = atoll(argv[2]); p.h = p.w = atoll(argv[3]);
    p.stride_h = p.stride_w = argc > 4 ? atoll(argv[4]) : 1;
    p.layout = argc > 5 ? atoi(argv[5]) : 0;
    p.num_threads = argc > 6 ? atoi(argv[6]) : 1;
    p.n = argc > 7 ? atoll(argv[7]) : 1;
    p.kh = p.kw = 1; p.dil_h = p.dil_w = 1; p.groups = 1;
    p.oh = (p.h - 1) / p.stride_h + 1; p.ow = (p.w - 1) / p.stride_w + 1;
    float *x = fp_aligned_alloc(4 * p.n * p.cin * p.h * p.w), *w = fp_aligned_alloc(4 * p.cin * p.cout);
    float *y = fp_aligned_alloc(4 * p.n * p.cout * p.oh * p.ow), *b = fp_aligned_alloc(4 * p.cout);
    for (int64_t i = 0; i < p.n * p.cin * p.h * p.w; i++) x[i] = (float)(i % 7) * 0.1f;
    for (int64_t i = 0; i < p.cin * p.cout; i++) w[i] = (float)(i % 5) * 0.1f;
    for (int64_t i = 0; i < p.cout; i++) b[i] = 0.5f;
    void *packed = fp_aligned_alloc(fp_packed_bytes(&p, 0));
    fp_pack_f32(&p, w, packed);
    const double flops = 2.0 * p.n * p.cin * p.cout * p.oh * p.ow;
    long reps = (long)(2e9 / flops) + 1;
    double (*clock)(void) = p.num_threads == 1 ? cpu_now : omp_get_wtime;
    double best = 0;
    for (int r = 0; r < 5; r++) {
        double t0 = clock();
        for (long i = 0; i < reps; i++) fp_conv_f32(&p, x, packed, b, y);
        double g = flops * reps / (clock() - t0) * 1e-9;
        if (g > best) best = g;
    }
    printf("%s %ld->%ld @%ld s%ld n%ld: %.1f GFLOP/s\n", fp_kernel_name(&p, 0), (long)p.cin, (long)p.cout, (long)p.h,
           (long)p.stride_h, (long)p.n, best);
    return 0;
}
