// CPU backend of npu_ops::msda and npu_ops::_msda_backward.
//
// Forward: threads own (batch, query) rows, so every output row is written
// once. Backward: a task owns the queries of one (batch, head) slice (or a
// fixed chunk of them) and so a slice of grad_value; when there are fewer
// slices than threads, extra chunks accumulate into private buffers that are
// added in chunk order afterwards. No atomics anywhere: results are
// bit-identical from run to run.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "common/msda_checks.h"
#include "cpu_ref/cpu_capability.h"

namespace npu_ops {
namespace {

using cpu::MsdaDtype;

MsdaDtype kernel_dtype(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return MsdaDtype::kFloat;
    case at::kDouble: return MsdaDtype::kDouble;
    case at::kHalf: return MsdaDtype::kHalf;
    case at::kBFloat16: return MsdaDtype::kBFloat16;
    default: TORCH_CHECK(false, "npu_ops.msda: unsupported dtype ", t);
  }
}

at::ScalarType acc_type(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

struct Prepared {
  MsdaProblem p;
  std::vector<cpu::MsdaLevelDesc> levels;
  cpu::MsdaDims dims;
};

Prepared prepare(const at::Tensor& value, const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
                 const at::Tensor& sampling_locations, const at::Tensor& attention_weights) {
  Prepared r;
  r.p = msda_check_shapes(value, spatial_shapes, level_start_index, sampling_locations, attention_weights);
  msda_check_levels(r.p, spatial_shapes, level_start_index);
  for (const auto& l : r.p.levels) r.levels.push_back({l.height, l.width, l.start});
  r.dims = {r.p.batch, r.p.num_keys, r.p.num_heads, r.p.channels, r.p.num_queries, r.p.num_levels, r.p.num_points};
  return r;
}

// value with its element strides; the kernels only need contiguous channels.
struct ValueView {
  at::Tensor tensor;
  cpu::MsdaValueStrides strides;
};

ValueView channels_contiguous(const at::Tensor& value) {
  ValueView v{value.stride(3) == 1 ? value : value.contiguous(), {}};
  v.strides = {v.tensor.stride(0), v.tensor.stride(1), v.tensor.stride(2)};
  return v;
}

at::Tensor msda_forward_cpu(const at::Tensor& value, const at::Tensor& spatial_shapes,
                            const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                            const at::Tensor& attention_weights) {
  const Prepared r = prepare(value, spatial_shapes, level_start_index, sampling_locations, attention_weights);
  const auto& p = r.p;
  const ValueView v = channels_contiguous(value);
  const at::Tensor loc = sampling_locations.contiguous(), attn = attention_weights.contiguous();
  const auto acc = acc_type(value.scalar_type());
  at::Tensor out = at::empty({p.batch, p.num_queries, p.num_heads * p.channels}, value.options().dtype(acc));
  const int64_t items = p.batch * p.num_queries;
  if (items > 0 && p.num_heads * p.channels > 0) {
    const cpu::MsdaForwardArgs args{r.dims,
                                    r.levels.data(),
                                    kernel_dtype(value.scalar_type()),
                                    v.tensor.data_ptr(),
                                    v.strides,
                                    loc.data_ptr(),
                                    attn.data_ptr(),
                                    out.data_ptr()};
    const auto& kernels = cpu::msda_kernels();
    // Roughly 4k corner rows per task keeps scheduling overhead negligible.
    const int64_t per_item = std::max<int64_t>(1, p.num_heads * p.num_levels * p.num_points);
    const int64_t grain = std::max<int64_t>(1, 4096 / per_item);
    at::parallel_for(0, items, grain, [&](int64_t begin, int64_t end) { kernels.forward(args, begin, end); });
  }
  return acc == value.scalar_type() ? out : out.to(value.scalar_type());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> msda_backward_cpu(const at::Tensor& grad_output, const at::Tensor& value,
                                                                 const at::Tensor& spatial_shapes,
                                                                 const at::Tensor& level_start_index,
                                                                 const at::Tensor& sampling_locations,
                                                                 const at::Tensor& attention_weights) {
  const Prepared r = prepare(value, spatial_shapes, level_start_index, sampling_locations, attention_weights);
  const auto& p = r.p;
  msda_check_grad_output(p, grad_output, value);
  const ValueView v = channels_contiguous(value);
  const at::Tensor loc = sampling_locations.contiguous(), attn = attention_weights.contiguous(),
                   go = grad_output.contiguous();
  const auto dtype = value.scalar_type();
  const auto acc = acc_type(dtype);
  const auto acc_opts = value.options().dtype(acc);
  at::Tensor grad_value = at::zeros(value.sizes(), acc_opts);
  // Every (query, head, level, point) entry is written by the kernel.
  at::Tensor grad_loc = at::empty(sampling_locations.sizes(), acc_opts);
  at::Tensor grad_attn = at::empty(attention_weights.sizes(), acc_opts);

  const int64_t slices = p.batch * p.num_heads;
  if (slices > 0 && p.num_queries > 0) {
    // Split each slice's queries into `chunks` (>= 64 queries each) when there
    // are fewer slices than threads. Chunk 0 accumulates straight into
    // grad_value; the others into private buffers added in chunk order.
    const int64_t threads = at::get_num_threads();
    const int64_t max_chunks = std::max<int64_t>(1, p.num_queries / 64);
    const int64_t chunks = std::min(max_chunks, std::max<int64_t>(1, (threads + slices - 1) / slices));
    const int64_t slice_elems = p.num_keys * p.channels;
    at::Tensor extra;  // [slices, chunks - 1, num_keys, C]
    if (chunks > 1) extra = at::zeros({slices, chunks - 1, p.num_keys, p.channels}, acc_opts);

    const cpu::MsdaBackwardArgs args{
        r.dims,    r.levels.data(), kernel_dtype(dtype), go.data_ptr(),       v.tensor.data_ptr(),
        v.strides, loc.data_ptr(),  attn.data_ptr(),     grad_loc.data_ptr(), grad_attn.data_ptr()};
    const auto& kernels = cpu::msda_kernels();
    const size_t elt = acc == at::kDouble ? sizeof(double) : sizeof(float);
    auto* gv_base = static_cast<char*>(grad_value.data_ptr());
    auto* extra_base = chunks > 1 ? static_cast<char*>(extra.data_ptr()) : nullptr;
    const int64_t q_per_chunk = (p.num_queries + chunks - 1) / chunks;

    at::parallel_for(0, slices * chunks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; ++task) {
        const int64_t slice = task / chunks, chunk = task % chunks;
        const int64_t b = slice / p.num_heads, h = slice % p.num_heads;
        const int64_t q0 = chunk * q_per_chunk, q1 = std::min(p.num_queries, q0 + q_per_chunk);
        if (q0 >= q1) continue;
        if (chunk == 0) {
          void* gv = gv_base + elt * static_cast<size_t>((b * p.num_keys * p.num_heads + h) * p.channels);
          kernels.backward(args, b, h, q0, q1, gv, p.num_heads * p.channels);
        } else {
          void* buf = extra_base + elt * static_cast<size_t>((slice * (chunks - 1) + chunk - 1) * slice_elems);
          kernels.backward(args, b, h, q0, q1, buf, p.channels);
        }
      }
    });
    if (chunks > 1) {
      // grad_value[b, :, h, :] += private chunk buffers, in chunk order.
      at::Tensor by_slice = grad_value.permute({0, 2, 1, 3});  // [bs, heads, num_keys, C] view
      for (int64_t k = 0; k < chunks - 1; ++k) {
        by_slice.add_(extra.select(1, k).view({p.batch, p.num_heads, p.num_keys, p.channels}));
      }
    }
  }
  if (acc != dtype) {
    return {grad_value.to(dtype), grad_loc.to(dtype), grad_attn.to(dtype)};
  }
  return {grad_value, grad_loc, grad_attn};
}

}  // namespace
}  // namespace npu_ops

TORCH_LIBRARY_IMPL(npu_ops, CPU, m) {
  m.impl("msda", &npu_ops::msda_forward_cpu);
  m.impl("_msda_backward", &npu_ops::msda_backward_cpu);
}
