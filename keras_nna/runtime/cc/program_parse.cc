// Parsing and validation of keras_nna bytecode (docs/bytecode.md): the
// header, the instructions' data flow (a chain in version 1, a DAG in version
// 2) and the fields every kind shares. Per-kind
// geometry is in program_parse_geometry.cc, constants and arithmetic bounds in
// program_parse_constants.cc.
//
// Every read is bounds-checked against the byte count; every offset and
// length is combined in 64-bit arithmetic; worst-case arithmetic bounds are
// computed in 128-bit. A rejected program yields a reason string. The parser
// only validates and decodes: kernel-specific layouts are prepared afterwards
// (PrepareProgram, run_image.h).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "program.h"
#include "program_parse_internal.h"

namespace keras_nna {

using parse::CheckAdd;
using parse::CheckConsumersAndHold;
using parse::CheckSigns;
using parse::Fail;
using parse::ParseFlow;
using parse::Producer;
using parse::ProducerOf;
using parse::U16;
using parse::U32;

namespace {

constexpr size_t kHeaderSize = 32;
constexpr size_t kInstrSize = 64;
constexpr int kMaxLayers = 1024;

// Header fields after magic, version, sizes and CRC: input shape, bits, scale.
bool ParseInput(const uint8_t* data, Program* prog, const Fail& fail) {
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
  // A normal, positive, finite float32, decided on the bits: TensorFlow's
  // threads flush denormals, so a float comparison would see 0 there.
  const uint32_t scale_bits = U32(data + 20), scale_exp = (scale_bits >> 23) & 0xFF;
  if ((scale_bits >> 31) != 0 || scale_exp == 0 || scale_exp == 0xFF) {
    std::ostringstream s;
    s << "header.input_scale: expected a normal positive finite float32 (1.18e-38 to 3.4e38), got "
      << double(prog->input_scale) << " (bits 0x" << std::hex << scale_bits << ")";
    return fail(s.str());
  }
  if (U32(data + 24) != 0 || U32(data + 28) != 0) return fail("header.reserved (offsets 24-31): expected 0");
  const int64_t in_elems = int64_t(prog->in_h) * prog->in_w * prog->in_c;
  if (in_elems > kMaxTensorElements) {
    return fail("header: input of ", in_elems, " elements exceeds this emulator's limit of ",
                kMaxTensorElements);
  }
  return true;
}

// Kernel widths of kinds 1-4: 1-8 bits; 1 (codes -1/+1) needs format version 3.
bool CheckWeightBits(const char* name, int bits, int version, const Fail& fail) {
  if (bits < 1 || bits > 8) return fail(name, ": expected 1-8 (1 needs format version 3), got ", bits);
  if (bits == 1 && version < 3) {
    return fail(name, " 1 needs format version 3 (received a version-", version,
                " program, whose kernels have 2-8 bits); re-export the model");
  }
  return true;
}

// Fields every kind has: producers (bits, shape, step, signedness), raw
// output, acc_wide and the data-flow bytes. Fills *in with the rest.
bool ParseCommon(const uint8_t* p, bool last, int version, const Program& prog, Layer* L,
                 parse::Instr* in, const Fail& fail) {
  const bool weighted = L->kind <= kDense;
  L->in_bits = p[1];
  L->out_bits = p[2];
  L->out_exp = int8_t(p[3]);
  L->in_h = U16(p + 4); L->in_w = U16(p + 6); L->in_c = U16(p + 8);
  L->out_h = U16(p + 10); L->out_w = U16(p + 12); L->out_c = U16(p + 14);
  in->kh = p[16]; in->kw = p[17];
  L->stride_h = p[18]; L->stride_w = p[19];
  L->pad_top = p[20]; L->pad_left = p[21]; L->pad_bottom = p[22]; L->pad_right = p[23];
  L->w_bits = p[24]; L->w2_bits = p[25];
  in->w_enc = p[26]; in->w2_enc = p[27];
  in->w_off = U32(p + 28); in->w_len = U32(p + 32);
  in->w2_off = U32(p + 36); in->w2_len = U32(p + 40);
  in->rq_off = U32(p + 44); in->rq_len = U32(p + 48);
  in->pool_h = U16(p + 52); in->pool_w = U16(p + 54);
  in->acc_wide = p[56];
  if (!ParseFlow(p, version, L, fail)) return false;
  const Producer a = ProducerOf(prog, L->src);
  const std::string from = version == 1 ? "the previous layer" : "its src, " + a.name;
  if (L->in_bits != a.bits) {
    return fail("in_bits: expected ", a.bits, " (out_bits of ", from, "), got ", L->in_bits);
  }
  if (L->in_h != a.h || L->in_w != a.w || L->in_c != a.c) {
    return fail("input shape: expected ", a.h, "x", a.w, "x", a.c, " (output of ", from, "), got ", L->in_h, "x",
                L->in_w, "x", L->in_c);
  }
  L->raw = L->out_bits == 0;
  if (L->raw) {
    if (!last || !weighted) return fail("out_bits 0 (raw output) is only allowed on the last layer of kind 1-4");
    if (L->out_exp != 0) return fail("out_exp: expected 0 for a raw output, got ", L->out_exp);
  } else if (L->out_bits > 8) {
    return fail("out_bits: expected 0-8, got ", L->out_bits);
  }
  if (!CheckSigns(a, L, fail)) return false;
  // Edge-value rule (docs/bytecode.md, "Output"): on the last layer every
  // code q = 1 .. 2^out_bits - 1 times 2^-out_exp is a normal finite float32.
  if (last && !L->raw && (L->out_exp > 126 || L->out_exp < L->out_bits - 128)) {
    return fail("out_exp: expected ", L->out_bits - 128, " to 126 on the last layer (every output code q * 2^-out_exp "
                "must be a normal finite float32 for out_bits ", L->out_bits, "), got ", L->out_exp);
  }
  if (L->kind == kAdd) {
    if (!CheckAdd(prog, a, L, fail)) return false;
  } else if (!weighted) {
    if (L->out_bits != L->in_bits) return fail("out_bits: expected ", L->in_bits, " (= in_bits), got ", L->out_bits);
    if (L->src > 0 && L->out_exp != a.exp) {
      return fail("out_exp: expected ", a.exp, " (the step of ", version == 1 ? "the previous layer" : a.name,
                  "), got ", L->out_exp);
    }
  }
  if (in->acc_wide > 1) return fail("acc_wide: expected 0 or 1, got ", in->acc_wide);
  if (!weighted && in->acc_wide != 0) return fail("acc_wide: expected 0 for this kind, got ", in->acc_wide);
  L->acc_wide = in->acc_wide == 1;
  if (weighted) {
    if (!CheckWeightBits("w_bits", L->w_bits, version, fail)) return false;
    if (L->kind == kSeparable && !CheckWeightBits("w2_bits", L->w2_bits, version, fail)) return false;
  }
  return true;
}

Fail LayerFail(std::string* error, int i, int kind) {
  return Fail(error, "layer " + std::to_string(i) + " (" + KindName(kind) + "): ");
}

// Everything but the constants: common fields, geometry, sizes and costs.
bool ParseLayer(const uint8_t* p, int i, bool last, int version, const Program& prog, Layer* L,
                parse::Instr* in, std::string* error) {
  const Fail fail = LayerFail(error, i, p[0]);
  L->index = i;
  L->kind = p[0];
  if (L->kind < kConv || L->kind > kAdd) return fail("kind: expected 1-8, got ", int(p[0]));
  if (!ParseCommon(p, last, version, prog, L, in, fail)) return false;
  bool ok = false;
  switch (L->kind) {
    case kConv: case kDepthwise: case kSeparable: ok = ParseConvGeometry(*in, L, fail); break;
    case kDense: ok = ParseDenseGeometry(*in, L, fail); break;
    case kMaxPool: case kAvgPool: ok = ParsePoolGeometry(*in, L, fail); break;
    case kAdd: ok = ParseAddGeometry(*in, L, fail); break;
    default: ok = ParseFlattenGeometry(*in, L, fail); break;
  }
  return ok && CheckSizeAndWork(L, fail);
}

// One limit: the program's value, the limit and how to raise it.
bool CheckLimit(const char* name, const char* what, int64_t value, int64_t limit, const Fail& fail) {
  if (value <= limit) return true;
  return fail("program: ", what, " ", value, " exceeds the limit ", name, " = ", limit,
              " (docs/bytecode.md, \"Program limits\"). For a trusted program raise it, e.g. "
              "Emulator(program, limits={\"", name, "\": ", value, "}) or "
              "read_program(data, limits={\"", name, "\": ", value, "}) (op attribute ", name,
              "); work is per image: a batch costs N times as much");
}

// Sums the layers' costs into prog->costs and holds them to `limits`.
bool CheckProgramLimits(Program* prog, const ProgramLimits& limits, std::string* error) {
  ProgramCosts& c = prog->costs;
  c = ProgramCosts();
  for (const Layer& L : prog->layers) {
    c.work += L.work;
    c.constant_bytes += L.constant_bytes;
    if (L.activation_bytes > c.activation_bytes) {
      c.activation_bytes = L.activation_bytes;
      c.peak_layer = L.index;
    }
  }
  c.activation_bytes += prog->held_bytes;  // outputs kept beyond the ping-pong buffers (HELD)
  const Fail fail(error);
  std::string peak = "peak activation bytes (layer " + std::to_string(c.peak_layer);
  if (prog->held_bytes > 0) peak += " + " + std::to_string(prog->held_bytes) + " held bytes";
  peak += ")";
  return CheckLimit("max_work", "worst-case work per image (operations)", c.work, limits.max_work, fail) &&
         CheckLimit("max_activation_bytes", peak.c_str(), c.activation_bytes, limits.max_activation_bytes,
                    fail) &&
         CheckLimit("max_constant_bytes", "decoded constant bytes", c.constant_bytes,
                    limits.max_constant_bytes, fail);
}

// Magic, version, n_layers, total size and CRC. Sets *n_layers and *pool_size.
bool ParseFraming(const uint8_t* data, size_t size, int* version, int* n_layers, uint64_t* pool_size,
                  std::string* error) {
  const Fail fail(error);
  if (size < kHeaderSize + 4) {
    return fail("program too short: ", size, " bytes, a valid program has at least ", kHeaderSize + 4,
                " (header + CRC)");
  }
  if (std::memcmp(data, "NNAB", 4) != 0) {
    return fail("bad magic: expected \"NNAB\" at offset 0 (is this a keras_nna program?)");
  }
  *version = U16(data + 4);
  if (*version < 1 || *version > 3) {
    return fail("header.version: unsupported format version ", *version, " (this reader reads versions 1, 2 and 3)");
  }
  *n_layers = U16(data + 6);
  if (*n_layers < 1 || *n_layers > kMaxLayers) {
    return fail("header.n_layers: expected 1-", kMaxLayers, ", got ", *n_layers);
  }
  *pool_size = U32(data + 8);
  const uint64_t total = kHeaderSize + kInstrSize * uint64_t(*n_layers) + *pool_size + 4;
  if (uint64_t(size) != total) {
    return fail("program size: header (n_layers=", *n_layers, ", pool_size=", *pool_size,
                ") implies ", total, " bytes, got ", size);
  }
  const uint32_t crc = U32(data + size - 4), got_crc = Crc32(data, size - 4);
  if (crc != got_crc) {
    std::ostringstream s;
    s << std::hex << "CRC32 mismatch: stored 0x" << crc << ", computed 0x" << got_crc
      << " (corrupted or truncated program)";
    *error = s.str();
    return false;
  }
  return true;
}

}  // namespace

const char* KindName(int kind) {
  static const char* names[] = {"?",       "CONV",    "DEPTHWISE", "SEPARABLE", "DENSE",
                                "MAXPOOL", "AVGPOOL", "FLATTEN",   "ADD"};
  return (kind >= 1 && kind <= 8) ? names[kind] : names[0];
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

bool ParseProgram(const uint8_t* data, size_t size, Program* prog, std::string* error) {
  return ParseProgram(data, size, ProgramLimits(), prog, error);
}

bool ParseProgram(const uint8_t* data, size_t size, const ProgramLimits& limits, Program* prog,
                  std::string* error) {
  int version = 0, n_layers = 0;
  uint64_t pool_size = 0;
  if (!ParseFraming(data, size, &version, &n_layers, &pool_size, error)) return false;
  if (!ParseInput(data, prog, Fail(error))) return false;
  prog->version = version;
  const parse::Pool pool{data + kHeaderSize + kInstrSize * n_layers, pool_size};
  prog->layers.assign(n_layers, Layer());
  std::vector<parse::Instr> instrs(n_layers);
  prog->max_elems = size_t(int64_t(prog->in_h) * prog->in_w * prog->in_c);
  for (int i = 0; i < n_layers; ++i) {
    Layer& L = prog->layers[i];
    if (!ParseLayer(data + kHeaderSize + kInstrSize * i, i, i == n_layers - 1, version, *prog, &L,
                    &instrs[i], error)) {
      return false;
    }
    int64_t biggest = std::max(L.in_elems, L.out_elems);
    if (L.kind == kSeparable) biggest = std::max<int64_t>(biggest, int64_t(L.out_h) * L.out_w * L.in_c);
    prog->max_elems = std::max<size_t>(prog->max_elems, size_t(biggest));
  }
  if (!CheckConsumersAndHold(prog, error)) return false;
  // Whole-program limits from the shapes, before any constant is decoded.
  if (!CheckProgramLimits(prog, limits, error)) return false;
  for (int i = 0; i < n_layers; ++i) {
    Layer& L = prog->layers[i];
    if (!ParseConstants(instrs[i], pool, &L, LayerFail(error, i, L.kind))) return false;
  }
  const Layer& last = prog->layers.back();
  prog->out_h = last.out_h;
  prog->out_w = last.out_w;
  prog->out_c = last.out_c;
  prog->out_rank1 = last.out_h == 1 && last.out_w == 1;
  return true;
}

}  // namespace keras_nna
