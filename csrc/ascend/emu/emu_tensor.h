// GlobalTensor, LocalTensor, TPipe, TQue and TBuf of the AscendC emulator.
#pragma once

#include <string>

#include "emu_runtime.h"
#include "emu_types.h"

namespace npu_ops_emu {

template <class T>
constexpr int TagOf() {
  if constexpr (std::is_same_v<T, float>) return kF32;
  if constexpr (std::is_same_v<T, half>) return kF16;
  if constexpr (std::is_same_v<T, bfloat16_t>) return kBF16;
  if constexpr (std::is_same_v<T, int32_t>) return kI32;
  if constexpr (std::is_same_v<T, int16_t>) return kI16;
  if constexpr (std::is_same_v<T, int8_t>) return kI8;
  if constexpr (std::is_same_v<T, uint8_t>) return kU8;
  if constexpr (std::is_same_v<T, uint16_t>) return kU16;
  if constexpr (std::is_same_v<T, uint32_t>) return kU32;
  if constexpr (std::is_same_v<T, int64_t>) return kI64;
  if constexpr (std::is_same_v<T, uint64_t>) return kU64;
  return kOther;
}

template <class T>
inline T LoadUb(uint32_t off) {
  T v;
  std::memcpy(&v, Ctx().ub.data() + off, sizeof(T));
  return v;
}
template <class T>
inline void StoreUb(uint32_t off, T v) {
  std::memcpy(Ctx().ub.data() + off, &v, sizeof(T));
}

inline std::string Str(uint64_t v) {
  return std::to_string(v);
}

}  // namespace npu_ops_emu

namespace AscendC {

template <typename T>
class LocalTensor {
 public:
  using PrimType = T;
  LocalTensor() = default;

  // Scalar-pipe access (slow on hardware; needs V_S / S_V ordering against vector ops).
  T GetValue(uint32_t index) const {
    auto& c = npu_ops_emu::Ctx();
    Check("LocalTensor::GetValue", index);
    uint32_t s = c.Issue(npu_ops_emu::kS, "LocalTensor::GetValue");
    c.Read(npu_ops_emu::kS, s, "LocalTensor::GetValue", off_ + index * sizeof(T), sizeof(T));
    c.stats->scalar_ub_ops++;
    return npu_ops_emu::LoadUb<T>(off_ + index * sizeof(T));
  }
  void SetValue(uint32_t index, const T& value) const {
    auto& c = npu_ops_emu::Ctx();
    Check("LocalTensor::SetValue", index);
    uint32_t s = c.Issue(npu_ops_emu::kS, "LocalTensor::SetValue");
    c.Write(npu_ops_emu::kS, s, "LocalTensor::SetValue", off_ + index * sizeof(T), sizeof(T));
    c.stats->scalar_ub_ops++;
    npu_ops_emu::StoreUb<T>(off_ + index * sizeof(T), value);
  }
  LocalTensor operator[](uint32_t offset) const {
    if (!valid_) npu_ops_emu::Ctx().Fail("LocalTensor::operator[]", "tensor is not allocated");
    if (offset > size_)
      npu_ops_emu::Ctx().Fail("LocalTensor::operator[]", "offset " + npu_ops_emu::Str(offset) + " is past the " +
                                                             npu_ops_emu::Str(size_) + "-element tensor");
    LocalTensor r = *this;
    r.off_ = off_ + offset * sizeof(T);
    r.size_ = size_ - offset;
    return r;
  }
  uint32_t GetSize() const { return size_; }
  template <typename U>
  LocalTensor<U> ReinterpretCast() const {
    LocalTensor<U> r;
    r.off_ = off_;
    r.size_ = static_cast<uint32_t>(uint64_t(size_) * sizeof(T) / sizeof(U));
    r.valid_ = valid_;
    r.queue_ = queue_;
    r.slot_ = slot_;
    return r;
  }

  // Emulator state (public so other templates can reach it; kernels must not use it).
  uint32_t off_ = 0;   // byte offset in UB
  uint32_t size_ = 0;  // elements
  bool valid_ = false;
  int queue_ = -1, slot_ = -1;

