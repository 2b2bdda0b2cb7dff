// SIMD dense kernels, compiled with per-function target attributes and
// selected at run time (the library still loads on CPUs without them).
#ifndef KERAS_NNA_RUNTIME_CC_SIMD_H_
#define KERAS_NNA_RUNTIME_CC_SIMD_H_

#include <cstdint>
#include <vector>

#include "program.h"

namespace keras_nna {

// True if this CPU has AVX-512 VNNI (checked once).
bool HaveVnni();

// Re-lays out a CONV/DENSE layer's weights for ConvDenseVnni (no-op when the
// CPU lacks VNNI or the layer accumulates in int64).
void PrepareVnni(Layer* L);

// CONV or DENSE with int32 accumulation (acc_wide = 0) by u8 x s8 dot products.
// Requires a layer prepared by PrepareVnni (non-empty w_vnni). `col` is a work buffer.
void ConvDenseVnni(const Layer& L, const uint8_t* in, int32_t* acc,
                   std::vector<uint8_t>* col);

// Event scatter of a CONV or DENSE layer prepared by PrepareVnni: work is
// proportional to the channel groups of 4 holding a non-zero input code.
void ConvEventVnni(const Layer& L, const uint8_t* in, int32_t* acc, int64_t* synops);

}  // namespace keras_nna

#endif  // KERAS_NNA_RUNTIME_CC_SIMD_H_
