// AVX-512 VNNI dense kernels (int32 accumulation) and synops tables.
//
// CONV / DENSE: the input is copied once into a zero-padded buffer
//   [in_h+pads][in_w+pads][4G] (channels padded to groups of 4), so every tap
//   of every output position is a fixed byte offset (Layer::vnni_offs) from
//   the position's base: no im2col, no bounds checks. A register-blocked
//   micro-kernel keeps NP positions x NB blocks of 16 outputs in zmm
//   accumulators; per (tap, group) it loads NB weight vectors (the parse-time
//   layout of simd.cc) and broadcasts 4 input codes per position (vpdpbusd).
// SEPARABLE: the depthwise stage runs over 16 channels per vector into int16
//   (|acc| <= 32767 is proven at parse time), then the pointwise stage is the
//   same micro-kernel with vpdpwssd on channel pairs.
// Synops (dense kernels): an event at (y, x, c) meets a number of non-zero
//   weights that depends only on c and on which taps reach y and x; those tap
//   sets form a few classes (borders, stride phases), tabulated at parse time.
//   Per pixel: a vector compare of the codes and a masked add of a table row.
// Integer sums wrap in two's complement, and every final accumulator is
// proven to fit int32, so partial-sum order does not change any result.
#include <immintrin.h>

#include <algorithm>
#include <climits>
#include <cstring>

#include "kernels.h"
#include "simd.h"

