// safetensors read (memory-mapped, fully validated) and write (temp file + fsync + rename).
//
// Reading never trusts the file: every JSON field's type is checked before it is read, every
// size is checked for overflow, and every tensor's byte range is checked against the data
// buffer before a view of it is made. JSON is parsed with exceptions off; the writer checks
// UTF-8 itself so that serializing cannot throw either.
#include "tensor/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <tuple>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "cuda/strided.h"

namespace lyra {
namespace {

// Both the file format and Lyra's tensors are little-endian; bytes are copied as they are.
static_assert(std::endian::native == std::endian::little,
              "safetensors I/O assumes a little-endian host");

constexpr absl::string_view kMetadataKey = "__metadata__";
constexpr size_t kLengthBytes = 8;  // the u64 header length that starts every file

using Json = nlohmann::json;

absl::Status Corrupt(const std::string& path, absl::string_view what) {
  return absl::DataLossError(absl::StrCat("safetensors file '", path, "': ", what));
}

absl::Status ErrnoError(int error_number, absl::string_view action, const std::string& path) {
  return absl::ErrnoToStatus(error_number, absl::StrCat(action, " '", path, "'"));
}

// --- The memory mapping -------------------------------------------------------------------

// A private, copy-on-write mapping of a whole file; unmapped when the last tensor viewing it
// goes away (each tensor's Storage holds a shared_ptr to it).
class MappedFile {
 public:
  static absl::StatusOr<std::shared_ptr<MappedFile>> Open(const std::string& path) {
    const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ErrnoError(errno, "cannot open safetensors file", path);
    struct stat st;
    if (fstat(fd, &st) != 0) {
      const int error_number = errno;
      close(fd);
      return ErrnoError(error_number, "cannot stat safetensors file", path);
    }
    if (!S_ISREG(st.st_mode)) {
      close(fd);
      return absl::InvalidArgumentError(
          absl::StrCat("safetensors file '", path, "' is not a regular file"));
    }
    const size_t size = static_cast<size_t>(st.st_size);
    if (size < kLengthBytes) {
      close(fd);
      return Corrupt(path, absl::StrCat("the file is ", size,
                                        " bytes, shorter than the 8-byte header length"));
    }
    void* data = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    const int error_number = errno;
    close(fd);  // the mapping stays valid without the descriptor
    if (data == MAP_FAILED) return ErrnoError(error_number, "cannot mmap safetensors file", path);
    return std::shared_ptr<MappedFile>(new MappedFile(static_cast<uint8_t*>(data), size));
  }

  ~MappedFile() { munmap(data_, size_); }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  MappedFile(uint8_t* data, size_t size) : data_(data), size_(size) {}

  uint8_t* data_;
  size_t size_;
};

// --- Header parsing -----------------------------------------------------------------------

// One tensor's header entry, validated.
struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin;  // byte range [begin, end) of the data buffer
  uint64_t end;
};

struct Header {
  std::vector<Entry> entries;  // sorted by (begin, end, name)
  std::map<std::string, std::string> metadata;
};

// A non-negative JSON integer (unsigned, or signed and >= 0, such as -0); nullopt otherwise.
std::optional<uint64_t> NonNegativeInteger(const Json& v) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer() && v.get<int64_t>() >= 0) {
    return static_cast<uint64_t>(v.get<int64_t>());
  }
  return std::nullopt;
}

// Parses JSON with exceptions off, and reports the first key repeated inside one object
// (nlohmann would silently keep the last value; a file that says two things is corrupt).
absl::StatusOr<Json> ParseJsonObject(const std::string& path, const char* begin,
                                     const char* end) {
  std::vector<std::set<std::string>> open_objects;
  std::optional<std::string> duplicate;
  auto callback = [&](int /*depth*/, Json::parse_event_t event, Json& parsed) {
    switch (event) {
      case Json::parse_event_t::object_start:
        open_objects.emplace_back();
        break;
      case Json::parse_event_t::object_end:
        if (!open_objects.empty()) open_objects.pop_back();
        break;
      case Json::parse_event_t::key:
        if (parsed.is_string() && !open_objects.empty() &&
            !open_objects.back().insert(parsed.get<std::string>()).second && !duplicate) {
          duplicate = parsed.get<std::string>();
        }
        break;
      default:
        break;
    }
    return true;
  };
  Json json = Json::parse(begin, end, callback, /*allow_exceptions=*/false);
  if (json.is_discarded()) return Corrupt(path, "the header is not valid UTF-8 JSON");
  if (!json.is_object()) {
    return Corrupt(path, absl::StrCat("the header is a JSON ", json.type_name(),
                                      ", not an object"));
  }
  if (duplicate) {
    return Corrupt(path, absl::StrCat("the header repeats the key '", *duplicate, "'"));
  }
  return json;
}

