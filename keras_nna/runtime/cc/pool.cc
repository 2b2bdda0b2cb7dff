// MAXPOOL and AVGPOOL, portable. Windows up to 4096 x 4096; the AVGPOOL sum
// (< 2^33) times m plus 2^(sh-1) is proven < 2^62 by the parser.
#include <algorithm>
#include <vector>

#include "kernels_scalar.h"

namespace keras_nna {
namespace {

// Number of windows (output positions) containing each input coordinate
// (<= window <= 4096), by a difference array: O(in + out), not O(out * win).
std::vector<int64_t> WindowCounts(int in, int win, int stride, int pad, int out) {
  std::vector<int64_t> cnt(in + 1, 0);
  for (int o = 0; o < out; ++o) {
    const int lo = std::max(o * stride - pad, 0), hi = std::min(o * stride - pad + win, in);
    if (lo < hi) ++cnt[lo], --cnt[hi];
  }
  for (int i = 1; i < in; ++i) cnt[i] += cnt[i - 1];
  cnt.pop_back();
  return cnt;
}

}  // namespace

int64_t Pool(const Layer& L, const uint8_t* in, uint8_t* out, int64_t* synops) {
  const int C = L.in_c;
  const auto cy = WindowCounts(L.in_h, L.kh, L.stride_h, L.pad_top, L.out_h);
  const auto cx = WindowCounts(L.in_w, L.kw, L.stride_w, L.pad_left, L.out_w);
  int64_t syn = 0;  // <= out_elems * kh * kw <= 2^40 (work limit)
  for (int y = 0; y < L.in_h; ++y)
    for (int x = 0; x < L.in_w; ++x)
      syn += cy[y] * cx[x] * CountNonZero(in + (int64_t(y) * L.in_w + x) * C, C);
  *synops = syn;
  const uint64_t qmax = (uint64_t(1) << L.out_bits) - 1;
  std::vector<uint64_t> sum(C);
  int64_t events = 0;
  for (int oy = 0; oy < L.out_h; ++oy) {
    const int y0 = std::max(oy * L.stride_h - L.pad_top, 0);
    const int y1 = std::min(oy * L.stride_h - L.pad_top + L.kh, L.in_h);
    for (int ox = 0; ox < L.out_w; ++ox) {
      const int x0 = std::max(ox * L.stride_w - L.pad_left, 0);
      const int x1 = std::min(ox * L.stride_w - L.pad_left + L.kw, L.in_w);
      std::fill(sum.begin(), sum.end(), 0);
      for (int y = y0; y < y1; ++y) {
        for (int x = x0; x < x1; ++x) {
          const uint8_t* px = in + (int64_t(y) * L.in_w + x) * C;
          if (L.kind == kMaxPool) {
            for (int c = 0; c < C; ++c) sum[c] = std::max<uint64_t>(sum[c], px[c]);
          } else {
            for (int c = 0; c < C; ++c) sum[c] += px[c];
          }
        }
      }
      uint8_t* dst = out + (int64_t(oy) * L.out_w + ox) * C;
      for (int c = 0; c < C; ++c) {
        uint64_t q = sum[c];
        if (L.kind == kAvgPool) q = std::min((q * L.avg_m + (uint64_t(1) << (L.avg_sh - 1))) >> L.avg_sh, qmax);
        dst[c] = uint8_t(q);
        events += q != 0;
      }
    }
  }
  return events;
}

}  // namespace keras_nna
