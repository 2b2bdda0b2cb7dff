#include "simd.h"

namespace keras_nna {

bool HaveVnni() { return false; }

void ConvDenseVnni(const Layer&, const uint8_t*, int32_t*, std::vector<uint8_t>*) {}

}  // namespace keras_nna
