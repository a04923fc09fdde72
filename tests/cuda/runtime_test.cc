// The CUDA runtime layer: GPU discovery, DeviceGuard, streams and events, the caching device
// allocator and the host memory statistics.
//
// On a machine without a GPU the discovery tests check that "no GPU" is reported cleanly (zero
// GPUs, a reason naming the CUDA error, FailedPrecondition from everything that needs a device);
// the tests that need a GPU skip. RoundSize and the host statistics are pure CPU and always run.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <set>
#include <vector>

#include "cuda/allocator.h"
#include "cuda/device.h"
#include "cuda/stream.h"
#include "tensor/elementwise.h"
#include "tensor/tensor.h"
#include "tests/testing/testing.h"

namespace lyra::cuda {
namespace {

constexpr size_t kKiB = 1024;
constexpr size_t kMiB = 1024 * 1024;

// --- Discovery ----------------------------------------------------------------------------

TEST(DeviceTest, NoGpuIsReportedCleanly) {
  if (HasGpu()) GTEST_SKIP() << "this machine has " << GpuCount() << " GPU(s)";
  EXPECT_EQ(GpuCount(), 0);
  EXPECT_FALSE(HasGpu());
  const std::string reason = NoGpuReason();
  EXPECT_FALSE(reason.empty());
  // The reason names the runtime call that failed (and its message), or says it found none.
  EXPECT_NE(reason.find("cudaGetDeviceCount"), std::string::npos) << reason;

  EXPECT_STATUS_IS(CheckGpu(0), absl::StatusCode::kFailedPrecondition, "no GPU available for cuda:0");
  EXPECT_STATUS_IS(CheckGpu(0), absl::StatusCode::kFailedPrecondition, reason);
  EXPECT_STATUS_IS(SetDevice(0), absl::StatusCode::kFailedPrecondition, "cuda:0");
  EXPECT_STATUS_IS(GetGpuProperties(0), absl::StatusCode::kFailedPrecondition, "cuda:0");
  EXPECT_STATUS_IS(Synchronize(0), absl::StatusCode::kFailedPrecondition, "cuda:0");
  EXPECT_STATUS_IS(Stream::Create(0), absl::StatusCode::kFailedPrecondition, "cuda:0");
  EXPECT_STATUS_IS(Event::Create(0), absl::StatusCode::kFailedPrecondition, "cuda:0");
  EXPECT_STATUS_IS(CachingAllocator::ForDevice(0).Allocate(100),
                   absl::StatusCode::kFailedPrecondition, "cuda:0");
  // Asking twice gives the same answer (discovery runs once).
  EXPECT_EQ(NoGpuReason(), reason);
}

TEST(DeviceTest, CudaTensorsFailCleanlyWithoutGpu) {
  if (HasGpu()) GTEST_SKIP() << "this machine has a GPU";
  EXPECT_STATUS_IS(Tensor::Empty({4}, DType::kF32, Device::Cuda(0)),
                   absl::StatusCode::kFailedPrecondition, "no GPU");
  EXPECT_STATUS_IS(Tensor::Zeros({2, 3}, DType::kBF16, Device::Cuda(0)),
                   absl::StatusCode::kFailedPrecondition, "no GPU");
  EXPECT_STATUS_IS(Tensor::Empty({}, DType::kF64, Device::Cuda(1)),
                   absl::StatusCode::kFailedPrecondition, "cuda:1");
  ASSERT_OK_AND_ASSIGN(Tensor cpu, Tensor::Ones({3}, DType::kF32));
  EXPECT_STATUS_IS(cpu.To(Device::Cuda(0)), absl::StatusCode::kFailedPrecondition, "no GPU");
}

TEST(DeviceTest, IndicesOutsideTheMachineAreFailedPrecondition) {
  EXPECT_STATUS_IS(CheckGpu(-1), absl::StatusCode::kFailedPrecondition, "cuda:-1");
  EXPECT_STATUS_IS(CheckGpu(GpuCount()), absl::StatusCode::kFailedPrecondition,
                   absl::StrCat("cuda:", GpuCount()));
  EXPECT_STATUS_IS(GetGpuProperties(GpuCount() + 3), absl::StatusCode::kFailedPrecondition,
                   absl::StrCat("cuda:", GpuCount() + 3));
}

TEST(DeviceTest, GpuDiscoveryAndProperties) {
  LYRA_REQUIRE_GPU();
  int count = 0;
  ASSERT_EQ(cudaGetDeviceCount(&count), cudaSuccess);
  EXPECT_EQ(GpuCount(), count);
  EXPECT_TRUE(NoGpuReason().empty()) << NoGpuReason();
  for (int i = 0; i < GpuCount(); ++i) {
    EXPECT_OK(CheckGpu(i));
    ASSERT_OK_AND_ASSIGN(GpuProperties p, GetGpuProperties(i));
    EXPECT_FALSE(p.name.empty());
    EXPECT_GE(p.compute_major, 1);
    EXPECT_GT(p.multiprocessors, 0);
    EXPECT_GT(p.total_memory_bytes, 0);
    EXPECT_GT(p.l2_cache_bytes, 0);
    EXPECT_GT(p.shared_memory_per_block_optin, 0);
  }
}

int CurrentDevice() {
  int device = -1;
  cudaGetDevice(&device);
  return device;
}

TEST(DeviceTest, DeviceGuardSetsAndRestores) {
  LYRA_REQUIRE_GPU();
  ASSERT_OK(SetDevice(0));
  {
    DeviceGuard same(0);  // already current: a no-op
    EXPECT_EQ(CurrentDevice(), 0);
  }
  EXPECT_EQ(CurrentDevice(), 0);
  if (GpuCount() < 2) GTEST_SKIP() << "switching devices needs two GPUs";
  {
    DeviceGuard other(1);
    EXPECT_EQ(CurrentDevice(), 1);
    {
      DeviceGuard back(0);
      EXPECT_EQ(CurrentDevice(), 0);
    }
    EXPECT_EQ(CurrentDevice(), 1);
  }
  EXPECT_EQ(CurrentDevice(), 0);
}

// --- Streams and events -------------------------------------------------------------------

TEST(StreamTest, CurrentStreamIsStableAndGuardsNest) {
  LYRA_REQUIRE_GPU();
  const cudaStream_t default_stream = CurrentStream(0);
  ASSERT_NE(default_stream, nullptr);
  EXPECT_EQ(CurrentStream(0), default_stream);
  ASSERT_OK_AND_ASSIGN(Stream s1, Stream::Create(0));
  ASSERT_OK_AND_ASSIGN(Stream s2, Stream::Create(0));
  ASSERT_NE(s1.get(), nullptr);
  EXPECT_NE(s1.get(), s2.get());
  {
    StreamGuard g1(0, s1.get());
    EXPECT_EQ(CurrentStream(0), s1.get());
    {
      StreamGuard g2(0, s2.get());
      EXPECT_EQ(CurrentStream(0), s2.get());
    }
    EXPECT_EQ(CurrentStream(0), s1.get());
  }
  EXPECT_EQ(CurrentStream(0), default_stream);
  EXPECT_OK(Synchronize(0));
}

TEST(StreamTest, MovedStreamsAndEventsOwnTheirHandle) {
  LYRA_REQUIRE_GPU();
  ASSERT_OK_AND_ASSIGN(Stream a, Stream::Create(0));
  const cudaStream_t handle = a.get();
  Stream b = std::move(a);
  EXPECT_EQ(b.get(), handle);
  EXPECT_EQ(a.get(), nullptr);  // NOLINT(bugprone-use-after-move): checking the moved-from state
  EXPECT_OK(b.Synchronize());
  ASSERT_OK_AND_ASSIGN(Event e, Event::Create(0));
  const cudaEvent_t event_handle = e.get();
  Event f = std::move(e);
  EXPECT_EQ(f.get(), event_handle);
  EXPECT_EQ(e.get(), nullptr);  // NOLINT(bugprone-use-after-move)
  EXPECT_OK(f.Record(b.get()));
  EXPECT_OK(f.Synchronize());
}

// Work queued through Lyra ops under a StreamGuard runs on that stream, in order: 100 dependent
// in-place updates give exactly 100 when read back (the read waits on the same stream).
TEST(StreamTest, OpsRunInStreamOrderOnTheGuardedStream) {
  LYRA_REQUIRE_GPU();
  ASSERT_OK_AND_ASSIGN(Stream stream, Stream::Create(0));
  StreamGuard guard(0, stream.get());
  ASSERT_OK_AND_ASSIGN(Tensor x, Tensor::Zeros({1 << 20}, DType::kF32, Device::Cuda(0)));
  ASSERT_OK_AND_ASSIGN(Tensor one, Tensor::Ones({1}, DType::kF32, Device::Cuda(0)));
  constexpr int kSteps = 100;
  for (int i = 0; i < kSteps; ++i) ASSERT_OK(BinaryInto(BinaryOp::kAdd, x, one, x));
  ASSERT_OK(stream.Synchronize());
  ASSERT_OK_AND_ASSIGN(std::vector<float> values, x.ToVector<float>());
  for (size_t i = 0; i < values.size(); i += 4099) ASSERT_EQ(values[i], kSteps) << "at " << i;
  EXPECT_EQ(values.back(), kSteps);
}

TEST(StreamTest, EventsTimeQueuedWork) {
  LYRA_REQUIRE_GPU();
  const cudaStream_t stream = CurrentStream(0);
  ASSERT_OK_AND_ASSIGN(Event start, Event::Create(0));
  ASSERT_OK_AND_ASSIGN(Event stop, Event::Create(0));
  ASSERT_OK_AND_ASSIGN(Tensor x, Tensor::Zeros({1 << 24}, DType::kF32, Device::Cuda(0)));
  ASSERT_OK(start.Record(stream));
  for (int i = 0; i < 20; ++i) ASSERT_OK(UnaryInto(UnaryOp::kAddScalar, x, x, 1.0));
  ASSERT_OK(stop.Record(stream));
  ASSERT_OK(stop.Synchronize());
  ASSERT_OK_AND_ASSIGN(float ms, stop.ElapsedMsSince(start));
  EXPECT_GT(ms, 0.0f);
  EXPECT_LT(ms, 10000.0f);
  ASSERT_OK_AND_ASSIGN(double last, x.Narrow(0, (1 << 24) - 1, 1).value().Item());
  EXPECT_EQ(last, 20.0);
}

// --- Caching allocator --------------------------------------------------------------------

TEST(AllocatorTest, RoundSizeClasses) {
  using A = CachingAllocator;
  // Below 1 MiB: multiples of 512 bytes; 0 is a minimal block.
  EXPECT_EQ(A::RoundSize(0), 512u);
  EXPECT_EQ(A::RoundSize(1), 512u);
  EXPECT_EQ(A::RoundSize(512), 512u);
  EXPECT_EQ(A::RoundSize(513), 1024u);
  EXPECT_EQ(A::RoundSize(1000), 1024u);
  EXPECT_EQ(A::RoundSize(kMiB - 1), kMiB);
  // From 1 MiB: 16 classes per power of two.
  EXPECT_EQ(A::RoundSize(kMiB), kMiB);
  EXPECT_EQ(A::RoundSize(kMiB + 1), kMiB + 64 * kKiB);
  EXPECT_EQ(A::RoundSize(2 * kMiB - 1), 2 * kMiB);
  EXPECT_EQ(A::RoundSize(2 * kMiB), 2 * kMiB);
  EXPECT_EQ(A::RoundSize(2 * kMiB + 1), 2 * kMiB + 128 * kKiB);
  EXPECT_EQ(A::RoundSize(3 * kMiB), 3 * kMiB);
  EXPECT_EQ(A::RoundSize(7 * kMiB + kMiB / 2), 7 * kMiB + kMiB / 2);
  EXPECT_EQ(A::RoundSize(64 * kMiB), 64 * kMiB);
  EXPECT_EQ(A::RoundSize(64 * kMiB + 1), 68 * kMiB);
  EXPECT_EQ(A::RoundSize(size_t{5} << 30), size_t{5} << 30);
  // Properties over a sweep: never smaller, waste below one step (<= 1/16 above 1 MiB), the
  // result is itself a class (idempotent) and rounding is monotone.
  size_t previous = 0;
  for (size_t bytes = 1; bytes < (size_t{1} << 34); bytes = bytes * 9 / 8 + 7) {
    const size_t r = A::RoundSize(bytes);
    ASSERT_GE(r, bytes);
    ASSERT_EQ(A::RoundSize(r), r) << bytes;
    ASSERT_GE(r, previous) << bytes;
    if (bytes < kMiB) {
      ASSERT_EQ(r % 512, 0u) << bytes;
      ASSERT_LT(r - bytes, 512u) << bytes;
    } else {
      ASSERT_LE(static_cast<double>(r - bytes), bytes / 16.0) << bytes;
    }
    previous = r;
  }
}

TEST(AllocatorTest, ForDeviceReturnsOneAllocatorPerDevice) {
  EXPECT_EQ(&CachingAllocator::ForDevice(0), &CachingAllocator::ForDevice(0));
  EXPECT_NE(&CachingAllocator::ForDevice(0), &CachingAllocator::ForDevice(1));
}

TEST(AllocatorTest, FormatMemoryStatsNamesTheFigures) {
  MemoryStats s;
  s.allocated_bytes = 3 * kMiB;
  s.peak_allocated_bytes = 4 * kMiB;
  s.reserved_bytes = 5 * kMiB;
  s.peak_reserved_bytes = 6 * kMiB;
  s.num_allocations = 7;
  s.num_cache_hits = 2;
  s.num_device_mallocs = 5;
  s.num_device_frees = 1;
  EXPECT_EQ(FormatMemoryStats(s),
            "allocated 3.0 MiB (peak 4.0), reserved 5.0 MiB (peak 6.0), 7 allocations, "
            "2 cache hits, 5 cudaMalloc, 1 cudaFree");
}

// The allocator is process-wide, so these tests start from an empty cache and check deltas.
class GpuAllocatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!HasGpu()) GTEST_SKIP() << "needs a GPU; none here (" << NoGpuReason() << ")";
    ASSERT_OK(Synchronize(0));
    ASSERT_OK(allocator().EmptyCache());
    base_ = allocator().Stats();
    ASSERT_EQ(base_.reserved_bytes, base_.allocated_bytes) << "EmptyCache left cached blocks";
  }
  static CachingAllocator& allocator() { return CachingAllocator::ForDevice(0); }
  MemoryStats base_;
};

