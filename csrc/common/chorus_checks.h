// Input validation and shape canonicalisation for the Chorus ops
// (masked_blend, amplified_softmax), shared by every backend. Each failure
// raises a c10::Error (RuntimeError in Python) naming the argument, what was
// expected and what was given. python/npu_ops/chorus/{masked_blend,
// amplified_softmax}.py mirror these checks in the fake kernels.
//
// Canonical forms (what a kernel sees):
//   masked_blend:      fresh / cached / out as [outer, mid, inner] (contiguous),
//                      mask as [outer, inner], repeated over mid.
//   amplified_softmax: scores / out as [rows, len] (contiguous), alpha as
//                      [groups, len]; row r uses alpha row r / (rows / groups).
// The broadcast dimension(s) of the operand that are not folded into mid
// (blend) or into the rows of a group (softmax) are expanded, i.e. the
// operand is materialised with them repeated; its gradient is then summed
// back over them. For the usual shapes ([B,1,T,H,W] and [B,N,1] masks,
// [B,1,1,L] and [B,H,1,L] alphas) nothing is expanded.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace npu_ops {

// How a broadcast operand (mask, alpha) is laid out against its data tensor.
struct BroadcastCanon {
  std::vector<int64_t> padded;     // the operand's shape with leading 1s up to the data's rank
  std::vector<int64_t> canonical;  // the shape it is expanded to before the kernel reads it
  std::vector<int64_t> expanded;   // dims where canonical > padded (values repeated, gradient summed)
};

struct BlendLayout {
  int64_t outer = 1, mid = 1, inner = 1;
  bool hard = false;  // bool / uint8 mask: exact selection, no mask gradient
  BroadcastCanon mask;
};

struct SoftmaxLayout {
  int64_t rows = 0, len = 0, groups = 1;
  BroadcastCanon alpha;
};

// masked_blend(fresh, cached, mask): dtypes, devices, shapes; the canonical form.
BlendLayout masked_blend_check(const at::Tensor& fresh, const at::Tensor& cached, const at::Tensor& mask);
// grad_output of masked_blend's backward against fresh.
void masked_blend_check_grad(const at::Tensor& grad_output, const at::Tensor& fresh);

// amplified_softmax(scores, alpha, scale): dtypes, devices, shapes, scale; the canonical form.
// `what` names the tensor standing for scores (the backward may only have the output).
SoftmaxLayout amplified_softmax_check(const at::Tensor& scores, const at::Tensor& alpha, double scale,
                                      const char* what = "scores");
void amplified_softmax_check_grad(const at::Tensor& grad_output, const at::Tensor& reference, const char* what);
// Raises the "alpha must be finite and >= 0" error naming the first offending element.
[[noreturn]] void amplified_softmax_report_bad_alpha(const at::Tensor& alpha);

// The operand materialised in its canonical shape, contiguous (no copy when it already is).
at::Tensor canonical_operand(const at::Tensor& operand, const BroadcastCanon& c);
// A gradient computed in the canonical shape, summed over the expanded dims and returned in the
// operand's shape and dtype.
at::Tensor operand_grad(const at::Tensor& grad_canonical, const BroadcastCanon& c, const at::Tensor& operand);

}  // namespace npu_ops
