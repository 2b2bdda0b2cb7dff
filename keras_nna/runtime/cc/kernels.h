// Integer kernels of the keras_nna emulator. They run only on a Program that
// ParseProgram() validated (program.h): shapes are consistent and arithmetic
// bounds proven, so the kernels do no checking of their own.
#ifndef KERAS_NNA_RUNTIME_CC_KERNELS_H_
#define KERAS_NNA_RUNTIME_CC_KERNELS_H_

#include <cstdint>
#include <vector>

#include "program.h"

namespace keras_nna {

// Kernel choice for the conv kinds and DENSE.
//   kEvent: scatter from non-zero inputs (work proportional to events).
//   kDense: direct dot products over every input (SIMD where available).
//   kAuto:  per layer and image, by the input density (see kAutoDensity).
enum class Mode { kAuto, kEvent, kDense };

// Output positions one input coordinate reaches: pairs (k, o) with
// o*stride - pad + k == i, 0 <= k < ksize, 0 <= o < out.
// Coordinates are int32: a layer may be 65,535 rows or columns (u16 fields),
// so an int16 `o` wrapped negative past 32,767 (docs/bytecode.md, "Bounds").
struct Taps {  // (used by the event kernels and the synops tables)
  std::vector<int32_t> start;  // per input coordinate, index into k/o (<= in*ksize < 2^20)
  std::vector<int32_t> k, o;   // k < 15 (conv kernels), o < out <= 65,535
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

// Per-thread work buffers, sized on first use and reused across images.
struct Scratch {
  std::vector<uint8_t> act[2];
  std::vector<int64_t> acc, acc2;  // int32 accumulators use the same storage
  std::vector<uint8_t> pad;        // SIMD dense path: zero-padded input
  std::vector<int16_t> dw16;       // SIMD SEPARABLE: depthwise stage output
};

// Runs one image (in_h*in_w*in_c codes, HWC) through the program. Writes the
// program's output (out_h*out_w*out_c floats, HWC) to `out` and
// n_layers*kNumStats statistics to `stats`.
void RunImage(const Program& program, const uint8_t* image, Mode mode,
              float* out, int64_t* stats, Scratch* scratch);

// True if this CPU runs the AVX-512 VNNI dense kernels.
bool HaveVnni();

}  // namespace keras_nna

#endif  // KERAS_NNA_RUNTIME_CC_KERNELS_H_
