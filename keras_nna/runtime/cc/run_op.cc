// TensorFlow op KerasNna>Run (Python: keras_nna_run): runs a keras_nna
// bytecode program on a batch of uint8 NHWC images, returning the program's
// float32 outputs and per-layer int64 statistics (docs/bytecode.md). The op
// name is namespaced ("Namespace>Name", TensorFlow's convention for custom
// ops) so it cannot clash with another library's op.
#include <cstring>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "program.h"
#include "run_image.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/util/work_sharder.h"

namespace keras_nna {
namespace {

using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;
using ::tensorflow::tstring;
namespace errors = ::tensorflow::errors;
namespace shape_inference = ::tensorflow::shape_inference;

// Parsed and prepared programs (most recent first), so repeated calls with
// the same program (batch-1 inference loops) neither parse nor compare bytes.
//
// An entry keeps a reference to the last program tensor it was found
// through. While that reference lives, the tensor's buffer cannot be freed
// and reused for other bytes, and TensorFlow does not write into a buffer
// that is shared (copy-on-write), so a call whose program tensor shares that
// buffer (an Emulator's tf.constant, a graph constant) reuses the entry
// without reading the bytes. Any other tensor is matched by its exact bytes
// (memcmp), then becomes the entry's reference. VIEW/OFFSET strings point at
// memory the tensor does not own: they are always matched by bytes. (The one
// exception to copy-on-write is a TF1 reference variable, whose Assign writes
// into its buffer in place; programs are not expected to live in one.)
class ProgramCache {
 public:
  // Returns the parsed program, or nullptr with *error set. `tensor` is the
  // scalar string tensor holding data[0, size) (nullptr: match by bytes only).
  // Entries are keyed by the bytes and the limits they were accepted under.
  std::shared_ptr<const Program> Get(const Tensor* tensor, const char* data, size_t size,
                                     const ProgramLimits& limits, std::string* error) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto it = entries_.begin(); tensor != nullptr && it != entries_.end(); ++it) {
        if (it->data == data && it->bytes.size() == size && it->limits == limits &&
            it->holder.SharesBufferWith(*tensor)) {  // same buffer, same string
          if (it != entries_.begin()) entries_.splice(entries_.begin(), entries_, it);
          return entries_.front().program;
        }
      }
      for (auto it = entries_.begin(); it != entries_.end(); ++it) {
        if (it->limits == limits && it->bytes.size() == size &&
            std::memcmp(it->bytes.data(), data, size) == 0) {
          Hold(tensor, data, &*it);
          entries_.splice(entries_.begin(), entries_, it);
          return entries_.front().program;
        }
      }
    }
    auto program = std::make_shared<Program>();
    if (!ParseProgram(reinterpret_cast<const uint8_t*>(data), size, limits, program.get(), error)) {
      return nullptr;
    }
    PrepareProgram(program.get());  // kernel layouts, only for a validated program
    std::lock_guard<std::mutex> lock(mu_);
    entries_.push_front(Entry{std::string(data, size), limits, program, Tensor(), nullptr});
    Hold(tensor, data, &entries_.front());
    if (entries_.size() > kCapacity) entries_.pop_back();
    return program;
  }

 private:
  struct Entry {
    std::string bytes;
    ProgramLimits limits;
    std::shared_ptr<const Program> program;
    Tensor holder;               // last tensor found holding `bytes` (keeps its buffer alive)
    const char* data = nullptr;  // that tensor's string bytes; nullptr: no fast path
  };

  // Makes `tensor` the entry's fast-path key when its string owns its bytes.
  static void Hold(const Tensor* tensor, const char* data, Entry* e) {
    if (tensor == nullptr) return;
    const tstring::Type type = tensor->scalar<tstring>()().type();
    if (type != tstring::SMALL && type != tstring::LARGE) return;
    e->holder = *tensor;
    e->data = data;
  }

  static constexpr size_t kCapacity = 8;
  std::mutex mu_;
  std::list<Entry> entries_;
};