TEST_F(GpuAllocatorTest, StatsAreExactPerRoundSize) {
  ASSERT_OK_AND_ASSIGN(void* p, allocator().Allocate(1000));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 256, 0u);
  MemoryStats s = allocator().Stats();
  EXPECT_EQ(s.allocated_bytes, base_.allocated_bytes + 1024);
  EXPECT_EQ(s.requested_bytes, base_.requested_bytes + 1000);
  EXPECT_EQ(s.reserved_bytes, base_.reserved_bytes + 1024);
  EXPECT_EQ(s.num_allocations, base_.num_allocations + 1);
  EXPECT_EQ(s.num_cache_hits, base_.num_cache_hits);
  EXPECT_EQ(s.num_device_mallocs, base_.num_device_mallocs + 1);

  const size_t big = 3 * kMiB + 17;  // rounds to 3 MiB + 128 KiB
  ASSERT_OK_AND_ASSIGN(void* q, allocator().Allocate(big));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(q) % 256, 0u);
  s = allocator().Stats();
  const int64_t big_class = static_cast<int64_t>(CachingAllocator::RoundSize(big));
  EXPECT_EQ(big_class, static_cast<int64_t>(3 * kMiB + 128 * kKiB));
  EXPECT_EQ(s.allocated_bytes, base_.allocated_bytes + 1024 + big_class);
  EXPECT_EQ(s.requested_bytes, base_.requested_bytes + 1000 + static_cast<int64_t>(big));
  EXPECT_EQ(s.reserved_bytes, base_.reserved_bytes + 1024 + big_class);
  EXPECT_GE(s.peak_allocated_bytes, s.allocated_bytes);

  allocator().Free(p);
  allocator().Free(q);
  s = allocator().Stats();
  EXPECT_EQ(s.allocated_bytes, base_.allocated_bytes);
  EXPECT_EQ(s.requested_bytes, base_.requested_bytes);
  EXPECT_EQ(s.reserved_bytes, base_.reserved_bytes + 1024 + big_class);  // cached, not freed
  EXPECT_EQ(s.num_device_frees, base_.num_device_frees);
  allocator().Free(nullptr);  // a no-op
}

