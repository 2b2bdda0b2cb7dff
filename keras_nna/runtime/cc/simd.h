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

// Parse-time preparation for simd_dense.cc (called by PrepareVnni): synops
// tables of the conv kinds and the SEPARABLE int16 pointwise layout.
void PrepareDense(Layer* L);

// CONV or DENSE with int32 accumulation (acc_wide = 0) by u8 x s8 dot products
// on a zero-padded copy of the input (`pad`, a work buffer). Requires a layer
// prepared by PrepareVnni (non-empty w_vnni).
void ConvDenseVnni(const Layer& L, const uint8_t* in, int32_t* acc,
                   std::vector<uint8_t>* pad);

// DEPTHWISE (int32, non-empty syn_tab) vectorised over channels; sets *synops.
void DepthwiseDenseVnni(const Layer& L, const uint8_t* in, int32_t* acc,
                        std::vector<uint8_t>* pad, int64_t* synops);

// SEPARABLE (int32, non-empty w2_vnni): depthwise over channels into int16,
// pointwise by int16 pair dot products; sets *synops (both stages).
void SeparableDenseVnni(const Layer& L, const uint8_t* in, int32_t* acc,
                        std::vector<uint8_t>* pad, std::vector<int16_t>* dw16,
                        int64_t* synops);

// Requantization of int32 accumulators to codes (non-empty rq_v); returns
// events_out.
int64_t RequantizeVnni(const Layer& L, const int32_t* acc, uint8_t* codes);

// Synops of a conv-kind layer from its table (non-empty syn_tab).
int64_t TableSynops(const Layer& L, const uint8_t* in);

// Event scatter of a CONV or DENSE layer prepared by PrepareVnni: work is
// proportional to the channel groups of 4 holding a non-zero input code.
void ConvEventVnni(const Layer& L, const uint8_t* in, int32_t* acc, int64_t* synops);

}  // namespace keras_nna

#endif  // KERAS_NNA_RUNTIME_CC_SIMD_H_
