// Kernel entries of masked_blend (see masked_blend.h), one per data dtype and mask kind:
//   npu_ops_masked_blend_fwd_<fp32|fp16|bf16>_<fmask|u8mask>(fresh, cached, mask, out, tiling)
//   npu_ops_masked_blend_bwd_<fp32|fp16|bf16>_<fmask|u8mask>(grad, fresh, cached, mask,
//       grad_fresh, grad_cached, grad_mask, tiling)
// fmask: the mask has the data dtype; u8mask: 0/1 bytes (grad_mask is not written).
// tiling: a GM buffer holding npu_ops::ascend::MaskedBlendTiling.
#include "masked_blend.h"

#define NPU_OPS_MASKED_BLEND_ENTRIES(SUFFIX, T, M)                                                                     \
  extern "C" __global__ __aicore__ void npu_ops_masked_blend_fwd_##SUFFIX(GM_ADDR fresh, GM_ADDR cached, GM_ADDR mask, \
                                                                          GM_ADDR out, GM_ADDR tiling) {               \
    KERNEL_TASK_TYPE_DEFAULT(KERNEL_TYPE_AIV_ONLY);                                                                    \
    npu_ops_kernels::MaskedBlendForward<T, M> op;                                                                      \
    op.Init(fresh, cached, mask, out, tiling);                                                                         \
    op.Process();                                                                                                      \
  }                                                                                                                    \
  extern "C" __global__ __aicore__ void npu_ops_masked_blend_bwd_##SUFFIX(                                             \
      GM_ADDR grad, GM_ADDR fresh, GM_ADDR cached, GM_ADDR mask, GM_ADDR grad_fresh, GM_ADDR grad_cached,              \
      GM_ADDR grad_mask, GM_ADDR tiling) {                                                                             \
    KERNEL_TASK_TYPE_DEFAULT(KERNEL_TYPE_AIV_ONLY);                                                                    \
    npu_ops_kernels::MaskedBlendBackward<T, M> op;                                                                     \
    op.Init(grad, fresh, cached, mask, grad_fresh, grad_cached, grad_mask, tiling);                                    \
    op.Process();                                                                                                      \
  }

NPU_OPS_MASKED_BLEND_ENTRIES(fp32_fmask, float, float)
NPU_OPS_MASKED_BLEND_ENTRIES(fp16_fmask, half, half)
NPU_OPS_MASKED_BLEND_ENTRIES(bf16_fmask, bfloat16_t, bfloat16_t)
NPU_OPS_MASKED_BLEND_ENTRIES(fp32_u8mask, float, uint8_t)
NPU_OPS_MASKED_BLEND_ENTRIES(fp16_u8mask, half, uint8_t)
NPU_OPS_MASKED_BLEND_ENTRIES(bf16_u8mask, bfloat16_t, uint8_t)