// Reads the limit attributes (op or shape-inference context); each must be >= 1.
template <typename Ctx>
::tensorflow::Status GetLimits(Ctx* ctx, ProgramLimits* limits) {
  const std::pair<const char*, int64_t*> attrs[] = {
      {"max_work", &limits->max_work},
      {"max_activation_bytes", &limits->max_activation_bytes},
      {"max_constant_bytes", &limits->max_constant_bytes}};
  for (const auto& a : attrs) {
    TF_RETURN_IF_ERROR(ctx->GetAttr(a.first, a.second));
    if (*a.second < 1) {
      return errors::InvalidArgument("KerasNna>Run: attribute ", a.first, " must be >= 1, got ",
                                     *a.second);
    }
  }
  return ::tensorflow::OkStatus();
}

ProgramCache& Cache() {
  static ProgramCache* cache = new ProgramCache();
  return *cache;
}

::tensorflow::Status ShapeFn(shape_inference::InferenceContext* c) {
  shape_inference::ShapeHandle unused, images;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 0, &unused));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 4, &images));
  auto n = c->Dim(images, 0);
  const Tensor* program = c->input_tensor(0);
  if (program == nullptr) {  // program not a graph constant: shapes known at run time
    c->set_output(0, c->UnknownShape());
    c->set_output(1, c->MakeShape({n, c->UnknownDim(), 6}));
    return ::tensorflow::OkStatus();
  }
  const tstring& bytes = program->scalar<tstring>()();
  ProgramLimits limits;
  TF_RETURN_IF_ERROR(GetLimits(c, &limits));
  std::string error;
  auto p = Cache().Get(nullptr, bytes.data(), bytes.size(), limits, &error);
  if (!p) return errors::InvalidArgument("KerasNna>Run: invalid program: ", error);
  if (p->out_rank1) {
    c->set_output(0, c->MakeShape({n, p->out_c}));
  } else {
    c->set_output(0, c->MakeShape({n, p->out_h, p->out_w, p->out_c}));
  }
  c->set_output(1, c->MakeShape({n, int64_t(p->layers.size()), kNumStats}));
  return ::tensorflow::OkStatus();
}

#define KERAS_NNA_STR2(x) #x
#define KERAS_NNA_STR(x) KERAS_NNA_STR2(x)

REGISTER_OP("KerasNna>Run")
    .Input("program: string")
    .Input("images: uint8")
    .Attr("mode: {'auto', 'event', 'dense', 'skip'} = 'auto'")
    .Attr("max_work: int = " KERAS_NNA_STR(KERAS_NNA_DEFAULT_MAX_WORK))
    .Attr("max_activation_bytes: int = " KERAS_NNA_STR(KERAS_NNA_DEFAULT_MAX_ACTIVATION_BYTES))
    .Attr("max_constant_bytes: int = " KERAS_NNA_STR(KERAS_NNA_DEFAULT_MAX_CONSTANT_BYTES))
    .Output("outputs: float32")
    .Output("stats: int64")
    .SetShapeFn(ShapeFn)
    .Doc(R"doc(
Runs a keras_nna bytecode program (docs/bytecode.md) on uint8 NHWC images.

program: scalar string, the program bytes; validated before anything runs.
images: uint8 [N, H, W, C] matching the program header.
mode: "event" (scatter from non-zero inputs), "dense" (direct dot products),
  "skip" (dot products over non-zero 4-channel groups and windows only) or
  "auto" (per layer and image, by input density). All give identical results.
max_work: most worst-case operations per image, summed over layers.
max_activation_bytes: most bytes of one layer's working set (one image, one thread).
max_constant_bytes: most bytes of decoded constants. The three limits are
  docs/bytecode.md "Program limits"; raise them only for a trusted program.
outputs: float32 [N, C] when the last layer's output is 1x1, else [N, H, W, C].
stats: int64 [N, n_layers, 6]: events_in, synops, dense_macs, weight_bytes,
  act_bytes_in, events_out.
)doc");

