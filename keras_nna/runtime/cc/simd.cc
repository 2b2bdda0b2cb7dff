// AVX-512 VNNI dense kernel for CONV and DENSE with int32 accumulation.
//
// The weights of a layer are re-laid out once, at parse time, as
// [out block of 16][K/4][16 outputs][4 taps] int8 (K = kh*kw*in_c, zero
// padded), so one vpdpbusd multiplies 4 consecutive input codes (u8) by the
// matching weights of 16 output channels. Each output position gathers its
// receptive field into a contiguous patch (zeros for padding); 4 positions
// share every weight load.
#include "simd.h"

#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace keras_nna {

bool HaveVnni() {
  static const bool have = [] {
    const char* off = std::getenv("KERAS_NNA_NO_SIMD");
    if (off != nullptr && off[0] != '\0' && off[0] != '0') return false;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vnni");
  }();
  return have;
}

void PrepareVnni(Layer* L) {
  if (!(L->kind == kConv || L->kind == kDense) || L->acc_wide || !HaveVnni()) return;
  const int64_t K = int64_t(L->kh) * L->kw * L->in_c, K4 = (K + 3) / 4;
  const int O = L->out_c, OB = (O + 15) / 16;
  L->vnni_k4 = K4;
  L->w_vnni.assign(size_t(OB) * K4 * 64, 0);
  for (int ob = 0; ob < OB; ++ob)
    for (int64_t g = 0; g < K4; ++g)
      for (int o = 0; o < 16; ++o)
        for (int j = 0; j < 4; ++j) {
          const int64_t k = 4 * g + j;
          const int oc = ob * 16 + o;
          if (k < K && oc < O) {
            L->w_vnni[((size_t(ob) * K4 + g) * 16 + o) * 4 + j] = int8_t(L->w[k * O + oc]);
          }
        }
}

namespace {

// Gathers the receptive field of output position p into patch (K4*4 bytes).
void Gather(const Layer& L, const uint8_t* in, int64_t p, uint8_t* patch, int64_t K4) {
  const int C = L.in_c;
  const int oy = int(p / L.out_w), ox = int(p % L.out_w);
  uint8_t* dst = patch;
  for (int ky = 0; ky < L.kh; ++ky) {
    const int iy = oy * L.stride_h - L.pad_top + ky;
    for (int kx = 0; kx < L.kw; ++kx, dst += C) {
      const int ix = ox * L.stride_w - L.pad_left + kx;
      if (iy < 0 || iy >= L.in_h || ix < 0 || ix >= L.in_w) {
        std::memset(dst, 0, C);
      } else {
        std::memcpy(dst, in + (int64_t(iy) * L.in_w + ix) * C, C);
      }
    }
  }
  std::memset(dst, 0, size_t(patch + K4 * 4 - dst));
}

inline int32_t Load4(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

}  // namespace

__attribute__((target("avx512f,avx512bw,avx512vnni")))
void ConvDenseVnni(const Layer& L, const uint8_t* in, int32_t* acc, std::vector<uint8_t>* col) {
  constexpr int P = 4;
  const int64_t K4 = L.vnni_k4;
  const int O = L.out_c, OB = (O + 15) / 16;
  const int64_t positions = int64_t(L.out_h) * L.out_w;
  const size_t stride = size_t(K4) * 4;
  if (col->size() < P * stride) col->resize(P * stride);
  uint8_t* patch = col->data();
  const int8_t* W = L.w_vnni.data();
  for (int64_t p0 = 0; p0 < positions; p0 += P) {
    const int n = int(std::min<int64_t>(P, positions - p0));
    for (int t = 0; t < P; ++t) {
      if (t < n) Gather(L, in, p0 + t, patch + t * stride, K4);
      else std::memset(patch + t * stride, 0, stride);
    }
    for (int ob = 0; ob < OB; ++ob) {
      __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
      const int8_t* wb = W + size_t(ob) * K4 * 64;
      const uint8_t* c0 = patch;
      const uint8_t* c1 = patch + stride;
      const uint8_t* c2 = patch + 2 * stride;
      const uint8_t* c3 = patch + 3 * stride;
      for (int64_t g = 0; g < K4; ++g) {
        const __m512i w = _mm512_loadu_si512(wb + g * 64);
        a0 = _mm512_dpbusd_epi32(a0, _mm512_set1_epi32(Load4(c0 + 4 * g)), w);
        a1 = _mm512_dpbusd_epi32(a1, _mm512_set1_epi32(Load4(c1 + 4 * g)), w);
        a2 = _mm512_dpbusd_epi32(a2, _mm512_set1_epi32(Load4(c2 + 4 * g)), w);
        a3 = _mm512_dpbusd_epi32(a3, _mm512_set1_epi32(Load4(c3 + 4 * g)), w);
      }
      const int rem = O - ob * 16;
      const __mmask16 mask = rem >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << rem) - 1);
      const __m512i a[P] = {a0, a1, a2, a3};
      for (int t = 0; t < n; ++t) {
        _mm512_mask_storeu_epi32(acc + (p0 + t) * O + ob * 16, mask, a[t]);
      }
    }
  }
}

}  // namespace keras_nna
