// Small kernels that each break one documented dav-2201 rule (the emulator must stop them with a
// clear error), and a few that follow the rules closely (they must pass and compute the right
// values). A CANN CPU-debug style driver: `rule_kernels <name>` runs one of them with ICPU_RUN_KF.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <string>

#include "kernel_operator.h"
#include "tikicpulib.h"

using namespace AscendC;

constexpr uint32_t kElems = 4096;  // floats per GM buffer
constexpr uint32_t kTile = 256;    // floats per tile

#define KERNEL(name) extern "C" __global__ __aicore__ void name(GM_ADDR x, GM_ADDR y)

// ---- rules that must fire -------------------------------------------------------------------------

KERNEL(ub_capacity) {
  TPipe pipe;
  TQue<TPosition::VECIN, 1> q;
  pipe.InitBuffer(q, 2, 100 * 1024);  // 200 KB > 188160 B usable
}

KERNEL(ub_align) {
  TPipe pipe;
  TBuf<TPosition::VECCALC> buf;
  pipe.InitBuffer(buf, kTile * 4);
  LocalTensor<float> t = buf.Get<float>();
  Duplicate(t, 1.0f, kTile);
  PipeBarrier<PIPE_V>();
  Adds(t[1], t[1], 1.0f, 64);  // starts 4 bytes into a 32-byte block
}

KERNEL(copy_len) {
  TPipe pipe;
  TQue<TPosition::VECIN, 1> q;
  pipe.InitBuffer(q, 1, kTile * 4);
  GlobalTensor<float> g;
  g.SetGlobalBuffer((__gm__ float*)x, kElems);
  LocalTensor<float> t = q.AllocTensor<float>();
  DataCopy(t, g, 7);  // 28 bytes: hardware would drop them all
  q.EnQue(t);
  t = q.DeQue<float>();
  q.FreeTensor(t);
}

KERNEL(gm_bounds) {
  TPipe pipe;
  TQue<TPosition::VECIN, 1> q;
  pipe.InitBuffer(q, 1, kTile * 4);
  GlobalTensor<float> g;
  g.SetGlobalBuffer((__gm__ float*)x + 64, 128);
  LocalTensor<float> t = q.AllocTensor<float>();
  DataCopy(t, g, 256);  // 256 elements of a 128-element GlobalTensor
  q.EnQue(t);
  t = q.DeQue<float>();
  q.FreeTensor(t);
}

KERNEL(gm_unknown) {
  static float not_gm[64];
  GlobalTensor<float> g;
  g.SetGlobalBuffer(not_gm, 64);
}

KERNEL(deque_empty) {
  TPipe pipe;
  TQue<TPosition::VECIN, 1> q;
  pipe.InitBuffer(q, 1, kTile * 4);
  LocalTensor<float> t = q.DeQue<float>();
  q.FreeTensor(t);
}

KERNEL(double_free) {
  TPipe pipe;
  TQue<TPosition::VECOUT, 1> q;
  pipe.InitBuffer(q, 1, kTile * 4);
  LocalTensor<float> t = q.AllocTensor<float>();
  q.FreeTensor(t);
  q.FreeTensor(t);
}

KERNEL(alloc_leak) {
  TPipe pipe;
  TQue<TPosition::VECOUT, 1> q;
  pipe.InitBuffer(q, 2, kTile * 4);
  LocalTensor<float> t = q.AllocTensor<float>();
  Duplicate(t, 0.0f, kTile);
}

KERNEL(queue_depth) {
  TPipe pipe;
  TQue<TPosition::VECOUT, 1> q;
  pipe.InitBuffer(q, 2, kTile * 4);
  LocalTensor<float> a = q.AllocTensor<float>();
  LocalTensor<float> b = q.AllocTensor<float>();
  q.EnQue(a);
  q.EnQue(b);  // depth 1
}

KERNEL(alloc_too_many) {
  TPipe pipe;
  TQue<TPosition::VECIN, 1> q;
  pipe.InitBuffer(q, 9, 1024);
  for (int i = 0; i < 9; ++i) q.AllocTensor<float>();  // at most 8 per TPosition
}

KERNEL(buffers_64) {
  TPipe pipe;
  TBuf<TPosition::VECCALC> bufs[65];
  for (auto& b : bufs) pipe.InitBuffer(b, 32);
}

KERNEL(repeat_limit) {
  TPipe pipe;
  TBuf<TPosition::VECCALC> buf;
  pipe.InitBuffer(buf, 64 * 1024);
  LocalTensor<float> t = buf.Get<float>();
  Duplicate(t, 1.0f, 16 * 1024);
  PipeBarrier<PIPE_V>();
  BinaryRepeatParams p;
  Add(t, t, t, 64, 300, p);  // repeatTime is 8 bits on hardware
}