 private:
  void Check(const char* api, uint32_t index) const {
    if (!valid_) npu_ops_emu::Ctx().Fail(api, "tensor is not allocated");
    if (index >= size_)
      npu_ops_emu::Ctx().Fail(api, "index " + npu_ops_emu::Str(index) + " out of range for a " +
                                       npu_ops_emu::Str(size_) + "-element tensor");
  }
};

template <typename T>
class GlobalTensor {
 public:
  using PrimType = T;
  GlobalTensor() = default;
  void SetGlobalBuffer(__gm__ T* buffer, uint64_t bufferSize) {
    npu_ops_emu::FindRegion(buffer, bufferSize * sizeof(T), "GlobalTensor::SetGlobalBuffer");
    base_ = buffer;
    size_ = bufferSize;
    set_ = true;
  }
  void SetGlobalBuffer(__gm__ T* buffer) {
    auto* r = npu_ops_emu::FindRegion(buffer, sizeof(T), "GlobalTensor::SetGlobalBuffer");
    base_ = buffer;
    size_ = (r->base + r->bytes - reinterpret_cast<uint8_t*>(buffer)) / sizeof(T);
    set_ = true;
  }
  GlobalTensor operator[](uint64_t offset) const {
    Need("GlobalTensor::operator[]");
    if (offset > size_)
      npu_ops_emu::Ctx().Fail("GlobalTensor::operator[]", "offset " + npu_ops_emu::Str(offset) + " is past the " +
                                                              npu_ops_emu::Str(size_) +
                                                              " elements given to SetGlobalBuffer");
    GlobalTensor r = *this;
    r.base_ = base_ + offset;
    r.size_ = size_ - offset;
    return r;
  }
  T GetValue(uint64_t offset) const {
    CheckIndex("GlobalTensor::GetValue", offset, 1);
    npu_ops_emu::GmAccess("GlobalTensor::GetValue", base_ + offset, sizeof(T), false, false);
    T v;
    std::memcpy(&v, base_ + offset, sizeof(T));
    return v;
  }
  void SetValue(uint64_t offset, const T& value) const {
    CheckIndex("GlobalTensor::SetValue", offset, 1);
    npu_ops_emu::GmAccess("GlobalTensor::SetValue", base_ + offset, sizeof(T), true, false);
    std::memcpy(base_ + offset, &value, sizeof(T));
  }
  uint64_t GetSize() const { return size_; }
  __gm__ T* GetPhyAddr() const { return base_; }
  __gm__ T* GetPhyAddr(uint64_t offset) const { return base_ + offset; }

  // Bounds check against the SetGlobalBuffer size, in elements.
  void CheckIndex(const char* api, uint64_t first, uint64_t count) const {
    Need(api);
    if (first + count > size_)
      npu_ops_emu::Ctx().Fail(api, "GM access to elements [" + npu_ops_emu::Str(first) + ", " +
                                       npu_ops_emu::Str(first + count) + ") is outside the " + npu_ops_emu::Str(size_) +
                                       " elements given to SetGlobalBuffer");
  }
  void Need(const char* api) const {
    if (!set_) npu_ops_emu::Ctx().Fail(api, "GlobalTensor used before SetGlobalBuffer");
  }

