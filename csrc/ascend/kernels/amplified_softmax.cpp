// Kernel entries of amplified_softmax (see amplified_softmax.h), one per dtype of
// scores/out/grad/grad_scores (alpha and grad_alpha are always fp32 [groups, L]):
//   npu_ops_amplified_softmax_fwd_<fp32|fp16|bf16>(scores, alpha, out, tiling)
//   npu_ops_amplified_softmax_bwd_<fp32|fp16|bf16>(grad, scores, alpha, grad_scores, grad_alpha, tiling)
// tiling: a GM buffer holding npu_ops::ascend::AmplifiedSoftmaxTiling.
#include "amplified_softmax.h"

#define NPU_OPS_AMPLIFIED_SOFTMAX_ENTRIES(SUFFIX, T)                                                          \
  extern "C" __global__ __aicore__ void npu_ops_amplified_softmax_fwd_##SUFFIX(GM_ADDR scores, GM_ADDR alpha, \
                                                                               GM_ADDR out, GM_ADDR tiling) { \
    KERNEL_TASK_TYPE_DEFAULT(KERNEL_TYPE_AIV_ONLY);                                                           \
    npu_ops_kernels::AmplifiedSoftmaxForward<T> op;                                                           \
    op.Init(scores, alpha, out, tiling);                                                                      \
    op.Process();                                                                                             \
  }                                                                                                           \
  extern "C" __global__ __aicore__ void npu_ops_amplified_softmax_bwd_##SUFFIX(                               \
      GM_ADDR grad, GM_ADDR scores, GM_ADDR alpha, GM_ADDR grad_scores, GM_ADDR grad_alpha, GM_ADDR tiling) { \
    KERNEL_TASK_TYPE_DEFAULT(KERNEL_TYPE_AIV_ONLY);                                                           \
    npu_ops_kernels::AmplifiedSoftmaxBackward<T> op;                                                          \
    op.Init(grad, scores, alpha, grad_scores, grad_alpha, tiling);                                            \
    op.Process();                                                                                             \
  }

NPU_OPS_AMPLIFIED_SOFTMAX_ENTRIES(fp32, float)
NPU_OPS_AMPLIFIED_SOFTMAX_ENTRIES(fp16, half)
NPU_OPS_AMPLIFIED_SOFTMAX_ENTRIES(bf16, bfloat16_t)
