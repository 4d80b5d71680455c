// CPU backend of npu_ops::amplified_softmax and npu_ops::_amplified_softmax_backward.
//
// scores are processed as [rows, len] and alpha as [groups, len] (see
// common/chorus_checks.h). A task owns whole rows: each row is read once from
// memory into a row buffer, reduced (max, sum of exp) and written once. The
// forward also validates alpha as it reads it (>= 0 and finite); the error
// names the first offending element. The backward with an alpha gradient runs
// tasks of consecutive rows inside one group; each writes a partial alpha
// gradient, and the partials of a group are added in task order. The split
// depends on the shape only, so results do not depend on the thread count.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <optional>
#include <tuple>

#include "common/chorus_checks.h"
#include "cpu_ref/chorus_dtype.h"
#include "cpu_ref/chorus_kernel.h"

namespace npu_ops {
namespace {

using cpu::ChorusDtype;

constexpr int64_t kGrain = 16384;  // elements per task

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

int64_t row_grain(int64_t len) {
  return std::max<int64_t>(1, kGrain / std::max<int64_t>(1, len));
}

at::Tensor amplified_softmax_cpu(const at::Tensor& scores, const at::Tensor& alpha, double scale, bool renormalize) {
  const SoftmaxLayout l = amplified_softmax_check(scores, alpha, scale);
  at::Tensor out = at::empty(scores.sizes(), scores.options().memory_format(at::MemoryFormat::Contiguous));
  if (out.numel() == 0) {  // no row reads alpha: check it here
    if (alpha.numel() > 0 && !(alpha >= 0).logical_and(alpha.isfinite()).all().item<bool>()) {
      amplified_softmax_report_bad_alpha(alpha);
    }
    return out;
  }
  const at::Tensor s = scores.contiguous(), a = canonical_operand(alpha, l.alpha);
  const cpu::SoftmaxArgs args{l.rows,
                              l.len,
                              l.groups,
                              chorus_dtype(scores.scalar_type(), "amplified_softmax", false),
                              chorus_dtype(alpha.scalar_type(), "amplified_softmax", false),
                              scale,
                              renormalize,
                              s.data_ptr(),
                              a.data_ptr(),
                              out.data_ptr()};
  const auto& kernels = cpu::chorus_kernels();
  std::atomic<bool> bad{false};
  at::parallel_for(0, l.rows, row_grain(l.len), [&](int64_t begin, int64_t end) {
    if (!kernels.softmax_forward(args, begin, end)) bad.store(true, std::memory_order_relaxed);
  });
  if (bad.load()) amplified_softmax_report_bad_alpha(alpha);
  return out;
}

template <typename acc_t>
void sum_chunks(const at::Tensor& partials, at::Tensor& out) {  // [groups, chunks, len] -> [groups, len]
  const int64_t groups = partials.size(0), chunks = partials.size(1), len = partials.size(2);
  const acc_t* p = partials.const_data_ptr<acc_t>();
  acc_t* o = out.data_ptr<acc_t>();
  at::parallel_for(0, groups * len, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t e = begin; e < end; ++e) {
      const int64_t g = e / len, j = e % len;
      const acc_t* pg = p + g * chunks * len + j;
      acc_t s = pg[0];
      for (int64_t k = 1; k < chunks; ++k) s += pg[k * len];
      o[e] = s;
    }
  });
}

