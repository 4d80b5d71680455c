// Input validation for msda_v2 (RT-DETRv2 / D-FINE multi-scale deformable
// attention with per-level point counts), shared by every backend. Each failure
// raises a c10::Error (RuntimeError in Python) naming the argument, what was
// expected and what was given.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

namespace npu_ops {

enum class MsdaV2Method { kDefault, kDiscrete };

struct MsdaV2Level {
  int64_t height, width;
  int64_t start;        // first pixel of the level in value's key axis
  int64_t num_points;   // points sampled on this level
  int64_t point_start;  // first point of the level in the sum(num_points_list) axis
};

struct MsdaV2Problem {
  int64_t batch, num_keys, num_heads, channels, num_queries, num_levels, total_points;
  MsdaV2Method method;
  std::vector<MsdaV2Level> levels;
};

// Checks shapes, dtypes, devices, num_points_list and method, then reads
// spatial_shapes / level_start_index and checks them against value.
MsdaV2Problem msda_v2_check(const at::Tensor& value, const at::Tensor& spatial_shapes,
                            const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                            const at::Tensor& attention_weights, at::IntArrayRef num_points_list,
                            const std::string& method);

// Checks grad_output against the forward's output shape, dtype and device.
void msda_v2_check_grad_output(const MsdaV2Problem& problem, const at::Tensor& grad_output, const at::Tensor& value);

}  // namespace npu_ops
