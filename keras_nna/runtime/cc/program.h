// keras_nna bytecode (docs/bytecode.md, versions 1, 2 and 3): parsing and validation.
//
// ParseProgram() turns untrusted bytes into a typed, fully validated Program
// (program_parse*.cc). Kernels (run_image.h) only ever see a Program that
// ParseProgram() accepted: shapes are consistent, constants decoded, and
// worst-case arithmetic bounds proven to fit the accumulator chosen by the
// exporter. The bounds, and which integer type holds each index, are listed
// in docs/bytecode.md ("Bounds the parser proves").
#ifndef KERAS_NNA_RUNTIME_CC_PROGRAM_H_
#define KERAS_NNA_RUNTIME_CC_PROGRAM_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace keras_nna {

enum LayerKind : uint8_t {
  kConv = 1,
  kDepthwise = 2,
  kSeparable = 3,
  kDense = 4,
  kMaxPool = 5,
  kAvgPool = 6,
  kFlatten = 7,
  kAdd = 8,
};

const char* KindName(int kind);

// Number of int64 statistics per (image, layer).
constexpr int kNumStats = 6;
enum StatIndex {
  kEventsIn = 0,
  kSynops = 1,
  kDenseMacs = 2,
  kWeightBytes = 3,
  kActBytesIn = 4,
  kEventsOut = 5,
};

// Implementation limit (not in the format): elements of one activation or
// accumulator tensor of one image. Keeps a hostile program from asking for
// terabytes; a legitimate edge model is orders of magnitude smaller.
constexpr int64_t kMaxTensorElements = int64_t{1} << 28;

// Fields from `kind` to `w2` and the requantization are set by the parser;
// the packed layouts (w_vnni .. rq_pad) by PrepareProgram() after validation.
struct Layer {
  int kind = 0;
  int index = 0;
  int in_bits = 0, out_bits = 0, out_exp = 0;
  bool raw = false;       // out_bits == 0: float output z * 2^-sh
  bool acc_wide = false;  // accumulate in int64
  // Data flow (version 2; a version-1 chain has src = index): producer of the
  // input, 0 = the program's image, j >= 1 = the output of layer j - 1; src2
  // the second input of ADD (same encoding, 0 elsewhere). Codes are one byte
  // each: uint8 when unsigned, int8 (two's complement) when signed.
  int src = 0, src2 = 0;
  bool in_signed = false, out_signed = false;
  // ADD: the second input's bits and signedness (from its producer), the left
  // shifts of each input to the common exponent F = max(fa, fb) (0-16) and
  // d = F - out_exp (-16..16): q = clip(rhu(qa<<sa + qb<<sb, d)).
  int in2_bits = 0;
  bool in2_signed = false;
  int add_sa = 0, add_sb = 0, add_d = 0;
  // Output kept beyond the ping-pong buffers (a consumer later than the next
  // layer): byte offset in the held block (Program::held_bytes), else -1.
  int64_t held_off = -1;
  int in_h = 0, in_w = 0, in_c = 0;
  int out_h = 0, out_w = 0, out_c = 0;
  int kh = 0, kw = 0;     // kernel (conv kinds) or pool window (pools)
  int stride_h = 1, stride_w = 1;
  int pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
  int w_bits = 0, w2_bits = 0;
  // Decoded kernels, int16, layout chosen for scatter (rows over the fastest
  // output axis):
  //   CONV       w [kh][kw][in_c][out_c]   (Keras order)
  //   DEPTHWISE  w [kh][kw][c]
  //   SEPARABLE  w [kh][kw][c], w2 [in_c][out_c]
  //   DENSE      w [in_c][out_c]
  std::vector<int16_t> w, w2;
  // Non-zero weights per scatter row: CONV/DENSE per (tap, in channel) row of
  // out_c weights, SEPARABLE w2 per input channel. DEPTHWISE/SEPARABLE w:
  // 0/1 per (tap, channel) is w != 0 itself.
  std::vector<int32_t> row_nnz, row2_nnz;
  // --- Packed layouts (PrepareProgram, prepare_avx512vnni.cc); empty when
  // unused, which sends the layer to the portable kernels.
  // CONV/DENSE weights re-laid out for the VNNI kernels; empty when unused.
  std::vector<int8_t> w_vnni;
  int64_t vnni_k4 = 0;
  // Byte offset of (tap, channel group) k = tap*G + g in the zero-padded input
  // [in_h+pads][in_w+pads][4G] of the dense VNNI kernel (< 2^28: int32).
  std::vector<int32_t> vnni_offs;
  // Signed-input CONV/DENSE: 128 * sum of the weights of each output channel
  // (mod 2^32), subtracted after the u8 (code + 128) dot products.
  std::vector<int32_t> vnni_bias;
  // SEPARABLE with int32 accumulation and |depthwise acc| <= 32767: w2 as
  // int16 [out block of 16][channel pair][16 outputs][2 channels]; w as int32
  // [tap][channels padded to 16]. Empty when unused.
  std::vector<int16_t> w2_vnni;
  std::vector<int32_t> w_dw32, row2_nnz16;
  uint64_t inner_max = 0;  // SEPARABLE: worst |depthwise acc| (set by the parser)
  // Synops of the dense kernels by table (conv kinds): an event at byte j of
  // input row y meets syn_tab[syn_ycls[y]*syn_row + j] non-zero weights (rows
  // padded to 64 bytes; synops_avx512vnni.cc). syn_cpad: in_c padded to 16.
  std::vector<int32_t> syn_tab;
  std::vector<uint8_t> syn_ycls;
  int64_t syn_row = 0;
  int syn_cpad = 0;
  int64_t syn_flush = 1;  // 64-byte steps between int32 lane flushes
  // Kinds 1-4, codes output: m, n + 2^(sh-1), sh as int64 [3][rq_pad] for
  // the AVX-512 requantization, channel o at o % rq_pad (tiled to 16 when
  // out_c divides 16).
  std::vector<int64_t> rq_v;
  int rq_pad = 0;
  // --- Set by the parser.
  // Requantization, per output channel (kinds 1-4).
  std::vector<int32_t> rq_m;
  std::vector<int64_t> rq_n;
  std::vector<int32_t> rq_sh;
  // AVGPOOL record.
  uint32_t avg_m = 0;
  int avg_sh = 0;
  // Statistics that do not depend on the data.
  int64_t dense_macs = 0;
  int64_t weight_bytes = 0;
  int64_t in_elems = 0, out_elems = 0;
  // Costs of this layer in the units of ProgramLimits (CheckSizeAndWork).
  int64_t work = 0, activation_bytes = 0, constant_bytes = 0;
};

