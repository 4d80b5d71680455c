// Semantics of the emulated vector and copy instructions that the op kernels do not all exercise:
// one block computes each instruction on known inputs and the driver checks every element against
// values computed on the host from the documented definitions.
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "kernel_operator.h"
#include "tikicpulib.h"

using namespace AscendC;

constexpr uint32_t N = 64;      // floats per operand (one 256-byte repeat)
constexpr uint32_t kOuts = 27;  // output slots of N floats

extern "C" __global__ __aicore__ void api_semantics(GM_ADDR x, GM_ADDR y) {
  TPipe pipe;
  TBuf<TPosition::VECCALC> buf, tiny;
  pipe.InitBuffer(buf, (2 + kOuts) * N * 4 + 5 * N * 4);
  pipe.InitBuffer(tiny, 8 * 4);
  GlobalTensor<float> gx, gy;
  gx.SetGlobalBuffer((__gm__ float*)x, 2 * N);
  gy.SetGlobalBuffer((__gm__ float*)y, kOuts * N);
  LocalTensor<float> a = buf.Get<float>();
  LocalTensor<float> b = a[N];
  LocalTensor<float> o = a[2 * N];
  LocalTensor<float> scratch = a[(2 + kOuts) * N];
  LocalTensor<uint32_t> offs = scratch.ReinterpretCast<uint32_t>();
  LocalTensor<uint8_t> bits = scratch[N].ReinterpretCast<uint8_t>();
  LocalTensor<half> h = scratch[2 * N].ReinterpretCast<half>();
  LocalTensor<int32_t> i32 = scratch[3 * N].ReinterpretCast<int32_t>();
  LocalTensor<int32_t> big = scratch[4 * N].ReinterpretCast<int32_t>();
  LocalTensor<float> tmp1 = tiny.Get<float>(1);  // a 1-element sharedTmpBuffer
  LocalTensor<float> tmp8 = tiny.Get<float>(8);
  for (uint32_t i = 0; i < N; ++i) big.SetValue(i, 16777217 + 2 * static_cast<int32_t>(i));  // odd: not floats

  DataCopy(a, gx, 2 * N);
  SetFlag<HardEvent::MTE2_V>(0);
  WaitFlag<HardEvent::MTE2_V>(0);
  Duplicate(o, 7.0f, kOuts * N);
  PipeBarrier<PIPE_V>();
  Div(o[0 * N], a, b, N);
  Max(o[1 * N], a, b, N);
  Min(o[2 * N], a, b, N);
  Maxs(o[3 * N], a, 10.0f, N);
  Mins(o[4 * N], a, 10.0f, N);
  Muls(o[5 * N], a, -1.0f, N);
  PipeBarrier<PIPE_V>();
  Abs(o[5 * N], o[5 * N], N);
  Sqrt(o[6 * N], a, N);
  Reciprocal(o[7 * N], a, N);
  Exp(o[8 * N], b, N);
  Ln(o[9 * N], a, N);
  Sub(o[10 * N], a, b, N);
  BinaryRepeatParams rp;
  Mul(o[11 * N], a, b, 32, 1, rp);                                     // first 32 lanes; the rest keep 7
  for (uint32_t i = 0; i < N; ++i) offs.SetValue(i, (N - 1 - i) * 4);  // reverse
  SetFlag<HardEvent::S_V>(0);
  WaitFlag<HardEvent::S_V>(0);
  Gather(o[12 * N], a, offs, 0, N);
  Compare(bits, a, b, CMPMODE::LT, N);
  PipeBarrier<PIPE_V>();
  Select(o[13 * N], bits, a, b, SELMODE::VSEL_TENSOR_TENSOR_MODE, N);
  Cast(h, a, RoundMode::CAST_FLOOR, N);
  PipeBarrier<PIPE_V>();
  Cast(o[14 * N], h, RoundMode::CAST_NONE, N);
  PipeBarrier<PIPE_V>();
  Cast(h, a, RoundMode::CAST_CEIL, N);
  PipeBarrier<PIPE_V>();
  Cast(o[15 * N], h, RoundMode::CAST_NONE, N);
  Cast(i32, b, RoundMode::CAST_ROUND, N);
  PipeBarrier<PIPE_V>();
  Cast(o[16 * N], i32, RoundMode::CAST_NONE, N);
  ReduceSum(o[17 * N], a, o[18 * N], N);  // o[18*N] is the tmp buffer: overwritten, not checked
  // A2 count-form ReduceSum (dav_c220 ReduceSumImpl: one vcadd in count mode) ignores its tmp
  // buffer and needs a 4-byte aligned fp32 dst (ReduceRepeat.md table 3).
  ReduceSum(o[20 * N + 1], a, tmp1, 2 * N);
  // ReduceMax without index: the first round's tmp size only (ReduceMax.md): 2 repeats -> 8 floats.
  ReduceMax(o[21 * N], a, tmp8, 2 * N);
  SetFlag<HardEvent::S_V>(0);
  WaitFlag<HardEvent::S_V>(0);
  Cast(o[22 * N], big, RoundMode::CAST_FLOOR, N);  // A2 Cast table: int32_t -> float with all modes
  Cast(o[23 * N], big, RoundMode::CAST_CEIL, N);
  Cast(o[24 * N], b, RoundMode::CAST_FLOOR, N);  // float -> float: round to an integral float
  Cast(o[25 * N], b, RoundMode::CAST_ROUND, N);
  // Accumulation with dst == src1 and repeat strides 0: the documented overlap exception.
  Add(o[26 * N], a, o[26 * N], 64, 2, BinaryRepeatParams(1, 1, 1, 0, 8, 0));
  SetFlag<HardEvent::V_MTE2>(0);
  WaitFlag<HardEvent::V_MTE2>(0);
  DataCopy(o[19 * N], gx, DataCopyParams(2, 1, 1, 0));  // x[0:8] and x[16:24] -> o[19N : 19N+16]
  SetFlag<HardEvent::MTE2_MTE3>(0);
  WaitFlag<HardEvent::MTE2_MTE3>(0);
  SetFlag<HardEvent::V_MTE3>(0);
  WaitFlag<HardEvent::V_MTE3>(0);
  DataCopy(gy, o, kOuts * N);
}