absl::Status ParseMetadata(const std::string& path, const Json& value,
                           std::map<std::string, std::string>& metadata) {
  if (!value.is_object()) {
    return Corrupt(path, absl::StrCat("\"__metadata__\" is a JSON ", value.type_name(),
                                      ", not an object of strings"));
  }
  for (const auto& [key, v] : value.items()) {
    if (!v.is_string()) {
      return Corrupt(path, absl::StrCat("\"__metadata__\" value of '", key, "' is a JSON ",
                                        v.type_name(), ", not a string"));
    }
    metadata[key] = v.get<std::string>();
  }
  return absl::OkStatus();
}

// Validates one tensor entry against the data buffer's size.
absl::StatusOr<Entry> ParseEntry(const std::string& path, const std::string& name,
                                 const Json& info, uint64_t buffer_bytes) {
  const std::string where = absl::StrCat("tensor '", name, "'");
  if (!info.is_object()) {
    return Corrupt(path, absl::StrCat(where, " is a JSON ", info.type_name(), ", not an object"));
  }
  for (const char* field : {"dtype", "shape", "data_offsets"}) {
    if (!info.contains(field)) return Corrupt(path, absl::StrCat(where, " has no \"", field, "\""));
  }
  Entry entry;
  entry.name = name;

  const Json& dtype = info["dtype"];
  if (!dtype.is_string()) {
    return Corrupt(path, absl::StrCat(where, " has a \"dtype\" that is a JSON ",
                                      dtype.type_name(), ", not a string"));
  }
  const std::string dtype_name = dtype.get<std::string>();
  absl::StatusOr<DType> parsed_dtype = ParseSafetensorsDType(dtype_name);
  if (!parsed_dtype.ok()) {
    return absl::UnimplementedError(absl::StrCat(
        "safetensors file '", path, "': ", where, " has dtype ", dtype_name,
        ", which Lyra does not support (it reads F64, F32, F16, BF16, I64, I32, BOOL)"));
  }
  entry.dtype = *parsed_dtype;

  const Json& shape = info["shape"];
  if (!shape.is_array()) {
    return Corrupt(path, absl::StrCat(where, " has a \"shape\" that is a JSON ",
                                      shape.type_name(), ", not an array"));
  }
  if (shape.size() > static_cast<size_t>(cuda::kMaxDims)) {
    return absl::UnimplementedError(absl::StrCat("safetensors file '", path, "': ", where,
                                                 " has rank ", shape.size(),
                                                 ", above Lyra's maximum of ", cuda::kMaxDims));
  }
  for (const Json& size : shape) {
    std::optional<uint64_t> s = NonNegativeInteger(size);
    if (!s || *s > static_cast<uint64_t>(INT64_MAX)) {
      return Corrupt(path, absl::StrCat(where, " has shape ", shape.dump(),
                                        ", whose entries must be non-negative integers"));
    }
    entry.shape.push_back(static_cast<int64_t>(*s));
  }
  // numel * element size, with overflow checked (a zero anywhere makes it 0).
  uint64_t expected_bytes = DTypeSize(entry.dtype);
  if (std::find(entry.shape.begin(), entry.shape.end(), 0) != entry.shape.end()) {
    expected_bytes = 0;
  } else {
    for (int64_t s : entry.shape) {
      if (__builtin_mul_overflow(expected_bytes, static_cast<uint64_t>(s), &expected_bytes) ||
          expected_bytes > static_cast<uint64_t>(INT64_MAX)) {
        return Corrupt(path, absl::StrCat(where, " has shape ", shape.dump(),
                                          ", whose byte size overflows"));
      }
    }
  }

  const Json& offsets = info["data_offsets"];
  std::optional<uint64_t> begin, end;
  if (offsets.is_array() && offsets.size() == 2) {
    begin = NonNegativeInteger(offsets[0]);
    end = NonNegativeInteger(offsets[1]);
  }
  if (!begin || !end || *begin > *end) {
    return Corrupt(path, absl::StrCat(where, " has \"data_offsets\" ", offsets.dump(),
                                      ", expected [begin, end] with 0 <= begin <= end"));
  }
  if (*end > buffer_bytes) {
    return Corrupt(path, absl::StrCat(where, " has data_offsets [", *begin, ", ", *end,
                                      "] beyond the data buffer's ", buffer_bytes,
                                      " bytes (truncated file?)"));
  }
  if (*end - *begin != expected_bytes) {
    return Corrupt(path, absl::StrCat(where, " is ", SafetensorsDTypeName(entry.dtype),
                                      ShapeToString(entry.shape), ", ", expected_bytes,
                                      " bytes, but its data_offsets [", *begin, ", ", *end,
                                      "] span ", *end - *begin, " bytes"));
  }
  entry.begin = *begin;
  entry.end = *end;
  return entry;
}

