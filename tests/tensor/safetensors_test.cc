// safetensors I/O: bit-exact round trips of every dtype, layout of the header, the mapping's
// lifetime, atomic writes, and every kind of malformed file (written byte by byte here).
#include "tensor/safetensors.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/testing/testing.h"

namespace lyra {
namespace {

using ::lyra::testing::AllClose;

// A fresh directory per test under TEST_TMPDIR.
std::string TestDir() {
  const char* root = std::getenv("TEST_TMPDIR");
  const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::filesystem::path dir = std::filesystem::path(root != nullptr ? root : "/tmp") /
                              absl::StrCat("safetensors_", info->name());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

std::string ReadFileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

void WriteFileBytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string LittleEndianU64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((v >> (8 * i)) & 0xFF);
  return s;
}

// A file with header length `header.size()`, the header as given, then `data`.
std::string FileWithHeader(const std::string& header, const std::string& data = "") {
  return LittleEndianU64(header.size()) + header + data;
}

// Writes FileWithHeader(header, data) to dir/bad.safetensors and returns the path.
std::string WriteBadFile(const std::string& dir, const std::string& header,
                         const std::string& data = "") {
  const std::string path = dir + "/bad.safetensors";
  WriteFileBytes(path, FileWithHeader(header, data));
  return path;
}

std::string RawBytes(const Tensor& t) {
  absl::StatusOr<Tensor> c = t.Contiguous();
  EXPECT_TRUE(c.ok()) << c.status();
  return std::string(static_cast<const char*>(c->data()), c->nbytes());
}

template <typename T>
Tensor FromBits(const std::vector<T>& bits, const Shape& shape, DType dtype) {
  absl::StatusOr<Tensor> t = TensorFromHostBytes(bits.data(), shape, dtype, Device::Cpu());
  EXPECT_TRUE(t.ok()) << t.status();
  return *t;
}

// Files named `<name>.tmp.*` left in `dir`.
std::vector<std::string> TempFilesIn(const std::string& dir, const std::string& name) {
  std::vector<std::string> found;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string file = entry.path().filename().string();
    if (file.rfind(name + ".tmp.", 0) == 0) found.push_back(file);
  }
  return found;
}

// One tensor of each dtype, with the special values of each floating type given as bits.
std::vector<std::pair<std::string, Tensor>> EveryDTypeTensors() {
  const float f32_inf = std::numeric_limits<float>::infinity();
  const double f64_inf = std::numeric_limits<double>::infinity();
  std::vector<std::pair<std::string, Tensor>> tensors;
  tensors.emplace_back(
      "f64", FromBits<double>({1.5, -0.0, std::numeric_limits<double>::quiet_NaN(), f64_inf,
                               -f64_inf, std::numeric_limits<double>::denorm_min(),
                               std::numeric_limits<double>::max(), -1e-300},
                              {2, 4}, DType::kF64));
  tensors.emplace_back(
      "f32", FromBits<float>({1.5f, -0.0f, std::numeric_limits<float>::quiet_NaN(), f32_inf,
                              -f32_inf, std::numeric_limits<float>::denorm_min(),
                              std::numeric_limits<float>::max()},
                             {7}, DType::kF32));
  // f16: smallest and largest subnormal, -0, +-inf, a quiet and a signalling-pattern NaN, max,
  // 1.0, -2.0.
  tensors.emplace_back("f16", FromBits<uint16_t>({0x0001, 0x03FF, 0x8000, 0x7C00, 0xFC00, 0x7E00,
                                                  0x7C01, 0x7BFF, 0x3C00, 0xC000},
                                                 {2, 5}, DType::kF16));
  // bf16: smallest and largest subnormal, -0, +-inf, NaNs, max, 1.0, -2.0, a negative NaN.
  tensors.emplace_back("bf16", FromBits<uint16_t>({0x0001, 0x007F, 0x8000, 0x7F80, 0xFF80, 0x7FC0,
                                                   0x7F81, 0x7F7F, 0x3F80, 0xC000, 0xFFC1},
                                                  {11}, DType::kBF16));
  tensors.emplace_back("i64", FromBits<int64_t>({std::numeric_limits<int64_t>::min(), -1, 0, 1,
                                                 std::numeric_limits<int64_t>::max()},
                                                {5}, DType::kI64));
  tensors.emplace_back("i32", FromBits<int32_t>({std::numeric_limits<int32_t>::min(), -1, 0,
                                                 std::numeric_limits<int32_t>::max()},
                                                {2, 2}, DType::kI32));
  tensors.emplace_back("bool", FromBits<uint8_t>({1, 0, 0, 1, 1}, {5}, DType::kBool));
  return tensors;
}

// --- Round trips --------------------------------------------------------------------------

TEST(SafetensorsTest, EveryDTypeRoundTripsBitExactly) {
  const std::string path = TestDir() + "/every.safetensors";
  const std::vector<std::pair<std::string, Tensor>> tensors = EveryDTypeTensors();
  ASSERT_OK(WriteSafetensors(path, tensors));
  ASSERT_OK_AND_ASSIGN(SafetensorsContents contents, ReadSafetensors(path));
  EXPECT_EQ(contents.path, path);
  EXPECT_TRUE(contents.metadata.empty());
  // Written back to back in the given order, so read back in the same order.
  ASSERT_EQ(contents.tensors.size(), tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& [name, expected] = tensors[i];
    SCOPED_TRACE(name);
    const auto& [read_name, actual] = contents.tensors[i];
    EXPECT_EQ(read_name, name);
    EXPECT_EQ(actual.dtype(), expected.dtype());
    EXPECT_EQ(actual.shape(), expected.shape());
    EXPECT_TRUE(actual.is_contiguous());
    EXPECT_TRUE(actual.device().is_cpu());
    EXPECT_EQ(RawBytes(actual), RawBytes(expected));
    ASSERT_OK_AND_ASSIGN(Tensor got, contents.Get(name));
    EXPECT_EQ(got.data(), actual.data());
  }
  // The values, not only the bytes, come back: the bool tensor reads as bools.
  ASSERT_OK_AND_ASSIGN(Tensor b, contents.Get("bool"));
  ASSERT_OK_AND_ASSIGN(std::vector<bool> bv, b.ToVector<bool>());
  EXPECT_EQ(bv, (std::vector<bool>{true, false, false, true, true}));
}

TEST(SafetensorsTest, RandomTensorsOfOddShapesRoundTrip) {
  const std::string path = TestDir() + "/random.safetensors";
  std::vector<std::pair<std::string, Tensor>> tensors;
  uint64_t seed = 1;
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16, DType::kF64}) {
    for (const Shape& shape : {Shape{1}, Shape{33, 65}, Shape{3, 1, 7, 5}}) {
      ASSERT_OK_AND_ASSIGN(Tensor t, ::lyra::testing::RandomTensor(shape, dtype, seed++));
      tensors.emplace_back(absl::StrCat("layers.", seed, ".", DTypeName(dtype)), t);
    }
  }
  ASSERT_OK(WriteSafetensors(path, tensors));
  ASSERT_OK_AND_ASSIGN(SafetensorsContents contents, ReadSafetensors(path));
  ASSERT_EQ(contents.tensors.size(), tensors.size());
  for (const auto& [name, expected] : tensors) {
    ASSERT_OK_AND_ASSIGN(Tensor actual, contents.Get(name));
    EXPECT_EQ(RawBytes(actual), RawBytes(expected)) << name;
    EXPECT_TRUE(AllClose(actual, expected, {0.0, 0.0})) << name;
  }
}

