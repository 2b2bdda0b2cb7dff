// Portable kernels per layer kind (any CPU; AccT = int32_t when the parser
// proved |acc| < 2^31, else int64_t; InT = uint8_t for unsigned input codes,
// int8_t for signed ones). Every partial sum is bounded by the proven worst
// case (a sum of |w| * max |code|), so no signed overflow.
#ifndef KERAS_NNA_RUNTIME_CC_KERNELS_SCALAR_H_
#define KERAS_NNA_RUNTIME_CC_KERNELS_SCALAR_H_

#include <cstdint>
#include <vector>

#include "program.h"

namespace keras_nna {

int64_t CountNonZero(const uint8_t* p, int64_t n);

// CONV (conv_scalar.cc): acc [out_h][out_w][out_c].
template <typename AccT, typename InT>
void ConvEvent(const Layer& L, const InT* in, AccT* acc, int64_t* synops);
template <typename AccT, typename InT>
void ConvDense(const Layer& L, const InT* in, AccT* acc);
// Synops of a CONV, DEPTHWISE or SEPARABLE (depthwise stage) layer without
// doing the MACs (for the dense kernels).
template <typename InT>
int64_t ConvSynops(const Layer& L, const InT* in);

// DEPTHWISE and the depthwise stage of SEPARABLE (dwconv_scalar.cc):
// acc [out_h][out_w][in_c].
template <typename AccT, typename InT>
void DepthwiseEvent(const Layer& L, const InT* in, AccT* acc, int64_t* synops);
template <typename AccT, typename InT>
void DepthwiseDense(const Layer& L, const InT* in, AccT* acc);

// acc[p][o] = sum_c x[p][c] * w[c][o] for `positions` rows: DENSE (InT =
// uint8_t or int8_t codes, 1 row) and the pointwise stage of SEPARABLE (InT = AccT)
// (pointwise_scalar.cc). Event: skips zero inputs, synops from row_nnz.
template <typename AccT, typename InT>
void PointwiseEvent(const InT* x, int64_t positions, int C, int O, const int16_t* w,
                    const std::vector<int32_t>& row_nnz, AccT* acc, int64_t* synops);
template <typename AccT, typename InT>
void PointwiseDense(const InT* x, int64_t positions, int C, int O, const int16_t* w, AccT* acc);
template <typename InT>
int64_t PointwiseSynops(const InT* x, int64_t positions, int C, const std::vector<int32_t>& row_nnz);

// Requantization of kinds 1-4 (requantize.cc): codes into `codes` (uint8, or
// int8 bytes clipped to the signed range when out_signed), or (raw last
// layer) floats into `raw`. Returns events_out.
template <typename AccT>
int64_t Requantize(const Layer& L, const AccT* acc, uint8_t* codes, float* raw);

// MAXPOOL / AVGPOOL (pool.cc), unsigned codes only. Returns events_out; sets *synops.
int64_t Pool(const Layer& L, const uint8_t* in, uint8_t* out, int64_t* synops);

// ADD (add.cc): q = clip(rhu(qa * 2^add_sa + qb * 2^add_sb, add_d)) per
// element into `out` (uint8 or int8 bytes). Returns events_out.
int64_t Add(const Layer& L, const uint8_t* a, const uint8_t* b, uint8_t* out);

}  // namespace keras_nna

#endif  // KERAS_NNA_RUNTIME_CC_KERNELS_SCALAR_H_
