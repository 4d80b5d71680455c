// Launch helpers shared by the NPU launchers (csrc/ascend/host/*.cpp).
//
// How a kernel is launched, whichever CANN built it
// --------------------------------------------------
// The host code is plain C++ compiled by the host compiler with torch's flags; it never
// sees the AscendC kernels. It calls aclrtlaunch_<entry>(numBlocks, stream, void*..., tiling),
// declared for every entry of csrc/ascend/kernels/*.cpp in the generated header
// npu_ops_aclrtlaunch.h (csrc/ascend/host/gen_launch_decls.py --header):
//   * CANN < 9 (ascendc.cmake, ascendc_library): CANN generates and defines exactly these
//     functions (aclrtlaunch_<entry>.h); our header repeats their prototypes.
//   * CANN >= 9 (find_package(ASC)): CANN generates no such functions, so the build compiles
//     one generated Ascend C shim per kernel file (gen_launch_decls.py --asc-shim) that
//     includes the kernel and defines aclrtlaunch_<entry> with entry<<<numBlocks, 0, stream>>>.
//   * CI without CANN (.ci/ascend_host_check.sh): the same header, nothing defines the
//     functions; the host library is compiled (and linked with them left undefined).
// One set of prototypes therefore serves both CMake flows and the compile check.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <type_traits>

#include "acl/acl_rt.h"
#include "npu_ops_aclrtlaunch.h"
#include "torch_npu/csrc/core/npu/NPUStream.h"
#include "torch_npu/csrc/framework/OpCommand.h"

namespace npu_ops {
namespace ascend {

// Vector (AIV) core count of an NPU, from the runtime (48 on Atlas A2 910B1/B2, 40 on
// 910B3/B4; never hard-coded). Cached per device. aclGetDeviceCapability rather than the newer
// aclrtGetDeviceInfo(ACL_DEV_ATTR_VECTOR_CORE_NUM): libtorch_npu.so links the former directly
// (the same query), so it exists wherever torch_npu loads; the latter is missing on older CANN.
inline uint32_t vector_core_count(c10::DeviceIndex device) {
  static std::mutex mu;
  static std::array<uint32_t, 64> cache{};
  TORCH_CHECK(device >= 0 && device < static_cast<c10::DeviceIndex>(cache.size()), "npu_ops: bad NPU device index ",
              static_cast<int>(device));
  std::lock_guard<std::mutex> lock(mu);
  uint32_t& n = cache[device];
  if (n == 0) {
    int64_t value = 0;
    const aclError err = aclGetDeviceCapability(static_cast<uint32_t>(device), ACL_DEVICE_INFO_VECTOR_CORE_NUM, &value);
    TORCH_CHECK(err == ACL_SUCCESS && value > 0, "npu_ops: aclGetDeviceCapability(ACL_DEVICE_INFO_VECTOR_CORE_NUM) ",
                "failed for npu:", static_cast<int>(device), " (error ", static_cast<int>(err), ", value ", value, ")");
    n = static_cast<uint32_t>(value);
  }
  return n;
}

// A POD tiling struct as a small uint8 tensor on `device`: staged in pinned host memory and
// copied asynchronously on the current stream, so it is ordered before the launch that
// reads it. The kernel gets it as its last GM_ADDR argument.
template <class Tiling>
at::Tensor tiling_to_device(const Tiling& tiling, const at::Device& device) {
  static_assert(std::is_trivially_copyable<Tiling>::value, "tiling structs must be POD");
  at::Tensor host =
      at::empty({static_cast<int64_t>(sizeof(Tiling))}, at::TensorOptions().dtype(at::kByte).pinned_memory(true));
  std::memcpy(host.data_ptr(), &tiling, sizeof(Tiling));
  return host.to(device, /*non_blocking=*/true);
}

// The GM address of a tensor's first element, as the launch functions take it.
inline void* gm(const at::Tensor& t) {
  return t.numel() == 0 ? nullptr : const_cast<void*>(t.const_data_ptr());
}

// Enqueues fn(numBlocks, stream, args...) on the current NPU stream through torch_npu's task
// queue (OpCommand::RunOpApi), so it is ordered with every other op on that stream. The lambda
// returns the launch status: torch_npu reports a non-zero value as the failure of `name`.
template <class LaunchFn, class... Args>
void launch(const char* name, LaunchFn fn, uint32_t num_blocks, Args... args) {
  static_assert(std::conjunction<std::is_trivially_copyable<Args>...>::value,
                "launch arguments are copied into the task queue: pass GM pointers and scalars only");
  TORCH_CHECK(num_blocks >= 1 && num_blocks <= 65535, "npu_ops: ", name, ": block count ", num_blocks,
              " outside [1, 65535]");
  aclrtStream stream = c10_npu::getCurrentNPUStream().stream(false);
  at_npu::native::OpCommand::RunOpApi(name, [=]() -> int { return static_cast<int>(fn(num_blocks, stream, args...)); });
}

}  // namespace ascend
}  // namespace npu_ops

// NPU_OPS_LAUNCH(entry, numBlocks, gm pointers..., tiling pointer): launches kernel entry
// `entry` (a name from csrc/ascend/kernels) through aclrtlaunch_<entry>.
#define NPU_OPS_LAUNCH(entry, num_blocks, ...) \
  ::npu_ops::ascend::launch(#entry, &aclrtlaunch_##entry, (num_blocks), __VA_ARGS__)
