#include "emu_runtime.h"

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <numeric>
#include <random>
#include <sstream>
#include <thread>

namespace npu_ops_emu {

namespace {

struct AbortSignal {};  // unwinds blocks parked in SyncAll after another block failed

enum BlockState { kNotStarted, kRunnable, kWaiting, kDone };

struct Sched {
  std::string name;
  uint32_t block_num = 0;
  Options opt;
  Stats stats;
  std::vector<GmRegion> regions;
  std::mutex m;
  std::condition_variable cv;
  int current = -1;  // the block allowed to run; -1: the scheduler
  bool abort = false;
  std::vector<BlockState> state;
  std::exception_ptr error;
};

Sched* g_sched = nullptr;
std::mutex g_launch_mutex;
Stats g_last_stats;
thread_local BlockCtx* t_ctx = nullptr;
thread_local int t_block = -1;

std::string Hex(uint64_t v) {
  std::ostringstream s;
  s << "0x" << std::hex << v;
  return s.str();
}

const char* EventName(int producer, int consumer) {
  static const char* names[kNumPipes][kNumPipes] = {
      {"S_S", "S_V", "S_MTE2", "S_MTE3"},
      {"V_S", "V_V", "V_MTE2", "V_MTE3"},
      {"MTE2_S", "MTE2_V", "MTE2_MTE2", "MTE2_MTE3"},
      {"MTE3_S", "MTE3_V", "MTE3_MTE2", "MTE3_MTE3"},
  };
  return names[producer][consumer];
}

}  // namespace

const char* PipeName(int pipe) {
  static const char* names[] = {"S", "V", "MTE2", "MTE3"};
  return pipe >= 0 && pipe < kNumPipes ? names[pipe] : "?";
}

const char* TypeName(int tag) {
  static const char* names[] = {"float",   "half",     "bfloat16_t", "int32_t", "int16_t",  "int8_t",
                                "uint8_t", "uint16_t", "uint32_t",   "int64_t", "uint64_t", "other"};
  return tag >= 0 && tag <= kOther ? names[tag] : "?";
}

Counters& Counters::operator+=(const Counters& o) {
  gm_read_bytes += o.gm_read_bytes;
  gm_write_bytes += o.gm_write_bytes;
  atomic_bytes += o.atomic_bytes;
  dma_ops += o.dma_ops;
  dma_in_ops += o.dma_in_ops;
  dma_out_ops += o.dma_out_ops;
  atomic_dma_ops += o.atomic_dma_ops;
  dma_bursts += o.dma_bursts;
  vector_ops += o.vector_ops;
  vector_repeats += o.vector_repeats;
  gather_ops += o.gather_ops;
  gather_elements += o.gather_elements;
  gather_bytes += o.gather_bytes;
  scalar_ub_ops += o.scalar_ub_ops;
  sync_ops += o.sync_ops;
  return *this;
}

namespace {
void CountersJson(std::ostringstream& s, const Counters& c) {
  s << "\"gm_read_bytes\": " << c.gm_read_bytes << ", \"gm_write_bytes\": " << c.gm_write_bytes
    << ", \"atomic_bytes\": " << c.atomic_bytes << ", \"dma_ops\": " << c.dma_ops
    << ", \"dma_in_ops\": " << c.dma_in_ops << ", \"dma_out_ops\": " << c.dma_out_ops
    << ", \"atomic_dma_ops\": " << c.atomic_dma_ops << ", \"dma_bursts\": " << c.dma_bursts
    << ", \"vector_ops\": " << c.vector_ops << ", \"vector_repeats\": " << c.vector_repeats
    << ", \"gather_ops\": " << c.gather_ops << ", \"gather_elements\": " << c.gather_elements
    << ", \"gather_bytes\": " << c.gather_bytes << ", \"scalar_ub_ops\": " << c.scalar_ub_ops
    << ", \"sync_ops\": " << c.sync_ops;
}
}  // namespace

std::string Stats::ToJson(bool with_blocks) const {
  std::ostringstream s;
  s << "{\"ub_peak_bytes\": " << ub_peak_bytes << ", \"ub_capacity_bytes\": " << ub_capacity_bytes << ", ";
  CountersJson(s, *this);
  s << ", \"blocks\": " << blocks;
  if (with_blocks) {
    s << ", \"per_block\": [";
    for (size_t b = 0; b < per_block.size(); ++b) {
      s << (b ? ", {" : "{");
      CountersJson(s, per_block[b]);
      s << "}";
    }
    s << "]";
  }
  s << "}";
  return s.str();
}

void GmRegion::EnsureShadow() {
  if (writer.size() != bytes) {
    writer.assign(bytes, -1);
    atomic_writer.assign(bytes, -1);
    reader.assign(bytes, -1);
    mte3_seq.assign(bytes, 0);
  }
}

BlockCtx::BlockCtx(int idx, int num, const Options& o, Counters* st)
    : block_idx(idx), block_num(num), opt(o), stats(st), ub(kUbTotalBytes, kPoisonByte) {}

void BlockCtx::GrowShadow(uint32_t bytes) {  // hazard bookkeeping covers only the planned UB
  w_seq.resize(bytes, 0);
  w_pipe.resize(bytes, -1);
  r_seq.resize(bytes, std::array<uint32_t, kNumPipes>{});
}

void BlockCtx::Fail(const char* api, const std::string& msg) const {
  std::ostringstream s;
  s << "AscendRuleError: " << api << " (block " << block_idx << " of " << block_num;
  if (g_sched) s << ", kernel " << g_sched->name;
  s << "): " << msg;
  throw AscendRuleError(s.str());
}

uint32_t BlockCtx::Issue(int pipe, const char* api) {
  uint32_t s = ++seq[pipe];
  clock[pipe][pipe] = s;
  op_names[pipe].push_back(api);
  return s;
}

void BlockCtx::Read(int pipe, uint32_t s, const char* api, uint32_t off, uint32_t len) {
  if (uint64_t(off) + len > w_seq.size())
    Fail(api, "reads UB bytes [" + std::to_string(off) + ", " + std::to_string(uint64_t(off) + len) +
                  ") outside the buffers planned with InitBuffer");
  for (uint32_t b = off; b < off + len; ++b) {
    int wp = w_pipe[b];
    if (wp >= 0 && wp != pipe && clock[pipe][wp] < w_seq[b]) {
      uint32_t e = b;
      while (e < off + len && w_pipe[e] == wp && clock[pipe][wp] < w_seq[e]) ++e;
      Fail(api, std::string("pipeline hazard: pipe ") + PipeName(pipe) + " reads UB bytes [" + std::to_string(b) +
                    ", " + std::to_string(e) + ") written by " + op_names[wp][w_seq[b] - 1] + " on pipe " +
                    PipeName(wp) + " with nothing ordering the two; use EnQue/DeQue, SetFlag/WaitFlag<HardEvent::" +
                    EventName(wp, pipe) + "> or PipeBarrier<PIPE_ALL>");
    }
    r_seq[b][pipe] = s;
  }
}

void BlockCtx::Write(int pipe, uint32_t s, const char* api, uint32_t off, uint32_t len) {
  if (uint64_t(off) + len > w_seq.size())
    Fail(api, "writes UB bytes [" + std::to_string(off) + ", " + std::to_string(uint64_t(off) + len) +
                  ") outside the buffers planned with InitBuffer");
  for (uint32_t b = off; b < off + len; ++b) {
    int wp = w_pipe[b];
    if (wp >= 0 && wp != pipe && clock[pipe][wp] < w_seq[b]) {
      Fail(api, std::string("pipeline hazard: pipe ") + PipeName(pipe) + " overwrites UB byte " + std::to_string(b) +
                    " that " + op_names[wp][w_seq[b] - 1] + " on pipe " + PipeName(wp) +
                    " writes, with nothing ordering the two; use SetFlag/WaitFlag<HardEvent::" + EventName(wp, pipe) +
                    "> or PipeBarrier<PIPE_ALL>");
    }
    for (int q = kV; q < kNumPipes; ++q) {  // scalar reads complete before the next instruction issues
      if (q != pipe && r_seq[b][q] > clock[pipe][q]) {
        Fail(api, std::string("pipeline hazard: pipe ") + PipeName(pipe) + " overwrites UB byte " + std::to_string(b) +
                      " that " + op_names[q][r_seq[b][q] - 1] + " on pipe " + PipeName(q) +
                      " may still be reading; free the tensor back to its queue or use SetFlag/WaitFlag<HardEvent::" +
                      EventName(q, pipe) + ">");
      }
    }
    // Two DMAs on one pipe may complete out of order: overlapping UB destinations of MTE2 copies
    // need PipeBarrier<PIPE_MTE2> (docs/zh/api/SIMD-API/基础API/同步控制/核内同步/PipeBarrier(ISASI).md).
    if (pipe == kMte2 && wp == kMte2 && w_seq[b] != s && self_done[kMte2] < w_seq[b]) {
      Fail(api, std::string("pipe MTE2 overwrites UB byte ") + std::to_string(b) + " that " +
                    op_names[kMte2][w_seq[b] - 1] +
                    " on the same pipe writes, with nothing ordering the two: DMAs into overlapping UB bytes "
                    "need PipeBarrier<PIPE_MTE2> between them (or an ordering through another pipe)");
    }
    w_pipe[b] = static_cast<int8_t>(pipe);
    w_seq[b] = s;
  }
}

void BlockCtx::Poison(uint32_t off, uint32_t len) {
  std::memset(ub.data() + off, kPoisonByte, len);
}

std::array<uint32_t, kNumPipes> BlockCtx::Snapshot(int pipe) const {
  return clock[pipe];
}

void BlockCtx::Merge(int pipe, const std::array<uint32_t, kNumPipes>& c) {
  for (int q = 0; q < kNumPipes; ++q) clock[pipe][q] = std::max(clock[pipe][q], c[q]);
  // The source pipe knew `pipe`'s ops up to c[pipe] complete: so does `pipe` now.
  self_done[pipe] = std::max(self_done[pipe], c[pipe]);
}

void BlockCtx::BarrierAll() {
  std::array<uint32_t, kNumPipes> j{};
  for (int p = 0; p < kNumPipes; ++p)
    for (int q = 0; q < kNumPipes; ++q) j[q] = std::max(j[q], clock[p][q]);
  for (int p = 0; p < kNumPipes; ++p) clock[p] = j;
  self_done = seq;
}

const char* HardEventName(int e) {  // in AscendC::HardEvent order
  static const char* n[] = {"MTE2_MTE1", "MTE1_MTE2", "MTE1_M", "M_MTE1", "MTE2_V",    "V_MTE2",    "MTE3_V",
                            "V_MTE3",    "M_V",       "V_M",    "V_V",    "MTE3_MTE1", "MTE1_MTE3", "MTE1_V",
                            "MTE2_M",    "M_MTE2",    "V_MTE1", "M_FIX",  "FIX_M",     "MTE3_MTE2", "MTE2_MTE3",
                            "S_V",       "V_S",       "S_MTE2", "MTE2_S", "S_MTE3",    "MTE3_S"};
  return e >= 0 && e < int(sizeof(n) / sizeof(n[0])) ? n[e] : "?";
}

void BlockCtx::PipeDone(int pipe) {
  self_done[pipe] = seq[pipe];
}

// The pool follows TPipe::AllocEventID / FetchEventID / ReleaseEventID of asc-devkit
// impl/basic_api/kernel_tpipe_impl.h: one occupancy mask per HardEvent, lowest free id (sff0),
// QUE_MAX_EVENT = 8 ids. The real code only asserts in debug builds when the pool is exhausted;
// on hardware the id is garbage, so here it is an error.
int BlockCtx::AllocEvent(const char* api, int event, const std::string& holder) {
  for (int i = 0; i < kEventIds; ++i) {
    if (!event_holder.count({event, i})) {
      event_holder[{event, i}] = holder;
      return i;
    }
  }
  std::string who;
  for (int i = 0; i < kEventIds; ++i) who += "\n  id " + std::to_string(i) + ": " + event_holder[{event, i}];
  Fail(api, std::string("no free event id of HardEvent::") + HardEventName(event) + " for " + holder +
                ": all ids are held (dav-2201 has " + std::to_string(kEventIds) +
                " per HardEvent; every freed TQue buffer holds one until it is allocated again, so at most 8 " +
                "buffers per TPosition):" + who);
}

int BlockCtx::FetchEvent(const char* api, int event) {
  for (int i = 0; i < kEventIds; ++i)
    if (!event_holder.count({event, i})) return i;
  Fail(api, std::string("no free event id of HardEvent::") + HardEventName(event) + ": all 8 are held");
}

void BlockCtx::ReleaseEvent(int event, int id) {
  event_holder.erase({event, id});
}

const std::string* BlockCtx::Holder(int event, int id) const {
  auto it = event_holder.find({event, id});
  return it == event_holder.end() ? nullptr : &it->second;
}

void BlockCtx::QueueSetFlag(const char* api, int event, int id, const std::string& who) {
  auto& f = flags[{event, id}];
  if (f.set)
    Fail(api, who + " takes HardEvent::" + HardEventName(event) + " id " + std::to_string(id) +
                  " (the lowest id the pipe has not handed out), which the kernel has already set with SetFlag: a "
                  "second SetFlag on a set flag is undefined; take the kernel's ids from TPipe::FetchEventID / "
                  "AllocEventID instead of literal EVENT_IDs");
  f.set = true;
}

void BlockCtx::QueueWaitFlag(int event, int id) {
  flags[{event, id}].set = false;
}

void BlockCtx::EndChecks() {
  for (const auto& q : queues) {
    int held = 0;
    for (const auto& s : q.slots) held += s.state != QueueSlot::kFree;
    if (!q.fifo.empty())
      Fail("kernel end", q.name + ": " + std::to_string(q.fifo.size()) + " tensor(s) EnQue'd but never DeQue'd");
    if (held)
      Fail("kernel end", q.name + ": " + std::to_string(held) + " tensor(s) still allocated (missing FreeTensor)");
  }
  for (const auto& [key, f] : flags) {
    if (f.set)
      Fail("kernel end", std::string("SetFlag<HardEvent::") + HardEventName(key.first) + ">(" +
                             std::to_string(key.second) + ") has no matching WaitFlag");
  }
  if (atomic_type >= 0)
    Fail("kernel end", std::string("atomic add mode (") + atomic_api + "<" + TypeName(atomic_type) +
                           ">) still active; reset it with SetAtomicNone() or DisableDmaAtomic()");
}

BlockCtx& Ctx() {
  if (!t_ctx) throw AscendRuleError("AscendRuleError: AscendC API called outside a kernel launch (use ICPU_RUN_KF)");
  return *t_ctx;
}

GmRegion* FindRegion(const void* p, size_t bytes, const char* api) {
  Sched* s = g_sched;
  auto addr = reinterpret_cast<const uint8_t*>(p);
  for (auto& r : s->regions) {
    if (addr >= r.base && addr + bytes <= r.base + r.bytes) return &r;
  }
  std::string known;
  for (auto& r : s->regions)
    known += " " + r.name + "[" + Hex(uint64_t(r.base)) + ", +" + std::to_string(r.bytes) + ")";
  Ctx().Fail(api, "GM address " + Hex(uint64_t(addr)) + " (+" + std::to_string(bytes) +
                      " bytes) is not inside any GM buffer of the launch:" + known);
}

void GmAccess(const char* api, const void* p, size_t bytes, bool write, bool atomic) {
  if (bytes == 0) return;
  BlockCtx& c = Ctx();
  GmRegion* r = FindRegion(p, bytes, api);
  r->EnsureShadow();
  size_t off = static_cast<const uint8_t*>(p) - r->base;
  int b = c.block_idx;
  auto fail = [&](size_t i, int other, const char* what) {
    c.Fail(api, std::string("multi-core race on GM buffer '") + r->name + "' byte " + std::to_string(i) + ": block " +
                    std::to_string(b) + " " + what + " block " + std::to_string(other) +
                    " (blocks run concurrently on hardware; partition the outputs, use SetAtomicAdd, or SyncAll)");
  };
  for (size_t i = off; i < off + bytes; ++i) {
    int w = r->writer[i], aw = r->atomic_writer[i], rd = r->reader[i];
    if (!write) {
      if (w >= 0 && w != b) fail(i, w, "reads bytes written by");
      if (aw != -1 && aw != b) fail(i, aw < 0 ? -1 : aw, "reads bytes atomically accumulated by");
      r->reader[i] = (rd == -1 || rd == b) ? b : -2;
    } else if (!atomic) {
      if (w >= 0 && w != b) fail(i, w, "writes bytes also written by");
      if (aw != -1 && aw != b) fail(i, aw < 0 ? -1 : aw, "writes (non-atomically) bytes atomically accumulated by");
      if (rd != -1 && rd != b) fail(i, rd < 0 ? -1 : rd, "writes bytes read by");
      r->writer[i] = b;
    } else {
      if (w >= 0 && w != b) fail(i, w, "atomically adds to bytes written non-atomically by");
      if (rd != -1 && rd != b) fail(i, rd < 0 ? -1 : rd, "atomically adds to bytes read by");
      r->atomic_writer[i] = (aw == -1 || aw == b) ? b : -2;
    }
  }
  if (write) {
    c.stats->gm_write_bytes += bytes;
    if (atomic) c.stats->atomic_bytes += bytes;
  } else {
    c.stats->gm_read_bytes += bytes;
  }
}

namespace {

void BlockMain(Sched* s, int b, const std::function<void()>* body) {
  {
    std::unique_lock<std::mutex> lk(s->m);
    s->cv.wait(lk, [&] { return s->current == b || s->abort; });
    if (s->abort) {
      s->state[b] = kDone;
      s->current = -1;
      s->cv.notify_all();
      return;
    }
  }
  std::exception_ptr err;
  {
    BlockCtx ctx(b, static_cast<int>(s->block_num), s->opt, &s->stats.per_block[b]);
    t_ctx = &ctx;
    t_block = b;
    try {
      (*body)();
      ctx.EndChecks();
    } catch (const AbortSignal&) {
    } catch (const AscendRuleError&) {
      err = std::current_exception();
    } catch (const std::exception& e) {
      err = std::make_exception_ptr(AscendRuleError(std::string("kernel threw: ") + e.what()));
    }
    s->stats.ub_peak_bytes = std::max<uint64_t>(s->stats.ub_peak_bytes, ctx.ub_used);
    t_ctx = nullptr;
    t_block = -1;
  }
  std::lock_guard<std::mutex> lk(s->m);
  if (err && !s->error) s->error = err;
  s->state[b] = kDone;
  s->current = -1;
  s->cv.notify_all();
}

}  // namespace

void SyncAllBlocks() {
  Sched* s = g_sched;
  int b = t_block;
  std::unique_lock<std::mutex> lk(s->m);
  s->state[b] = kWaiting;
  s->current = -1;
  s->cv.notify_all();
  s->cv.wait(lk, [&] { return s->current == b || s->abort; });
  if (s->abort) throw AbortSignal();
}

Stats Launch(const char* name, uint32_t block_num, uint64_t seed, const std::vector<GmBuffer>& gm,
             const std::function<void()>& body, const Options& opt) {
  std::lock_guard<std::mutex> launch_lock(g_launch_mutex);
  if (block_num < 1 || block_num > 65535)
    throw AscendRuleError(std::string("AscendRuleError: launch of ") + name + ": blockDim must be in [1, 65535], got " +
                          std::to_string(block_num));
  Sched s;
  s.name = name;
  s.block_num = block_num;
  s.opt = opt;
  s.stats.ub_capacity_bytes = opt.ub_bytes;
  s.stats.blocks = block_num;
  s.stats.per_block.assign(block_num, Counters());
  for (const auto& g : gm) {
    GmRegion r;
    r.base = static_cast<uint8_t*>(g.ptr);
    r.bytes = g.bytes;
    r.name = g.name;
    s.regions.push_back(std::move(r));
  }
  s.state.assign(block_num, kNotStarted);
  std::mt19937_64 rng(seed);
  std::vector<int> order(block_num);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);

