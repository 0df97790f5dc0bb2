// AVX-512 twins of ckpt's Swift SIMD16 kernels (TransformerKernels, ErrorMetrics, the int8 and 4-bit
// encoders). Swift builds for baseline x86-64, where a SIMD16<Float> is four SSE registers; these
// functions are compiled for AVX-512 alone (target attribute, chosen at run time) and perform the same
// operations in the same order, with no fused multiply-add, so each value equals the Swift kernel's
// (a sum over a row may differ in its last bit where its lanes are added in another order; each
// function's comment says whether).
#include "ckernels.h"
#include <immintrin.h>

#pragma STDC FP_CONTRACT OFF

int ckpt_has_avx512(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") ? 1 : 0;
}

#define AVX512 __attribute__((target("avx512f")))

// TransformerKernels.exp (Sources/CheckpointKit/Model/TransformerKernels.swift) in AVX-512: Cody-Waite reduction by
// ln 2, degree-6 polynomial, 2^n through the exponent bits. The constants and the order of operations are that
// function's, so both give the same bits; change one, change the other (TransformerKernelTests holds them together).
AVX512 static inline __m512 exp16(__m512 x) {
    const __m512 magic = _mm512_set1_ps(12582912.0f);
    __m512 clamped = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.3f)), _mm512_set1_ps(88.7f));
    __m512 shifted = _mm512_add_ps(_mm512_mul_ps(clamped, _mm512_set1_ps(1.44269504f)), magic);
    __m512 n = _mm512_sub_ps(shifted, magic);
    __m512 r = _mm512_sub_ps(clamped, _mm512_mul_ps(n, _mm512_set1_ps(0.693359375f)));
    r = _mm512_sub_ps(r, _mm512_mul_ps(n, _mm512_set1_ps(-2.1219444e-4f)));
    __m512 p = _mm512_set1_ps(1.9875691e-4f);
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.3981999e-3f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(8.333452e-3f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(4.1665796e-2f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.6666665e-1f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(5e-1f));
    p = _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(p, _mm512_mul_ps(r, r)), r), _mm512_set1_ps(1.0f));
    __m512i integer = _mm512_sub_epi32(_mm512_castps_si512(shifted), _mm512_castps_si512(magic));
    __m512i exponent = _mm512_slli_epi32(_mm512_add_epi32(integer, _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(p, _mm512_castsi512_ps(exponent));
}

AVX512 void ckpt_softmax_row_avx512(float *row, long n) {
    __m512 best = _mm512_set1_ps(-__builtin_inff());
    long j = 0;
    for (; j + 16 <= n; j += 16) best = _mm512_max_ps(best, _mm512_loadu_ps(row + j));
    float m = _mm512_reduce_max_ps(best);
    for (; j < n; j++) m = row[j] > m ? row[j] : m;
    const __m512 shift = _mm512_set1_ps(m);
    __m512 total = _mm512_setzero_ps();
    for (j = 0; j + 16 <= n; j += 16) {
        __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(row + j), shift));
        _mm512_storeu_ps(row + j, e);
        total = _mm512_add_ps(total, e);
    }
    if (j < n) {
        __mmask16 mask = (__mmask16)((1u << (n - j)) - 1);
        __m512 v = _mm512_mask_loadu_ps(_mm512_set1_ps(-__builtin_inff()), mask, row + j);
        __m512 e = exp16(_mm512_sub_ps(v, shift));
        _mm512_mask_storeu_ps(row + j, mask, e);
        total = _mm512_mask_add_ps(total, mask, total, e);
    }
    const float inverse = 1.0f / _mm512_reduce_add_ps(total);
    const __m512 scale = _mm512_set1_ps(inverse);
    for (j = 0; j + 16 <= n; j += 16) _mm512_storeu_ps(row + j, _mm512_mul_ps(_mm512_loadu_ps(row + j), scale));
    for (; j < n; j++) row[j] *= inverse;
}

