// lyra: the command-line entry point, one subcommand per job.
//
//   lyra forward --model=DIR --input=FILE.safetensors --out=FILE.safetensors
//                [--device=cpu|cuda[:N]] [--dtype=f64|f32|bf16|f16] [--grads] [--adapter=DIR]
//   lyra help [COMMAND]
//
// Exit codes: 0 success; 1 the command ran and failed (its Status is printed: a missing file is
// NotFound, a bad checkpoint InvalidArgument, ...); 2 a usage error (no or an unknown
// subcommand, an unknown flag or one the subcommand does not take, a malformed flag value, a
// stray positional argument, a missing required flag).
//
// Flags are Abseil flags, parsed here per subcommand: each subcommand lists the flags it takes,
// and every argument is matched against that list and parsed with the flag's own parser, so
// a typo is a clear error instead of a silently ignored option.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "tensor/device.h"
#include "train/forward_command.h"

ABSL_FLAG(std::string, model, "", "model directory (config.json + model.safetensors or shards)");
ABSL_FLAG(std::string, input, "", "safetensors file holding input_ids (I64 [B, T])");
ABSL_FLAG(std::string, out, "", "safetensors file to write (logits, loss, gradients)");
ABSL_FLAG(std::string, device, "cpu", "cpu, cuda or cuda:N");
ABSL_FLAG(std::string, dtype, "f32", "f64, f32, bf16 or f16 (bf16/f16: FP32 weights, autocast)");
ABSL_FLAG(bool, grads, false, "also write d loss / d parameter for every parameter");
ABSL_FLAG(std::string, adapter, "",
          "PEFT LoRA adapter directory to load onto the model (--grads: adapter gradients only, "
          "under PEFT's keys)");

