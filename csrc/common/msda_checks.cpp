#include "common/msda_checks.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <sstream>
#include <string>

namespace npu_ops {
namespace {

std::string shape_str(at::IntArrayRef s) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << "]";
  return os.str();
}

void check_ndim(const at::Tensor& t, const char* name, int64_t ndim, const char* layout) {
  TORCH_CHECK(t.dim() == ndim, "npu_ops.msda: ", name, " must be ", ndim, "-D ", layout, ", got ", t.dim(),
              "-D tensor of shape ", shape_str(t.sizes()));
}

void check_size(const at::Tensor& t, const char* name, int64_t dim, int64_t expected, const char* what,
                const char* layout) {
  TORCH_CHECK(t.size(dim) == expected, "npu_ops.msda: ", name, " ", layout, " has ", what, " = ", t.size(dim),
              " at dim ", dim, ", expected ", expected, " (shape ", shape_str(t.sizes()), ")");
}

void check_index_tensor(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.scalar_type() == at::kLong || t.scalar_type() == at::kInt, "npu_ops.msda: ", name,
              " must have dtype int32 or int64, got ", t.scalar_type());
}

constexpr const char* kValue = "[bs, num_keys, num_heads, channels]";
constexpr const char* kLoc = "[bs, num_queries, num_heads, num_levels, num_points, 2]";
constexpr const char* kAttn = "[bs, num_queries, num_heads, num_levels, num_points]";

}  // namespace

MsdaProblem msda_check_shapes(const at::Tensor& value, const at::Tensor& spatial_shapes,
                              const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                              const at::Tensor& attention_weights) {
  check_ndim(value, "value", 4, kValue);
  check_ndim(spatial_shapes, "spatial_shapes", 2, "[num_levels, 2]");
  check_ndim(level_start_index, "level_start_index", 1, "[num_levels]");
  check_ndim(sampling_locations, "sampling_locations", 6, kLoc);
  check_ndim(attention_weights, "attention_weights", 5, kAttn);

  const auto dt = value.scalar_type();
  TORCH_CHECK(dt == at::kFloat || dt == at::kDouble || dt == at::kHalf || dt == at::kBFloat16,
              "npu_ops.msda: value must have dtype float32, float64, float16 or bfloat16, got ", dt);
  TORCH_CHECK(sampling_locations.scalar_type() == dt, "npu_ops.msda: sampling_locations must have value's dtype ", dt,
              ", got ", sampling_locations.scalar_type(), " (npu_ops.msda() casts it for you)");
  TORCH_CHECK(attention_weights.scalar_type() == dt, "npu_ops.msda: attention_weights must have value's dtype ", dt,
              ", got ", attention_weights.scalar_type(), " (npu_ops.msda() casts it for you)");
  check_index_tensor(spatial_shapes, "spatial_shapes");
  check_index_tensor(level_start_index, "level_start_index");

  const auto dev = value.device();
  TORCH_CHECK(sampling_locations.device() == dev, "npu_ops.msda: sampling_locations is on ",
              sampling_locations.device(), " but value is on ", dev);
  TORCH_CHECK(attention_weights.device() == dev, "npu_ops.msda: attention_weights is on ", attention_weights.device(),
              " but value is on ", dev);
  TORCH_CHECK(spatial_shapes.device() == dev || spatial_shapes.is_cpu(), "npu_ops.msda: spatial_shapes is on ",
              spatial_shapes.device(), " but value is on ", dev, " (expected ", dev, " or cpu)");
  TORCH_CHECK(level_start_index.device() == dev || level_start_index.is_cpu(), "npu_ops.msda: level_start_index is on ",
              level_start_index.device(), " but value is on ", dev, " (expected ", dev, " or cpu)");

  MsdaProblem p{};
  p.batch = value.size(0);
  p.num_keys = value.size(1);
  p.num_heads = value.size(2);
  p.channels = value.size(3);
  p.num_levels = spatial_shapes.size(0);
  check_size(spatial_shapes, "spatial_shapes", 1, 2, "(height, width) pairs", "[num_levels, 2]");
  TORCH_CHECK(p.num_levels >= 1, "npu_ops.msda: spatial_shapes must describe at least one level, got shape ",
              shape_str(spatial_shapes.sizes()));
  check_size(level_start_index, "level_start_index", 0, p.num_levels, "num_levels (spatial_shapes.shape[0])",
             "[num_levels]");

  check_size(sampling_locations, "sampling_locations", 0, p.batch, "bs (value.shape[0])", kLoc);
  check_size(sampling_locations, "sampling_locations", 2, p.num_heads, "num_heads (value.shape[2])", kLoc);
  check_size(sampling_locations, "sampling_locations", 3, p.num_levels, "num_levels (spatial_shapes.shape[0])", kLoc);
  check_size(sampling_locations, "sampling_locations", 5, 2, "(x, y) coordinates", kLoc);
  p.num_queries = sampling_locations.size(1);
  p.num_points = sampling_locations.size(4);

  check_size(attention_weights, "attention_weights", 0, p.batch, "bs (value.shape[0])", kAttn);
  check_size(attention_weights, "attention_weights", 1, p.num_queries, "num_queries (sampling_locations.shape[1])",
             kAttn);
  check_size(attention_weights, "attention_weights", 2, p.num_heads, "num_heads (value.shape[2])", kAttn);
  check_size(attention_weights, "attention_weights", 3, p.num_levels, "num_levels (spatial_shapes.shape[0])", kAttn);
  check_size(attention_weights, "attention_weights", 4, p.num_points, "num_points (sampling_locations.shape[4])",
             kAttn);
  return p;
}

