/* The epilogue tile kernels in portable C (the plain loops of epilogue_impl.h, vectorized as far as the
 * baseline ISA allows). */
#define EP_ISA scalar
#include "epilogue_types.h"