TEST_F(GpuAllocatorTest, SteadyStateReusesBlocksWithoutCudaMalloc) {
  ASSERT_OK_AND_ASSIGN(void* p, allocator().Allocate(4096));
  allocator().Free(p);
  ASSERT_OK_AND_ASSIGN(void* again, allocator().Allocate(4000));  // same 4096 class
  EXPECT_EQ(again, p);
  allocator().Free(again);

  // A training-loop-like pattern: the first round mallocs, every later one hits the cache.
  const std::vector<size_t> sizes = {1000, 300 * kKiB, 5 * kMiB + 3, 64 * kMiB, 0, 777};
  auto round = [&]() {
    std::vector<void*> blocks;
    for (size_t bytes : sizes) {
      absl::StatusOr<void*> b = allocator().Allocate(bytes);
      EXPECT_TRUE(b.ok()) << b.status();
      if (b.ok()) {
        EXPECT_NE(*b, nullptr);
        blocks.push_back(*b);
      }
    }
    for (void* b : blocks) allocator().Free(b);
  };
  round();
  const MemoryStats warm = allocator().Stats();
  for (int i = 0; i < 50; ++i) round();
  const MemoryStats s = allocator().Stats();
  EXPECT_EQ(s.num_device_mallocs, warm.num_device_mallocs);
  EXPECT_EQ(s.reserved_bytes, warm.reserved_bytes);
  EXPECT_EQ(s.num_allocations, warm.num_allocations + 50 * static_cast<int64_t>(sizes.size()));
  EXPECT_EQ(s.num_cache_hits, warm.num_cache_hits + 50 * static_cast<int64_t>(sizes.size()));
  EXPECT_EQ(s.allocated_bytes, base_.allocated_bytes);
}

