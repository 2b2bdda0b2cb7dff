// Standalone runner of the op's kernels (no TensorFlow), for running them
// under AddressSanitizer/UBSan over real programs and images
// (tools/fuzz/asan_kernels.sh).
//
//   run_program PROGRAM IMAGES N MODE SIMD OUT_PREFIX
//
// PROGRAM: bytecode file; IMAGES: raw uint8 N*H*W*C (NHWC, header shape);
// MODE: event | dense | auto; SIMD: 1 to PrepareProgram (AVX-512 VNNI
// layouts when the CPU has them), 0 for the portable kernels. Writes
// OUT_PREFIX.f32 (outputs) and OUT_PREFIX.i64 (statistics). Exit status 2 if
// the program is rejected (reason on stderr), 1 on usage/IO errors.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "program.h"
#include "run_image.h"

namespace {

bool ReadFile(const char* path, std::vector<uint8_t>* out) {
  FILE* f = std::fopen(path, "rb");
  if (f == nullptr) return false;
  uint8_t buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) out->insert(out->end(), buf, buf + n);
  std::fclose(f);
  return true;
}

bool WriteFile(const std::string& path, const void* data, size_t size) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return false;
  const bool ok = std::fwrite(data, 1, size, f) == size;
  return std::fclose(f) == 0 && ok;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 7) {
    std::fprintf(stderr, "usage: %s PROGRAM IMAGES N MODE SIMD OUT_PREFIX\n", argv[0]);
    return 1;
  }
  std::vector<uint8_t> bytes, images;
  if (!ReadFile(argv[1], &bytes) || !ReadFile(argv[2], &images)) {
    std::fprintf(stderr, "cannot read %s or %s\n", argv[1], argv[2]);
    return 1;
  }
  const int64_t n = std::strtoll(argv[3], nullptr, 10);
  const std::string mode_name = argv[4];
  const keras_nna::Mode mode = mode_name == "event"   ? keras_nna::Mode::kEvent
                               : mode_name == "dense" ? keras_nna::Mode::kDense
                                                      : keras_nna::Mode::kAuto;
  keras_nna::Program p;
  std::string error;
  if (!keras_nna::ParseProgram(bytes.data(), bytes.size(), &p, &error)) {
    std::fprintf(stderr, "invalid program: %s\n", error.c_str());
    return 2;
  }
  if (std::atoi(argv[5]) != 0) keras_nna::PrepareProgram(&p);
  const int64_t in_elems = int64_t(p.in_h) * p.in_w * p.in_c;
  const int64_t out_elems = int64_t(p.out_h) * p.out_w * p.out_c;
  if (n < 0 || int64_t(images.size()) != n * in_elems) {
    std::fprintf(stderr, "images: expected %lld bytes, got %zu\n", (long long)(n * in_elems),
                 images.size());
    return 1;
  }
  const int64_t n_stats = int64_t(p.layers.size()) * keras_nna::kNumStats;
  std::vector<float> out(size_t(n * out_elems));
  std::vector<int64_t> stats(size_t(n * n_stats));
  keras_nna::Scratch scratch;
  for (int64_t i = 0; i < n; ++i) {
    keras_nna::RunImage(p, images.data() + i * in_elems, mode, out.data() + i * out_elems,
                        stats.data() + i * n_stats, &scratch);
  }
  const std::string prefix = argv[6];
  if (!WriteFile(prefix + ".f32", out.data(), out.size() * sizeof(float)) ||
      !WriteFile(prefix + ".i64", stats.data(), stats.size() * sizeof(int64_t))) {
    std::fprintf(stderr, "cannot write %s.*\n", prefix.c_str());
    return 1;
  }
  return 0;
}
