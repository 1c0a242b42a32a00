/* The kernel tables, one per family, in the manner of BLIS's config/<arch>/bli_cntx_init_*.c and
 * XNNPACK's src/configs/<family>-config.c: each row (struct fp_kernel, fastpoint.h) names a micro-kernel, its
 * dtype, the ISA it needs and its tile; the family's own row type (gemm.h, direct.h, dwconv.h, generic.h) starts
 * with that row and adds the functions and requirements its driver needs.
 *
 * Rows are listed best first: a family runs the first row of the dtype whose ISA is at most the
 * chosen one (fp_isa(): the CPU's best, lowered by FASTPOINT_ISA or fp_set_isa), unless a kernel of
 * the family is forced (fp_force_kernels, FASTPOINT_KERNEL).  A new kernel is its file plus one row
 * here (docs/conventions.md); tests/test_kernels.py and the C micro-benchmarks read these tables. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conv1d/conv1d.h"
#include "direct/direct.h"
#include "direct/direct_px.h"
#include "dwconv/dwconv.h"
#include "gemm/gemm.h"
#include "generic/generic.h"
#include "kernel_table.h"
#include "lowered/interleave.h"
#include "winograd/winograd.h"

#if defined(__x86_64__) && !defined(FP_PORTABLE_ONLY)
#define FP_X86_ROWS 1
#endif

/* 1x1 convolution as GEMM (csrc/gemm/): fp_sgemm_ukr rows. */
static const fp_kernel *const GEMM[] = {
#ifdef FP_X86_ROWS
    &fp_f32_gemm_8x48__avx512.k,
    &fp_f32_gemm_6x16__avx2.k,
#endif
    &fp_f32_gemm_4x16__scalar.k,
};

/* Direct KxK convolution (csrc/direct/): fp_direct_ukr rows. */
static const fp_kernel *const CONV[] = {
#ifdef FP_X86_ROWS
    &fp_f32_conv_14x32__avx512.k,
    &fp_f32_conv_6x16__avx2.k,
#endif
    &fp_f32_conv_4x16__scalar.k,
};

/* Direct KxK convolution with pixels in the lanes, few input channels (csrc/direct/direct_px.c): fp_px_ukr rows. */
static const fp_kernel *const CONVPX[] = {
#ifdef FP_X86_ROWS
    &fp_f32_convpx_8x48__avx512.k,
    &fp_f32_convpx_4x24__avx2.k,
#endif
    &fp_f32_convpx_4x16__scalar.k,
};

/* Direct 1-d convolution along one long row (csrc/conv1d/): fp_conv1d_ukr rows. */
static const fp_kernel *const CONV1D[] = {
#ifdef FP_X86_ROWS
    &fp_f32_conv1d_8x48__avx512.k,
    &fp_f32_conv1d_4x24__avx2.k,
#endif
    &fp_f32_conv1d_4x16__scalar.k,
};

/* Depthwise convolution (csrc/dwconv/): fp_dw_ukernel rows. */
static const fp_kernel *const DWCONV[] = {
#ifdef FP_X86_ROWS
    &fp_f32_dwconv_8x16c__avx512.k,
    &fp_f32_dwconv_4x16c__avx2.k,
#endif
    &fp_f32_dwconv_4x16c__scalar.k,
};

/* Winograd F(4x4) and F(2x2) transforms, opt-in 3x3 stride 1 (csrc/winograd/): fp_wino_kernel rows.  The pick
 * is the F(4x4) row of the ISA; the driver takes F(2x2) on small maps (winograd_driver.c, choose_kernel). */
static const fp_kernel *const WINOGRAD[] = {
#ifdef FP_X86_ROWS
    &fp_wino_kernels_avx512[0].k, &fp_wino_kernels_avx512[1].k,
    &fp_wino_kernels_avx2[0].k,   &fp_wino_kernels_avx2[1].k,
#endif
    &fp_wino_kernels_scalar[0].k, &fp_wino_kernels_scalar[1].k,
};

/* The 2-wide interleave of the lowered transposed-conv GEMM's store (csrc/lowered/): fp_interleave_kernel rows. */
static const fp_kernel *const INTERLEAVE[] = {
#ifdef FP_X86_ROWS
    &fp_f32_interleave_2x16__avx512.k,
    &fp_f32_interleave_2x8__avx2.k,
#endif
    &fp_f32_interleave_2x1__scalar.k,
};

/* The generic loops, every problem (csrc/generic/): fp_generic_kernel rows. */
static const fp_kernel *const GENERIC[] = {
    &fp_f32_generic__scalar.k,
    &fp_f64_generic__scalar.k,
};

