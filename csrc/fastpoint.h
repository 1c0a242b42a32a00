/* fastpoint C kernels: the problem description and the entry points called from Python (cffi).
 *
 * The lines between the cdef markers are read verbatim by fastpoint/_build_ffi.py as the cffi
 * declarations, so they must stay plain C declarations (no macros, no includes).
 *
 * Contract: Python has validated every argument.  Arrays are C-contiguous in the problem's layout,
 * indices are 64-bit, the output is written and never read, and no kernel reads or writes outside
 * the arrays it is given.  Functions return 0 or a negative FP_ERR_* code.
 */
#ifndef FASTPOINT_H
#define FASTPOINT_H
#include <stddef.h>
#include <stdint.h>

/* cdef-begin */
typedef struct fp_conv_problem {
    int64_t n, cin, h, w;          /* input: batch, channels, height, width */
    int64_t cout, kh, kw;          /* weight: (cout, cin / groups, kh, kw) */
    int64_t oh, ow;                /* output height, width */
    int64_t stride_h, stride_w;
    int64_t pad_top, pad_left;     /* bottom/right padding follow from oh, ow */
    int64_t dil_h, dil_w;
    int64_t groups;
    int32_t layout;                /* 0 = NCHW, 1 = NHWC */
    int32_t relu;                  /* 1 = fuse max(0, y) into the store (NaN stays NaN) */
    int32_t num_threads;           /* threads this call may use (>= 1) */
    int32_t algorithm;             /* FP_ALGO_*: 0 = today's kernels; 2 = Winograd where it applies */
} fp_conv_problem;

enum { FP_OK = 0, FP_ERR_ALLOC = -1, FP_ERR_PACKED = -2, FP_ERR_ARGS = -3 };
enum { FP_ALGO_AUTO = 0, FP_ALGO_DIRECT = 1, FP_ALGO_WINOGRAD = 2 };
enum { FP_ISA_SCALAR = 0, FP_ISA_AVX2 = 1, FP_ISA_AVX512 = 2 };

/* CPU and run-time dispatch */
int fp_isa(void);                          /* ISA in use (detected once, FASTPOINT_ISA may lower it) */
int fp_isa_supported(void);                /* best ISA this CPU and OS support */
int fp_set_isa(int isa);                   /* for tests: force an ISA <= supported; returns it */
const char *fp_isa_name(int isa);
int64_t fp_cache_size(int level);          /* data cache bytes of L1, L2, L3 as detected */
int fp_max_threads(void);

/* Kernel name chosen for a problem (for logs, `fastpoint info`, and tests). */
const char *fp_kernel_name(const fp_conv_problem *p, int f64);

/* The kernel tables (csrc/kernel_table.c, docs/conventions.md): one row per micro-kernel compiled
 * into this build, every family's rows in one numbering. */
typedef struct fp_kernel {
    const char *name;              /* <dtype>_<family>_<tile>__<isa>, e.g. f32_gemm_8x48__avx512 */
    const char *family;            /* gemm, conv, generic, dwconv */
    int32_t f64;                   /* dtype: 0 float32, 1 float64 */
    int32_t isa;                   /* FP_ISA_* it needs */
    int32_t tile_m, tile_n;        /* register tile (0 x 0: none) */
} fp_kernel;
int fp_kernel_count(void);
const fp_kernel *fp_kernel_at(int i);      /* row i, NULL past the end */
int fp_kernel_available(int i);            /* compiled in, and this CPU and OS run its ISA */
/* Testing override: run the named kernels (comma-separated, at most one per family and dtype)
 * wherever their algorithm applies, whatever the ISA choice; NULL or "" clears.  FASTPOINT_KERNEL
 * sets it at start-up.  Returns 0, or FP_ERR_ARGS (nothing changed) for a name that is unknown,
 * unavailable on this CPU, or a second one of a family. */
int fp_force_kernels(const char *names);
int fp_kernel_env_status(void);            /* what applying FASTPOINT_KERNEL returned (0 when unset) */
void fp_set_max_threads(int n);            /* testing: pretend the machine has n processors (0: detect) */