namespace {

constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

struct Command {
  const char* name;
  const char* summary;
  const char* usage;
  std::vector<std::string> flags;
  int (*run)();
};

int RunForwardCommand();

const std::vector<Command>& Commands() {
  static const std::vector<Command> commands = {
      {"forward", "run a Mamba checkpoint on token ids: logits, loss and gradients",
       "lyra forward --model=DIR --input=FILE.safetensors --out=FILE.safetensors\n"
       "             [--device=cpu|cuda[:N]] [--dtype=f64|f32|bf16|f16] [--grads]\n"
       "             [--adapter=DIR]",
       {"model", "input", "out", "device", "dtype", "grads", "adapter"}, &RunForwardCommand},
  };
  return commands;
}

const Command* FindCommand(absl::string_view name) {
  for (const Command& c : Commands()) {
    if (name == c.name) return &c;
  }
  return nullptr;
}

void PrintUsage(std::FILE* to) {
  absl::FPrintF(to, "usage: lyra COMMAND [FLAGS]\n\ncommands:\n");
  for (const Command& c : Commands()) absl::FPrintF(to, "  %-10s %s\n", c.name, c.summary);
  absl::FPrintF(to, "  %-10s %s\n", "help", "this text, or a command's flags: lyra help COMMAND");
}

void PrintCommandUsage(const Command& command, std::FILE* to) {
  absl::FPrintF(to, "usage: %s\n\nflags:\n", command.usage);
  for (const std::string& name : command.flags) {
    const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    if (flag == nullptr) continue;
    absl::FPrintF(to, "  --%-8s %s (default: \"%s\")\n", name, flag->Help(),
                  flag->DefaultValue());
  }
}

int UsageError(const Command* command, const std::string& message) {
  absl::FPrintF(stderr, "lyra%s: %s\n", command ? absl::StrCat(" ", command->name) : "",
                message);
  if (command != nullptr) {
    absl::FPrintF(stderr, "run 'lyra help %s' for its flags\n", command->name);
  } else {
    PrintUsage(stderr);
  }
  return kExitUsage;
}

// Parses the command's arguments: "--name=value" (or "-name=value"), and for booleans "--name"
// and "--noname". "--name value" is not taken (a value would read as a stray argument). Returns
// an exit code to stop with, or -1 to run the command.
int ParseCommandFlags(const Command& command, const std::vector<std::string>& args) {
  for (const std::string& arg : args) {
    if (arg == "--help" || arg == "-h" || arg == "--helpfull") {
      PrintCommandUsage(command, stdout);
      return 0;
    }
    if (!absl::StartsWith(arg, "-")) {
      return UsageError(&command, absl::StrCat("unexpected argument '", arg, "'"));
    }
    absl::string_view body = arg;
    body.remove_prefix(absl::StartsWith(body, "--") ? 2 : 1);
    std::string name(body), value;
    bool has_value = false;
    if (const size_t eq = body.find('='); eq != absl::string_view::npos) {
      name = std::string(body.substr(0, eq));
      value = std::string(body.substr(eq + 1));
      has_value = true;
    }
    auto takes = [&](const std::string& n) {
      for (const std::string& f : command.flags) {
        if (f == n) return true;
      }
      return false;
    };
    absl::CommandLineFlag* flag = takes(name) ? absl::FindCommandLineFlag(name) : nullptr;
    if (flag == nullptr && !has_value && absl::StartsWith(name, "no")) {
      // --nograds
      const std::string positive = name.substr(2);
      absl::CommandLineFlag* negated =
          takes(positive) ? absl::FindCommandLineFlag(positive) : nullptr;
      if (negated != nullptr && negated->IsOfType<bool>()) {
        flag = negated;
        name = positive;
        value = "false";
        has_value = true;
      }
    }
    if (flag == nullptr) {
      return UsageError(&command, absl::StrCat("unknown flag '", arg, "' (takes --",
                                               absl::StrJoin(command.flags, ", --"), ")"));
    }
    if (!has_value) {
      if (!flag->IsOfType<bool>()) {
        return UsageError(&command, absl::StrCat("flag --", name, " needs a value: --", name,
                                                 "=VALUE"));
      }
      value = "true";
    }
    std::string error;
    if (!flag->ParseFrom(value, &error)) {
      return UsageError(&command, absl::StrCat("bad value for --", name, ": ", error));
    }
  }
  return -1;
}

int RunForwardCommand() {
  const Command* command = FindCommand("forward");
  lyra::train::ForwardOptions options;
  options.model_dir = absl::GetFlag(FLAGS_model);
  options.input_path = absl::GetFlag(FLAGS_input);
  options.output_path = absl::GetFlag(FLAGS_out);
  options.grads = absl::GetFlag(FLAGS_grads);
  options.adapter_dir = absl::GetFlag(FLAGS_adapter);
  for (const char* required : {"model", "input", "out"}) {
    if (absl::FindCommandLineFlag(required)->CurrentValue().empty()) {
      return UsageError(command, absl::StrCat("--", required, " is required"));
    }
  }
  absl::StatusOr<lyra::Device> device = lyra::ParseDevice(absl::GetFlag(FLAGS_device));
  if (!device.ok()) {
    return UsageError(command, absl::StrCat("--device: ", device.status().message()));
  }
  options.device = *device;
  absl::StatusOr<lyra::DType> dtype = lyra::train::ParseForwardDType(absl::GetFlag(FLAGS_dtype));
  if (!dtype.ok()) return UsageError(command, std::string(dtype.status().message()));
  options.dtype = *dtype;

  const absl::Status status = lyra::train::RunForward(options);
  if (!status.ok()) {
    absl::FPrintF(stderr, "lyra forward: %s\n", status.ToString());
    return kExitFailure;
  }
  absl::PrintF("lyra forward: wrote %s (%s on %s%s%s)\n", options.output_path,
               absl::GetFlag(FLAGS_dtype), options.device.ToString(),
               options.adapter_dir.empty() ? "" : ", adapter " + options.adapter_dir,
               options.grads ? ", with gradients" : "");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return UsageError(nullptr, "no command given");
  const std::string name = argv[1];
  if (name == "help" || name == "--help" || name == "-h") {
    if (argc >= 3) {
      const Command* command = FindCommand(argv[2]);
      if (command == nullptr) {
        return UsageError(nullptr, absl::StrCat("unknown command '", argv[2], "'"));
      }
      PrintCommandUsage(*command, stdout);
      return 0;
    }
    PrintUsage(stdout);
    return 0;
  }
  const Command* command = FindCommand(name);
  if (command == nullptr) return UsageError(nullptr, absl::StrCat("unknown command '", name, "'"));
  const int parsed = ParseCommandFlags(*command, std::vector<std::string>(argv + 2, argv + argc));
  if (parsed >= 0) return parsed;
  return command->run();
}