int main() {
  std::vector<float> hx(2 * N);
  for (uint32_t i = 0; i < N; ++i) {
    hx[i] = 0.1f + 0.37f * i;              // a: positive, crosses 10
    hx[N + i] = 13.0f - 0.41f * i - 0.5f;  // b: ties of .5 for CAST_ROUND appear at some i
  }
  float* x = static_cast<float*>(AscendC::GmAlloc(2 * N * 4));
  float* y = static_cast<float*>(AscendC::GmAlloc(kOuts * N * 4));
  std::copy(hx.begin(), hx.end(), x);
  AscendC::SetKernelMode(KernelMode::AIV_MODE);
  ICPU_RUN_KF(api_semantics, 1, (GM_ADDR)x, (GM_ADDR)y);

  const float* a = hx.data();
  const float* b = hx.data() + N;
  auto f16 = [](float v, bool up) {  // neighbouring half values around v
    half r = static_cast<half>(v);
    float rf = float(r);
    if (rf == v) return rf;
    uint16_t bitsv;
    std::memcpy(&bitsv, &r, 2);
    bool below = rf < v;
    if (below && up) bitsv = static_cast<uint16_t>(bitsv + 1);  // positive values only
    if (!below && !up) bitsv = static_cast<uint16_t>(bitsv - 1);
    std::memcpy(&r, &bitsv, 2);
    return float(r);
  };
  std::vector<std::pair<std::string, std::function<float(uint32_t)>>> expect = {
      {"Div", [&](uint32_t i) { return a[i] / b[i]; }},
      {"Max", [&](uint32_t i) { return std::max(a[i], b[i]); }},
      {"Min", [&](uint32_t i) { return std::min(a[i], b[i]); }},
      {"Maxs", [&](uint32_t i) { return std::max(a[i], 10.0f); }},
      {"Mins", [&](uint32_t i) { return std::min(a[i], 10.0f); }},
      {"Abs", [&](uint32_t i) { return a[i]; }},
      {"Sqrt", [&](uint32_t i) { return std::sqrt(a[i]); }},
      {"Reciprocal", [&](uint32_t i) { return 1.0f / a[i]; }},
      {"Exp", [&](uint32_t i) { return std::exp(b[i]); }},
      {"Ln", [&](uint32_t i) { return std::log(a[i]); }},
      {"Sub", [&](uint32_t i) { return a[i] - b[i]; }},
      {"Mul(mask 32)", [&](uint32_t i) { return i < 32 ? a[i] * b[i] : 7.0f; }},
      {"Gather(reverse)", [&](uint32_t i) { return a[N - 1 - i]; }},
      {"Compare+Select", [&](uint32_t i) { return a[i] < b[i] ? a[i] : b[i]; }},
      {"Cast FLOOR half", [&](uint32_t i) { return f16(a[i], false); }},
      {"Cast CEIL half", [&](uint32_t i) { return f16(a[i], true); }},
      {"Cast ROUND int32", [&](uint32_t i) { return std::round(b[i]); }},
  };
  int bad = 0;
  for (uint32_t k = 0; k < expect.size(); ++k)
    for (uint32_t i = 0; i < N; ++i) {
      float want = expect[k].second(i), got = y[k * N + i];
      if (!(got == want)) {
        if (bad < 10) std::printf("%s[%u]: got %.9g want %.9g\n", expect[k].first.c_str(), i, got, want);
        ++bad;
      }
    }
  float sum = 0;
  for (uint32_t i = 0; i < N; ++i) sum += a[i];
  if (std::fabs(y[17 * N] - sum) > 1e-4f * std::fabs(sum)) {
    std::printf("ReduceSum: got %.9g want %.9g\n", y[17 * N], sum);
    ++bad;
  }
  float sum2 = 0, max2 = -INFINITY;
  for (uint32_t i = 0; i < 2 * N; ++i) sum2 += hx[i], max2 = std::max(max2, hx[i]);
  if (std::fabs(y[20 * N + 1] - sum2) > 1e-4f * std::fabs(sum2)) {
    std::printf("ReduceSum(4-byte dst, 1-element tmp): got %.9g want %.9g\n", y[20 * N + 1], sum2);
    ++bad;
  }
  if (y[21 * N] != max2) {
    std::printf("ReduceMax(no index, 8-element tmp): got %.9g want %.9g\n", y[21 * N], max2);
    ++bad;
  }
  for (uint32_t i = 0; i < N; ++i) {
    const double v = 16777217.0 + 2.0 * i;  // halfway between the floats v - 1 and v + 1
    const float fl = static_cast<float>(v - 1), ce = static_cast<float>(v + 1);
    const float want[4] = {fl, ce, std::floor(b[i]), std::round(b[i])};
    for (uint32_t k = 0; k < 4; ++k)
      if (y[(22 + k) * N + i] != want[k]) {
        if (bad < 10) std::printf("Cast slot %u[%u]: got %.9g want %.9g\n", 22 + k, i, y[(22 + k) * N + i], want[k]);
        ++bad;
      }
    const float acc = b[i] + (a[i] + 7.0f);
    if (y[26 * N + i] != acc) {
      if (bad < 10) std::printf("Add(dst == src1, accumulate)[%u]: got %.9g want %.9g\n", i, y[26 * N + i], acc);
      ++bad;
    }
  }
  for (uint32_t i = 0; i < 16; ++i) {
    float want = hx[i < 8 ? i : i + 8];
    if (y[19 * N + i] != want) {
      std::printf("DataCopy(DataCopyParams)[%u]: got %g want %g\n", i, y[19 * N + i], want);
      ++bad;
    }
  }
  AscendC::GmFree(x);
  AscendC::GmFree(y);
  std::printf("api semantics: %d wrong values\n", bad);
  return bad ? 3 : 0;
}