/* Weight packing: bytes needed, then pack.  Only the weight-related fields of p are read. */
int64_t fp_packed_bytes(const fp_conv_problem *p, int f64);
int fp_pack_f32(const fp_conv_problem *p, const float *w, void *packed);
int fp_pack_f64(const fp_conv_problem *p, const double *w, void *packed);

/* Convolution: y = act(conv(x, w) + bias); bias may be NULL. */
int fp_conv_f32(const fp_conv_problem *p, const float *x, const void *packed, const float *bias, float *y);
int fp_conv_f64(const fp_conv_problem *p, const double *x, const void *packed, const double *bias, double *y);

/* One-shot convolution (csrc/oneshot.c): w is the caller's (Cout, Cin/groups, KH, KW) weight, packed into
 * this thread's scratch (kept across calls) and used once.  Returns 0, a negative FP_ERR_* code, or, when
 * check_finite is set, 1 after computing y if some weight is NaN or Inf. */
int fp_conv_once_f32(const fp_conv_problem *p, const float *x, const float *w, const float *bias, float *y,
                     int check_finite);
int fp_conv_once_f64(const fp_conv_problem *p, const double *x, const double *w, const double *bias, double *y,
                     int check_finite);

/* Lowered GEMMs (csrc/lowered/): conv1d in NCL with groups 1 (problem with h = oh = kh = 1), and the
 * transposed convolution with kernel == stride, no padding (problem: h, w the input, oh = h*kh, ow = w*kw).
 * Weights: conv1d (Cout, Cin, K) as given; transposed W' (Cout*KH*KW, Cin), rows (co, ky, kx) for NCHW,
 * (ky, kx, co) for NHWC, with one bias value per row. */
int64_t fp_conv1d_gemm_packed_bytes(const fp_conv_problem *p);
int fp_conv1d_gemm_pack(const fp_conv_problem *p, const float *w, void *packed);
int fp_conv1d_gemm_f32(const fp_conv_problem *p, const float *x, const void *packed, const float *bias, float *y);
/* One-shot conv1d GEMM: w the caller's (Cout, Cin, K), packed into this thread's scratch. */
int fp_conv1d_gemm_once_f32(const fp_conv_problem *p, const float *x, const float *w, const float *bias, float *y);
int64_t fp_deconv_gemm_packed_bytes(const fp_conv_problem *p);
int fp_deconv_gemm_pack(const fp_conv_problem *p, const float *w, void *packed);
int fp_deconv_gemm_f32(const fp_conv_problem *p, const float *x, const void *packed, const float *bias, float *y);
/* The general transposed convolution, groups 1 (deconv_scatter.c): problem h, w the input, oh, ow the
 * output, stride, pad_top/pad_left the padding, dilation; weights packed by fp_deconv_gemm_pack with
 * layout 0 (rows (co, ky, kx) whatever the data layout); bias one value per output channel. */
int fp_deconv_scatter_f32(const fp_conv_problem *p, const float *x, const void *packed, const float *bias, float *y);
/* ... and its one-shot form: w the caller's (Cin, Cout, KH, KW) weight, packed into this thread's scratch. */
int fp_deconv_scatter_once_f32(const fp_conv_problem *p, const float *x, const float *w, const float *bias, float *y);
/* One-shot K == stride GEMM: w the caller's (Cin, Cout, KH, KW), bias per output channel (or NULL); packs into
 * this thread's scratch on the pool and runs fp_deconv_gemm_f32. */
int fp_deconv_gemm_once_f32(const fp_conv_problem *p, const float *x, const float *w, const float *bias, float *y);
/* The transposed convolution with K >= stride per axis (dilation 1, groups 1, NCHW; any padding and output_padding)
 * as the sub-pixel GEMM (deconv_shuffle.c): problem as the scatter-add's; its own packing of the (Cin, Cout, KH, KW)
 * weight; bias one value per output channel (or NULL); the one-shot form takes the caller's weight. */
