// CONV / DENSE, AVX-512 VNNI, event scatter (int32 accumulation): each input
// pixel scatters, per tap that lands in the output, only its channel groups
// holding a non-zero code: one vpdpbusd multiplies 4 codes by the packed
// weights of 16 output channels (layout: prepare_avx512vnni.cc).
#include <algorithm>

#include "avx512vnni_common.h"
#include "kernels_avx512vnni.h"
#include "taps.h"

namespace keras_nna {

KNNA_TARGET void ConvEventVnni(const Layer& L, const uint8_t* in, int32_t* acc, int64_t* synops) {
  const int C = L.in_c, G = (C + 3) / 4, taps = L.kh * L.kw;
  const int O = L.out_c, OB = (O + 15) / 16;
  std::fill(acc, acc + L.out_elems, 0);
  const Taps ty(L.in_h, L.kh, L.stride_h, L.pad_top, L.out_h);
  const Taps tx(L.in_w, L.kw, L.stride_w, L.pad_left, L.out_w);
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
              s = _mm512_dpbusd_epi32(s, _mm512_set1_epi32(avx512vnni::Load4(pix.data() + 4 * g)),
                                      _mm512_loadu_si512(wb + size_t(g) * 64));
            }
            const __mmask16 mask = avx512vnni::Tail16(O - ob * 16);
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