AVX512 long ckpt_silu_multiply_avx512(float *gate, const float *up, long n) {
    const __m512 one = _mm512_set1_ps(1.0f);
    long i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 g = _mm512_loadu_ps(gate + i);
        // −g by its sign bit, as Swift's prefix minus (0 − g would turn −0 into +0).
        __m512 negated = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(g), _mm512_set1_epi32((int)0x80000000u)));
        __m512 s = _mm512_div_ps(g, _mm512_add_ps(one, exp16(negated)));
        _mm512_storeu_ps(gate + i, _mm512_mul_ps(s, _mm512_loadu_ps(up + i)));
    }
    // The Swift kernel's scalar tail (libm's exp in f64) is left to the caller.
    return i;
}

AVX512 float ckpt_row_max_avx512(const float *row, long n) {
    __m512 best0 = _mm512_set1_ps(-__builtin_inff()), best1 = best0;
    long j = 0;
    for (; j + 32 <= n; j += 32) {
        best0 = _mm512_max_ps(best0, _mm512_loadu_ps(row + j));
        best1 = _mm512_max_ps(best1, _mm512_loadu_ps(row + j + 16));
    }
    float m = _mm512_reduce_max_ps(_mm512_max_ps(best0, best1));
    for (; j < n; j++) m = row[j] > m ? row[j] : m;
    return m;
}

AVX512 long ckpt_exp_sum_avx512(const float *row, long n, float shift, double *sum) {
    const __m512 s = _mm512_set1_ps(shift);
    double total = 0;
    long j = 0;
    for (; j + 256 <= n; j += 256) {
        __m512 a = _mm512_setzero_ps(), b = _mm512_setzero_ps();
        for (long k = j; k < j + 256; k += 32) {
            a = _mm512_add_ps(a, exp16(_mm512_sub_ps(_mm512_loadu_ps(row + k), s)));
            b = _mm512_add_ps(b, exp16(_mm512_sub_ps(_mm512_loadu_ps(row + k + 16), s)));
        }
        total += (double)_mm512_reduce_add_ps(_mm512_add_ps(a, b));
    }
    for (; j + 16 <= n; j += 16) total += (double)_mm512_reduce_add_ps(exp16(_mm512_sub_ps(_mm512_loadu_ps(row + j), s)));
    *sum = total;
    return j;
}

// ErrorMetrics.halfLanes (Sources/CheckpointKit/Tensors/ErrorMetrics.swift) for all eight lanes at once: the same
// products and sums per lane, so the same bits. vmaxpd(magnitude, worst) keeps worst when magnitude is NaN or not
// larger, as the Swift kernel's replacing(where: magnitude > worst) does.
AVX512 void ckpt_error_lanes_avx512(const float *reference, const float *candidate, long n, double *lanes) {
    __m512d sse = _mm512_setzero_pd(), sr = _mm512_setzero_pd(), sc = _mm512_setzero_pd(), dot = _mm512_setzero_pd();
    __m512d worst = _mm512_setzero_pd();
    for (long i = 0; i + 8 <= n; i += 8) {
        __m512d a = _mm512_cvtps_pd(_mm256_loadu_ps(reference + i));
        __m512d b = _mm512_cvtps_pd(_mm256_loadu_ps(candidate + i));
        __m512d e = _mm512_sub_pd(a, b);
        sse = _mm512_add_pd(sse, _mm512_mul_pd(e, e));
        sr = _mm512_add_pd(sr, _mm512_mul_pd(a, a));
        sc = _mm512_add_pd(sc, _mm512_mul_pd(b, b));
        dot = _mm512_add_pd(dot, _mm512_mul_pd(a, b));
        worst = _mm512_max_pd(_mm512_abs_pd(e), worst);
    }
    _mm512_storeu_pd(lanes, sse);
    _mm512_storeu_pd(lanes + 8, sr);
    _mm512_storeu_pd(lanes + 16, sc);
    _mm512_storeu_pd(lanes + 24, dot);
    _mm512_storeu_pd(lanes + 32, worst);
}