namespace keras_nna {
namespace {

#define KNNA_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))

// Distinct sets of kernel offsets reaching each input coordinate.
bool TapClasses(int in, int k, int stride, int pad, int out, std::vector<uint8_t>* cls,
                std::vector<uint32_t>* masks) {
  Taps t(in, k, stride, pad, out);
  cls->assign(in, 0);
  for (int i = 0; i < in; ++i) {
    uint32_t m = 0;
    for (int a = t.start[i]; a < t.start[i + 1]; ++a) m |= 1u << t.k[a];
    auto it = std::find(masks->begin(), masks->end(), m);
    if (it == masks->end()) {
      if (masks->size() >= 64) return false;
      masks->push_back(m);
      it = masks->end() - 1;
    }
    (*cls)[i] = uint8_t(it - masks->begin());
  }
  return true;
}

bool BuildSynopsTable(Layer* L) {
  std::vector<uint32_t> my, mx;
  std::vector<uint8_t> xcls;
  if (!TapClasses(L->in_h, L->kh, L->stride_h, L->pad_top, L->out_h, &L->syn_ycls, &my) ||
      !TapClasses(L->in_w, L->kw, L->stride_w, L->pad_left, L->out_w, &xcls, &mx)) {
    return false;
  }
  const int C = L->in_c;
  const int64_t row = (int64_t(L->in_w) * C + 63) / 64 * 64;
  if (int64_t(my.size()) * row > (int64_t(1) << 22)) return false;
  L->syn_cpad = (C + 15) / 16 * 16;
  L->syn_row = row;
  L->syn_tab.assign(my.size() * row, 0);
  std::vector<int32_t> t(mx.size() * C);
  int64_t tmax = 1;
  for (size_t cy = 0; cy < my.size(); ++cy) {
    for (size_t cx = 0; cx < mx.size(); ++cx)
      for (int c = 0; c < C; ++c) {
        int64_t s = 0;
        for (int ky = 0; ky < L->kh; ++ky) {
          if (!((my[cy] >> ky) & 1)) continue;
          for (int kx = 0; kx < L->kw; ++kx) {
            if (!((mx[cx] >> kx) & 1)) continue;
            const int64_t r = int64_t(ky * L->kw + kx) * C + c;
            s += L->kind == kConv ? L->row_nnz[r] : int64_t(L->w[r] != 0);
          }
        }
        t[cx * C + c] = int32_t(s);
        tmax = std::max(tmax, s);
      }
    for (int x = 0; x < L->in_w; ++x)
      std::memcpy(&L->syn_tab[cy * row + int64_t(x) * C], &t[size_t(xcls[x]) * C], sizeof(int32_t) * C);
  }
  L->syn_flush = std::max<int64_t>(1, INT_MAX / tmax);
  return true;
}

}  // namespace

void PrepareDense(Layer* L) {
  if (L->kind >= kConv && L->kind <= kDense && !L->raw) {
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
  const bool conv = L->kind == kConv || L->kind == kDepthwise || L->kind == kSeparable;
  if (!conv || !BuildSynopsTable(L)) return;
  if (L->kind == kConv || L->acc_wide) return;
  const int64_t Hp = int64_t(L->in_h) + L->pad_top + L->pad_bottom;
  const int64_t Wp = int64_t(L->in_w) + L->pad_left + L->pad_right;
  if (Hp * Wp * L->in_c > kMaxTensorElements) return;
  const int C = L->in_c, CP = L->syn_cpad, taps = L->kh * L->kw;
  if (L->kind == kSeparable && L->inner_max > 32767) return;
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

namespace {

inline int32_t Load4(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

inline __mmask16 Tail16(int64_t rem) {
  return rem >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << rem) - 1);
}

// Copies the HWC input into a zero-padded [Hp][Wp][Cp] buffer (Cp >= C).
const uint8_t* PadInput(const Layer& L, const uint8_t* in, int Cp, std::vector<uint8_t>* buf) {
  const int C = L.in_c, W = L.in_w;
  const int64_t Wp = int64_t(W) + L.pad_left + L.pad_right;
  const int64_t Hp = int64_t(L.in_h) + L.pad_top + L.pad_bottom;
  const int64_t row = Wp * Cp;
  if (buf->size() < size_t(Hp * row + 64)) buf->resize(size_t(Hp * row + 64));
  uint8_t* b = buf->data();
  std::memset(b, 0, size_t(L.pad_top * row));
  std::memset(b + (L.pad_top + L.in_h) * row, 0, size_t(L.pad_bottom * row + 64));
  for (int y = 0; y < L.in_h; ++y) {
    uint8_t* d = b + (L.pad_top + y) * row;
    const uint8_t* s = in + int64_t(y) * W * C;
    std::memset(d, 0, size_t(L.pad_left) * Cp);
    d += int64_t(L.pad_left) * Cp;
    if (Cp == C) {
      std::memcpy(d, s, size_t(W) * C);
    } else if (C == 3 && Cp == 4) {
      for (int x = 0; x < W; ++x) {
        const uint32_t v = uint32_t(s[3 * x]) | uint32_t(s[3 * x + 1]) << 8 | uint32_t(s[3 * x + 2]) << 16;
        std::memcpy(d + 4 * x, &v, 4);
      }
    } else {
      for (int x = 0; x < W; ++x) {
        std::memcpy(d + int64_t(x) * Cp, s + int64_t(x) * C, C);
        std::memset(d + int64_t(x) * Cp + C, 0, Cp - C);
      }
    }
    std::memset(d + int64_t(W) * Cp, 0, size_t(L.pad_right) * Cp);
  }
  return b;
}

KNNA_TARGET inline int64_t ReduceLanes(__m512i v) {
  const __m512i lo = _mm512_cvtepu32_epi64(_mm512_castsi512_si256(v));
  const __m512i hi = _mm512_cvtepu32_epi64(_mm512_extracti64x4_epi64(v, 1));
  return _mm512_reduce_add_epi64(_mm512_add_epi64(lo, hi));
}

// In-place accumulate (inline asm: GCC 12 copies and spills accumulators of
// the intrinsics in big register blocks). acc += a(u8 / s16) . b(s8 / s16).
KNNA_TARGET inline __m512i Dpbusd(__m512i acc, __m512i a, __m512i b) {
  asm("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b));
  return acc;
}
KNNA_TARGET inline __m512i Dpwssd(__m512i acc, __m512i a, __m512i b) {
  asm("vpdpwssd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b));
  return acc;
}

// NP positions x NB output blocks. kWord: vpdpwssd on int16 channel pairs
// at byte offset 4k of each base; else vpdpbusd at offs[k].
template <int NB, int NP, bool kWord>
KNNA_TARGET inline __attribute__((always_inline)) void Micro(
    const uint8_t* const* base, const int32_t* offs, int64_t K, const int8_t* W, int64_t wstride,
    int32_t* const* dst, const __mmask16* masks) {
  __m512i acc[NP][NB];
  const uint8_t* b[NP];
#pragma GCC unroll 16
  for (int i = 0; i < NP; ++i) {
    b[i] = base[i];
#pragma GCC unroll 16
    for (int j = 0; j < NB; ++j) acc[i][j] = _mm512_setzero_si512();
  }
  for (int64_t k = 0; k < K; ++k) {
    const int64_t off = kWord ? 4 * k : offs[k];
    __m512i w[NB];
#pragma GCC unroll 16
    for (int j = 0; j < NB; ++j) w[j] = _mm512_loadu_si512(W + j * wstride + k * 64);
#pragma GCC unroll 16
    for (int i = 0; i < NP; ++i) {
      const __m512i x = _mm512_set1_epi32(Load4(b[i] + off));
#pragma GCC unroll 16
      for (int j = 0; j < NB; ++j) {
        acc[i][j] = kWord ? Dpwssd(acc[i][j], x, w[j]) : Dpbusd(acc[i][j], x, w[j]);
      }
    }
  }
  // Slots past n repeat slot 0 (same base and dst): same values, same place.
#pragma GCC unroll 16
  for (int i = 0; i < NP; ++i) {
#pragma GCC unroll 16
    for (int j = 0; j < NB; ++j) _mm512_mask_storeu_epi32(dst[i] + j * 16, masks[j], acc[i][j]);
  }
}

// Output blocks ob0..ob0+NB-1 for every position. Position p = (py, px)
// (px < out_w) has its input at buf + py*sy + px*sx.
template <int NB, int NP, bool kWord>
KNNA_TARGET void Pass(const uint8_t* buf, int64_t positions, int64_t out_w, int64_t sy, int64_t sx,
                      const int32_t* offs, int64_t K, const int8_t* W, int O, int ob0, int32_t* acc) {
  __mmask16 masks[NB];
  for (int j = 0; j < NB; ++j) masks[j] = Tail16(int64_t(O) - (ob0 + j) * 16);
  const int8_t* Wb = W + int64_t(ob0) * K * 64;
  const uint8_t* base[NP];
  int32_t* dst[NP];
  int64_t py = 0, px = 0;
  for (int64_t p0 = 0; p0 < positions; p0 += NP) {
    const int n = int(std::min<int64_t>(NP, positions - p0));
    for (int i = 0; i < NP; ++i) {
      if (i < n) {
        base[i] = buf + py * sy + px * sx;
        dst[i] = acc + (p0 + i) * O + ob0 * 16;
        if (++px == out_w) px = 0, ++py;
      } else {
        base[i] = base[0];
        dst[i] = dst[0];
      }
    }
    Micro<NB, NP, kWord>(base, offs, K, Wb, K * 64, dst, masks);
  }
}

template <bool kWord>
KNNA_TARGET void Gemm(const uint8_t* buf, int64_t positions, int64_t out_w, int64_t sy, int64_t sx,
                      const int32_t* offs, int64_t K, const int8_t* W, int O, int32_t* acc) {
  const int OB = (O + 15) / 16;
  for (int ob = 0; ob < OB;) {
    const int rem = OB - ob;
    if (rem >= 4) {
      Pass<4, 6, kWord>(buf, positions, out_w, sy, sx, offs, K, W, O, ob, acc);
      ob += 4;
    } else if (rem >= 2) {
      Pass<2, 8, kWord>(buf, positions, out_w, sy, sx, offs, K, W, O, ob, acc);
      ob += 2;
    } else {
      Pass<1, 12, kWord>(buf, positions, out_w, sy, sx, offs, K, W, O, ob, acc);
      ob += 1;
    }
  }
}

// Depthwise over 16 channels per vector on the padded input (Cp = C).
// kSep: int16 output [positions][Cp2] and pointwise synops into *syn2.
template <bool kSep>
KNNA_TARGET void DepthwiseStage(const Layer& L, const uint8_t* pad, int32_t* acc, int16_t* dw16,
                                int Cp2, int64_t* syn2) {
  const int C = L.in_c, CP = L.syn_cpad, taps = L.kh * L.kw;
  const int64_t Wp = int64_t(L.in_w) + L.pad_left + L.pad_right;
  int64_t toff[15 * 15];
  for (int t = 0; t < taps; ++t) toff[t] = ((t / L.kw) * Wp + t % L.kw) * C;
  const int32_t* w32 = L.w_dw32.data();
  const int32_t* r2 = L.row2_nnz16.data();
  const int64_t flush = std::max<int64_t>(1, INT_MAX / (int64_t(65535) * (CP / 16)));
  int64_t left = flush, syn = 0;
  __m512i s = _mm512_setzero_si512();
  int64_t p = 0;
  for (int oy = 0; oy < L.out_h; ++oy) {
    for (int ox = 0; ox < L.out_w; ++ox, ++p) {
      const uint8_t* base = pad + (int64_t(oy) * L.stride_h * Wp + int64_t(ox) * L.stride_w) * C;
      for (int c0 = 0; c0 < C; c0 += 16) {
        const __mmask16 m = Tail16(C - c0);
        __m512i a = _mm512_setzero_si512();
        for (int t = 0; t < taps; ++t) {
          const __m512i x = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, base + toff[t] + c0));
          a = _mm512_add_epi32(a, _mm512_mullo_epi32(x, _mm512_loadu_si512(w32 + int64_t(t) * CP + c0)));
        }
        if (kSep) {
          _mm256_mask_storeu_epi16(dw16 + p * Cp2 + c0, m, _mm512_cvtepi32_epi16(a));
          s = _mm512_mask_add_epi32(s, _mm512_mask_test_epi32_mask(m, a, a), s, _mm512_loadu_si512(r2 + c0));
        } else {
          _mm512_mask_storeu_epi32(acc + p * C + c0, m, a);
        }
      }
      if (kSep) {
        if (Cp2 != C) dw16[p * Cp2 + C] = 0;
        if (--left == 0) syn += ReduceLanes(s), s = _mm512_setzero_si512(), left = flush;
      }
    }
  }
  if (kSep) *syn2 = syn + ReduceLanes(s);
}

}  // namespace

KNNA_TARGET int64_t TableSynops(const Layer& L, const uint8_t* in) {
  const int64_t bytes = int64_t(L.in_w) * L.in_c;
  __m512i v[4];
  for (auto& x : v) x = _mm512_setzero_si512();
  int64_t total = 0, left = L.syn_flush;
  for (int y = 0; y < L.in_h; ++y) {
    const int32_t* t = L.syn_tab.data() + L.syn_ycls[y] * L.syn_row;
    const uint8_t* px = in + y * bytes;
    for (int64_t j = 0; j < bytes; j += 64) {
      const __mmask64 tail = bytes - j >= 64 ? ~__mmask64(0) : (__mmask64(1) << (bytes - j)) - 1;
      const __m512i q = _mm512_maskz_loadu_epi8(tail, px + j);
      const __mmask64 nz = _mm512_test_epi8_mask(q, q);
      for (int k = 0; k < 4; ++k) {
        v[k] = _mm512_mask_add_epi32(v[k], __mmask16(nz >> (16 * k)), v[k], _mm512_loadu_si512(t + j + 16 * k));
      }
      if (--left == 0) {
        for (auto& x : v) total += ReduceLanes(x), x = _mm512_setzero_si512();
        left = L.syn_flush;
      }
    }
  }
  for (auto& x : v) total += ReduceLanes(x);
  return total;
}

KNNA_TARGET int64_t RequantizeVnni(const Layer& L, const int32_t* acc, uint8_t* codes) {
  const int O = L.out_c, P = L.rq_pad;
  const int64_t* R = L.rq_v.data();
  const bool narrow = L.out_bits <= 7;
  const __m128i qmax = _mm_set1_epi8(char((1 << L.out_bits) - 1)), zero = _mm_setzero_si128();
  int64_t events = 0;
  // 16 accumulators with parameters at prm (m), prm + P (n + half), prm + 2P (sh).
  auto chunk = [&](const int32_t* a, uint8_t* q, const int64_t* prm, __mmask16 m) KNNA_TARGET {
    const __m512i x = _mm512_maskz_loadu_epi32(m, a);
    __m512i z[2];
    for (int h = 0; h < 2; ++h) {
      const __m512i xh = _mm512_cvtepi32_epi64(h ? _mm512_extracti64x4_epi64(x, 1) : _mm512_castsi512_si256(x));
      const __m512i zh = _mm512_add_epi64(_mm512_mul_epi32(xh, _mm512_loadu_si512(prm + 8 * h)),
                                          _mm512_loadu_si512(prm + P + 8 * h));
      z[h] = _mm512_srav_epi64(zh, _mm512_loadu_si512(prm + 2 * P + 8 * h));
    }
    __m128i b;
    if (narrow) {  // signed saturation keeps order and [0, qmax] within int8
      b = _mm_unpacklo_epi64(_mm512_cvtsepi64_epi8(z[0]), _mm512_cvtsepi64_epi8(z[1]));
      b = _mm_min_epi8(_mm_max_epi8(b, zero), qmax);
    } else {  // 8-bit codes: clamp below at 0, unsigned saturation at 255
      const __m512i z0 = _mm512_setzero_si512();
      b = _mm_unpacklo_epi64(_mm512_cvtusepi64_epi8(_mm512_max_epi64(z[0], z0)),
                             _mm512_cvtusepi64_epi8(_mm512_max_epi64(z[1], z0)));
    }
    _mm_mask_storeu_epi8(q, m, b);
    events += __builtin_popcount(_mm_mask_test_epi8_mask(m, b, b));
  };
  const int64_t positions = int64_t(L.out_h) * L.out_w;
  if (P % O == 0) {  // flat: element e has channel e % O, parameters at e % P
    const int64_t total = positions * O;
    int64_t pi = 0;
    for (int64_t e = 0; e < total; e += 16) {
      chunk(acc + e, codes + e, R + pi, total - e >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (total - e)) - 1));
      pi += 16;
      if (pi == P) pi = 0;
    }
  } else {
    for (int64_t p = 0; p < positions; ++p)
      for (int o = 0; o < O; o += 16)
        chunk(acc + p * O + o, codes + p * O + o, R + o, O - o >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (O - o)) - 1));
  }
  return events;
}