#define ROWS(t) (int)(sizeof(t) / sizeof(t[0]))
static const struct {
    const fp_kernel *const *rows;
    int n;
} TABLES[] = {{GEMM, ROWS(GEMM)}, {CONV, ROWS(CONV)}, {CONVPX, ROWS(CONVPX)}, {DWCONV, ROWS(DWCONV)},
                {WINOGRAD, ROWS(WINOGRAD)},
                {GENERIC, ROWS(GENERIC)}, {INTERLEAVE, ROWS(INTERLEAVE)}, {CONV1D, ROWS(CONV1D)}};
#define N_TABLES ROWS(TABLES)

int fp_kernel_count(void) {
    int n = 0;
    for (int t = 0; t < N_TABLES; t++) n += TABLES[t].n;
    return n;
}

const fp_kernel *fp_kernel_at(int i) {
    for (int t = 0; t < N_TABLES && i >= 0; t++) {
        if (i < TABLES[t].n) return TABLES[t].rows[i];
        i -= TABLES[t].n;
    }
    return NULL;
}

int fp_kernel_index(const fp_kernel *k) {
    for (int t = 0, base = 0; t < N_TABLES; base += TABLES[t].n, t++)
        for (int i = 0; i < TABLES[t].n; i++)
            if (TABLES[t].rows[i] == k) return base + i;
    return -1;
}

int fp_kernel_available(int i) {
    const fp_kernel *k = fp_kernel_at(i);
    return k != NULL && k->isa <= fp_isa_supported();
}

/* ------------------------------------------------------------------ the testing override */

#define MAX_FORCED 8
static const fp_kernel *g_forced[MAX_FORCED]; /* one per (family, dtype) at most */
static int g_nforced;                         /* entries of g_forced in use (0: the fast path) */
static int g_env_status = 1;                  /* 1: FASTPOINT_KERNEL not read yet */

static const fp_kernel *find(const char *name, size_t len) {
    const int n = fp_kernel_count();
    for (int i = 0; i < n; i++) {
        const fp_kernel *k = fp_kernel_at(i);
        if (strlen(k->name) == len && !strncmp(k->name, name, len)) return fp_kernel_available(i) ? k : NULL;
    }
    return NULL;
}

static int force(const char *names) {
    const fp_kernel *chosen[MAX_FORCED] = {0};
    int nchosen = 0;
    for (const char *s = names ? names : ""; *s;) {
        const char *end = strchr(s, ',');
        const size_t len = end ? (size_t)(end - s) : strlen(s);
        if (len > 0) {
            const fp_kernel *k = find(s, len);
            if (!k || nchosen == MAX_FORCED) return FP_ERR_ARGS;
            for (int j = 0; j < nchosen; j++)
                if (!strcmp(chosen[j]->family, k->family) && chosen[j]->f64 == k->f64) return FP_ERR_ARGS;
            chosen[nchosen++] = k;
        }
        s += len + (end != NULL);
    }
    memcpy(g_forced, chosen, sizeof g_forced);
    g_nforced = nchosen;
    return FP_OK;
}

/* FASTPOINT_KERNEL is read once, at the first table look-up (like FASTPOINT_ISA in cpu.c); a bad value
 * forces nothing and is reported by fp_kernel_env_status (the Python backend refuses to run then). */
static void env_once(void) {
    if (g_env_status != 1) return;
    const char *env = getenv("FASTPOINT_KERNEL");
    int rc = env && *env ? force(env) : FP_OK;
    if (rc != FP_OK) fprintf(stderr, "fastpoint: FASTPOINT_KERNEL=%s names an unknown or unavailable kernel\n", env);
    g_env_status = rc;
}

int fp_kernel_env_status(void) {
    env_once();
    return g_env_status;
}

int fp_force_kernels(const char *names) {
    env_once();
    return force(names);
}

int fp_kernel_forcing(void) {
    env_once();
    return g_nforced > 0;
}

const fp_kernel *fp_kernel_forced(const char *family, int f64) {
    env_once();
    for (int j = 0; j < g_nforced; j++)
        if (!strcmp(g_forced[j]->family, family) && g_forced[j]->f64 == f64) return g_forced[j];
    return NULL;
}

/* The table of a family (a table holds one): the same string literal is usually one object in the
 * library, so a pointer compare answers before any strcmp. */
static int table_of(const char *family) {
    for (int t = 0; t < N_TABLES; t++)
        if (TABLES[t].rows[0]->family == family) return t;
    for (int t = 0; t < N_TABLES; t++)
        if (!strcmp(TABLES[t].rows[0]->family, family)) return t;
    return -1;
}

const fp_kernel *fp_kernel_pick(const char *family, int f64, int isa) {
    if (fp_kernel_forcing()) {
        const fp_kernel *k = fp_kernel_forced(family, f64);
        if (k) return k;
    }
    const int t = table_of(family);
    for (int i = 0; t >= 0 && i < TABLES[t].n; i++)
        if (TABLES[t].rows[i]->f64 == f64 && TABLES[t].rows[i]->isa <= isa) return TABLES[t].rows[i];
    return NULL;
}