KERNEL(block_count) {
  TPipe pipe;
  TQue<TPosition::VECIN, 1> q;
  pipe.InitBuffer(q, 1, kTile * 4);
  GlobalTensor<float> g;
  g.SetGlobalBuffer((__gm__ float*)x, kElems);
  LocalTensor<float> t = q.AllocTensor<float>();
  DataCopyParams p(5000, 1, 0, 0);  // blockCount <= 4095
  DataCopy(t, g, p);
  q.EnQue(t);
  t = q.DeQue<float>();
  q.FreeTensor(t);
}

KERNEL(compare_align) {
  TPipe pipe;
  TBuf<TPosition::VECCALC> a, bits;
  pipe.InitBuffer(a, kTile * 4);
  pipe.InitBuffer(bits, 256);
  LocalTensor<float> t = a.Get<float>();
  LocalTensor<uint8_t> m = bits.Get<uint8_t>();
  Duplicate(t, 1.0f, kTile);
  PipeBarrier<PIPE_V>();
  Compare(m, t, t, CMPMODE::EQ, 8);  // 32 bytes, not a multiple of 256
}

KERNEL(gather_align) {
  TPipe pipe;
  TBuf<TPosition::VECCALC> a, b, off;
  pipe.InitBuffer(a, kTile * 4);
  pipe.InitBuffer(b, kTile * 4);
  pipe.InitBuffer(off, kTile * 4);
  LocalTensor<float> src = a.Get<float>();
  LocalTensor<float> dst = b.Get<float>();
  LocalTensor<uint32_t> o = off.Get<uint32_t>();
  Duplicate(src, 1.0f, kTile);
  Duplicate(o, 6u, 8);  // byte offset 6 of a float tensor
  PipeBarrier<PIPE_V>();
  Gather(dst, src, o, 0, 8);
}

KERNEL(atomic_left_on) {
  SetAtomicAdd<float>();
}

KERNEL(atomic_type) {
  TPipe pipe;
  TQue<TPosition::VECOUT, 1> q;
  pipe.InitBuffer(q, 1, kTile * 4);
  GlobalTensor<float> g;
  g.SetGlobalBuffer((__gm__ float*)y, kElems);
  LocalTensor<float> t = q.AllocTensor<float>();
  Duplicate(t, 1.0f, kTile);
  q.EnQue(t);
  t = q.DeQue<float>();
  SetAtomicAdd<half>();
  DataCopy(g, t, kTile);  // float data, half accumulation
  SetAtomicNone();
  q.FreeTensor(t);
}

KERNEL(pad_too_wide) {
  TPipe pipe;
  TQue<TPosition::VECIN, 1> q;
  pipe.InitBuffer(q, 1, kTile * 4);
  GlobalTensor<float> g;
  g.SetGlobalBuffer((__gm__ float*)x, kElems);
  LocalTensor<float> t = q.AllocTensor<float>();
  DataCopyPad(t, g, DataCopyExtParams(1, 20, 0, 0, 0), DataCopyPadExtParams<float>(true, 0, 9, 0.0f));  // 36 B
  q.EnQue(t);
  t = q.DeQue<float>();
  q.FreeTensor(t);
}

// Every block writes the same 256 floats: only one write can win on hardware.
KERNEL(race_write) {
  TPipe pipe;
  TQue<TPosition::VECOUT, 1> q;
  pipe.InitBuffer(q, 1, kTile * 4);
  GlobalTensor<float> g;
  g.SetGlobalBuffer((__gm__ float*)y, kElems);
  LocalTensor<float> t = q.AllocTensor<float>();
  Duplicate(t, float(GetBlockIdx()), kTile);
  q.EnQue(t);
  t = q.DeQue<float>();
  DataCopy(g, t, kTile);
  q.FreeTensor(t);
}

// Block b writes tile b and reads tile b+1, which block b+1 writes.
KERNEL(race_read) {
  TPipe pipe;
  TQue<TPosition::VECIN, 1> qi;
  TQue<TPosition::VECOUT, 1> qo;
  pipe.InitBuffer(qi, 1, kTile * 4);
  pipe.InitBuffer(qo, 1, kTile * 4);
  GlobalTensor<float> g;
  g.SetGlobalBuffer((__gm__ float*)y, kElems);
  int64_t b = GetBlockIdx();
  LocalTensor<float> in = qi.AllocTensor<float>();
  DataCopy(in, g[(b + 1) * kTile], kTile);
  qi.EnQue(in);
  in = qi.DeQue<float>();
  LocalTensor<float> out = qo.AllocTensor<float>();
  Adds(out, in, 1.0f, kTile);
  qo.EnQue(out);
  qi.FreeTensor(in);
  out = qo.DeQue<float>();
  DataCopy(g[b * kTile], out, kTile);
  qo.FreeTensor(out);
}

