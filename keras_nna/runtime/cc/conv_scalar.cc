// CONV, portable: event scatter, direct dense convolution, and the synops of
// the conv kinds counted without doing the MACs.
// Indices: coordinates < 65,536 in int; every flat offset is formed in int64
// (an activation has at most 2^28 elements, a kernel at most 2^40 weights).
#include <algorithm>

#include "kernels_scalar.h"
#include "taps.h"

namespace keras_nna {

int64_t CountNonZero(const uint8_t* p, int64_t n) {
  int64_t c = 0;
  for (int64_t i = 0; i < n; ++i) c += p[i] != 0;
  return c;
}

template <typename AccT, typename InT>
void ConvEvent(const Layer& L, const InT* in, AccT* acc, int64_t* synops) {
  const int C = L.in_c, O = L.out_c;
  std::fill(acc, acc + L.out_elems, AccT(0));
  const Taps ty(L.in_h, L.kh, L.stride_h, L.pad_top, L.out_h);
  const Taps tx(L.in_w, L.kw, L.stride_w, L.pad_left, L.out_w);
  std::vector<int> nzc(C);
  int64_t syn = 0;
  for (int y = 0; y < L.in_h; ++y) {
    for (int x = 0; x < L.in_w; ++x) {
      const InT* px = in + (int64_t(y) * L.in_w + x) * C;
      int n = 0;
      for (int c = 0; c < C; ++c) if (px[c]) nzc[n++] = c;
      if (!n) continue;
      for (int a = ty.start[y]; a < ty.start[y + 1]; ++a) {
        for (int b = tx.start[x]; b < tx.start[x + 1]; ++b) {
          const int tap = ty.k[a] * L.kw + tx.k[b];
          AccT* dst = acc + (int64_t(ty.o[a]) * L.out_w + tx.o[b]) * O;
          for (int j = 0; j < n; ++j) {
            const int c = nzc[j];
            const int64_t r = int64_t(tap) * C + c;
            syn += L.row_nnz[r];
            const int16_t* w = &L.w[r * O];
            const AccT v = px[c];
            for (int o = 0; o < O; ++o) dst[o] += v * AccT(w[o]);
          }
        }
      }
    }
  }
  *synops = syn;
}

template <typename AccT, typename InT>
void ConvDense(const Layer& L, const InT* in, AccT* acc) {
  const int C = L.in_c, O = L.out_c;
  for (int oy = 0; oy < L.out_h; ++oy) {
    for (int ox = 0; ox < L.out_w; ++ox) {
      AccT* dst = acc + (int64_t(oy) * L.out_w + ox) * O;
      std::fill(dst, dst + O, AccT(0));
      for (int ky = 0; ky < L.kh; ++ky) {
        const int iy = oy * L.stride_h - L.pad_top + ky;  // |iy| < 65,536 * 15 + 15
        if (iy < 0 || iy >= L.in_h) continue;
        for (int kx = 0; kx < L.kw; ++kx) {
          const int ix = ox * L.stride_w - L.pad_left + kx;
          if (ix < 0 || ix >= L.in_w) continue;
          const InT* px = in + (int64_t(iy) * L.in_w + ix) * C;
          const int16_t* w = &L.w[int64_t(ky * L.kw + kx) * C * O];
          for (int c = 0; c < C; ++c, w += O) {
            const AccT v = px[c];
            for (int o = 0; o < O; ++o) dst[o] += v * AccT(w[o]);
          }
        }
      }
    }
  }
}

template <typename InT>
int64_t ConvSynops(const Layer& L, const InT* in) {
  const Taps ty(L.in_h, L.kh, L.stride_h, L.pad_top, L.out_h);
  const Taps tx(L.in_w, L.kw, L.stride_w, L.pad_left, L.out_w);
  const bool conv = L.kind == kConv;
  int64_t syn = 0;
  for (int y = 0; y < L.in_h; ++y) {
    for (int x = 0; x < L.in_w; ++x) {
      const InT* px = in + (int64_t(y) * L.in_w + x) * L.in_c;
      for (int c = 0; c < L.in_c; ++c) {
        if (!px[c]) continue;
        for (int a = ty.start[y]; a < ty.start[y + 1]; ++a) {
          for (int b = tx.start[x]; b < tx.start[x + 1]; ++b) {
            const int64_t r = int64_t(ty.k[a] * L.kw + tx.k[b]) * L.in_c + c;
            syn += conv ? L.row_nnz[r] : int64_t(L.w[r] != 0);
          }
        }
      }
    }
  }
  return syn;
}

#define KERAS_NNA_CONV(AccT, InT)                                                    \
  template void ConvEvent<AccT, InT>(const Layer&, const InT*, AccT*, int64_t*); \
  template void ConvDense<AccT, InT>(const Layer&, const InT*, AccT*);
KERAS_NNA_CONV(int32_t, uint8_t)
KERAS_NNA_CONV(int64_t, uint8_t)
KERAS_NNA_CONV(int32_t, int8_t)
KERAS_NNA_CONV(int64_t, int8_t)
#undef KERAS_NNA_CONV
template int64_t ConvSynops<uint8_t>(const Layer&, const uint8_t*);
template int64_t ConvSynops<int8_t>(const Layer&, const int8_t*);

}  // namespace keras_nna
