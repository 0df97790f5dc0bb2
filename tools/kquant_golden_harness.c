// Quantizes rows with llama.cpp's own ggml_quantize_chunk (the code llama-quantize runs), for
// tools/make_kquant_goldens.py. Linked against the pinned build's libggml-base.a.
//
// usage: kquant_golden_harness TYPE_ID ROWS N_PER_ROW input.f32 (imatrix.f32 | -) output.bin
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t ggml_quantize_chunk(int type, const float *src, void *dst, int64_t start, int64_t nrows, int64_t n_per_row,
                           const float *imatrix);
size_t ggml_row_size(int type, int64_t ne);
void ggml_quantize_init(int type);

static void *slurp(const char *path, size_t expected) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(1); }
    void *data = malloc(expected);
    if (fread(data, 1, expected, f) != expected) { fprintf(stderr, "%s: short read\n", path); exit(1); }
    fclose(f);
    return data;
}

int main(int argc, char **argv) {
    if (argc != 7) { fprintf(stderr, "usage: %s TYPE ROWS N_PER_ROW input.f32 imatrix.f32|- out.bin\n", argv[0]); return 2; }
    int type = atoi(argv[1]);
    int64_t rows = atoll(argv[2]), n = atoll(argv[3]);
    float *x = slurp(argv[4], (size_t)(rows * n) * sizeof(float));
    float *imatrix = strcmp(argv[5], "-") == 0 ? NULL : slurp(argv[5], (size_t)n * sizeof(float));
    size_t bytes = ggml_row_size(type, n) * (size_t)rows;
    void *out = calloc(1, bytes);
    ggml_quantize_init(type);
    size_t written = ggml_quantize_chunk(type, x, out, 0, rows, n, imatrix);
    if (written != bytes) { fprintf(stderr, "wrote %zu, expected %zu\n", written, bytes); return 1; }
    FILE *f = fopen(argv[6], "wb");
    fwrite(out, 1, bytes, f);
    fclose(f);
    return 0;
}
