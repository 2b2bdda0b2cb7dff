// DEPTHWISE (and the depthwise stage of SEPARABLE), portable: event scatter
// and direct dense convolution into acc [out_h][out_w][in_c].
#include <algorithm>

#include "kernels_scalar.h"
#include "taps.h"

namespace keras_nna {

template <typename AccT, typename InT>
void DepthwiseEvent(const Layer& L, const InT* in, AccT* acc, int64_t* synops) {
  const int C = L.in_c;
  std::fill(acc, acc + int64_t(L.out_h) * L.out_w * C, AccT(0));
  const Taps ty(L.in_h, L.kh, L.stride_h, L.pad_top, L.out_h);
  const Taps tx(L.in_w, L.kw, L.stride_w, L.pad_left, L.out_w);
  int64_t syn = 0;
  for (int y = 0; y < L.in_h; ++y) {
    for (int x = 0; x < L.in_w; ++x) {
      const InT* px = in + (int64_t(y) * L.in_w + x) * C;
      for (int c = 0; c < C; ++c) {
        if (!px[c]) continue;
        const AccT v = px[c];
        for (int a = ty.start[y]; a < ty.start[y + 1]; ++a) {
          for (int b = tx.start[x]; b < tx.start[x + 1]; ++b) {
            const int16_t w = L.w[int64_t(ty.k[a] * L.kw + tx.k[b]) * C + c];
            syn += w != 0;
            acc[(int64_t(ty.o[a]) * L.out_w + tx.o[b]) * C + c] += v * AccT(w);
          }
        }
      }
    }
  }
  *synops = syn;
}

template <typename AccT, typename InT>
void DepthwiseDense(const Layer& L, const InT* in, AccT* acc) {
  const int C = L.in_c;
  for (int oy = 0; oy < L.out_h; ++oy) {
    for (int ox = 0; ox < L.out_w; ++ox) {
      AccT* dst = acc + (int64_t(oy) * L.out_w + ox) * C;
      std::fill(dst, dst + C, AccT(0));
      for (int ky = 0; ky < L.kh; ++ky) {
        const int iy = oy * L.stride_h - L.pad_top + ky;
        if (iy < 0 || iy >= L.in_h) continue;
        for (int kx = 0; kx < L.kw; ++kx) {
          const int ix = ox * L.stride_w - L.pad_left + kx;
          if (ix < 0 || ix >= L.in_w) continue;
          const InT* px = in + (int64_t(iy) * L.in_w + ix) * C;
          const int16_t* w = &L.w[int64_t(ky * L.kw + kx) * C];
          for (int c = 0; c < C; ++c) dst[c] += AccT(px[c]) * AccT(w[c]);
        }
      }
    }
  }
}

#define KERAS_NNA_DEPTHWISE(AccT, InT)                                                    \
  template void DepthwiseEvent<AccT, InT>(const Layer&, const InT*, AccT*, int64_t*); \
  template void DepthwiseDense<AccT, InT>(const Layer&, const InT*, AccT*);
KERAS_NNA_DEPTHWISE(int32_t, uint8_t)
KERAS_NNA_DEPTHWISE(int64_t, uint8_t)
KERAS_NNA_DEPTHWISE(int32_t, int8_t)
KERAS_NNA_DEPTHWISE(int64_t, int8_t)
#undef KERAS_NNA_DEPTHWISE

}  // namespace keras_nna
