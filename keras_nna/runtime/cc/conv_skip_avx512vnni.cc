// CONV / DENSE, AVX-512 VNNI, zero-skipping dense kernel: the dense kernel's
// dot products (gemm_avx512vnni.h) over the non-zero input only, at the
// granularity one vpdpbusd consumes (4 channels).
//   1. The input is zero-padded as for the dense kernel, and each padded
//      pixel gets a bitmap of its non-zero 4-channel groups (one bit per
//      group, 64 per word).
//   2. Output positions whose whole window is zero are skipped (their
//      accumulators are 0); the others are taken NP at a time.
//   3. Per tile, the (tap, group) pairs non-zero in any of its positions
//      (OR of the bitmaps) are listed, and the register-blocked micro-kernel
//      runs over that list only (MicroIdx).
// Skipped pairs hold only zero codes, so every sum is unchanged: the result
// is bit-identical to the dense kernel's.
#include <algorithm>

#include "gemm_avx512vnni.h"
#include "kernels_avx512vnni.h"

namespace keras_nna {
namespace {

constexpr int kNP = 6;  // positions per tile

// Bitmap of the non-zero 4-byte groups of each padded pixel (G <= 64);
// returns the number of non-zero groups. When G divides 16, one 64-byte test
// covers 16 / G pixels.
KNNA_TARGET int64_t GroupBitmaps(const uint8_t* b, int64_t pixels, int G, uint64_t* bits) {
  int64_t nz = 0;
  if (16 % G == 0) {
    const int per = 16 / G;
    const uint64_t low = (uint64_t(1) << G) - 1;
    for (int64_t q0 = 0; q0 < pixels; q0 += per) {
      const int n = int(std::min<int64_t>(per, pixels - q0));
      const __m512i v = _mm512_maskz_loadu_epi32(avx512vnni::Tail16(int64_t(n) * G), b + q0 * 4 * G);
      const uint64_t t = _mm512_test_epi32_mask(v, v);
      nz += __builtin_popcountll(t);
      for (int j = 0; j < n; ++j) bits[q0 + j] = (t >> (j * G)) & low;
    }
    return nz;
  }
  for (int64_t q = 0; q < pixels; ++q) {
    uint64_t w = 0;
    for (int g0 = 0; g0 < G; g0 += 16) {
      const __m512i v = _mm512_maskz_loadu_epi32(avx512vnni::Tail16(G - g0), b + (q * G + g0) * 4);
      w |= uint64_t(_mm512_test_epi32_mask(v, v)) << g0;
    }
    bits[q] = w;
    nz += __builtin_popcountll(w);
  }
  return nz;
}

template <int NB>
KNNA_TARGET void Blocks(const uint8_t* const* base, const Layer& L, const int32_t* idx, int64_t n,
                        int32_t* const* dst, int ob) {
  const int O = L.out_c;
  const int64_t K = L.vnni_k4;
  __mmask16 masks[NB];
  for (int j = 0; j < NB; ++j) masks[j] = avx512vnni::Tail16(int64_t(O) - (ob + j) * 16);
  int32_t* d[kNP];
  for (int i = 0; i < kNP; ++i) d[i] = dst[i] + ob * 16;
  avx512vnni::MicroIdx<NB, kNP>(base, L.vnni_offs.data(), idx, n, L.w_vnni.data() + int64_t(ob) * K * 64,
                                K * 64, d, masks);
}

}  // namespace

KNNA_TARGET bool ConvSkipVnni(const Layer& L, const uint8_t* in, int32_t* acc, double max_density,
                              SkipBuffers* sb) {
  const int Cp = (L.in_c + 3) / 4 * 4, G = Cp / 4, taps = L.kh * L.kw;
  const uint8_t* b = avx512vnni::PadInput(L, in, Cp, &sb->pad);
  const int64_t Wp = int64_t(L.in_w) + L.pad_left + L.pad_right;
  const int64_t Hp = int64_t(L.in_h) + L.pad_top + L.pad_bottom;
  const int64_t positions = int64_t(L.out_h) * L.out_w, K = L.vnni_k4;
  const int O = L.out_c, OB = (O + 15) / 16;
  const int64_t sy = L.stride_h * Wp, sx = L.stride_w;  // in pixels
  int64_t nz = 0;
  if (G <= 64) {
    if (sb->bits.size() < size_t(Hp * Wp)) sb->bits.resize(size_t(Hp * Wp));
    nz = GroupBitmaps(b, Hp * Wp, G, sb->bits.data());
  }
  if (G > 64 || double(nz) > max_density * double(int64_t(L.in_h) * L.in_w * G)) {
    avx512vnni::Gemm<false>(b, positions, L.out_w, sy * Cp, sx * Cp, L.vnni_offs.data(), K,
                            L.w_vnni.data(), O, acc);
    return false;
  }
  const uint64_t* bits = sb->bits.data();
  // Window masks: bit k = t * G + g of the (tap, group) pairs, WW words per
  // active position (its window holds a non-zero group); other positions are 0.
  const int WW = int((K + 63) / 64);
  int64_t tpix[15 * 15];  // kh, kw <= 15 (parser)
  for (int t = 0; t < taps; ++t) tpix[t] = (t / L.kw) * Wp + t % L.kw;
  if (sb->idx.size() < size_t(K)) sb->idx.resize(size_t(K));
  if (sb->act.size() < size_t(2 * positions)) sb->act.resize(size_t(2 * positions));
  if (sb->wm.size() < size_t((positions + 1) * WW)) sb->wm.resize(size_t((positions + 1) * WW));
  int32_t* idx = sb->idx.data();
  int32_t* act = sb->act.data();
  // Taps overlapping word j: t_lo[j] .. t_lo[j + 1] (capped at taps - 1).
  int t_lo[15 * 15 + 2];  // WW <= taps (G <= 64)
  for (int j = 0; j <= WW; ++j) t_lo[j] = int(std::min<int64_t>(int64_t(j) * 64 / G, taps));
  int64_t n_act = 0;
  uint64_t* wm = sb->wm.data();
  if (WW == 1) {
    // One word per window: tap t's groups at bits t*G (K <= 64). Stride 1:
    // 8 positions of a row per vector.
    __m128i sh[15 * 15];
    for (int t = 0; t < taps; ++t) sh[t] = _mm_cvtsi32_si128(t * G);
    for (int64_t py = 0, p = 0; py < L.out_h; ++py) {
      for (int64_t px = 0; px < L.out_w;) {
        const int64_t q0 = py * sy + px * sx;
        if (sx == 1 && px + 8 <= L.out_w) {
          __m512i u = _mm512_setzero_si512();
          for (int t = 0; t < taps; ++t)
            u = _mm512_or_si512(u, _mm512_sll_epi64(_mm512_loadu_si512(bits + q0 + tpix[t]), sh[t]));
          alignas(64) uint64_t w8[8];
          _mm512_store_si512(w8, u);
          for (int i = 0; i < 8; ++i, ++p) {
            wm[n_act] = w8[i];
            act[2 * n_act] = int32_t(p), act[2 * n_act + 1] = int32_t(q0 + i);
            if (w8[i]) ++n_act;
            else std::fill(acc + p * O, acc + (p + 1) * O, 0);
          }
          px += 8;
          continue;
        }
        uint64_t u = 0;
        for (int t = 0; t < taps; ++t) u |= bits[q0 + tpix[t]] << (t * G);
        wm[n_act] = u;
        act[2 * n_act] = int32_t(p), act[2 * n_act + 1] = int32_t(q0);
        if (u) ++n_act;
        else std::fill(acc + p * O, acc + (p + 1) * O, 0);
        ++px, ++p;
      }
    }
  } else {
    // Taps overlapping word j: t_lo[j] .. t_lo[j + 1] (capped at taps - 1).
    int t_lo[15 * 15 + 2];  // WW <= taps (G <= 64)
    for (int j = 0; j <= WW; ++j) t_lo[j] = int(std::min<int64_t>(int64_t(j) * 64 / G, taps));
    for (int64_t p = 0, py = 0, px = 0; p < positions; ++p) {
      const int64_t q0 = py * sy + px * sx;
      if (++px == L.out_w) px = 0, ++py;
      // Word j of the mask gathers the taps overlapping bits [64j, 64j + 64),
      // in a register (no read-modify-write chain through memory).
      uint64_t* w = wm + n_act * WW;
      uint64_t any = 0;
      for (int j = 0; j < WW; ++j) {
        uint64_t u = 0;
        for (int t = t_lo[j]; t <= t_lo[j + 1] && t < taps; ++t) {
          const uint64_t v = bits[q0 + tpix[t]];
          const int64_t off = int64_t(t) * G - int64_t(j) * 64;  // -64 < off < 64
          u |= off >= 0 ? v << off : v >> -off;
        }
        w[j] = u;
        any |= u;
      }
      act[2 * n_act] = int32_t(p), act[2 * n_act + 1] = int32_t(q0);
      if (any) ++n_act;
      else std::fill(acc + p * O, acc + (p + 1) * O, 0);
    }
  }
  const uint8_t* base[kNP] = {};
  int32_t* dst[kNP] = {};
  for (int64_t a0 = 0; a0 < n_act; a0 += kNP) {
    const int n = int(std::min<int64_t>(kNP, n_act - a0));
    for (int i = 0; i < kNP; ++i) {
      const int64_t a = a0 + (i < n ? i : 0);  // slots past n repeat slot 0
      base[i] = b + int64_t(act[2 * a + 1]) * Cp;
      dst[i] = acc + int64_t(act[2 * a]) * O;
    }
    int64_t k = 0;
    const uint64_t* w = sb->wm.data() + a0 * WW;
    for (int j = 0; j < WW; ++j) {
      uint64_t m = 0;
      for (int i = 0; i < n; ++i) m |= w[i * WW + j];
      for (; m; m &= m - 1) idx[k++] = int32_t(j * 64 + __builtin_ctzll(m));
    }
    for (int ob = 0; ob < OB;) {
      const int rem = OB - ob;
      if (rem >= 4) Blocks<4>(base, L, idx, k, dst, ob), ob += 4;
      else if (rem >= 2) Blocks<2>(base, L, idx, k, dst, ob), ob += 2;
      else Blocks<1>(base, L, idx, k, dst, ob), ob += 1;
    }
  }
  return true;
}

}  // namespace keras_nna