int64_t fp_deconv_shuffle_packed_bytes(const fp_conv_problem *p);
int fp_deconv_shuffle_pack(const fp_conv_problem *p, const float *w, void *packed);
int fp_deconv_shuffle_f32(const fp_conv_problem *p, const float *x, const void *packed, const float *bias, float *y);
int fp_deconv_shuffle_once_f32(const fp_conv_problem *p, const float *x, const float *w, const float *bias,
                               float *y);

/* Direct conv1d blocked for one long row (csrc/conv1d/): NCL, groups 1, any K, stride, dilation, (left, right)
 * padding (problem with h = oh = kh = 1, pad_left the left padding, ow the output length); weights (Cout, Cin, K)
 * as given.  The one-shot form packs w into this thread's scratch (as fp_conv_once_f32, same return values). */
int64_t fp_conv1d_direct_packed_bytes(const fp_conv_problem *p);
int fp_conv1d_direct_pack(const fp_conv_problem *p, const float *w, void *packed);
int fp_conv1d_direct_f32(const fp_conv_problem *p, const float *x, const void *packed, const float *bias, float *y);
int fp_conv1d_direct_once_f32(const fp_conv_problem *p, const float *x, const float *w, const float *bias, float *y,
                              int check_finite);
int fp_conv1d_direct_choice(void);          /* 2: a conv1d row forced, 0: other rows forced, else 1 */
const char *fp_conv1d_direct_kernel_name(void);

/* Fused epilogues (csrc/epilogue/, docs/epilogues.md): y = act(conv(x, w) + bias + residual), applied
 * where each algorithm stores a tile.  Per call, beside x and y (a problem is shared by the concurrent
 * calls of a layer).  kind FP_ACT_NONE with the problem's relu flag set means ReLU. */
enum {
    FP_ACT_NONE = 0,
    FP_ACT_RELU = 1,        /* max(0, v) */
    FP_ACT_CLIP = 2,        /* min(max(v, alpha), beta) (relu6: 0, 6) */
    FP_ACT_LEAKY = 3,       /* v < 0 ? alpha v : v */
    FP_ACT_HARDSWISH = 4,   /* v <= -3 ? 0 : v >= 3 ? v : v (v + 3) / 6 */
    FP_ACT_HARDSIGMOID = 5, /* min(max(alpha v + beta, 0), 1) */
    FP_ACT_SIGMOID = 6,     /* 1 / (1 + exp(-v)) */
    FP_ACT_TANH = 7,
    FP_ACT_PRELU = 8        /* v < 0 ? slope[channel] v : v */
};
typedef struct fp_epilogue {
    int32_t kind;            /* FP_ACT_* */
    int32_t reserved;
    double alpha, beta;      /* the activation's parameters (see FP_ACT_*) */
    const void *slope;       /* FP_ACT_PRELU: Cout slopes, the output's dtype */
    const void *residual;    /* NULL, or added before the activation: the output's shape and dtype,
                                C-contiguous in the problem's layout, not overlapping y */
} fp_epilogue;
/* fp_conv_f32 / f64 with an epilogue (NULL: none). */
int fp_conv_ep_f32(const fp_conv_problem *p, const float *x, const void *packed, const float *bias, float *y,
                   const fp_epilogue *ep);
int fp_conv_ep_f64(const fp_conv_problem *p, const double *x, const void *packed, const double *bias, double *y,
                   const fp_epilogue *ep);

/* Machine measurements (csrc/measure.c): float32 FMA peak in GFLOP/s over about `seconds`, and
 * STREAM-triad bandwidth in GB/s over three arrays of `bytes` in all (-1 when out of memory). */
