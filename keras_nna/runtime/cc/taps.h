// Output positions one input coordinate reaches in a strided, padded window
// (event kernels, synops counting and the synops tables of the conv kinds).
#ifndef KERAS_NNA_RUNTIME_CC_TAPS_H_
#define KERAS_NNA_RUNTIME_CC_TAPS_H_

#include <cstdint>
#include <vector>

namespace keras_nna {

// Pairs (k, o) with o*stride - pad + k == i, 0 <= k < ksize, 0 <= o < out,
// for every input coordinate i, in CSR form.
// Coordinates are int32: a layer may be 65,535 rows or columns (u16 fields),
// so an int16 `o` wrapped negative past 32,767 (docs/bytecode.md, "Bounds").
struct Taps {
  std::vector<int32_t> start;  // per input coordinate, index into k/o (<= in*ksize < 2^20)
  std::vector<int32_t> k, o;   // k < ksize <= 15 (conv kernels), o < out <= 65,535
  Taps(int in, int ksize, int stride, int pad, int out) : start(in + 1, 0) {
    for (int i = 0; i < in; ++i) {
      start[i] = int32_t(k.size());
      for (int kk = 0; kk < ksize; ++kk) {
        const int t = i + pad - kk;
        if (t < 0) break;
        if (t % stride) continue;
        if (t / stride >= out) continue;
        k.push_back(kk);
        o.push_back(t / stride);
      }
    }
    start[in] = int32_t(k.size());
  }
};

}  // namespace keras_nna

#endif  // KERAS_NNA_RUNTIME_CC_TAPS_H_
