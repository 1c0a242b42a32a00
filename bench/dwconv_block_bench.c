/* The NHWC depthwise 3x3 blocks alone, on L1-resident data (dev tool): one row pair (or two single
 * rows) of px output pixels x C channels, called in a loop; ns per 16-channel output vector.
 * Build (from the repository root; DWSRC may name another tree's f32_dwconv_8x16c__avx512.c for an A/B):
 *   gcc -O3 -std=gnu11 -fno-math-errno -fno-trapping-math -Icsrc bench/dwconv_block_bench.c \
 *       csrc/scratch.c csrc/pool.c csrc/cpu.c csrc/fpenv.c -o /tmp/dwblock -lm -pthread
 * Run:   /tmp/dwblock C px xoff yoff [single]   (offsets in floats from 64-byte alignment) */
#ifndef DWSRC
#define DWSRC "dwconv/f32_dwconv_8x16c__avx512.c"
#endif
#include DWSRC
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: C px xoff yoff [single]\n");
        return 2;
    }
    const int64_t C = atol(argv[1]);
    const int px = atoi(argv[2]), xo = atoi(argv[3]), yo = atoi(argv[4]), single = argc > 5 ? atoi(argv[5]) : 0;
    if (px < 1 || px > 8) return 2;
    const int64_t W = px + 2;
    float *x = (float *)aligned_alloc(64, 4 * (4 * W * C + 4096)) + xo;
    float *y = (float *)aligned_alloc(64, 4 * (2 * px * C + 4096)) + yo;
    float *w = aligned_alloc(64, 4 * 9 * C), *b = aligned_alloc(64, 4 * C);
    for (int64_t i = 0; i < 4 * W * C; i++) x[i] = (float)(i % 7 - 3);
    for (int64_t i = 0; i < 9 * C; i++) w[i] = (float)(i % 5 - 2);
    for (int64_t i = 0; i < C; i++) b[i] = 1;
    const fp_dw_geo g = {C, C, W, 3, 1, 1, 1, 0, C, px, 0, 0, 1};
    const long it = 2000000 / C;
    double best = 1e9;
    for (int r = 0; r < 7; r++) {
        const double t = now();
        if (single) {
            for (long i = 0; i < it; i++) {
                nhwc_fns_3_1_1[0][px - 1](x, 0, w, &g, 3, b, 0, C, y);
                nhwc_fns_3_1_1[0][px - 1](x + W * C, 0, w, &g, 3, b, 0, C, y + px * C);
            }
        } else {
            for (long i = 0; i < it; i++) pair_fns[0][px - 1](x, 0, w, &g, b, 0, C, y);
        }
        const double d = (now() - t) / it;
        if (d < best) best = d;
    }
    const double vec = 2.0 * px * C / 16;
    printf("C=%ld px=%d offsets %d/%d %s: %.1f ns per call, %.2f ns per output vector, %.1f GFLOP/s\n", (long)C, px, xo,
           yo, single ? "single rows" : "row pair", best * 1e9, best * 1e9 / vec, 2 * 9 * 2.0 * px * C / best * 1e-9);
    return 0;
}