  g_sched = &s;
  std::vector<std::thread> threads(block_num);
  auto finish = [&]() {
    {
      std::lock_guard<std::mutex> lk(s.m);
      s.abort = true;
      s.cv.notify_all();
    }
    for (auto& t : threads)
      if (t.joinable()) t.join();
    g_sched = nullptr;
  };
  try {
    while (true) {
      int next = -1;
      for (int b : order) {
        if (s.state[b] == kNotStarted || s.state[b] == kRunnable) {
          next = b;
          break;
        }
      }
      if (next < 0) {
        std::vector<int> waiting, done;
        for (uint32_t b = 0; b < block_num; ++b) (s.state[b] == kWaiting ? waiting : done).push_back(b);
        if (waiting.empty()) break;  // every block finished
        if (!done.empty()) {
          throw AscendRuleError(std::string("AscendRuleError: SyncAll (kernel ") + name +
                                "): " + std::to_string(waiting.size()) +
                                " block(s) (first: " + std::to_string(waiting[0]) + ") wait in SyncAll but " +
                                std::to_string(done.size()) + " block(s) (first: " + std::to_string(done[0]) +
                                ") finished without reaching it: deadlock on hardware");
        }
        for (auto& r : s.regions) {  // everything before the barrier is ordered before everything after it
          r.writer.clear();
          r.atomic_writer.clear();
          r.reader.clear();
          r.mte3_seq.clear();
        }
        for (uint32_t b = 0; b < block_num; ++b) s.state[b] = kRunnable;
        std::shuffle(order.begin(), order.end(), rng);
        continue;
      }
      std::unique_lock<std::mutex> lk(s.m);
      if (s.state[next] == kNotStarted) {
        s.state[next] = kRunnable;
        lk.unlock();
        threads[next] = std::thread(BlockMain, &s, next, &body);
        lk.lock();
      }
      s.current = next;
      s.cv.notify_all();
      s.cv.wait(lk, [&] { return s.current == -1; });
      if (s.state[next] == kDone && threads[next].joinable()) {
        lk.unlock();
        threads[next].join();
        lk.lock();
      }
      if (s.error) std::rethrow_exception(s.error);
    }
  } catch (...) {
    finish();
    throw;
  }
  finish();
  for (const Counters& b : s.stats.per_block) s.stats += b;
  g_last_stats = s.stats;
  return s.stats;
}