class RunOp : public OpKernel {
 public:
  explicit RunOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    std::string mode;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("mode", &mode));
    mode_ = mode == "event" ? Mode::kEvent : mode == "dense" ? Mode::kDense
          : mode == "skip" ? Mode::kSkip : Mode::kAuto;
    OP_REQUIRES_OK(ctx, GetLimits(ctx, &limits_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& program_t = ctx->input(0);
    const Tensor& images = ctx->input(1);
    OP_REQUIRES(ctx, TensorShapeUtilsIsScalar(program_t.shape()),
                errors::InvalidArgument("KerasNna>Run: `program` must be a scalar string, got shape ",
                                        program_t.shape().DebugString()));
    const tstring& bytes = program_t.scalar<tstring>()();
    std::string error;
    std::shared_ptr<const Program> p =
        Cache().Get(&program_t, bytes.data(), bytes.size(), limits_, &error);
    OP_REQUIRES(ctx, p != nullptr, errors::InvalidArgument("KerasNna>Run: invalid program: ", error));
    const TensorShape& s = images.shape();
    OP_REQUIRES(ctx,
                s.dims() == 4 && s.dim_size(1) == p->in_h && s.dim_size(2) == p->in_w &&
                    s.dim_size(3) == p->in_c,
                errors::InvalidArgument("KerasNna>Run: images must be uint8 [N, ", p->in_h, ", ", p->in_w,
                                        ", ", p->in_c, "] (NHWC, from the program header), got shape ",
                                        s.DebugString()));
    const int64_t n = s.dim_size(0);
    const int64_t in_elems = int64_t(p->in_h) * p->in_w * p->in_c;
    const uint8_t* img = images.flat<uint8_t>().data();
    if (p->in_bits < 8) {
      const int lim = (1 << p->in_bits) - 1;
      for (int64_t k = 0; k < n * in_elems; ++k) {
        OP_REQUIRES(ctx, img[k] <= lim,
                    errors::InvalidArgument("KerasNna>Run: the program takes ", p->in_bits,
                                            "-bit input codes (0-", lim, "), got ", int(img[k]),
                                            " at flat index ", k));
      }
    }
    TensorShape out_shape = p->out_rank1 ? TensorShape({n, p->out_c})
                                         : TensorShape({n, p->out_h, p->out_w, p->out_c});
    const int n_layers = int(p->layers.size());
    Tensor* outputs = nullptr;
    Tensor* stats = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, out_shape, &outputs));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({n, n_layers, kNumStats}), &stats));
    if (n == 0) return;
    const int64_t out_elems = int64_t(p->out_h) * p->out_w * p->out_c;
    float* out = outputs->flat<float>().data();
    int64_t* st = stats->flat<int64_t>().data();
    const Mode mode = mode_;
    auto work = [&](int64_t begin, int64_t end) {
      // Work buffers live per thread across calls: no allocation per image or call.
      static thread_local Scratch scratch;
      for (int64_t i = begin; i < end; ++i) {
        RunImage(*p, img + i * in_elems, mode, out + i * out_elems,
                 st + i * n_layers * kNumStats, &scratch);
      }
      if (scratch.acc.size() > (size_t(1) << 23)) scratch = Scratch();  // don't hold > ~64 MB
    };
    if (n == 1) {  // one image: run it on this thread, no thread-pool bookkeeping
      work(0, 1);
      return;
    }
    int64_t cost = 1000;
    for (const Layer& L : p->layers) cost += L.dense_macs + L.in_elems;
    auto* pool = ctx->device()->tensorflow_cpu_worker_threads()->workers;
    pool->ParallelFor(n, cost, work);
  }

 private:
  static bool TensorShapeUtilsIsScalar(const TensorShape& s) { return s.dims() == 0; }
  Mode mode_ = Mode::kAuto;
  ProgramLimits limits_;
};

REGISTER_KERNEL_BUILDER(Name("KerasNna>Run").Device(::tensorflow::DEVICE_CPU), RunOp);

}  // namespace
}  // namespace keras_nna
