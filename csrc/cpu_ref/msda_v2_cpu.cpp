// CPU kernels for npu_ops::msda_v2 (RT-DETRv2 / D-FINE / DEIM): per-level point
// counts and two sampling methods. "default" is bilinear with grid_sample's
// align_corners=False / zero-padding convention (pixel = loc * size - 0.5, a
// point outside (-1, size) is dropped, each corner bounds-checked); "discrete"
// reads the nearest pixel, index clamp(floor(loc * size + 0.5), 0, size - 1).
// Non-finite locations contribute nothing and get zero gradients.
//
// fp16/bf16 accumulate in fp32 (fp64 in fp64). The forward is parallel over
// (batch, query, head) rows; the backward over (batch, head) slices, each of
// which owns grad_value[b, :, h, :] and its queries' location/weight grads, so
// it needs no atomics and is bitwise deterministic for any thread count.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <c10/util/irange.h>
#include <torch/library.h>

#include <cmath>
#include <string>
#include <vector>

#include "common/msda_v2_checks.h"

namespace npu_ops {
namespace {

template <typename T>
using acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

// One sample point resolved to up to four (pixel offset, weight) corners; the
// pixel offset is relative to the level's first key (in value rows).
template <typename A>
struct Corners {
  int64_t pix[4];
  A w[4];
  bool ok[4];
  A lh, lw;  // fractional parts (bilinear only), for the location gradient
  bool any;
};

template <typename A>
Corners<A> resolve(A lx, A ly, const MsdaV2Level& lv, MsdaV2Method method) {
  Corners<A> c{};
  const A W = static_cast<A>(lv.width), H = static_cast<A>(lv.height);
  if (!std::isfinite(lx) || !std::isfinite(ly)) return c;
  if (method == MsdaV2Method::kDiscrete) {
    // Clamp in the float domain first so huge finite locations cannot overflow the cast.
    const A fx = std::min(std::max(std::floor(lx * W + A(0.5)), A(0)), W - 1);
    const A fy = std::min(std::max(std::floor(ly * H + A(0.5)), A(0)), H - 1);
    c.pix[0] = static_cast<int64_t>(fy) * lv.width + static_cast<int64_t>(fx);
    c.w[0] = A(1);
    c.ok[0] = true;
    c.any = true;
    return c;
  }
  const A x = lx * W - A(0.5), y = ly * H - A(0.5);
  if (!(x > A(-1) && y > A(-1) && x < W && y < H)) return c;
  const A x0f = std::floor(x), y0f = std::floor(y);
  const int64_t x0 = static_cast<int64_t>(x0f), y0 = static_cast<int64_t>(y0f);
  c.lw = x - x0f;
  c.lh = y - y0f;
  const A hw = A(1) - c.lw, hh = A(1) - c.lh;
  const int64_t xs[4] = {x0, x0 + 1, x0, x0 + 1}, ys[4] = {y0, y0, y0 + 1, y0 + 1};
  const A ws[4] = {hh * hw, hh * c.lw, c.lh * hw, c.lh * c.lw};
  for (int k = 0; k < 4; ++k) {
    c.ok[k] = xs[k] >= 0 && xs[k] < lv.width && ys[k] >= 0 && ys[k] < lv.height;
    c.pix[k] = c.ok[k] ? ys[k] * lv.width + xs[k] : 0;
    c.w[k] = ws[k];
  }
  c.any = true;
  return c;
}

struct Contig {
  at::Tensor value, loc, attn;
};

Contig contiguous(const at::Tensor& value, const at::Tensor& loc, const at::Tensor& attn) {
  return {value.contiguous(), loc.contiguous(), attn.contiguous()};
}

template <typename T>
void forward_kernel(const MsdaV2Problem& p, const T* value, const T* loc, const T* attn, T* out) {
  using A = acc_t<T>;
  const int64_t C = p.channels, Hd = p.num_heads, P = p.total_points;
  const int64_t rows = p.batch * p.num_queries * Hd;
  const int64_t work = std::max<int64_t>(1, P * C * 4);
  const int64_t grain = std::max<int64_t>(1, 32768 / work);
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    std::vector<A> acc(C);
    for (int64_t r = begin; r < end; ++r) {
      const int64_t h = r % Hd, b = r / (Hd * p.num_queries);
      std::fill(acc.begin(), acc.end(), A(0));
      const T* lr = loc + r * P * 2;
      const T* ar = attn + r * P;
      for (const auto& lv : p.levels) {
        const T* vbase = value + ((b * p.num_keys + lv.start) * Hd + h) * C;
        for (int64_t i = lv.point_start; i < lv.point_start + lv.num_points; ++i) {
          const auto c = resolve<A>(static_cast<A>(lr[2 * i]), static_cast<A>(lr[2 * i + 1]), lv, p.method);
          if (!c.any) continue;
          const A a = static_cast<A>(ar[i]);
          for (int k = 0; k < 4; ++k) {
            if (!c.ok[k]) continue;
            const A wk = a * c.w[k];
            const T* v = vbase + c.pix[k] * Hd * C;
            for (int64_t ch = 0; ch < C; ++ch) acc[ch] += wk * static_cast<A>(v[ch]);
          }
        }
      }
      T* o = out + r * C;
      for (int64_t ch = 0; ch < C; ++ch) o[ch] = static_cast<T>(acc[ch]);
    }
  });
}