// SIMD16.roundedHalfAwayToInt32 (Sources/CheckpointKit/Support/SIMDHelpers.swift) in AVX-512: nearest-even by
// the magic number 1.5 · 2^23, then a tie that went towards zero moved one further away. |v| < 2^22.
AVX512 static inline __m512i round_half_away16(__m512 v) {
    const __m512 magic = _mm512_set1_ps(12582912.0f), zero = _mm512_setzero_ps();
    const __m512i one = _mm512_set1_epi32(1);
    __m512 biased = _mm512_add_ps(v, magic);
    __m512 remainder = _mm512_sub_ps(v, _mm512_sub_ps(biased, magic));
    __m512i r = _mm512_sub_epi32(_mm512_castps_si512(biased), _mm512_castps_si512(magic));
    __mmask16 upTie = _mm512_cmp_ps_mask(remainder, _mm512_set1_ps(0.5f), _CMP_EQ_OQ) & _mm512_cmp_ps_mask(v, zero, _CMP_GT_OQ);
    __mmask16 downTie = _mm512_cmp_ps_mask(remainder, _mm512_set1_ps(-0.5f), _CMP_EQ_OQ) & _mm512_cmp_ps_mask(v, zero, _CMP_LT_OQ);
    r = _mm512_mask_add_epi32(r, upTie, r, one);
    return _mm512_mask_sub_epi32(r, downTie, r, one);
}

// BlockInt8Quantizer.encodeGroup: the same division, clamp and rounding, so the same codes.
AVX512 long ckpt_int8_encode_avx512(const float *x, long n, float scale, signed char *q) {
    const __m512 divisor = _mm512_set1_ps(scale), upper = _mm512_set1_ps(127.0f), lower = _mm512_set1_ps(-127.0f);
    long i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 scaled = _mm512_div_ps(_mm512_loadu_ps(x + i), divisor);
        // Lanes not >= -127 (NaN among them) become -127, then the top is clamped.
        __m512 v = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(scaled, lower, _CMP_GE_OQ), lower, scaled);
        v = _mm512_min_ps(v, upper);
        _mm_storeu_si128((__m128i *)(q + i), _mm512_cvtepi32_epi8(round_half_away16(v)));
    }
    return i;
}

// FourBitQuantizer.BucketTables in lanes: the 15 midpoints and each one's nibble step, splatted once.
AVX512 static inline void fourbit_tables(const float *midpoints, const unsigned *steps, __m512 *mid, __m512i *step) {
    for (int k = 0; k < 15; k++) {
        mid[k] = _mm512_set1_ps(midpoints[k]);
        step[k] = _mm512_set1_epi32((int)steps[k]);
    }
}

// 16 scaled values to their nibbles (lowest + the steps of the midpoints strictly below each), two a byte, the
// even value high: 8 bytes to out.
AVX512 static inline void fourbit_pack16(__m512 scaled, const __m512 *mid, const __m512i *step, __m512i low, unsigned char *out) {
    const __m512i nibbleMask = _mm512_set1_epi64(0xF);
    __m512i nibble = low;
    for (int k = 0; k < 15; k++) {
        nibble = _mm512_mask_add_epi32(nibble, _mm512_cmp_ps_mask(mid[k], scaled, _CMP_LT_OQ), nibble, step[k]);
    }
    // Each 64-bit lane holds an (even, odd) pair: the byte is even << 4 | odd.
    __m512i pairs = _mm512_or_si512(_mm512_slli_epi64(_mm512_and_si512(nibble, nibbleMask), 4),
                                    _mm512_and_si512(_mm512_srli_epi64(nibble, 32), nibbleMask));
    _mm_storel_epi64((__m128i *)out, _mm512_cvtepi64_epi8(pairs));
}

