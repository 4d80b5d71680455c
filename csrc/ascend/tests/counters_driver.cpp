// The emulator's launch counters (npu_ops_emu::Stats) on a kernel whose instruction mix is known
// by construction, per block and in total. Emulator-only driver: it reads LastStats(), which
// CANN's tikicpulib does not have. Prints one "counter block value" line per check and
// "counters: N wrong values".
#include <cstdio>
#include <string>

#include "kernel_operator.h"
#include "tikicpulib.h"

using namespace AscendC;

constexpr uint32_t kBlocks = 3;
constexpr uint32_t kN = 64;  // floats per block in x, y and the gather source

// Block b: (b + 1) contiguous loads of 256 B, one strided load of 4 bursts of 32 B, one padded
// load of 2 rows of 12 B, a Gather of kN floats, one plain store of 256 B and, on odd blocks,
// one atomic store of 2 bursts of 32 B.
extern "C" __global__ __aicore__ void counters_kernel(GM_ADDR x, GM_ADDR y, GM_ADDR acc) {
  const uint32_t b = GetBlockIdx();
  GlobalTensor<float> xg, yg, accg;
  xg.SetGlobalBuffer((__gm__ float*)x + b * kN, kN);
  yg.SetGlobalBuffer((__gm__ float*)y + b * kN, kN);
  accg.SetGlobalBuffer((__gm__ float*)acc, 16);
  TPipe pipe;
  TBuf<TPosition::VECCALC> src_buf, dst_buf, off_buf;
  pipe.InitBuffer(src_buf, kN * sizeof(float));
  pipe.InitBuffer(dst_buf, kN * sizeof(float));
  pipe.InitBuffer(off_buf, kN * sizeof(uint32_t));
  LocalTensor<float> src = src_buf.Get<float>(), dst = dst_buf.Get<float>();
  LocalTensor<uint32_t> off = off_buf.Get<uint32_t>();

  for (uint32_t i = 0; i <= b; ++i) {
    DataCopy(src, xg, kN);
    PipeBarrier<PIPE_ALL>();
  }
  DataCopy(dst, xg, DataCopyParams(4, 1, 1, 0));  // 4 bursts of one 32 B block
  PipeBarrier<PIPE_ALL>();
  DataCopyPad(dst, xg, DataCopyExtParams(2, 12, 0, 0, 0), DataCopyPadExtParams<float>(false, 0, 0, 0.0f));
  PipeBarrier<PIPE_ALL>();
  for (uint32_t i = 0; i < kN; ++i) off.SetValue(i, (kN - 1 - i) * sizeof(float));
  PipeBarrier<PIPE_ALL>();
  Gather(dst, src, off, 0, kN);
  PipeBarrier<PIPE_ALL>();
  DataCopy(yg, dst, kN);
  PipeBarrier<PIPE_ALL>();
  if (b % 2 == 1) {
    SetAtomicAdd<float>();
    DataCopy(accg, dst, DataCopyParams(2, 1, 0, 0));
    SetAtomicNone();
  }
  PipeBarrier<PIPE_ALL>();
}

int wrong = 0;

void expect(const char* name, int block, uint64_t got, uint64_t want) {
  std::printf("%s %d %llu\n", name, block, static_cast<unsigned long long>(got));
  if (got != want) {
    std::printf("  WRONG: %s of block %d is %llu, expected %llu\n", name, block, static_cast<unsigned long long>(got),
                static_cast<unsigned long long>(want));
    ++wrong;
  }
}

int main() {
  auto* x = static_cast<uint8_t*>(GmAlloc(kBlocks * kN * sizeof(float)));
  auto* y = static_cast<uint8_t*>(GmAlloc(kBlocks * kN * sizeof(float)));
  auto* acc = static_cast<uint8_t*>(GmAlloc(16 * sizeof(float)));
  ICPU_RUN_KF(counters_kernel, kBlocks, x, y, acc);
  const npu_ops_emu::Stats& s = npu_ops_emu::LastStats();
  expect("blocks", -1, s.blocks, kBlocks);
  expect("per_block.size", -1, s.per_block.size(), kBlocks);
  npu_ops_emu::Counters sum;
  for (uint32_t b = 0; b < kBlocks; ++b) {
    const npu_ops_emu::Counters& c = s.per_block[b];
    const uint64_t loads = b + 1, atomic = b % 2;
    expect("dma_in_ops", b, c.dma_in_ops, loads + 2);
    expect("dma_out_ops", b, c.dma_out_ops, 1 + atomic);
    expect("atomic_dma_ops", b, c.atomic_dma_ops, atomic);
    expect("dma_ops", b, c.dma_ops, loads + 3 + atomic);
    expect("dma_bursts", b, c.dma_bursts, loads + 4 + 2 + 1 + 2 * atomic);
    expect("gm_read_bytes", b, c.gm_read_bytes, loads * 256 + 4 * 32 + 2 * 12);
    expect("gm_write_bytes", b, c.gm_write_bytes, 256 + 64 * atomic);
    expect("atomic_bytes", b, c.atomic_bytes, 64 * atomic);
    expect("gather_ops", b, c.gather_ops, 1);
    expect("gather_elements", b, c.gather_elements, kN);
    expect("gather_bytes", b, c.gather_bytes, kN * sizeof(float));
    expect("vector_repeats", b, c.vector_repeats, 1);  // the Gather: 256 B = one repeat
    expect("scalar_ub_ops", b, c.scalar_ub_ops, kN);
    sum += c;
  }
  expect("total.dma_ops", -1, s.dma_ops, sum.dma_ops);
  expect("total.dma_bursts", -1, s.dma_bursts, sum.dma_bursts);
  expect("total.gm_read_bytes", -1, s.gm_read_bytes, sum.gm_read_bytes);
  expect("total.atomic_bytes", -1, s.atomic_bytes, sum.atomic_bytes);
  expect("total.gather_elements", -1, s.gather_elements, sum.gather_elements);
  expect("total.sync_ops", -1, s.sync_ops, sum.sync_ops);
  const std::string json = s.ToJson();
  if (json.find("\"per_block\": [{") == std::string::npos || s.ToJson(false).find("per_block") != std::string::npos) {
    std::printf("  WRONG: ToJson per_block\n");
    ++wrong;
  }
  GmFree(x);
  GmFree(y);
  GmFree(acc);
  std::printf("counters: %d wrong values\n", wrong);
  return wrong == 0 ? 0 : 1;
}
