// Tensor metadata, factories, views, copies and host access, on CPU and (when present) CUDA.
#include "tensor/tensor.h"

#include <gtest/gtest.h>

#include "cuda/allocator.h"
#include "tests/testing/testing.h"

namespace lyra {
namespace {

using ::lyra::testing::AllClose;

std::vector<Device> TestDevices() {
  std::vector<Device> devices = {Device::Cpu()};
  if (cuda::HasGpu()) devices.push_back(Device::Cuda(0));
  return devices;
}

TEST(TensorTest, FactoriesAndMetadata) {
  for (Device device : TestDevices()) {
    ASSERT_OK_AND_ASSIGN(Tensor z, Tensor::Zeros({2, 3}, DType::kF32, device));
    EXPECT_EQ(z.dim(), 2);
    EXPECT_EQ(z.numel(), 6);
    EXPECT_EQ(z.strides(), (Shape{3, 1}));
    EXPECT_TRUE(z.is_contiguous());
    EXPECT_EQ(z.Describe(), "f32[2, 3] " + device.ToString());
    ASSERT_OK_AND_ASSIGN(std::vector<float> zv, z.ToVector<float>());
    EXPECT_EQ(zv, std::vector<float>(6, 0.0f));

    ASSERT_OK_AND_ASSIGN(Tensor f, Tensor::Full({4}, 2.5, DType::kBF16, device));
    ASSERT_OK_AND_ASSIGN(std::vector<double> fv, f.ToDoubles());
    EXPECT_EQ(fv, std::vector<double>(4, 2.5));

    ASSERT_OK_AND_ASSIGN(Tensor a, Tensor::Arange(0, 5, 1, DType::kI64, device));
    ASSERT_OK_AND_ASSIGN(std::vector<int64_t> av, a.ToVector<int64_t>());
    EXPECT_EQ(av, (std::vector<int64_t>{0, 1, 2, 3, 4}));

    ASSERT_OK_AND_ASSIGN(Tensor s, Tensor::Scalar(7, DType::kI32, device));
    EXPECT_EQ(s.dim(), 0);
    ASSERT_OK_AND_ASSIGN(double item, s.Item());
    EXPECT_EQ(item, 7);

    ASSERT_OK_AND_ASSIGN(Tensor b, Tensor::FromVector<bool>({true, false, true}, {3}, device));
    ASSERT_OK_AND_ASSIGN(std::vector<bool> bv, b.ToVector<bool>());
    EXPECT_EQ(bv, (std::vector<bool>{true, false, true}));
  }
}

TEST(TensorTest, BadArgumentsAreErrors) {
  EXPECT_STATUS_IS(Tensor::Empty({2, -1}, DType::kF32), absl::StatusCode::kInvalidArgument,
                   "negative size");
  EXPECT_STATUS_IS(Tensor::Empty({1, 1, 1, 1, 1, 1, 1, 1, 1}, DType::kF32),
                   absl::StatusCode::kInvalidArgument, "rank 9");
  EXPECT_STATUS_IS(Tensor::FromVector<float>({1, 2, 3}, {2, 2}),
                   absl::StatusCode::kInvalidArgument, "3 values for shape [2, 2]");
  ASSERT_OK_AND_ASSIGN(Tensor t, Tensor::Zeros({2, 3}, DType::kF32));
  EXPECT_STATUS_IS(t.ToVector<double>(), absl::StatusCode::kInvalidArgument, "f64");
  EXPECT_STATUS_IS(t.Transpose(0, 2), absl::StatusCode::kInvalidArgument, "out of range");
  EXPECT_STATUS_IS(t.View({4, 2}), absl::StatusCode::kInvalidArgument, "cannot view");
  EXPECT_STATUS_IS(t.Narrow(1, 2, 2), absl::StatusCode::kInvalidArgument, "outside dimension");
  EXPECT_STATUS_IS(t.Expand({3, 3}), absl::StatusCode::kInvalidArgument, "cannot expand");
  EXPECT_STATUS_IS(t.Item(), absl::StatusCode::kInvalidArgument, "one element");
  if (!cuda::HasGpu()) {
    EXPECT_STATUS_IS(Tensor::Zeros({2}, DType::kF32, Device::Cuda(0)),
                     absl::StatusCode::kFailedPrecondition, "no GPU");
  }
  EXPECT_STATUS_IS(ParseDevice("tpu"), absl::StatusCode::kInvalidArgument, "unknown device");
  EXPECT_STATUS_IS(ParseDType("f8"), absl::StatusCode::kInvalidArgument, "unknown dtype");
}

TEST(TensorTest, ViewsShareStorage) {
  for (Device device : TestDevices()) {
    ASSERT_OK_AND_ASSIGN(Tensor x, Tensor::Arange(0, 24, 1, DType::kF32, device));
    ASSERT_OK_AND_ASSIGN(Tensor x3, x.View({2, 3, 4}));
    ASSERT_OK_AND_ASSIGN(Tensor xt, x3.Transpose(0, 2));  // [4, 3, 2]
    EXPECT_EQ(xt.shape(), (Shape{4, 3, 2}));
    EXPECT_EQ(xt.strides(), (Shape{1, 4, 12}));
    EXPECT_FALSE(xt.is_contiguous());
    EXPECT_STATUS_IS(xt.View({24}), absl::StatusCode::kInvalidArgument, "without a copy");
    ASSERT_OK_AND_ASSIGN(Tensor flat, xt.Reshape({-1}));
    ASSERT_OK_AND_ASSIGN(std::vector<float> fv, flat.ToVector<float>());
    // xt[i][j][k] = x3[k][j][i] = 12k + 4j + i
    std::vector<float> expected;
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 3; ++j)
        for (int k = 0; k < 2; ++k) expected.push_back(12 * k + 4 * j + i);
    EXPECT_EQ(fv, expected);

    ASSERT_OK_AND_ASSIGN(Tensor p, x3.Permute({1, 2, 0}));
    EXPECT_EQ(p.shape(), (Shape{3, 4, 2}));
    ASSERT_OK_AND_ASSIGN(Tensor row, x3.Select(1, 2));  // [2, 4]: 8..11, 20..23
    ASSERT_OK_AND_ASSIGN(std::vector<float> rv, row.ToVector<float>());
    EXPECT_EQ(rv, (std::vector<float>{8, 9, 10, 11, 20, 21, 22, 23}));
    ASSERT_OK_AND_ASSIGN(Tensor sl, x.Slice(0, 1, -1, 5));  // 1, 6, 11, 16, 21
    ASSERT_OK_AND_ASSIGN(std::vector<float> sv, sl.ToVector<float>());
    EXPECT_EQ(sv, (std::vector<float>{1, 6, 11, 16, 21}));

    // Writes through a view land in the base tensor.
    ASSERT_OK_AND_ASSIGN(Tensor col, x3.Narrow(2, 1, 2));  // [2, 3, 2]
    ASSERT_OK(col.Fill(-1));
    ASSERT_OK_AND_ASSIGN(std::vector<float> xv, x.ToVector<float>());
    for (int i = 0; i < 24; ++i) {
      const bool written = (i % 4 == 1 || i % 4 == 2);
      EXPECT_EQ(xv[i], written ? -1.0f : static_cast<float>(i)) << i;
    }

    ASSERT_OK_AND_ASSIGN(Tensor u, x3.Unsqueeze(1));
    EXPECT_EQ(u.shape(), (Shape{2, 1, 3, 4}));
    ASSERT_OK_AND_ASSIGN(Tensor sq, u.Squeeze(1));
    EXPECT_EQ(sq.shape(), (Shape{2, 3, 4}));
    ASSERT_OK_AND_ASSIGN(Tensor one, Tensor::Arange(0, 3, 1, DType::kF32, device));
    ASSERT_OK_AND_ASSIGN(Tensor one2, one.View({3, 1}));
    ASSERT_OK_AND_ASSIGN(Tensor ex, one2.Expand({2, 3, 4}));
    EXPECT_EQ(ex.strides(), (Shape{0, 1, 0}));
    ASSERT_OK_AND_ASSIGN(Tensor exc, ex.Contiguous());
    ASSERT_OK_AND_ASSIGN(std::vector<float> ev, exc.ToVector<float>());
    EXPECT_EQ(ev[0], 0);
    EXPECT_EQ(ev[5], 1);
    EXPECT_EQ(ev[23], 2);
  }
}

TEST(TensorTest, CastsRoundTrip) {
  for (Device device : TestDevices()) {
    ASSERT_OK_AND_ASSIGN(Tensor x,
                         Tensor::FromDoubles({-2.5, -1, 0, 0.5, 1.25, 3}, {6}, DType::kF64, device));
    for (DType d : {DType::kF32, DType::kF16, DType::kBF16}) {
      ASSERT_OK_AND_ASSIGN(Tensor y, x.To(d));
      ASSERT_OK_AND_ASSIGN(Tensor back, y.To(DType::kF64));
      EXPECT_TRUE(AllClose(back, x, {0, 0})) << DTypeName(d);  // all exactly representable
    }
    ASSERT_OK_AND_ASSIGN(Tensor i, x.To(DType::kI32));
    ASSERT_OK_AND_ASSIGN(std::vector<int32_t> iv, i.ToVector<int32_t>());
    EXPECT_EQ(iv, (std::vector<int32_t>{-2, -1, 0, 0, 1, 3}));  // truncation toward zero
    ASSERT_OK_AND_ASSIGN(Tensor b, x.To(DType::kBool));
    ASSERT_OK_AND_ASSIGN(std::vector<bool> bv, b.ToVector<bool>());
    EXPECT_EQ(bv, (std::vector<bool>{true, true, false, true, true, true}));
  }
}

TEST(TensorTest, CopyAcrossDevices) {
  LYRA_REQUIRE_GPU();
  ASSERT_OK_AND_ASSIGN(Tensor x, lyra::testing::RandomTensor({5, 7}, DType::kF32, 1));
  ASSERT_OK_AND_ASSIGN(Tensor xt, x.Transpose(0, 1));
  ASSERT_OK_AND_ASSIGN(Tensor g, xt.To(Device::Cuda(0)));
  EXPECT_TRUE(g.is_contiguous());
  ASSERT_OK_AND_ASSIGN(Tensor gt, g.Transpose(0, 1));  // non-contiguous on the GPU
  ASSERT_OK_AND_ASSIGN(Tensor back, gt.To(Device::Cpu()));
  EXPECT_TRUE(AllClose(back, x, {0, 0}));
  // Into a non-contiguous GPU destination, with a cast.
  ASSERT_OK_AND_ASSIGN(Tensor dst, Tensor::Zeros({7, 5}, DType::kF64, Device::Cuda(0)));
  ASSERT_OK_AND_ASSIGN(Tensor dst_t, dst.Transpose(0, 1));
  ASSERT_OK(dst_t.CopyFrom(x));
  ASSERT_OK_AND_ASSIGN(Tensor dst_back, dst_t.To(Device::Cpu()));
  EXPECT_TRUE(AllClose(dst_back, x, {0, 0}));
}

TEST(TensorTest, PrintsValues) {
  ASSERT_OK_AND_ASSIGN(Tensor x, Tensor::FromVector<float>({1, 2, 3, 4}, {2, 2}));
  EXPECT_EQ(x.ToString(), "tensor(f32[2, 2] cpu, [[1, 2], [3, 4]])");
}

TEST(TensorTest, HostMemoryStatsTrackAllocations) {
  cuda::ResetHostPeakStats();
  const int64_t before = cuda::GetHostMemoryStats().allocated_bytes;
  {
    ASSERT_OK_AND_ASSIGN(Tensor x, Tensor::Empty({1024}, DType::kF64));
    EXPECT_EQ(cuda::GetHostMemoryStats().allocated_bytes, before + 8192);
  }
  EXPECT_EQ(cuda::GetHostMemoryStats().allocated_bytes, before);
  EXPECT_GE(cuda::GetHostMemoryStats().peak_allocated_bytes, before + 8192);
}

}  // namespace
}  // namespace lyra
