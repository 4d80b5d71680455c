// Kernel entries of the MSDA backward (see msda_backward.h), one per dtype and design:
//   npu_ops_msda_bwd_<fp32|fp16|bf16>        co-designed kernel (deterministic mode per tiling)
//   npu_ops_msda_bwd_naive_<fp32|fp16|bf16>  naive baseline (one DMA per corner)
// Arguments: (grad_output, value, sampling_locations, attention_weights, grad_value,
//             grad_sampling_locations, grad_attention_weights, workspace, tiling).
// workspace: fp32 GM buffer of MsdaBwdTiling::workspaceBytes (fp16/bf16; any valid address for
// fp32). tiling: msda_backward_tiling_blob() (MsdaBwdTiling + one MsdaBwdLevel per level).
// The design is a separate entry (not a tiling field) so each binary holds only its own code;
// the tiling's `design` field must match the entry (the host picks both together).
#include "msda_backward.h"

#define NPU_OPS_MSDA_BWD_ENTRY(NAME, T, CODESIGN)                                                                  \
  extern "C" __global__ __aicore__ void NAME(GM_ADDR grad_output, GM_ADDR value, GM_ADDR sampling_locations,       \
                                             GM_ADDR attention_weights, GM_ADDR grad_value, GM_ADDR grad_loc,      \
                                             GM_ADDR grad_attn, GM_ADDR workspace, GM_ADDR tiling) {               \
    KERNEL_TASK_TYPE_DEFAULT(KERNEL_TYPE_MIX_AIV_1_0);                                                             \
    npu_ops_kernels::MsdaBackwardKernel<T, CODESIGN> op;                                                           \
    op.Init(grad_output, value, sampling_locations, attention_weights, grad_value, grad_loc, grad_attn, workspace, \
            tiling);                                                                                               \
    op.Process();                                                                                                  \
  }

NPU_OPS_MSDA_BWD_ENTRY(npu_ops_msda_bwd_fp32, float, true)
NPU_OPS_MSDA_BWD_ENTRY(npu_ops_msda_bwd_fp16, half, true)
NPU_OPS_MSDA_BWD_ENTRY(npu_ops_msda_bwd_bf16, bfloat16_t, true)
NPU_OPS_MSDA_BWD_ENTRY(npu_ops_msda_bwd_naive_fp32, float, false)
NPU_OPS_MSDA_BWD_ENTRY(npu_ops_msda_bwd_naive_fp16, half, false)
NPU_OPS_MSDA_BWD_ENTRY(npu_ops_msda_bwd_naive_bf16, bfloat16_t, false)
