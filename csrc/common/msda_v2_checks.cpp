#include "common/msda_v2_checks.h"

#include <c10/util/Exception.h>

#include <sstream>

namespace npu_ops {
namespace {

std::string shape_str(at::IntArrayRef s) {
  std::ostringstream o;
  o << "[";
  for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
  o << "]";
  return o.str();
}

bool is_float(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16;
}

bool is_index(at::ScalarType t) {
  return t == at::kInt || t == at::kLong;
}

void check_ndim(const at::Tensor& t, const char* name, int64_t ndim, const char* layout) {
  TORCH_CHECK(t.dim() == ndim, "npu_ops.msda_v2: ", name, " must be ", ndim, "-D ", layout, ", got ", t.dim(),
              "-D shape ", shape_str(t.sizes()));
}

}  // namespace

MsdaV2Problem msda_v2_check(const at::Tensor& value, const at::Tensor& spatial_shapes,
                            const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                            const at::Tensor& attention_weights, at::IntArrayRef num_points_list,
                            const std::string& method) {
  check_ndim(value, "value", 4, "[bs, num_keys, num_heads, channels]");
  check_ndim(spatial_shapes, "spatial_shapes", 2, "[num_levels, 2]");
  check_ndim(level_start_index, "level_start_index", 1, "[num_levels]");
  check_ndim(sampling_locations, "sampling_locations", 5, "[bs, num_queries, num_heads, sum(num_points_list), 2]");
  check_ndim(attention_weights, "attention_weights", 4, "[bs, num_queries, num_heads, sum(num_points_list)]");
  TORCH_CHECK(is_float(value.scalar_type()), "npu_ops.msda_v2: value must be float32, float64, float16 or bfloat16, ",
              "got ", value.scalar_type());
  const at::Tensor* floats[2] = {&sampling_locations, &attention_weights};
  const char* float_names[2] = {"sampling_locations", "attention_weights"};
  for (int i = 0; i < 2; ++i) {
    TORCH_CHECK(floats[i]->scalar_type() == value.scalar_type(), "npu_ops.msda_v2: ", float_names[i],
                " must have value's dtype ", value.scalar_type(), ", got ", floats[i]->scalar_type());
    TORCH_CHECK(floats[i]->device() == value.device(), "npu_ops.msda_v2: ", float_names[i], " is on ",
                floats[i]->device(), " but value is on ", value.device());
  }
  const at::Tensor* idx[2] = {&spatial_shapes, &level_start_index};
  const char* idx_names[2] = {"spatial_shapes", "level_start_index"};
  for (int i = 0; i < 2; ++i) {
    TORCH_CHECK(is_index(idx[i]->scalar_type()), "npu_ops.msda_v2: ", idx_names[i],
                " must have dtype int32 or int64, got ", idx[i]->scalar_type());
    TORCH_CHECK(idx[i]->device() == value.device() || idx[i]->device().is_cpu(), "npu_ops.msda_v2: ", idx_names[i],
                " is on ", idx[i]->device(), " but value is on ", value.device(), " (expected ", value.device(),
                " or cpu)");
  }
  TORCH_CHECK(method == "default" || method == "discrete",
              "npu_ops.msda_v2: method must be \"default\" or \"discrete\", got \"", method, "\"");

  MsdaV2Problem p;
  p.batch = value.size(0);
  p.num_keys = value.size(1);
  p.num_heads = value.size(2);
  p.channels = value.size(3);
  p.num_queries = sampling_locations.size(1);
  p.num_levels = spatial_shapes.size(0);
  p.method = method == "default" ? MsdaV2Method::kDefault : MsdaV2Method::kDiscrete;
  TORCH_CHECK(spatial_shapes.size(1) == 2, "npu_ops.msda_v2: spatial_shapes must have shape [num_levels, 2], got ",
              shape_str(spatial_shapes.sizes()));
  TORCH_CHECK(level_start_index.size(0) == p.num_levels, "npu_ops.msda_v2: level_start_index must have shape ",
              "[num_levels] = [", p.num_levels, "], got ", shape_str(level_start_index.sizes()));
  TORCH_CHECK(static_cast<int64_t>(num_points_list.size()) == p.num_levels,
              "npu_ops.msda_v2: num_points_list must have one entry per level (num_levels = ", p.num_levels, "), got ",
              num_points_list.size(), " entries ", shape_str(num_points_list));
  p.total_points = 0;
  for (size_t l = 0; l < num_points_list.size(); ++l) {
    TORCH_CHECK(num_points_list[l] >= 1, "npu_ops.msda_v2: num_points_list[", l, "] must be >= 1, got ",
                num_points_list[l], " (list ", shape_str(num_points_list), ")");
    p.total_points += num_points_list[l];
  }
  const int64_t loc_want[5] = {p.batch, p.num_queries, p.num_heads, p.total_points, 2};
  TORCH_CHECK(sampling_locations.sizes().equals(loc_want), "npu_ops.msda_v2: sampling_locations must have shape ",
              "[bs, num_queries, num_heads, sum(num_points_list), 2] = ", shape_str(loc_want), ", got ",
              shape_str(sampling_locations.sizes()));
  TORCH_CHECK(
      attention_weights.sizes().equals(at::IntArrayRef(loc_want, 4)),
      "npu_ops.msda_v2: attention_weights must have shape [bs, num_queries, num_heads, sum(num_points_list)] = ",
      shape_str(at::IntArrayRef(loc_want, 4)), ", got ", shape_str(attention_weights.sizes()));

  const at::Tensor shapes = spatial_shapes.to(at::kCPU, at::kLong).contiguous();
  const at::Tensor starts = level_start_index.to(at::kCPU, at::kLong).contiguous();
  const int64_t* s = shapes.data_ptr<int64_t>();
  const int64_t* st = starts.data_ptr<int64_t>();
  int64_t total = 0, point_start = 0;
  for (int64_t l = 0; l < p.num_levels; ++l) {
    const int64_t h = s[2 * l], w = s[2 * l + 1];
    TORCH_CHECK(h > 0 && w > 0, "npu_ops.msda_v2: spatial_shapes[", l, "] must be positive (height, width), got (", h,
                ", ", w, ")");
    TORCH_CHECK(st[l] == total, "npu_ops.msda_v2: level_start_index[", l, "] must be ", total,
                " (the sum of height*width of the levels before it), got ", st[l]);
    TORCH_CHECK(h <= (INT64_MAX - total) / w, "npu_ops.msda_v2: spatial_shapes overflow int64 at level ", l);
    p.levels.push_back(MsdaV2Level{h, w, total, num_points_list[l], point_start});
    total += h * w;
    point_start += num_points_list[l];
  }
  TORCH_CHECK(total == p.num_keys, "npu_ops.msda_v2: value.shape[1] (num_keys) must equal the sum of height*width ",
              "over spatial_shapes = ", total, ", got ", p.num_keys);
  return p;
}

void msda_v2_check_grad_output(const MsdaV2Problem& p, const at::Tensor& grad_output, const at::Tensor& value) {
  const int64_t expected[3] = {p.batch, p.num_queries, p.num_heads * p.channels};
  TORCH_CHECK(grad_output.dim() == 3 && grad_output.sizes().equals(expected), "npu_ops.msda_v2 backward: ",
              "grad_output must have shape [bs, num_queries, num_heads*channels] = ", shape_str(expected), ", got ",
              shape_str(grad_output.sizes()));
  TORCH_CHECK(grad_output.scalar_type() == value.scalar_type(), "npu_ops.msda_v2 backward: grad_output must have ",
              "value's dtype ", value.scalar_type(), ", got ", grad_output.scalar_type());
  TORCH_CHECK(grad_output.device() == value.device(), "npu_ops.msda_v2 backward: grad_output is on ",
              grad_output.device(), " but value is on ", value.device());
}

}  // namespace npu_ops
