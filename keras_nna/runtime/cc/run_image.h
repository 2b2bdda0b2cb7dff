// Running a validated program: the kernel-specific preparation of a parsed
// Program and the per-image runner (docs/bytecode.md). Kernels run only on a
// Program that ParseProgram() validated (program.h): shapes are consistent
// and arithmetic bounds proven, so they do no checking of their own.
#ifndef KERAS_NNA_RUNTIME_CC_RUN_IMAGE_H_
#define KERAS_NNA_RUNTIME_CC_RUN_IMAGE_H_

#include <cstdint>
#include <vector>

#include "kernels_avx512vnni.h"
#include "program.h"

namespace keras_nna {

// Kernel choice for the conv kinds and DENSE.
//   kEvent: scatter from non-zero inputs (work proportional to events).
//   kDense: direct dot products over every input (SIMD where available).
//   kSkip:  dense dot products over the non-zero 4-channel groups and
//           windows only (AVX-512 VNNI CONV/DENSE; elsewhere as kDense).
//   kAuto:  per layer and image, by the input density (run_image.cc).
enum class Mode { kAuto, kEvent, kDense, kSkip };

// Per-thread work buffers, sized on first use and reused across images.
struct Scratch {
  std::vector<uint8_t> act[2];     // ping-pong code buffers
  std::vector<uint8_t> held;       // outputs read beyond the next layer (Layer::held_off)
  std::vector<const uint8_t*> outs;  // per producer (0 = image): its codes, this image
  std::vector<int64_t> nz;         // per producer: its non-zero codes (-1: not counted)
  std::vector<int64_t> acc, acc2;  // int32 accumulators use the same storage
  std::vector<uint8_t> pad;        // SIMD dense path: zero-padded input
  std::vector<int16_t> dw16;       // SIMD SEPARABLE: depthwise stage output
  SkipBuffers skip;                // SIMD zero-skipping CONV/DENSE
};

// After ParseProgram() accepted *program: builds the layouts the kernels of
// this CPU want (AVX-512 VNNI weight packing, synops tables, vector
// requantization parameters; prepare_avx512vnni.cc). Without it the scalar
// kernels run. Call once, before the program is shared between threads.
void PrepareProgram(Program* program);

// Runs one image (in_h*in_w*in_c codes, HWC) through the program. Writes the
// program's output (out_h*out_w*out_c floats, HWC) to `out` and
// n_layers*kNumStats statistics to `stats`.
void RunImage(const Program& program, const uint8_t* image, Mode mode, float* out, int64_t* stats,
              Scratch* scratch);

}  // namespace keras_nna

#endif  // KERAS_NNA_RUNTIME_CC_RUN_IMAGE_H_
