// Synops of the conv kinds by table, for the dense kernels: an event at
// (y, x, c) meets a number of non-zero weights that depends only on c and on
// which taps reach y and x; those tap sets form a few classes (borders,
// stride phases), tabulated once after validation. Per pixel row: a vector
// compare of the codes and a masked add of a table row.
#include <algorithm>
#include <climits>

#include "avx512vnni_common.h"
#include "kernels_avx512vnni.h"
#include "taps.h"

namespace keras_nna {
namespace {

// Distinct sets of kernel offsets (bit masks, k < 15) reaching each input
// coordinate; false if there are more than 64 classes.
bool TapClasses(int in, int k, int stride, int pad, int out, std::vector<uint8_t>* cls,
                std::vector<uint32_t>* masks) {
  const Taps t(in, k, stride, pad, out);
  cls->assign(in, 0);
  for (int i = 0; i < in; ++i) {
    uint32_t m = 0;
    for (int a = t.start[i]; a < t.start[i + 1]; ++a) m |= 1u << t.k[a];
    auto it = std::find(masks->begin(), masks->end(), m);
    if (it == masks->end()) {
      if (masks->size() >= 64) return false;
      masks->push_back(m);
      it = masks->end() - 1;
    }
    (*cls)[i] = uint8_t(it - masks->begin());
  }
  return true;
}

}  // namespace

bool PrepareSynopsTable(Layer* L) {
  std::vector<uint32_t> my, mx;
  std::vector<uint8_t> xcls;
  if (!TapClasses(L->in_h, L->kh, L->stride_h, L->pad_top, L->out_h, &L->syn_ycls, &my) ||
      !TapClasses(L->in_w, L->kw, L->stride_w, L->pad_left, L->out_w, &xcls, &mx)) {
    return false;
  }
  const int C = L->in_c;
  const int64_t row = (int64_t(L->in_w) * C + 63) / 64 * 64;
  if (int64_t(my.size()) * row > (int64_t(1) << 22)) return false;  // table <= 16 MB
  L->syn_cpad = (C + 15) / 16 * 16;
  L->syn_row = row;
  L->syn_tab.assign(my.size() * row, 0);
  std::vector<int32_t> t(mx.size() * C);
  int64_t tmax = 1;
  for (size_t cy = 0; cy < my.size(); ++cy) {
    for (size_t cx = 0; cx < mx.size(); ++cx)
      for (int c = 0; c < C; ++c) {
        int64_t s = 0;  // <= 225 taps * out_c 65,535 < 2^24
        for (int ky = 0; ky < L->kh; ++ky) {
          if (!((my[cy] >> ky) & 1)) continue;
          for (int kx = 0; kx < L->kw; ++kx) {
            if (!((mx[cx] >> kx) & 1)) continue;
            const int64_t r = int64_t(ky * L->kw + kx) * C + c;
            s += L->kind == kConv ? L->row_nnz[r] : int64_t(L->w[r] != 0);
          }
        }
        t[cx * C + c] = int32_t(s);
        tmax = std::max(tmax, s);
      }
    for (int x = 0; x < L->in_w; ++x)
      std::memcpy(&L->syn_tab[cy * row + int64_t(x) * C], &t[size_t(xcls[x]) * C], sizeof(int32_t) * C);
  }
  L->syn_flush = std::max<int64_t>(1, INT_MAX / tmax);  // int32 lanes flushed before they overflow
  return true;
}

KNNA_TARGET int64_t TableSynops(const Layer& L, const uint8_t* in) {
  const int64_t bytes = int64_t(L.in_w) * L.in_c;
  __m512i v[4];
  for (auto& x : v) x = _mm512_setzero_si512();
  int64_t total = 0, left = L.syn_flush;
  for (int y = 0; y < L.in_h; ++y) {
    const int32_t* t = L.syn_tab.data() + L.syn_ycls[y] * L.syn_row;
    const uint8_t* px = in + y * bytes;
    for (int64_t j = 0; j < bytes; j += 64) {
      const __mmask64 tail = bytes - j >= 64 ? ~__mmask64(0) : (__mmask64(1) << (bytes - j)) - 1;
      const __m512i q = _mm512_maskz_loadu_epi8(tail, px + j);
      const __mmask64 nz = _mm512_test_epi8_mask(q, q);
      for (int k = 0; k < 4; ++k) {
        v[k] = _mm512_mask_add_epi32(v[k], __mmask16(nz >> (16 * k)), v[k], _mm512_loadu_si512(t + j + 16 * k));
      }
      if (--left == 0) {
        for (auto& x : v) total += avx512vnni::ReduceLanes(x), x = _mm512_setzero_si512();
        left = L.syn_flush;
      }
    }
  }
  for (auto& x : v) total += avx512vnni::ReduceLanes(x);
  return total;
}

}  // namespace keras_nna
