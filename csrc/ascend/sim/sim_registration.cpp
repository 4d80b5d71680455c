// Schemas of the npu_ops_sim library: each AscendC kernel run on CPU tensors under the emulator
// (python/npu_ops/ascend_sim). Kernel ops are added with TORCH_LIBRARY_FRAGMENT in their own files.
#include <torch/library.h>

#include "emu_runtime.h"

namespace {

std::string LastStats() {
  return npu_ops_emu::LastStats().ToJson();
}

std::vector<int64_t> Limits() {
  return {npu_ops_emu::kUbUsableBytes, npu_ops_emu::kUbTotalBytes, npu_ops_emu::kDefaultBlockNum};
}

}  // namespace

TORCH_LIBRARY(npu_ops_sim, m) {
  // Counters of the last emulated launch, as a JSON object.
  m.def("last_stats() -> str");
  // (usable UB bytes, total UB bytes, default block count) of the emulated dav-2201 core.
  m.def("limits() -> int[]");
}

TORCH_LIBRARY_IMPL(npu_ops_sim, CompositeExplicitAutograd, m) {
  m.impl("last_stats", &LastStats);
  m.impl("limits", &Limits);
}
