// run_package: run an AOTInductor package (.pt2) from C++, with no Python anywhere in the process.
//
//   run_package PACKAGE.pt2 INPUT.bin N C H W OUTPUT.bin
//
// It reads one float32 NCHW tensor, runs the package on the CPU and writes the package's first
// output. Its job is to be the proof that a package we export deploys on a machine that has libtorch
// and nothing else (tests/export/backend/aoti/test_cpp_loader.py compares it with eager PyTorch), so
// it is deliberately small: one input, one run, no options, no image decoding.
//
// Why raw float32 files and not .npy, .pt or images: the device then needs no extra library (no
// cnpy, no OpenCV, no pickle reader) and the caller writes them with one numpy/torch call
// (`tensor.numpy().tofile(path)`). The shape travels on the command line because a raw file has no
// header; the file's size must match it exactly, so a wrong shape is refused instead of read as garbage.
//
// Output: the first output, contiguous float32, raw little-endian, and one stdout line with its shape,
// e.g. "output 1x21x200x136" (the shape is not in the file, for the same reason as above).
// Any error: one line "run_package: error: ..." on stderr, exit code 2, and OUTPUT.bin is not written.
// That line is the last one: libtorch and the compiled model may print their own lines first (with
// AOTI_RUNTIME_CHECK_INPUTS=1, which makes the package refuse a shape outside its exported range, the
// model prints "Error: ..." itself before it throws); they are not captured here, to stay small.

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <c10/util/Exception.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <iostream>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

constexpr int kUsageError = 2;

// An error the program reports itself (as opposed to an exception thrown by libtorch).
struct Refusal : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// One line, because callers (and the test) read stderr as a single diagnostic: c10 messages can span
// several lines (an "Exception raised from ..." trailer, a C++ backtrace), which are folded here.
int fail(const std::string& message) {
  std::string line = message;
  for (char& c : line) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  while (!line.empty() && line.back() == ' ') line.pop_back();
  std::cerr << "run_package: error: " << line << std::endl;
  return kUsageError;
}

// A positive dimension from argv; std::stoll alone would accept "3x" or "-1".
int64_t parse_dim(const char* name, const std::string& text) {
  size_t used = 0;
  long long value = 0;
  try {
    value = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || value <= 0) {
    throw Refusal(std::string(name) + " must be a positive integer, got '" + text + "'");
  }
  return static_cast<int64_t>(value);
}

// The files are little-endian by contract (that is what numpy writes on x86 and ARM hosts). A
// big-endian device would silently read byte-swapped floats, so refuse instead.
bool host_is_little_endian() {
  const uint32_t one = 1;
  unsigned char first = 0;
  std::memcpy(&first, &one, 1);
  return first == 1;
}

std::vector<float> read_floats(const std::string& path, int64_t count) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw Refusal("cannot read input file " + path);
  const std::streamoff size = in.tellg();
  const int64_t expected = count * static_cast<int64_t>(sizeof(float));
  if (size != expected) {
    throw Refusal("input file " + path + " has " + std::to_string(size) + " bytes, the shape needs " +
                  std::to_string(expected) + " (float32)");
  }
  std::vector<float> data(static_cast<size_t>(count));
  in.seekg(0);
  if (!in.read(reinterpret_cast<char*>(data.data()), expected)) {
    throw Refusal("short read from input file " + path);
  }
  return data;
}

void write_floats(const std::string& path, const at::Tensor& tensor) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw Refusal("cannot write output file " + path);
  out.write(reinterpret_cast<const char*>(tensor.data_ptr<float>()),
            static_cast<std::streamsize>(tensor.numel() * static_cast<int64_t>(sizeof(float))));
  out.close();
  if (!out) throw Refusal("writing output file " + path + " failed");
}

// Read access, checked before the loader sees the path: the loader's own message for a missing file
// comes from deep inside its zip reader and does not say which file was missing.
void require_readable(const std::string& path) {
  std::ifstream probe(path, std::ios::binary);
  if (!probe) throw Refusal("cannot read package " + path);
}

int run(int argc, char** argv) {
  if (argc != 8) {
    throw Refusal("usage: run_package PACKAGE.pt2 INPUT.bin N C H W OUTPUT.bin (got " +
                  std::to_string(argc - 1) + " arguments)");
  }
  if (!host_is_little_endian()) throw Refusal("this host is big-endian; the float files are little-endian");
  const std::string package = argv[1], input_path = argv[2], output_path = argv[7];
  const std::vector<int64_t> shape = {parse_dim("N", argv[3]), parse_dim("C", argv[4]),
                                      parse_dim("H", argv[5]), parse_dim("W", argv[6])};
  int64_t count = 1;
  for (int64_t d : shape) {
    if (count > std::numeric_limits<int64_t>::max() / 4 / d) throw Refusal("shape is too large");
    count *= d;
  }

  require_readable(package);
  std::vector<float> data = read_floats(input_path, count);

  // No autograd bookkeeping: this is inference only (the tutorial's loader example does the same).
  c10::InferenceMode inference;
  // device_index -1: the package's own device (CPU for the packages this program is meant for).
  torch::inductor::AOTIModelPackageLoader loader(package);
  // from_blob wraps `data` without a copy; `data` outlives the run. The layout is contiguous NCHW,
  // the strides the package was exported with.
  at::Tensor input = at::from_blob(data.data(), shape, at::TensorOptions().dtype(at::kFloat));
  std::vector<at::Tensor> outputs = loader.run({input});
  if (outputs.empty()) throw Refusal("the package returned no outputs");

  const at::Tensor& first = outputs.front();
  if (first.scalar_type() != at::kFloat) {
    throw Refusal(std::string("the first output is ") + c10::toString(first.scalar_type()) +
                  ", not float32");
  }
  // .cpu() is a no-op for CPU packages; .contiguous() because the file is written in row-major order.
  const at::Tensor out = first.cpu().contiguous();
  write_floats(output_path, out);

  std::string dims;
  for (int64_t d : out.sizes()) dims += (dims.empty() ? "" : "x") + std::to_string(d);
  std::cout << "output " << dims << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const c10::Error& e) {
    // Without the backtrace: the message is what says what went wrong (bad package, shape outside
    // the exported range, ...).
    return fail(e.what_without_backtrace());
  } catch (const std::exception& e) {
    return fail(e.what());
  }
}
