/* The op loops (ops_impl.h) for any CPU: the compiler's baseline vectors (SSE2 on x86-64). */
#include "ops_impl.h"

FP_OPS_TABLE(fp_ops_scalar, "scalar")