// FourBitQuantizer.encodeBlock and BucketTables.nibbles (Sources/CheckpointKit/Quantization/FourBitQuantizer.swift):
// the same scaling and the same count of midpoints strictly below each value (a NaN is below none).
AVX512 long ckpt_fourbit_encode_avx512(const float *x, long n, float scale, float reciprocal, int divide, const float *midpoints,
                                       unsigned lowest, const unsigned *steps, unsigned char *out) {
    __m512 mid[15];
    __m512i step[15];
    fourbit_tables(midpoints, steps, mid, step);
    const __m512 factor = _mm512_set1_ps(divide ? scale : reciprocal);
    const __m512i low = _mm512_set1_epi32((int)lowest);
    long i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        fourbit_pack16(divide ? _mm512_div_ps(v, factor) : _mm512_mul_ps(v, factor), mid, step, low, out + i / 2);
    }
    return i;
}

// Q4_0Codec.quantizeBlocks (Sources/CheckpointKit/Tensors/GGML/Q4_0.swift) for one block: the same magnitude
// bits, sign test, scale and inverse, and the same floor of x·(1/d) + 8.5 by the magic number and one
// correction, clipped to 15; so the same bytes. A block with a NaN or an infinity is sent to the reference by
// its magnitude bits before its (then unreliable) signed extremes are read, as in Swift.
AVX512 int ckpt_q4_0_block_avx512(const float *x, unsigned char *codes, float *scale) {
    const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
    const __m512i signMask = _mm512_set1_epi32(0x7FFFFFFF);
    const int amaxBits = _mm512_reduce_max_epi32(_mm512_max_epi32(_mm512_and_si512(_mm512_castps_si512(v0), signMask),
                                                                  _mm512_and_si512(_mm512_castps_si512(v1), signMask)));
    if (amaxBits >= 0x7F800000) return 0;
    const float top = _mm512_reduce_max_ps(_mm512_max_ps(v0, v1)), bottom = _mm512_reduce_min_ps(_mm512_min_ps(v0, v1));
    float m;
    __builtin_memcpy(&m, &amaxBits, sizeof m);
    const int positive = top == m, negative = bottom == -m;
    if (positive == negative) return 0;
    const float d = (positive ? m : -m) / -8.0f;
    const float inverse = d == 0 ? 0 : 1.0f / d;
    if (!__builtin_isfinite(inverse)) return 0;
    const __m512 id = _mm512_set1_ps(inverse), bias = _mm512_set1_ps(8.5f), half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f);
    const __m512 magic = _mm512_set1_ps(12582912.0f), fifteen = _mm512_set1_ps(15.0f);
    const __m512i nibble = _mm512_set1_epi32(0xF);
    __m512i q[2];
    for (int h = 0; h < 2; h++) {
        __m512 y = _mm512_add_ps(_mm512_mul_ps(h == 0 ? v0 : v1, id), bias);
        __m512 r = _mm512_sub_ps(_mm512_add_ps(_mm512_sub_ps(y, half), magic), magic);
        // floor = r + 1 unless r + 1 > y.
        __m512 floor = _mm512_mask_add_ps(r, _mm512_cmp_ps_mask(_mm512_add_ps(r, one), y, _CMP_LE_OQ), r, one);
        floor = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(floor, fifteen, _CMP_GT_OQ), floor, fifteen);
        q[h] = _mm512_and_si512(_mm512_castps_si512(_mm512_add_ps(floor, magic)), nibble);
    }
    _mm_storeu_si128((__m128i *)codes, _mm512_cvtepi32_epi8(_mm512_or_si512(q[0], _mm512_slli_epi32(q[1], 4))));
    *scale = d;
    return 1;
}

// Q8_0Codec.quantize (Sources/CheckpointKit/Tensors/GGML/Q8_0.swift) for one block of finite values: the same
// absmax, scale and inverse, and roundedHalfAwayToInt32's magic-number rounding with its tie correction.
AVX512 int ckpt_q8_0_block_avx512(const float *x, signed char *codes, float *scale) {
    const __m512 v[2] = {_mm512_loadu_ps(x), _mm512_loadu_ps(x + 16)};
    const __m512i signMask = _mm512_set1_epi32(0x7FFFFFFF);
    const int amaxBits = _mm512_reduce_max_epi32(_mm512_max_epi32(_mm512_and_si512(_mm512_castps_si512(v[0]), signMask),
                                                                  _mm512_and_si512(_mm512_castps_si512(v[1]), signMask)));
    if (amaxBits >= 0x7F800000) return 0;
    float m;
    __builtin_memcpy(&m, &amaxBits, sizeof m);
    const float d = m / 127.0f;
    const float inverse = d == 0 ? 0 : 1.0f / d;
    const __m512 id = _mm512_set1_ps(inverse);
    for (int h = 0; h < 2; h++) {
        _mm_storeu_si128((__m128i *)(codes + 16 * h), _mm512_cvtepi32_epi8(round_half_away16(_mm512_mul_ps(v[h], id))));
    }
    *scale = d;
    return 1;
}

