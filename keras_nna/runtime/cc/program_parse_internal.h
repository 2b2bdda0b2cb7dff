// Shared pieces of the bytecode parser (program_parse*.cc); not used by kernels.
#ifndef KERAS_NNA_RUNTIME_CC_PROGRAM_PARSE_INTERNAL_H_
#define KERAS_NNA_RUNTIME_CC_PROGRAM_PARSE_INTERNAL_H_

#include <cstdint>
#include <sstream>
#include <string>

#include "program.h"

namespace keras_nna {
namespace parse {

inline uint16_t U16(const uint8_t* p) { return uint16_t(p[0] | (p[1] << 8)); }
inline uint32_t U32(const uint8_t* p) {
  return uint32_t(p[0]) | (uint32_t(p[1]) << 8) | (uint32_t(p[2]) << 16) | (uint32_t(p[3]) << 24);
}
inline uint64_t U64(const uint8_t* p) { return uint64_t(U32(p)) | (uint64_t(U32(p + 4)) << 32); }

// Writes a reason string (prefix + args) to *out and returns false.
class Fail {
 public:
  Fail(std::string* out, std::string prefix = "") : out_(out), prefix_(std::move(prefix)) {}
  template <typename... Args>
  bool operator()(const Args&... args) const {
    std::ostringstream s;
    s << prefix_;
    (s << ... << args);
    *out_ = s.str();
    return false;
  }

 private:
  std::string* out_;
  std::string prefix_;
};

// The fields of one 64-byte instruction that do not go straight into Layer.
struct Instr {
  int kh = 0, kw = 0;
  int w_enc = 0, w2_enc = 0;
  uint64_t w_off = 0, w_len = 0, w2_off = 0, w2_len = 0, rq_off = 0, rq_len = 0;
  int pool_h = 0, pool_w = 0;
  int acc_wide = 0;
};

// The constant pool of a program: `size` bytes at `data`.
struct Pool {
  const uint8_t* data;
  uint64_t size;
};

// Geometry of one kind: checks kernel/window, strides, pads and the output
// shape, and sets L->kh/kw (program_parse_geometry.cc).
bool ParseConvGeometry(const Instr& in, Layer* L, const Fail& fail);     // kinds 1-3
bool ParseDenseGeometry(const Instr& in, Layer* L, const Fail& fail);    // kind 4
bool ParsePoolGeometry(const Instr& in, Layer* L, const Fail& fail);     // kinds 5-6
bool ParseFlattenGeometry(const Instr& in, Layer* L, const Fail& fail);  // kind 7
bool ParseAddGeometry(const Instr& in, Layer* L, const Fail& fail);      // kind 8

// What a layer reads: the image (src 0) or the output of an earlier layer
// (program_parse_flow.cc).
struct Producer {
  int h = 0, w = 0, c = 0, bits = 0, exp = 0;  // the image's exponent counts as 0
  bool is_signed = false;
  std::string name;  // "the image" or "layer j"
};
Producer ProducerOf(const Program& prog, int src);
// Bytes 57..63: out_signed, src, src2 (version 2) or zeros (version 1: src = index).
bool ParseFlow(const uint8_t* p, int version, Layer* L, const Fail& fail);
// Input/output signedness rules by kind; sets L->in_signed (needs L->raw).
bool CheckSigns(const Producer& a, Layer* L, const Fail& fail);
// ADD: second input and exponent rules; sets in2_bits/in2_signed/add_sa/add_sb/add_d.
bool CheckAdd(const Program& prog, const Producer& a, Layer* L, const Fail& fail);
// Every output but the last is used; sets held_off and prog->held_bytes.
bool CheckConsumersAndHold(Program* prog, std::string* error);

// Sets in/out elements, dense_macs and the layer's costs in the units of
// ProgramLimits (work, activation_bytes, constant_bytes); enforces
// kMaxTensorElements and kMaxLayerWork (program_parse_geometry.cc).
bool CheckSizeAndWork(Layer* L, const Fail& fail);

// Constants (program_parse_constants.cc): weight and requantization fields of
// every kind; for kinds 1-4 decodes the kernels and requantization, fills
// row_nnz/row2_nnz and proves the accumulator bounds; for AVGPOOL its record.
bool ParseConstants(const Instr& in, const Pool& pool, Layer* L, const Fail& fail);

}  // namespace parse
}  // namespace keras_nna

#endif  // KERAS_NNA_RUNTIME_CC_PROGRAM_PARSE_INTERNAL_H_
