// Kernel entries of the MSDA forward (see msda_forward.h), one per design and dtype:
//   npu_ops_msda_fwd_<fp32|fp16|bf16>(value, sampling_locations, attention_weights, out, tiling)
//       the co-designed kernel (tiling.design == kMsdaCodesign)
//   npu_ops_msda_fwd_naive_<fp32|fp16|bf16>(value, sampling_locations, attention_weights, out, tiling)
//       the naive baseline (tiling.design == kMsdaNaive)
// All tensors have the entry's dtype; tiling: a GM buffer holding npu_ops::ascend::MsdaForwardTiling.
#include "msda_forward.h"

#define NPU_OPS_MSDA_FWD_ENTRIES(SUFFIX, T)                                                                       \
  extern "C" __global__ __aicore__ void npu_ops_msda_fwd_##SUFFIX(GM_ADDR value, GM_ADDR loc, GM_ADDR attn,       \
                                                                  GM_ADDR out, GM_ADDR tiling) {                  \
    KERNEL_TASK_TYPE_DEFAULT(KERNEL_TYPE_AIV_ONLY);                                                               \
    npu_ops_kernels::MsdaForwardCodesign<T> op;                                                                   \
    op.Init(value, loc, attn, out, tiling);                                                                       \
    op.Process();                                                                                                 \
  }                                                                                                               \
  extern "C" __global__ __aicore__ void npu_ops_msda_fwd_naive_##SUFFIX(GM_ADDR value, GM_ADDR loc, GM_ADDR attn, \
                                                                        GM_ADDR out, GM_ADDR tiling) {            \
    KERNEL_TASK_TYPE_DEFAULT(KERNEL_TYPE_AIV_ONLY);                                                               \
    npu_ops_kernels::MsdaForwardNaive<T> op;                                                                      \
    op.Init(value, loc, attn, out, tiling);                                                                       \
    op.Process();                                                                                                 \
  }

NPU_OPS_MSDA_FWD_ENTRIES(fp32, float)
NPU_OPS_MSDA_FWD_ENTRIES(fp16, half)
NPU_OPS_MSDA_FWD_ENTRIES(bf16, bfloat16_t)
