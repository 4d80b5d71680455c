// Pipe/flag model: every pipe has a vector clock; an instruction on pipe p advances p's own
// entry; set_flag(src, dst, id) snapshots src's clock into the flag, wait_flag joins it into
// dst's clock. A local-memory access by pipe q races with an earlier access by pipe p != q
// (one of them a write) unless q's clock has seen it. Instructions on the same pipe are taken
// as ordered (PIPE_V -> PIPE_V ordering is bisheng's auto-sync on dav-2201; not modelled).
#ifndef NPU_OPS_IM_SYNC_H
#define NPU_OPS_IM_SYNC_H

#include <array>
#include <cstring>
#include <unordered_map>

#include "im_core.h"

namespace npu_im {

constexpr int kPipes = 8;
using Clock = std::array<uint32_t, kPipes>;

inline const char* PipeName(int p) {
  static const char* n[kPipes] = {"S", "V", "M", "MTE1", "MTE2", "MTE3", "ALL", "MTE4"};
  return p >= 0 && p < kPipes ? n[p] : "?";
}

struct Flag {
  bool set = false;
  Clock clock{};
};
struct ByteState {
  uint8_t writer = 0xff;
  uint32_t writeClock = 0;
  std::array<uint32_t, kPipes> readClock{};
};

struct PipeModel {
  std::array<Clock, kPipes> vc{};
  Flag flags[kPipes][kPipes][8];
  std::unordered_map<uint64_t, ByteState> bytes;  // local-memory bytes touched in this block
  void Reset() { *this = PipeModel(); }
};
inline PipeModel& Pipes() {
  static PipeModel* m = new PipeModel();
  return *m;
}

inline bool IsLocal(uint64_t a) {
  for (int i = 0; i < 16; ++i) {
    const LocalRange& r = Locals()[i];
    if (r.len && a >= r.base && a < r.base + r.len) return true;
  }
  return false;
}

// One instruction on `pipe`: returns its stamp.
inline uint32_t Issue(int pipe) {
  return ++Pipes().vc[pipe][pipe];
}

inline void Access(int pipe, const void* p, uint64_t n, bool write, const char* what) {
  uint64_t a = reinterpret_cast<uint64_t>(p);
  if (n == 0 || !IsLocal(a)) return;
  PipeModel& m = Pipes();
  const Clock& mine = m.vc[pipe];
  bool reported = false;
  for (uint64_t i = 0; i < n; ++i) {
    ByteState& b = m.bytes[a + i];
    if (!reported && b.writer != 0xff && b.writer != pipe && b.writeClock > mine[b.writer]) {
      Violation(std::string(what) + " on PIPE_" + PipeName(pipe) + (write ? " writes" : " reads") +
                " UB bytes written by PIPE_" + PipeName(b.writer) + " without a flag in between (offset " +
                std::to_string(a + i - Locals()[1].base) + ")");
      reported = true;
    }
    if (write) {
      for (int q = 0; q < kPipes && !reported; ++q) {
        if (q != pipe && b.readClock[q] > mine[q]) {
          Violation(std::string(what) + " on PIPE_" + PipeName(pipe) + " overwrites UB bytes PIPE_" + PipeName(q) +
                    " reads without a flag in between");
          reported = true;
        }
      }
      b.writer = static_cast<uint8_t>(pipe);
      b.writeClock = mine[pipe];
    } else {
      b.readClock[pipe] = mine[pipe];
    }
  }
}

inline void EndBlock() {
  PipeModel& m = Pipes();
  for (int s = 0; s < kPipes; ++s)
    for (int d = 0; d < kPipes; ++d)
      for (int e = 0; e < 8; ++e)
        if (m.flags[s][d][e].set)
          Violation(std::string("flag PIPE_") + PipeName(s) + "->PIPE_" + PipeName(d) + " id " + std::to_string(e) +
                    " still set at the end of the block");
  m.Reset();
}

}  // namespace npu_im

inline void set_flag(pipe_t src, pipe_t dst, event_t id) {
  npu_im::Count().setFlag++;
  npu_im::Flag& f = npu_im::Pipes().flags[src][dst][id];
  if (f.set)
    npu_im::Violation(std::string("set_flag PIPE_") + npu_im::PipeName(src) + "->PIPE_" + npu_im::PipeName(dst) +
                      " id " + std::to_string(id) + " while it is already set");
  f.set = true;
  f.clock = npu_im::Pipes().vc[src];
}
inline void set_flag(pipe_t src, pipe_t dst, int id) {
  set_flag(src, dst, static_cast<event_t>(id));
}
inline void wait_flag(pipe_t src, pipe_t dst, event_t id) {
  npu_im::Count().waitFlag++;
  npu_im::Flag& f = npu_im::Pipes().flags[src][dst][id];
  if (!f.set) {
    npu_im::Violation(std::string("wait_flag PIPE_") + npu_im::PipeName(src) + "->PIPE_" + npu_im::PipeName(dst) +
                      " id " + std::to_string(id) + " on a flag nobody set (hangs on hardware)");
    return;
  }
  f.set = false;
  npu_im::Clock& c = npu_im::Pipes().vc[dst];
  for (int i = 0; i < npu_im::kPipes; ++i) c[i] = std::max(c[i], f.clock[i]);
}
inline void wait_flag(pipe_t src, pipe_t dst, int id) {
  wait_flag(src, dst, static_cast<event_t>(id));
}
inline void pipe_barrier(pipe_t p) {
  npu_im::Count().barrier++;
  if (p == PIPE_ALL) {  // every pipe waits for every other
    npu_im::Clock j{};
    for (auto& c : npu_im::Pipes().vc)
      for (int i = 0; i < npu_im::kPipes; ++i) j[i] = std::max(j[i], c[i]);
    for (auto& c : npu_im::Pipes().vc) c = j;
  }
}

#endif  // NPU_OPS_IM_SYNC_H