TEST(SafetensorsTest, ZeroDimAndEmptyTensorsRoundTrip) {
  const std::string path = TestDir() + "/shapes.safetensors";
  ASSERT_OK_AND_ASSIGN(Tensor scalar, Tensor::Scalar(-3.25, DType::kF32));
  ASSERT_OK_AND_ASSIGN(Tensor scalar_i64, Tensor::Scalar(42, DType::kI64));
  ASSERT_OK_AND_ASSIGN(Tensor empty, Tensor::Empty({0}, DType::kF16));
  ASSERT_OK_AND_ASSIGN(Tensor empty3, Tensor::Empty({2, 0, 3}, DType::kF64));
  ASSERT_OK_AND_ASSIGN(Tensor after, Tensor::FromVector<int32_t>({7, 8}, {2}));
  ASSERT_OK(WriteSafetensors(path, {{"scalar", scalar},
                                    {"empty", empty},
                                    {"scalar_i64", scalar_i64},
                                    {"empty3", empty3},
                                    {"after", after}}));
  const std::string bytes = ReadFileBytes(path);
  EXPECT_NE(bytes.find(R"("scalar":{"dtype":"F32","shape":[],"data_offsets":[0,4]})"),
            std::string::npos);
  EXPECT_NE(bytes.find(R"("empty":{"dtype":"F16","shape":[0],"data_offsets":[4,4]})"),
            std::string::npos);
  EXPECT_NE(bytes.find(R"("empty3":{"dtype":"F64","shape":[2,0,3],"data_offsets":[12,12]})"),
            std::string::npos);

  ASSERT_OK_AND_ASSIGN(SafetensorsContents contents, ReadSafetensors(path));
  ASSERT_EQ(contents.tensors.size(), 5u);
  ASSERT_OK_AND_ASSIGN(Tensor s, contents.Get("scalar"));
  EXPECT_EQ(s.dim(), 0);
  ASSERT_OK_AND_ASSIGN(double sv, s.Item());
  EXPECT_EQ(sv, -3.25);
  ASSERT_OK_AND_ASSIGN(Tensor si, contents.Get("scalar_i64"));
  ASSERT_OK_AND_ASSIGN(double siv, si.Item());
  EXPECT_EQ(siv, 42);
  ASSERT_OK_AND_ASSIGN(Tensor e, contents.Get("empty"));
  EXPECT_EQ(e.shape(), Shape{0});
  EXPECT_EQ(e.dtype(), DType::kF16);
  ASSERT_OK_AND_ASSIGN(Tensor e3, contents.Get("empty3"));
  EXPECT_EQ(e3.shape(), (Shape{2, 0, 3}));
  EXPECT_EQ(e3.numel(), 0);
  ASSERT_OK_AND_ASSIGN(Tensor a, contents.Get("after"));
  ASSERT_OK_AND_ASSIGN(std::vector<int32_t> av, a.ToVector<int32_t>());
  EXPECT_EQ(av, (std::vector<int32_t>{7, 8}));
}

