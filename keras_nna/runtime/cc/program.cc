// Parsing and validation of keras_nna bytecode (docs/bytecode.md).
//
// Every read is bounds-checked against the byte count; every offset and
// length is combined in 64-bit arithmetic; worst-case arithmetic bounds are
// computed in 128-bit. A rejected program yields a reason string.
#include "program.h"

#include "simd.h"

#include <cmath>
#include <cstring>
#include <sstream>

namespace keras_nna {
namespace {

constexpr size_t kHeaderSize = 32;
constexpr size_t kInstrSize = 64;
constexpr int kMaxLayers = 1024;
// Implementation limit: worst-case inner-loop iterations of one layer for one
// image (~minutes of CPU). Keeps hostile programs from hanging a process.
constexpr int64_t kMaxLayerWork = int64_t{1} << 40;

uint16_t U16(const uint8_t* p) { return uint16_t(p[0] | (p[1] << 8)); }
uint32_t U32(const uint8_t* p) {
  return uint32_t(p[0]) | (uint32_t(p[1]) << 8) | (uint32_t(p[2]) << 16) |
         (uint32_t(p[3]) << 24);
}
uint64_t U64(const uint8_t* p) {
  return uint64_t(U32(p)) | (uint64_t(U32(p + 4)) << 32);
}

// Builds a reason string and returns false.
class Fail {
 public:
  explicit Fail(std::string* out) : out_(out) {}
  template <typename... Args>
  bool operator()(const Args&... args) {
    std::ostringstream s;
    (s << ... << args);
    *out_ = s.str();
    return false;
  }

