#ifndef CKPT_CKERNELS_H
#define CKPT_CKERNELS_H

/// Whether this CPU runs the AVX-512 kernels below (checked once, at run time).
int ckpt_has_avx512(void);

/// Softmax of row[0..<n] in place, as TransformerKernels.softmaxRow computes it, 16 lanes at a time (AVX-512 only).
void ckpt_softmax_row_avx512(float *row, long n);

/// gate[i] ← gate[i] / (1 + e^(−gate[i])) · up[i], as TransformerKernels.siluMultiply computes it, for the
/// whole runs of 16 in n; returns how many it did (the caller finishes the tail). AVX-512 only.
long ckpt_silu_multiply_avx512(float *gate, const float *up, long n);

/// The largest of row[0..<n] (−∞ when empty). AVX-512 only.
float ckpt_row_max_avx512(const float *row, long n);

/// Σ e^(row[j] − shift) over the whole runs of 16 in n, as logSoftmaxNormalizer sums them (f32 within runs of 256,
/// f64 across), into *sum; returns how many values it took (the caller adds the tail). AVX-512 only.
long ckpt_exp_sum_avx512(const float *row, long n, float shift, double *sum);

/// ErrorMetrics' eight-lane sums over the whole runs of 8 in n, element i in lane i mod 8, each in f64 with no fused
/// multiply-add: lanes[0..<8] Σ e², [8..<16] Σ a², [16..<24] Σ b², [24..<32] Σ a·b, [32..<40] max |e| (NaN skipped),
/// e = a − b, a = reference, b = candidate. AVX-512 only.
void ckpt_error_lanes_avx512(const float *reference, const float *candidate, long n, double *lanes);

/// BlockInt8Quantizer.encodeGroup for the whole runs of 16 in n: q = round-half-away(x / scale) clamped to
/// [-127, 127], NaN → -127; returns how many it did (the caller finishes the tail). AVX-512 only.
long ckpt_int8_encode_avx512(const float *x, long n, float scale, signed char *q);

/// FourBitQuantizer.encodeBlock for the whole runs of 16 in n: each value scaled (x / scale when divide, else
/// x · reciprocal), its nibble lowest + Σ steps[k] over the 15 midpoints strictly below it, two nibbles a byte
/// (the even value high); returns how many values it did. AVX-512 only.
long ckpt_fourbit_encode_avx512(const float *x, long n, float scale, float reciprocal, int divide, const float *midpoints,
                                unsigned lowest, const unsigned *steps, unsigned char *out);

/// Q4_0Codec.quantizeBlocks' fast path for one block of 32: when its values are finite, one sign holds its
/// largest magnitude and 1/d is finite, writes the 16 code bytes to codes and d to *scale and returns 1; else
/// returns 0 and writes nothing (the caller runs the reference). AVX-512 only.
int ckpt_q4_0_block_avx512(const float *x, unsigned char *codes, float *scale);

/// Q8_0Codec.quantize for one block of 32 finite values: d = absmax / 127, the 32 codes
/// round-half-away(x · (1/d)) to codes, d to *scale, and 1; 0 (nothing written) when a value is NaN or
/// infinite, for the Swift kernel. AVX-512 only.
int ckpt_q8_0_block_avx512(const float *x, signed char *codes, float *scale);

/// KQuantSearch.affine (make_qkx2/3_quants) for 1…16 groups of n ≤ 32 values, a group per lane, the same f32
/// operations in the same order: the same codes, scales and −minimums to the bit. AVX-512 only.
void ckpt_kquant_affine_avx512(int groups, int n, int nmax, const float *x, const float *weights, unsigned char *L,
                               float *scales, float *minimums, float rmin, float rdelta, int steps, int absolute_error);

/// KQuantSearch.symmetric (make_qx_quants) for 1…16 groups of n ≤ 32 values, a group per lane; weights NULL for
/// x², epsilon the group threshold: the same codes and scales to the bit. AVX-512 only.
void ckpt_kquant_symmetric_avx512(int groups, int n, int nmax, const float *x, const float *weights, signed char *L,
                                  float *scales, float epsilon);

/// FourBitQuantizer.quantize for `blocks` full blocks of block_size (a multiple of 16) values and no fixed scales:
/// each block's absmax to absmax[b], its codes as ckpt_fourbit_encode_avx512 makes them against
/// max(absmax, smallest); stops before a block with a NaN or an infinity and returns how many it did. AVX-512 only.
long ckpt_fourbit_blocks_avx512(const float *x, long blocks, long block_size, float smallest, const float *midpoints,
                                unsigned lowest, const unsigned *steps, unsigned char *packed, float *absmax);

/// FourBitQuantizer.dequantizeRange for one block's bytes: the whole runs of 8 bytes of `count`, each byte's high
/// then low nibble as code[nibble] · scale into out (16 values a run); returns how many bytes it took. AVX-512 only.
long ckpt_fourbit_decode_avx512(const unsigned char *bytes, long count, const float *code, float scale, float *out);

/// The largest sign-cleared bit pattern of x[0..<n] (0 when n is 0): FourBitQuantizer.absoluteMaximum's bits for
/// finite values; ≥ 0x7F800000 when an infinity or NaN was seen (the caller then scans in Swift). AVX-512 only.
int ckpt_absmax_bits_avx512(const float *x, long n);

/// BlockInt8Quantizer.dequantize for one run of n codes: Float(q) · scale for the whole runs of 16; returns how
/// many it did. AVX-512 only.
long ckpt_int8_decode_avx512(const signed char *q, long n, float scale, float *out);

#endif