TEST(SafetensorsTest, NonContiguousInputsAreWrittenInLogicalRowMajorOrder) {
  const std::string path = TestDir() + "/views.safetensors";
  ASSERT_OK_AND_ASSIGN(Tensor base, Tensor::Arange(0, 12, 1, DType::kF32));
  ASSERT_OK_AND_ASSIGN(base, base.View({3, 4}));
  ASSERT_OK_AND_ASSIGN(Tensor transposed, base.Transpose(0, 1));       // [4, 3]
  ASSERT_OK_AND_ASSIGN(Tensor sliced, base.Slice(1, 1, 4, 2));         // [3, 2]: columns 1, 3
  ASSERT_OK_AND_ASSIGN(Tensor row, Tensor::FromDoubles({1, 2, 3}, {3}, DType::kBF16));
  ASSERT_OK_AND_ASSIGN(Tensor broadcast, row.Expand({2, 3}));          // stride 0
  ASSERT_FALSE(transposed.is_contiguous());
  ASSERT_OK(WriteSafetensors(path, {{"t", transposed}, {"s", sliced}, {"b", broadcast}}));

  ASSERT_OK_AND_ASSIGN(SafetensorsContents contents, ReadSafetensors(path));
  ASSERT_OK_AND_ASSIGN(Tensor t, contents.Get("t"));
  EXPECT_EQ(t.shape(), (Shape{4, 3}));
  ASSERT_OK_AND_ASSIGN(std::vector<float> tv, t.ToVector<float>());
  EXPECT_EQ(tv, (std::vector<float>{0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11}));
  ASSERT_OK_AND_ASSIGN(Tensor s, contents.Get("s"));
  ASSERT_OK_AND_ASSIGN(std::vector<float> sv, s.ToVector<float>());
  EXPECT_EQ(sv, (std::vector<float>{1, 3, 5, 7, 9, 11}));
  ASSERT_OK_AND_ASSIGN(Tensor b, contents.Get("b"));
  ASSERT_OK_AND_ASSIGN(std::vector<double> bv, b.ToDoubles());
  EXPECT_EQ(bv, (std::vector<double>{1, 2, 3, 1, 2, 3}));
}

TEST(SafetensorsTest, MetadataRoundTrips) {
  const std::string path = TestDir() + "/meta.safetensors";
  const std::map<std::string, std::string> metadata = {
      {"format", "pt"},
      {"quotes \"and\" \\backslashes\\", "line\nbreak\ttab \x01 control"},
      {"unicode", "Lyapunov — λ < 0 ✓ 🐍"},
      {"empty", ""}};
  ASSERT_OK_AND_ASSIGN(Tensor x, Tensor::FromVector<float>({1, 2}, {2}));
  ASSERT_OK(WriteSafetensors(path, {{"x", x}}, metadata));
  ASSERT_OK_AND_ASSIGN(SafetensorsContents contents, ReadSafetensors(path));
  EXPECT_EQ(contents.metadata, metadata);

  // Metadata alone, no tensors.
  const std::string only_metadata = TestDir() + "/only_meta.safetensors";
  ASSERT_OK(WriteSafetensors(only_metadata, {}, {{"k", "v"}}));
  ASSERT_OK_AND_ASSIGN(SafetensorsContents meta_only, ReadSafetensors(only_metadata));
  EXPECT_TRUE(meta_only.tensors.empty());
  EXPECT_EQ(meta_only.metadata, (std::map<std::string, std::string>{{"k", "v"}}));
}

