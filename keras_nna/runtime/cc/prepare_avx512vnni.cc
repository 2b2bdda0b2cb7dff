// Preparation of a validated program for the AVX-512 VNNI kernels: weight
// packing, int32 depthwise weights, vector requantization parameters and
// synops tables. Runs after ParseProgram() accepted the program (the parser
// never builds SIMD layouts). Each layout is built only when the CPU has
// VNNI and its kernel applies (int32 accumulation, padded input <= 2^28
// bytes, unsigned input codes); an empty layout sends the layer to the
// portable kernels.
#include <algorithm>

#include "avx512vnni_common.h"
#include "kernels_avx512vnni.h"
#include "run_image.h"

namespace keras_nna {
namespace {

// Requantization parameters as int64 [3][rq_pad]: m, n + 2^(sh-1), sh;
// channel o at o % rq_pad (tiled to 16 when out_c divides 16).
void PackRequant(Layer* L) {
  const int O = L->out_c;
  const int P = O % 16 == 0 ? O : 16 % O == 0 ? 16 : (O + 15) / 16 * 16;
  L->rq_pad = P;
  L->rq_v.assign(3 * size_t(P), 0);
  for (int i = 0; i < P; ++i) {
    const int o = i % O;
    if (P % O != 0 && i >= O) break;
    L->rq_v[i] = L->rq_m[o];
    L->rq_v[P + i] = L->rq_n[o] + (int64_t(1) << (L->rq_sh[o] - 1));  // |n| < 2^53: no overflow
    L->rq_v[2 * P + i] = L->rq_sh[o];
  }
}

// DEPTHWISE / SEPARABLE (int32, synops table built): w as int32 [tap][CP];
// SEPARABLE with |depthwise acc| <= 32767 also w2 as int16
// [out block of 16][channel pair][16 outputs][2 channels].
void PackDepthwise(Layer* L) {
  const int64_t Hp = int64_t(L->in_h) + L->pad_top + L->pad_bottom;
  const int64_t Wp = int64_t(L->in_w) + L->pad_left + L->pad_right;
  if (Hp * Wp * L->in_c > kMaxTensorElements) return;
  if (L->kind == kSeparable && L->inner_max > 32767) return;
  const int C = L->in_c, CP = L->syn_cpad, taps = L->kh * L->kw;
  L->w_dw32.assign(size_t(taps) * CP, 0);
  for (int t = 0; t < taps; ++t)
    for (int c = 0; c < C; ++c) L->w_dw32[size_t(t) * CP + c] = L->w[size_t(t) * C + c];
  if (L->kind != kSeparable) return;
  const int O = L->out_c, OB = (O + 15) / 16, K = (C + 1) / 2;
  L->row2_nnz16.assign(CP, 0);
  for (int c = 0; c < C; ++c) L->row2_nnz16[c] = L->row2_nnz[c];
  L->w2_vnni.assign(size_t(OB) * K * 32, 0);
  for (int ob = 0; ob < OB; ++ob)
    for (int c = 0; c < C; ++c)
      for (int o = 0; o < 16 && ob * 16 + o < O; ++o)
        L->w2_vnni[((size_t(ob) * K + c / 2) * 16 + o) * 2 + c % 2] = L->w2[size_t(c) * O + ob * 16 + o];
}

// CONV / DENSE (int32): w as int8 [out block of 16][tap][channel group of 4]
// [16 outputs][4 channels] (channels zero-padded to a multiple of 4 per tap),
// and the byte offset of each (tap, group) in the padded input.
void PackConv(Layer* L) {
  const int C = L->in_c, G = (C + 3) / 4, taps = L->kh * L->kw;
  const int O = L->out_c, OB = (O + 15) / 16;
  const int64_t Wp = int64_t(L->in_w) + L->pad_left + L->pad_right;
  if ((int64_t(L->in_h) + L->pad_top + L->pad_bottom) * Wp * 4 * G > kMaxTensorElements) return;
  L->vnni_k4 = int64_t(taps) * G;
  L->w_vnni.assign(size_t(OB) * L->vnni_k4 * 64, 0);
  for (int ob = 0; ob < OB; ++ob)
    for (int t = 0; t < taps; ++t)
      for (int c = 0; c < C; ++c)
        for (int o = 0; o < 16 && ob * 16 + o < O; ++o) {
          const size_t dst = ((size_t(ob) * taps + t) * G + c / 4) * 64 + o * 4 + c % 4;
          L->w_vnni[dst] = int8_t(L->w[(int64_t(t) * C + c) * O + ob * 16 + o]);  // |w| <= 127
        }
  // An offset is < Hp * Wp * 4G <= 2^28 (the window fits the padded input): int32.
  L->vnni_offs.resize(L->vnni_k4);
  for (int t = 0; t < taps; ++t)
    for (int g = 0; g < G; ++g)
      L->vnni_offs[int64_t(t) * G + g] = int32_t(((t / L->kw) * Wp + t % L->kw) * 4 * G + 4 * g);
}

// Signed-input CONV / DENSE (int32): the packed weights plus 128 * sum(w)
// per output channel, wrapped to 32 bits like the kernel's sums.
void PackSigned(Layer* L) {
  PackConv(L);
  if (L->w_vnni.empty()) return;
  const int O = L->out_c;
  const int64_t rows = int64_t(L->kh) * L->kw * L->in_c;
  L->vnni_bias.assign(size_t(O), 0);
  for (int o = 0; o < O; ++o) {
    int64_t sum = 0;  // |sum| <= rows * 128 < 2^36
    for (int64_t r = 0; r < rows; ++r) sum += L->w[r * O + o];
    L->vnni_bias[o] = int32_t(uint32_t(uint64_t(sum) * 128u));
  }
}

}  // namespace

void PrepareLayerVnni(Layer* L) {
  if (L->kind > kDense) return;  // pools, FLATTEN, ADD: portable kernels
  if (!L->raw) PackRequant(L);   // signed or unsigned output codes
  if (L->in_signed) {            // int8 inputs: CONV/DENSE by code + 128, else portable
    if ((L->kind == kConv || L->kind == kDense) && !L->acc_wide) PackSigned(L);
    return;
  }
  const bool conv_kind = L->kind != kDense;
  const bool table = conv_kind && PrepareSynopsTable(L);
  if (table && !L->acc_wide && (L->kind == kDepthwise || L->kind == kSeparable)) PackDepthwise(L);
  if ((L->kind == kConv || L->kind == kDense) && !L->acc_wide) PackConv(L);
}

void PrepareProgram(Program* program) {
  if (!HaveVnni()) return;
  for (Layer& L : program->layers) PrepareLayerVnni(&L);
}

}  // namespace keras_nna