// Program-wide resource limits (docs/bytecode.md, "Program limits"), checked
// from the shapes of every layer before any constant is decoded. The same
// numbers, defaults and formulas are keras_nna.export.format.DEFAULT_LIMITS /
// layer_costs in Python. A caller raises them explicitly for a trusted
// program (op attributes max_work, max_activation_bytes, max_constant_bytes).
//   max_work: sum over layers of the worst-case operations of one image
//     (dense_macs, pools out_elems*window, plus in_elems + out_elems).
//   max_activation_bytes: largest per-layer working set of one image and
//     thread: 18 bytes per element of the layer's largest tensor (two code
//     buffers, two int64 accumulators) + the zero-padded input of the conv
//     kinds ((in_h+pads)*(in_w+pads)*ceil4(in_c) bytes), plus HELD: one byte
//     per element of every output kept for a consumer beyond the next layer.
//   max_constant_bytes: decoded constants: 2 bytes per kernel weight (int16)
//     + 16 bytes per output channel of kinds 1-4.
#define KERAS_NNA_DEFAULT_MAX_WORK 34359738368            /* 2^35 */
#define KERAS_NNA_DEFAULT_MAX_ACTIVATION_BYTES 1073741824 /* 2^30 */
#define KERAS_NNA_DEFAULT_MAX_CONSTANT_BYTES 134217728    /* 2^27 */
struct ProgramLimits {
  int64_t max_work = KERAS_NNA_DEFAULT_MAX_WORK;
  int64_t max_activation_bytes = KERAS_NNA_DEFAULT_MAX_ACTIVATION_BYTES;
  int64_t max_constant_bytes = KERAS_NNA_DEFAULT_MAX_CONSTANT_BYTES;
  bool operator==(const ProgramLimits& o) const {
    return max_work == o.max_work && max_activation_bytes == o.max_activation_bytes &&
           max_constant_bytes == o.max_constant_bytes;
  }
};

// What a program costs, in the units of ProgramLimits (filled by the parser).
struct ProgramCosts {
  int64_t work = 0;              // sum over layers
  int64_t activation_bytes = 0;  // max over layers + held bytes
  int64_t constant_bytes = 0;    // sum over layers
  int peak_layer = 0;            // layer of the activation peak
};

struct Program {
  int in_h = 0, in_w = 0, in_c = 0, in_bits = 0;
  float input_scale = 0.f;
  std::vector<Layer> layers;
  int version = 0;
  size_t max_elems = 0;  // largest activation/accumulator tensor, elements
  // Bytes of the outputs held beyond the ping-pong buffers (the HELD term of
  // activation_bytes): sum of out_elems of layers with held_off >= 0.
  int64_t held_bytes = 0;
  // Output of the program, per image.
  int out_h = 0, out_w = 0, out_c = 0;
  bool out_rank1 = false;  // out_h == out_w == 1: output [N, out_c]
  ProgramCosts costs;
};

uint32_t Crc32(const uint8_t* data, size_t n);

// Parses and validates `size` bytes. On success returns true and fills
// *program; otherwise returns false and sets *error to a reason naming the
// offending field (layer index, expected vs got). The whole program is held
// to `limits` (default ProgramLimits()) before any constant is decoded.
bool ParseProgram(const uint8_t* data, size_t size, Program* program,
                  std::string* error);
bool ParseProgram(const uint8_t* data, size_t size, const ProgramLimits& limits,
                  Program* program, std::string* error);

}  // namespace keras_nna

#endif  // KERAS_NNA_RUNTIME_CC_PROGRAM_H_
