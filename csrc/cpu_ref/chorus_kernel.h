// Interface of the CPU kernels of the Chorus ops (masked_blend, amplified_softmax).
// The kernels are plain C++ (no torch headers), compiled once per instruction
// set in chorus_kernels.cpp; the ATen-facing files (masked_blend_cpu.cpp,
// amplified_softmax_cpu.cpp) validate and canonicalise the inputs
// (common/chorus_checks.h), split the work across threads and call the table
// picked at run time.
#pragma once

#include <cstdint>

namespace npu_ops::cpu {

// Storage type of a tensor the kernels read or write. kByte is a hard mask
// (bool or uint8; nonzero selects fresh).
enum class ChorusDtype : int { kFloat, kDouble, kHalf, kBFloat16, kByte };

// masked_blend on contiguous data viewed as [outer, mid, inner], the mask as
// [outer, inner] (repeated over mid). Floating data of type `dtype`, computed
// in float (double for kDouble).
struct BlendArgs {
  int64_t outer, mid, inner;
  ChorusDtype dtype, mask_dtype;
  const void* fresh;
  const void* cached;
  const void* mask;
  void* out;  // forward only: [outer, mid, inner] in dtype
};

struct BlendBackwardArgs {
  int64_t outer, mid, inner;
  ChorusDtype dtype, mask_dtype;
  const void* grad_out;
  const void* fresh;   // read only when grad_mask is computed
  const void* cached;  // read only when grad_mask is computed
  const void* mask;
  void* grad_fresh;   // [outer, mid, inner] in dtype, or null
  void* grad_cached;  // [outer, mid, inner] in dtype, or null
};

// Softmax over rows of `len` elements; alpha is [groups, len] and row r uses
// alpha row r / (rows / groups).
struct SoftmaxArgs {
  int64_t rows, len, groups;
  ChorusDtype dtype, alpha_dtype;
  double scale;
  bool renormalize;
  const void* scores;
  const void* alpha;
  void* out;
};

struct SoftmaxBackwardArgs {
  int64_t rows, len, groups;
  ChorusDtype dtype, alpha_dtype;
  double scale;
  bool renormalize;
  const void* grad_out;
  const void* output;  // used when scores is null (renormalize only)
  const void* scores;  // when given, the forward is recomputed from it
  const void* alpha;
  void* grad_scores;  // [rows, len] in dtype, or null
};

struct ChorusKernels {
  const char* name;
  // Elements [begin, end) of the flattened data.
  void (*blend_forward)(const BlendArgs& a, int64_t begin, int64_t end);
  // grad_fresh / grad_cached for elements [begin, end).
  void (*blend_backward)(const BlendBackwardArgs& a, int64_t begin, int64_t end);
  // grad_fresh / grad_cached for the block (o, mid rows [m0, m1), inner [i0, i1)), and
  // grad_mask_part[i - i0] = sum over those mid rows of (fresh - cached) * grad_out
  // (float, or double for kDouble data), summed in a fixed order.
  void (*blend_backward_reduce)(const BlendBackwardArgs& a, int64_t o, int64_t m0, int64_t m1, int64_t i0, int64_t i1,
                                void* grad_mask_part);
  // Rows [begin, end). Returns false if an alpha value it read is negative, NaN or infinite.
  bool (*softmax_forward)(const SoftmaxArgs& a, int64_t begin, int64_t end);
  // Rows [begin, end); when grad_alpha_part is not null all rows are in one group and
  // grad_alpha_part[j] (float, or double for kDouble) is set to their alpha gradient.
  void (*softmax_backward)(const SoftmaxBackwardArgs& a, int64_t begin, int64_t end, void* grad_alpha_part);
};

// The variant matching npu_ops.cpu_capability() (and so NPU_OPS_CPU_CAPABILITY).
const ChorusKernels& chorus_kernels();

}  // namespace npu_ops::cpu