TEST(SafetensorsTest, HeaderMatchesTheReferenceLayoutByteForByte) {
  const std::string dir = TestDir();
  ASSERT_OK_AND_ASSIGN(Tensor a, Tensor::FromVector<float>({1.0f, 2.0f}, {2}));
  const std::string floats("\x00\x00\x80\x3f\x00\x00\x00\x40", 8);  // 1.0f, 2.0f

  // 85 bytes of JSON + 3 spaces = 88, a multiple of 8.
  const std::string with_metadata =
      R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  ASSERT_EQ(with_metadata.size(), 85u);
  ASSERT_OK(WriteSafetensors(dir + "/m.safetensors", {{"a", a}}, {{"format", "pt"}}));
  EXPECT_EQ(ReadFileBytes(dir + "/m.safetensors"),
            FileWithHeader(with_metadata + std::string(3, ' '), floats));

  // No "__metadata__" key at all when there is none; 54 bytes + 2 spaces = 56.
  const std::string plain = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  ASSERT_EQ(plain.size(), 54u);
  ASSERT_OK(WriteSafetensors(dir + "/p.safetensors", {{"a", a}}));
  EXPECT_EQ(ReadFileBytes(dir + "/p.safetensors"),
            FileWithHeader(plain + std::string(2, ' '), floats));

  // No tensors and no metadata: "{}" and 6 spaces.
  ASSERT_OK(WriteSafetensors(dir + "/e.safetensors", {}));
  EXPECT_EQ(ReadFileBytes(dir + "/e.safetensors"), FileWithHeader("{}      "));
  ASSERT_OK_AND_ASSIGN(SafetensorsContents empty, ReadSafetensors(dir + "/e.safetensors"));
  EXPECT_TRUE(empty.tensors.empty());

  // Metadata keys are written sorted, tensors in the given order: deterministic output.
  ASSERT_OK(WriteSafetensors(dir + "/o.safetensors", {{"z", a}, {"b", a}},
                             {{"y", "1"}, {"x", "2"}}));
  const std::string ordered =
      R"({"__metadata__":{"x":"2","y":"1"},"z":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})";
  EXPECT_EQ(ReadFileBytes(dir + "/o.safetensors"),
            FileWithHeader(ordered + std::string((8 - ordered.size() % 8) % 8, ' '),
                           floats + floats));
}

TEST(SafetensorsTest, ReadsFilesOfOtherWritersLeniently) {
  const std::string dir = TestDir();
  const std::string floats("\x00\x00\x80\x3f\x00\x00\x00\x40", 8);  // 1.0f, 2.0f
  // An unpadded 55-byte header puts the f32 data at an odd address: it is copied, not viewed.
  // Keys in any order, whitespace inside the JSON.
  const std::string odd = R"({"a": {"shape":[2],"data_offsets":[0,8],"dtype":"F32"}})";
  ASSERT_EQ(odd.size() % 4, 3u);
  ASSERT_OK_AND_ASSIGN(SafetensorsContents c1, ReadSafetensors(WriteBadFile(dir, odd, floats)));
  ASSERT_OK_AND_ASSIGN(Tensor a, c1.Get("a"));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a.data()) % 4, 0u);
  ASSERT_OK_AND_ASSIGN(std::vector<float> av, a.ToVector<float>());
  EXPECT_EQ(av, (std::vector<float>{1, 2}));

  // Gaps between tensors, trailing bytes, tensors listed out of offset order, and an empty
  // tensor inside another's range (it owns no bytes).
  const std::string gaps =
      R"({"late":{"dtype":"I32","shape":[1],"data_offsets":[12,16]},)"
      R"("early":{"dtype":"I32","shape":[1],"data_offsets":[0,4]},)"
      R"("none":{"dtype":"F64","shape":[0, 5],"data_offsets":[14,14]}})";
  const std::string data("\x01\x00\x00\x00XXXXXXXX\x02\x00\x00\x00trailing", 24);
  ASSERT_OK_AND_ASSIGN(SafetensorsContents c2, ReadSafetensors(WriteBadFile(dir, gaps, data)));
  ASSERT_EQ(c2.tensors.size(), 3u);
  EXPECT_EQ(c2.tensors[0].first, "early");  // in offset order
  EXPECT_EQ(c2.tensors[1].first, "late");
  EXPECT_EQ(c2.tensors[2].first, "none");
  ASSERT_OK_AND_ASSIGN(double late, c2.tensors[1].second.Item());
  EXPECT_EQ(late, 2);
}