// MTE2 fills a TBuf and the vector unit reads it with nothing in between.
KERNEL(hazard_raw) {
  TPipe pipe;
  TBuf<TPosition::VECCALC> buf;
  pipe.InitBuffer(buf, 2 * kTile * 4);
  GlobalTensor<float> g;
  g.SetGlobalBuffer((__gm__ float*)x, kElems);
  LocalTensor<float> a = buf.Get<float>();
  DataCopy(a, g, kTile);
  Adds(a[kTile], a, 1.0f, kTile);
}

// The vector unit reads a tile; MTE2 overwrites it with the next one before V is known to be done.
KERNEL(hazard_war) {
  TPipe pipe;
  TBuf<TPosition::VECCALC> buf;
  pipe.InitBuffer(buf, 2 * kTile * 4);
  GlobalTensor<float> g;
  g.SetGlobalBuffer((__gm__ float*)x, kElems);
  LocalTensor<float> a = buf.Get<float>();
  DataCopy(a, g, kTile);
  SetFlag<HardEvent::MTE2_V>(0);
  WaitFlag<HardEvent::MTE2_V>(0);
  Adds(a[kTile], a, 1.0f, kTile);
  DataCopy(a, g[kTile], kTile);
}

// A scalar read of a vector result needs V_S.
KERNEL(hazard_scalar) {
  TPipe pipe;
  TBuf<TPosition::VECCALC> buf;
  pipe.InitBuffer(buf, kTile * 4);
  LocalTensor<float> a = buf.Get<float>();
  Duplicate(a, 2.0f, kTile);
  float v = a.GetValue(3);
  (void)v;
}

KERNEL(flag_unpaired) {
  SetFlag<HardEvent::MTE2_V>(1);
}

KERNEL(flag_double_set) {
  SetFlag<HardEvent::V_MTE3>(2);
  SetFlag<HardEvent::V_MTE3>(2);
}

KERNEL(wait_without_set) {
  WaitFlag<HardEvent::MTE3_MTE2>(0);
}

KERNEL(event_id_range) {
  SetFlag<HardEvent::S_V>(9);
  WaitFlag<HardEvent::S_V>(9);
}

KERNEL(sync_all_deadlock) {
  KERNEL_TASK_TYPE_DEFAULT(KERNEL_TYPE_MIX_AIV_1_0);
  if (GetBlockIdx() == 0) return;  // never reaches the barrier the others wait in
  SyncAll();
}

KERNEL(partial_overlap) {
  TPipe pipe;
  TBuf<TPosition::VECCALC> buf;
  pipe.InitBuffer(buf, kTile * 4);
  LocalTensor<float> a = buf.Get<float>();
  Duplicate(a, 1.0f, kTile);
  PipeBarrier<PIPE_V>();
  Add(a[8], a, a, 64);
}

KERNEL(two_pipes) {
  TPipe one;
  TPipe two;
}

KERNEL(uninit_read) {
  // Reading a freshly allocated tensor: nothing fails, but the data is poison (NaN).
  TPipe pipe;
  TQue<TPosition::VECOUT, 1> q;
  pipe.InitBuffer(q, 1, kTile * 4);
  GlobalTensor<float> g;
  g.SetGlobalBuffer((__gm__ float*)y + GetBlockIdx() * kTile, kTile);
  LocalTensor<float> t = q.AllocTensor<float>();
  q.EnQue(t);
  t = q.DeQue<float>();
  DataCopy(g, t, kTile);
  q.FreeTensor(t);
}

// ---- event ids the queues hold (kernel_tquebind_impl.h: EnQue/FreeTensor take ids from the pipe) --

// FreeTensor of a VECIN buffer takes V_MTE2 id 0 until the buffer's next AllocTensor; the kernel
// then sets the same (event, id) with a literal id.
KERNEL(flag_held_by_queue) {
  TPipe pipe;
  TQue<TPosition::VECIN, 1> q;
  pipe.InitBuffer(q, 1, kTile * 4);
  GlobalTensor<float> g;
  g.SetGlobalBuffer((__gm__ float*)x, kElems);
  LocalTensor<float> t = q.AllocTensor<float>();
  DataCopy(t, g, kTile);
  q.EnQue(t);
  t = q.DeQue<float>();
  q.FreeTensor(t);
  SetFlag<HardEvent::V_MTE2>(EVENT_ID0);
  WaitFlag<HardEvent::V_MTE2>(EVENT_ID0);
}

