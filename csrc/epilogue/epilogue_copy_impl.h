/* The float32 tile copy of fp_ep_tile_out for one x86 ISA.  Streamed, a row's first floats up to an
 * EP_VBYTES boundary and its tail store normally and the vectors between stream (non-temporal), so a
 * misaligned output (NumPy aligns arrays to 16 bytes) streams too, but for the one cache line each row
 * shares with its neighbour.  Included by epilogue__<isa>.c (after its target pragma) with EP_ISA, EP_V (the
 * vector type), EP_W (floats a vector), EP_VBYTES, EP_LOAD, EP_STREAM and EP_STORE defined. */
#define EP_COPY_(isa) fp_ep_copy_##isa
#define EP_COPY(isa) EP_COPY_(isa)

void EP_COPY(EP_ISA)(const float *src, int64_t lds, float *dst, int64_t ld, int64_t rows, int64_t cols, int stream) {
    for (int64_t i = 0; i < rows; i++) {
        const float *s = src + i * lds;
        float *d = dst + i * ld;
        int64_t j = 0;
        if (stream) {
            const int64_t head = (int64_t)((EP_VBYTES - ((uintptr_t)d & (EP_VBYTES - 1))) & (EP_VBYTES - 1)) / 4;
            for (; j < head && j < cols; j++) d[j] = s[j];
            for (; j + EP_W <= cols; j += EP_W) EP_STREAM(d + j, EP_LOAD(s + j));
        } else {
            for (; j + EP_W <= cols; j += EP_W) EP_STORE(d + j, EP_LOAD(s + j));
        }
        for (; j < cols; j++) d[j] = s[j];
    }
}
