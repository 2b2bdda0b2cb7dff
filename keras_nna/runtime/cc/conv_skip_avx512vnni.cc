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

// Bitmaps of non-zero 4-byte groups of each padded pixel; returns the number
// of non-zero groups.
KNNA_TARGET int64_t GroupBitmaps(const uint8_t* b, int64_t pixels, int G, int NW, uint64_t* bits) {
  int64_t nz = 0;
  for (int64_t q = 0; q < pixels; ++q) {
    const uint8_t* px = b + q * 4 * G;
    uint64_t* wq = bits + q * NW;
    for (int w = 0; w < NW; ++w) wq[w] = 0;
    for (int g0 = 0; g0 < G; g0 += 16) {
      const __mmask16 m = avx512vnni::Tail16(G - g0);
      const __m512i v = _mm512_maskz_loadu_epi32(m, px + 4 * g0);
      const uint64_t t = _mm512_test_epi32_mask(v, v);
      wq[g0 / 64] |= t << (g0 % 64);
      nz += __builtin_popcountll(t);
    }
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
  const int Cp = (L.in_c + 3) / 4 * 4, G = Cp / 4, NW = (G + 63) / 64, taps = L.kh * L.kw;
  const uint8_t* b = avx512vnni::PadInput(L, in, Cp, &sb->pad);
  const int64_t Wp = int64_t(L.in_w) + L.pad_left + L.pad_right;
  const int64_t Hp = int64_t(L.in_h) + L.pad_top + L.pad_bottom;
  const int64_t positions = int64_t(L.out_h) * L.out_w;
  const int O = L.out_c, OB = (O + 15) / 16;
  const int64_t sy = L.stride_h * Wp, sx = L.stride_w;  // in pixels
  if (sb->bits.size() < size_t(Hp * Wp * NW)) sb->bits.resize(size_t(Hp * Wp * NW));
  uint64_t* bits = sb->bits.data();
  const int64_t nz = GroupBitmaps(b, Hp * Wp, G, NW, bits);
  if (double(nz) > max_density * double(int64_t(L.in_h) * L.in_w * G)) {
    avx512vnni::Gemm<false>(b, positions, L.out_w, sy * Cp, sx * Cp, L.vnni_offs.data(), L.vnni_k4,
                            L.w_vnni.data(), O, acc);
    return false;
  }
  int64_t tpix[15 * 15];  // kh, kw <= 15 (parser)
  for (int t = 0; t < taps; ++t) tpix[t] = (t / L.kw) * Wp + t % L.kw;
  if (sb->idx.size() < size_t(L.vnni_k4)) sb->idx.resize(size_t(L.vnni_k4));
  if (sb->act.size() < size_t(positions)) sb->act.resize(size_t(positions));
  int32_t* idx = sb->idx.data();
  // Active positions: a non-zero group somewhere in the window.
  int64_t n_act = 0;
  for (int64_t p = 0; p < positions; ++p) {
    const int64_t q0 = (p / L.out_w) * sy + (p % L.out_w) * sx;
    uint64_t any = 0;
    for (int t = 0; t < taps && !any; ++t)
      for (int w = 0; w < NW; ++w) any |= bits[(q0 + tpix[t]) * NW + w];
    if (any) sb->act[n_act++] = int32_t(p);
    else std::fill(acc + p * O, acc + (p + 1) * O, 0);
  }
  const uint8_t* base[kNP] = {};
  int64_t q[kNP] = {};
  int32_t* dst[kNP] = {};
  for (int64_t a0 = 0; a0 < n_act; a0 += kNP) {
    const int n = int(std::min<int64_t>(kNP, n_act - a0));
    for (int i = 0; i < kNP; ++i) {
      const int64_t p = sb->act[a0 + (i < n ? i : 0)];  // slots past n repeat slot 0
      q[i] = (p / L.out_w) * sy + (p % L.out_w) * sx;
      base[i] = b + q[i] * Cp;
      dst[i] = acc + p * O;
    }
    int64_t k = 0;
    for (int t = 0; t < taps; ++t) {
      for (int w = 0; w < NW; ++w) {
        uint64_t m = 0;
        for (int i = 0; i < n; ++i) m |= bits[(q[i] + tpix[t]) * NW + w];
        while (m) {
          idx[k++] = int32_t(int64_t(t) * G + w * 64 + __builtin_ctzll(m));
          m &= m - 1;
        }
      }
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