KNNA_TARGET void ConvDenseVnni(const Layer& L, const uint8_t* in, int32_t* acc,
                               std::vector<uint8_t>* pad) {
  const int Cp = (L.in_c + 3) / 4 * 4;
  const uint8_t* b = PadInput(L, in, Cp, pad);
  const int64_t Wp = int64_t(L.in_w) + L.pad_left + L.pad_right;
  Gemm<false>(b, int64_t(L.out_h) * L.out_w, L.out_w, L.stride_h * Wp * Cp, int64_t(L.stride_w) * Cp,
              L.vnni_offs.data(), L.vnni_k4, L.w_vnni.data(), L.out_c, acc);
}

KNNA_TARGET void DepthwiseDenseVnni(const Layer& L, const uint8_t* in, int32_t* acc,
                                    std::vector<uint8_t>* pad, int64_t* synops) {
  DepthwiseStage<false>(L, PadInput(L, in, L.in_c, pad), acc, nullptr, 0, nullptr);
  *synops = TableSynops(L, in);
}

KNNA_TARGET void SeparableDenseVnni(const Layer& L, const uint8_t* in, int32_t* acc,
                                    std::vector<uint8_t>* pad, std::vector<int16_t>* dw16,
                                    int64_t* synops) {
  const int C = L.in_c, Cp2 = C + (C & 1);
  const int64_t positions = int64_t(L.out_h) * L.out_w;
  if (dw16->size() < size_t(positions * Cp2 + 32)) dw16->resize(size_t(positions * Cp2 + 32));
  int64_t syn2 = 0;
  DepthwiseStage<true>(L, PadInput(L, in, C, pad), nullptr, dw16->data(), Cp2, &syn2);
  *synops = TableSynops(L, in) + syn2;
  Gemm<true>(reinterpret_cast<const uint8_t*>(dw16->data()), positions, positions, 0, int64_t(Cp2) * 2,
             nullptr, Cp2 / 2, reinterpret_cast<const int8_t*>(L.w2_vnni.data()), L.out_c, acc);
}

}  // namespace keras_nna