TEST(SafetensorsTest, TensorsOutliveTheContentsAndNeverWriteTheFile) {
  const std::string path = TestDir() + "/life.safetensors";
  ASSERT_OK_AND_ASSIGN(Tensor x, Tensor::FromVector<double>({1, 2, 3}, {3}));
  ASSERT_OK(WriteSafetensors(path, {{"x", x}}));
  const std::string before = ReadFileBytes(path);
  Tensor kept;
  {
    ASSERT_OK_AND_ASSIGN(SafetensorsContents contents, ReadSafetensors(path));
    ASSERT_OK_AND_ASSIGN(kept, contents.Get("x"));
  }
  ASSERT_OK_AND_ASSIGN(std::vector<double> v, kept.ToVector<double>());
  EXPECT_EQ(v, (std::vector<double>{1, 2, 3}));
  // The mapping is private: writes land in this process's copy only.
  ASSERT_OK(kept.Fill(9));
  ASSERT_OK_AND_ASSIGN(v, kept.ToVector<double>());
  EXPECT_EQ(v, (std::vector<double>{9, 9, 9}));
  EXPECT_EQ(ReadFileBytes(path), before);
}

TEST(SafetensorsTest, GetNamesTheMissingTensorAndTheFile) {
  const std::string path = TestDir() + "/get.safetensors";
  ASSERT_OK_AND_ASSIGN(Tensor x, Tensor::Scalar(1, DType::kF32));
  ASSERT_OK(WriteSafetensors(path, {{"x", x}}));
  ASSERT_OK_AND_ASSIGN(SafetensorsContents contents, ReadSafetensors(path));
  EXPECT_STATUS_IS(contents.Get("backbone.norm_f.weight"), absl::StatusCode::kNotFound,
                   "'backbone.norm_f.weight'");
  EXPECT_STATUS_IS(contents.Get("y"), absl::StatusCode::kNotFound, path);
}

TEST(SafetensorsTest, GpuTensorsAreWrittenFromTheDevice) {
  LYRA_REQUIRE_GPU();
  const std::string path = TestDir() + "/gpu.safetensors";
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16, DType::kF64}) {
    SCOPED_TRACE(DTypeName(dtype));
    ASSERT_OK_AND_ASSIGN(Tensor cpu, ::lyra::testing::RandomTensor({17, 5}, dtype, 7));
    ASSERT_OK_AND_ASSIGN(Tensor gpu, cpu.To(Device::Cuda(0)));
    ASSERT_OK_AND_ASSIGN(Tensor gpu_t, gpu.Transpose(0, 1));  // non-contiguous on the device
    ASSERT_OK_AND_ASSIGN(Tensor cpu_t, cpu.Transpose(0, 1));
    ASSERT_OK(WriteSafetensors(path, {{"w", gpu}, {"wt", gpu_t}}));
    ASSERT_OK_AND_ASSIGN(SafetensorsContents contents, ReadSafetensors(path));
    ASSERT_OK_AND_ASSIGN(Tensor w, contents.Get("w"));
    ASSERT_OK_AND_ASSIGN(Tensor wt, contents.Get("wt"));
    EXPECT_EQ(RawBytes(w), RawBytes(cpu));
    EXPECT_EQ(RawBytes(wt), RawBytes(cpu_t));
    // And back onto the GPU from the mapping.
    ASSERT_OK_AND_ASSIGN(Tensor back, wt.To(Device::Cuda(0)));
    EXPECT_TRUE(AllClose(back, cpu_t, {0.0, 0.0}));
  }
}

// --- Malformed files ----------------------------------------------------------------------

constexpr absl::StatusCode kDataLoss = absl::StatusCode::kDataLoss;

TEST(SafetensorsTest, MissingFileIsNotFound) {
  const std::string path = TestDir() + "/nope.safetensors";
  EXPECT_STATUS_IS(ReadSafetensors(path), absl::StatusCode::kNotFound, path);
}

TEST(SafetensorsTest, DirectoryIsNotAFile) {
  const std::string dir = TestDir();
  EXPECT_STATUS_IS(ReadSafetensors(dir), absl::StatusCode::kInvalidArgument,
                   "not a regular file");
}

TEST(SafetensorsTest, ShortFilesAreDataLoss) {
  const std::string path = TestDir() + "/short.safetensors";
  WriteFileBytes(path, "");
  EXPECT_STATUS_IS(ReadSafetensors(path), kDataLoss, "0 bytes, shorter than the 8-byte");
  WriteFileBytes(path, std::string("\x05\x00\x00\x00\x00", 5));
  EXPECT_STATUS_IS(ReadSafetensors(path), kDataLoss, "5 bytes, shorter than the 8-byte");
  EXPECT_STATUS_IS(ReadSafetensors(path), kDataLoss, path);
}

