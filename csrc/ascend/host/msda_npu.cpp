// NPU (PrivateUse1) backend of npu_ops::msda and npu_ops::_msda_backward, launching the MSDA
// AscendC kernels of csrc/ascend/kernels/msda_{forward,backward}.cpp.
//
// Per call: validate the arguments with the checks every msda backend uses (common/msda_checks.h:
// errors name the argument; spatial_shapes / level_start_index are read on the host, a small
// device-to-host copy when they live on the NPU), allocate the outputs on the NPU, compute the
// tiling for the device's vector core count with the host tiling the emulator uses too
// (host/tiling/msda_{forward,backward}_tiling.h), copy it to the device and launch on the current
// stream (launch.h). The backward needs no zero-filled outputs (the kernel zeroes its fp32
// accumulator itself) and runs its deterministic mode when
// torch.use_deterministic_algorithms(True) is on.
//
// Design: the co-designed kernels. NPU_OPS_MSDA_DESIGN=naive selects the naive baseline kernels
// instead (one DMA per corner; for measuring the co-design's gain on hardware, see
// bench/bench_ascend_msda.py --npu); any other value than codesign / naive is an error.
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <tuple>
#include <vector>

#include "ascend/host/launch.h"
#include "ascend/host/tiling/msda_backward_tiling.h"
#include "ascend/host/tiling/msda_forward_tiling.h"
#include "common/msda_checks.h"
#include "torch_npu/csrc/core/npu/NPUGuard.h"

namespace npu_ops {
namespace {

constexpr const char* kOp = "npu_ops.msda";

// Index into the entry tables: 0 float32, 1 float16, 2 bfloat16 (ChorusDtype / MsdaBwdDtype order).
int kernel_dtype(const at::Tensor& value) {
  switch (value.scalar_type()) {
    case at::kFloat: return 0;
    case at::kHalf: return 1;
    case at::kBFloat16: return 2;
    default:
      TORCH_CHECK(false, kOp, ": value has dtype ", value.scalar_type(),
                  ", which the NPU kernels do not support (float32, float16, bfloat16; float64 runs on CPU only)");
  }
}

bool naive_design() {
  const char* env = std::getenv("NPU_OPS_MSDA_DESIGN");
  if (env == nullptr || *env == '\0' || std::strcmp(env, "codesign") == 0) return false;
  TORCH_CHECK(std::strcmp(env, "naive") == 0, kOp, ": NPU_OPS_MSDA_DESIGN must be 'codesign' or 'naive', got '", env,
              "'");
  return true;
}

MsdaProblem check_inputs(const at::Tensor& value, const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
                         const at::Tensor& sampling_locations, const at::Tensor& attention_weights) {
  MsdaProblem p = msda_check_shapes(value, spatial_shapes, level_start_index, sampling_locations, attention_weights);
  kernel_dtype(value);
  msda_check_levels(p, spatial_shapes, level_start_index);
  return p;
}

// The launch's tiling argument: `bytes` in pinned host memory, copied asynchronously on the
// current stream (ordered before the launch that reads it), as launch.h's tiling_to_device.
at::Tensor bytes_to_device(const std::vector<uint8_t>& bytes, const at::Device& device) {
  at::Tensor host =
      at::empty({static_cast<int64_t>(bytes.size())}, at::TensorOptions().dtype(at::kByte).pinned_memory(true));
  std::memcpy(host.data_ptr(), bytes.data(), bytes.size());
  return host.to(device, /*non_blocking=*/true);
}

uint32_t device_blocks(const at::Tensor& t) {
  return ascend::vector_core_count(t.device().index());
}

// ---------------------------------------------------------------------------------------------
// Kernel entries, indexed by [design: 0 codesign, 1 naive][dtype].

template <class Fn>
struct Entry {
  const char* name;
  Fn fn;
};
#define NPU_OPS_ENTRY(e) {#e, &aclrtlaunch_##e}

using FwdFn = uint32_t (*)(uint32_t, aclrtStream, void*, void*, void*, void*, void*);
using BwdFn = uint32_t (*)(uint32_t, aclrtStream, void*, void*, void*, void*, void*, void*, void*, void*, void*);

const Entry<FwdFn> kForward[2][3] = {
    {NPU_OPS_ENTRY(npu_ops_msda_fwd_fp32), NPU_OPS_ENTRY(npu_ops_msda_fwd_fp16), NPU_OPS_ENTRY(npu_ops_msda_fwd_bf16)},
    {NPU_OPS_ENTRY(npu_ops_msda_fwd_naive_fp32), NPU_OPS_ENTRY(npu_ops_msda_fwd_naive_fp16),
     NPU_OPS_ENTRY(npu_ops_msda_fwd_naive_bf16)},
};
const Entry<BwdFn> kBackward[2][3] = {
    {NPU_OPS_ENTRY(npu_ops_msda_bwd_fp32), NPU_OPS_ENTRY(npu_ops_msda_bwd_fp16), NPU_OPS_ENTRY(npu_ops_msda_bwd_bf16)},
    {NPU_OPS_ENTRY(npu_ops_msda_bwd_naive_fp32), NPU_OPS_ENTRY(npu_ops_msda_bwd_naive_fp16),
     NPU_OPS_ENTRY(npu_ops_msda_bwd_naive_bf16)},
};
#undef NPU_OPS_ENTRY

// ---------------------------------------------------------------------------------------------
// forward

at::Tensor msda_forward_npu(const at::Tensor& value, const at::Tensor& spatial_shapes,
                            const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                            const at::Tensor& attention_weights) {
  const MsdaProblem p = check_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights);
  c10_npu::OptionalNPUGuard guard(value.device());
  const int dtype = kernel_dtype(value);
  const bool naive = naive_design();
  at::Tensor out = at::empty({p.batch, p.num_queries, p.num_heads * p.channels},
                             value.options().memory_format(at::MemoryFormat::Contiguous));
  if (out.numel() == 0) return out;
  if (p.num_points == 0) return out.zero_();  // no point contributes

