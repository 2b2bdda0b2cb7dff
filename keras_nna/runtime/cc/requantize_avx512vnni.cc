// Requantization of int32 accumulators to codes, AVX-512: 16 channels per
// step, z = acc * m + (n + 2^(sh-1)) in int64 lanes (|acc * m + n| < 2^53),
// arithmetic shift by sh, saturation to [0, 2^out_bits - 1] (signed codes:
// [-2^(b-1), 2^(b-1) - 1] as int8 bytes). Parameters are
// the [3][rq_pad] table PrepareLayerVnni builds (Layer::rq_v).
#include "avx512vnni_common.h"
#include "kernels_avx512vnni.h"

namespace keras_nna {

KNNA_TARGET int64_t RequantizeVnni(const Layer& L, const int32_t* acc, uint8_t* codes) {
  const int O = L.out_c, P = L.rq_pad;
  const int64_t* R = L.rq_v.data();
  const bool narrow = L.out_signed || L.out_bits <= 7;  // [lo, hi] inside int8
  const int lo = L.out_signed ? -(1 << (L.out_bits - 1)) : 0;
  const int hi = L.out_signed ? (1 << (L.out_bits - 1)) - 1 : (1 << L.out_bits) - 1;
  const __m128i qmax = _mm_set1_epi8(char(hi)), qmin = _mm_set1_epi8(char(lo));
  int64_t events = 0;
  // 16 accumulators with parameters at prm (m), prm + P (n + half), prm + 2P (sh).
  auto chunk = [&](const int32_t* a, uint8_t* q, const int64_t* prm, __mmask16 m) KNNA_TARGET {
    const __m512i x = _mm512_maskz_loadu_epi32(m, a);
    __m512i z[2];
    for (int h = 0; h < 2; ++h) {
      const __m512i xh = _mm512_cvtepi32_epi64(h ? _mm512_extracti64x4_epi64(x, 1) : _mm512_castsi512_si256(x));
      const __m512i zh = _mm512_add_epi64(_mm512_mul_epi32(xh, _mm512_loadu_si512(prm + 8 * h)),
                                          _mm512_loadu_si512(prm + P + 8 * h));
      z[h] = _mm512_srav_epi64(zh, _mm512_loadu_si512(prm + 2 * P + 8 * h));
    }
    __m128i b;
    if (narrow) {  // signed saturation keeps order and [lo, hi] within int8
      b = _mm_unpacklo_epi64(_mm512_cvtsepi64_epi8(z[0]), _mm512_cvtsepi64_epi8(z[1]));
      b = _mm_min_epi8(_mm_max_epi8(b, qmin), qmax);
    } else {  // unsigned 8-bit codes: clamp below at 0, unsigned saturation at 255
      const __m512i z0 = _mm512_setzero_si512();
      b = _mm_unpacklo_epi64(_mm512_cvtusepi64_epi8(_mm512_max_epi64(z[0], z0)),
                             _mm512_cvtusepi64_epi8(_mm512_max_epi64(z[1], z0)));
    }
    _mm_mask_storeu_epi8(q, m, b);
    events += __builtin_popcount(_mm_mask_test_epi8_mask(m, b, b));
  };
  const int64_t positions = int64_t(L.out_h) * L.out_w;
  if (P % O == 0) {  // flat: element e has channel e % O, parameters at e % P
    const int64_t total = positions * O;
    int64_t pi = 0;
    for (int64_t e = 0; e < total; e += 16) {
      chunk(acc + e, codes + e, R + pi, avx512vnni::Tail16(total - e));
      pi += 16;
      if (pi == P) pi = 0;
    }
  } else {
    for (int64_t p = 0; p < positions; ++p)
      for (int o = 0; o < O; o += 16) chunk(acc + p * O + o, codes + p * O + o, R + o, avx512vnni::Tail16(O - o));
  }
  return events;
}

}  // namespace keras_nna
