// Per-image runner: picks a kernel per layer (mode, input density, CPU, input
// signedness), routes activations through the per-thread buffers (two
// ping-pong buffers, plus the held block for outputs read beyond the next
// layer) and records statistics. Signed codes are int8 bytes; they run the
// portable kernels (the AVX-512 VNNI layouts exist only for unsigned inputs).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "kernels_avx512vnni.h"
#include "kernels_scalar.h"
#include "run_image.h"

namespace keras_nna {
namespace {

// Auto mode: the event kernel runs when the fraction of non-zero inputs is
// below a threshold per kernel family. Measured on a shared 2-core Zen4 (noisy;
// AkidaNet 0.25 layers at ~45 % density, 1 thread):
//   - scalar conv / pointwise / dense: the event kernel has the same inner loop
//     as the dense one and skips zeros, so it is never slower: always event.
//   - AVX-512 (int32 accumulation): the register-blocked dense kernels
//     (conv_dense_avx512vnni.cc, dwconv_dense_avx512vnni.cc) run conv,
//     separable and depthwise layers ~8-12x faster than the event kernels at
//     ~45 % density; event cost is linear in the events, so it wins only below
//     a few percent.
constexpr double kAutoDensityScalar = 1.01;
constexpr double kAutoDensityVnni = 0.04;
constexpr double kAutoDensityDepthwise = 0.1;  // scalar depthwise / separable
constexpr double kAutoDensityDepthwiseVnni = 0.03;
// Auto, AVX-512 VNNI CONV/DENSE above the event threshold: the zero-skipping
// kernel runs when at most this fraction of the input's 4-channel groups is
// non-zero, else the dense kernel. Measured (AkidaNet 0.25 convs, 1 thread):
// with nothing to skip the skip kernel costs ~1.3-2x the dense one (bitmaps,
// per-tile lists); it won only where ~25 % of the groups were non-zero.
constexpr double kAutoSkipGroupDensity = 0.3;
constexpr int kAutoSkipMinChannels = 16;

bool UseEvent(Mode mode, double density, double threshold) {
  if (mode != Mode::kAuto) return mode == Mode::kEvent;
  return density < threshold;
}

// CONV or DENSE into acc; sets *synops. The VNNI calls are reached only with
// InT = uint8_t, or int8_t for the signed kernel (w_vnni and vnni_bias).
template <typename AccT, typename InT>
void RunConvOrDense(const Layer& L, const InT* in, double density, Mode mode, Scratch* s,
                    AccT* acc, int64_t* synops) {
  constexpr bool k32 = std::is_same<AccT, int32_t>::value;
  const bool vnni = k32 && std::is_same<InT, uint8_t>::value && !L.w_vnni.empty();
  const bool vnni_signed = k32 && std::is_same<InT, int8_t>::value && !L.vnni_bias.empty();
  const uint8_t* in8 = reinterpret_cast<const uint8_t*>(in);  // used only when InT is uint8_t
  int32_t* acc32 = reinterpret_cast<int32_t*>(acc);  // used only when AccT is int32_t
  const bool conv = L.kind == kConv;
  if (UseEvent(mode, density, vnni || vnni_signed ? kAutoDensityVnni : kAutoDensityScalar)) {
    if (vnni) ConvEventVnni(L, in8, acc32, synops);
    else if (conv) ConvEvent(L, in, acc, synops);
    else PointwiseEvent(in, 1, L.in_c, L.out_c, L.w.data(), L.row_nnz, acc, synops);
    return;
  }
  // Auto skips only layers of >= 16 input channels: with fewer, the tiles'
  // lists cost more than the skipped dot products (measured).
  if (vnni && (mode == Mode::kSkip || (mode == Mode::kAuto && L.in_c >= kAutoSkipMinChannels))) {
    ConvSkipVnni(L, in8, acc32, mode == Mode::kSkip ? 2.0 : kAutoSkipGroupDensity, &s->skip);
  } else if (vnni) {
    ConvDenseVnni(L, in8, acc32, &s->pad);
  } else if (vnni_signed) {
    ConvDenseVnniSigned(L, reinterpret_cast<const int8_t*>(in), acc32, &s->pad);
  } else if (conv) {
    ConvDense(L, in, acc);
  } else {
    PointwiseDense(in, 1, L.in_c, L.out_c, L.w.data(), acc);
  }
  if (!conv) *synops = PointwiseSynops(in, 1, L.in_c, L.row_nnz);
  else if (HaveVnni() && !L.syn_tab.empty()) *synops = TableSynops(L, in8);
  else *synops = ConvSynops(L, in);
}

// DEPTHWISE or SEPARABLE into acc; sets *synops (both stages).
template <typename AccT, typename InT>
void RunDepthwise(const Layer& L, const InT* in, double density, Mode mode, Scratch* s,
                  AccT* acc, int64_t* synops) {
  const bool sep = L.kind == kSeparable;
  const bool vnni = std::is_same<AccT, int32_t>::value && std::is_same<InT, uint8_t>::value &&
                    (sep ? !L.w2_vnni.empty() : !L.w_dw32.empty());
  const bool event = UseEvent(mode, density, vnni ? kAutoDensityDepthwiseVnni : kAutoDensityDepthwise);
  if (!event && vnni) {
    int32_t* acc32 = reinterpret_cast<int32_t*>(acc);
    const uint8_t* in8 = reinterpret_cast<const uint8_t*>(in);
    if (sep) SeparableDenseVnni(L, in8, acc32, &s->pad, &s->dw16, synops);
    else DepthwiseDenseVnni(L, in8, acc32, &s->pad, synops);
    return;
  }
  AccT* dw = sep ? reinterpret_cast<AccT*>(s->acc2.data()) : acc;
  if (event) {
    DepthwiseEvent(L, in, dw, synops);
  } else {
    DepthwiseDense(L, in, dw);
    *synops = ConvSynops(L, in);
  }
  if (!sep) return;
  const int64_t positions = int64_t(L.out_h) * L.out_w, n = positions * L.in_c;
  int64_t nz = 0;
  for (int64_t k = 0; k < n; ++k) nz += dw[k] != 0;
  int64_t syn2 = 0;
  if (UseEvent(mode, n ? double(nz) / double(n) : 0.0, kAutoDensityScalar)) {
    PointwiseEvent(dw, positions, L.in_c, L.out_c, L.w2.data(), L.row2_nnz, acc, &syn2);
  } else {
    PointwiseDense(dw, positions, L.in_c, L.out_c, L.w2.data(), acc);
    syn2 = PointwiseSynops(dw, positions, L.in_c, L.row2_nnz);
  }
  *synops += syn2;
}

template <typename AccT, typename InT>
int64_t RunWeighted(const Layer& L, const InT* in, double density, Mode mode, Scratch* s,
                    uint8_t* codes, float* raw, int64_t* synops) {
  AccT* acc = reinterpret_cast<AccT*>(s->acc.data());
  if (L.kind == kConv || L.kind == kDense) RunConvOrDense(L, in, density, mode, s, acc, synops);
  else RunDepthwise(L, in, density, mode, s, acc, synops);
  return Requantize(L, acc, codes, raw);
}

template <typename AccT>
int64_t RunWeightedAnySign(const Layer& L, const uint8_t* in, double density, Mode mode, Scratch* s,
                           uint8_t* codes, float* raw, int64_t* synops) {
  if (L.in_signed) {
    return RunWeighted<AccT>(L, reinterpret_cast<const int8_t*>(in), density, mode, s, codes, raw, synops);
  }
  return RunWeighted<AccT>(L, in, density, mode, s, codes, raw, synops);
}

}  // namespace

void RunImage(const Program& P, const uint8_t* image, Mode mode, float* out, int64_t* stats, Scratch* s) {
  for (auto& a : s->act) if (a.size() < P.max_elems) a.resize(P.max_elems);
  if (s->acc.size() < P.max_elems) s->acc.resize(P.max_elems);
  if (s->acc2.size() < P.max_elems) s->acc2.resize(P.max_elems);
  if (s->held.size() < size_t(P.held_bytes)) s->held.resize(size_t(P.held_bytes));
  const int n = int(P.layers.size());
  // outs[j]: the tensor of producer j (0 = the image, j >= 1 = layer j-1's
  // output); nz[j]: its non-zero codes (the image's counted on first use).
  s->outs.assign(size_t(n) + 1, nullptr);
  s->nz.assign(size_t(n) + 1, -1);
  s->outs[0] = image;
  const uint8_t* cur = image;
  for (int i = 0; i < n; ++i) {
    const Layer& L = P.layers[i];
    int64_t* st = stats + int64_t(i) * kNumStats;
    // Ping-pong: layer i's src is layer i-1 (the other buffer), the image or
    // a held output, so dst never aliases an input.
    uint8_t* dst = L.held_off >= 0 ? s->held.data() + L.held_off : s->act[i & 1].data();
    const uint8_t* in = s->outs[L.src];
    if (s->nz[L.src] < 0) s->nz[L.src] = CountNonZero(in, L.in_elems);  // only the image
    const int64_t ev = s->nz[L.src];
    st[kDenseMacs] = L.dense_macs;
    st[kWeightBytes] = L.weight_bytes;
    float* raw = (L.raw && i == n - 1) ? out : nullptr;
    int64_t syn = 0, events_out = 0;
    if (L.kind == kAdd) {
      const uint8_t* in2 = s->outs[L.src2];
      if (s->nz[L.src2] < 0) s->nz[L.src2] = CountNonZero(in2, L.in_elems);
      const int64_t ev2 = s->nz[L.src2];
      st[kEventsIn] = ev + ev2;
      st[kActBytesIn] = std::min((L.in_elems * L.in_bits + 7) / 8 + (L.in_elems * L.in2_bits + 7) / 8,
                                 (ev * (L.in_bits + 16) + ev2 * (L.in2_bits + 16) + 7) / 8);
      syn = ev + ev2;  // one addition per input event
      events_out = Add(L, in, in2, dst);
    } else {
      st[kEventsIn] = ev;
      st[kActBytesIn] = std::min((L.in_elems * L.in_bits + 7) / 8, (ev * (L.in_bits + 16) + 7) / 8);
      const double density = L.in_elems ? double(ev) / double(L.in_elems) : 0.0;
      switch (L.kind) {
        case kConv: case kDepthwise: case kSeparable: case kDense:
          events_out = L.acc_wide ? RunWeightedAnySign<int64_t>(L, in, density, mode, s, dst, raw, &syn)
                                  : RunWeightedAnySign<int32_t>(L, in, density, mode, s, dst, raw, &syn);
          break;
        case kMaxPool: case kAvgPool:  // unsigned inputs only (parser)
          events_out = Pool(L, in, dst, &syn);
          break;
        default:  // kFlatten: same bytes, signed or not
          std::memcpy(dst, in, size_t(L.in_elems));
          events_out = ev;
          break;
      }
    }
    st[kSynops] = syn;
    st[kEventsOut] = events_out;
    s->outs[i + 1] = dst;
    s->nz[i + 1] = events_out;
    cur = dst;
  }
  const Layer& last = P.layers.back();
  if (!last.raw) {
    const double step = std::ldexp(1.0, -last.out_exp);  // q * step is exact in double
    if (last.out_signed) {
      const int8_t* q = reinterpret_cast<const int8_t*>(cur);
      for (int64_t k = 0; k < last.out_elems; ++k) out[k] = float(double(q[k]) * step);
    } else {
      for (int64_t k = 0; k < last.out_elems; ++k) out[k] = float(double(cur[k]) * step);
    }
  }
}

}  // namespace keras_nna
