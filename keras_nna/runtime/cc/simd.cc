// AVX-512 VNNI kernels for CONV and DENSE with int32 accumulation.
//
// The weights of a layer are re-laid out once, at parse time, as
// [out block of 16][tap][channel group of 4][16 outputs][4 channels] int8
// (channels zero-padded to a multiple of 4 per tap). One vpdpbusd then
// multiplies 4 input codes (u8) of one pixel by the weights of 16 output
// channels.
//   Dense: see simd_dense.cc.
//   Event: each input pixel scatters, per tap that lands in the output, only
//     its channel groups holding a non-zero code (work ~ events).
#include "simd.h"

#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "kernels.h"

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
  if (!HaveVnni()) return;
  PrepareDense(L);
  if (!(L->kind == kConv || L->kind == kDense) || L->acc_wide) return;
  const int C = L->in_c, G = (C + 3) / 4, taps = L->kh * L->kw;
  const int O = L->out_c, OB = (O + 15) / 16;
  const int64_t Wp = int64_t(L->in_w) + L->pad_left + L->pad_right;
  if ((int64_t(L->in_h) + L->pad_top + L->pad_bottom) * Wp * 4 * G > kMaxTensorElements) return;
  L->vnni_k4 = int64_t(taps) * G;
  L->w_vnni.assign(size_t(OB) * L->vnni_k4 * 64, 0);
  for (int ob = 0; ob < OB; ++ob)
    for (int t = 0; t < taps; ++t)
      for (int c = 0; c < C; ++c)
        for (int o = 0; o < 16 && ob * 16 + o < O; ++o) {
          const size_t dst = ((size_t(ob) * taps + t) * G + c / 4) * 64 + o * 4 + c % 4;
          L->w_vnni[dst] = int8_t(L->w[(int64_t(t) * C + c) * O + ob * 16 + o]);
        }
  L->vnni_offs.resize(L->vnni_k4);
  for (int t = 0; t < taps; ++t)
    for (int g = 0; g < G; ++g)
      L->vnni_offs[int64_t(t) * G + g] = int32_t(((t / L->kw) * Wp + t % L->kw) * 4 * G + 4 * g);
}

namespace {

inline int32_t Load4(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

inline __mmask16 TailMask(int O, int ob) {
  const int rem = O - ob * 16;
  return rem >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << rem) - 1);
}

}  // namespace

__attribute__((target("avx512f,avx512bw,avx512vnni")))
void ConvEventVnni(const Layer& L, const uint8_t* in, int32_t* acc, int64_t* synops) {
  const int C = L.in_c, G = (C + 3) / 4, taps = L.kh * L.kw;
  const int O = L.out_c, OB = (O + 15) / 16;
  std::fill(acc, acc + L.out_elems, 0);
  Taps ty(L.in_h, L.kh, L.stride_h, L.pad_top, L.out_h);
  Taps tx(L.in_w, L.kw, L.stride_w, L.pad_left, L.out_w);
  std::vector<uint8_t> pix(size_t(G) * 4, 0);
  std::vector<int> nzc(C), groups(G);
  const int8_t* W = L.w_vnni.data();
  int64_t syn = 0;
  for (int y = 0; y < L.in_h; ++y) {
    for (int x = 0; x < L.in_w; ++x) {
      const uint8_t* px = in + (int64_t(y) * L.in_w + x) * C;
      int n = 0, ng = 0;
      for (int c = 0; c < C; ++c) if (px[c]) nzc[n++] = c;
      if (!n) continue;
      std::memcpy(pix.data(), px, C);
      for (int j = 0; j < n; ++j) {
        const int g = nzc[j] / 4;
        if (ng == 0 || groups[ng - 1] != g) groups[ng++] = g;
      }
      for (int a = ty.start[y]; a < ty.start[y + 1]; ++a) {
        for (int b = tx.start[x]; b < tx.start[x + 1]; ++b) {
          const int tap = ty.k[a] * L.kw + tx.k[b];
          const int32_t* nnz = &L.row_nnz[int64_t(tap) * C];
          for (int j = 0; j < n; ++j) syn += nnz[nzc[j]];
          int32_t* dst = acc + (int64_t(ty.o[a]) * L.out_w + tx.o[b]) * O;
          for (int ob = 0; ob < OB; ++ob) {
            const int8_t* wb = W + (size_t(ob) * taps + tap) * G * 64;
            __m512i s = _mm512_setzero_si512();
            for (int j = 0; j < ng; ++j) {
              const int g = groups[j];
              s = _mm512_dpbusd_epi32(s, _mm512_set1_epi32(Load4(pix.data() + 4 * g)),
                                      _mm512_loadu_si512(wb + size_t(g) * 64));
            }
            const __mmask16 mask = TailMask(O, ob);
            int32_t* d = dst + ob * 16;
            _mm512_mask_storeu_epi32(d, mask, _mm512_add_epi32(_mm512_maskz_loadu_epi32(mask, d), s));
          }
        }
      }
    }
  }
  *synops = syn;
}

}  // namespace keras_nna