TEST_F(GpuAllocatorTest, CachedBlockServesSlightlySmallerRequestsOnly) {
  ASSERT_OK_AND_ASSIGN(void* block, allocator().Allocate(8 * kMiB));
  allocator().Free(block);
  // 7.5 MiB is within 1/8 of the cached 8 MiB block: reused, and counted at the block's size.
  ASSERT_OK_AND_ASSIGN(void* reused, allocator().Allocate(7 * kMiB + kMiB / 2));
  EXPECT_EQ(reused, block);
  MemoryStats s = allocator().Stats();
  EXPECT_EQ(s.allocated_bytes, base_.allocated_bytes + static_cast<int64_t>(8 * kMiB));
  EXPECT_EQ(s.requested_bytes, base_.requested_bytes + static_cast<int64_t>(7 * kMiB + kMiB / 2));
  allocator().Free(reused);
  // 4 MiB would waste half the block: a new cudaMalloc.
  const int64_t mallocs = allocator().Stats().num_device_mallocs;
  ASSERT_OK_AND_ASSIGN(void* small, allocator().Allocate(4 * kMiB));
  EXPECT_NE(small, block);
  EXPECT_EQ(allocator().Stats().num_device_mallocs, mallocs + 1);
  allocator().Free(small);
}

TEST_F(GpuAllocatorTest, PeaksAndResetPeakStats) {
  allocator().ResetPeakStats();
  MemoryStats s = allocator().Stats();
  EXPECT_EQ(s.peak_allocated_bytes, s.allocated_bytes);
  EXPECT_EQ(s.peak_requested_bytes, s.requested_bytes);
  EXPECT_EQ(s.peak_reserved_bytes, s.reserved_bytes);
  std::vector<void*> blocks;
  for (int i = 0; i < 3; ++i) {
    ASSERT_OK_AND_ASSIGN(void* b, allocator().Allocate(kMiB));
    blocks.push_back(b);
  }
  for (void* b : blocks) allocator().Free(b);
  s = allocator().Stats();
  EXPECT_EQ(s.allocated_bytes, base_.allocated_bytes);
  EXPECT_EQ(s.peak_allocated_bytes, base_.allocated_bytes + static_cast<int64_t>(3 * kMiB));
  EXPECT_EQ(s.peak_requested_bytes, base_.requested_bytes + static_cast<int64_t>(3 * kMiB));
  EXPECT_EQ(s.peak_reserved_bytes, base_.reserved_bytes + static_cast<int64_t>(3 * kMiB));
  allocator().ResetPeakStats();
  s = allocator().Stats();
  EXPECT_EQ(s.peak_allocated_bytes, base_.allocated_bytes);
  EXPECT_EQ(s.peak_reserved_bytes, s.reserved_bytes);  // the three blocks are still cached
}