absl::StatusOr<Header> ParseHeader(const std::string& path, const char* text, size_t length,
                                   uint64_t buffer_bytes) {
  LYRA_ASSIGN_OR_RETURN(Json json, ParseJsonObject(path, text, text + length));
  Header header;
  for (const auto& [key, value] : json.items()) {
    if (key == kMetadataKey) {
      LYRA_RETURN_IF_ERROR(ParseMetadata(path, value, header.metadata));
      continue;
    }
    LYRA_ASSIGN_OR_RETURN(Entry entry, ParseEntry(path, key, value, buffer_bytes));
    header.entries.push_back(std::move(entry));
  }
  std::sort(header.entries.begin(), header.entries.end(), [](const Entry& a, const Entry& b) {
    return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
  });
  // Overlap: in begin order, each non-empty range must start at or after the furthest end so
  // far. Empty tensors own no bytes and overlap nothing.
  const Entry* furthest = nullptr;
  for (const Entry& e : header.entries) {
    if (e.begin == e.end) continue;
    if (furthest != nullptr && e.begin < furthest->end) {
      return Corrupt(path, absl::StrCat("tensors '", furthest->name, "' [", furthest->begin,
                                        ", ", furthest->end, ") and '", e.name, "' [", e.begin,
                                        ", ", e.end, ") overlap"));
    }
    if (furthest == nullptr || e.end > furthest->end) furthest = &e;
  }
  return header;
}

// --- Writing helpers ----------------------------------------------------------------------

// True if `s` is well-formed UTF-8 (no overlong forms, surrogates or code points > U+10FFFF).
bool IsValidUtf8(absl::string_view s) {
  // A lead byte 110xxxxx, 1110xxxx or 11110xxx starts a sequence of 1, 2 or 3 continuation
  // bytes 10xxxxxx; the code point must need that many (no overlong forms).
  struct Sequence {
    uint8_t lead_mask, lead_bits;
    int continuation_bytes;
    uint32_t min_code_point;
  };
  constexpr Sequence kSequences[] = {
      {0xE0, 0xC0, 1, 0x80}, {0xF0, 0xE0, 2, 0x800}, {0xF8, 0xF0, 3, 0x10000}};
  size_t i = 0;
  while (i < s.size()) {
    const uint8_t lead = static_cast<uint8_t>(s[i]);
    if (lead < 0x80) {
      ++i;
      continue;
    }
    const Sequence* seq = nullptr;
    for (const Sequence& candidate : kSequences) {
      if ((lead & candidate.lead_mask) == candidate.lead_bits) seq = &candidate;
    }
    if (seq == nullptr || i + seq->continuation_bytes >= s.size()) return false;
    uint32_t code_point = lead & static_cast<uint8_t>(~seq->lead_mask);
    for (int k = 1; k <= seq->continuation_bytes; ++k) {
      const uint8_t next = static_cast<uint8_t>(s[i + k]);
      if ((next & 0xC0) != 0x80) return false;
      code_point = (code_point << 6) | (next & 0x3F);
    }
    if (code_point < seq->min_code_point || code_point > 0x10FFFF ||
        (code_point >= 0xD800 && code_point <= 0xDFFF)) {  // UTF-16 surrogates
      return false;
    }
    i += seq->continuation_bytes + 1;
  }
  return true;
}