// EnQue of a VECOUT tensor takes V_MTE3 id 0 until DeQue.
KERNEL(flag_held_enque) {
  TPipe pipe;
  TQue<TPosition::VECOUT, 1> q;
  pipe.InitBuffer(q, 1, kTile * 4);
  LocalTensor<float> t = q.AllocTensor<float>();
  Duplicate(t, 1.0f, kTile);
  q.EnQue(t);
  SetFlag<HardEvent::V_MTE3>(EVENT_ID0);
  WaitFlag<HardEvent::V_MTE3>(EVENT_ID0);
  t = q.DeQue<float>();
  q.FreeTensor(t);
}

// The kernel sets V_MTE2 id 0 while it is free; FreeTensor then takes the lowest free id (0) and
// sets it a second time.
KERNEL(queue_takes_set_flag) {
  TPipe pipe;
  TQue<TPosition::VECIN, 1> q;
  pipe.InitBuffer(q, 1, kTile * 4);
  LocalTensor<float> t = q.AllocTensor<float>();
  SetFlag<HardEvent::V_MTE2>(EVENT_ID0);
  q.FreeTensor(t);
  WaitFlag<HardEvent::V_MTE2>(EVENT_ID0);
}

// Nine VECIN buffers, each freed once: every freed buffer holds a V_MTE2 id until it is allocated
// again, and there are 8 (QUE_MAX_EVENT).
KERNEL(event_ids_exhausted) {
  TPipe pipe;
  TQue<TPosition::VECIN, 1> q;
  pipe.InitBuffer(q, 9, 1024);
  for (int i = 0; i < 9; ++i) {
    LocalTensor<float> t = q.AllocTensor<float>();
    q.EnQue(t);
    t = q.DeQue<float>();
    q.FreeTensor(t);
  }
}

// ---- cross-repeat operand overlap (通用说明和约束.md, 通用地址重叠约束) ---------------------------------

// Repeat r writes t[64 (r + 1) ...], which repeat r + 1 reads.
KERNEL(repeat_overlap) {
  TPipe pipe;
  TBuf<TPosition::VECCALC> buf;
  pipe.InitBuffer(buf, 5 * 64 * 4);
  LocalTensor<float> t = buf.Get<float>();
  Duplicate(t, 1.0f, 5 * 64);
  PipeBarrier<PIPE_V>();
  Adds(t[64], t, 1.0f, 64, 3, UnaryRepeatParams(1, 1, 8, 8));
}

// Accumulating rows into dst == src0 (repeat stride 0): only dst == src1 is the documented exception.
KERNEL(accumulate_src0) {
  TPipe pipe;
  TBuf<TPosition::VECCALC> buf;
  pipe.InitBuffer(buf, 4 * 64 * 4);
  LocalTensor<float> acc = buf.Get<float>();
  LocalTensor<float> v = acc[64];
  Duplicate(acc, 1.0f, 4 * 64);
  PipeBarrier<PIPE_V>();
  Add(acc, acc, v, 64, 3, BinaryRepeatParams(1, 1, 1, 0, 0, 8));
}

// half -> float in place: a widening Cast reads bytes that its earlier repeats wrote.
KERNEL(cast_widen_inplace) {
  TPipe pipe;
  TBuf<TPosition::VECCALC> buf;
  pipe.InitBuffer(buf, kTile * 4);
  LocalTensor<half> h = buf.Get<half>();
  Duplicate(h, half(1.0f), kTile);
  PipeBarrier<PIPE_V>();
  Cast(h.ReinterpretCast<float>(), h, RoundMode::CAST_NONE, kTile);
}

// ---- same-pipe DMA overlap (PipeBarrier(ISASI).md) ---------------------------------------------

KERNEL(dma_overlap_mte2) {
  TPipe pipe;
  TBuf<TPosition::VECCALC> buf;
  pipe.InitBuffer(buf, kTile * 4);
  GlobalTensor<float> g;
  g.SetGlobalBuffer((__gm__ float*)x, kElems);
  LocalTensor<float> a = buf.Get<float>();
  DataCopy(a, g, kTile);
  DataCopy(a, g[kTile], kTile);  // the same UB bytes again: no PipeBarrier<PIPE_MTE2> between
  SetFlag<HardEvent::MTE2_V>(EVENT_ID0);
  WaitFlag<HardEvent::MTE2_V>(EVENT_ID0);
}