TEST_F(GpuAllocatorTest, EmptyCacheReleasesReservedBytes) {
  std::vector<void*> blocks;
  for (size_t bytes : {size_t{512}, 2 * kMiB, 10 * kMiB}) {
    ASSERT_OK_AND_ASSIGN(void* b, allocator().Allocate(bytes));
    blocks.push_back(b);
  }
  ASSERT_OK_AND_ASSIGN(void* kept, allocator().Allocate(kMiB));
  for (void* b : blocks) allocator().Free(b);
  MemoryStats s = allocator().Stats();
  EXPECT_EQ(s.reserved_bytes,
            base_.reserved_bytes + static_cast<int64_t>(512 + 2 * kMiB + 10 * kMiB + kMiB));
  ASSERT_OK(allocator().EmptyCache());
  s = allocator().Stats();
  EXPECT_EQ(s.reserved_bytes, base_.reserved_bytes + static_cast<int64_t>(kMiB));
  EXPECT_EQ(s.reserved_bytes, s.allocated_bytes);  // only the live block remains
  EXPECT_EQ(s.num_device_frees, base_.num_device_frees + 3);
  // The next request of a released size mallocs again.
  ASSERT_OK_AND_ASSIGN(void* again, allocator().Allocate(2 * kMiB));
  EXPECT_EQ(allocator().Stats().num_device_mallocs, s.num_device_mallocs + 1);
  allocator().Free(again);
  allocator().Free(kept);
  ASSERT_OK(allocator().EmptyCache());
  EXPECT_EQ(allocator().Stats().reserved_bytes, base_.reserved_bytes);
}

