// npu_ops_sim ops for the Chorus AscendC kernels (csrc/ascend/kernels/masked_blend.cpp,
// amplified_softmax.cpp): check the inputs, lay them out as the NPU launcher does (shared
// tiling, csrc/ascend/host/tiling/chorus_tiling.h), and run the kernel entries on CPU tensors
// under the AscendC emulator. python/npu_ops/ascend_sim/chorus.py wraps them.
#include <ATen/ATen.h>
#include <ATen/ExpandUtils.h>
#include <torch/library.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <tuple>
#include <vector>

#include "emu_runtime.h"
#include "host/tiling/chorus_tiling.h"

using KernelFwdBlend = void (*)(uint8_t*, uint8_t*, uint8_t*, uint8_t*, uint8_t*);
using KernelBwdBlend = void (*)(uint8_t*, uint8_t*, uint8_t*, uint8_t*, uint8_t*, uint8_t*, uint8_t*, uint8_t*);
using KernelFwdSoftmax = void (*)(uint8_t*, uint8_t*, uint8_t*, uint8_t*);
using KernelBwdSoftmax = void (*)(uint8_t*, uint8_t*, uint8_t*, uint8_t*, uint8_t*, uint8_t*);

#define NPU_OPS_DECLARE_BLEND(SUFFIX)                                                                           \
  extern "C" void npu_ops_masked_blend_fwd_##SUFFIX(uint8_t*, uint8_t*, uint8_t*, uint8_t*, uint8_t*);          \
  extern "C" void npu_ops_masked_blend_bwd_##SUFFIX(uint8_t*, uint8_t*, uint8_t*, uint8_t*, uint8_t*, uint8_t*, \
                                                    uint8_t*, uint8_t*);
NPU_OPS_DECLARE_BLEND(fp32_fmask)
NPU_OPS_DECLARE_BLEND(fp16_fmask)
NPU_OPS_DECLARE_BLEND(bf16_fmask)
NPU_OPS_DECLARE_BLEND(fp32_u8mask)
NPU_OPS_DECLARE_BLEND(fp16_u8mask)
NPU_OPS_DECLARE_BLEND(bf16_u8mask)
#undef NPU_OPS_DECLARE_BLEND

#define NPU_OPS_DECLARE_SOFTMAX(SUFFIX)                                                           \
  extern "C" void npu_ops_amplified_softmax_fwd_##SUFFIX(uint8_t*, uint8_t*, uint8_t*, uint8_t*); \
  extern "C" void npu_ops_amplified_softmax_bwd_##SUFFIX(uint8_t*, uint8_t*, uint8_t*, uint8_t*, uint8_t*, uint8_t*);
NPU_OPS_DECLARE_SOFTMAX(fp32)
NPU_OPS_DECLARE_SOFTMAX(fp16)
NPU_OPS_DECLARE_SOFTMAX(bf16)
#undef NPU_OPS_DECLARE_SOFTMAX

