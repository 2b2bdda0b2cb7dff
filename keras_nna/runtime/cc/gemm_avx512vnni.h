// Register-blocked dot-product micro-kernel of the AVX-512 VNNI dense kernels
// (CONV/DENSE by vpdpbusd on u8 x s8, SEPARABLE pointwise by vpdpwssd on
// s16 x s16 channel pairs). Header-only templates: included by
// conv_dense_avx512vnni.cc and dwconv_dense_avx512vnni.cc.
//
// Integer sums wrap in two's complement, and every final accumulator is
// proven to fit int32, so partial-sum order does not change any result.
#ifndef KERAS_NNA_RUNTIME_CC_GEMM_AVX512VNNI_H_
#define KERAS_NNA_RUNTIME_CC_GEMM_AVX512VNNI_H_

#include <algorithm>

#include "avx512vnni_common.h"

namespace keras_nna {
namespace avx512vnni {

// In-place accumulate (inline asm: GCC 12 copies and spills accumulators of
// the intrinsics in big register blocks). acc += a(u8 / s16) . b(s8 / s16).
KNNA_TARGET inline __m512i Dpbusd(__m512i acc, __m512i a, __m512i b) {
  asm("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b));
  return acc;
}
KNNA_TARGET inline __m512i Dpwssd(__m512i acc, __m512i a, __m512i b) {
  asm("vpdpwssd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b));
  return acc;
}

// NP positions x NB output blocks. kWord: vpdpwssd on int16 channel pairs
// at byte offset 4k of each base; else vpdpbusd at offs[k] (< 2^28).
template <int NB, int NP, bool kWord>
KNNA_TARGET inline __attribute__((always_inline)) void Micro(
    const uint8_t* const* base, const int32_t* offs, int64_t K, const int8_t* W, int64_t wstride,
    int32_t* const* dst, const __mmask16* masks) {
  __m512i acc[NP][NB];
  const uint8_t* b[NP];
#pragma GCC unroll 16
  for (int i = 0; i < NP; ++i) {
    b[i] = base[i];
#pragma GCC unroll 16
    for (int j = 0; j < NB; ++j) acc[i][j] = _mm512_setzero_si512();
  }
  for (int64_t k = 0; k < K; ++k) {
    const int64_t off = kWord ? 4 * k : offs[k];
    __m512i w[NB];
#pragma GCC unroll 16
    for (int j = 0; j < NB; ++j) w[j] = _mm512_loadu_si512(W + j * wstride + k * 64);
#pragma GCC unroll 16
    for (int i = 0; i < NP; ++i) {
      const __m512i x = _mm512_set1_epi32(Load4(b[i] + off));
#pragma GCC unroll 16
      for (int j = 0; j < NB; ++j) {
        acc[i][j] = kWord ? Dpwssd(acc[i][j], x, w[j]) : Dpbusd(acc[i][j], x, w[j]);
      }
    }
  }
  // Slots past n repeat slot 0 (same base and dst): same values, same place.
#pragma GCC unroll 16
  for (int i = 0; i < NP; ++i) {
#pragma GCC unroll 16
    for (int j = 0; j < NB; ++j) _mm512_mask_storeu_epi32(dst[i] + j * 16, masks[j], acc[i][j]);
  }
}

// Micro over the listed (tap, group) indices only (vpdpbusd): k runs over
// idx[0..n), reading input at offs[idx[k]] and weights at idx[k] * 64. The
// skipped indices hold all-zero inputs, so the sums are unchanged.
template <int NB, int NP>
KNNA_TARGET inline __attribute__((always_inline)) void MicroIdx(
    const uint8_t* const* base, const int32_t* offs, const int32_t* idx, int64_t n, const int8_t* W,
    int64_t wstride, int32_t* const* dst, const __mmask16* masks) {
  __m512i acc[NP][NB];
#pragma GCC unroll 16
  for (int i = 0; i < NP; ++i) {
#pragma GCC unroll 16
    for (int j = 0; j < NB; ++j) acc[i][j] = _mm512_setzero_si512();
  }
  for (int64_t k = 0; k < n; ++k) {
    const int64_t kk = idx[k], off = offs[kk];
    __m512i w[NB];
#pragma GCC unroll 16
    for (int j = 0; j < NB; ++j) w[j] = _mm512_loadu_si512(W + j * wstride + kk * 64);
#pragma GCC unroll 16
    for (int i = 0; i < NP; ++i) {
      const __m512i x = _mm512_set1_epi32(Load4(base[i] + off));
#pragma GCC unroll 16
      for (int j = 0; j < NB; ++j) acc[i][j] = Dpbusd(acc[i][j], x, w[j]);
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < NP; ++i) {
#pragma GCC unroll 16
    for (int j = 0; j < NB; ++j) _mm512_mask_storeu_epi32(dst[i] + j * 16, masks[j], acc[i][j]);
  }
}

// Output blocks ob0..ob0+NB-1 for every position. Position p = (py, px)
// (px < out_w) has its input at buf + py*sy + px*sx.
template <int NB, int NP, bool kWord>
KNNA_TARGET void Pass(const uint8_t* buf, int64_t positions, int64_t out_w, int64_t sy, int64_t sx,
                      const int32_t* offs, int64_t K, const int8_t* W, int O, int ob0, int32_t* acc) {
  __mmask16 masks[NB];
  for (int j = 0; j < NB; ++j) masks[j] = Tail16(int64_t(O) - (ob0 + j) * 16);
  const int8_t* Wb = W + int64_t(ob0) * K * 64;
  const uint8_t* base[NP];
  int32_t* dst[NP];
  int64_t py = 0, px = 0;
  for (int64_t p0 = 0; p0 < positions; p0 += NP) {
    const int n = int(std::min<int64_t>(NP, positions - p0));
    for (int i = 0; i < NP; ++i) {
      if (i < n) {
        base[i] = buf + py * sy + px * sx;
        dst[i] = acc + (p0 + i) * O + ob0 * 16;
        if (++px == out_w) px = 0, ++py;
      } else {
        base[i] = base[0];
        dst[i] = dst[0];
      }
    }
    Micro<NB, NP, kWord>(base, offs, K, Wb, K * 64, dst, masks);
  }
}

template <bool kWord>
KNNA_TARGET void Gemm(const uint8_t* buf, int64_t positions, int64_t out_w, int64_t sy, int64_t sx,
                      const int32_t* offs, int64_t K, const int8_t* W, int O, int32_t* acc) {
  const int OB = (O + 15) / 16;
  for (int ob = 0; ob < OB;) {
    const int rem = OB - ob;
    if (rem >= 4) {
      Pass<4, 6, kWord>(buf, positions, out_w, sy, sx, offs, K, W, O, ob, acc);
      ob += 4;
    } else if (rem >= 2) {
      Pass<2, 8, kWord>(buf, positions, out_w, sy, sx, offs, K, W, O, ob, acc);
      ob += 2;
    } else {
      Pass<1, 12, kWord>(buf, positions, out_w, sy, sx, offs, K, W, O, ob, acc);
      ob += 1;
    }
  }
}

}  // namespace avx512vnni
}  // namespace keras_nna

#endif  // KERAS_NNA_RUNTIME_CC_GEMM_AVX512VNNI_H_