KERNEL(dma_overlap_mte3) {
  TPipe pipe;
  TQue<TPosition::VECOUT, 1> q;
  pipe.InitBuffer(q, 1, kTile * 4);
  GlobalTensor<float> g;
  g.SetGlobalBuffer((__gm__ float*)y, kElems);
  LocalTensor<float> t = q.AllocTensor<float>();
  Duplicate(t, 1.0f, kTile);
  q.EnQue(t);
  t = q.DeQue<float>();
  DataCopy(g, t, kTile);
  DataCopy(g[8], t, kTile);  // overlapping GM bytes: no PipeBarrier<PIPE_MTE3> between
  q.FreeTensor(t);
}

// ---- A2 instruction semantics -------------------------------------------------------------------

// The count form stores count / 64 in an 8-bit repeat: 16384 floats gather nothing on hardware.
KERNEL(gather_repeat_8bit) {
  TPipe pipe;
  TBuf<TPosition::VECCALC> s, d, o;
  pipe.InitBuffer(s, kTile * 4);
  pipe.InitBuffer(d, 16384 * 4);
  pipe.InitBuffer(o, 16384 * 4);
  LocalTensor<float> src = s.Get<float>();
  LocalTensor<float> dst = d.Get<float>();
  LocalTensor<uint32_t> off = o.Get<uint32_t>();
  Duplicate(src, 1.0f, kTile);
  Duplicate(off, 0u, 16384);
  PipeBarrier<PIPE_V>();
  Gather(dst, src, off, 0, 16384);
}

// Compares processes whole 256-byte repeats only: 70 floats leave 6 uncompared.
KERNEL(compares_tail) {
  TPipe pipe;
  TBuf<TPosition::VECCALC> a, bits;
  pipe.InitBuffer(a, kTile * 4);
  pipe.InitBuffer(bits, 256);
  LocalTensor<float> t = a.Get<float>();
  LocalTensor<uint8_t> m = bits.Get<uint8_t>();
  Duplicate(t, 1.0f, kTile);
  PipeBarrier<PIPE_V>();
  Compares(m, t, 0.5f, CMPMODE::GT, 70);
}

KERNEL(compare_int32_mode) {
  TPipe pipe;
  TBuf<TPosition::VECCALC> a, bits;
  pipe.InitBuffer(a, kTile * 4);
  pipe.InitBuffer(bits, 256);
  LocalTensor<int32_t> t = a.Get<int32_t>();
  LocalTensor<uint8_t> m = bits.Get<uint8_t>();
  Duplicate(t, 3, kTile);
  PipeBarrier<PIPE_V>();
  Compare(m, t, t, CMPMODE::LT, 64);  // int32_t supports only EQ
}

KERNEL(cast_s16_rint) {
  TPipe pipe;
  TBuf<TPosition::VECCALC> a, b;
  pipe.InitBuffer(a, kTile * 2);
  pipe.InitBuffer(b, kTile * 4);
  LocalTensor<int16_t> s = a.Get<int16_t>();
  LocalTensor<float> f = b.Get<float>();
  Duplicate(s, int16_t(3), kTile);
  PipeBarrier<PIPE_V>();
  Cast(f, s, RoundMode::CAST_RINT, kTile);  // A2 has int16_t -> float only with CAST_NONE
}

// ---- kernel type and SyncAll --------------------------------------------------------------------

KERNEL(sync_all_kernel_type) {
  SyncAll();  // a pure-vector kernel needs KERNEL_TYPE_MIX_AIV_1_0 for the hardware SyncAll
}

KERNEL(sync_all_cores) {
  KERNEL_TASK_TYPE_DEFAULT(KERNEL_TYPE_MIX_AIV_1_0);
  SyncAll();  // launched on 49 blocks: more than the 48 vector cores
}

// ---- kernels that follow the rules --------------------------------------------------------------