// KQuantSearch's lanes in AVX-512: lane g holds group g's value i (groups past `groups` repeat group 0,
// computed and never stored), as KQuantSearch.lanes lays them out.
AVX512 static inline void kquant_lanes(int groups, int n, const float *x, __m512 *out) {
    int base[16];
    for (int g = 0; g < 16; g++) base[g] = (g < groups ? g : 0) * n;
    const __m512i index = _mm512_loadu_si512(base);
    for (int i = 0; i < n; i++) out[i] = _mm512_i32gather_ps(_mm512_add_epi32(index, _mm512_set1_epi32(i)), x, 4);
}

// KQuantSearch.nearestInts: the 1.5·2²³ bias, the low mantissa bits read back.
AVX512 static inline __m512i kquant_nearest(__m512 v) {
    __m512i bits = _mm512_castps_si512(_mm512_add_ps(v, _mm512_set1_ps(12582912.0f)));
    return _mm512_sub_epi32(_mm512_and_si512(bits, _mm512_set1_epi32(0x007FFFFF)), _mm512_set1_epi32(0x00400000));
}

// nearest(iscale · (v − lowest)) clamped to [0, nmax], as floats (KQuantSearch.affine's code).
AVX512 static inline __m512 kquant_affine_code(__m512 iscale, __m512 lowest, __m512 v, __m512i top) {
    __m512i l = kquant_nearest(_mm512_mul_ps(iscale, _mm512_sub_ps(v, lowest)));
    return _mm512_cvtepi32_ps(_mm512_min_epi32(_mm512_max_epi32(l, _mm512_setzero_si512()), top));
}

AVX512 static inline __m512 kquant_error(__m512 d, int absolute) {
    return absolute ? _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(d), _mm512_set1_epi32(0x7FFFFFFF))) : _mm512_mul_ps(d, d);
}

AVX512 static inline void kquant_store_codes(int groups, int n, int i, __m512 l, unsigned char *L) {
    unsigned char bytes[16];
    _mm_storeu_si128((__m128i *)bytes, _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(l)));
    for (int g = 0; g < groups; g++) L[g * n + i] = bytes[g];
}