// The directory holding `path`, for fsync after the rename.
std::string DirectoryOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// The temp file of an atomic write: removed on destruction unless Commit() renamed it.
class TempFile {
 public:
  TempFile(std::string temp_path, std::string final_path)
      : temp_path_(std::move(temp_path)), final_path_(std::move(final_path)) {}
  ~TempFile() {
    if (fd_ >= 0) close(fd_);
    if (created_ && !committed_) unlink(temp_path_.c_str());
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  absl::Status Create() {
    fd_ = open(temp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd_ < 0) return ErrnoError(errno, "cannot create", temp_path_);
    created_ = true;
    return absl::OkStatus();
  }

  absl::Status Write(const void* data, size_t bytes) {
    const char* p = static_cast<const char*>(data);
    while (bytes > 0) {
      const ssize_t n = write(fd_, p, bytes);
      if (n < 0) {
        if (errno == EINTR) continue;
        return ErrnoError(errno, "cannot write", temp_path_);
      }
      p += n;
      bytes -= static_cast<size_t>(n);
    }
    return absl::OkStatus();
  }

  // fsync, close, rename over the final path, fsync the directory.
  absl::Status Commit() {
    if (fsync(fd_) != 0) return ErrnoError(errno, "cannot fsync", temp_path_);
    const int fd = fd_;
    fd_ = -1;
    if (close(fd) != 0) return ErrnoError(errno, "cannot close", temp_path_);
    if (rename(temp_path_.c_str(), final_path_.c_str()) != 0) {
      return ErrnoError(errno, absl::StrCat("cannot rename '", temp_path_, "' to"), final_path_);
    }
    committed_ = true;
    // Make the rename itself durable. Some file systems cannot fsync a directory (EINVAL); the
    // file is complete either way.
    const std::string dir = DirectoryOf(final_path_);
    const int dir_fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0) return ErrnoError(errno, "cannot open directory", dir);
    const int rc = fsync(dir_fd);
    const int error_number = errno;
    close(dir_fd);
    if (rc != 0 && error_number != EINVAL) {
      return ErrnoError(error_number, "cannot fsync directory", dir);
    }
    return absl::OkStatus();
  }

 private:
  std::string temp_path_;
  std::string final_path_;
  int fd_ = -1;
  bool created_ = false;
  bool committed_ = false;
};

absl::Status CheckWriteArguments(const std::string& path,
                                 const std::vector<std::pair<std::string, Tensor>>& tensors,
                                 const std::map<std::string, std::string>& metadata) {
  const std::string op = absl::StrCat("WriteSafetensors('", path, "')");
  std::set<absl::string_view> names;
  for (const auto& [name, tensor] : tensors) {
    if (name == kMetadataKey) {
      return absl::InvalidArgumentError(
          absl::StrCat(op, ": \"__metadata__\" is reserved and cannot name a tensor"));
    }
    if (!names.insert(name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(op, ": the tensor name '", name, "' appears twice"));
    }
    if (!IsValidUtf8(name)) {
      return absl::InvalidArgumentError(
          absl::StrCat(op, ": a tensor name is not valid UTF-8: '", name, "'"));
    }
    if (!tensor.defined()) {
      return absl::InvalidArgumentError(
          absl::StrCat(op, ": tensor '", name, "' is undefined"));
    }
  }
  for (const auto& [key, value] : metadata) {
    if (!IsValidUtf8(key) || !IsValidUtf8(value)) {
      return absl::InvalidArgumentError(
          absl::StrCat(op, ": metadata entry '", key, "' is not valid UTF-8"));
    }
  }
  return absl::OkStatus();
}

// The header JSON, padded with spaces to a multiple of 8 bytes.
std::string BuildHeader(const std::vector<std::pair<std::string, Tensor>>& tensors,
                        const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json root = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json meta = nlohmann::ordered_json::object();
    for (const auto& [key, value] : metadata) meta[key] = value;
    root[std::string(kMetadataKey)] = std::move(meta);
  }
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    nlohmann::ordered_json info = nlohmann::ordered_json::object();
    info["dtype"] = std::string(SafetensorsDTypeName(tensor.dtype()));
    info["shape"] = tensor.shape();
    info["data_offsets"] = {offset, offset + tensor.nbytes()};
    offset += tensor.nbytes();
    root[name] = std::move(info);
  }
  // Every string was checked to be UTF-8, so `replace` never replaces anything; it only makes
  // dump() unable to throw.
  std::string header =
      root.dump(/*indent=*/-1, ' ', /*ensure_ascii=*/false, Json::error_handler_t::replace);
  header.append((8 - header.size() % 8) % 8, ' ');
  return header;
}

}  // namespace

