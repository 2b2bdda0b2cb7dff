// AVX-512 VNNI kernels, compiled with per-function target attributes and
// selected at run time (the library still loads on CPUs without them). Each
// runs only on a layer whose packed layout PrepareProgram() built (non-empty
// w_vnni / w_dw32 / w2_vnni / rq_v / syn_tab, see program.h).
#ifndef KERAS_NNA_RUNTIME_CC_KERNELS_AVX512VNNI_H_
#define KERAS_NNA_RUNTIME_CC_KERNELS_AVX512VNNI_H_

#include <cstdint>
#include <vector>

#include "program.h"

namespace keras_nna {

// True if this CPU has AVX-512 F/BW/DQ/VL/VNNI and KERAS_NNA_NO_SIMD is unset or 0
// (cpu_features.cc; checked once).
bool HaveVnni();

// Packing after validation (prepare_avx512vnni.cc, synops_avx512vnni.cc).
void PrepareLayerVnni(Layer* L);
bool PrepareSynopsTable(Layer* L);  // false: no table (too many classes or bytes)

// CONV or DENSE with int32 accumulation by u8 x s8 dot products on a
// zero-padded copy of the input (`pad`, a work buffer): needs w_vnni
// (conv_dense_avx512vnni.cc).
void ConvDenseVnni(const Layer& L, const uint8_t* in, int32_t* acc, std::vector<uint8_t>* pad);

// Signed (int8) input CONV or DENSE with w_vnni and vnni_bias: the codes + 128
// by vpdpbusd, minus 128 * sum(w) (conv_dense_avx512vnni.cc).
void ConvDenseVnniSigned(const Layer& L, const int8_t* in, int32_t* acc, std::vector<uint8_t>* pad);

// Work buffers of the zero-skipping kernel.
struct SkipBuffers {
  std::vector<uint8_t> pad;    // zero-padded input
  std::vector<uint64_t> bits;  // per padded pixel: bitmap of non-zero 4-channel groups
  std::vector<uint64_t> wm;    // per non-zero window: bitmap of its non-zero (tap, group) pairs
  std::vector<int32_t> idx;    // per tile: the (tap, group) pairs to run
  std::vector<int32_t> act;    // (position, window pixel) of the non-zero windows
};

// CONV or DENSE with w_vnni, skipping all-zero windows and all-zero 4-channel
// groups (conv_skip_avx512vnni.cc). When the fraction of non-zero groups
// exceeds max_density, or in_c > 256, it runs the dense kernel and returns false;
// returns true when it skipped. Same results as ConvDenseVnni.
bool ConvSkipVnni(const Layer& L, const uint8_t* in, int32_t* acc, double max_density, SkipBuffers* sb);

// Event scatter of a CONV or DENSE layer with w_vnni: work is proportional to
// the channel groups of 4 holding a non-zero input code (conv_event_avx512vnni.cc).
void ConvEventVnni(const Layer& L, const uint8_t* in, int32_t* acc, int64_t* synops);

// DEPTHWISE (int32, non-empty w_dw32) vectorised over channels; sets *synops
// (dwconv_dense_avx512vnni.cc).
void DepthwiseDenseVnni(const Layer& L, const uint8_t* in, int32_t* acc, std::vector<uint8_t>* pad,
                        int64_t* synops);

// SEPARABLE (int32, non-empty w2_vnni): depthwise over channels into int16,
// pointwise by int16 pair dot products; sets *synops (both stages).
void SeparableDenseVnni(const Layer& L, const uint8_t* in, int32_t* acc, std::vector<uint8_t>* pad,
                        std::vector<int16_t>* dw16, int64_t* synops);

// Requantization of int32 accumulators to codes (non-empty rq_v); returns
// events_out (requantize_avx512vnni.cc).
int64_t RequantizeVnni(const Layer& L, const int32_t* acc, uint8_t* codes);

// Synops of a conv-kind layer from its table (non-empty syn_tab).
int64_t TableSynops(const Layer& L, const uint8_t* in);

}  // namespace keras_nna

#endif  // KERAS_NNA_RUNTIME_CC_KERNELS_AVX512VNNI_H_
