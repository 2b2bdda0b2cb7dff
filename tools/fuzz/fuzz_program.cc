// libFuzzer target for the keras_nna bytecode parser/validator and kernels
// (keras_nna/runtime/cc, everything but the TensorFlow op wrapper run_op.cc).
//
// For every input:
//   1. ParseProgram() must either reject it (with a non-empty reason) or
//      accept it. Any crash, sanitizer report or hang here is a bug.
//   2. If accepted and the program is small enough to run quickly (the
//      FUZZ_MAX_WORK bound below; the parser's own limits allow far bigger
//      programs, which would only make libFuzzer report timeouts), the
//      kernels run on one deterministic image derived from the input, with
//      every kernel choice: the portable scalar kernels (program not
//      prepared) and the AVX-512 VNNI layouts (PrepareProgram), each in
//      modes event, dense and auto. All six outputs and statistics must be
//      bit-identical; a difference aborts (reported as a crash).
//
// The custom mutator (LLVMFuzzerCustomMutator) mutates the bytes with
// libFuzzer's own mutator or, half of the time, sets one header or
// instruction field to an interesting value; one time in eight it also turns
// a kernel into a dense 1-bit kernel (format version 3, MutateToBinary); it
// recomputes the trailing CRC-32, so mutations get past the checksum into
// the validator.
//
// Environment: FUZZ_NO_RUN=1 parses only; FUZZ_MAX_WORK=<n> changes the bound
// on sum(dense_macs + in_elems) of a program the kernels are run on;
// FUZZ_MAX_CONSTANT_BYTES / FUZZ_MAX_ACTIVATION_BYTES the parser's limits
// (defaults 2^24 / 2^26, below the program defaults: see LLVMFuzzerTestOneInput).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "program.h"
#include "run_image.h"

extern "C" size_t LLVMFuzzerMutate(uint8_t* data, size_t size, size_t max_size);

namespace {

using keras_nna::Mode;
using keras_nna::Program;

constexpr size_t kHeaderSize = 32;
constexpr size_t kInstrSize = 64;

// Counts printed at exit ("fuzz_program: ..."), quoted by long_run.sh.
struct Counts {
  uint64_t inputs = 0, accepted = 0, ran = 0;
  ~Counts() {
    std::fprintf(stderr, "fuzz_program: %llu inputs, %llu accepted, %llu run through 6 kernel configurations\n",
                 (unsigned long long)inputs, (unsigned long long)accepted, (unsigned long long)ran);
  }
};
Counts counts;

int64_t EnvInt(const char* name, int64_t fallback) {
  const char* v = std::getenv(name);
  return (v != nullptr && v[0] != '\0') ? std::strtoll(v, nullptr, 10) : fallback;
}

uint64_t Fnv1a(const uint8_t* data, size_t size) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < size; ++i) h = (h ^ data[i]) * 1099511628211ull;
  return h;
}