const Stats& LastStats() {
  return g_last_stats;
}

// ---- CANN CPU-debug driver support -------------------------------------------------------------

namespace {
std::mutex g_driver_mutex;
std::map<void*, size_t>& DriverAllocs() {
  static std::map<void*, size_t> m;
  return m;
}
}  // namespace

void* GmAllocImpl(size_t bytes) {
  void* p = std::aligned_alloc(512, (bytes + 511) / 512 * 512);
  if (!p) {
    std::fprintf(stderr, "GmAlloc: out of memory (%zu bytes)\n", bytes);
    std::exit(1);
  }
  std::memset(p, 0, bytes);
  std::lock_guard<std::mutex> lk(g_driver_mutex);
  DriverAllocs()[p] = bytes;
  return p;
}

void GmFreeImpl(void* p) {
  std::lock_guard<std::mutex> lk(g_driver_mutex);
  auto it = DriverAllocs().find(p);
  if (it == DriverAllocs().end()) {
    std::fprintf(stderr, "GmFree: %p was not returned by GmAlloc (or was freed twice)\n", p);
    std::exit(1);
  }
  DriverAllocs().erase(it);
  std::free(p);
}

std::vector<GmBuffer> DriverBuffers() {
  std::lock_guard<std::mutex> lk(g_driver_mutex);
  std::vector<GmBuffer> out;
  int i = 0;
  for (auto& [p, n] : DriverAllocs()) out.push_back({p, n, "GmAlloc#" + std::to_string(i++)});
  return out;
}

int DriverRun(const char* name, uint32_t block_num, const std::function<void()>& body) {
  const char* env_seed = std::getenv("NPU_OPS_EMU_SEED");
  uint64_t seed = env_seed ? std::strtoull(env_seed, nullptr, 10) : 0;
  try {
    Stats st = Launch(name, block_num, seed, DriverBuffers(), body);
    std::printf("[npu_ops emu] %s: %s\n", name, st.ToJson(/*with_blocks=*/false).c_str());
    std::fflush(stdout);
  } catch (const AscendRuleError& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "[npu_ops emu] %s\n", e.what());
    std::exit(1);
  }
  return 0;
}

}  // namespace npu_ops_emu
