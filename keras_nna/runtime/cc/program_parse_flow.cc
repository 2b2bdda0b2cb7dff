// Data flow of the bytecode parser (docs/bytecode.md, version 2): each
// layer's producers (src, src2: the image or an earlier layer), signedness
// rules per kind, ADD's second input and exponent rules, the rule that every
// output but the last is used, and the outputs held beyond the ping-pong
// buffers (HELD). Version 1 programs are chains (src implied = own index).
#include <algorithm>
#include <cstdlib>
#include <vector>

#include "program_parse_internal.h"

namespace keras_nna {
namespace parse {

Producer ProducerOf(const Program& prog, int src) {
  Producer p;
  if (src == 0) {
    p.h = prog.in_h; p.w = prog.in_w; p.c = prog.in_c; p.bits = prog.in_bits;
    p.name = "the image";
    return p;
  }
  const Layer& L = prog.layers[src - 1];
  p.h = L.out_h; p.w = L.out_w; p.c = L.out_c; p.bits = L.out_bits; p.exp = L.out_exp;
  p.is_signed = L.out_signed;
  p.name = "layer " + std::to_string(src - 1);
  return p;
}

// Data-flow fields (bytes 57..63): out_signed, src, src2. Version 1 is a chain
// (bytes 57..63 zero, src implied = own index); version 2 reads them.
bool ParseFlow(const uint8_t* p, int version, Layer* L, const Fail& fail) {
  if (version == 1) {
    for (int k = 57; k < 64; ++k) {
      if (p[k] != 0) return fail("reserved byte ", k, ": expected 0 in a version-1 program, got ", int(p[k]));
    }
    if (L->kind == kAdd) {
      return fail("kind 8 (ADD) needs format version 2 (a version-1 program is a chain; re-export the model)");
    }
    L->src = L->index;
    return true;
  }
  if (p[57] > 1) return fail("out_signed: expected 0 or 1, got ", int(p[57]));
  L->out_signed = p[57] == 1;
  L->src = U16(p + 58);
  L->src2 = U16(p + 60);
  if (L->src > L->index) {
    return fail("src: expected 0-", L->index, " (0 = the image, j = output of layer j-1, an earlier layer), got ",
                L->src);
  }
  if (L->kind == kAdd && L->src2 > L->index) {
    return fail("src2: expected 0-", L->index, " (0 = the image, j = output of layer j-1, an earlier layer), got ",
                L->src2);
  }
  if (L->kind != kAdd && L->src2 != 0) {
    return fail("src2: expected 0 for this kind (only ADD has a second input), got ", L->src2);
  }
  for (int k = 62; k < 64; ++k) {
    if (p[k] != 0) return fail("reserved byte ", k, ": expected 0, got ", int(p[k]));
  }
  return true;
}

// Signedness of the input and output codes by kind (docs/bytecode.md, version 2).
bool CheckSigns(const Producer& a, Layer* L, const Fail& fail) {
  L->in_signed = a.is_signed;
  if ((L->kind == kMaxPool || L->kind == kAvgPool) && L->in_signed) {
    return fail("input: ", a.name, " outputs signed codes; pools take unsigned (ReLU) codes (out_signed 0 on the "
                "producer)");
  }
  if (!L->out_signed) {
    if (L->kind == kFlatten && L->in_signed) {
      return fail("out_signed: expected 1 (FLATTEN keeps its input's signedness: ", a.name, " is signed), got 0");
    }
    return true;
  }
  if (L->raw) return fail("out_signed: expected 0 for a raw output (out_bits 0), got 1");
  if (L->kind == kMaxPool || L->kind == kAvgPool) return fail("out_signed: expected 0 for pools, got 1");
  if (L->kind == kFlatten && !L->in_signed) {
    return fail("out_signed: expected 0 (FLATTEN keeps its input's signedness: ", a.name, " is unsigned), got 1");
  }
  if (L->kind != kFlatten && (L->out_bits < 2 || L->out_bits > 8)) {
    return fail("out_bits: expected 2-8 for signed codes (out_signed 1), got ", L->out_bits);
  }
  return true;
}

// ADD: second input (shape, bits, sign from its producer) and the exponent
// rules |fa - fb| <= 16, |F - out_exp| <= 16 with F = max(fa, fb).
bool CheckAdd(const Program& prog, const Producer& a, Layer* L, const Fail& fail) {
  const Producer b = ProducerOf(prog, L->src2);
  if (b.h != a.h || b.w != a.w || b.c != a.c) {
    return fail("src2 shape: expected ", a.h, "x", a.w, "x", a.c, " (input A, ", a.name, "), got ", b.h, "x",
                b.w, "x", b.c, " (", b.name, ")");
  }
  L->in2_bits = b.bits;
  L->in2_signed = b.is_signed;
  if (std::abs(a.exp - b.exp) > 16) {
    return fail("input exponents: expected |fa - fb| <= 16, got fa = ", a.exp, " (", a.name, "), fb = ", b.exp,
                " (", b.name, ")");
  }
  const int F = std::max(a.exp, b.exp);
  if (std::abs(F - L->out_exp) > 16) {
    return fail("out_exp: expected ", F - 16, " to ", F + 16, " (|max(fa, fb) - out_exp| <= 16 with max(fa, fb) = ",
                F, "), got ", L->out_exp);
  }
  L->add_sa = F - a.exp;
  L->add_sb = F - b.exp;
  L->add_d = F - L->out_exp;
  return true;
}

// Every layer but the last feeds a later one (src or src2); outputs read by a
// layer beyond the next get their own buffer (held_off; their sum is HELD).
bool CheckConsumersAndHold(Program* prog, std::string* error) {
  const int n = int(prog->layers.size());
  std::vector<int> last_use(n, -1);  // latest consumer of each layer's output
  for (int k = 0; k < n; ++k) {
    const Layer& L = prog->layers[k];
    if (L.src > 0) last_use[L.src - 1] = std::max(last_use[L.src - 1], k);
    if (L.kind == kAdd && L.src2 > 0) last_use[L.src2 - 1] = std::max(last_use[L.src2 - 1], k);
  }
  prog->held_bytes = 0;
  for (int j = 0; j < n; ++j) {
    Layer& L = prog->layers[j];
    if (j < n - 1 && last_use[j] < 0) {
      const Fail fail(error, "layer " + std::to_string(j) + " (" + KindName(L.kind) + "): ");
      return fail("layer ", j, "'s output is never used (every layer but the last must be "
                                         "the src or src2 of a later layer)");
    }
    L.held_off = -1;
    if (last_use[j] > j + 1) {  // <= 1,024 tensors of <= 2^28 elements: no overflow
      L.held_off = prog->held_bytes;
      prog->held_bytes += L.out_elems;
    }
  }
  return true;
}

}  // namespace parse
}  // namespace keras_nna
