// Run-time CPU feature detection for the SIMD kernels.
#include <cstdlib>

#include "kernels_avx512vnni.h"

namespace keras_nna {

bool HaveVnni() {
  static const bool have = [] {
    const char* off = std::getenv("KERAS_NNA_NO_SIMD");
    if (off != nullptr && off[0] != '\0' && off[0] != '0') return false;
    __builtin_cpu_init();
    // Every target attribute the kernels use (all VNNI CPUs so far have them).
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512vnni");
  }();
  return have;
}

}  // namespace keras_nna
