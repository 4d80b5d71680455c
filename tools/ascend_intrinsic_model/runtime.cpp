// The CPU-debug runtime pieces the driver and the API need (globals, GmAlloc, SetKernelMode),
// written for npu_ops; blocks run one after another in this process (see tikicpulib.h).
#include <cstdlib>

#include "tikicpulib.h"

int64_t block_idx = 0, block_num = 1, g_ubBase = 0;
uint64_t g_tilingKey = 0;
int32_t g_matmulCount = 0, g_coreType = 2, g_taskRation = 1, sub_block_idx = 0;
uint64_t* g_workspaceSharedPtr = nullptr;
uint64_t g_fullSizeOfWorkspace = 0, g_fixpipeNdNzParam = 0;
KernelMode g_kernelMode = KernelMode::AIV_MODE;
SocVersion g_socVersion = SocVersion::VER_220;
namespace AscendC {
bool g_isAtomic = false;
extern const int MIX_TYPE = 0, AIC_TYPE = 1, AIV_TYPE = 2;
void* GmAlloc(size_t size) {
  return std::aligned_alloc(64, (size + 63) / 64 * 64);
}
void GmFree(void* p) {
  std::free(p);
}
void SetKernelMode(KernelMode m) {
  g_kernelMode = m;
}
}  // namespace AscendC

// Huawei's CPU-debug API-check layer (asc-tools cpudebug/src/api_check) needs closed headers
// (dlog_pub.h); the model accepts every call here and checks at the intrinsic level instead.
namespace AscendC::check {
bool CheckFuncDataCopyImpl(DataCopyApiParams&, const char*) {
  return true;
}
}  // namespace AscendC::check
namespace AscendC::check {
bool CheckFuncVecBinaryImpl(VecBinaryApiParams&, const char*) {
  return true;
}
}  // namespace AscendC::check
// Blocks run in one process, one after another: the inter-process lock is a no-op.
namespace AscendC {
ProcessLock* ProcessLock::processLock = nullptr;
ProcessLock::ProcessLock() {}
ProcessLock::~ProcessLock() {}
ProcessLock* ProcessLock::CreateLock() {
  return new ProcessLock();
}
int ProcessLock::Read() {
  return 0;
}
int ProcessLock::Write() {
  return 0;
}
int ProcessLock::Unlock() {
  return 0;
}
void ProcessLock::UnInit() {}
void ProcessLock::FreeLock() {}
}  // namespace AscendC
