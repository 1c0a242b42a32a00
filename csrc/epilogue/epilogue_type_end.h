/* Ends one type's instance of epilogue_impl.h in epilogue_types.h: the type's macros undefined. */
#undef T
#undef U
#undef EP_FN
#undef EP_A
#undef EP_B
#undef EP_SHIFT
#undef EP_SHIFT_BITS
#undef EP_MANT
#undef EP_BIAS
#undef EP_TERMS
#undef EP_TMIN
#undef EP_LN2_HI
#undef EP_LN2_LO