TEST(SafetensorsTest, BadHeaderLengthsAreDataLoss) {
  const std::string path = TestDir() + "/len.safetensors";
  WriteFileBytes(path, LittleEndianU64(1000) + "{}");
  EXPECT_STATUS_IS(ReadSafetensors(path), kDataLoss, "header length 1000 runs past the end");
  WriteFileBytes(path, LittleEndianU64(3) + "{}");  // one byte short
  EXPECT_STATUS_IS(ReadSafetensors(path), kDataLoss, "runs past the end of the 10-byte file");
  WriteFileBytes(path, LittleEndianU64(200'000'000) + "{}");
  EXPECT_STATUS_IS(ReadSafetensors(path), kDataLoss, "above the limit");
  WriteFileBytes(path, LittleEndianU64(std::numeric_limits<uint64_t>::max()) + "{}");
  EXPECT_STATUS_IS(ReadSafetensors(path), kDataLoss, "above the limit");
  WriteFileBytes(path, LittleEndianU64(0));  // an empty header is not a JSON object
  EXPECT_STATUS_IS(ReadSafetensors(path), kDataLoss, "not valid UTF-8 JSON");
}

TEST(SafetensorsTest, HeadersThatAreNotJsonObjectsAreDataLoss) {
  const std::string dir = TestDir();
  EXPECT_STATUS_IS(ReadSafetensors(WriteBadFile(dir, "{not json")), kDataLoss,
                   "not valid UTF-8 JSON");
  EXPECT_STATUS_IS(ReadSafetensors(WriteBadFile(dir, R"({"a":1} trailing)")), kDataLoss,
                   "not valid UTF-8 JSON");
  EXPECT_STATUS_IS(ReadSafetensors(WriteBadFile(dir, "{\"\xff\xfe\":{}}")), kDataLoss,
                   "not valid UTF-8 JSON");
  EXPECT_STATUS_IS(ReadSafetensors(WriteBadFile(dir, "[1, 2]")), kDataLoss,
                   "is a JSON array, not an object");
  EXPECT_STATUS_IS(ReadSafetensors(WriteBadFile(dir, "\"text\"")), kDataLoss,
                   "is a JSON string, not an object");
  const std::string twice =
      R"({"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]},)"
      R"("a":{"dtype":"F32","shape":[],"data_offsets":[4,8]}})";
  EXPECT_STATUS_IS(ReadSafetensors(WriteBadFile(dir, twice, std::string(8, '\0'))), kDataLoss,
                   "repeats the key 'a'");
  const std::string twice_inner = R"({"a":{"dtype":"F32","dtype":"F16","shape":[],)"
                                  R"("data_offsets":[0,4]}})";
  EXPECT_STATUS_IS(ReadSafetensors(WriteBadFile(dir, twice_inner, std::string(4, '\0'))),
                   kDataLoss, "repeats the key 'dtype'");
}

TEST(SafetensorsTest, BadMetadataIsDataLoss) {
  const std::string dir = TestDir();
  EXPECT_STATUS_IS(ReadSafetensors(WriteBadFile(dir, R"({"__metadata__":["x"]})")), kDataLoss,
                   "\"__metadata__\" is a JSON array, not an object of strings");
  EXPECT_STATUS_IS(ReadSafetensors(WriteBadFile(dir, R"({"__metadata__":{"step":3}})")),
                   kDataLoss, "value of 'step' is a JSON number, not a string");
}