  ascend::MsdaForwardShape s;
  s.batch = static_cast<uint64_t>(p.batch);
  s.num_keys = static_cast<uint64_t>(p.num_keys);
  s.num_queries = static_cast<uint64_t>(p.num_queries);
  s.heads = static_cast<uint64_t>(p.num_heads);
  s.channels = static_cast<uint64_t>(p.channels);
  s.points = static_cast<uint64_t>(p.num_points);
  for (const MsdaLevel& lv : p.levels) {
    s.levels.push_back(
        {static_cast<uint64_t>(lv.height), static_cast<uint64_t>(lv.width), static_cast<uint64_t>(lv.start)});
  }
  ascend::MsdaForwardTiling t;
  std::string reason;
  TORCH_CHECK(ascend::compute_msda_forward_tiling(s, naive ? ascend::kMsdaNaive : ascend::kMsdaCodesign,
                                                  static_cast<ascend::ChorusDtype>(dtype), device_blocks(value),
                                                  ascend::kChorusUbBytes, &t, &reason),
              kOp, " (NPU): ", reason);
  const at::Tensor v = value.contiguous(), loc = sampling_locations.contiguous(), attn = attention_weights.contiguous();
  const at::Tensor tiling = ascend::tiling_to_device(t, value.device());
  const auto& e = kForward[naive][dtype];
  ascend::launch(e.name, e.fn, t.blockNum, ascend::gm(v), ascend::gm(loc), ascend::gm(attn), ascend::gm(out),
                 ascend::gm(tiling));
  return out;
}

// ---------------------------------------------------------------------------------------------
// backward

std::tuple<at::Tensor, at::Tensor, at::Tensor> msda_backward_npu(const at::Tensor& grad_output, const at::Tensor& value,
                                                                 const at::Tensor& spatial_shapes,
                                                                 const at::Tensor& level_start_index,
                                                                 const at::Tensor& sampling_locations,
                                                                 const at::Tensor& attention_weights) {
  const MsdaProblem p = check_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights);
  msda_check_grad_output(p, grad_output, value);
  c10_npu::OptionalNPUGuard guard(value.device());
  const int dtype = kernel_dtype(value);
  const bool naive = naive_design();
  const at::Tensor go = grad_output.contiguous(), v = value.contiguous(), loc = sampling_locations.contiguous(),
                   attn = attention_weights.contiguous();
  at::Tensor grad_value = at::empty_like(v, at::MemoryFormat::Contiguous);
  at::Tensor grad_loc = at::empty_like(loc, at::MemoryFormat::Contiguous);
  at::Tensor grad_attn = at::empty_like(attn, at::MemoryFormat::Contiguous);
  if (v.numel() == 0 || loc.numel() == 0 || go.numel() == 0) {  // nothing to launch
    return {grad_value.zero_(), grad_loc.zero_(), grad_attn.zero_()};
  }

