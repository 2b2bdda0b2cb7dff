// Requantization of kinds 1-4: z = acc * m + n (|z| < 2^53, proven by the
// parser), then codes clamp((z + 2^(sh-1)) >> sh, lo, hi) or raw floats
// z * 2^-sh; [lo, hi] = [0, 2^b - 1], or [-2^(b-1), 2^(b-1) - 1] stored as
// int8 bytes when out_signed.
// The body is compiled twice (baseline and AVX-512, where the compiler
// vectorises the per-channel 64-bit multiply and variable arithmetic shift);
// dispatch per layer. The hand-written AVX-512 path for int32 accumulators is
// requantize_avx512vnni.cc.
#include <cmath>
#include <type_traits>
#include <vector>

#include "kernels_avx512vnni.h"
#include "kernels_scalar.h"

namespace keras_nna {
namespace {

// z + 2^(sh-1) < 2^53 + 2^61: no int64 overflow.
#define KERAS_NNA_REQUANTIZE_BODY                                                    \
  const int O = L.out_c;                                                             \
  const int64_t positions = int64_t(L.out_h) * L.out_w;                              \
  const int64_t qmin = L.out_signed ? -(int64_t(1) << (L.out_bits - 1)) : 0;          \
  const int64_t qmax = L.out_signed ? (int64_t(1) << (L.out_bits - 1)) - 1            \
                                    : (int64_t(1) << L.out_bits) - 1;                 \
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
      v = v < qmin ? qmin : v > qmax ? qmax : v;                                     \
      q[o] = uint8_t(v); /* int8 two's complement byte when signed */                \
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

}  // namespace

template <typename AccT>
int64_t Requantize(const Layer& L, const AccT* acc, uint8_t* codes, float* raw) {
  if (std::is_same<AccT, int32_t>::value && codes != nullptr && raw == nullptr && !L.rq_v.empty()) {
    return RequantizeVnni(L, reinterpret_cast<const int32_t*>(acc), codes);
  }
  return HaveVnni() ? RequantizeAvx512(L, acc, codes, raw) : RequantizeBase(L, acc, codes, raw);
}

template int64_t Requantize<int32_t>(const Layer&, const int32_t*, uint8_t*, float*);
template int64_t Requantize<int64_t>(const Layer&, const int64_t*, uint8_t*, float*);

}  // namespace keras_nna