AVX512 void ckpt_kquant_affine_avx512(int groups, int n, int nmax, const float *x, const float *weights, unsigned char *L,
                                      float *scales, float *minimums, float rmin, float rdelta, int steps, int absolute_error) {
    __m512 X[32], W[32];
    kquant_lanes(groups, n, x, X);
    kquant_lanes(groups, n, weights, W);
    __m512 min = X[0], max = X[0], sumW = W[0], sumX = _mm512_mul_ps(W[0], X[0]);
    for (int i = 1; i < n; i++) {
        min = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(X[i], min, _CMP_LT_OQ), min, X[i]);
        max = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(X[i], max, _CMP_GT_OQ), max, X[i]);
        sumW = _mm512_add_ps(sumW, W[i]);
        sumX = _mm512_add_ps(sumX, _mm512_mul_ps(W[i], X[i]));
    }
    const __m512 zero = _mm512_setzero_ps();
    min = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(min, zero, _CMP_GT_OQ), min, zero);
    const __mmask16 constant = _mm512_cmp_ps_mask(max, min, _CMP_LE_OQ), live = _mm512_cmp_ps_mask(max, min, _CMP_GT_OQ);
    const __m512i top = _mm512_set1_epi32(nmax);
    __m512 chosenScale = _mm512_div_ps(_mm512_set1_ps((float)nmax), _mm512_sub_ps(max, min)), chosenMin = min;
    __m512 scale = _mm512_div_ps(_mm512_set1_ps(1.0f), chosenScale);
    __m512 bestError = zero;
    for (int i = 0; i < n; i++) {
        __m512 d = _mm512_sub_ps(_mm512_add_ps(_mm512_mul_ps(scale, kquant_affine_code(chosenScale, min, X[i], top)), min), X[i]);
        bestError = _mm512_add_ps(bestError, _mm512_mul_ps(W[i], kquant_error(d, absolute_error)));
    }
    if (live) {
        for (int step = 0; step <= steps; step++) {
            const __m512 iscale = _mm512_div_ps(_mm512_set1_ps(rmin + rdelta * (float)step + (float)nmax), _mm512_sub_ps(max, min));
            __m512 sumL = zero, sumL2 = zero, sumXL = zero;
            for (int i = 0; i < n; i++) {
                __m512 l = kquant_affine_code(iscale, min, X[i], top);
                __m512 wl = _mm512_mul_ps(W[i], l);
                sumL = _mm512_add_ps(sumL, wl);
                sumL2 = _mm512_add_ps(sumL2, _mm512_mul_ps(wl, l));
                sumXL = _mm512_add_ps(sumXL, _mm512_mul_ps(wl, X[i]));
            }
            __m512 D = _mm512_sub_ps(_mm512_mul_ps(sumW, sumL2), _mm512_mul_ps(sumL, sumL));
            __m512 thisScale = _mm512_div_ps(_mm512_sub_ps(_mm512_mul_ps(sumW, sumXL), _mm512_mul_ps(sumX, sumL)), D);
            __m512 thisMin = _mm512_div_ps(_mm512_sub_ps(_mm512_mul_ps(sumL2, sumX), _mm512_mul_ps(sumL, sumXL)), D);
            __mmask16 positive = _mm512_cmp_ps_mask(thisMin, zero, _CMP_GT_OQ);
            thisMin = _mm512_mask_blend_ps(positive, thisMin, zero);
            thisScale = _mm512_mask_blend_ps(positive, thisScale, _mm512_div_ps(sumXL, sumL2));
            __m512 current = zero;
            for (int i = 0; i < n; i++) {
                __m512 d = _mm512_sub_ps(_mm512_add_ps(_mm512_mul_ps(thisScale, kquant_affine_code(iscale, min, X[i], top)), thisMin), X[i]);
                current = _mm512_add_ps(current, _mm512_mul_ps(W[i], kquant_error(d, absolute_error)));
            }
            __mmask16 better = live & _mm512_cmp_ps_mask(D, zero, _CMP_GT_OQ) & _mm512_cmp_ps_mask(current, bestError, _CMP_LT_OQ);
            if (!better) continue;
            bestError = _mm512_mask_blend_ps(better, bestError, current);
            scale = _mm512_mask_blend_ps(better, scale, thisScale);
            chosenScale = _mm512_mask_blend_ps(better, chosenScale, iscale);
            chosenMin = _mm512_mask_blend_ps(better, chosenMin, min);
            min = _mm512_mask_blend_ps(better, min, thisMin);
        }
    }
    float scaleLanes[16], minLanes[16];
    _mm512_storeu_ps(scaleLanes, _mm512_maskz_mov_ps(live, scale));
    _mm512_storeu_ps(minLanes, min);
    for (int g = 0; g < groups; g++) {
        scales[g] = scaleLanes[g];
        minimums[g] = -minLanes[g];
    }
    for (int i = 0; i < n; i++) kquant_store_codes(groups, n, i, _mm512_maskz_mov_ps((__mmask16)~constant, kquant_affine_code(chosenScale, chosenMin, X[i], top)), L);
}

AVX512 static inline __m512 kquant_symmetric_code(__m512 iscale, __m512 v, __m512i low, __m512i high) {
    __m512i l = kquant_nearest(_mm512_mul_ps(iscale, v));
    return _mm512_cvtepi32_ps(_mm512_min_epi32(_mm512_max_epi32(l, low), high));
}