  T* base_ = nullptr;
  uint64_t size_ = 0;
  bool set_ = false;
};

namespace emu_detail {
inline void QueuePipes(TPosition pos, int* producer, int* consumer, const char* api) {
  switch (pos) {
    case TPosition::VECIN: *producer = npu_ops_emu::kMte2, *consumer = npu_ops_emu::kV; return;
    case TPosition::VECOUT: *producer = npu_ops_emu::kV, *consumer = npu_ops_emu::kMte3; return;
    case TPosition::VECCALC: *producer = npu_ops_emu::kV, *consumer = npu_ops_emu::kV; return;
    default:
      npu_ops_emu::Ctx().Fail(api, "only the vector positions VECIN, VECOUT and VECCALC are emulated (dav-2201 AIV)");
  }
}
// The queue's HardEvents (GetQueEvt, asc-devkit impl/basic_api/kernel_event.h): VECIN is GM -> UB
// (EnQue MTE2_V, FreeTensor V_MTE2), VECOUT UB -> GM (EnQue V_MTE3, FreeTensor MTE3_V). VECCALC
// queues use no ids here (vector to vector).
inline void QueueEvents(TPosition pos, int* enq, int* free_evt) {
  *enq = *free_evt = -1;
  if (pos == TPosition::VECIN)
    *enq = static_cast<int>(HardEvent::MTE2_V), *free_evt = static_cast<int>(HardEvent::V_MTE2);
  if (pos == TPosition::VECOUT)
    *enq = static_cast<int>(HardEvent::V_MTE3), *free_evt = static_cast<int>(HardEvent::MTE3_V);
}
inline std::string SlotName(const npu_ops_emu::QueueState& q, int slot) {
  return q.name + " buffer " + std::to_string(slot);
}
inline const char* PosName(TPosition pos) {
  switch (pos) {
    case TPosition::VECIN: return "VECIN";
    case TPosition::VECOUT: return "VECOUT";
    case TPosition::VECCALC: return "VECCALC";
    default: return "other";
  }
}
}  // namespace emu_detail

template <TPosition pos, int32_t depth, auto mask = 0>
class TQue {
 public:
  template <typename T>
  LocalTensor<T> AllocTensor() {
    auto& q = State("TQue::AllocTensor");
    auto& c = npu_ops_emu::Ctx();
    int n = static_cast<int>(q.slots.size());
    int pick = -1;
    for (int k = 0; k < n; ++k) {
      int s = (next_ + k) % n;
      if (q.slots[s].state == npu_ops_emu::QueueSlot::kFree) {
        pick = s;
        break;
      }
    }
    if (pick < 0)
      c.Fail("TQue::AllocTensor",
             q.name + ": all " + npu_ops_emu::Str(n) +
                 " buffers are allocated (a FreeTensor is missing, or InitBuffer num is too small)");
    int held = 0;
    for (auto& other : c.queues)
      if (other.position == q.position)
        for (auto& s : other.slots) held += s.state != npu_ops_emu::QueueSlot::kFree;
    if (held >= 8)
      c.Fail("TQue::AllocTensor", q.name + ": 9 tensors allocated at once in position " + emu_detail::PosName(pos) +
                                      "; dav-2201 allows at most 8 per TPosition");
    next_ = (pick + 1) % n;
    auto& slot = q.slots[pick];
    slot.state = npu_ops_emu::QueueSlot::kAllocated;
    if (slot.free_id >= 0) {  // WaitFlag<freeBufEvt>(freeBufEvtID) + ReleaseEventID (AllocBuffer)
      c.QueueWaitFlag(q.free_event, slot.free_id);
      c.ReleaseEvent(q.free_event, slot.free_id);
      slot.free_id = -1;
    }
    if (slot.freed_once) c.Merge(q.producer, slot.free_clock);  // the consumer released it
    c.Poison(slot.offset, q.len);
    LocalTensor<T> t;
    t.off_ = slot.offset;
    t.size_ = q.len / sizeof(T);
    t.valid_ = true;
    t.queue_ = id_;
    t.slot_ = pick;
    return t;
  }
  template <typename T>
  bool EnQue(const LocalTensor<T>& tensor) {
    auto& q = State("TQue::EnQue");
    auto& c = npu_ops_emu::Ctx();
    auto& slot = Own("TQue::EnQue", tensor);
    if (slot.state != npu_ops_emu::QueueSlot::kAllocated)
      c.Fail("TQue::EnQue", q.name + ": tensor is not in the allocated state (enqueued twice, or already freed)");
    if (static_cast<int>(q.fifo.size()) >= q.depth)
      c.Fail("TQue::EnQue", q.name + ": queue depth " + npu_ops_emu::Str(q.depth) + " exceeded (DeQue before EnQue)");
    slot.state = npu_ops_emu::QueueSlot::kEnqueued;
    if (q.enq_event >= 0) {  // AllocEventID<enQueEvt> + SetFlag, held until DeQue
      std::string who = emu_detail::SlotName(q, tensor.slot_) + " (EnQue, until DeQue)";
      slot.enq_id = c.AllocEvent("TQue::EnQue", q.enq_event, who);
      c.QueueSetFlag("TQue::EnQue", q.enq_event, slot.enq_id,
                     "TQue::EnQue of " + emu_detail::SlotName(q, tensor.slot_));
    }
    q.fifo.push_back(tensor.slot_);
    q.fifo_clock.push_back(c.Snapshot(q.producer));
    c.stats->sync_ops++;
    return true;
  }
  template <typename T>
  LocalTensor<T> DeQue() {
    auto& q = State("TQue::DeQue");
    auto& c = npu_ops_emu::Ctx();
    if (q.fifo.empty()) c.Fail("TQue::DeQue", q.name + ": DeQue of an empty queue (hangs on hardware)");
    int s = q.fifo.front();
    c.Merge(q.consumer, q.fifo_clock.front());
    q.fifo.erase(q.fifo.begin());
    q.fifo_clock.erase(q.fifo_clock.begin());
    q.slots[s].state = npu_ops_emu::QueueSlot::kDequeued;
    if (q.slots[s].enq_id >= 0) {  // WaitFlag<enQueEvt> + ReleaseEventID
      c.QueueWaitFlag(q.enq_event, q.slots[s].enq_id);
      c.ReleaseEvent(q.enq_event, q.slots[s].enq_id);
      q.slots[s].enq_id = -1;
    }
    LocalTensor<T> t;
    t.off_ = q.slots[s].offset;
    t.size_ = q.len / sizeof(T);
    t.valid_ = true;
    t.queue_ = id_;
    t.slot_ = s;
    return t;
  }
  template <typename T>
  void FreeTensor(LocalTensor<T>& tensor) {
    auto& q = State("TQue::FreeTensor");
    auto& c = npu_ops_emu::Ctx();
    auto& slot = Own("TQue::FreeTensor", tensor);
    if (slot.state == npu_ops_emu::QueueSlot::kFree) c.Fail("TQue::FreeTensor", q.name + ": double free");
    if (slot.state == npu_ops_emu::QueueSlot::kEnqueued)
      c.Fail("TQue::FreeTensor", q.name + ": tensor is still in the queue (DeQue it first)");
    if (q.free_event >= 0) {  // AllocEventID<freeBufEvt> + SetFlag, held until the next AllocTensor
      std::string who = emu_detail::SlotName(q, tensor.slot_) + " (FreeTensor, until its next AllocTensor)";
      slot.free_id = c.AllocEvent("TQue::FreeTensor", q.free_event, who);
      c.QueueSetFlag("TQue::FreeTensor", q.free_event, slot.free_id,
                     "TQue::FreeTensor of " + emu_detail::SlotName(q, tensor.slot_));
    }
    slot.state = npu_ops_emu::QueueSlot::kFree;
    slot.free_clock = c.Snapshot(q.consumer);
    slot.freed_once = true;
  }
  bool VacantInQue() { return static_cast<int>(State("TQue::VacantInQue").fifo.size()) < depth; }
  bool HasTensorInQue() { return !State("TQue::HasTensorInQue").fifo.empty(); }
  int32_t GetTensorCountInQue() { return static_cast<int32_t>(State("TQue::GetTensorCountInQue").fifo.size()); }

