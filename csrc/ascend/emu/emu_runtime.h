// Runtime of the AscendC emulator: per-block state (UB arena, queues, pipe clocks, flags), GM
// buffers with multi-core access tracking, the block scheduler, rule errors and counters.
//
// Pipeline model: the MTE2 (GM->UB), V (vector), MTE3 (UB->GM) and S (scalar) pipes run
// asynchronously on hardware. Every operation gets a sequence number on its pipe; each pipe keeps a
// vector clock of how far it is ordered after the others. EnQue/DeQue, SetFlag/WaitFlag and
// PipeBarrier<PIPE_ALL> advance those clocks. A UB byte written on one pipe and read (or
// overwritten) on another without such an ordering is a hazard.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace npu_ops_emu {

// A broken hardware rule. Python sees it as npu_ops.ascend_sim.AscendRuleError.
class AscendRuleError : public std::runtime_error {
 public:
  explicit AscendRuleError(const std::string& msg) : std::runtime_error(msg) {}
};

// Usable UB on dav-2201: 192 KB minus the 256 B the toolchain keeps (ASC_UB_SIZE) minus the 8 KB
// it reserves by default (Select modes 1/2 and other APIs use it).
constexpr uint32_t kUbTotalBytes = 192 * 1024;
constexpr uint32_t kUbUsableBytes = kUbTotalBytes - 256 - 8 * 1024;  // 188160
constexpr uint32_t kDefaultBlockNum = 48;                            // vector cores of an Ascend910B1/B2 (dav-2201)
constexpr uint8_t kPoisonByte = 0xFF;                                // NaN in fp32/fp16/bf16

enum Pipe : int { kS = 0, kV = 1, kMte2 = 2, kMte3 = 3, kNumPipes = 4 };
const char* PipeName(int pipe);

struct Options {
  bool strict_copy_len = true;  // DataCopy lengths that are not 32 B multiples are errors
  uint32_t ub_bytes = kUbUsableBytes;
  uint32_t vector_cores = kDefaultBlockNum;  // SyncAll needs block_num <= this
};

// Event ids per HardEvent on dav-2201 (QUE_MAX_EVENT, asc-devkit impl/basic_api/kernel_macros.h).
constexpr int kEventIds = 8;

// Additive counters of one block (and, summed, of a launch). The cost model
// (python/npu_ops/bench/ascend_cost_model.py) turns them into an estimated time.
struct Counters {
  uint64_t gm_read_bytes = 0;
  uint64_t gm_write_bytes = 0;
  uint64_t atomic_bytes = 0;
  uint64_t dma_ops = 0;         // DataCopy/DataCopyPad instructions, every direction
  uint64_t dma_in_ops = 0;      // GM -> UB (MTE2)
  uint64_t dma_out_ops = 0;     // UB -> GM (MTE3), atomic ones included
  uint64_t atomic_dma_ops = 0;  // UB -> GM while SetAtomicAdd is on
  uint64_t dma_bursts = 0;      // contiguous GM segments moved (blockCount of a strided copy, else 1)
  uint64_t vector_ops = 0;
  uint64_t vector_repeats = 0;
  uint64_t gather_ops = 0;       // Gather instructions (also counted in vector_ops/vector_repeats)
  uint64_t gather_elements = 0;  // elements they read
  uint64_t gather_bytes = 0;     // bytes they read
  uint64_t scalar_ub_ops = 0;
  uint64_t sync_ops = 0;
  Counters& operator+=(const Counters& o);
};

struct Stats : Counters {
  uint64_t ub_peak_bytes = 0;
  uint64_t blocks = 0;
  uint64_t ub_capacity_bytes = kUbUsableBytes;
  std::vector<Counters> per_block;  // indexed by block; their sum is this launch's Counters
  std::string ToJson(bool with_blocks = true) const;
};

struct GmBuffer {
  void* ptr;
  size_t bytes;
  std::string name;
};

// GM bytes with who touched them since the last SyncAll, for the multi-core race check.
struct GmRegion {
  uint8_t* base = nullptr;
  size_t bytes = 0;
  std::string name;
  std::vector<int32_t> writer;         // -1: none; else the block that wrote it non-atomically
  std::vector<int32_t> atomic_writer;  // -1: none; -2: several blocks; else the one block
  std::vector<int32_t> reader;         // -1: none; -2: several blocks; else the one block
  std::vector<uint32_t> mte3_seq;      // the writer block's MTE3 op that wrote it (same-pipe overlap)
  void EnsureShadow();
};

struct QueueSlot {
  uint32_t offset = 0;
  int enq_id = -1;   // event id EnQue took (enQue event), released by DeQue
  int free_id = -1;  // event id FreeTensor took (freeBuf event), released by the next AllocTensor
  enum State { kFree, kAllocated, kEnqueued, kDequeued } state = kFree;
  std::array<uint32_t, kNumPipes> free_clock{};  // clock of the consumer pipe at FreeTensor
  bool freed_once = false;
};

