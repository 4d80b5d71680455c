// CPU backend of npu_ops::masked_blend and npu_ops::_masked_blend_backward.
//
// Inputs are canonicalised (common/chorus_checks.h): data [outer, mid, inner],
// mask [outer, inner]. Forward and mask-free backward split the flattened
// data into ranges of whole 32k-element chunks; every element is read and
// written once. The backward with a mask gradient runs blocks
// (outer index, inner slice, mid chunk) that each write their own slice of
// grad_fresh / grad_cached and a partial mask gradient, in one pass over the
// inputs; partials of the same mask entries are added in chunk order. The
// blocking depends on the shape only, so results do not depend on the
// thread count.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <tuple>

#include "common/chorus_checks.h"
#include "cpu_ref/chorus_dtype.h"
#include "cpu_ref/chorus_kernel.h"

namespace npu_ops {
namespace {

using cpu::ChorusDtype;

constexpr int64_t kGrain = 32768;  // elements per task

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

at::Tensor masked_blend_cpu(const at::Tensor& fresh, const at::Tensor& cached, const at::Tensor& mask) {
  const BlendLayout l = masked_blend_check(fresh, cached, mask);
  at::Tensor out = at::empty(fresh.sizes(), fresh.options().memory_format(at::MemoryFormat::Contiguous));
  const int64_t total = out.numel();
  if (total == 0) return out;
  const at::Tensor f = fresh.contiguous(), c = cached.contiguous(), m = canonical_operand(mask, l.mask);
  const cpu::BlendArgs args{l.outer,
                            l.mid,
                            l.inner,
                            chorus_dtype(fresh.scalar_type(), "masked_blend", true),
                            chorus_dtype(mask.scalar_type(), "masked_blend", true),
                            f.data_ptr(),
                            c.data_ptr(),
                            m.data_ptr(),
                            out.data_ptr()};
  const auto& kernels = cpu::chorus_kernels();
  at::parallel_for(0, total, kGrain, [&](int64_t begin, int64_t end) { kernels.blend_forward(args, begin, end); });
  return out;
}

// Adds partials [chunks, n] in chunk order into out [n] (float or double).
template <typename acc_t>
void sum_partials(const at::Tensor& partials, at::Tensor& out) {
  const int64_t chunks = partials.size(0), n = partials.size(1);
  const acc_t* p = partials.const_data_ptr<acc_t>();
  acc_t* o = out.data_ptr<acc_t>();
  at::parallel_for(0, n, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t j = begin; j < end; ++j) {
      acc_t s = p[j];
      for (int64_t k = 1; k < chunks; ++k) s += p[k * n + j];
      o[j] = s;
    }
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> masked_blend_backward_cpu(const at::Tensor& grad_output,
                                                                         const at::Tensor& fresh,
                                                                         const at::Tensor& cached,
                                                                         const at::Tensor& mask,
                                                                         std::array<bool, 3> output_mask) {
  const BlendLayout l = masked_blend_check(fresh, cached, mask);
  masked_blend_check_grad(grad_output, fresh);
  TORCH_CHECK(!(output_mask[2] && l.hard), "npu_ops.masked_blend backward: a bool / uint8 mask has no gradient ",
              "(output_mask[2] must be false)");
  const auto opts = fresh.options().memory_format(at::MemoryFormat::Contiguous);
  at::Tensor grad_fresh = output_mask[0] ? at::empty(fresh.sizes(), opts) : at::empty({0}, fresh.options());
  at::Tensor grad_cached = output_mask[1] ? at::empty(fresh.sizes(), opts) : at::empty({0}, fresh.options());
  at::Tensor grad_mask = at::empty({0}, mask.options());
  const int64_t total = fresh.numel();
  const bool need_mask = output_mask[2];
  const auto acc = fresh.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  if (total == 0) {
    if (need_mask) grad_mask = at::zeros(mask.sizes(), mask.options());
    return {grad_fresh, grad_cached, grad_mask};
  }
  if (!output_mask[0] && !output_mask[1] && !need_mask) return {grad_fresh, grad_cached, grad_mask};

  const at::Tensor g = grad_output.contiguous(), m = canonical_operand(mask, l.mask);
  at::Tensor f, c;
  if (need_mask) {
    f = fresh.contiguous();
    c = cached.contiguous();
  }
  const cpu::BlendBackwardArgs args{l.outer,
                                    l.mid,
                                    l.inner,
                                    chorus_dtype(fresh.scalar_type(), "masked_blend", true),
                                    chorus_dtype(mask.scalar_type(), "masked_blend", true),
                                    g.data_ptr(),
                                    need_mask ? f.data_ptr() : nullptr,
                                    need_mask ? c.data_ptr() : nullptr,
                                    m.data_ptr(),
                                    output_mask[0] ? grad_fresh.data_ptr() : nullptr,
                                    output_mask[1] ? grad_cached.data_ptr() : nullptr};
  const auto& kernels = cpu::chorus_kernels();
  if (!need_mask) {
    at::parallel_for(0, total, kGrain, [&](int64_t begin, int64_t end) { kernels.blend_backward(args, begin, end); });
    return {grad_fresh, grad_cached, grad_mask};
  }

  // Blocks: inner slices of up to 1024 elements; mid split into chunks when there are few
  // (outer, slice) blocks, so that there are about 64 tasks of at least kGrain / 2 elements.
  const int64_t slice = l.inner == 1 ? 1 : std::min<int64_t>(l.inner, 1024);
  const int64_t slices = ceil_div(l.inner, slice);
  const int64_t blocks = l.outer * slices;
  const int64_t max_chunks = std::max<int64_t>(1, l.mid * slice / (kGrain / 2));
  int64_t chunks = std::min({ceil_div(64, blocks), max_chunks, l.mid});
  const int64_t chunk_len = ceil_div(l.mid, std::max<int64_t>(chunks, 1));
  chunks = ceil_div(l.mid, chunk_len);
  const int64_t entries = l.outer * l.inner;
  at::Tensor gm = at::empty({l.outer, l.inner}, mask.options().dtype(acc));
  at::Tensor partials = chunks > 1 ? at::empty({chunks, entries}, gm.options()) : gm.view({1, entries});
  char* part_base = static_cast<char*>(partials.data_ptr());
  const int64_t elt = static_cast<int64_t>(partials.element_size());
  const int64_t tasks = chunks * blocks;
  const int64_t task_grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(1, chunk_len * slice));
  at::parallel_for(0, tasks, task_grain, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t k = t / blocks, rem = t % blocks;
      const int64_t o = rem / slices, i0 = (rem % slices) * slice, i1 = std::min(l.inner, i0 + slice);
      const int64_t m0 = k * chunk_len, m1 = std::min(l.mid, m0 + chunk_len);
      kernels.blend_backward_reduce(args, o, m0, m1, i0, i1, part_base + elt * (k * entries + o * l.inner + i0));
    }
  });
  if (chunks > 1) {
    if (acc == at::kDouble) {
      sum_partials<double>(partials, gm);
    } else {
      sum_partials<float>(partials, gm);
    }
  }
  grad_mask = operand_grad(gm, l.mask, mask);
  return {grad_fresh, grad_cached, grad_mask};
}

}  // namespace
}  // namespace npu_ops

TORCH_LIBRARY_IMPL(npu_ops, CPU, m) {
  m.impl("masked_blend", &npu_ops::masked_blend_cpu);
  m.impl("_masked_blend_backward", &npu_ops::masked_blend_backward_cpu);
}
