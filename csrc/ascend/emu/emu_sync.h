// Intra-core synchronisation (SetFlag/WaitFlag, PipeBarrier) and SyncAll of the AscendC emulator.
#pragma once

#include "emu_tensor.h"

namespace npu_ops_emu {

// Producer and consumer pipe of a HardEvent; false for the cube/fixpipe events (not emulated).
inline bool EventPipes(AscendC::HardEvent e, int* src, int* dst) {
  using AscendC::HardEvent;
  switch (e) {
    case HardEvent::MTE2_V: *src = kMte2, *dst = kV; return true;
    case HardEvent::V_MTE2: *src = kV, *dst = kMte2; return true;
    case HardEvent::MTE3_V: *src = kMte3, *dst = kV; return true;
    case HardEvent::V_MTE3: *src = kV, *dst = kMte3; return true;
    case HardEvent::MTE3_MTE2: *src = kMte3, *dst = kMte2; return true;
    case HardEvent::MTE2_MTE3: *src = kMte2, *dst = kMte3; return true;
    case HardEvent::S_V: *src = kS, *dst = kV; return true;
    case HardEvent::V_S: *src = kV, *dst = kS; return true;
    case HardEvent::S_MTE2: *src = kS, *dst = kMte2; return true;
    case HardEvent::MTE2_S: *src = kMte2, *dst = kS; return true;
    case HardEvent::S_MTE3: *src = kS, *dst = kMte3; return true;
    case HardEvent::MTE3_S: *src = kMte3, *dst = kS; return true;
    case HardEvent::V_V: *src = kV, *dst = kV; return true;
    default: return false;
  }
}

inline std::string FlagName(const char* api, AscendC::HardEvent e, int32_t id) {
  int src, dst;
  std::string n = EventPipes(e, &src, &dst) ? std::string(PipeName(src)) + "_" + PipeName(dst)
                                            : "#" + std::to_string(static_cast<int>(e));
  return std::string(api) + "<HardEvent::" + n + ">(" + std::to_string(id) + ")";
}

inline FlagState& Flag(const char* api, AscendC::HardEvent e, int32_t id, int* src, int* dst) {
  auto& c = Ctx();
  if (!EventPipes(e, src, dst))
    c.Fail(api, "HardEvent " + std::to_string(static_cast<int>(e)) +
                    " involves the cube, MTE1 or fixpipe pipes, which are not emulated (vector kernels only)");
  if (id < 0 || id > 7) c.Fail(api, FlagName(api, e, id) + ": event id must be in [0, 7]");
  // An id a TQue buffer holds (EnQue until DeQue, FreeTensor until the buffer's next AllocTensor,
  // asc-devkit impl/basic_api/kernel_tquebind_impl.h) is the queue's flag: the kernel setting or
  // waiting on it breaks the queue's own SetFlag/WaitFlag pair (a second SetFlag on a set flag,
  // or a wait that consumes the queue's signal: a hang at the next AllocTensor/DeQue).
  if (const std::string* who = c.Holder(static_cast<int>(e), id); who && who->rfind("TQue", 0) == 0)
    c.Fail(api, FlagName(api, e, id) + ": HardEvent::" + HardEventName(static_cast<int>(e)) + " id " +
                    std::to_string(id) + " is held by " + *who +
                    "; a kernel inside the TPipe/TQue framework takes its ids from TPipe::FetchEventID or "
                    "AllocEventID/ReleaseEventID");
  return c.flags[{static_cast<int>(e), id}];
}

// KERNEL_TASK_TYPE_DEFAULT(type): the vector kernel types are emulated (AIV only, or mixed with
// no cube: the hardware SyncAll needs the mixed one, SyncAll.md / CrossCoreSetFlag(ISASI).md).
inline void DeclareKernelType(int type, const char* name) {
  auto& c = Ctx();
  if (type != KERNEL_TYPE_AIV_ONLY && type != KERNEL_TYPE_MIX_AIV_1_0)
    c.Fail("KERNEL_TASK_TYPE_DEFAULT", std::string(name) +
                                           ": only the vector kernel types KERNEL_TYPE_AIV_ONLY and "
                                           "KERNEL_TYPE_MIX_AIV_1_0 are emulated");
  if (c.kernel_type >= 0 && c.kernel_type != type)
    c.Fail("KERNEL_TASK_TYPE_DEFAULT", std::string(name) + " declared after a different kernel type");
  c.kernel_type = type;
}

}  // namespace npu_ops_emu