AVX512 static inline void kquant_fit(int n, const __m512 *X, const __m512 *W, __m512 iscale, __m512i low, __m512i high,
                                     __m512 *sumlx, __m512 *suml2) {
    __m512 lx = _mm512_setzero_ps(), l2 = _mm512_setzero_ps();
    for (int i = 0; i < n; i++) {
        __m512 l = kquant_symmetric_code(iscale, X[i], low, high);
        lx = _mm512_add_ps(lx, _mm512_mul_ps(_mm512_mul_ps(W[i], X[i]), l));
        l2 = _mm512_add_ps(l2, _mm512_mul_ps(_mm512_mul_ps(W[i], l), l));
    }
    *sumlx = lx;
    *suml2 = l2;
}

AVX512 void ckpt_kquant_symmetric_avx512(int groups, int n, int nmax, const float *x, const float *weights, signed char *L,
                                         float *scales, float epsilon) {
    __m512 X[32], W[32];
    kquant_lanes(groups, n, x, X);
    if (weights) kquant_lanes(groups, n, weights, W);
    else for (int i = 0; i < n; i++) W[i] = _mm512_mul_ps(X[i], X[i]);
    const __m512 zero = _mm512_setzero_ps();
    __m512 amax = zero, max = zero;
    for (int i = 0; i < n; i++) {
        __m512 ax = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(X[i]), _mm512_set1_epi32(0x7FFFFFFF)));
        __mmask16 larger = _mm512_cmp_ps_mask(ax, amax, _CMP_GT_OQ);
        amax = _mm512_mask_blend_ps(larger, amax, ax);
        max = _mm512_mask_blend_ps(larger, max, X[i]);
    }
    const __mmask16 live = _mm512_cmp_ps_mask(amax, _mm512_set1_ps(epsilon), _CMP_GE_OQ);
    const __m512i low = _mm512_set1_epi32(-nmax), high = _mm512_set1_epi32(nmax - 1);
    __m512 chosen = _mm512_div_ps(_mm512_set1_ps((float)-nmax), max);
    __m512 sumlx, suml2;
    kquant_fit(n, X, W, chosen, low, high, &sumlx, &suml2);
    __m512 scale = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(suml2, zero, _CMP_EQ_OQ), _mm512_div_ps(sumlx, suml2), zero);
    __m512 best = _mm512_mul_ps(scale, sumlx);
    if (live) {
        for (int step = -9; step <= 9; step++) {
            if (step == 0) continue;
            const __m512 iscale = _mm512_div_ps(_mm512_set1_ps(-((float)nmax + 0.1f * (float)step)), max);
            kquant_fit(n, X, W, iscale, low, high, &sumlx, &suml2);
            __mmask16 better = live & _mm512_cmp_ps_mask(suml2, zero, _CMP_GT_OQ)
                & _mm512_cmp_ps_mask(_mm512_mul_ps(sumlx, sumlx), _mm512_mul_ps(best, suml2), _CMP_GT_OQ);
            if (!better) continue;
            scale = _mm512_mask_blend_ps(better, scale, _mm512_div_ps(sumlx, suml2));
            best = _mm512_mask_blend_ps(better, best, _mm512_mul_ps(scale, sumlx));
            chosen = _mm512_mask_blend_ps(better, chosen, iscale);
        }
    }
    float scaleLanes[16];
    _mm512_storeu_ps(scaleLanes, _mm512_maskz_mov_ps(live, scale));
    for (int g = 0; g < groups; g++) scales[g] = scaleLanes[g];
    const __m512 offset = _mm512_set1_ps((float)nmax);
    for (int i = 0; i < n; i++) {
        __m512 l = _mm512_maskz_mov_ps(live, _mm512_add_ps(kquant_symmetric_code(chosen, X[i], low, high), offset));
        kquant_store_codes(groups, n, i, l, (unsigned char *)L);
    }
}