void msda_check_levels(MsdaProblem& p, const at::Tensor& spatial_shapes, const at::Tensor& level_start_index) {
  const at::Tensor shapes = spatial_shapes.to(at::kCPU, at::kLong).contiguous();
  const at::Tensor starts = level_start_index.to(at::kCPU, at::kLong).contiguous();
  const int64_t* s = shapes.data_ptr<int64_t>();
  const int64_t* st = starts.data_ptr<int64_t>();
  p.levels.resize(p.num_levels);
  int64_t total = 0;
  for (int64_t l = 0; l < p.num_levels; ++l) {
    const int64_t h = s[2 * l], w = s[2 * l + 1];
    TORCH_CHECK(h > 0 && w > 0, "npu_ops.msda: spatial_shapes[", l, "] must be positive (height, width), got (", h,
                ", ", w, ")");
    TORCH_CHECK(st[l] == total, "npu_ops.msda: level_start_index[", l, "] must be ", total,
                " (the sum of height*width of the levels before it), got ", st[l]);
    p.levels[l] = MsdaLevel{h, w, total};
    TORCH_CHECK(h <= (INT64_MAX - total) / w, "npu_ops.msda: spatial_shapes overflow int64 at level ", l);
    total += h * w;
  }
  TORCH_CHECK(total == p.num_keys, "npu_ops.msda: value.shape[1] (num_keys) must equal the sum of height*width over ",
              "spatial_shapes = ", total, ", got ", p.num_keys);
}

void msda_check_grad_output(const MsdaProblem& p, const at::Tensor& grad_output, const at::Tensor& value) {
  const int64_t expected[3] = {p.batch, p.num_queries, p.num_heads * p.channels};
  TORCH_CHECK(grad_output.dim() == 3 && grad_output.sizes().equals(expected), "npu_ops.msda backward: grad_output ",
              "must have shape [bs, num_queries, num_heads*channels] = ", shape_str(expected), ", got ",
              shape_str(grad_output.sizes()));
  TORCH_CHECK(grad_output.scalar_type() == value.scalar_type(), "npu_ops.msda backward: grad_output must have ",
              "value's dtype ", value.scalar_type(), ", got ", grad_output.scalar_type());
  TORCH_CHECK(grad_output.device() == value.device(), "npu_ops.msda backward: grad_output is on ", grad_output.device(),
              " but value is on ", value.device());
}

}  // namespace npu_ops
