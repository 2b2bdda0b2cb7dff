// Small helpers shared by the AVX-512 VNNI kernel files.
#ifndef KERAS_NNA_RUNTIME_CC_AVX512VNNI_COMMON_H_
#define KERAS_NNA_RUNTIME_CC_AVX512VNNI_COMMON_H_

#include <immintrin.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "program.h"

#define KNNA_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))

namespace keras_nna {
namespace avx512vnni {

inline int32_t Load4(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// Lanes [0, rem) of 16 (rem may exceed 16).
inline __mmask16 Tail16(int64_t rem) {
  return rem >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << rem) - 1);
}

// Sum of 16 int32 lanes read as unsigned (callers keep each lane < 2^31).
KNNA_TARGET inline int64_t ReduceLanes(__m512i v) {
  const __m512i lo = _mm512_cvtepu32_epi64(_mm512_castsi512_si256(v));
  const __m512i hi = _mm512_cvtepu32_epi64(_mm512_extracti64x4_epi64(v, 1));
  return _mm512_reduce_add_epi64(_mm512_add_epi64(lo, hi));
}

// Copies the HWC input into a zero-padded [Hp][Wp][Cp] buffer (Cp >= C), 64
// bytes of slack at the end; returns its start (conv_dense_avx512vnni.cc).
// flip = 0x80: every byte XOR 0x80 (int8 codes to u8 codes + 128) and the
// padding filled with 0x80 (code 0 + 128), for the signed-input kernel.
// Hp * Wp * Cp <= kMaxTensorElements was checked by PrepareLayerVnni.
const uint8_t* PadInput(const Layer& L, const uint8_t* in, int Cp, std::vector<uint8_t>* buf,
                        uint8_t flip = 0);

}  // namespace avx512vnni
}  // namespace keras_nna

#endif  // KERAS_NNA_RUNTIME_CC_AVX512VNNI_COMMON_H_
