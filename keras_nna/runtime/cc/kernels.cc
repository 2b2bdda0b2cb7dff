// Integer kernels: event scatter and dense direct convolution per layer kind,
// requantization, pooling, statistics (docs/bytecode.md).
#include "kernels.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "simd.h"

namespace keras_nna {
namespace {

// Auto mode: the event kernel runs when the fraction of non-zero inputs is
// below a threshold per kernel family. Measured on a shared 2-core Zen4 (noisy;
// AkidaNet 0.25 layers at ~45 % density, 1 thread):
//   - scalar conv / pointwise / dense: the event kernel has the same inner loop
//     as the dense one and skips zeros, so it is never slower: always event.
//   - AVX-512 (int32 accumulation): the register-blocked dense kernels
//     (simd_dense.cc) run conv, separable and depthwise layers ~8-12x faster
//     than the event kernels at ~45 % density; event cost is linear in the
//     events, so it wins only below a few percent.
constexpr double kAutoDensityScalar = 1.01;
constexpr double kAutoDensityVnni = 0.04;
constexpr double kAutoDensityDepthwise = 0.1;     // scalar depthwise / separable
constexpr double kAutoDensityDepthwiseVnni = 0.03;

int64_t CountNonZero(const uint8_t* p, int64_t n) {
  int64_t c = 0;
  for (int64_t i = 0; i < n; ++i) c += p[i] != 0;
  return c;
}

// ---------------------------------------------------------------- CONV ----
template <typename AccT>
void ConvEvent(const Layer& L, const uint8_t* in, AccT* acc, int64_t* synops) {
  const int C = L.in_c, O = L.out_c;
  std::fill(acc, acc + L.out_elems, AccT(0));
  Taps ty(L.in_h, L.kh, L.stride_h, L.pad_top, L.out_h);
  Taps tx(L.in_w, L.kw, L.stride_w, L.pad_left, L.out_w);
  std::vector<int> nzc(C);
  int64_t syn = 0;
  for (int y = 0; y < L.in_h; ++y) {
    for (int x = 0; x < L.in_w; ++x) {
      const uint8_t* px = in + (int64_t(y) * L.in_w + x) * C;
      int n = 0;
      for (int c = 0; c < C; ++c) if (px[c]) nzc[n++] = c;
      if (!n) continue;
      for (int a = ty.start[y]; a < ty.start[y + 1]; ++a) {
        for (int b = tx.start[x]; b < tx.start[x + 1]; ++b) {
          const int tap = ty.k[a] * L.kw + tx.k[b];
          AccT* dst = acc + (int64_t(ty.o[a]) * L.out_w + tx.o[b]) * O;
          for (int j = 0; j < n; ++j) {
            const int c = nzc[j];
            const int64_t r = int64_t(tap) * C + c;
            syn += L.row_nnz[r];
            const int16_t* w = &L.w[r * O];
            const AccT v = px[c];
            for (int o = 0; o < O; ++o) dst[o] += v * AccT(w[o]);
          }
        }
      }
    }
  }
  *synops = syn;
}

template <typename AccT>
void ConvDense(const Layer& L, const uint8_t* in, AccT* acc) {
  const int C = L.in_c, O = L.out_c;
  for (int oy = 0; oy < L.out_h; ++oy) {
    for (int ox = 0; ox < L.out_w; ++ox) {
      AccT* dst = acc + (int64_t(oy) * L.out_w + ox) * O;
      std::fill(dst, dst + O, AccT(0));
      for (int ky = 0; ky < L.kh; ++ky) {
        const int iy = oy * L.stride_h - L.pad_top + ky;
        if (iy < 0 || iy >= L.in_h) continue;
        for (int kx = 0; kx < L.kw; ++kx) {
          const int ix = ox * L.stride_w - L.pad_left + kx;
          if (ix < 0 || ix >= L.in_w) continue;
          const uint8_t* px = in + (int64_t(iy) * L.in_w + ix) * C;
          const int16_t* w = &L.w[int64_t(ky * L.kw + kx) * C * O];
          for (int c = 0; c < C; ++c, w += O) {
            const AccT v = px[c];
            for (int o = 0; o < O; ++o) dst[o] += v * AccT(w[o]);
          }
        }
      }
    }
  }
}

// Synops of a conv-kind layer without doing the MACs (dense kernels).
// `per_row(tap, c)` = non-zero weights an event on channel c meets at tap.
template <typename F>
int64_t CountSynops(const Layer& L, const uint8_t* in, F per_row) {
  Taps ty(L.in_h, L.kh, L.stride_h, L.pad_top, L.out_h);
  Taps tx(L.in_w, L.kw, L.stride_w, L.pad_left, L.out_w);
  int64_t syn = 0;
  for (int y = 0; y < L.in_h; ++y) {
    for (int x = 0; x < L.in_w; ++x) {
      const uint8_t* px = in + (int64_t(y) * L.in_w + x) * L.in_c;
      for (int c = 0; c < L.in_c; ++c) {
        if (!px[c]) continue;
        for (int a = ty.start[y]; a < ty.start[y + 1]; ++a)
          for (int b = tx.start[x]; b < tx.start[x + 1]; ++b)
            syn += per_row(ty.k[a] * L.kw + tx.k[b], c);
      }
    }
  }
  return syn;
}

// ----------------------------------------------------------- DEPTHWISE ----
template <typename AccT>
void DepthwiseEvent(const Layer& L, const uint8_t* in, AccT* acc, int64_t* synops) {
  const int C = L.in_c;
  std::fill(acc, acc + int64_t(L.out_h) * L.out_w * C, AccT(0));
  Taps ty(L.in_h, L.kh, L.stride_h, L.pad_top, L.out_h);
  Taps tx(L.in_w, L.kw, L.stride_w, L.pad_left, L.out_w);
  int64_t syn = 0;
  for (int y = 0; y < L.in_h; ++y) {
    for (int x = 0; x < L.in_w; ++x) {
      const uint8_t* px = in + (int64_t(y) * L.in_w + x) * C;
      for (int c = 0; c < C; ++c) {
        if (!px[c]) continue;
        const AccT v = px[c];
        for (int a = ty.start[y]; a < ty.start[y + 1]; ++a) {
          for (int b = tx.start[x]; b < tx.start[x + 1]; ++b) {
            const int16_t w = L.w[int64_t(ty.k[a] * L.kw + tx.k[b]) * C + c];
            syn += w != 0;
            acc[(int64_t(ty.o[a]) * L.out_w + tx.o[b]) * C + c] += v * AccT(w);
          }
        }
      }
    }
  }
  *synops = syn;
}

template <typename AccT>
void DepthwiseDense(const Layer& L, const uint8_t* in, AccT* acc) {
  const int C = L.in_c;
  for (int oy = 0; oy < L.out_h; ++oy) {
    for (int ox = 0; ox < L.out_w; ++ox) {
      AccT* dst = acc + (int64_t(oy) * L.out_w + ox) * C;
      std::fill(dst, dst + C, AccT(0));
      for (int ky = 0; ky < L.kh; ++ky) {
        const int iy = oy * L.stride_h - L.pad_top + ky;
        if (iy < 0 || iy >= L.in_h) continue;
        for (int kx = 0; kx < L.kw; ++kx) {
          const int ix = ox * L.stride_w - L.pad_left + kx;
          if (ix < 0 || ix >= L.in_w) continue;
          const uint8_t* px = in + (int64_t(iy) * L.in_w + ix) * C;
          const int16_t* w = &L.w[int64_t(ky * L.kw + kx) * C];
          for (int c = 0; c < C; ++c) dst[c] += AccT(px[c]) * AccT(w[c]);
        }
      }
    }
  }
}

// ------------------------------------------------- pointwise / DENSE ------
// acc[p][o] = sum_c x[p][c] * w[c][o] for `positions` rows. Event: skip zero
// inputs and count synops from row_nnz.
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

// ------------------------------------------------------ requantization ----
// Codes into `codes`, or (raw last layer) floats into `raw`. Returns events_out.
// The body is compiled twice (baseline and AVX-512, which vectorises the
// per-channel 64-bit multiply and variable arithmetic shift); dispatch per layer.
#define KERAS_NNA_REQUANTIZE_BODY                                                    \
  const int O = L.out_c;                                                             \
  const int64_t positions = int64_t(L.out_h) * L.out_w;                              \
  const int64_t qmax = (int64_t(1) << L.out_bits) - 1;                               \
  const int32_t* m = L.rq_m.data();                                                  \
  const int64_t* n = L.rq_n.data();                                                  \
  std::vector<int64_t> sh(O), half(O);                                               \
  for (int o = 0; o < O; ++o) {                                                      \
    sh[o] = L.rq_sh[o];                                                              \
    half[o] = int64_t(1) << (sh[o] - 1);                                             \
  }                                                                                  \
  const int64_t* shp = sh.data();                                                    \
  const int64_t* hp = half.data();                                                   \
  int64_t events = 0;                                                                \
  if (L.raw) {                                                                       \
    std::vector<double> scale(O);                                                    \
    for (int o = 0; o < O; ++o) scale[o] = std::ldexp(1.0, -L.rq_sh[o]);             \
    for (int64_t p = 0; p < positions; ++p) {                                        \
      const AccT* a = acc + p * O;                                                   \
      float* r = raw + p * O;                                                        \
      for (int o = 0; o < O; ++o) {                                                  \
        const int64_t z = int64_t(a[o]) * m[o] + n[o];                               \
        r[o] = float(double(z) * scale[o]); /* exact: power-of-two scale */          \
        events += z != 0;                                                            \
      }                                                                              \
    }                                                                                \
    return events;                                                                   \
  }                                                                                  \
  for (int64_t p = 0; p < positions; ++p) {                                          \
    const AccT* a = acc + p * O;                                                     \
    uint8_t* q = codes + p * O;                                                      \
    for (int o = 0; o < O; ++o) {                                                    \
      const int64_t z = int64_t(a[o]) * m[o] + n[o];                                 \
      int64_t v = (z + hp[o]) >> shp[o];                                             \
      v = v < 0 ? 0 : v > qmax ? qmax : v;                                           \
      q[o] = uint8_t(v);                                                             \
      events += v != 0;                                                              \
    }                                                                                \
  }                                                                                  \
  return events;

template <typename AccT>
int64_t RequantizeBase(const Layer& L, const AccT* acc, uint8_t* codes, float* raw) {
  KERAS_NNA_REQUANTIZE_BODY
}

template <typename AccT>
__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl")))
int64_t RequantizeAvx512(const Layer& L, const AccT* acc, uint8_t* codes, float* raw) {
  KERAS_NNA_REQUANTIZE_BODY
}
#undef KERAS_NNA_REQUANTIZE_BODY

template <typename AccT>
int64_t Requantize(const Layer& L, const AccT* acc, uint8_t* codes, float* raw) {
  if (std::is_same<AccT, int32_t>::value && codes != nullptr && raw == nullptr && !L.rq_v.empty()) {
    return RequantizeVnni(L, reinterpret_cast<const int32_t*>(acc), codes);
  }
  return HaveVnni() ? RequantizeAvx512(L, acc, codes, raw) : RequantizeBase(L, acc, codes, raw);
}

template <typename AccT>
int64_t RunWeighted(const Layer& L, const uint8_t* in, double density, Mode mode,
                    Scratch* s, uint8_t* codes, float* raw, int64_t* synops) {
  AccT* acc = reinterpret_cast<AccT*>(s->acc.data());
  const int64_t positions = int64_t(L.out_h) * L.out_w;
  const bool vnni = std::is_same<AccT, int32_t>::value && !L.w_vnni.empty();
  auto use_event = [&](double d, double threshold) {
    if (mode != Mode::kAuto) return mode == Mode::kEvent;
    return d < threshold;
  };
  const bool dw_vnni = std::is_same<AccT, int32_t>::value &&
                       (L.kind == kSeparable ? !L.w2_vnni.empty() : !L.w_dw32.empty());
  const bool event = use_event(density, L.kind == kDepthwise || L.kind == kSeparable
                                            ? (dw_vnni ? kAutoDensityDepthwiseVnni : kAutoDensityDepthwise)
                                        : vnni ? kAutoDensityVnni : kAutoDensityScalar);
  switch (L.kind) {
    case kConv:
      if (event) {
        if (vnni) ConvEventVnni(L, in, reinterpret_cast<int32_t*>(acc), synops);
        else ConvEvent(L, in, acc, synops);
      } else {
        if (vnni) ConvDenseVnni(L, in, reinterpret_cast<int32_t*>(acc), &s->pad);
        else ConvDense(L, in, acc);
        if (HaveVnni() && !L.syn_tab.empty()) *synops = TableSynops(L, in);
        else *synops = CountSynops(L, in, [&](int tap, int c) { return L.row_nnz[int64_t(tap) * L.in_c + c]; });
      }
      break;
    case kDepthwise:
    case kSeparable: {
      if (!event && dw_vnni) {
        int32_t* acc32 = reinterpret_cast<int32_t*>(acc);
        if (L.kind == kSeparable) SeparableDenseVnni(L, in, acc32, &s->pad, &s->dw16, synops);
        else DepthwiseDenseVnni(L, in, acc32, &s->pad, synops);
        break;
      }
      AccT* dw = L.kind == kDepthwise ? acc : reinterpret_cast<AccT*>(s->acc2.data());
      if (event) {
        DepthwiseEvent(L, in, dw, synops);
      } else {
        DepthwiseDense(L, in, dw);
        *synops = CountSynops(L, in, [&](int tap, int c) { return int(L.w[int64_t(tap) * L.in_c + c] != 0); });
      }
      if (L.kind == kSeparable) {
        const int64_t n = positions * L.in_c;
        int64_t nz = 0;
        for (int64_t k = 0; k < n; ++k) nz += dw[k] != 0;
        const bool event2 = use_event(n ? double(nz) / double(n) : 0.0, kAutoDensityScalar);
        int64_t syn2 = 0;
        if (event2) {
          PointwiseEvent(dw, positions, L.in_c, L.out_c, L.w2.data(), L.row2_nnz, acc, &syn2);
        } else {
          PointwiseDense(dw, positions, L.in_c, L.out_c, L.w2.data(), acc);
          syn2 = PointwiseSynops(dw, positions, L.in_c, L.row2_nnz);
        }
        *synops += syn2;
      }
      break;
    }
    case kDense:
      if (event) {
        if (vnni) ConvEventVnni(L, in, reinterpret_cast<int32_t*>(acc), synops);
        else PointwiseEvent(in, 1, L.in_c, L.out_c, L.w.data(), L.row_nnz, acc, synops);
      } else {
        if (vnni) ConvDenseVnni(L, in, reinterpret_cast<int32_t*>(acc), &s->pad);
        else PointwiseDense(in, 1, L.in_c, L.out_c, L.w.data(), acc);
        *synops = PointwiseSynops(in, 1, L.in_c, L.row_nnz);
      }
      break;
  }
  return Requantize(L, acc, codes, raw);
}

// --------------------------------------------------------------- pools ----
// Number of windows (output positions) containing each input coordinate.
std::vector<int64_t> WindowCounts(int in, int win, int stride, int pad, int out) {
  std::vector<int64_t> cnt(in, 0);
  for (int o = 0; o < out; ++o) {
    const int lo = std::max(o * stride - pad, 0), hi = std::min(o * stride - pad + win, in);
    for (int i = lo; i < hi; ++i) ++cnt[i];
  }
  return cnt;
}

int64_t Pool(const Layer& L, const uint8_t* in, uint8_t* out, int64_t* synops) {
  const int C = L.in_c;
  const auto cy = WindowCounts(L.in_h, L.kh, L.stride_h, L.pad_top, L.out_h);
  const auto cx = WindowCounts(L.in_w, L.kw, L.stride_w, L.pad_left, L.out_w);
  int64_t syn = 0;
  for (int y = 0; y < L.in_h; ++y)
    for (int x = 0; x < L.in_w; ++x)
      syn += cy[y] * cx[x] * CountNonZero(in + (int64_t(y) * L.in_w + x) * C, C);
  *synops = syn;
  const uint64_t qmax = (uint64_t(1) << L.out_bits) - 1;
  std::vector<uint64_t> sum(C);
  int64_t events = 0;
  for (int oy = 0; oy < L.out_h; ++oy) {
    const int y0 = std::max(oy * L.stride_h - L.pad_top, 0);
    const int y1 = std::min(oy * L.stride_h - L.pad_top + L.kh, L.in_h);
    for (int ox = 0; ox < L.out_w; ++ox) {
      const int x0 = std::max(ox * L.stride_w - L.pad_left, 0);
      const int x1 = std::min(ox * L.stride_w - L.pad_left + L.kw, L.in_w);
      std::fill(sum.begin(), sum.end(), 0);
      for (int y = y0; y < y1; ++y) {
        for (int x = x0; x < x1; ++x) {
          const uint8_t* px = in + (int64_t(y) * L.in_w + x) * C;
          if (L.kind == kMaxPool) {
            for (int c = 0; c < C; ++c) sum[c] = std::max<uint64_t>(sum[c], px[c]);
          } else {
            for (int c = 0; c < C; ++c) sum[c] += px[c];
          }
        }
      }
      uint8_t* dst = out + (int64_t(oy) * L.out_w + ox) * C;
      for (int c = 0; c < C; ++c) {
        uint64_t q = sum[c];
        if (L.kind == kAvgPool) {
          q = std::min((q * L.avg_m + (uint64_t(1) << (L.avg_sh - 1))) >> L.avg_sh, qmax);
        }
        dst[c] = uint8_t(q);
        events += q != 0;
      }
    }
  }
  return events;
}

}  // namespace

void RunImage(const Program& P, const uint8_t* image, Mode mode, float* out,
              int64_t* stats, Scratch* s) {
  for (auto& a : s->act) if (a.size() < P.max_elems) a.resize(P.max_elems);
  if (s->acc.size() < P.max_elems) s->acc.resize(P.max_elems);
  if (s->acc2.size() < P.max_elems) s->acc2.resize(P.max_elems);
  const uint8_t* cur = image;
  const int n = int(P.layers.size());
  int64_t events_out = 0;
  for (int i = 0; i < n; ++i) {
    const Layer& L = P.layers[i];
    int64_t* st = stats + int64_t(i) * kNumStats;
    uint8_t* dst = s->act[i & 1].data();
    // The previous layer wrote codes and counted their non-zeros.
    const int64_t ev = i == 0 ? CountNonZero(cur, L.in_elems) : events_out;
    st[kEventsIn] = ev;
    st[kDenseMacs] = L.dense_macs;
    st[kWeightBytes] = L.weight_bytes;
    st[kActBytesIn] = std::min((L.in_elems * L.in_bits + 7) / 8, (ev * (L.in_bits + 16) + 7) / 8);
    const double density = L.in_elems ? double(ev) / double(L.in_elems) : 0.0;
    float* raw = (L.raw && i == n - 1) ? out : nullptr;
    int64_t syn = 0;
    events_out = 0;
    switch (L.kind) {
      case kConv: case kDepthwise: case kSeparable: case kDense:
        events_out = L.acc_wide ? RunWeighted<int64_t>(L, cur, density, mode, s, dst, raw, &syn)
                                : RunWeighted<int32_t>(L, cur, density, mode, s, dst, raw, &syn);
        break;
      case kMaxPool: case kAvgPool:
        events_out = Pool(L, cur, dst, &syn);
        break;
      case kFlatten:
        std::memcpy(dst, cur, size_t(L.in_elems));
        events_out = ev;
        break;
    }
    st[kSynops] = syn;
    st[kEventsOut] = events_out;
    cur = dst;
  }
  const Layer& last = P.layers.back();
  if (!last.raw) {
    const double step = std::ldexp(1.0, -last.out_exp);  // q * step is exact in double
    for (int64_t k = 0; k < last.out_elems; ++k) out[k] = float(double(cur[k]) * step);
  }
}

}  // namespace keras_nna