TEST(SafetensorsTest, MalformedTensorEntriesAreDataLoss) {
  const std::string dir = TestDir();
  const std::string data(8, '\0');
  struct Case {
    std::string header;
    std::string message;
  };
  const std::vector<Case> cases = {
      {R"({"w":3})", "tensor 'w' is a JSON number, not an object"},
      {R"({"w":{"shape":[2],"data_offsets":[0,8]}})", "tensor 'w' has no \"dtype\""},
      {R"({"w":{"dtype":"F32","data_offsets":[0,8]}})", "tensor 'w' has no \"shape\""},
      {R"({"w":{"dtype":"F32","shape":[2]}})", "tensor 'w' has no \"data_offsets\""},
      {R"({"w":{"dtype":32,"shape":[2],"data_offsets":[0,8]}})",
       "\"dtype\" that is a JSON number, not a string"},
      {R"({"w":{"dtype":"F32","shape":"2","data_offsets":[0,8]}})",
       "\"shape\" that is a JSON string, not an array"},
      {R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})",
       "shape [-2], whose entries must be non-negative integers"},
      {R"({"w":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})",
       "whose entries must be non-negative integers"},
      {R"({"w":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}})",
       "whose entries must be non-negative integers"},
      {R"({"w":{"dtype":"F32","shape":[null],"data_offsets":[0,8]}})",
       "whose entries must be non-negative integers"},
      {R"({"w":{"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,8]}})",
       "whose entries must be non-negative integers"},
      {R"({"w":{"dtype":"F32","shape":[4294967296,4294967296,4],"data_offsets":[0,8]}})",
       "whose byte size overflows"},
      {R"({"w":{"dtype":"F32","shape":[2],"data_offsets":{"begin":0}}})",
       "expected [begin, end] with 0 <= begin <= end"},
      {R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0]}})",
       "\"data_offsets\" [0], expected [begin, end]"},
      {R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4,8]}})",
       "expected [begin, end]"},
      {R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})",
       "\"data_offsets\" [8,0], expected [begin, end] with 0 <= begin <= end"},
      {R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}})", "expected [begin, end]"},
      {R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8.0]}})", "expected [begin, end]"},
      {R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,"8"]}})", "expected [begin, end]"},
      {R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}})",
       "data_offsets [0, 12] beyond the data buffer's 8 bytes (truncated file?)"},
      {R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", "beyond the data buffer"},
      {R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,8]}})",
       "tensor 'w' is F32[1], 4 bytes, but its data_offsets [0, 8] span 8 bytes"},
      {R"({"w":{"dtype":"F64","shape":[2,0],"data_offsets":[0,8]}})",
       "F64[2, 0], 0 bytes, but its data_offsets [0, 8] span 8 bytes"},
      {R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
       R"("v":{"dtype":"F16","shape":[2],"data_offsets":[6,10]}})",
       "beyond the data buffer"},
      {R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
       R"("v":{"dtype":"F16","shape":[2],"data_offsets":[4,8]}})",
       "tensors 'w' [0, 8) and 'v' [4, 8) overlap"},
      {R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
       R"("v":{"dtype":"BOOL","shape":[1],"data_offsets":[7,8]}})",
       "tensors 'w' [0, 8) and 'v' [7, 8) overlap"},
      {R"({"v":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},)"
       R"("w":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}})",
       "tensors 'v' [0, 4) and 'w' [0, 4) overlap"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.header);
    const std::string path = WriteBadFile(dir, c.header, data);
    EXPECT_STATUS_IS(ReadSafetensors(path), kDataLoss, c.message);
    EXPECT_STATUS_IS(ReadSafetensors(path), kDataLoss, path);
  }
}

TEST(SafetensorsTest, InvalidBoolBytesAreDataLoss) {
  const std::string dir = TestDir();
  const std::string header = R"({"mask":{"dtype":"BOOL","shape":[3],"data_offsets":[0,3]}})";
  EXPECT_STATUS_IS(ReadSafetensors(WriteBadFile(dir, header, std::string("\x01\x00\x02", 3))),
                   kDataLoss, "BOOL tensor 'mask' holds the byte 2 at element 2");
}

TEST(SafetensorsTest, DTypesLyraLacksAreUnimplemented) {
  const std::string dir = TestDir();
  for (const std::string dtype : {"I8", "U8", "I16", "U16", "U32", "U64", "F8_E4M3", "F8_E5M2",
                                  "f32", "COMPLEX"}) {
    SCOPED_TRACE(dtype);
    const std::string header = absl::StrCat(R"({"emb.q":{"dtype":")", dtype,
                                            R"(","shape":[2],"data_offsets":[0,2]}})");
    EXPECT_STATUS_IS(ReadSafetensors(WriteBadFile(dir, header, "\x01\x02")),
                     absl::StatusCode::kUnimplemented,
                     absl::StrCat("tensor 'emb.q' has dtype ", dtype, ", which Lyra does not"));
  }
  const std::string rank9 =
      R"({"deep":{"dtype":"F32","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,4]}})";
  EXPECT_STATUS_IS(ReadSafetensors(WriteBadFile(dir, rank9, std::string(4, '\0'))),
                   absl::StatusCode::kUnimplemented, "tensor 'deep' has rank 9");
}

TEST(SafetensorsTest, TruncatedFileIsDataLoss) {
  const std::string path = TestDir() + "/cut.safetensors";
  ASSERT_OK_AND_ASSIGN(Tensor x, Tensor::Arange(0, 100, 1, DType::kF32));
  ASSERT_OK(WriteSafetensors(path, {{"x", x}}));
  std::string bytes = ReadFileBytes(path);
  bytes.pop_back();
  WriteFileBytes(path, bytes);
  EXPECT_STATUS_IS(ReadSafetensors(path), kDataLoss,
                   "tensor 'x' has data_offsets [0, 400] beyond the data buffer's 399 bytes");
  // Cut inside the header.
  WriteFileBytes(path, bytes.substr(0, 20));
  EXPECT_STATUS_IS(ReadSafetensors(path), kDataLoss, "runs past the end of the 20-byte file");
}

// --- Writing errors and atomicity ---------------------------------------------------------