double fp_measure_fma_peak(int threads, double seconds);
double fp_measure_triad(int threads, int64_t bytes);
/* Network ops outside convolutions (csrc/ops/, docs/ops.md), float32, threaded on the pool.  dims: n, c,
 * h, w, out_h, out_w; xs/ys: element strides of n, c, h, w of x and y.  pool2d: geom kh, kw, sh, sw, dh, dw,
 * pad_top, pad_left; kind 0 max, 1 average (sum / divisors[oy * out_w + ox]).  resize2d: iy/ix two source
 * indices per output row/column, ly/lx the second one's weight (both NULL: nearest, first index only).
 * gap: mean over h*w of contiguous NCHW (nhwc 0) or NHWC (1).  eltwise: y = act(a op b), a and y
 * contiguous (outer, mid, inner), b per bmode (0 none, 1 same shape, 2 per mid, 3 per inner, 4 scalar),
 * op 0 none, 1 add, 2 sub, 3 mul, 4 div; act 0 none, 1 relu, 2 sigmoid, 3 hardsigmoid(alpha, beta),
 * 4 hardswish, 5 clip(alpha, beta).  fp_op_isa_name: the ISA whose loops run. */
int fp_op_pool2d_f32(const float *x, const int64_t *xs, float *y, const int64_t *ys, const int64_t *dims,
                     const int64_t *geom, int kind, const float *divisors, int threads);
int fp_op_resize2d_f32(const float *x, const int64_t *xs, float *y, const int64_t *ys, const int64_t *dims,
                       const int64_t *iy, const float *ly, const int64_t *ix, const float *lx, int threads);
int fp_op_gap_f32(const float *x, float *y, int64_t n, int64_t c, int64_t hw, int nhwc, int threads);
int fp_op_eltwise_f32(const float *a, const float *b, float *y, int64_t outer, int64_t mid, int64_t inner,
                      int bmode, int op, int act, float alpha, float beta, int threads);
const char *fp_op_isa_name(void);
/* y[n, j, i] = x[n, i, j] for contiguous x of shape (n, a, b): an image's layout conversion (NCHW -> NHWC
 * with a = C, b = H * W; NHWC -> NCHW with a = H * W, b = C), threaded in blocks of columns. */
int fp_op_transpose_f32(const float *x, float *y, int64_t n, int64_t a, int64_t b, int threads);
/* A network's stem convolution (csrc/ops/stem__avx512.c): contiguous NCHW x of few channels into contiguous
 * NHWC y, oc <= 32 output channels, dims n, c, h, w, out_h, out_w, geom kh, kw, sh, sw, dh, dw, pad_top,
 * pad_left (symmetric pads), wp the taps (c, ky, kx) in order, each 16 * ceil(oc / 16) floats (zero past
 * oc), bias as many; y = act(conv + bias) (e: the activation, no residual; relu: the kernels' ReLU flag).
 * AVX-512 only: FP_ERR_ARGS, nothing written, on other ISAs. */
int fp_op_conv_stem_f32(const float *x, const int64_t *dims, const int64_t *geom, const float *wp, const float *bias,
                        int64_t oc, float *y, const fp_epilogue *e, int relu, int threads);
/* The one-shot call's C entry (csrc/call_entry.c, fastpoint/backends/c.py bind_call): fp_conv_once_f32
 * (f64 = 0) or _f64 (1) after the per-call checks a cached parse cannot answer.  Returns FP_CALL_EXACT,
 * having read and written nothing, when a pointer is not aligned to the element size or y's bytes meet
 * those of x, w or bias (the caller then takes its exact path); batch 0 returns 0; else what
 * fp_conv_once_* returns. */
enum { FP_CALL_EXACT = 2 };
int fp_call_once(const fp_conv_problem *p, int f64, const void *x, const void *w, const void *bias, void *y,
                 int check_finite);
/* The best of `reps` wall times, in ns, of one pool job of `threads` empty chunks: waking the helpers and
 * joining them (the plan's thread rule, backends/c.py). */
double fp_measure_pool_wake_ns(int threads, int reps);
/* The BatchNormalization fold of a network's weights (csrc/network/fold.c, fastpoint/network/graph.py
 * fold_weight): out[co * per + i] = w[co * per + i] * k[co], the product in double rounded once (out may be
 * w).  Returns 0, or FP_ERR_ARGS for a negative size. */
int fp_fold_scale_f32(const float *w, const double *k, float *out, int64_t cout, int64_t per);
int fp_fold_scale_f64(const double *w, const double *k, double *out, int64_t cout, int64_t per);
/* cdef-end */

#endif
