// Interface of the CPU msda kernels. The kernels are plain C++ (no torch
// headers) compiled once per instruction set (msda_kernel_<isa>.cpp); the
// ATen-facing code in msda_cpu.cpp validates inputs, allocates outputs,
// splits work across threads and calls the table picked at run time.
#pragma once

#include <cstdint>

namespace npu_ops::cpu {

enum class MsdaDtype : int { kFloat, kDouble, kHalf, kBFloat16 };

struct MsdaLevelDesc {
  int64_t height, width, start;
};

// Element strides of value; its channels are always contiguous.
struct MsdaValueStrides {
  int64_t batch, pixel, head;
};

struct MsdaDims {
  int64_t batch, num_keys, num_heads, channels, num_queries, num_levels, num_points;
};

// All tensors contiguous, except value (see MsdaValueStrides). value/loc/attn/grad_out are in the input dtype;
// out, grad_value, grad_loc, grad_attn are in the accumulation type (double
// for kDouble, float otherwise).
struct MsdaForwardArgs {
  MsdaDims d;
  const MsdaLevelDesc* levels;
  MsdaDtype dtype;
  const void* value;  // [bs, num_keys, heads, C] with value_strides
  MsdaValueStrides value_strides;
  const void* loc;   // [bs, Nq, heads, L, P, 2]
  const void* attn;  // [bs, Nq, heads, L, P]
  void* out;         // [bs, Nq, heads, C]
};

struct MsdaBackwardArgs {
  MsdaDims d;
  const MsdaLevelDesc* levels;
  MsdaDtype dtype;
  const void* grad_out;  // [bs, Nq, heads, C]
  const void* value;
  MsdaValueStrides value_strides;
  const void* loc;
  const void* attn;
  void* grad_loc;   // [bs, Nq, heads, L, P, 2], written for the processed queries
  void* grad_attn;  // [bs, Nq, heads, L, P], written for the processed queries
};

struct MsdaKernels {
  const char* name;
  // Computes out rows for work items [begin, end) of the flattened (batch, query) axis.
  void (*forward)(const MsdaForwardArgs& args, int64_t begin, int64_t end);
  // Processes queries [q_begin, q_end) of head `head` in batch `batch`: writes
  // their grad_loc / grad_attn and adds their grad_value contribution to the
  // (batch, head) slice at `grad_value_slice` (accumulation type, pixel rows of
  // C elements `row_stride` elements apart), in query order.
  void (*backward)(const MsdaBackwardArgs& args, int64_t batch, int64_t head, int64_t q_begin, int64_t q_end,
                   void* grad_value_slice, int64_t row_stride);
};

namespace generic {
const MsdaKernels& msda_kernels();
}
namespace avx2 {
const MsdaKernels& msda_kernels();
}
namespace avx512 {
const MsdaKernels& msda_kernels();
}

}  // namespace npu_ops::cpu