TEST_F(GpuAllocatorTest, ImpossibleRequestIsResourceExhausted) {
  EXPECT_STATUS_IS(allocator().Allocate(size_t{1} << 50), absl::StatusCode::kResourceExhausted,
                   "cannot allocate");
  const MemoryStats s = allocator().Stats();
  EXPECT_EQ(s.allocated_bytes, base_.allocated_bytes);
  EXPECT_EQ(s.reserved_bytes, base_.reserved_bytes);
  // The device is still usable afterwards.
  ASSERT_OK_AND_ASSIGN(void* p, allocator().Allocate(kMiB));
  allocator().Free(p);
  EXPECT_OK(Synchronize(0));
}

TEST_F(GpuAllocatorTest, CudaTensorsAllocateThroughTheCache) {
  {
    ASSERT_OK_AND_ASSIGN(Tensor t, Tensor::Empty({1000}, DType::kF32, Device::Cuda(0)));
    const MemoryStats s = allocator().Stats();
    EXPECT_EQ(s.allocated_bytes, base_.allocated_bytes + 4096);
    EXPECT_EQ(s.requested_bytes, base_.requested_bytes + 4000);
  }
  EXPECT_EQ(allocator().Stats().allocated_bytes, base_.allocated_bytes);
  const int64_t mallocs = allocator().Stats().num_device_mallocs;
  ASSERT_OK_AND_ASSIGN(Tensor again, Tensor::Empty({1000}, DType::kF32, Device::Cuda(0)));
  EXPECT_EQ(allocator().Stats().num_device_mallocs, mallocs);
}

// --- Host memory --------------------------------------------------------------------------

TEST(HostMemoryTest, CpuTensorsAreCountedExactly) {
  ResetHostPeakStats();
  const HostMemoryStats base = GetHostMemoryStats();
  EXPECT_EQ(base.peak_allocated_bytes, base.allocated_bytes);
  {
    ASSERT_OK_AND_ASSIGN(Tensor a, Tensor::Empty({1000}, DType::kF32));
    ASSERT_OK_AND_ASSIGN(Tensor b, Tensor::Empty({3, 5}, DType::kBF16));
    EXPECT_EQ(GetHostMemoryStats().allocated_bytes, base.allocated_bytes + 4000 + 30);
    Tensor view = a;  // shares the storage: no new bytes
    EXPECT_EQ(GetHostMemoryStats().allocated_bytes, base.allocated_bytes + 4030);
  }
  HostMemoryStats s = GetHostMemoryStats();
  EXPECT_EQ(s.allocated_bytes, base.allocated_bytes);
  EXPECT_EQ(s.peak_allocated_bytes, base.allocated_bytes + 4030);
  ResetHostPeakStats();
  EXPECT_EQ(GetHostMemoryStats().peak_allocated_bytes, base.allocated_bytes);
}

TEST(HostMemoryTest, HostAllocateIsAlignedAndCounted) {
  const int64_t before = GetHostMemoryStats().allocated_bytes;
  for (size_t bytes : {size_t{0}, size_t{1}, size_t{63}, size_t{65}, size_t{1} << 20}) {
    void* p = HostAllocate(bytes);
    ASSERT_NE(p, nullptr) << bytes;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u) << bytes;
    EXPECT_EQ(GetHostMemoryStats().allocated_bytes, before + static_cast<int64_t>(bytes));
    HostFree(p, bytes);
    EXPECT_EQ(GetHostMemoryStats().allocated_bytes, before);
  }
  HostFree(nullptr, 0);  // a no-op
  EXPECT_EQ(GetHostMemoryStats().allocated_bytes, before);
}

}  // namespace
}  // namespace lyra::cuda
