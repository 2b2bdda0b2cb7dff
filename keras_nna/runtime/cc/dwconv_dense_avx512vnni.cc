// DEPTHWISE and SEPARABLE, AVX-512 VNNI, dense (int32 accumulation).
// The depthwise stage runs over 16 channels per vector on the zero-padded
// input; for SEPARABLE it stores int16 (|acc| <= 32767 is checked by
// PrepareLayerVnni from the parser's bound) and the pointwise stage is the
// micro-kernel of gemm_avx512vnni.h with vpdpwssd on channel pairs.
// Synops: TableSynops (synops_avx512vnni.cc) for the depthwise stage, a
// masked add of the pointwise row counts per non-zero int16 for the second.
#include <climits>

#include "gemm_avx512vnni.h"
#include "kernels_avx512vnni.h"

namespace keras_nna {
namespace {

using avx512vnni::ReduceLanes;
using avx512vnni::Tail16;

// Depthwise over 16 channels per vector on the padded input (Cp = C).
// kSep: int16 output [positions][Cp2] and pointwise synops into *syn2.
template <bool kSep>
KNNA_TARGET void DepthwiseStage(const Layer& L, const uint8_t* pad, int32_t* acc, int16_t* dw16, int Cp2,
                                int64_t* syn2) {
  const int C = L.in_c, CP = L.syn_cpad, taps = L.kh * L.kw;
  const int64_t Wp = int64_t(L.in_w) + L.pad_left + L.pad_right;
  int64_t toff[15 * 15];
  for (int t = 0; t < taps; ++t) toff[t] = ((t / L.kw) * Wp + t % L.kw) * C;
  const int32_t* w32 = L.w_dw32.data();
  const int32_t* r2 = L.row2_nnz16.data();
  // Each lane adds <= out_c <= 65,535 per position: flush before INT_MAX.
  const int64_t flush = std::max<int64_t>(1, INT_MAX / (int64_t(65535) * (CP / 16)));
  int64_t left = flush, syn = 0;
  __m512i s = _mm512_setzero_si512();
  int64_t p = 0;
  for (int oy = 0; oy < L.out_h; ++oy) {
    for (int ox = 0; ox < L.out_w; ++ox, ++p) {
      const uint8_t* base = pad + (int64_t(oy) * L.stride_h * Wp + int64_t(ox) * L.stride_w) * C;
      for (int c0 = 0; c0 < C; c0 += 16) {
        const __mmask16 m = Tail16(C - c0);
        __m512i a = _mm512_setzero_si512();
        for (int t = 0; t < taps; ++t) {
          const __m512i x = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, base + toff[t] + c0));
          a = _mm512_add_epi32(a, _mm512_mullo_epi32(x, _mm512_loadu_si512(w32 + int64_t(t) * CP + c0)));
        }
        if (kSep) {
          _mm256_mask_storeu_epi16(dw16 + p * Cp2 + c0, m, _mm512_cvtepi32_epi16(a));
          s = _mm512_mask_add_epi32(s, _mm512_mask_test_epi32_mask(m, a, a), s, _mm512_loadu_si512(r2 + c0));
        } else {
          _mm512_mask_storeu_epi32(acc + p * C + c0, m, a);
        }
      }
      if (kSep) {
        if (Cp2 != C) dw16[p * Cp2 + C] = 0;
        if (--left == 0) syn += ReduceLanes(s), s = _mm512_setzero_si512(), left = flush;
      }
    }
  }
  if (kSep) *syn2 = syn + ReduceLanes(s);
}

}  // namespace

KNNA_TARGET void DepthwiseDenseVnni(const Layer& L, const uint8_t* in, int32_t* acc,
                                    std::vector<uint8_t>* pad, int64_t* synops) {
  DepthwiseStage<false>(L, avx512vnni::PadInput(L, in, L.in_c, pad), acc, nullptr, 0, nullptr);
  *synops = TableSynops(L, in);
}

KNNA_TARGET void SeparableDenseVnni(const Layer& L, const uint8_t* in, int32_t* acc,
                                    std::vector<uint8_t>* pad, std::vector<int16_t>* dw16,
                                    int64_t* synops) {
  const int C = L.in_c, Cp2 = C + (C & 1);
  const int64_t positions = int64_t(L.out_h) * L.out_w;
  if (dw16->size() < size_t(positions * Cp2 + 32)) dw16->resize(size_t(positions * Cp2 + 32));
  int64_t syn2 = 0;
  DepthwiseStage<true>(L, avx512vnni::PadInput(L, in, C, pad), nullptr, dw16->data(), Cp2, &syn2);
  *synops = TableSynops(L, in) + syn2;
  avx512vnni::Gemm<true>(reinterpret_cast<const uint8_t*>(dw16->data()), positions, positions, 0,
                         int64_t(Cp2) * 2, nullptr, Cp2 / 2,
                         reinterpret_cast<const int8_t*>(L.w2_vnni.data()), L.out_c, acc);
}

}  // namespace keras_nna
