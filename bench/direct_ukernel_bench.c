/* Every direct-convolution micro-kernel of the kernel table (conv rows, csrc/kernel_table.c) alone,
 * 1 thread (dev tool): each instance width up to the row's widest tile, for 1, 2 and 4 blocks of 16
 * channels, called over and over on the same strip and weights, so everything it touches stays in L1
 * (or L2 when cin x taps x blocks x 64 B outgrows L1).  Its GFLOP/s against `fastpoint info`'s FMA
 * peak is the ceiling of the in-situ kernel.  A new row is benchmarked without a change here.
 * Build: gcc -O3 -std=gnu11 -pthread -Icsrc csrc/*.c csrc/{direct,dwconv,gemm,generic}/*.c bench/direct_ukernel_bench.c -o /tmp/dukb -lm
 * Run:   /tmp/dukb [cin taps strip_channel_stride iterations row_stride [name]]   (default 16 9 256 20000 58) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "direct/direct.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

int main(int argc, char **argv) {
    const int64_t cin = argc > 1 ? atol(argv[1]) : 16, T = argc > 2 ? atol(argv[2]) : 9;
    const int64_t cs = argc > 3 ? atol(argv[3]) : 256, rs = argc > 5 ? atol(argv[5]) : 58;
    const int iters = argc > 4 ? atoi(argv[4]) : 20000;
    if (T > 64) return 1;
    float *pix = fp_aligned_alloc(4 * (cin * cs + 1024));
    for (int64_t i = 0; i < cin * cs + 1024; i++) pix[i] = 1e-3f * (float)(i % 7);
    const int64_t wblk = cin * T * 16;
    float *w = fp_aligned_alloc(4 * wblk * 4);
    for (int64_t i = 0; i < wblk * 4; i++) w[i] = 1e-3f;
    int64_t toff[64];
    const int kw = T == 9 ? 3 : T == 49 ? 7 : 1;
    for (int t = 0; t < T; t++) toff[t] = (t / kw) * rs + t % kw;
    float init[64] = {0};
    static float out[14 * 64 * 4] __attribute__((aligned(64)));
    for (int i = 0; i < fp_kernel_count(); i++) {
        const fp_kernel *k = fp_kernel_at(i);
        if (strcmp(k->family, "conv") || !fp_kernel_available(i) || (argc > 6 && strcmp(k->name, argv[6]))) continue;
        const fp_direct_ukr *uk = (const fp_direct_ukr *)k; /* the row starts the family's struct */
        for (int b = 0; b < 3; b++) {
            const int nb = b == 2 ? 4 : b + 1;
            for (int rw = 1; rw <= uk->rw[b]; rw++) {
                fp_dtile a = {pix, toff, 0, T, T, cin, cs, w, wblk, init, 0, out, nb * 16, 1};
                const fp_dkernel kern = uk->kernel(rw, nb);
                double best = 1e9;
                for (int r = 0; r < 5; r++) {
                    const double t0 = now();
                    for (int it = 0; it < iters; it++) kern(&a);
                    const double t = (now() - t0) / iters;
                    if (t < best) best = t;
                }
                const double fl = 2.0 * rw * nb * 16 * cin * T;
                printf("%-24s rw %2d nb %d cin %ld T %ld: %6.1f GFLOP/s (%.1f ns)\n", k->name, rw, nb, (long)cin,
                       (long)T, fl / best * 1e-9, best * 1e9);
            }
        }
    }
    return 0;
}