// FourBitQuantizer.quantize's full blocks without fixed scales, a run of them at once: each block's absmax
// (the largest magnitude, from the sign-cleared bits: the same value as the Swift scan for finite values),
// stored, then its values times 1 / max(absmax, smallest) bucketed as ckpt_fourbit_encode_avx512 does. Stops
// before a block holding a NaN or an infinity and returns how many blocks it did (the caller takes that block).
AVX512 long ckpt_fourbit_blocks_avx512(const float *x, long blocks, long block_size, float smallest, const float *midpoints,
                                       unsigned lowest, const unsigned *steps, unsigned char *packed, float *absmax) {
    __m512 mid[15];
    __m512i step[15];
    fourbit_tables(midpoints, steps, mid, step);
    const __m512i low = _mm512_set1_epi32((int)lowest);
    for (long b = 0; b < blocks; b++) {
        const float *v = x + b * block_size;
        const int bits = ckpt_absmax_bits_avx512(v, block_size);
        if (bits >= 0x7F800000) return b;
        float m;
        __builtin_memcpy(&m, &bits, sizeof m);
        absmax[b] = m;
        const __m512 factor = _mm512_set1_ps(1.0f / (m > smallest ? m : smallest));
        unsigned char *out = packed + b * block_size / 2;
        for (long i = 0; i < block_size; i += 16) fourbit_pack16(_mm512_mul_ps(_mm512_loadu_ps(v + i), factor), mid, step, low, out + i / 2);
    }
    return blocks;
}

// FourBitQuantizer.dequantizeRange's inner loop for one block's whole runs of 8 bytes: each byte's high nibble
// then its low one, code[nibble] · scale (the same product as the pair table's), 16 values per run; returns how
// many bytes it took (the caller decodes the rest).
AVX512 long ckpt_fourbit_decode_avx512(const unsigned char *bytes, long count, const float *code, float scale, float *out) {
    const __m512 table = _mm512_loadu_ps(code), factor = _mm512_set1_ps(scale);
    const __m512i low = _mm512_set1_epi64(0xF);
    long k = 0;
    for (; k + 8 <= count; k += 8) {
        __m512i b = _mm512_cvtepu8_epi64(_mm_loadl_epi64((const __m128i *)(bytes + k)));
        __m512i nibbles = _mm512_or_si512(_mm512_srli_epi64(b, 4), _mm512_slli_epi64(_mm512_and_si512(b, low), 32));
        _mm512_storeu_ps(out + 2 * k, _mm512_mul_ps(_mm512_permutexvar_ps(nibbles, table), factor));
    }
    return k;
}

// FourBitQuantizer.absoluteMaximum's value for finite inputs, as bits: the largest sign-cleared bit pattern of
// x[0..<n] (0 for n = 0). A result ≥ 0x7F800000 means an infinity or a NaN was seen: the caller then takes
// the Swift scan, whose NaN handling this does not copy.
AVX512 int ckpt_absmax_bits_avx512(const float *x, long n) {
    const __m512i signMask = _mm512_set1_epi32(0x7FFFFFFF);
    __m512i largest = _mm512_setzero_si512();
    long i = 0;
    for (; i + 16 <= n; i += 16) largest = _mm512_max_epi32(largest, _mm512_and_si512(_mm512_castps_si512(_mm512_loadu_ps(x + i)), signMask));
    if (i < n) {
        const __mmask16 mask = (__mmask16)((1u << (n - i)) - 1);
        largest = _mm512_max_epi32(largest, _mm512_and_si512(_mm512_castps_si512(_mm512_maskz_loadu_ps(mask, x + i)), signMask));
    }
    return _mm512_reduce_max_epi32(largest);
}

// BlockInt8Quantizer.dequantize's loop for one run of codes: Float(q) · scale (exact widening, one product),
// the whole runs of 16; returns how many it did.
AVX512 long ckpt_int8_decode_avx512(const signed char *q, long n, float scale, float *out) {
    const __m512 factor = _mm512_set1_ps(scale);
    long i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(q + i))));
        _mm512_storeu_ps(out + i, _mm512_mul_ps(v, factor));
    }
    return i;
}