// y[i] = 2 * x[i] + 1 for 4096 floats, 256 per tile, tiles spread over blocks; explicit flags, a
// DataCopyPad tail of 13 floats per tile row, and a scalar read guarded by V_S.
KERNEL(ok_flags) {
  TPipe pipe;
  TBuf<TPosition::VECCALC> buf;
  constexpr uint32_t kRow = kTile + 32;  // a tile plus room for the padded tail
  pipe.InitBuffer(buf, 2 * kRow * 4);
  GlobalTensor<float> gx, gy;
  gx.SetGlobalBuffer((__gm__ float*)x, kElems);
  gy.SetGlobalBuffer((__gm__ float*)y, kElems);
  LocalTensor<float> a = buf.Get<float>();
  LocalTensor<float> b = a[kRow];
  for (uint32_t tile = GetBlockIdx(); tile < kElems / kTile; tile += GetBlockNum()) {
    if (tile != static_cast<uint32_t>(GetBlockIdx())) {  // previous MTE3 must finish reading b
      SetFlag<HardEvent::MTE3_V>(0);
      WaitFlag<HardEvent::MTE3_V>(0);
      SetFlag<HardEvent::V_MTE2>(0);
      WaitFlag<HardEvent::V_MTE2>(0);
    }
    DataCopyPad(a, gx[tile * kTile], DataCopyExtParams(1, (kTile - 13) * 4, 0, 0, 0),
                DataCopyPadExtParams<float>(true, 0, 5, 0.0f));
    DataCopyPad(a[kTile - 8], gx[tile * kTile + kTile - 13], DataCopyExtParams(1, 13 * 4, 0, 0, 0),
                DataCopyPadExtParams<float>(false, 0, 0, 0.0f));
    SetFlag<HardEvent::MTE2_V>(0);
    WaitFlag<HardEvent::MTE2_V>(0);
    // a holds x[0:243] at [0:243], zero pad at [243:248], and x[243:256] at [248:261] + dummy.
    Muls(b, a, 2.0f, kTile - 8);
    Muls(b[kTile - 8], a[kTile - 8], 2.0f, 16);
    PipeBarrier<PIPE_V>();
    Adds(b, b, 1.0f, kTile + 8);
    SetFlag<HardEvent::V_S>(0);
    WaitFlag<HardEvent::V_S>(0);
    float first = b.GetValue(0);
    (void)first;
    SetFlag<HardEvent::V_MTE3>(0);
    WaitFlag<HardEvent::V_MTE3>(0);
    DataCopyPad(gy[tile * kTile], b, DataCopyExtParams(1, (kTile - 13) * 4, 0, 0, 0));
    DataCopyPad(gy[tile * kTile + kTile - 13], b[kTile - 8], DataCopyExtParams(1, 13 * 4, 0, 0, 0));
  }
}

// Every block atomically adds 1 to all 4096 floats of y.
KERNEL(ok_atomic) {
  TPipe pipe;
  TQue<TPosition::VECOUT, 1> q;
  pipe.InitBuffer(q, 1, kElems * 4);
  GlobalTensor<float> g;
  g.SetGlobalBuffer((__gm__ float*)y, kElems);
  LocalTensor<float> t = q.AllocTensor<float>();
  Duplicate(t, 1.0f, kElems);
  q.EnQue(t);
  t = q.DeQue<float>();
  SetAtomicAdd<float>();
  DataCopy(g, t, kElems);
  SetAtomicNone();
  q.FreeTensor(t);
}

// Phase 1: block b writes tile b of y. SyncAll. Phase 2: block b reads tile b+1 (another block's)
// and writes it into x's tile b.
KERNEL(ok_sync_all) {
  KERNEL_TASK_TYPE_DEFAULT(KERNEL_TYPE_MIX_AIV_1_0);
  TPipe pipe;
  TQue<TPosition::VECOUT, 1> qo;
  TQue<TPosition::VECIN, 1> qi;
  pipe.InitBuffer(qo, 1, kTile * 4);
  pipe.InitBuffer(qi, 1, kTile * 4);
  GlobalTensor<float> gx, gy;
  gx.SetGlobalBuffer((__gm__ float*)x, kElems);
  gy.SetGlobalBuffer((__gm__ float*)y, kElems);
  int64_t b = GetBlockIdx(), n = GetBlockNum();
  LocalTensor<float> t = qo.AllocTensor<float>();
  Duplicate(t, float(b), kTile);
  qo.EnQue(t);
  t = qo.DeQue<float>();
  DataCopy(gy[b * kTile], t, kTile);
  qo.FreeTensor(t);
  SyncAll();
  LocalTensor<float> in = qi.AllocTensor<float>();
  DataCopy(in, gy[((b + 1) % n) * kTile], kTile);
  qi.EnQue(in);
  in = qi.DeQue<float>();
  LocalTensor<float> out = qo.AllocTensor<float>();
  DataCopy(out, in, kTile);
  qo.EnQue(out);
  qi.FreeTensor(in);
  out = qo.DeQue<float>();
  DataCopy(gx[b * kTile], out, kTile);
  qo.FreeTensor(out);
}