  ascend::MsdaBwdProblem bp;
  bp.batch = static_cast<uint64_t>(p.batch);
  bp.num_keys = static_cast<uint64_t>(p.num_keys);
  bp.num_queries = static_cast<uint64_t>(p.num_queries);
  TORCH_CHECK(p.num_heads <= UINT32_MAX && p.channels <= UINT32_MAX && p.num_points <= UINT32_MAX, kOp,
              " backward (NPU): num_heads, channels and num_points must each be < 2^32, got ", p.num_heads, ", ",
              p.channels, ", ", p.num_points);
  bp.heads = static_cast<uint32_t>(p.num_heads);
  bp.channels = static_cast<uint32_t>(p.channels);
  bp.points = static_cast<uint32_t>(p.num_points);
  for (const MsdaLevel& lv : p.levels) {
    bp.levels.push_back(
        {static_cast<uint64_t>(lv.height), static_cast<uint64_t>(lv.width), static_cast<uint64_t>(lv.start)});
  }
  // The kernel synchronises its blocks (SyncAll): never more blocks than vector cores.
  const bool deterministic = at::globalContext().deterministicAlgorithms();
  ascend::MsdaBwdTiling t;
  std::vector<ascend::MsdaBwdLevel> levels;
  std::string reason;
  TORCH_CHECK(
      ascend::compute_msda_backward_tiling(bp, static_cast<ascend::MsdaBwdDtype>(dtype),
                                           naive ? ascend::kMsdaBwdNaive : ascend::kMsdaBwdCodesign, deterministic,
                                           device_blocks(value), ascend::kChorusUbBytes, &t, &levels, &reason),
      kOp, " backward (NPU): ", reason);
  const at::Tensor tiling = bytes_to_device(ascend::msda_backward_tiling_blob(t, levels), value.device());
  // fp16/bf16 accumulate in an fp32 workspace (the kernel zeroes it); fp32 accumulates in
  // grad_value and the workspace argument only needs to be a valid GM address.
  const at::Tensor workspace = t.workspaceBytes > 0 ? at::empty({static_cast<int64_t>((t.workspaceBytes + 3) / 4)},
                                                                value.options().dtype(at::kFloat))
                                                    : grad_value;
  const auto& e = kBackward[naive][dtype];
  ascend::launch(e.name, e.fn, t.blockNum, ascend::gm(go), ascend::gm(v), ascend::gm(loc), ascend::gm(attn),
                 ascend::gm(grad_value), ascend::gm(grad_loc), ascend::gm(grad_attn), ascend::gm(workspace),
                 ascend::gm(tiling));
  return {grad_value, grad_loc, grad_attn};
}

}  // namespace
}  // namespace npu_ops

TORCH_LIBRARY_IMPL(npu_ops, PrivateUse1, m) {
  m.impl("msda", &npu_ops::msda_forward_npu);
  m.impl("_msda_backward", &npu_ops::msda_backward_npu);
}
