// ADD (kind 8), portable and exact (docs/bytecode.md): per element
//   S = qa * 2^sa + qb * 2^sb          (sa, sb <= 16: |S| < 2^26)
//   v = (S + 2^(d-1)) >> d  if d > 0,  else S * 2^-d   (|d| <= 16: |v| < 2^42)
//   q = clip(v, lo, hi)  ([0, 2^b - 1], or [-2^(b-1), 2^(b-1) - 1] when out_signed)
// Inputs and output are one byte per code: uint8, or int8 when signed.
#include "kernels_scalar.h"

namespace keras_nna {
namespace {

template <typename A, typename B>
int64_t AddCodes(const Layer& L, const A* a, const B* b, uint8_t* out) {
  const int64_t n = L.out_elems;
  const int64_t ma = int64_t(1) << L.add_sa, mb = int64_t(1) << L.add_sb;
  const int d = L.add_d;
  const int64_t up = d < 0 ? int64_t(1) << -d : 1, half = d > 0 ? int64_t(1) << (d - 1) : 0;
  const int64_t lo = L.out_signed ? -(int64_t(1) << (L.out_bits - 1)) : 0;
  const int64_t hi = L.out_signed ? (int64_t(1) << (L.out_bits - 1)) - 1 : (int64_t(1) << L.out_bits) - 1;
  int64_t events = 0;
  for (int64_t k = 0; k < n; ++k) {
    const int64_t s = int64_t(a[k]) * ma + int64_t(b[k]) * mb;
    int64_t v = d > 0 ? (s + half) >> d : s * up;  // >> on a negative int64: arithmetic (floor)
    v = v < lo ? lo : v > hi ? hi : v;
    out[k] = uint8_t(v);  // int8 two's complement byte when signed
    events += v != 0;
  }
  return events;
}

}  // namespace

int64_t Add(const Layer& L, const uint8_t* a, const uint8_t* b, uint8_t* out) {
  const int8_t* sa = reinterpret_cast<const int8_t*>(a);
  const int8_t* sb = reinterpret_cast<const int8_t*>(b);
  if (L.in_signed) return L.in2_signed ? AddCodes(L, sa, sb, out) : AddCodes(L, sa, b, out);
  return L.in2_signed ? AddCodes(L, a, sb, out) : AddCodes(L, a, b, out);
}

}  // namespace keras_nna
