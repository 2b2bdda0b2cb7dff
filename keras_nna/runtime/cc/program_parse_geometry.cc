// Per-kind geometry of the bytecode parser (docs/bytecode.md): kernel or pool
// window, strides, pads, output shape, tensor sizes and worst-case work.
// All products are formed in int64 from fields of at most 16 bits, after the
// factors they multiply are bounded (docs/bytecode.md, "Bounds").
#include <algorithm>

#include "program_parse_internal.h"

namespace keras_nna {
namespace parse {
namespace {

// Implementation limit: worst-case inner-loop iterations of one layer for one
// image (~minutes of CPU). Keeps hostile programs from hanging a process.
constexpr int64_t kMaxLayerWork = int64_t{1} << 40;

// Conv-style output size; returns -1 if the padded input is smaller than the
// window.
int64_t OutSize(int64_t in, int64_t pad_a, int64_t pad_b, int64_t k, int64_t s) {
  const int64_t span = in + pad_a + pad_b - k;
  return span < 0 ? -1 : span / s + 1;
}

bool CheckStride(const Layer& L, const Fail& fail) {
  if (L.stride_h < 1 || L.stride_h > 15 || L.stride_w < 1 || L.stride_w > 15) {
    return fail("strides: expected 1-15, got ", L.stride_h, "x", L.stride_w);
  }
  return true;
}

bool NoPadsNoStride(const Layer& L) {
  return L.stride_h == 1 && L.stride_w == 1 && !L.pad_top && !L.pad_left && !L.pad_bottom &&
         !L.pad_right;
}

// The window is L.kh x L.kw; (eh, ew, ec) is the output shape it implies.
bool CheckOut(const Layer& L, int64_t eh, int64_t ew, int64_t ec, const Fail& fail) {
  if (eh < 1 || ew < 1) {
    return fail("window ", L.kh, "x", L.kw, " larger than the padded input ",
                L.in_h + L.pad_top + L.pad_bottom, "x", L.in_w + L.pad_left + L.pad_right);
  }
  if (L.out_h != eh || L.out_w != ew || L.out_c != ec) {
    return fail("output shape: expected ", eh, "x", ew, "x", ec, ", got ", L.out_h, "x", L.out_w, "x",
                L.out_c);
  }
  return true;
}

bool CheckWindowedOut(const Layer& L, int64_t ec, const Fail& fail) {
  return CheckOut(L, OutSize(L.in_h, L.pad_top, L.pad_bottom, L.kh, L.stride_h),
                  OutSize(L.in_w, L.pad_left, L.pad_right, L.kw, L.stride_w), ec, fail);
}

// The layer's costs in the units of ProgramLimits (program.h), from its
// shapes alone; the same formulas as keras_nna.export.format.layer_costs.
// Every factor is bounded (u16 shapes, <= 2^40 work, <= 2^28 elements), so
// each value is < 2^45 and a sum over 1,024 layers < 2^55.
void SetCosts(Layer* L, int64_t work) {
  const int64_t positions = int64_t(L->out_h) * L->out_w;
  const int64_t mid = L->kind == kSeparable ? positions * L->in_c : 0;
  const int64_t elems = std::max(std::max(L->in_elems, L->out_elems), mid);
  int64_t padded = 0;
  if (L->kind <= kDense) {
    padded = (int64_t(L->in_h) + L->pad_top + L->pad_bottom) *
             (int64_t(L->in_w) + L->pad_left + L->pad_right) * ((int64_t(L->in_c) + 3) / 4 * 4);
  }
  const int64_t taps = int64_t(L->kh) * L->kw;
  int64_t weights = 0;
  switch (L->kind) {
    case kConv: weights = taps * L->in_c * L->out_c; break;
    case kDepthwise: weights = taps * L->in_c; break;
    case kSeparable: weights = taps * L->in_c + int64_t(L->in_c) * L->out_c; break;
    case kDense: weights = int64_t(L->in_c) * L->out_c; break;
    default: break;
  }
  L->work = work + L->in_elems + L->out_elems;
  L->activation_bytes = 18 * elems + padded;
  L->constant_bytes = L->kind <= kDense ? 2 * weights + 16 * int64_t(L->out_c) : 0;
}

}  // namespace

bool ParseConvGeometry(const Instr& in, Layer* L, const Fail& fail) {
  if (in.pool_h != 0 || in.pool_w != 0) return fail("pool_h/pool_w: expected 0, got ", in.pool_h, "x", in.pool_w);
  L->kh = in.kh;
  L->kw = in.kw;
  if (L->kh < 1 || L->kh > 15 || L->kw < 1 || L->kw > 15) {
    return fail("kernel: expected 1-15, got ", L->kh, "x", L->kw);
  }
  if (!CheckStride(*L, fail)) return false;
  if (L->pad_top >= L->kh || L->pad_bottom >= L->kh || L->pad_left >= L->kw || L->pad_right >= L->kw) {
    return fail("pads (", L->pad_top, ",", L->pad_left, ",", L->pad_bottom, ",", L->pad_right,
                ") must each be < the kernel size ", L->kh, "x", L->kw);
  }
  const int64_t oc = L->kind == kDepthwise ? L->in_c : L->out_c;
  if (oc < 1) return fail("out_c: expected >= 1, got 0");
  return CheckWindowedOut(*L, oc, fail);
}

bool ParseDenseGeometry(const Instr& in, Layer* L, const Fail& fail) {
  if (in.pool_h != 0 || in.pool_w != 0) return fail("pool_h/pool_w: expected 0, got ", in.pool_h, "x", in.pool_w);
  L->kh = in.kh;
  L->kw = in.kw;
  if (in.kh != 1 || in.kw != 1 || !NoPadsNoStride(*L)) return fail("DENSE needs kh=kw=stride=1 and pads 0");
  if (L->in_h != 1 || L->in_w != 1) {
    return fail("DENSE input must be 1x1xC, got ", L->in_h, "x", L->in_w, "x", L->in_c);
  }
  if (L->out_c < 1) return fail("out_c: expected >= 1, got 0");
  return CheckOut(*L, 1, 1, L->out_c, fail);
}

bool ParsePoolGeometry(const Instr& in, Layer* L, const Fail& fail) {
  if (in.kh != 1 || in.kw != 1) {
    return fail("kh/kw: expected 1x1 for pools (the window is pool_h x pool_w), got ", in.kh, "x", in.kw);
  }
  if (in.pool_h < 1 || in.pool_h > 4096 || in.pool_w < 1 || in.pool_w > 4096) {
    return fail("pool window: expected 1-4096, got ", in.pool_h, "x", in.pool_w);
  }
  L->kh = in.pool_h;
  L->kw = in.pool_w;
  if (!CheckStride(*L, fail)) return false;
  if (L->kind == kAvgPool && (L->pad_top || L->pad_left || L->pad_bottom || L->pad_right)) {
    return fail("AVGPOOL pads must be 0");
  }
  if (L->pad_top >= L->kh || L->pad_bottom >= L->kh || L->pad_left >= L->kw || L->pad_right >= L->kw) {
    return fail("pads must each be < the window ", L->kh, "x", L->kw);
  }
  return CheckWindowedOut(*L, L->in_c, fail);
}

bool ParseFlattenGeometry(const Instr& in, Layer* L, const Fail& fail) {
  if (in.kh != 1 || in.kw != 1 || !NoPadsNoStride(*L)) return fail("FLATTEN needs kh=kw=stride=1 and pads 0");
  if (in.pool_h != 0 || in.pool_w != 0) return fail("pool_h/pool_w: expected 0, got ", in.pool_h, "x", in.pool_w);
  L->kh = L->kw = 0;
  return CheckOut(*L, 1, 1, int64_t(L->in_h) * L->in_w * L->in_c, fail);
}

bool ParseAddGeometry(const Instr& in, Layer* L, const Fail& fail) {
  if (in.kh != 1 || in.kw != 1 || !NoPadsNoStride(*L)) return fail("ADD needs kh=kw=stride=1 and pads 0");
  if (in.pool_h != 0 || in.pool_w != 0) return fail("pool_h/pool_w: expected 0, got ", in.pool_h, "x", in.pool_w);
  L->kh = L->kw = 1;
  return CheckOut(*L, L->in_h, L->in_w, L->in_c, fail);
}

bool CheckSizeAndWork(Layer* L, const Fail& fail) {
  L->in_elems = int64_t(L->in_h) * L->in_w * L->in_c;
  L->out_elems = int64_t(L->out_h) * L->out_w * L->out_c;
  const int64_t positions = int64_t(L->out_h) * L->out_w;
  if (L->out_elems > kMaxTensorElements ||
      (L->kind == kSeparable && positions * L->in_c > kMaxTensorElements)) {
    return fail("output of ", L->out_elems, " elements exceeds this emulator's limit of ",
                kMaxTensorElements);
  }
  // positions * out_c (or * in_c) <= 2^28 from here, so none of these reaches 2^53.
  switch (L->kind) {
    case kConv: L->dense_macs = positions * L->out_c * L->kh * L->kw * L->in_c; break;
    case kDepthwise: L->dense_macs = positions * L->in_c * L->kh * L->kw; break;
    case kSeparable: L->dense_macs = positions * L->in_c * (int64_t(L->kh) * L->kw + L->out_c); break;
    case kDense: L->dense_macs = int64_t(L->in_c) * L->out_c; break;
    case kAdd: L->dense_macs = 2 * L->out_elems; break;
    default: L->dense_macs = 0;
  }
  const bool pooling = L->kind == kMaxPool || L->kind == kAvgPool;
  const int64_t work = pooling ? L->out_elems * L->kh * L->kw : L->dense_macs;
  if (work > kMaxLayerWork) {
    return fail("worst-case work of ", work, " operations per image exceeds this emulator's limit of ",
                kMaxLayerWork);
  }
  SetCosts(L, work);
  return true;
}

}  // namespace parse
}  // namespace keras_nna