// Event ids as the pipe hands them out next to the queues' own (written to y as int32).
KERNEL(ok_event_ids) {
  TPipe pipe;
  TQue<TPosition::VECIN, 1> q;
  pipe.InitBuffer(q, 2, kTile * 4);
  GlobalTensor<float> gx;
  GlobalTensor<int32_t> gy;
  gx.SetGlobalBuffer((__gm__ float*)x, kElems);
  gy.SetGlobalBuffer((__gm__ int32_t*)y + GetBlockIdx() * 8, 8);
  int32_t ids[8];
  ids[0] = pipe.FetchEventID(HardEvent::V_MTE2);  // 0: nothing held
  LocalTensor<float> a = q.AllocTensor<float>();
  DataCopy(a, gx, kTile);
  q.EnQue(a);                                       // buffer 0 holds MTE2_V 0
  ids[1] = pipe.FetchEventID<HardEvent::MTE2_V>();  // 1
  a = q.DeQue<float>();
  q.FreeTensor(a);                                        // buffer 0 holds V_MTE2 0
  ids[2] = pipe.FetchEventID(HardEvent::V_MTE2);          // 1
  TEventID own = pipe.AllocEventID<HardEvent::V_MTE2>();  // 1
  ids[3] = own;
  LocalTensor<float> b = q.AllocTensor<float>();  // buffer 1
  q.FreeTensor(b);                                // buffer 1 holds V_MTE2 2
  ids[4] = pipe.FetchEventID(HardEvent::V_MTE2);  // 3
  SetFlag<HardEvent::V_MTE2>(own);
  WaitFlag<HardEvent::V_MTE2>(own);
  pipe.ReleaseEventID<HardEvent::V_MTE2>(own);
  a = q.AllocTensor<float>();                     // buffer 0 again: releases V_MTE2 0
  ids[5] = pipe.FetchEventID(HardEvent::V_MTE2);  // 0
  q.FreeTensor(a);                                // buffer 0 holds V_MTE2 0 again
  ids[6] = pipe.FetchEventID(HardEvent::V_MTE2);  // 1
  ids[7] = pipe.FetchEventID(HardEvent::MTE2_V);  // 0: DeQue released it
  for (int i = 0; i < 8; ++i) gy.SetValue(i, ids[i]);
}

// Two DMAs into the same UB bytes, and two to the same GM bytes, each pair ordered by its pipe's
// barrier: the second copy wins.
KERNEL(ok_dma_barrier) {
  TPipe pipe;
  TBuf<TPosition::VECCALC> buf;
  pipe.InitBuffer(buf, kTile * 4);
  GlobalTensor<float> gx, gy;
  gx.SetGlobalBuffer((__gm__ float*)x, kElems);
  gy.SetGlobalBuffer((__gm__ float*)y, kElems);
  LocalTensor<float> a = buf.Get<float>();
  DataCopy(a, gx, kTile);
  PipeBarrier<PIPE_MTE2>();
  DataCopy(a, gx[kTile], kTile);
  SetFlag<HardEvent::MTE2_MTE3>(EVENT_ID0);
  WaitFlag<HardEvent::MTE2_MTE3>(EVENT_ID0);
  DataCopy(gy, a, kTile);
  PipeBarrier<PIPE_MTE3>();
  DataCopy(gy[8], a, kTile);
}

// ---- driver ---------------------------------------------------------------------------------------

