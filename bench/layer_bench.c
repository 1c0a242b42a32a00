/* One layer through the C entry points with every kernel of the table that runs it, forced in turn
 * (fp_force_kernels), 1 thread by default, CPU time of this thread (dev tool).  A new row of the
 * table is benchmarked without a change here.
 * Build: gcc -O3 -std=gnu11 -pthread -Icsrc bench/layer_bench.c csrc/*.c csrc/{direct,dwconv,gemm,generic}/*.c -o /tmp/lb -lm
 * Run:   /tmp/lb cin cout hw [k] [stride] [layout 0|1] [threads] [batch] [groups]
 *        (k = 1: a 1x1 layer, the default; groups = cin: depthwise, e.g. /tmp/lb 96 96 56 3 1 1 1 1 96) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fastpoint.h"
#include "internal.h"

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static double wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* Best GFLOP/s of 5 samples of ~2 GFLOP each with the kernel choice as it stands; -1 if it fails. */
static double best_gflops(const fp_conv_problem *p, const float *x, const float *w, const float *b, float *y) {
    void *packed = fp_aligned_alloc(fp_packed_bytes(p, 0));
    if (!packed || fp_pack_f32(p, w, packed) != 0) return -1;
    const double flops = 2.0 * p->n * p->cin / p->groups * p->kh * p->kw * p->cout * p->oh * p->ow;
    const long reps = (long)(2e9 / flops) + 1;
    double (*clock)(void) = p->num_threads == 1 ? cpu_now : wall_now;
    double best = 0;
    for (int r = 0; r < 5; r++) {
        const double t0 = clock();
        for (long i = 0; i < reps; i++)
            if (fp_conv_f32(p, x, packed, b, y) != 0) return -1;
        const double g = flops * reps / (clock() - t0) * 1e-9;
        if (g > best) best = g;
    }
    fp_aligned_free(packed);
    return best;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s cin cout hw [k] [stride] [layout] [threads] [batch] [groups]\n", argv[0]);
        return 1;
    }
    fp_conv_problem p = {0};
    p.cin = atoll(argv[1]); p.cout = atoll(argv[2]); p.h = p.w = atoll(argv[3]);
    p.kh = p.kw = argc > 4 ? atoll(argv[4]) : 1;
    p.stride_h = p.stride_w = argc > 5 ? atoll(argv[5]) : 1;
    p.layout = argc > 6 ? atoi(argv[6]) : 0;
    p.num_threads = argc > 7 ? atoi(argv[7]) : 1;
    p.n = argc > 8 ? atoll(argv[8]) : 1;
    p.dil_h = p.dil_w = 1;
    p.groups = argc > 9 ? atoll(argv[9]) : 1;
    p.pad_top = p.pad_left = p.kh / 2;
    p.oh = (p.h + 2 * p.pad_top - p.kh) / p.stride_h + 1; p.ow = (p.w + 2 * p.pad_left - p.kw) / p.stride_w + 1;
    const int64_t wsize = p.cin / p.groups * p.cout * p.kh * p.kw;
    float *x = fp_aligned_alloc(4 * p.n * p.cin * p.h * p.w), *w = fp_aligned_alloc(4 * wsize);
    float *y = fp_aligned_alloc(4 * p.n * p.cout * p.oh * p.ow), *b = fp_aligned_alloc(4 * p.cout);
    for (int64_t i = 0; i < p.n * p.cin * p.h * p.w; i++) x[i] = (float)(i % 7) * 0.1f;
    for (int64_t i = 0; i < wsize; i++) w[i] = (float)(i % 5) * 0.1f;
    for (int64_t i = 0; i < p.cout; i++) b[i] = 0.5f;
    const char *chosen = fp_kernel_name(&p, 0);
    for (int i = 0; i < fp_kernel_count(); i++) {
        const fp_kernel *k = fp_kernel_at(i);
        if (k->f64 || !fp_kernel_available(i) || fp_force_kernels(k->name) != 0) continue;
        if (strcmp(fp_kernel_name(&p, 0), k->name) == 0) /* this kernel's algorithm applies to the layer */
            printf("%-24s%s %ld->%ld @%ld k%ld s%ld n%ld: %.1f GFLOP/s\n", k->name, strcmp(k->name, chosen) ? "" : "*",
                   (long)p.cin, (long)p.cout, (long)p.h, (long)p.kh, (long)p.stride_h, (long)p.n,
                   best_gflops(&p, x, w, b, y));
        fp_force_kernels(NULL);
    }
    printf("(* the kernel chosen without an override)\n");
    return 0;
}