TEST(SafetensorsTest, InvalidTensorListsAreInvalidArgument) {
  const std::string path = TestDir() + "/w.safetensors";
  ASSERT_OK_AND_ASSIGN(Tensor x, Tensor::Scalar(1, DType::kF32));
  EXPECT_STATUS_IS(WriteSafetensors(path, {{"x", x}, {"y", x}, {"x", x}}),
                   absl::StatusCode::kInvalidArgument, "the tensor name 'x' appears twice");
  EXPECT_STATUS_IS(WriteSafetensors(path, {{"__metadata__", x}}),
                   absl::StatusCode::kInvalidArgument, "\"__metadata__\" is reserved");
  EXPECT_STATUS_IS(WriteSafetensors(path, {{"u", Tensor()}}), absl::StatusCode::kInvalidArgument,
                   "tensor 'u' is undefined");
  EXPECT_STATUS_IS(WriteSafetensors(path, {{"bad\xc3", x}}), absl::StatusCode::kInvalidArgument,
                   "not valid UTF-8");
  EXPECT_STATUS_IS(WriteSafetensors(path, {{"x", x}}, {{"k", "\xed\xa0\x80"}}),  // a surrogate
                   absl::StatusCode::kInvalidArgument, "metadata entry 'k' is not valid UTF-8");
  EXPECT_STATUS_IS(WriteSafetensors(path, {{"x", x}}, {{"k", "\xc0\xaf"}}),  // overlong '/'
                   absl::StatusCode::kInvalidArgument, "not valid UTF-8");
  for (const std::string bad : {"\xe2\x82", "\xf4\x90\x80\x80", "\x80", "a\xff" "b"}) {
    EXPECT_STATUS_IS(WriteSafetensors(path, {{"x", x}}, {{"k", bad}}),
                     absl::StatusCode::kInvalidArgument, "not valid UTF-8");
  }
  // The largest code point and a 3-byte character are fine.
  ASSERT_OK(WriteSafetensors(path, {{"\xe2\x82\xac", x}}, {{"k", "\xf4\x8f\xbf\xbf"}}));
  ASSERT_OK_AND_ASSIGN(SafetensorsContents contents, ReadSafetensors(path));
  EXPECT_EQ(contents.tensors[0].first, "\xe2\x82\xac");
  EXPECT_EQ(contents.metadata.at("k"), "\xf4\x8f\xbf\xbf");
  std::filesystem::remove(path);
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(SafetensorsTest, FailedWriteLeavesTheOldFileIntactAndNoTempFile) {
  const std::string dir = TestDir();
  const std::string path = dir + "/model.safetensors";
  ASSERT_OK_AND_ASSIGN(Tensor old_value, Tensor::FromVector<float>({1, 2, 3}, {3}));
  ASSERT_OK(WriteSafetensors(path, {{"w", old_value}}, {{"version", "1"}}));
  const std::string before = ReadFileBytes(path);

  ASSERT_OK_AND_ASSIGN(Tensor new_value, Tensor::FromVector<float>({4, 5}, {2}));
  EXPECT_STATUS_IS(WriteSafetensors(path, {{"w", new_value}, {"w", new_value}}),
                   absl::StatusCode::kInvalidArgument, "appears twice");
  EXPECT_EQ(ReadFileBytes(path), before);
  EXPECT_TRUE(TempFilesIn(dir, "model.safetensors").empty());

  // A failure after the temp file was written (renaming over a non-empty directory) also
  // leaves no temp file behind.
  const std::string blocked = dir + "/blocked.safetensors";
  std::filesystem::create_directories(blocked + "/inside");
  EXPECT_FALSE(WriteSafetensors(blocked, {{"w", new_value}}).ok());
  EXPECT_TRUE(TempFilesIn(dir, "blocked.safetensors").empty());

  // A successful write replaces the file completely.
  ASSERT_OK(WriteSafetensors(path, {{"w", new_value}}));
  ASSERT_OK_AND_ASSIGN(SafetensorsContents contents, ReadSafetensors(path));
  EXPECT_TRUE(contents.metadata.empty());
  ASSERT_OK_AND_ASSIGN(Tensor w, contents.Get("w"));
  ASSERT_OK_AND_ASSIGN(std::vector<float> wv, w.ToVector<float>());
  EXPECT_EQ(wv, (std::vector<float>{4, 5}));
  EXPECT_TRUE(TempFilesIn(dir, "model.safetensors").empty());
}

TEST(SafetensorsTest, WriteIntoMissingDirectoryIsNotFound) {
  const std::string path = TestDir() + "/no/such/dir/model.safetensors";
  ASSERT_OK_AND_ASSIGN(Tensor x, Tensor::Scalar(1, DType::kF32));
  EXPECT_STATUS_IS(WriteSafetensors(path, {{"x", x}}), absl::StatusCode::kNotFound, path);
}

}  // namespace
}  // namespace lyra