 private:
  std::string* out_;
};

// Decodes `count` b-bit two's-complement fields packed LSB first.
// Requires the exact byte length, zero padding bits, and values in the
// symmetric range [-(2^(b-1)-1), 2^(b-1)-1] (non-zero if `nonzero`).
bool UnpackValues(const uint8_t* p, uint64_t len, uint64_t count, int bits,
                  bool nonzero, int16_t* out, std::string* why) {
  const uint64_t need = (count * bits + 7) / 8;
  if (len != need) {
    std::ostringstream s;
    s << "packed values length " << len << " != " << need << " expected for "
      << count << " values of " << bits << " bits";
    *why = s.str();
    return false;
  }
  const int lim = (1 << (bits - 1)) - 1;
  uint64_t bit = 0;
  for (uint64_t k = 0; k < count; ++k) {
    uint32_t v = 0;
    for (int b = 0; b < bits; ++b, ++bit) {
      v |= uint32_t((p[bit >> 3] >> (bit & 7)) & 1) << b;
    }
    int s = (v & (1u << (bits - 1))) ? int(v) - (1 << bits) : int(v);
    if (s < -lim || s > lim || (nonzero && s == 0)) {
      std::ostringstream o;
      o << "value #" << k << " = " << s << " outside ["
        << (nonzero ? "non-zero in " : "") << -lim << ", " << lim << "]";
      *why = o.str();
      return false;
    }
    out[k] = int16_t(s);
  }
  for (; bit < need * 8; ++bit) {
    if ((p[bit >> 3] >> (bit & 7)) & 1) {
      *why = "non-zero padding bit after the packed values";
      return false;
    }
  }
  return true;
}

// Decodes a kernel of `count` weights, encoding 0 (dense) or 1 (sparse).
bool DecodeKernel(const uint8_t* p, uint64_t len, uint64_t count, int bits,
                  int enc, std::vector<int16_t>* w, std::string* why) {
  const uint64_t bm = (count + 7) / 8;
  if (enc == 0) {
    if (len != (count * bits + 7) / 8) return UnpackValues(p, len, count, bits, false, nullptr, why);
    w->assign(count, 0);  // only after the length check: count is bounded by real bytes
    return UnpackValues(p, len, count, bits, false, w->data(), why);
  }
  if (len < bm) {
    std::ostringstream s;
    s << "sparse length " << len << " shorter than its bitmap (" << bm
      << " bytes for " << count << " weights)";
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

// Conv-style output size; returns -1 if the padded input is smaller than the
// window.
int64_t OutSize(int64_t in, int64_t pad_a, int64_t pad_b, int64_t k, int64_t s) {
  const int64_t span = in + pad_a + pad_b - k;
  return span < 0 ? -1 : span / s + 1;
}

}  // namespace

const char* KindName(int kind) {
  static const char* names[] = {"?",     "CONV",    "DEPTHWISE", "SEPARABLE",
                                "DENSE", "MAXPOOL", "AVGPOOL",   "FLATTEN"};
  return (kind >= 1 && kind <= 7) ? names[kind] : names[0];
}

uint32_t Crc32(const uint8_t* data, size_t n) {
  static uint32_t table[256];
  static const bool init = [] {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      table[i] = c;
    }
    return true;
  }();
  (void)init;
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; ++i) c = table[(c ^ data[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

bool ParseLayer(const uint8_t* ins, const uint8_t* pool, uint64_t pool_size,
                int index, bool last, const Layer* prev, int prev_exp,
                Layer* L, std::string* error);

bool ParseProgram(const uint8_t* data, size_t size, Program* prog,
                  std::string* error) {
  Fail fail(error);
  if (size < kHeaderSize + 4) {
    return fail("program too short: ", size, " bytes, a valid program has at "
                "least ", kHeaderSize + 4, " (header + CRC)");
  }
  if (std::memcmp(data, "NNAB", 4) != 0) {
    return fail("bad magic: expected \"NNAB\" at offset 0 (is this a keras_nna "
                "program?)");
  }
  const uint16_t version = U16(data + 4);
  if (version != 1) return fail("header.version: expected 1, got ", version);
  const int n_layers = U16(data + 6);
  if (n_layers < 1 || n_layers > kMaxLayers) {
    return fail("header.n_layers: expected 1-", kMaxLayers, ", got ", n_layers);
  }
  const uint64_t pool_size = U32(data + 8);
  const uint64_t total = kHeaderSize + kInstrSize * uint64_t(n_layers) + pool_size + 4;
  if (uint64_t(size) != total) {
    return fail("program size: header (n_layers=", n_layers, ", pool_size=",
                pool_size, ") implies ", total, " bytes, got ", size);
  }
  const uint32_t crc = U32(data + size - 4), got_crc = Crc32(data, size - 4);
  if (crc != got_crc) {
    std::ostringstream s;
    s << std::hex << "CRC32 mismatch: stored 0x" << crc << ", computed 0x"
      << got_crc << " (corrupted or truncated program)";
    *error = s.str();
    return false;
  }
  prog->in_h = U16(data + 12);
  prog->in_w = U16(data + 14);
  prog->in_c = U16(data + 16);
  prog->in_bits = data[18];
  if (prog->in_h < 1 || prog->in_h > 4096) return fail("header.in_h: expected 1-4096, got ", prog->in_h);
  if (prog->in_w < 1 || prog->in_w > 4096) return fail("header.in_w: expected 1-4096, got ", prog->in_w);
  if (prog->in_c < 1 || prog->in_c > 8192) return fail("header.in_c: expected 1-8192, got ", prog->in_c);
  if (prog->in_bits < 1 || prog->in_bits > 8) return fail("header.in_bits: expected 1-8, got ", prog->in_bits);
  if (data[19] != 0) return fail("header.flags: expected 0, got ", int(data[19]));
  std::memcpy(&prog->input_scale, data + 20, 4);
  if (!(std::isfinite(prog->input_scale) && prog->input_scale > 0.f)) {
    return fail("header.input_scale: expected a finite value > 0, got ", prog->input_scale);
  }
  if (U32(data + 24) != 0 || U32(data + 28) != 0) {
    return fail("header.reserved (offsets 24-31): expected 0");
  }
  const int64_t in_elems = int64_t(prog->in_h) * prog->in_w * prog->in_c;
  if (in_elems > kMaxTensorElements) {
    return fail("header: input of ", in_elems, " elements exceeds this "
                "emulator's limit of ", kMaxTensorElements);
  }
  const uint8_t* pool = data + kHeaderSize + kInstrSize * n_layers;
  Layer input;  // the image, seen as the output of a layer -1
  input.out_h = prog->in_h;
  input.out_w = prog->in_w;
  input.out_c = prog->in_c;
  input.out_bits = prog->in_bits;
  const Layer* prev = &input;
  int prev_exp = 0;  // unused for layer 0: the image's step is input_scale, not a power of two
  prog->layers.assign(n_layers, Layer());
  prog->max_elems = size_t(in_elems);
  for (int i = 0; i < n_layers; ++i) {
    Layer& L = prog->layers[i];
    if (!ParseLayer(data + kHeaderSize + kInstrSize * i, pool, pool_size, i,
                    i == n_layers - 1, prev, prev_exp, &L, error)) {
      return false;
    }
    int64_t biggest = std::max(L.in_elems, L.out_elems);
    if (L.kind == kSeparable) biggest = std::max<int64_t>(biggest, int64_t(L.out_h) * L.out_w * L.in_c);
    prog->max_elems = std::max<size_t>(prog->max_elems, size_t(biggest));
    prev = &L;
    prev_exp = L.out_exp;
    PrepareVnni(&L);
  }
  const Layer& last = prog->layers.back();
  prog->out_h = last.out_h;
  prog->out_w = last.out_w;
  prog->out_c = last.out_c;
  prog->out_rank1 = last.out_h == 1 && last.out_w == 1;
  return true;
}

bool ParseLayer(const uint8_t* p, const uint8_t* pool, uint64_t pool_size,
                int i, bool last, const Layer* prev, int prev_exp, Layer* L,
                std::string* error) {
  Fail fail0(error);
  std::string where = "layer " + std::to_string(i);
  auto fail = [&](const auto&... args) {
    return fail0(where, " (", KindName(p[0]), "): ", args...);
  };
  L->index = i;
  L->kind = p[0];
  if (L->kind < 1 || L->kind > 7) return fail("kind: expected 1-7, got ", int(p[0]));
  const bool conv = L->kind <= kSeparable, weighted = L->kind <= kDense;
  const bool pooling = L->kind == kMaxPool || L->kind == kAvgPool;
  L->in_bits = p[1];
  L->out_bits = p[2];
  L->out_exp = int8_t(p[3]);
  L->in_h = U16(p + 4); L->in_w = U16(p + 6); L->in_c = U16(p + 8);
  L->out_h = U16(p + 10); L->out_w = U16(p + 12); L->out_c = U16(p + 14);
  const int kh = p[16], kw = p[17];
  L->stride_h = p[18]; L->stride_w = p[19];
  L->pad_top = p[20]; L->pad_left = p[21]; L->pad_bottom = p[22]; L->pad_right = p[23];
  L->w_bits = p[24]; L->w2_bits = p[25];
  const int w_enc = p[26], w2_enc = p[27];
  const uint64_t w_off = U32(p + 28), w_len = U32(p + 32);
  const uint64_t w2_off = U32(p + 36), w2_len = U32(p + 40);
  const uint64_t rq_off = U32(p + 44), rq_len = U32(p + 48);
  const int pool_h = U16(p + 52), pool_w = U16(p + 54);
  const int acc_wide = p[56];

  if (L->in_bits != prev->out_bits) {
    return fail("in_bits: expected ", prev->out_bits, " (previous layer's out_bits), got ", L->in_bits);
  }
  if (L->in_h != prev->out_h || L->in_w != prev->out_w || L->in_c != prev->out_c) {
    return fail("input shape: expected ", prev->out_h, "x", prev->out_w, "x", prev->out_c,
                " (previous output), got ", L->in_h, "x", L->in_w, "x", L->in_c);
  }
  L->raw = L->out_bits == 0;
  if (L->raw) {
    if (!last || !weighted) return fail("out_bits 0 (raw output) is only allowed on the last layer of kind 1-4");
    if (L->out_exp != 0) return fail("out_exp: expected 0 for a raw output, got ", L->out_exp);
  } else if (L->out_bits > 8) {
    return fail("out_bits: expected 0-8, got ", L->out_bits);
  }
  if (!weighted) {
    if (L->out_bits != L->in_bits) return fail("out_bits: expected ", L->in_bits, " (= in_bits), got ", L->out_bits);
    if (i > 0 && L->out_exp != prev_exp) return fail("out_exp: expected ", prev_exp, " (previous step), got ", L->out_exp);
  }
  if (acc_wide > 1) return fail("acc_wide: expected 0 or 1, got ", acc_wide);
  if (!weighted && acc_wide != 0) return fail("acc_wide: expected 0 for this kind, got ", acc_wide);
  L->acc_wide = acc_wide == 1;
  for (int k = 57; k < 64; ++k) {
    if (p[k] != 0) return fail("reserved byte ", k, ": expected 0, got ", int(p[k]));
  }

  // Geometry.
  auto check_stride = [&]() {
    if (L->stride_h < 1 || L->stride_h > 15 || L->stride_w < 1 || L->stride_w > 15) {
      return fail("strides: expected 1-15, got ", L->stride_h, "x", L->stride_w);
    }
    return true;
  };
  auto check_out = [&](int64_t eh, int64_t ew, int64_t ec) {
    if (eh < 1 || ew < 1) {
      return fail("window ", L->kh, "x", L->kw, " larger than the padded input ",
                  L->in_h + L->pad_top + L->pad_bottom, "x", L->in_w + L->pad_left + L->pad_right);
    }
    if (L->out_h != eh || L->out_w != ew || L->out_c != ec) {
      return fail("output shape: expected ", eh, "x", ew, "x", ec, ", got ",
                  L->out_h, "x", L->out_w, "x", L->out_c);
    }
    return true;
  };
  if (conv || L->kind == kDense) {
    if (pool_h != 0 || pool_w != 0) return fail("pool_h/pool_w: expected 0, got ", pool_h, "x", pool_w);
    L->kh = kh; L->kw = kw;
    if (L->kind == kDense) {
      if (kh != 1 || kw != 1 || L->stride_h != 1 || L->stride_w != 1 || L->pad_top || L->pad_left ||
          L->pad_bottom || L->pad_right) {
        return fail("DENSE needs kh=kw=stride=1 and pads 0");
      }
      if (L->in_h != 1 || L->in_w != 1) return fail("DENSE input must be 1x1xC, got ", L->in_h, "x", L->in_w, "x", L->in_c);
      if (L->out_c < 1) return fail("out_c: expected >= 1, got 0");
      if (!check_out(1, 1, L->out_c)) return false;
    } else {
      if (kh < 1 || kh > 15 || kw < 1 || kw > 15) return fail("kernel: expected 1-15, got ", kh, "x", kw);
      if (!check_stride()) return false;
      if (L->pad_top >= kh || L->pad_bottom >= kh || L->pad_left >= kw || L->pad_right >= kw) {
        return fail("pads (", L->pad_top, ",", L->pad_left, ",", L->pad_bottom, ",", L->pad_right,
                    ") must each be < the kernel size ", kh, "x", kw);
      }
      const int64_t oc = L->kind == kDepthwise ? L->in_c : L->out_c;
      if (oc < 1) return fail("out_c: expected >= 1, got 0");
      if (!check_out(OutSize(L->in_h, L->pad_top, L->pad_bottom, kh, L->stride_h),
                     OutSize(L->in_w, L->pad_left, L->pad_right, kw, L->stride_w), oc)) {
        return false;
      }
    }
  } else if (pooling) {
    if (kh != 1 || kw != 1) return fail("kh/kw: expected 1x1 for pools (the window is pool_h x pool_w), got ", kh, "x", kw);
    if (pool_h < 1 || pool_h > 4096 || pool_w < 1 || pool_w > 4096) {
      return fail("pool window: expected 1-4096, got ", pool_h, "x", pool_w);
    }
    L->kh = pool_h; L->kw = pool_w;
    if (!check_stride()) return false;
    if (L->kind == kAvgPool && (L->pad_top || L->pad_left || L->pad_bottom || L->pad_right)) {
      return fail("AVGPOOL pads must be 0");
    }
    if (L->pad_top >= pool_h || L->pad_bottom >= pool_h || L->pad_left >= pool_w || L->pad_right >= pool_w) {
      return fail("pads must each be < the window ", pool_h, "x", pool_w);
    }
    if (!check_out(OutSize(L->in_h, L->pad_top, L->pad_bottom, pool_h, L->stride_h),
                   OutSize(L->in_w, L->pad_left, L->pad_right, pool_w, L->stride_w), L->in_c)) {
      return false;
    }
  } else {  // FLATTEN
    if (kh != 1 || kw != 1 || L->stride_h != 1 || L->stride_w != 1 || L->pad_top || L->pad_left ||
        L->pad_bottom || L->pad_right) {
      return fail("FLATTEN needs kh=kw=stride=1 and pads 0");
    }
    if (pool_h != 0 || pool_w != 0) return fail("pool_h/pool_w: expected 0, got ", pool_h, "x", pool_w);
    L->kh = L->kw = 0;
    L->stride_h = L->stride_w = 1;
    if (!check_out(1, 1, int64_t(L->in_h) * L->in_w * L->in_c)) return false;
  }
  L->in_elems = int64_t(L->in_h) * L->in_w * L->in_c;
  L->out_elems = int64_t(L->out_h) * L->out_w * L->out_c;
  if (L->out_elems > kMaxTensorElements ||
      (L->kind == kSeparable && int64_t(L->out_h) * L->out_w * L->in_c > kMaxTensorElements)) {
    return fail("output of ", L->out_elems, " elements exceeds this emulator's limit of ", kMaxTensorElements);
  }
  const int64_t positions = int64_t(L->out_h) * L->out_w;
  switch (L->kind) {
    case kConv: L->dense_macs = positions * L->out_c * L->kh * L->kw * L->in_c; break;
    case kDepthwise: L->dense_macs = positions * L->in_c * L->kh * L->kw; break;
    case kSeparable:
      L->dense_macs = positions * L->in_c * (int64_t(L->kh) * L->kw + L->out_c);
      break;
    case kDense: L->dense_macs = int64_t(L->in_c) * L->out_c; break;
    default: L->dense_macs = 0;
  }
  const int64_t work = pooling ? L->out_elems * L->kh * L->kw : L->dense_macs;
  if (work > kMaxLayerWork) {
    return fail("worst-case work of ", work, " operations per image exceeds this emulator's limit of ",
                kMaxLayerWork);
  }

  // Constants.
  auto check_region = [&](const char* name, uint64_t off, uint64_t len, bool used) {
    if (!used) {
      if (off != 0 || len != 0) return fail(name, " (off, len): expected (0, 0) for this kind, got (", off, ", ", len, ")");
      return true;
    }
    if (off > pool_size || len > pool_size - off) {
      return fail(name, " region [", off, ", ", off + len, ") outside the constant pool of ", pool_size, " bytes");
    }
    return true;
  };
  const bool has_w2 = L->kind == kSeparable;
  if (weighted) {
    if (L->w_bits < 2 || L->w_bits > 8) return fail("w_bits: expected 2-8, got ", L->w_bits);
    if (w_enc > 1) return fail("w_enc: expected 0 or 1, got ", w_enc);
  } else if (L->w_bits != 0 || w_enc != 0) {
    return fail("w_bits/w_enc: expected 0 for this kind, got ", L->w_bits, "/", w_enc);
  }
  if (has_w2) {
    if (L->w2_bits < 2 || L->w2_bits > 8) return fail("w2_bits: expected 2-8, got ", L->w2_bits);
    if (w2_enc > 1) return fail("w2_enc: expected 0 or 1, got ", w2_enc);
  } else if (L->w2_bits != 0 || w2_enc != 0) {
    return fail("w2_bits/w2_enc: expected 0 for this kind, got ", L->w2_bits, "/", w2_enc);
  }
  if (!check_region("w", w_off, w_len, weighted) || !check_region("w2", w2_off, w2_len, has_w2) ||
      !check_region("rq", rq_off, rq_len, weighted || L->kind == kAvgPool)) {
    return false;
  }
  L->weight_bytes = int64_t(w_len + w2_len + rq_len);
  std::string why;
  if (weighted) {
    uint64_t count = 0;
    if (L->kind == kConv) count = uint64_t(L->kh) * L->kw * L->in_c * L->out_c;
    else if (L->kind == kDense) count = uint64_t(L->in_c) * L->out_c;
    else count = uint64_t(L->kh) * L->kw * L->in_c;
    if (!DecodeKernel(pool + w_off, w_len, count, L->w_bits, w_enc, &L->w, &why)) return fail("w: ", why);
    if (has_w2) {
      const uint64_t c2 = uint64_t(L->in_c) * L->out_c;
      if (!DecodeKernel(pool + w2_off, w2_len, c2, L->w2_bits, w2_enc, &L->w2, &why)) return fail("w2: ", why);
    }
    if (rq_len != 13 * uint64_t(L->out_c)) {
      return fail("rq: length ", rq_len, " != ", 13 * uint64_t(L->out_c), " (13 bytes x out_c ", L->out_c, ")");
    }
    L->rq_m.resize(L->out_c); L->rq_n.resize(L->out_c); L->rq_sh.resize(L->out_c);
    for (int c = 0; c < L->out_c; ++c) {
      const uint8_t* r = pool + rq_off + 13 * uint64_t(c);
      L->rq_m[c] = int32_t(U32(r));
      L->rq_n[c] = int64_t(U64(r + 4));
      L->rq_sh[c] = r[12];
      if (L->rq_sh[c] < 1 || L->rq_sh[c] > 62) return fail("rq[", c, "].sh: expected 1-62, got ", L->rq_sh[c]);
    }
    // Scatter rows and worst-case bounds.
    using u128 = unsigned __int128;
    const uint64_t in_max = (1u << L->in_bits) - 1;
    std::vector<uint64_t> acc_max(L->out_c, 0);  // worst |acc| per output channel
    u128 inner_max = 0;                           // SEPARABLE: worst |depthwise acc|
    const int taps = L->kh * L->kw;
    if (L->kind == kConv || L->kind == kDense) {
      const int rows = L->kind == kConv ? taps * L->in_c : L->in_c;
      L->row_nnz.assign(rows, 0);
      for (int r = 0; r < rows; ++r) {
        const int16_t* row = &L->w[size_t(r) * L->out_c];
        for (int o = 0; o < L->out_c; ++o) {
          L->row_nnz[r] += row[o] != 0;
          acc_max[o] += uint64_t(std::abs(row[o])) * in_max;
        }
      }
    } else {
      std::vector<uint64_t> dw(L->in_c, 0);
      for (int t = 0; t < taps; ++t)
        for (int c = 0; c < L->in_c; ++c) dw[c] += uint64_t(std::abs(L->w[size_t(t) * L->in_c + c])) * in_max;
      if (L->kind == kDepthwise) {
        acc_max = dw;
      } else {
        L->row2_nnz.assign(L->in_c, 0);
        for (int c = 0; c < L->in_c; ++c) {
          inner_max = std::max<u128>(inner_max, dw[c]);
          const int16_t* row = &L->w2[size_t(c) * L->out_c];
          for (int o = 0; o < L->out_c; ++o) {
            L->row2_nnz[c] += row[o] != 0;
            acc_max[o] += dw[c] * uint64_t(std::abs(row[o]));
          }
        }
      }
    }
    const u128 lim53 = u128(1) << 53, lim31 = u128(1) << 31;
    L->inner_max = uint64_t(std::min<u128>(inner_max, ~uint64_t(0)));
    for (int o = 0; o < L->out_c; ++o) {
      const u128 m = u128(std::abs(int64_t(L->rq_m[o])));
      const u128 n = L->rq_n[o] < 0 ? u128(-(L->rq_n[o] + 1)) + 1 : u128(L->rq_n[o]);
      if (u128(acc_max[o]) * m + n >= lim53) {
        return fail("channel ", o, ": worst-case |z| = max|acc| ", acc_max[o], " * |m| + |n| reaches 2^53 (raw outputs must convert to double exactly)");
      }
      if (!L->acc_wide && (acc_max[o] >= lim31 || inner_max >= lim31)) {
        return fail("channel ", o, ": acc_wide=0 but the worst-case accumulator reaches 2^31");
      }
    }
  } else if (L->kind == kAvgPool) {
    if (rq_len != 5) return fail("rq: AVGPOOL record length must be 5, got ", rq_len);
    L->avg_m = U32(pool + rq_off);
    L->avg_sh = pool[rq_off + 4];
    if (L->avg_sh < 1 || L->avg_sh > 40) return fail("rq.sh: expected 1-40, got ", L->avg_sh);
    const unsigned __int128 worst = (unsigned __int128)(uint64_t(L->kh) * L->kw * ((1u << L->in_bits) - 1)) *
                                        L->avg_m + (uint64_t(1) << (L->avg_sh - 1));
    if (worst >= ((unsigned __int128)1 << 62)) return fail("worst-case sum*m + 2^(sh-1) reaches 2^62");
  }
  return true;
}

}  // namespace keras_nna
