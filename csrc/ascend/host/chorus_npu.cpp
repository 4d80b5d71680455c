// NPU (PrivateUse1) backend of the Chorus ops: npu_ops::masked_blend, npu_ops::amplified_softmax
// and their backward ops, launching the AscendC kernels of csrc/ascend/kernels.
//
// Per call: validate the arguments (common/chorus_checks.h, errors name the argument), bring
// the operands to the kernels' canonical layout (host/tiling/chorus_tiling.h, the same code
// the emulator path uses, so both launch the kernels identically), allocate the outputs on
// the NPU, compute the tiling for the device's vector core count, copy it to the device and
// launch on the current stream (launch.h).
#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "ascend/host/launch.h"
#include "ascend/host/tiling/chorus_tiling.h"
#include "common/chorus_checks.h"
#include "torch_npu/csrc/core/npu/NPUGuard.h"

namespace npu_ops {
namespace {

using ascend::ChorusDtype;

constexpr const char* kBlend = "npu_ops.masked_blend";
constexpr const char* kSoftmax = "npu_ops.amplified_softmax";

// The kernels' data dtype; float64 has no AscendC kernel.
ChorusDtype chorus_dtype(const at::Tensor& t, const char* op, const char* name) {
  switch (t.scalar_type()) {
    case at::kFloat: return ascend::kChorusFloat32;
    case at::kHalf: return ascend::kChorusFloat16;
    case at::kBFloat16: return ascend::kChorusBFloat16;
    default:
      TORCH_CHECK(false, op, ": ", name, " has dtype ", t.scalar_type(),
                  ", which the NPU kernels do not support (float32, float16, bfloat16; float64 runs on CPU only)");
  }
}

std::vector<int64_t> shape_of(const at::Tensor& t) {
  return t.sizes().vec();
}

uint32_t device_blocks(const at::Tensor& t) {
  return ascend::vector_core_count(t.device().index());
}

void check_tiled(bool ok, const char* op, const std::string& reason) {
  TORCH_CHECK(ok, op, " (NPU): ", reason);
}

// An operand expanded to `full` (a broadcast of it) has gradient `g` in that shape: sum it over
// the broadcast dims and return it in the operand's shape and dtype.
at::Tensor reduce_to_operand(const at::Tensor& g, at::IntArrayRef full, const at::Tensor& operand) {
  std::vector<int64_t> padded(full.size(), 1);
  const size_t lead = full.size() - static_cast<size_t>(operand.dim());
  for (int64_t i = 0; i < operand.dim(); ++i) padded[lead + i] = operand.size(i);
  std::vector<int64_t> dims;
  for (size_t i = 0; i < full.size(); ++i) {
    if (padded[i] == 1 && full[i] != 1) dims.push_back(static_cast<int64_t>(i));
  }
  at::Tensor r = g.view(full);
  if (!dims.empty()) r = r.sum(dims, /*keepdim=*/true);
  return r.reshape(operand.sizes()).to(operand.scalar_type());
}

// ---------------------------------------------------------------------------------------------
// Kernel entries, indexed by [ChorusDtype] and, for masked_blend, [MaskedBlendMaskKind].

template <class Fn>
struct Entry {
  const char* name;
  Fn fn;
};
#define NPU_OPS_ENTRY(e) {#e, &aclrtlaunch_##e}

using BlendFwdFn = uint32_t (*)(uint32_t, aclrtStream, void*, void*, void*, void*, void*);
using BlendBwdFn = uint32_t (*)(uint32_t, aclrtStream, void*, void*, void*, void*, void*, void*, void*, void*);
using SoftmaxFwdFn = uint32_t (*)(uint32_t, aclrtStream, void*, void*, void*, void*);
using SoftmaxBwdFn = uint32_t (*)(uint32_t, aclrtStream, void*, void*, void*, void*, void*, void*);

const Entry<BlendFwdFn> kBlendFwd[3][2] = {
    {NPU_OPS_ENTRY(npu_ops_masked_blend_fwd_fp32_fmask), NPU_OPS_ENTRY(npu_ops_masked_blend_fwd_fp32_u8mask)},
    {NPU_OPS_ENTRY(npu_ops_masked_blend_fwd_fp16_fmask), NPU_OPS_ENTRY(npu_ops_masked_blend_fwd_fp16_u8mask)},
    {NPU_OPS_ENTRY(npu_ops_masked_blend_fwd_bf16_fmask), NPU_OPS_ENTRY(npu_ops_masked_blend_fwd_bf16_u8mask)},
};
const Entry<BlendBwdFn> kBlendBwd[3][2] = {
    {NPU_OPS_ENTRY(npu_ops_masked_blend_bwd_fp32_fmask), NPU_OPS_ENTRY(npu_ops_masked_blend_bwd_fp32_u8mask)},
    {NPU_OPS_ENTRY(npu_ops_masked_blend_bwd_fp16_fmask), NPU_OPS_ENTRY(npu_ops_masked_blend_bwd_fp16_u8mask)},
    {NPU_OPS_ENTRY(npu_ops_masked_blend_bwd_bf16_fmask), NPU_OPS_ENTRY(npu_ops_masked_blend_bwd_bf16_u8mask)},
};
const Entry<SoftmaxFwdFn> kSoftmaxFwd[3] = {
    NPU_OPS_ENTRY(npu_ops_amplified_softmax_fwd_fp32),
    NPU_OPS_ENTRY(npu_ops_amplified_softmax_fwd_fp16),
    NPU_OPS_ENTRY(npu_ops_amplified_softmax_fwd_bf16),
};
const Entry<SoftmaxBwdFn> kSoftmaxBwd[3] = {
    NPU_OPS_ENTRY(npu_ops_amplified_softmax_bwd_fp32),
    NPU_OPS_ENTRY(npu_ops_amplified_softmax_bwd_fp16),
    NPU_OPS_ENTRY(npu_ops_amplified_softmax_bwd_bf16),
};
#undef NPU_OPS_ENTRY

// ---------------------------------------------------------------------------------------------
// masked_blend

struct BlendPlan {
  ascend::MaskedBlendCanon canon;
  ChorusDtype dtype;
  ascend::MaskedBlendMaskKind mask_kind;
  at::Tensor mask;  // canonical: contiguous, [outer, inner] values (the data's shape if expanded)
};

// After masked_blend_check (which names the bad argument, devices included).
BlendPlan plan_blend(const at::Tensor& fresh, const at::Tensor& mask, const BlendLayout& layout) {
  BlendPlan p;
  p.dtype = chorus_dtype(fresh, kBlend, "fresh");
  std::string reason;
  check_tiled(ascend::canonicalize_masked_blend(shape_of(fresh), shape_of(mask), &p.canon, &reason), kBlend, reason);
  at::Tensor m = mask;
  if (layout.hard) {
    p.mask_kind = ascend::kBlendMaskU8;
    // The kernels read 0/1 bytes: bool is one; a uint8 mask selects where nonzero, as on CPU.
    m = (m.scalar_type() == at::kBool ? m : m.ne(0)).view(at::kByte);
  } else {
    p.mask_kind = ascend::kBlendMaskFloat;
    m = m.to(fresh.scalar_type());  // the kernels read a soft mask in the data dtype
  }
  if (p.canon.expand_mask) m = m.expand(fresh.sizes());
  p.mask = m.contiguous();
  if (fresh.numel() > 0) {
    TORCH_CHECK(static_cast<uint64_t>(p.mask.numel()) == p.canon.outer * p.canon.inner, kBlend,
                " (NPU): internal error: canonical mask has ", p.mask.numel(), " values, expected ",
                p.canon.outer * p.canon.inner);
  }
  return p;
}

at::Tensor masked_blend_npu(const at::Tensor& fresh, const at::Tensor& cached, const at::Tensor& mask) {
  const BlendLayout layout = masked_blend_check(fresh, cached, mask);
  c10_npu::OptionalNPUGuard guard(fresh.device());
  const BlendPlan p = plan_blend(fresh, mask, layout);
  at::Tensor out = at::empty(fresh.sizes(), fresh.options().memory_format(at::MemoryFormat::Contiguous));
  if (out.numel() == 0) return out;
  const at::Tensor f = fresh.contiguous(), c = cached.contiguous();

  ascend::MaskedBlendTiling t;
  std::string reason;
  check_tiled(ascend::compute_masked_blend_tiling(p.canon.outer, p.canon.mid, p.canon.inner, p.dtype, p.mask_kind,
                                                  /*backward=*/false, device_blocks(fresh), ascend::kChorusUbBytes, &t,
                                                  &reason),
              kBlend, reason);
  const at::Tensor tiling = ascend::tiling_to_device(t, fresh.device());
  const auto& e = kBlendFwd[p.dtype][p.mask_kind];
  ascend::launch(e.name, e.fn, t.blockNum, ascend::gm(f), ascend::gm(c), ascend::gm(p.mask), ascend::gm(out),
                 ascend::gm(tiling));
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> masked_blend_backward_npu(const at::Tensor& grad_output,
                                                                         const at::Tensor& fresh,
                                                                         const at::Tensor& cached,
                                                                         const at::Tensor& mask,
                                                                         std::array<bool, 3> output_mask) {
  const BlendLayout layout = masked_blend_check(fresh, cached, mask);
  masked_blend_check_grad(grad_output, fresh);
  c10_npu::OptionalNPUGuard guard(fresh.device());
  const BlendPlan p = plan_blend(fresh, mask, layout);
  const bool hard = p.mask_kind == ascend::kBlendMaskU8;
  TORCH_CHECK(!(output_mask[2] && hard), kBlend, " backward: a ", mask.scalar_type(),
              " mask has no gradient (output_mask[2] must be false)");
  const auto opts = fresh.options().memory_format(at::MemoryFormat::Contiguous);
  const at::Tensor none = at::empty({0}, fresh.options());
  if (fresh.numel() == 0 || !(output_mask[0] || output_mask[1] || output_mask[2])) {
    return {output_mask[0] ? at::empty(fresh.sizes(), opts) : none,
            output_mask[1] ? at::empty(fresh.sizes(), opts) : none,
            output_mask[2] ? at::zeros(mask.sizes(), mask.options()) : at::empty({0}, mask.options())};
  }
  const at::Tensor g = grad_output.contiguous(), f = fresh.contiguous(), c = cached.contiguous();
  // The kernel writes both data gradients; one not asked for goes to scratch.
  at::Tensor grad_fresh = at::empty(fresh.sizes(), opts);
  at::Tensor grad_cached = at::empty(fresh.sizes(), opts);
  // Soft masks: fp32 mask gradient, accumulated atomically by all blocks, hence zeroed. Hard
  // masks: not touched; any valid GM address does.
  const int64_t mask_values = hard ? 1 : static_cast<int64_t>(p.canon.outer * p.canon.inner);
  at::Tensor grad_mask32 = at::zeros({mask_values}, fresh.options().dtype(at::kFloat));

  ascend::MaskedBlendTiling t;
  std::string reason;
  check_tiled(
      ascend::compute_masked_blend_tiling(p.canon.outer, p.canon.mid, p.canon.inner, p.dtype, p.mask_kind,
                                          /*backward=*/true, device_blocks(fresh), ascend::kChorusUbBytes, &t, &reason),
      kBlend, reason);
  const at::Tensor tiling = ascend::tiling_to_device(t, fresh.device());
  const auto& e = kBlendBwd[p.dtype][p.mask_kind];
  ascend::launch(e.name, e.fn, t.blockNum, ascend::gm(g), ascend::gm(f), ascend::gm(c), ascend::gm(p.mask),
                 ascend::gm(grad_fresh), ascend::gm(grad_cached), ascend::gm(grad_mask32), ascend::gm(tiling));

  at::Tensor grad_mask = at::empty({0}, mask.options());
  if (output_mask[2]) {
    grad_mask = p.canon.expand_mask ? reduce_to_operand(grad_mask32, fresh.sizes(), mask)
                                    : grad_mask32.reshape(mask.sizes()).to(mask.scalar_type());
  }
  return {output_mask[0] ? grad_fresh : none, output_mask[1] ? grad_cached : none, grad_mask};
}

// ---------------------------------------------------------------------------------------------
// amplified_softmax

struct SoftmaxPlan {
  ascend::AmplifiedSoftmaxCanon canon;
  ChorusDtype dtype;
  at::Tensor alpha;  // canonical: fp32, contiguous [groups, cols]
};

// After amplified_softmax_check (which names the bad argument, devices included).
SoftmaxPlan plan_softmax(const at::Tensor& scores, const at::Tensor& alpha, const char* what) {
  SoftmaxPlan p;
  p.dtype = chorus_dtype(scores, kSoftmax, what);
  std::string reason;
  check_tiled(ascend::canonicalize_amplified_softmax(shape_of(scores), shape_of(alpha), &p.canon, &reason), kSoftmax,
              reason);
  std::vector<int64_t> padded(scores.dim(), 1);
  for (int64_t i = 0; i < alpha.dim(); ++i) padded[scores.dim() - alpha.dim() + i] = alpha.size(i);
  p.alpha = alpha.reshape(padded).expand(p.canon.alpha_expand_shape).to(at::kFloat).contiguous();
  return p;
}

at::Tensor amplified_softmax_npu(const at::Tensor& scores, const at::Tensor& alpha, double scale, bool renormalize) {
  amplified_softmax_check(scores, alpha, scale, "scores");
  c10_npu::OptionalNPUGuard guard(scores.device());
  const SoftmaxPlan p = plan_softmax(scores, alpha, "scores");
  at::Tensor out = at::empty(scores.sizes(), scores.options().memory_format(at::MemoryFormat::Contiguous));
  if (out.numel() == 0) return out;
  // alpha must be finite and >= 0. The kernel has no error channel, so this is checked here,
  // on the device; reading the verdict waits for the stream (alpha is small, the wait is not).
  if (p.alpha.lt(0).logical_or(p.alpha.isfinite().logical_not()).any().item<bool>()) {
    amplified_softmax_report_bad_alpha(alpha);
  }
  const at::Tensor s = scores.contiguous();

  ascend::AmplifiedSoftmaxTiling t;
  std::string reason;
  check_tiled(ascend::compute_amplified_softmax_tiling(
                  p.canon.rows, p.canon.groups, static_cast<uint32_t>(p.canon.cols), static_cast<float>(scale),
                  renormalize, p.dtype, /*backward=*/false, device_blocks(scores), ascend::kChorusUbBytes, &t, &reason),
              kSoftmax, reason);
  const at::Tensor tiling = ascend::tiling_to_device(t, scores.device());
  const auto& e = kSoftmaxFwd[p.dtype];
  ascend::launch(e.name, e.fn, t.blockNum, ascend::gm(s), ascend::gm(p.alpha), ascend::gm(out), ascend::gm(tiling));
  return out;
}

std::tuple<at::Tensor, at::Tensor> amplified_softmax_backward_npu(const at::Tensor& grad_output,
                                                                  const std::optional<at::Tensor>& output,
                                                                  const std::optional<at::Tensor>& scores,
                                                                  const at::Tensor& alpha, double scale,
                                                                  bool renormalize, std::array<bool, 2> output_mask) {
  const bool have_scores = scores.has_value() && scores->defined();
  const bool have_output = output.has_value() && output->defined();
  TORCH_CHECK(have_scores || have_output, kSoftmax, " backward: needs scores (or, with renormalize=True, the output)");
  TORCH_CHECK(have_scores || renormalize, kSoftmax,
              " backward: renormalize=False needs scores (the output does not determine the gradient where alpha = "
              "0)");
  TORCH_CHECK(have_scores || !output_mask[1], kSoftmax,
              " backward: the alpha gradient needs scores (the output does not determine it where alpha = 0)");
  const at::Tensor& ref = have_scores ? *scores : *output;
  const char* ref_name = have_scores ? "scores" : "output";
  amplified_softmax_check(ref, alpha, scale, ref_name);
  amplified_softmax_check_grad(grad_output, ref, ref_name);
  if (have_scores && have_output) {
    TORCH_CHECK(output->sizes().equals(scores->sizes()) && output->scalar_type() == scores->scalar_type(), kSoftmax,
                " backward: output must have scores' shape and dtype");
  }
  c10_npu::OptionalNPUGuard guard(ref.device());
  const SoftmaxPlan p = plan_softmax(ref, alpha, ref_name);
  const auto opts = ref.options().memory_format(at::MemoryFormat::Contiguous);
  const at::Tensor none = at::empty({0}, ref.options());
  if (ref.numel() == 0 || !(output_mask[0] || output_mask[1])) {
    return {output_mask[0] ? at::empty(ref.sizes(), opts) : none,
            output_mask[1] ? at::zeros(alpha.sizes(), alpha.options()) : at::empty({0}, alpha.options())};
  }
  const at::Tensor g = grad_output.contiguous();

  if (!have_scores) {
    // Only the output P (renormalize=True, scores gradient only): no kernel needs this form;
    // scale * P * (g - sum(g * P)) with ATen ops on the device, in fp32.
    const at::Tensor P = output->to(at::kFloat), g32 = g.to(at::kFloat);
    const at::Tensor gs = P * (g32 - (g32 * P).sum(-1, /*keepdim=*/true)) * scale;
    return {gs.to(ref.scalar_type()).contiguous(), at::empty({0}, alpha.options())};
  }

  const at::Tensor s = scores->contiguous();
  at::Tensor grad_scores = at::empty(ref.sizes(), opts);  // written by the kernel even if not asked for
  // fp32 [groups, cols], accumulated atomically by all blocks, hence zeroed.
  at::Tensor grad_alpha32 = at::zeros({static_cast<int64_t>(p.canon.groups), static_cast<int64_t>(p.canon.cols)},
                                      ref.options().dtype(at::kFloat));
  ascend::AmplifiedSoftmaxTiling t;
  std::string reason;
  check_tiled(ascend::compute_amplified_softmax_tiling(
                  p.canon.rows, p.canon.groups, static_cast<uint32_t>(p.canon.cols), static_cast<float>(scale),
                  renormalize, p.dtype, /*backward=*/true, device_blocks(ref), ascend::kChorusUbBytes, &t, &reason),
              kSoftmax, reason);
  const at::Tensor tiling = ascend::tiling_to_device(t, ref.device());
  const auto& e = kSoftmaxBwd[p.dtype];
  ascend::launch(e.name, e.fn, t.blockNum, ascend::gm(g), ascend::gm(s), ascend::gm(p.alpha), ascend::gm(grad_scores),
                 ascend::gm(grad_alpha32), ascend::gm(tiling));

  at::Tensor grad_alpha = at::empty({0}, alpha.options());
  if (output_mask[1]) grad_alpha = reduce_to_operand(grad_alpha32, p.canon.alpha_expand_shape, alpha);
  return {output_mask[0] ? grad_scores : none, grad_alpha};
}

}  // namespace
}  // namespace npu_ops

TORCH_LIBRARY_IMPL(npu_ops, PrivateUse1, m) {
  m.impl("masked_blend", &npu_ops::masked_blend_npu);
  m.impl("_masked_blend_backward", &npu_ops::masked_blend_backward_npu);
  m.impl("amplified_softmax", &npu_ops::amplified_softmax_npu);
  m.impl("_amplified_softmax_backward", &npu_ops::amplified_softmax_backward_npu);
}
