// The element type a Chorus CPU kernel is instantiated for. Inputs were validated by
// common/chorus_checks before this is reached; the error is a guard, not a user-facing check.
#pragma once

#include <ATen/core/Tensor.h>

#include "cpu_ref/chorus_kernel.h"

namespace npu_ops {

// `allow_byte`: bool/uint8 (hard masks) are kernel types of masked_blend only.
inline cpu::ChorusDtype chorus_dtype(at::ScalarType t, const char* op, bool allow_byte) {
  switch (t) {
    case at::kFloat: return cpu::ChorusDtype::kFloat;
    case at::kDouble: return cpu::ChorusDtype::kDouble;
    case at::kHalf: return cpu::ChorusDtype::kHalf;
    case at::kBFloat16: return cpu::ChorusDtype::kBFloat16;
    case at::kBool:
    case at::kByte:
      if (allow_byte) return cpu::ChorusDtype::kByte;
      break;
    default: break;
  }
  TORCH_CHECK(false, "npu_ops.", op, ": unsupported dtype ", t);
}

}  // namespace npu_ops