std::tuple<at::Tensor, at::Tensor> amplified_softmax_backward_cpu(const at::Tensor& grad_output,
                                                                  const std::optional<at::Tensor>& output,
                                                                  const std::optional<at::Tensor>& scores,
                                                                  const at::Tensor& alpha, double scale,
                                                                  bool renormalize, std::array<bool, 2> output_mask) {
  const bool have_scores = scores.has_value() && scores->defined();
  const bool have_output = output.has_value() && output->defined();
  TORCH_CHECK(have_scores || have_output,
              "npu_ops.amplified_softmax backward: needs scores (or, with renormalize=True, the output)");
  TORCH_CHECK(have_scores || renormalize,
              "npu_ops.amplified_softmax backward: renormalize=False needs scores (the output does not determine "
              "the gradient where alpha = 0)");
  TORCH_CHECK(have_scores || !output_mask[1],
              "npu_ops.amplified_softmax backward: the alpha gradient needs scores (the output does not determine it "
              "where alpha = 0)");
  const at::Tensor& ref = have_scores ? *scores : *output;
  const char* ref_name = have_scores ? "scores" : "output";
  const SoftmaxLayout l = amplified_softmax_check(ref, alpha, scale, ref_name);
  amplified_softmax_check_grad(grad_output, ref, ref_name);
  if (have_scores && have_output) {
    TORCH_CHECK(output->sizes().equals(scores->sizes()) && output->scalar_type() == scores->scalar_type(),
                "npu_ops.amplified_softmax backward: output must have scores' shape and dtype");
  }
  const bool need_alpha = output_mask[1];
  at::Tensor grad_scores = output_mask[0]
                               ? at::empty(ref.sizes(), ref.options().memory_format(at::MemoryFormat::Contiguous))
                               : at::empty({0}, ref.options());
  at::Tensor grad_alpha = at::empty({0}, alpha.options());
  if (ref.numel() == 0) {
    if (need_alpha) grad_alpha = at::zeros(alpha.sizes(), alpha.options());
    return {grad_scores, grad_alpha};
  }
  if (!output_mask[0] && !need_alpha) return {grad_scores, grad_alpha};

  const at::Tensor g = grad_output.contiguous(), a = canonical_operand(alpha, l.alpha);
  at::Tensor s, o;
  if (have_scores) {
    s = scores->contiguous();
  } else {
    o = output->contiguous();
  }
  const cpu::SoftmaxBackwardArgs args{l.rows,
                                      l.len,
                                      l.groups,
                                      chorus_dtype(ref.scalar_type(), "amplified_softmax", false),
                                      chorus_dtype(alpha.scalar_type(), "amplified_softmax", false),
                                      scale,
                                      renormalize,
                                      g.data_ptr(),
                                      have_scores ? nullptr : o.data_ptr(),
                                      have_scores ? s.data_ptr() : nullptr,
                                      a.data_ptr(),
                                      output_mask[0] ? grad_scores.data_ptr() : nullptr};
  const auto& kernels = cpu::chorus_kernels();
  if (!need_alpha) {
    at::parallel_for(0, l.rows, row_grain(l.len),
                     [&](int64_t begin, int64_t end) { kernels.softmax_backward(args, begin, end, nullptr); });
    return {grad_scores, grad_alpha};
  }

  // Tasks: chunks of rows inside a group, about 64 tasks in all (fewer when a task would hold
  // less than kGrain elements).
  const auto acc = ref.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const int64_t per_group = l.rows / l.groups;
  const int64_t max_chunks = std::max<int64_t>(1, per_group / row_grain(l.len));
  const int64_t chunk_rows = ceil_div(per_group, std::min(ceil_div(64, l.groups), max_chunks));
  const int64_t chunks = ceil_div(per_group, chunk_rows);
  at::Tensor partials = at::empty({l.groups, chunks, l.len}, alpha.options().dtype(acc));
  char* part_base = static_cast<char*>(partials.data_ptr());
  const int64_t elt = static_cast<int64_t>(partials.element_size());
  at::parallel_for(0, l.groups * chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t grp = t / chunks, k = t % chunks;
      const int64_t r0 = grp * per_group + k * chunk_rows;
      const int64_t r1 = std::min(grp * per_group + per_group, r0 + chunk_rows);
      kernels.softmax_backward(args, r0, r1, part_base + elt * t * l.len);
    }
  });
  at::Tensor ga;
  if (chunks == 1) {
    ga = partials.view({l.groups, l.len});
  } else {
    ga = at::empty({l.groups, l.len}, partials.options());
    if (acc == at::kDouble) {
      sum_chunks<double>(partials, ga);
    } else {
      sum_chunks<float>(partials, ga);
    }
  }
  grad_alpha = operand_grad(ga, l.alpha, alpha);
  return {grad_scores, grad_alpha};
}

}  // namespace
}  // namespace npu_ops

TORCH_LIBRARY_IMPL(npu_ops, CPU, m) {
  m.impl("amplified_softmax", &npu_ops::amplified_softmax_cpu);
  m.impl("_amplified_softmax_backward", &npu_ops::amplified_softmax_backward_cpu);
}