absl::StatusOr<Tensor> SafetensorsContents::Get(absl::string_view name) const {
  for (const auto& [tensor_name, tensor] : tensors) {
    if (tensor_name == name) return tensor;
  }
  return absl::NotFoundError(
      absl::StrCat("no tensor '", name, "' in safetensors file '", path, "'"));
}

absl::StatusOr<SafetensorsContents> ReadSafetensors(const std::string& path) {
  LYRA_ASSIGN_OR_RETURN(std::shared_ptr<MappedFile> file, MappedFile::Open(path));
  uint64_t header_bytes;
  std::memcpy(&header_bytes, file->data(), kLengthBytes);
  if (header_bytes > kMaxSafetensorsHeaderBytes) {
    return Corrupt(path, absl::StrCat("the header length ", header_bytes,
                                      " is above the limit of ", kMaxSafetensorsHeaderBytes,
                                      " bytes"));
  }
  if (header_bytes > file->size() - kLengthBytes) {
    return Corrupt(path, absl::StrCat("the header length ", header_bytes,
                                      " runs past the end of the ", file->size(),
                                      "-byte file"));
  }
  const uint64_t data_start = kLengthBytes + header_bytes;
  const uint64_t buffer_bytes = file->size() - data_start;
  LYRA_ASSIGN_OR_RETURN(
      Header header,
      ParseHeader(path, reinterpret_cast<const char*>(file->data() + kLengthBytes),
                  header_bytes, buffer_bytes));

  SafetensorsContents contents;
  contents.path = path;
  contents.metadata = std::move(header.metadata);
  for (const Entry& e : header.entries) {
    uint8_t* bytes = file->data() + data_start + e.begin;
    const size_t nbytes = e.end - e.begin;
    if (e.dtype == DType::kBool) {
      // Any byte but 0 and 1 would be an invalid C++ bool.
      for (size_t i = 0; i < nbytes; ++i) {
        if (bytes[i] > 1) {
          return Corrupt(path, absl::StrCat("BOOL tensor '", e.name, "' holds the byte ",
                                            static_cast<int>(bytes[i]), " at element ", i));
        }
      }
    }
    Tensor tensor;
    if (nbytes > 0 && reinterpret_cast<uintptr_t>(bytes) % DTypeSize(e.dtype) != 0) {
      LYRA_ASSIGN_OR_RETURN(tensor, TensorFromHostBytes(bytes, e.shape, e.dtype, Device::Cpu()));
    } else {
      std::shared_ptr<Storage> storage =
          Storage::Wrap(bytes, nbytes, Device::Cpu(), [file]() mutable { file.reset(); });
      LYRA_ASSIGN_OR_RETURN(tensor, Tensor::FromStorage(std::move(storage), e.shape,
                                                        ContiguousStrides(e.shape), 0, e.dtype));
    }
    contents.tensors.emplace_back(e.name, std::move(tensor));
  }
  return contents;
}

absl::Status WriteSafetensors(const std::string& path,
                              const std::vector<std::pair<std::string, Tensor>>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  LYRA_RETURN_IF_ERROR(CheckWriteArguments(path, tensors, metadata));
  const std::string header = BuildHeader(tensors, metadata);
  const uint64_t header_bytes = header.size();

  TempFile temp(absl::StrCat(path, ".tmp.", getpid()), path);
  LYRA_RETURN_IF_ERROR(temp.Create());
  LYRA_RETURN_IF_ERROR(temp.Write(&header_bytes, kLengthBytes));
  LYRA_RETURN_IF_ERROR(temp.Write(header.data(), header.size()));
  // One tensor at a time on the host, so a model on the GPU needs host memory for its largest
  // tensor only.
  for (const auto& [name, tensor] : tensors) {
    if (tensor.nbytes() == 0) continue;
    LYRA_ASSIGN_OR_RETURN(Tensor host, tensor.To(Device::Cpu()));
    LYRA_ASSIGN_OR_RETURN(host, host.Contiguous());
    LYRA_RETURN_IF_ERROR(temp.Write(host.data(), host.nbytes()));
  }
  return temp.Commit();
}

}  // namespace lyra
