// Pointwise products, portable: DENSE (uint8 or int8 codes, one row) and the
// pointwise stage of SEPARABLE (rows of depthwise accumulators).
#include <algorithm>

#include "kernels_scalar.h"

namespace keras_nna {

template <typename AccT, typename InT>
void PointwiseEvent(const InT* x, int64_t positions, int C, int O, const int16_t* w,
                    const std::vector<int32_t>& row_nnz, AccT* acc, int64_t* synops) {
  int64_t syn = 0;
  for (int64_t p = 0; p < positions; ++p) {
    const InT* xp = x + p * C;
    AccT* dst = acc + p * O;
    std::fill(dst, dst + O, AccT(0));
    for (int c = 0; c < C; ++c) {
      if (!xp[c]) continue;
      syn += row_nnz[c];
      const AccT v = AccT(xp[c]);
      const int16_t* wr = w + int64_t(c) * O;
      for (int o = 0; o < O; ++o) dst[o] += v * AccT(wr[o]);
    }
  }
  *synops = syn;
}

template <typename AccT, typename InT>
void PointwiseDense(const InT* x, int64_t positions, int C, int O, const int16_t* w, AccT* acc) {
  for (int64_t p = 0; p < positions; ++p) {
    const InT* xp = x + p * C;
    AccT* dst = acc + p * O;
    std::fill(dst, dst + O, AccT(0));
    for (int c = 0; c < C; ++c) {
      const AccT v = AccT(xp[c]);
      const int16_t* wr = w + int64_t(c) * O;
      for (int o = 0; o < O; ++o) dst[o] += v * AccT(wr[o]);
    }
  }
}

template <typename InT>
int64_t PointwiseSynops(const InT* x, int64_t positions, int C, const std::vector<int32_t>& row_nnz) {
  int64_t syn = 0;
  for (int64_t p = 0; p < positions; ++p)
    for (int c = 0; c < C; ++c) syn += x[p * C + c] ? row_nnz[c] : 0;
  return syn;
}

#define KERAS_NNA_POINTWISE(AccT, InT)                                                           \
  template void PointwiseEvent<AccT, InT>(const InT*, int64_t, int, int, const int16_t*,         \
                                          const std::vector<int32_t>&, AccT*, int64_t*);         \
  template void PointwiseDense<AccT, InT>(const InT*, int64_t, int, int, const int16_t*, AccT*);
KERAS_NNA_POINTWISE(int32_t, uint8_t)
KERAS_NNA_POINTWISE(int64_t, uint8_t)
KERAS_NNA_POINTWISE(int32_t, int8_t)
KERAS_NNA_POINTWISE(int64_t, int8_t)
KERAS_NNA_POINTWISE(int32_t, int32_t)
KERAS_NNA_POINTWISE(int64_t, int64_t)
#undef KERAS_NNA_POINTWISE
template int64_t PointwiseSynops<uint8_t>(const uint8_t*, int64_t, int, const std::vector<int32_t>&);
template int64_t PointwiseSynops<int8_t>(const int8_t*, int64_t, int, const std::vector<int32_t>&);
template int64_t PointwiseSynops<int32_t>(const int32_t*, int64_t, int, const std::vector<int32_t>&);
template int64_t PointwiseSynops<int64_t>(const int64_t*, int64_t, int, const std::vector<int32_t>&);

}  // namespace keras_nna
