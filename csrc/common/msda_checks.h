// Input validation for msda, shared by every backend. Each failure raises a
// c10::Error (RuntimeError in Python) naming the argument, what was expected
// and what was given.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace npu_ops {

struct MsdaLevel {
  int64_t height;
  int64_t width;
  int64_t start;  // first pixel of the level in value's key axis
};

struct MsdaProblem {
  int64_t batch, num_keys, num_heads, channels, num_queries, num_levels, num_points;
  std::vector<MsdaLevel> levels;
};

// Checks shapes, dtypes and devices (no data reads).
MsdaProblem msda_check_shapes(const at::Tensor& value, const at::Tensor& spatial_shapes,
                              const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                              const at::Tensor& attention_weights);

// Reads spatial_shapes / level_start_index and checks them against value.
// Fills problem.levels.
void msda_check_levels(MsdaProblem& problem, const at::Tensor& spatial_shapes, const at::Tensor& level_start_index);

// Checks grad_output against the forward's output shape, dtype and device.
void msda_check_grad_output(const MsdaProblem& problem, const at::Tensor& grad_output, const at::Tensor& value);

}  // namespace npu_ops
