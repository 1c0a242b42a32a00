/* The float32 and float64 instances of epilogue_impl.h for one ISA: included by epilogue__<isa>.c with
 * EP_ISA (the name suffix) defined; defines fp_ep_tiles_<isa>[2]. */
#include <string.h>

#include "epilogue.h"

#define EP_GLUE_(a, b, c) a##_##b##_##c
#define EP_GLUE(a, b, c) EP_GLUE_(a, b, c)

/* float32: Taylor to r^7 (r^8 / 8! < 2^-24 on |r| <= ln2 / 2); exp(-87) is still a normal float */
#define T float
#define U uint32_t
#define EP_FN(name) EP_GLUE(ep32, EP_ISA, name)
#define EP_A a32
#define EP_B b32
#define EP_SHIFT 12582912.0f /* 1.5 * 2^23 */
#define EP_SHIFT_BITS 0x4B400000u
#define EP_MANT 23
#define EP_BIAS 127
#define EP_TERMS 7
#define EP_TMIN -87.0f
#define EP_LN2_HI 0.693145751953125f
#define EP_LN2_LO 1.42860682030941723212e-6f
static const float EP_FN(invfact)[8] = {1.0f, 1.0f, 1.0f / 2, 1.0f / 6, 1.0f / 24, 1.0f / 120, 1.0f / 720, 1.0f / 5040};
#include "epilogue_impl.h"
#include "epilogue_type_end.h"

/* float64: Taylor to r^13 (r^14 / 14! < 2^-53 on |r| <= ln2 / 2); exp(-708) is still normal */
#define T double
#define U uint64_t
#define EP_FN(name) EP_GLUE(ep64, EP_ISA, name)
#define EP_A a64
#define EP_B b64
#define EP_SHIFT 6755399441055744.0 /* 1.5 * 2^52 */
#define EP_SHIFT_BITS 0x4338000000000000ull
#define EP_MANT 52
#define EP_BIAS 1023
#define EP_TERMS 13
#define EP_TMIN -708.0
#define EP_LN2_HI 6.93147180369123816490e-01
#define EP_LN2_LO 1.90821492927058770002e-10
static const double EP_FN(invfact)[14] = {1.0,
                                          1.0,
                                          1.0 / 2,
                                          1.0 / 6,
                                          1.0 / 24,
                                          1.0 / 120,
                                          1.0 / 720,
                                          1.0 / 5040,
                                          1.0 / 40320,
                                          1.0 / 362880,
                                          1.0 / 3628800,
                                          1.0 / 39916800,
                                          1.0 / 479001600,
                                          1.0 / 6227020800.0};
#include "epilogue_impl.h"
#include "epilogue_type_end.h"

#define EP_TILES_(isa) fp_ep_tiles_##isa
#define EP_TILES(isa) EP_TILES_(isa)
const fp_ep_tile_fn EP_TILES(EP_ISA)[2] = {EP_GLUE(ep32, EP_ISA, tile), EP_GLUE(ep64, EP_ISA, tile)};
