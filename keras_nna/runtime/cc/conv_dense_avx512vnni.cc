// CONV / DENSE, AVX-512 VNNI, dense: the input is copied once into a
// zero-padded buffer [in_h+pads][in_w+pads][4G] (channels padded to groups of
// 4), so every tap of every output position is a fixed byte offset
// (Layer::vnni_offs) from the position's base: no im2col, no bounds checks.
// The register-blocked micro-kernel (gemm_avx512vnni.h) keeps positions x
// blocks of 16 outputs in zmm accumulators; per (tap, group) it loads the
// weight vectors packed by PrepareLayerVnni and broadcasts 4 input codes per
// position (vpdpbusd).
#include "gemm_avx512vnni.h"
#include "kernels_avx512vnni.h"

namespace keras_nna {
namespace avx512vnni {

const uint8_t* PadInput(const Layer& L, const uint8_t* in, int Cp, std::vector<uint8_t>* buf,
                        uint8_t flip) {
  const int C = L.in_c, W = L.in_w;
  const int64_t Wp = int64_t(W) + L.pad_left + L.pad_right;
  const int64_t Hp = int64_t(L.in_h) + L.pad_top + L.pad_bottom;
  const int64_t row = Wp * Cp;
  if (buf->size() < size_t(Hp * row + 64)) buf->resize(size_t(Hp * row + 64));
  uint8_t* b = buf->data();
  std::memset(b, flip, size_t(L.pad_top * row));
  std::memset(b + (L.pad_top + L.in_h) * row, flip, size_t(L.pad_bottom * row + 64));
  for (int y = 0; y < L.in_h; ++y) {
    uint8_t* d = b + (L.pad_top + y) * row;
    const uint8_t* s = in + int64_t(y) * W * C;
    std::memset(d, flip, size_t(L.pad_left) * Cp);
    d += int64_t(L.pad_left) * Cp;
    if (flip != 0) {
      for (int x = 0; x < W; ++x) {
        for (int c = 0; c < C; ++c) d[int64_t(x) * Cp + c] = s[int64_t(x) * C + c] ^ flip;
        for (int c = C; c < Cp; ++c) d[int64_t(x) * Cp + c] = flip;
      }
    } else if (Cp == C) {
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
    std::memset(d + int64_t(W) * Cp, flip, size_t(L.pad_right) * Cp);
  }
  return b;
}

}  // namespace avx512vnni

KNNA_TARGET void ConvDenseVnni(const Layer& L, const uint8_t* in, int32_t* acc, std::vector<uint8_t>* pad) {
  const int Cp = (L.in_c + 3) / 4 * 4;
  const uint8_t* b = avx512vnni::PadInput(L, in, Cp, pad);
  const int64_t Wp = int64_t(L.in_w) + L.pad_left + L.pad_right;
  avx512vnni::Gemm<false>(b, int64_t(L.out_h) * L.out_w, L.out_w, L.stride_h * Wp * Cp,
                          int64_t(L.stride_w) * Cp, L.vnni_offs.data(), L.vnni_k4, L.w_vnni.data(),
                          L.out_c, acc);
}

// Signed (int8) inputs: the codes + 128 as u8 (PadInput with flip 0x80, the
// padding holds code 0 + 128), then acc -= 128 * sum(w) per output channel
// (Layer::vnni_bias). All sums wrap mod 2^32 (vpdpbusd does not saturate) and
// the true accumulator fits int32 (parser bound, acc_wide false), so the
// result is exact.
KNNA_TARGET void ConvDenseVnniSigned(const Layer& L, const int8_t* in, int32_t* acc,
                                     std::vector<uint8_t>* pad) {
  const int Cp = (L.in_c + 3) / 4 * 4;
  const uint8_t* b = avx512vnni::PadInput(L, reinterpret_cast<const uint8_t*>(in), Cp, pad, 0x80);
  const int64_t Wp = int64_t(L.in_w) + L.pad_left + L.pad_right;
  avx512vnni::Gemm<false>(b, int64_t(L.out_h) * L.out_w, L.out_w, L.stride_h * Wp * Cp,
                          int64_t(L.stride_w) * Cp, L.vnni_offs.data(), L.vnni_k4, L.w_vnni.data(),
                          L.out_c, acc);
  const int O = L.out_c;
  const int64_t positions = int64_t(L.out_h) * L.out_w;
  uint32_t* a = reinterpret_cast<uint32_t*>(acc);
  const uint32_t* bias = reinterpret_cast<const uint32_t*>(L.vnni_bias.data());
  for (int64_t p = 0; p < positions; ++p)
    for (int o = 0; o < O; ++o) a[p * O + o] -= bias[o];
}

}  // namespace keras_nna