struct QueueState {
  std::string name;  // "TQue<VECIN,1>#0"
  int position = 0;  // TPosition as int
  int depth = 1;
  uint32_t len = 0;
  int producer = kMte2, consumer = kV;
  int enq_event = -1, free_event = -1;  // HardEvent of EnQue/DeQue and FreeTensor/AllocTensor; -1: none
  std::vector<QueueSlot> slots;
  std::vector<int> fifo;  // enqueued slot ids
  std::vector<std::array<uint32_t, kNumPipes>> fifo_clock;
};

struct FlagState {
  bool set = false;
  std::array<uint32_t, kNumPipes> clock{};
};

// State of the block running on this thread.
class BlockCtx {
 public:
  BlockCtx(int idx, int num, const Options& opt, Counters* stats);
  int block_idx, block_num;
  Options opt;
  Counters* stats;  // this block's counters
  std::vector<uint8_t> ub;
  // Per UB byte: the op that last wrote it and, per pipe, the last op that read it.
  std::vector<uint32_t> w_seq;
  std::vector<int8_t> w_pipe;
  std::vector<std::array<uint32_t, kNumPipes>> r_seq;
  std::array<uint32_t, kNumPipes> seq{};
  std::array<std::array<uint32_t, kNumPipes>, kNumPipes> clock{};  // clock[p][q]
  std::array<std::vector<const char*>, kNumPipes> op_names;
  std::map<std::pair<int, int>, FlagState> flags;  // (HardEvent, id)
  // Event ids taken from the pipe's pool, (HardEvent, id) -> who holds it: a queue buffer
  // ("TQue<VECIN,1>#0 buffer 1 (FreeTensor ...)") or the kernel ("TPipe::AllocEventID").
  std::map<std::pair<int, int>, std::string> event_holder;
  std::array<uint32_t, kNumPipes> self_done{};  // per pipe: its own ops up to this seq are complete
  int kernel_type = -1;                         // KernelMetaType from KERNEL_TASK_TYPE_DEFAULT; -1: none
  std::vector<QueueState> queues;
  int pipes_alive = 0;
  uint32_t ub_used = 0;
  uint32_t buffers = 0;
  int atomic_type = -1;  // -1 none, else a TypeTag
  const char* atomic_api = nullptr;

  [[noreturn]] void Fail(const char* api, const std::string& msg) const;
  // Record one operation on `pipe` reading and writing UB byte ranges; checks hazards.
  uint32_t Issue(int pipe, const char* api);
  void Read(int pipe, uint32_t s, const char* api, uint32_t off, uint32_t len);
  void Write(int pipe, uint32_t s, const char* api, uint32_t off, uint32_t len);
  void Poison(uint32_t off, uint32_t len);
  void GrowShadow(uint32_t bytes);
  std::array<uint32_t, kNumPipes> Snapshot(int pipe) const;
  void Merge(int pipe, const std::array<uint32_t, kNumPipes>& c);
  void BarrierAll();
  void PipeDone(int pipe);  // PipeBarrier<pipe>: its earlier ops are complete
  void EndChecks();
  // The pipe's event id pool: lowest free id (AllocEventID), without taking it (FetchEventID).
  int AllocEvent(const char* api, int event, const std::string& holder);
  int FetchEvent(const char* api, int event);
  void ReleaseEvent(int event, int id);
  const std::string* Holder(int event, int id) const;
  // SetFlag / WaitFlag the queues issue themselves (ordering is kept by the queue clocks).
  void QueueSetFlag(const char* api, int event, int id, const std::string& who);
  void QueueWaitFlag(int event, int id);
};

BlockCtx& Ctx();  // the running block; fails when called outside a kernel launch

// GM access bookkeeping (bounds, races, counters).
GmRegion* FindRegion(const void* p, size_t bytes, const char* api);
void GmAccess(const char* api, const void* p, size_t bytes, bool write, bool atomic);

enum TypeTag : int { kF32 = 0, kF16, kBF16, kI32, kI16, kI8, kU8, kU16, kU32, kI64, kU64, kOther };
const char* TypeName(int tag);
const char* HardEventName(int event);  // "V_MTE2", in AscendC::HardEvent order

// Run `body(block_idx)` for `block_num` blocks in a seeded shuffled order, one at a time, on
// threads so that SyncAll can hand over to the next block. Throws AscendRuleError.
Stats Launch(const char* name, uint32_t block_num, uint64_t seed, const std::vector<GmBuffer>& gm,
             const std::function<void()>& body, const Options& opt = Options());
void SyncAllBlocks();  // the scheduler side of AscendC::SyncAll
const Stats& LastStats();

// Run `kernel(args...)` under the emulator. GM pointers the kernel touches must lie in `gm`.
template <class F, class... A>
Stats Run(const char* name, uint32_t block_num, uint64_t seed, const std::vector<GmBuffer>& gm, F kernel, A... args) {
  return Launch(name, block_num, seed, gm, [&]() { kernel(args...); });
}

// CANN CPU-debug driver support (tikicpulib.h): buffers from GmAlloc are GM for ICPU_RUN_KF.
void* GmAllocImpl(size_t bytes);
void GmFreeImpl(void* p);
std::vector<GmBuffer> DriverBuffers();
int DriverRun(const char* name, uint32_t block_num, const std::function<void()>& body);

}  // namespace npu_ops_emu