uint64_t SplitMix(uint64_t* s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// One deterministic image: codes in [0, 2^in_bits), density from the seed
// (some images nearly empty so `auto` picks the event kernels).
std::vector<uint8_t> MakeImage(const Program& p, uint64_t seed) {
  const int64_t n = int64_t(p.in_h) * p.in_w * p.in_c;
  std::vector<uint8_t> img(size_t(n), 0);
  const uint64_t density_pct = seed % 4 == 0 ? 2 : seed % 4 == 1 ? 30 : seed % 4 == 2 ? 70 : 100;
  const uint32_t mask = (1u << p.in_bits) - 1;
  for (int64_t k = 0; k < n; ++k) {
    const uint64_t r = SplitMix(&seed);
    if (r % 100 < density_pct) img[size_t(k)] = uint8_t((r >> 8) & mask);
  }
  return img;
}

struct Result {
  std::vector<float> out;
  std::vector<int64_t> stats;
};

Result Run(const Program& p, const std::vector<uint8_t>& img, Mode mode) {
  Result r;
  r.out.assign(size_t(int64_t(p.out_h) * p.out_w * p.out_c), 0.f);
  r.stats.assign(p.layers.size() * keras_nna::kNumStats, -1);
  keras_nna::Scratch scratch;
  keras_nna::RunImage(p, img.data(), mode, r.out.data(), r.stats.data(), &scratch);
  return r;
}

bool SameBits(const Result& a, const Result& b) {
  return a.out.size() == b.out.size() && a.stats == b.stats &&
         std::memcmp(a.out.data(), b.out.data(), a.out.size() * sizeof(float)) == 0;
}

void RunAllKernels(const uint8_t* data, size_t size, const Program& parsed) {
  static const int64_t max_work = EnvInt("FUZZ_MAX_WORK", int64_t{1} << 21);
  int64_t work = 0;
  for (const auto& L : parsed.layers) work += L.dense_macs + L.in_elems + L.out_elems;
  if (work > max_work) return;
  ++counts.ran;
  const std::vector<uint8_t> img = MakeImage(parsed, Fnv1a(data, size));
  Program prepared = parsed;
  keras_nna::PrepareProgram(&prepared);
  const Mode modes[3] = {Mode::kEvent, Mode::kDense, Mode::kAuto};
  const char* names[3] = {"event", "dense", "auto"};
  const Result ref = Run(parsed, img, Mode::kEvent);
  for (int prep = 0; prep < 2; ++prep) {
    for (int m = 0; m < 3; ++m) {
      if (prep == 0 && m == 0) continue;
      const Result r = Run(prep ? prepared : parsed, img, modes[m]);
      if (!SameBits(ref, r)) {
        std::fprintf(stderr, "MISMATCH: %s kernels, mode %s differ from scalar event kernels\n",
                     prep ? "prepared (SIMD)" : "scalar", names[m]);
        std::abort();
      }
    }
  }
}

uint32_t Crc(const uint8_t* data, size_t n) { return keras_nna::Crc32(data, n); }

void FixCrc(uint8_t* data, size_t size) {
  if (size < 4) return;
  const uint32_t c = Crc(data, size - 4);
  std::memcpy(data + size - 4, &c, 4);  // little-endian host (x86-64)
}

// Byte offset and width of the integer fields of the header and instruction
// (keras_nna/export/format.py HEADER / INSTR; versions 2 and 3: out_signed 57,
// src 58, src2 60, reserved 62; version 3: w_bits / w2_bits may be 1).
struct Field {
  uint8_t off, width;
};
constexpr Field kHeaderFields[] = {{4, 2}, {6, 2}, {8, 4}, {12, 2}, {14, 2}, {16, 2},
                                   {18, 1}, {19, 1}, {20, 4}, {24, 4}, {28, 4}};
constexpr Field kInstrFields[] = {
    {0, 1},  {1, 1},  {2, 1},  {3, 1},  {4, 2},  {6, 2},  {8, 2},  {10, 2}, {12, 2},
    {14, 2}, {16, 1}, {17, 1}, {18, 1}, {19, 1}, {20, 1}, {21, 1}, {22, 1}, {23, 1},
    {24, 1}, {25, 1}, {26, 1}, {27, 1}, {28, 4}, {32, 4}, {36, 4}, {40, 4}, {44, 4},
    {48, 4}, {52, 2}, {54, 2}, {56, 1}, {57, 1}, {58, 2}, {60, 2}, {62, 1}};

uint64_t Interesting(uint64_t r, int width) {
  static const uint64_t vals[] = {0, 1, 2, 3, 4, 7, 8, 15, 16, 17, 31, 32, 63, 64, 127, 128, 255,
                                  256, 1023, 1024, 1025, 4095, 4096, 4097, 8191, 8192, 32767,
                                  32768, 65535, 0x7fffffff, 0x80000000u, 0xffffffffu};
  uint64_t v = vals[r % (sizeof(vals) / sizeof(vals[0]))];
  if ((r >> 8) % 4 == 0) v += ((r >> 16) % 5) - 2;  // off by one or two
  const uint64_t mask = width >= 8 ? ~0ull : (1ull << (8 * width)) - 1;
  return v & mask;
}

// Sets one header or instruction field to an interesting value, or adds a
// small delta to it. Returns false if the input is too short to have fields.
bool MutateField(uint8_t* data, size_t size, uint64_t* seed) {
  if (size < kHeaderSize + 4) return false;
  const uint64_t r = SplitMix(seed);
  uint16_t n_layers;
  std::memcpy(&n_layers, data + 6, 2);
  const size_t avail = (size - kHeaderSize - 4) / kInstrSize;
  const size_t n = std::min<size_t>(n_layers, avail);
  Field f;
  size_t base = 0;
  if (n == 0 || r % 8 == 0) {
    f = kHeaderFields[(r >> 3) % (sizeof(kHeaderFields) / sizeof(Field))];
  } else {
    f = kInstrFields[(r >> 3) % (sizeof(kInstrFields) / sizeof(Field))];
    base = kHeaderSize + kInstrSize * ((r >> 11) % n);
  }
  uint64_t v = 0;
  std::memcpy(&v, data + base + f.off, f.width);
  const uint64_t r2 = SplitMix(seed);
  if (r2 % 3 == 0) v += (r2 >> 4) % 9 - 4;
  else v = Interesting(r2 >> 4, f.width);
  std::memcpy(data + base + f.off, &v, f.width);
  return true;
}

// Turns one kernel of a weighted layer into a dense 1-bit kernel (format
// version 3: bit 1 = +1, bit 0 = -1) in place: w_bits (or w2_bits) 1, enc 0,
// length ceil(count / 8) over the same pool bytes (every field is a valid
// code), padding bits cleared, and usually the header version set to 3 (else
// left: a version-1/2 program with w_bits 1 must be refused). Returns false if
// the input has no weighted layer to change.
bool MutateToBinary(uint8_t* data, size_t size, uint64_t* seed) {
  if (size < kHeaderSize + kInstrSize + 4) return false;
  const uint64_t r = SplitMix(seed);
  uint16_t n_layers;
  std::memcpy(&n_layers, data + 6, 2);
  const size_t n = std::min<size_t>(n_layers, (size - kHeaderSize - 4) / kInstrSize);
  if (n == 0) return false;
  uint8_t* p = data + kHeaderSize + kInstrSize * (r % n);
  const int kind = p[0];
  if (kind < 1 || kind > 4) return false;
  auto u16 = [&](int off) { uint16_t v; std::memcpy(&v, p + off, 2); return uint64_t(v); };
  const uint64_t taps = uint64_t(p[16]) * p[17], in_c = u16(8), out_c = u16(14);
  const bool second = kind == 3 && (r >> 16) % 2 == 1;  // SEPARABLE: the pointwise kernel
  uint64_t count = kind == 1 ? taps * in_c * out_c : kind == 4 || second ? in_c * out_c : taps * in_c;
  const uint64_t len = (count + 7) / 8;
  if (count == 0 || len > 0xffffffffu) return false;
  p[second ? 25 : 24] = 1;  // w_bits / w2_bits
  p[second ? 27 : 26] = 0;  // dense
  const uint32_t len32 = uint32_t(len);
  std::memcpy(p + (second ? 40 : 32), &len32, 4);
  uint32_t off;
  std::memcpy(&off, p + (second ? 36 : 28), 4);
  const size_t last = kHeaderSize + kInstrSize * size_t(n_layers) + uint64_t(off) + len - 1;
  if (count % 8 && last < size - 4) data[last] &= uint8_t((1u << (count % 8)) - 1);
  if ((r >> 8) % 8 != 0) data[4] = 3, data[5] = 0;
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const bool no_run = EnvInt("FUZZ_NO_RUN", 0) != 0;
  ++counts.inputs;
  // Tighter program limits than the defaults (16 MiB of decoded constants, a 64 MiB working set
  // per layer): every input then stays far below -rss_limit_mb=1024 even with ASan's quarantine
  // and allocator caches holding what earlier inputs freed (the defaults, 128 MiB and 1 GiB, let a
  // few large accepted inputs in a row push the process over 1 GB). The limit checks and the
  // decoders are the same code at any value; FUZZ_MAX_CONSTANT_BYTES / FUZZ_MAX_ACTIVATION_BYTES
  // change them.
  static const keras_nna::ProgramLimits limits = [] {
    keras_nna::ProgramLimits l;
    l.max_constant_bytes = EnvInt("FUZZ_MAX_CONSTANT_BYTES", int64_t{1} << 24);
    l.max_activation_bytes = EnvInt("FUZZ_MAX_ACTIVATION_BYTES", int64_t{1} << 26);
    return l;
  }();
  Program program;
  std::string error;
  if (!keras_nna::ParseProgram(data, size, limits, &program, &error)) {
    if (error.empty()) {
      std::fprintf(stderr, "ParseProgram rejected the input without a reason\n");
      std::abort();
    }
    return 0;
  }
  ++counts.accepted;
  if (!no_run) RunAllKernels(data, size, program);
  return 0;
}

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size,
                                          unsigned int seed) {
  uint64_t s = seed;
  const uint64_t r = SplitMix(&s);
  if (r % 2 == 0 && MutateField(data, size, &s)) {
    if (r % 8 == 0) MutateField(data, size, &s);
  } else {
    size = LLVMFuzzerMutate(data, size, max_size);
  }
  if (SplitMix(&s) % 8 == 0) MutateToBinary(data, size, &s);  // 1-bit kernels (version 3)
  if (r % 64 != 1) FixCrc(data, size);  // rarely leave the CRC wrong: cover that check too
  return size;
}
