// Constants of the bytecode parser (docs/bytecode.md): weight and
// requantization fields, kernel decoding (dense or bitmap-sparse packed
// values), requantization records, and the worst-case arithmetic bounds that
// let the kernels accumulate in int32 (acc_wide = 0) or int64 and convert raw
// outputs to double exactly.
#include <algorithm>
#include <cstdlib>

#include "program_parse_internal.h"

namespace keras_nna {
namespace parse {
namespace {

using u128 = unsigned __int128;

// Decodes `count` b-bit fields packed LSB first: two's complement for b >= 2,
// for b = 1 bit 1 = +1 and bit 0 = -1 (never zero). Requires the exact byte
// length, zero padding bits, and values in the symmetric range
// [-(2^(b-1)-1), 2^(b-1)-1] (non-zero if `nonzero`); b = 1: always -1 or +1.
// `out` may be null only when the length is wrong (length check only).
bool UnpackValues(const uint8_t* p, uint64_t len, uint64_t count, int bits, bool nonzero,
                  int16_t* out, std::string* why) {
  const uint64_t need = (count * bits + 7) / 8;  // count < 2^41 (see DecodeKernel): no overflow
  if (len != need) {
    std::ostringstream s;
    s << "packed values length " << len << " != " << need << " expected for " << count
      << " values of " << bits << " bits";
    *why = s.str();
    return false;
  }
  const int lim = (1 << (bits - 1)) - 1;
  uint64_t bit = 0;
  if (bits == 1) {  // every field is valid: bit 1 = +1, bit 0 = -1
    for (; bit < count; ++bit) out[bit] = ((p[bit >> 3] >> (bit & 7)) & 1) ? 1 : -1;
  }
  for (uint64_t k = 0; bits > 1 && k < count; ++k) {
    uint32_t v = 0;
    for (int b = 0; b < bits; ++b, ++bit) v |= uint32_t((p[bit >> 3] >> (bit & 7)) & 1) << b;
    const int s = (v & (1u << (bits - 1))) ? int(v) - (1 << bits) : int(v);
    if (s < -lim || s > lim || (nonzero && s == 0)) {
      std::ostringstream o;
      o << "value #" << k << " = " << s << " outside [" << (nonzero ? "non-zero in " : "") << -lim
        << ", " << lim << "]";
      *why = o.str();
      return false;
    }
    out[k] = int16_t(s);  // |s| <= 127
  }
  for (; bit < need * 8; ++bit) {
    if ((p[bit >> 3] >> (bit & 7)) & 1) {
      *why = "non-zero padding bit after the packed values";
      return false;
    }
  }
  return true;
}

// Decodes a kernel of `count` weights (count <= dense_macs <= 2^40), encoding
// 0 (dense) or 1 (sparse). Memory is allocated only after the byte length
// proves count <= 8 * len.
bool DecodeKernel(const uint8_t* p, uint64_t len, uint64_t count, int bits, int enc,
                  std::vector<int16_t>* w, std::string* why) {
  const uint64_t bm = (count + 7) / 8;
  if (enc == 0) {
    if (len != (count * bits + 7) / 8) return UnpackValues(p, len, count, bits, false, nullptr, why);
    w->assign(count, 0);
    return UnpackValues(p, len, count, bits, false, w->data(), why);
  }
  if (len < bm) {
    std::ostringstream s;
    s << "sparse length " << len << " shorter than its bitmap (" << bm << " bytes for " << count
      << " weights)";
    *why = s.str();
    return false;
  }
  uint64_t nnz = 0;
  for (uint64_t k = 0; k < count; ++k) nnz += (p[k >> 3] >> (k & 7)) & 1;
  for (uint64_t k = count; k < bm * 8; ++k) {
    if ((p[k >> 3] >> (k & 7)) & 1) {
      *why = "non-zero padding bit after the sparse bitmap";
      return false;
    }
  }
  w->assign(count, 0);
  std::vector<int16_t> vals(nnz);
  if (!UnpackValues(p + bm, len - bm, nnz, bits, true, vals.data(), why)) {
    *why = "sparse (bitmap nnz " + std::to_string(nnz) + "): " + *why;
    return false;
  }
  uint64_t j = 0;
  for (uint64_t k = 0; k < count; ++k) {
    if ((p[k >> 3] >> (k & 7)) & 1) (*w)[k] = vals[j++];
  }
  return true;
}

// Bit widths, encodings and (offset, length) regions of every kind.
bool CheckFields(const Instr& in, const Pool& pool, const Layer& L, const Fail& fail) {
  const bool weighted = L.kind <= kDense, has_w2 = L.kind == kSeparable;
  if (weighted) {  // w_bits (and w2_bits) 1..8 and their version: ParseCommon
    if (in.w_enc > 1) return fail("w_enc: expected 0 or 1, got ", in.w_enc);
  } else if (L.w_bits != 0 || in.w_enc != 0) {
    return fail("w_bits/w_enc: expected 0 for this kind, got ", L.w_bits, "/", in.w_enc);
  }
  if (has_w2) {
    if (in.w2_enc > 1) return fail("w2_enc: expected 0 or 1, got ", in.w2_enc);
  } else if (L.w2_bits != 0 || in.w2_enc != 0) {
    return fail("w2_bits/w2_enc: expected 0 for this kind, got ", L.w2_bits, "/", in.w2_enc);
  }
  auto region = [&](const char* name, uint64_t off, uint64_t len, bool used) {
    if (!used) {
      if (off != 0 || len != 0) {
        return fail(name, " (off, len): expected (0, 0) for this kind, got (", off, ", ", len, ")");
      }
      return true;
    }
    if (off > pool.size || len > pool.size - off) {
      return fail(name, " region [", off, ", ", off + len, ") outside the constant pool of ", pool.size,
                  " bytes");
    }
    return true;
  };
  return region("w", in.w_off, in.w_len, weighted) && region("w2", in.w2_off, in.w2_len, has_w2) &&
         region("rq", in.rq_off, in.rq_len, weighted || L.kind == kAvgPool);
}

// Kernels and per-channel requantization of kinds 1-4.
bool DecodeWeighted(const Instr& in, const Pool& pool, Layer* L, const Fail& fail) {
  std::string why;
  uint64_t count = uint64_t(L->kh) * L->kw * L->in_c;  // DEPTHWISE, SEPARABLE
  if (L->kind == kConv) count *= L->out_c;
  if (L->kind == kDense) count = uint64_t(L->in_c) * L->out_c;
  if (!DecodeKernel(pool.data + in.w_off, in.w_len, count, L->w_bits, in.w_enc, &L->w, &why)) {
    return fail("w: ", why);
  }
  if (L->kind == kSeparable) {
    const uint64_t c2 = uint64_t(L->in_c) * L->out_c;
    if (!DecodeKernel(pool.data + in.w2_off, in.w2_len, c2, L->w2_bits, in.w2_enc, &L->w2, &why)) {
      return fail("w2: ", why);
    }
  }
  if (in.rq_len != 13 * uint64_t(L->out_c)) {
    return fail("rq: length ", in.rq_len, " != ", 13 * uint64_t(L->out_c), " (13 bytes x out_c ", L->out_c, ")");
  }
  L->rq_m.resize(L->out_c);
  L->rq_n.resize(L->out_c);
  L->rq_sh.resize(L->out_c);
  for (int c = 0; c < L->out_c; ++c) {
    const uint8_t* r = pool.data + in.rq_off + 13 * uint64_t(c);
    L->rq_m[c] = int32_t(U32(r));
    L->rq_n[c] = int64_t(U64(r + 4));
    L->rq_sh[c] = r[12];
    if (L->rq_sh[c] < 1 || L->rq_sh[c] > 62) return fail("rq[", c, "].sh: expected 1-62, got ", L->rq_sh[c]);
  }
  return true;
}

// Scatter-row non-zeros (row_nnz, row2_nnz) and worst-case |accumulator| per
// output channel; *inner_max: worst |depthwise acc| of SEPARABLE. Sums of
// |w| <= 127 times codes <= 255 over <= 225 * 65,535 rows stay below 2^43.
void ScatterRowsAndBounds(Layer* L, std::vector<uint64_t>* acc_max, uint64_t* inner_max) {
  // max |input code|: 2^b - 1 unsigned, 2^(b-1) signed (two's complement).
  const uint64_t in_max = L->in_signed ? (1u << (L->in_bits - 1)) : (1u << L->in_bits) - 1;
  const int taps = L->kh * L->kw;
  acc_max->assign(L->out_c, 0);
  *inner_max = 0;
  if (L->kind == kConv || L->kind == kDense) {
    const int rows = L->kind == kConv ? taps * L->in_c : L->in_c;  // <= 225 * 65,535 < 2^24
    L->row_nnz.assign(rows, 0);
    for (int r = 0; r < rows; ++r) {
      const int16_t* row = &L->w[size_t(r) * L->out_c];
      for (int o = 0; o < L->out_c; ++o) {
        L->row_nnz[r] += row[o] != 0;
        (*acc_max)[o] += uint64_t(std::abs(row[o])) * in_max;
      }
    }
    return;
  }
  std::vector<uint64_t> dw(L->in_c, 0);
  for (int t = 0; t < taps; ++t)
    for (int c = 0; c < L->in_c; ++c) dw[c] += uint64_t(std::abs(L->w[size_t(t) * L->in_c + c])) * in_max;
  if (L->kind == kDepthwise) {
    *acc_max = dw;
    return;
  }
  L->row2_nnz.assign(L->in_c, 0);
  for (int c = 0; c < L->in_c; ++c) {
    *inner_max = std::max(*inner_max, dw[c]);
    const int16_t* row = &L->w2[size_t(c) * L->out_c];
    for (int o = 0; o < L->out_c; ++o) {
      L->row2_nnz[c] += row[o] != 0;
      (*acc_max)[o] += dw[c] * uint64_t(std::abs(row[o]));
    }
  }
}

// |acc| * |m| + |n| < 2^53 (exact double, no int64 overflow in z = acc*m + n
// + 2^(sh-1)), and |acc| < 2^31 unless acc_wide.
bool ProveBounds(Layer* L, const Fail& fail) {
  std::vector<uint64_t> acc_max;
  uint64_t inner_max = 0;
  ScatterRowsAndBounds(L, &acc_max, &inner_max);
  L->inner_max = inner_max;
  const u128 lim53 = u128(1) << 53, lim31 = u128(1) << 31;
  for (int o = 0; o < L->out_c; ++o) {
    const u128 m = u128(std::abs(int64_t(L->rq_m[o])));
    const u128 n = L->rq_n[o] < 0 ? u128(-(L->rq_n[o] + 1)) + 1 : u128(L->rq_n[o]);
    if (u128(acc_max[o]) * m + n >= lim53) {
      return fail("channel ", o, ": worst-case |z| = max|acc| ", acc_max[o],
                  " * |m| + |n| reaches 2^53 (raw outputs must convert to double exactly)");
    }
    if (!L->acc_wide && (acc_max[o] >= lim31 || inner_max >= lim31)) {
      return fail("channel ", o, ": acc_wide=0 but the worst-case accumulator reaches 2^31");
    }
  }
  return true;
}

bool ParseAvgPoolRecord(const Instr& in, const Pool& pool, Layer* L, const Fail& fail) {
  if (in.rq_len != 5) return fail("rq: AVGPOOL record length must be 5, got ", in.rq_len);
  L->avg_m = U32(pool.data + in.rq_off);
  L->avg_sh = pool.data[in.rq_off + 4];
  if (L->avg_sh < 1 || L->avg_sh > 40) return fail("rq.sh: expected 1-40, got ", L->avg_sh);
  // window <= 4096 x 4096, codes <= 255: the sum is < 2^33, times m < 2^32.
  const u128 worst = u128(uint64_t(L->kh) * L->kw * ((1u << L->in_bits) - 1)) * L->avg_m +
                     (uint64_t(1) << (L->avg_sh - 1));
  if (worst >= (u128(1) << 62)) return fail("worst-case sum*m + 2^(sh-1) reaches 2^62");
  return true;
}

}  // namespace

bool ParseConstants(const Instr& in, const Pool& pool, Layer* L, const Fail& fail) {
  if (!CheckFields(in, pool, *L, fail)) return false;
  L->weight_bytes = int64_t(in.w_len + in.w2_len + in.rq_len);
  if (L->kind <= kDense) return DecodeWeighted(in, pool, L, fail) && ProveBounds(L, fail);
  if (L->kind == kAvgPool) return ParseAvgPoolRecord(in, pool, L, fail);
  return true;
}

}  // namespace parse
}  // namespace keras_nna