namespace AscendC {

// Orders everything issued so far on the event's source pipe before what its destination pipe
// issues after the matching WaitFlag.
template <HardEvent event>
void SetFlag(int32_t eventID) {
  int src, dst;
  auto& f = npu_ops_emu::Flag("SetFlag", event, eventID, &src, &dst);
  auto& c = npu_ops_emu::Ctx();
  if (f.set)
    c.Fail("SetFlag", npu_ops_emu::FlagName("SetFlag", event, eventID) + " set twice without a WaitFlag in between");
  f.set = true;
  f.clock = c.Snapshot(src);
  c.stats->sync_ops++;
}

template <HardEvent event>
void WaitFlag(int32_t eventID) {
  int src, dst;
  auto& f = npu_ops_emu::Flag("WaitFlag", event, eventID, &src, &dst);
  auto& c = npu_ops_emu::Ctx();
  if (!f.set)
    c.Fail("WaitFlag",
           npu_ops_emu::FlagName("WaitFlag", event, eventID) + " without a preceding SetFlag (hangs on hardware)");
  f.set = false;
  c.Merge(dst, f.clock);
  c.stats->sync_ops++;
}

// PIPE_ALL waits for every pipe; a single-pipe barrier orders that pipe with itself, which the
// emulator's in-order pipes already are.
template <pipe_t pipe>
void PipeBarrier() {
  static_assert(pipe != PIPE_S, "PipeBarrier<PIPE_S> does not exist; the scalar unit is in order");
  auto& c = npu_ops_emu::Ctx();
  if (pipe == PIPE_M || pipe == PIPE_MTE1 || pipe == PIPE_FIX)
    c.Fail("PipeBarrier", "cube, MTE1 and fixpipe pipes are not emulated (vector kernels only)");
  if (pipe == PIPE_ALL) c.BarrierAll();
  if (pipe == PIPE_MTE2) c.PipeDone(npu_ops_emu::kMte2);
  if (pipe == PIPE_MTE3) c.PipeDone(npu_ops_emu::kMte3);
  if (pipe == PIPE_V) c.PipeDone(npu_ops_emu::kV);
  c.stats->sync_ops++;
}

// Cross-core barrier: every block waits until all blocks of the launch reach it.
// Constraints (docs/zh/api/SIMD-API/基础API/同步控制/核间同步/SyncAll.md): a pure-vector kernel
// needs a mixed kernel type (__mix__(0, 1), KERNEL_TYPE_MIX_AIV_1_0: the AIV_ONLY type starts no
// cross-core scheduler, CrossCoreSetFlag(ISASI).md), and numBlocks must not exceed the cores that
// run the kernel (else the extra blocks run in a later round that the first one waits for).
template <bool isAIVOnly = true>
void SyncAll() {
  auto& c = npu_ops_emu::Ctx();
  if (c.kernel_type != KERNEL_TYPE_MIX_AIV_1_0)
    c.Fail("SyncAll", std::string("the kernel declares ") +
                          (c.kernel_type < 0 ? "no kernel type" : "KERNEL_TYPE_AIV_ONLY") +
                          "; the hardware SyncAll of a pure-vector kernel needs "
                          "KERNEL_TASK_TYPE_DEFAULT(KERNEL_TYPE_MIX_AIV_1_0) (__mix__(0, 1)) in the entry");
  if (static_cast<uint32_t>(c.block_num) > c.opt.vector_cores)
    c.Fail("SyncAll", "launched on " + std::to_string(c.block_num) + " blocks but the device has " +
                          std::to_string(c.opt.vector_cores) +
                          " vector cores: the blocks past them wait for a later round that never starts (deadlock)");
  c.BarrierAll();
  c.stats->sync_ops++;
  npu_ops_emu::SyncAllBlocks();
}

}  // namespace AscendC