namespace {

namespace asc = npu_ops::ascend;
using npu_ops_emu::GmBuffer;

asc::ChorusDtype to_chorus_dtype(const at::Tensor& t, const char* op, const char* arg) {
  switch (t.scalar_type()) {
    case at::kFloat: return asc::kChorusFloat32;
    case at::kHalf: return asc::kChorusFloat16;
    case at::kBFloat16: return asc::kChorusBFloat16;
    default:
      TORCH_CHECK(false, op, ": ", arg, " must be float32, float16 or bfloat16 for the AscendC kernel, got ",
                  t.scalar_type());
  }
}

uint8_t* ptr(const at::Tensor& t) {
  return static_cast<uint8_t*>(t.data_ptr());
}

GmBuffer gm(const at::Tensor& t, const char* name) {
  return GmBuffer{t.data_ptr(), static_cast<size_t>(t.numel()) * t.element_size(), name};
}

template <class Tiling>
at::Tensor tiling_tensor(const Tiling& t) {
  at::Tensor buf = at::empty({static_cast<int64_t>(sizeof(Tiling))}, at::TensorOptions().dtype(at::kByte));
  std::memcpy(buf.data_ptr(), &t, sizeof(Tiling));
  return buf;
}

uint32_t check_block_num(int64_t block_num, const char* op) {
  TORCH_CHECK(block_num >= 1 && block_num <= 65535, op, ": block_num must be in [1, 65535], got ", block_num);
  return static_cast<uint32_t>(block_num);
}

void check_cpu(const at::Tensor& t, const char* op, const char* arg) {
  TORCH_CHECK(t.device().is_cpu(), op, ": ", arg, " must be a CPU tensor (the emulator runs on CPU), got ", t.device());
}

// ---------------------------------------------------------------------------------------------
// masked_blend

struct BlendProblem {
  asc::MaskedBlendCanon canon;
  asc::ChorusDtype dtype;
  bool hard = false;               // bool/uint8 mask
  at::Tensor fresh, cached, mask;  // contiguous; mask in the kernel's dtype and layout
};

BlendProblem prepare_blend(const at::Tensor& fresh, const at::Tensor& cached, const at::Tensor& mask, const char* op) {
  check_cpu(fresh, op, "fresh");
  check_cpu(cached, op, "cached");
  check_cpu(mask, op, "mask");
  BlendProblem p;
  p.dtype = to_chorus_dtype(fresh, op, "fresh");
  TORCH_CHECK(cached.scalar_type() == fresh.scalar_type(), op, ": cached must have fresh's dtype ", fresh.scalar_type(),
              ", got ", cached.scalar_type());
  TORCH_CHECK(cached.sizes() == fresh.sizes(), op, ": cached must have fresh's shape ", fresh.sizes(), ", got ",
              cached.sizes());
  const auto mt = mask.scalar_type();
  p.hard = mt == at::kBool || mt == at::kByte;
  TORCH_CHECK(p.hard || at::isFloatingType(mt), op, ": mask must be bool, uint8 or floating, got ", mt);
  std::string reason;
  TORCH_CHECK(asc::canonicalize_masked_blend(fresh.sizes().vec(), mask.sizes().vec(), &p.canon, &reason), reason);
  p.fresh = fresh.contiguous();
  p.cached = cached.contiguous();
  at::Tensor m = p.canon.expand_mask ? mask.expand(fresh.sizes()) : mask;
  if (p.hard) {
    m = mt == at::kBool ? m.contiguous().view(at::kByte) : m.contiguous();
  } else {
    m = m.to(fresh.scalar_type()).contiguous();  // the fmask kernels take the data dtype
  }
  p.mask = m;
  return p;
}

asc::MaskedBlendTiling blend_tiling(const BlendProblem& p, bool backward, uint32_t blocks) {
  asc::MaskedBlendTiling t;
  std::string reason;
  TORCH_CHECK(asc::compute_masked_blend_tiling(p.canon.outer, p.canon.mid, p.canon.inner, p.dtype,
                                               p.hard ? asc::kBlendMaskU8 : asc::kBlendMaskFloat, backward, blocks,
                                               asc::kChorusUbBytes, &t, &reason),
              reason);
  return t;
}

KernelFwdBlend blend_fwd_kernel(asc::ChorusDtype d, bool hard) {
  switch (d) {
    case asc::kChorusFloat32: return hard ? npu_ops_masked_blend_fwd_fp32_u8mask : npu_ops_masked_blend_fwd_fp32_fmask;
    case asc::kChorusFloat16: return hard ? npu_ops_masked_blend_fwd_fp16_u8mask : npu_ops_masked_blend_fwd_fp16_fmask;
    case asc::kChorusBFloat16: return hard ? npu_ops_masked_blend_fwd_bf16_u8mask : npu_ops_masked_blend_fwd_bf16_fmask;
  }
  return nullptr;
}

KernelBwdBlend blend_bwd_kernel(asc::ChorusDtype d, bool hard) {
  switch (d) {
    case asc::kChorusFloat32: return hard ? npu_ops_masked_blend_bwd_fp32_u8mask : npu_ops_masked_blend_bwd_fp32_fmask;
    case asc::kChorusFloat16: return hard ? npu_ops_masked_blend_bwd_fp16_u8mask : npu_ops_masked_blend_bwd_fp16_fmask;
    case asc::kChorusBFloat16: return hard ? npu_ops_masked_blend_bwd_bf16_u8mask : npu_ops_masked_blend_bwd_bf16_fmask;
  }
  return nullptr;
}

at::Tensor masked_blend_sim(const at::Tensor& fresh, const at::Tensor& cached, const at::Tensor& mask,
                            int64_t block_num, int64_t seed) {
  const char* op = "npu_ops_sim::masked_blend";
  const uint32_t blocks = check_block_num(block_num, op);
  BlendProblem p = prepare_blend(fresh, cached, mask, op);
  at::Tensor out = at::empty_like(p.fresh);
  if (out.numel() == 0) return out;
  const asc::MaskedBlendTiling t = blend_tiling(p, false, blocks);
  at::Tensor tiling = tiling_tensor(t);
  npu_ops_emu::Run(
      "npu_ops_masked_blend_fwd", t.blockNum, static_cast<uint64_t>(seed),
      {gm(p.fresh, "fresh"), gm(p.cached, "cached"), gm(p.mask, "mask"), gm(out, "out"), gm(tiling, "tiling")},
      blend_fwd_kernel(p.dtype, p.hard), ptr(p.fresh), ptr(p.cached), ptr(p.mask), ptr(out), ptr(tiling));
  return out;
}

// Returns (grad_fresh, grad_cached, grad_mask); grad_mask is an empty tensor for bool/uint8
// masks and has the mask's shape and dtype otherwise.
std::tuple<at::Tensor, at::Tensor, at::Tensor> masked_blend_backward_sim(const at::Tensor& grad,
                                                                         const at::Tensor& fresh,
                                                                         const at::Tensor& cached,
                                                                         const at::Tensor& mask, int64_t block_num,
                                                                         int64_t seed) {
  const char* op = "npu_ops_sim::masked_blend_backward";
  const uint32_t blocks = check_block_num(block_num, op);
  BlendProblem p = prepare_blend(fresh, cached, mask, op);
  check_cpu(grad, op, "grad");
  TORCH_CHECK(grad.scalar_type() == fresh.scalar_type() && grad.sizes() == fresh.sizes(), op,
              ": grad must have fresh's dtype and shape");
  at::Tensor g = grad.contiguous();
  at::Tensor grad_fresh = at::empty_like(p.fresh);
  at::Tensor grad_cached = at::empty_like(p.fresh);
  // Accumulated with atomic adds by the kernel: zero-filled. A 1-element dummy for hard masks.
  at::Tensor grad_mask32 = at::zeros({p.hard ? int64_t{1} : p.mask.numel()}, p.fresh.options().dtype(at::kFloat));
  if (grad_fresh.numel() > 0) {
    const asc::MaskedBlendTiling t = blend_tiling(p, true, blocks);
    at::Tensor tiling = tiling_tensor(t);
    npu_ops_emu::Run(
        "npu_ops_masked_blend_bwd", t.blockNum, static_cast<uint64_t>(seed),
        {gm(g, "grad"), gm(p.fresh, "fresh"), gm(p.cached, "cached"), gm(p.mask, "mask"), gm(grad_fresh, "grad_fresh"),
         gm(grad_cached, "grad_cached"), gm(grad_mask32, "grad_mask"), gm(tiling, "tiling")},
        blend_bwd_kernel(p.dtype, p.hard), ptr(g), ptr(p.fresh), ptr(p.cached), ptr(p.mask), ptr(grad_fresh),
        ptr(grad_cached), ptr(grad_mask32), ptr(tiling));
  }
  at::Tensor grad_mask;
  if (p.hard) {
    grad_mask = at::empty({0}, p.fresh.options());
  } else {
    at::Tensor full = grad_mask32.view(p.canon.expand_mask ? fresh.sizes() : mask.sizes());
    if (p.canon.expand_mask) full = at::sum_to(full, mask.sizes());
    grad_mask = full.to(mask.scalar_type());
  }
  return {grad_fresh, grad_cached, grad_mask};
}

// ---------------------------------------------------------------------------------------------
// amplified_softmax

struct SoftmaxProblem {
  asc::AmplifiedSoftmaxCanon canon;
  asc::ChorusDtype dtype;
  at::Tensor scores, alpha;  // [rows, cols] contiguous; alpha fp32 [groups, cols]
};

SoftmaxProblem prepare_softmax(const at::Tensor& scores, const at::Tensor& alpha, const char* op) {
  check_cpu(scores, op, "scores");
  check_cpu(alpha, op, "alpha");
  SoftmaxProblem p;
  p.dtype = to_chorus_dtype(scores, op, "scores");
  TORCH_CHECK(at::isFloatingType(alpha.scalar_type()), op, ": alpha must be floating, got ", alpha.scalar_type());
  std::string reason;
  TORCH_CHECK(asc::canonicalize_amplified_softmax(scores.sizes().vec(), alpha.sizes().vec(), &p.canon, &reason),
              reason);
  at::Tensor a32 = alpha.to(at::kFloat);
  TORCH_CHECK(at::isfinite(a32).all().item<bool>() && (a32 >= 0).all().item<bool>(), op,
              ": alpha must be finite and >= 0");
  p.alpha = a32.expand(p.canon.alpha_expand_shape)
                .contiguous()
                .view({static_cast<int64_t>(p.canon.groups), static_cast<int64_t>(p.canon.cols)});
  p.scores = scores.contiguous().view({static_cast<int64_t>(p.canon.rows), static_cast<int64_t>(p.canon.cols)});
  return p;
}

asc::AmplifiedSoftmaxTiling softmax_tiling(const SoftmaxProblem& p, double scale, bool renormalize, bool backward,
                                           uint32_t blocks) {
  TORCH_CHECK(p.canon.cols <= UINT32_MAX, "amplified_softmax: too many keys");
  asc::AmplifiedSoftmaxTiling t;
  std::string reason;
  TORCH_CHECK(asc::compute_amplified_softmax_tiling(p.canon.rows, p.canon.groups, static_cast<uint32_t>(p.canon.cols),
                                                    static_cast<float>(scale), renormalize, p.dtype, backward, blocks,
                                                    asc::kChorusUbBytes, &t, &reason),
              reason);
  return t;
}

KernelFwdSoftmax softmax_fwd_kernel(asc::ChorusDtype d) {
  switch (d) {
    case asc::kChorusFloat32: return npu_ops_amplified_softmax_fwd_fp32;
    case asc::kChorusFloat16: return npu_ops_amplified_softmax_fwd_fp16;
    case asc::kChorusBFloat16: return npu_ops_amplified_softmax_fwd_bf16;
  }
  return nullptr;
}

KernelBwdSoftmax softmax_bwd_kernel(asc::ChorusDtype d) {
  switch (d) {
    case asc::kChorusFloat32: return npu_ops_amplified_softmax_bwd_fp32;
    case asc::kChorusFloat16: return npu_ops_amplified_softmax_bwd_fp16;
    case asc::kChorusBFloat16: return npu_ops_amplified_softmax_bwd_bf16;
  }
  return nullptr;
}

at::Tensor amplified_softmax_sim(const at::Tensor& scores, const at::Tensor& alpha, double scale, bool renormalize,
                                 int64_t block_num, int64_t seed) {
  const char* op = "npu_ops_sim::amplified_softmax";
  const uint32_t blocks = check_block_num(block_num, op);
  SoftmaxProblem p = prepare_softmax(scores, alpha, op);
  at::Tensor out = at::empty_like(p.scores);
  if (out.numel() > 0) {
    const asc::AmplifiedSoftmaxTiling t = softmax_tiling(p, scale, renormalize, false, blocks);
    at::Tensor tiling = tiling_tensor(t);
    npu_ops_emu::Run("npu_ops_amplified_softmax_fwd", t.blockNum, static_cast<uint64_t>(seed),
                     {gm(p.scores, "scores"), gm(p.alpha, "alpha"), gm(out, "out"), gm(tiling, "tiling")},
                     softmax_fwd_kernel(p.dtype), ptr(p.scores), ptr(p.alpha), ptr(out), ptr(tiling));
  }
  return out.view(scores.sizes());
}

std::tuple<at::Tensor, at::Tensor> amplified_softmax_backward_sim(const at::Tensor& grad, const at::Tensor& scores,
                                                                  const at::Tensor& alpha, double scale,
                                                                  bool renormalize, int64_t block_num, int64_t seed) {
  const char* op = "npu_ops_sim::amplified_softmax_backward";
  const uint32_t blocks = check_block_num(block_num, op);
  SoftmaxProblem p = prepare_softmax(scores, alpha, op);
  check_cpu(grad, op, "grad");
  TORCH_CHECK(grad.scalar_type() == scores.scalar_type() && grad.sizes() == scores.sizes(), op,
              ": grad must have the dtype and shape of scores");
  at::Tensor g = grad.contiguous().view(p.scores.sizes());
  at::Tensor grad_scores = at::empty_like(p.scores);
  at::Tensor grad_alpha = at::zeros_like(p.alpha);  // accumulated with atomic adds by the kernel
  if (grad_scores.numel() > 0) {
    const asc::AmplifiedSoftmaxTiling t = softmax_tiling(p, scale, renormalize, true, blocks);
    at::Tensor tiling = tiling_tensor(t);
    npu_ops_emu::Run("npu_ops_amplified_softmax_bwd", t.blockNum, static_cast<uint64_t>(seed),
                     {gm(g, "grad"), gm(p.scores, "scores"), gm(p.alpha, "alpha"), gm(grad_scores, "grad_scores"),
                      gm(grad_alpha, "grad_alpha"), gm(tiling, "tiling")},
                     softmax_bwd_kernel(p.dtype), ptr(g), ptr(p.scores), ptr(p.alpha), ptr(grad_scores),
                     ptr(grad_alpha), ptr(tiling));
  }
  at::Tensor ga = grad_alpha.view(p.canon.alpha_expand_shape);
  if (p.canon.expand_alpha) ga = at::sum_to(ga, alpha.sizes());
  return {grad_scores.view(scores.sizes()), ga.view(alpha.sizes()).to(alpha.scalar_type())};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(npu_ops_sim, m) {
  m.def("masked_blend(Tensor fresh, Tensor cached, Tensor mask, int block_num, int seed) -> Tensor");
  m.def(
      "masked_blend_backward(Tensor grad, Tensor fresh, Tensor cached, Tensor mask, int block_num, int seed) -> "
      "(Tensor, Tensor, Tensor)");
  m.def(
      "amplified_softmax(Tensor scores, Tensor alpha, float scale, bool renormalize, int block_num, int seed) -> "
      "Tensor");
  m.def(
      "amplified_softmax_backward(Tensor grad, Tensor scores, Tensor alpha, float scale, bool renormalize, "
      "int block_num, int seed) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(npu_ops_sim, CPU, m) {
  m.impl("masked_blend", &masked_blend_sim);
  m.impl("masked_blend_backward", &masked_blend_backward_sim);
  m.impl("amplified_softmax", &amplified_softmax_sim);
  m.impl("amplified_softmax_backward", &amplified_softmax_backward_sim);
}