int main(int argc, char** argv) {
  using K = void (*)(GM_ADDR, GM_ADDR);
  std::map<std::string, std::pair<K, uint32_t>> kernels = {
      {"ub_capacity", {ub_capacity, 1}},
      {"ub_align", {ub_align, 1}},
      {"copy_len", {copy_len, 1}},
      {"gm_bounds", {gm_bounds, 1}},
      {"gm_unknown", {gm_unknown, 1}},
      {"deque_empty", {deque_empty, 1}},
      {"double_free", {double_free, 1}},
      {"alloc_leak", {alloc_leak, 1}},
      {"queue_depth", {queue_depth, 1}},
      {"alloc_too_many", {alloc_too_many, 1}},
      {"buffers_64", {buffers_64, 1}},
      {"repeat_limit", {repeat_limit, 1}},
      {"block_count", {block_count, 1}},
      {"compare_align", {compare_align, 1}},
      {"gather_align", {gather_align, 1}},
      {"atomic_left_on", {atomic_left_on, 1}},
      {"atomic_type", {atomic_type, 1}},
      {"pad_too_wide", {pad_too_wide, 1}},
      {"race_write", {race_write, 4}},
      {"race_read", {race_read, 4}},
      {"hazard_raw", {hazard_raw, 1}},
      {"hazard_war", {hazard_war, 1}},
      {"hazard_scalar", {hazard_scalar, 1}},
      {"flag_unpaired", {flag_unpaired, 1}},
      {"flag_double_set", {flag_double_set, 1}},
      {"wait_without_set", {wait_without_set, 1}},
      {"event_id_range", {event_id_range, 1}},
      {"sync_all_deadlock", {sync_all_deadlock, 3}},
      {"partial_overlap", {partial_overlap, 1}},
      {"two_pipes", {two_pipes, 1}},
      {"uninit_read", {uninit_read, 4}},
      {"flag_held_by_queue", {flag_held_by_queue, 1}},
      {"flag_held_enque", {flag_held_enque, 1}},
      {"queue_takes_set_flag", {queue_takes_set_flag, 1}},
      {"event_ids_exhausted", {event_ids_exhausted, 1}},
      {"repeat_overlap", {repeat_overlap, 1}},
      {"accumulate_src0", {accumulate_src0, 1}},
      {"cast_widen_inplace", {cast_widen_inplace, 1}},
      {"dma_overlap_mte2", {dma_overlap_mte2, 1}},
      {"dma_overlap_mte3", {dma_overlap_mte3, 1}},
      {"gather_repeat_8bit", {gather_repeat_8bit, 1}},
      {"compares_tail", {compares_tail, 1}},
      {"compare_int32_mode", {compare_int32_mode, 1}},
      {"cast_s16_rint", {cast_s16_rint, 1}},
      {"sync_all_kernel_type", {sync_all_kernel_type, 2}},
      {"sync_all_cores", {sync_all_cores, 49}},
      {"ok_event_ids", {ok_event_ids, 2}},
      {"ok_dma_barrier", {ok_dma_barrier, 1}},
      {"ok_flags", {ok_flags, 5}},
      {"ok_atomic", {ok_atomic, 7}},
      {"ok_sync_all", {ok_sync_all, 6}},
  };
  if (argc < 2 || !kernels.count(argv[1])) {
    std::fprintf(stderr, "usage: %s <kernel>; kernels:", argv[0]);
    for (auto& [k, v] : kernels) std::fprintf(stderr, " %s", k.c_str());
    std::fprintf(stderr, "\n");
    return 2;
  }
  std::string name = argv[1];
  auto [kernel, blocks] = kernels[name];
  float* x = static_cast<float*>(AscendC::GmAlloc(kElems * sizeof(float)));
  float* y = static_cast<float*>(AscendC::GmAlloc(kElems * sizeof(float)));
  for (uint32_t i = 0; i < kElems; ++i) x[i] = 0.5f * float(i % 101) - 7.0f;
  AscendC::SetKernelMode(KernelMode::AIV_MODE);
  ICPU_RUN_KF(kernel, blocks, (GM_ADDR)x, (GM_ADDR)y);  // exits 1 on a broken rule

  int bad = 0;
  if (name == "ok_flags") {
    for (uint32_t i = 0; i < kElems; ++i) bad += y[i] != 2.0f * x[i] + 1.0f;
  } else if (name == "ok_atomic") {
    for (uint32_t i = 0; i < kElems; ++i) bad += y[i] != float(blocks);
  } else if (name == "ok_sync_all") {
    for (uint32_t b = 0; b < blocks; ++b)
      for (uint32_t i = 0; i < kTile; ++i) bad += x[b * kTile + i] != float((b + 1) % blocks);
  } else if (name == "ok_event_ids") {
    const int32_t want[8] = {0, 1, 1, 1, 3, 0, 1, 0};
    const int32_t* got = reinterpret_cast<const int32_t*>(y);
    for (uint32_t b = 0; b < blocks; ++b)
      for (int i = 0; i < 8; ++i) bad += got[b * 8 + i] != want[i];
  } else if (name == "ok_dma_barrier") {
    for (uint32_t i = 0; i < 8; ++i) bad += y[i] != x[kTile + i];
    for (uint32_t i = 0; i < kTile; ++i) bad += y[8 + i] != x[kTile + i];
  } else if (name == "uninit_read") {
    for (uint32_t i = 0; i < blocks * kTile; ++i) bad += !std::isnan(y[i]);
  }
  AscendC::GmFree(x);
  AscendC::GmFree(y);
  std::printf("%s: %d wrong values\n", name.c_str(), bad);
  return bad ? 3 : 0;
}
