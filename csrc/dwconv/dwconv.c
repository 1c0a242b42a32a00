/* The depthwise algorithm: groups = cin > 1 (any channel multiplier), float32, NCHW and NHWC. */
#include <string.h>

#include "dwconv.h"

static int applies(const fp_conv_problem *p, int isa, int f64) {
    (void)isa;
    return !f64 && p->groups > 1 && p->groups == p->cin;
}

/* The one place a depthwise micro-kernel is chosen: the dwconv table's choice at the ISA level (the
 * best row it runs, or the forced one). */
const fp_dw_ukernel *fp_dw_select(const fp_conv_problem *p, int isa) {
    (void)p;
    return (const fp_dw_ukernel *)fp_kernel_pick("dwconv", 0, isa); /* the row starts the struct */
}

/* Kernels whose NCHW transposes are scalar code send wide planes to the generic loops (vectorized
 * along the row), which beat the transposed tiles there (docs/depthwise.md, "AVX2 and portable"). */
static int generic_rows(const fp_conv_problem *p, int isa) {
    const int64_t ow = fp_dw_select(p, isa)->nchw_generic_ow;
    return p->layout == 0 && ow && p->ow >= ow;
}
/* Weights are packed before the image size is known: such calls keep the generic copy too. */
static int generic_copy(const fp_conv_problem *p, int isa) {
    return p->layout == 0 && fp_dw_select(p, isa)->nchw_generic_ow;
}

static const char *kernel_name(const fp_conv_problem *p, int isa, int f64) {
    (void)f64;
    if (generic_rows(p, isa)) return fp_algo_generic.kernel_name(p, isa, 0);
    return fp_dw_select(p, isa)->k.name;
}

static int64_t packed_bytes(const fp_conv_problem *p, int isa, int f64) {
    (void)isa; (void)f64;
    const int64_t T = p->kh * p->kw;
    return (int64_t)sizeof(float) * T * fp_dw_cpad(p) + (generic_copy(p, isa) ? fp_algo_generic.packed_bytes(p, isa, 0) : 0);
}

static int pack(const fp_conv_problem *p, int isa, int f64, const void *wv, void *dst) {
    const float *w = (const float *)wv;
    float *d = (float *)dst;
    const int64_t T = p->kh * p->kw;
    const int64_t cpad = fp_dw_cpad(p);
    fp_pack_transpose(w, T, p->cout, T, cpad, d); /* [tap][channel], zero past Cout */
    return generic_copy(p, isa) ? fp_algo_generic.pack(p, isa, 0, wv, d + T * cpad) : FP_OK;
}

static int run(const fp_conv_problem *p, int isa, int f64, const void *x, const void *packed, const void *bias,
               void *y) {
    (void)f64;
    if (p->n == 0 || p->oh == 0 || p->ow == 0 || p->cout == 0) return FP_OK;
    if (generic_rows(p, isa))
        return fp_algo_generic.run(p, isa, 0, x, (const float *)packed + p->kh * p->kw * fp_dw_cpad(p), bias, y);
    return fp_dw_drive(fp_dw_select(p, isa), p, x, packed, bias, y);
}

/* One-shot calls (csrc/oneshot.c): the driver packs the caller's weights after the split, on the threads that
 * use them (NCHW: each chunk of jobs the channels it computes; NHWC: each thread all of them, once), checking them as it packs;
 * the generic rows (AVX2 / portable wide NCHW planes) pack first. */
static int run_unpacked(const fp_conv_problem *p, int isa, int f64, const void *x, const void *w, const void *bias,
                        void *y) {
    (void)f64;
    if (p->n == 0 || p->oh == 0 || p->ow == 0 || p->cout == 0 || generic_rows(p, isa)) return FP_DECLINED;
    return fp_dw_drive_unpacked(fp_dw_select(p, isa), p, (const float *)x, (const float *)w, (const float *)bias,
                                (float *)y);
}

const fp_algo fp_algo_dwconv = {"dwconv", applies, kernel_name, packed_bytes, pack, run, "dwconv", run_unpacked};