  // Emulator state.
  int id_ = -1;
  int next_ = 0;

 private:
  npu_ops_emu::QueueState& State(const char* api) {
    auto& c = npu_ops_emu::Ctx();
    if (id_ < 0 || id_ >= static_cast<int>(c.queues.size())) c.Fail(api, "queue used before TPipe::InitBuffer");
    return c.queues[id_];
  }
  template <typename T>
  npu_ops_emu::QueueSlot& Own(const char* api, const LocalTensor<T>& t) {
    auto& q = State(api);
    if (!t.valid_ || t.queue_ != id_ || t.slot_ < 0)
      npu_ops_emu::Ctx().Fail(api, q.name + ": the tensor was not allocated from this queue");
    return q.slots[t.slot_];
  }
};

template <TPosition pos = TPosition::LCM>
class TBuf {
 public:
  template <typename T>
  LocalTensor<T> Get() {
    return Get<T>(len_ / sizeof(T));
  }
  template <typename T>
  LocalTensor<T> Get(uint32_t len) {
    if (!init_) npu_ops_emu::Ctx().Fail("TBuf::Get", "TBuf used before TPipe::InitBuffer");
    if (uint64_t(len) * sizeof(T) > len_)
      npu_ops_emu::Ctx().Fail("TBuf::Get", "asks for " + npu_ops_emu::Str(uint64_t(len) * sizeof(T)) + " bytes of a " +
                                               npu_ops_emu::Str(len_) + "-byte buffer");
    LocalTensor<T> t;
    t.off_ = off_;
    t.size_ = len;
    t.valid_ = true;
    return t;
  }
  uint32_t off_ = 0, len_ = 0;
  bool init_ = false;
};

class TPipe {
 public:
  TPipe() {
    auto& c = npu_ops_emu::Ctx();
    if (c.pipes_alive > 0) c.Fail("TPipe::TPipe", "a second TPipe while one is alive; use one TPipe per kernel");
    c.pipes_alive++;
  }
  // TPipe::Destroy (kernel_tpipe_impl.h DestroyWithoutPipeAll) waits the freeBuf flags the free
  // buffers still hold.
  ~TPipe() {
    auto& c = npu_ops_emu::Ctx();
    for (auto& q : c.queues)
      for (auto& slot : q.slots)
        if (slot.free_id >= 0 && slot.state == npu_ops_emu::QueueSlot::kFree) {
          c.QueueWaitFlag(q.free_event, slot.free_id);
          c.ReleaseEvent(q.free_event, slot.free_id);
          slot.free_id = -1;
        }
    c.pipes_alive--;
  }
  TPipe(const TPipe&) = delete;
  TPipe& operator=(const TPipe&) = delete;