template <typename T>
void backward_kernel(const MsdaV2Problem& p, const T* grad_out, const T* value, const T* loc, const T* attn,
                     acc_t<T>* grad_value, T* grad_loc, T* grad_attn) {
  using A = acc_t<T>;
  const int64_t C = p.channels, Hd = p.num_heads, P = p.total_points, Nq = p.num_queries;
  at::parallel_for(0, p.batch * Hd, 1, [&](int64_t begin, int64_t end) {
    std::vector<A> go(C);
    for (int64_t s = begin; s < end; ++s) {
      const int64_t b = s / Hd, h = s % Hd;
      for (int64_t q = 0; q < Nq; ++q) {
        const int64_t r = (b * Nq + q) * Hd + h;
        for (int64_t ch = 0; ch < C; ++ch) go[ch] = static_cast<A>(grad_out[r * C + ch]);
        const T* lr = loc + r * P * 2;
        const T* ar = attn + r * P;
        for (const auto& lv : p.levels) {
          const int64_t vrow0 = (b * p.num_keys + lv.start) * Hd + h;
          for (int64_t i = lv.point_start; i < lv.point_start + lv.num_points; ++i) {
            const auto c = resolve<A>(static_cast<A>(lr[2 * i]), static_cast<A>(lr[2 * i + 1]), lv, p.method);
            A d[4] = {0, 0, 0, 0};  // go . value at each corner
            if (c.any) {
              const A a = static_cast<A>(ar[i]);
              for (int k = 0; k < 4; ++k) {
                if (!c.ok[k]) continue;
                const int64_t off = (vrow0 + c.pix[k] * Hd) * C;
                const T* v = value + off;
                A* gv = grad_value + off;
                const A wk = a * c.w[k];
                A dk = 0;
                for (int64_t ch = 0; ch < C; ++ch) {
                  dk += go[ch] * static_cast<A>(v[ch]);
                  gv[ch] += wk * go[ch];
                }
                d[k] = dk;
              }
              A ga = 0;
              for (int k = 0; k < 4; ++k) ga += c.w[k] * d[k];
              grad_attn[r * P + i] = static_cast<T>(ga);
              if (p.method == MsdaV2Method::kDefault) {
                const A hw = A(1) - c.lw, hh = A(1) - c.lh;
                const A dx = hh * (d[1] - d[0]) + c.lh * (d[3] - d[2]);
                const A dy = hw * (d[2] - d[0]) + c.lw * (d[3] - d[1]);
                grad_loc[(r * P + i) * 2] = static_cast<T>(a * dx * static_cast<A>(lv.width));
                grad_loc[(r * P + i) * 2 + 1] = static_cast<T>(a * dy * static_cast<A>(lv.height));
              } else {
                grad_loc[(r * P + i) * 2] = T(0);
                grad_loc[(r * P + i) * 2 + 1] = T(0);
              }
            } else {
              grad_attn[r * P + i] = T(0);
              grad_loc[(r * P + i) * 2] = T(0);
              grad_loc[(r * P + i) * 2 + 1] = T(0);
            }
          }
        }
      }
    }
  });
}

at::Tensor msda_v2_forward_cpu(const at::Tensor& value, const at::Tensor& spatial_shapes,
                               const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                               const at::Tensor& attention_weights, at::IntArrayRef num_points_list,
                               c10::string_view method) {
  const auto p = msda_v2_check(value, spatial_shapes, level_start_index, sampling_locations, attention_weights,
                               num_points_list, std::string(method));
  const auto t = contiguous(value, sampling_locations, attention_weights);
  at::Tensor out = at::empty({p.batch, p.num_queries, p.num_heads * p.channels}, value.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(), "msda_v2_forward_cpu", [&] {
    forward_kernel<scalar_t>(p, t.value.const_data_ptr<scalar_t>(), t.loc.const_data_ptr<scalar_t>(),
                             t.attn.const_data_ptr<scalar_t>(), out.data_ptr<scalar_t>());
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> msda_v2_backward_cpu(
    const at::Tensor& grad_output, const at::Tensor& value, const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index, const at::Tensor& sampling_locations, const at::Tensor& attention_weights,
    at::IntArrayRef num_points_list, c10::string_view method) {
  const auto p = msda_v2_check(value, spatial_shapes, level_start_index, sampling_locations, attention_weights,
                               num_points_list, std::string(method));
  msda_v2_check_grad_output(p, grad_output, value);
  const auto t = contiguous(value, sampling_locations, attention_weights);
  const at::Tensor go = grad_output.contiguous();
  const auto acc = value.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor grad_value_acc = at::zeros(value.sizes(), value.options().dtype(acc));
  at::Tensor grad_loc = at::empty(sampling_locations.sizes(), value.options());
  at::Tensor grad_attn = at::empty(attention_weights.sizes(), value.options());
  if (grad_attn.numel() > 0 && p.channels > 0) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(), "msda_v2_backward_cpu", [&] {
      backward_kernel<scalar_t>(p, go.const_data_ptr<scalar_t>(), t.value.const_data_ptr<scalar_t>(),
                                t.loc.const_data_ptr<scalar_t>(), t.attn.const_data_ptr<scalar_t>(),
                                grad_value_acc.data_ptr<acc_t<scalar_t>>(), grad_loc.data_ptr<scalar_t>(),
                                grad_attn.data_ptr<scalar_t>());
    });
  } else {
    grad_loc.zero_();
    grad_attn.zero_();
  }
  at::Tensor grad_value =
      grad_value_acc.scalar_type() == value.scalar_type() ? grad_value_acc : grad_value_acc.to(value.scalar_type());
  return {grad_value, grad_loc, grad_attn};
}

}  // namespace
}  // namespace npu_ops

TORCH_LIBRARY_IMPL(npu_ops, CPU, m) {
  m.impl("msda_v2", &npu_ops::msda_v2_forward_cpu);
  m.impl("_msda_v2_backward", &npu_ops::msda_v2_backward_cpu);
}
