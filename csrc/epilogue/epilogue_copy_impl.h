/* The float32 tile copy of fp_ep_tile_out for one x86 ISA: full vectors stream (non-temporal) where they
 * are aligned to EP_VBYTES, the others and a row's tail store normally.  Included by epilogue__<isa>.c
 * (after its target pragma) with EP_ISA, EP_V (the vector type), EP_W (floats a vector), EP_VBYTES,
 * EP_LOAD, EP_STREAM and EP_STORE defined. */
#define EP_COPY_(isa) fp_ep_copy_##isa
#define EP_COPY(isa) EP_COPY_(isa)

void EP_COPY(EP_ISA)(const float *src, int64_t lds, float *dst, int64_t ld, int64_t rows, int64_t cols, int stream) {
    for (int64_t i = 0; i < rows; i++) {
        const float *s = src + i * lds;
        float *d = dst + i * ld;
        int64_t j = 0;
        for (; j + EP_W <= cols; j += EP_W) {
            const EP_V v = EP_LOAD(s + j);
            if (stream && ((uintptr_t)(d + j) & (EP_VBYTES - 1)) == 0) EP_STREAM(d + j, v);
            else EP_STORE(d + j, v);
        }
        for (; j < cols; j++) d[j] = s[j];
    }
}