  template <TPosition pos, int32_t depth, auto mask>
  bool InitBuffer(TQue<pos, depth, mask>& que, uint8_t num, uint32_t len) {
    auto& c = npu_ops_emu::Ctx();
    const char* api = "TPipe::InitBuffer";
    if (que.id_ >= 0) c.Fail(api, "queue initialised twice");
    if (num < 1) c.Fail(api, "num must be >= 1, got 0");
    if (depth < 1) c.Fail(api, "queue depth must be >= 1 for the vector positions, got " + npu_ops_emu::Str(depth));
    uint32_t aligned = Reserve(api, num, len);
    npu_ops_emu::QueueState q;
    q.name = std::string("TQue<") + emu_detail::PosName(pos) + "," + std::to_string(depth) + ">#" +
             std::to_string(c.queues.size());
    q.position = static_cast<int>(pos);
    q.depth = depth;
    q.len = aligned;
    emu_detail::QueuePipes(pos, &q.producer, &q.consumer, api);
    emu_detail::QueueEvents(pos, &q.enq_event, &q.free_event);
    for (int i = 0; i < num; ++i) {
      npu_ops_emu::QueueSlot s;
      s.offset = base_ + i * aligned;
      q.slots.push_back(s);
    }
    que.id_ = static_cast<int>(c.queues.size());
    c.queues.push_back(std::move(q));
    return true;
  }
  template <TPosition pos>
  bool InitBuffer(TBuf<pos>& buf, uint32_t len) {
    const char* api = "TPipe::InitBuffer";
    if (buf.init_) npu_ops_emu::Ctx().Fail(api, "TBuf initialised twice");
    int p, q;
    emu_detail::QueuePipes(pos, &p, &q, api);
    buf.len_ = Reserve(api, 1, len);
    buf.off_ = base_;
    buf.init_ = true;
    return true;
  }
  // One pool per HardEvent, shared with the queues' EnQue/FreeTensor ids (kernel_tpipe_impl.h):
  // FetchEventID returns the lowest id nobody holds without taking it; AllocEventID takes it
  // until ReleaseEventID.
  template <HardEvent evt>
  TEventID FetchEventID() {
    return FetchEventID(evt);
  }
  TEventID FetchEventID(HardEvent evt) {
    return static_cast<TEventID>(npu_ops_emu::Ctx().FetchEvent("TPipe::FetchEventID", static_cast<int>(evt)));
  }
  template <HardEvent evt>
  TEventID AllocEventID() {
    return static_cast<TEventID>(
        npu_ops_emu::Ctx().AllocEvent("TPipe::AllocEventID", static_cast<int>(evt), "TPipe::AllocEventID"));
  }
  template <HardEvent evt>
  void ReleaseEventID(TEventID id) {
    auto& c = npu_ops_emu::Ctx();
    const std::string* who = c.Holder(static_cast<int>(evt), id);
    if (who && who->rfind("TQue", 0) == 0)
      c.Fail("TPipe::ReleaseEventID", "HardEvent::" + std::string(npu_ops_emu::HardEventName(static_cast<int>(evt))) +
                                          " id " + std::to_string(id) + " is held by " + *who + ", not by the kernel");
    c.ReleaseEvent(static_cast<int>(evt), id);
  }
  void Destroy() {}

 private:
  // Places `num` buffers of `len` bytes (rounded up to 32 B) after the previous ones.
  uint32_t Reserve(const char* api, uint32_t num, uint32_t len) {
    auto& c = npu_ops_emu::Ctx();
    uint32_t aligned = (len + 31) / 32 * 32;
    if (len == 0) c.Fail(api, "buffer length must be > 0");
    c.buffers += num;
    if (c.buffers > 64)
      c.Fail(api, "more than 64 buffers across all InitBuffer calls (" + npu_ops_emu::Str(c.buffers) + ")");
    uint64_t end = uint64_t(c.ub_used) + uint64_t(num) * aligned;
    if (end > c.opt.ub_bytes)
      c.Fail(api, "UB capacity exceeded: " + npu_ops_emu::Str(num) + " x " + npu_ops_emu::Str(aligned) +
                      " bytes on top of " + npu_ops_emu::Str(c.ub_used) + " bytes needs " + npu_ops_emu::Str(end) +
                      " bytes; usable UB on dav-2201 is " + npu_ops_emu::Str(c.opt.ub_bytes) +
                      " bytes (192 KB - 256 B - 8 KB reserved)");
    base_ = c.ub_used;
    c.ub_used = static_cast<uint32_t>(end);
    c.GrowShadow(c.ub_used);
    return aligned;
  }
  uint32_t base_ = 0;
};

inline int64_t GetBlockIdx() {
  return npu_ops_emu::Ctx().block_idx;
}
inline int64_t GetBlockNum() {
  return npu_ops_emu::Ctx().block_num;
}

}  // namespace AscendC
