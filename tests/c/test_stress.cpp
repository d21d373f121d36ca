// Concurrency stress of the C ABI (through the header-only C++ wrapper): 8 threads run the fixture model
// with different active sets while 2 threads load, replace and unload adapters. Every output must equal
// the numpy reference written by make_fixtures.py; nothing may crash, deadlock or leak (run under
// scripts/sanitize.sh with LeakSanitizer). Bounded: MLORA_STRESS_SECONDS (default 2) of stress.
// Usage: test_stress FIXTURE_DIR. Prints "N passed, N failed"; exit code 1 on any failure.
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "multilora/multilora.hpp"

namespace ml = multilora;

namespace {

std::string g_dir;
std::atomic<int> g_passed{0}, g_failed{0};
std::mutex g_print;

void check(bool ok, const std::string& what) {
  if (ok) {
    ++g_passed;
    return;
  }
  ++g_failed;
  std::lock_guard<std::mutex> lock(g_print);
  std::fprintf(stderr, "FAIL %s\n", what.c_str());
}

std::string path_of(const char* name) { return g_dir + "/" + name; }

std::vector<char> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<char>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::vector<float> read_floats(const char* name, size_t n) {
  std::vector<char> bytes = read_file(path_of(name));
  std::vector<float> out(n, NAN);
  if (bytes.size() == n * sizeof(float)) std::memcpy(out.data(), bytes.data(), bytes.size());
  return out;
}

float max_error(const ml::Tensor& t, const std::vector<float>& expect) {
  if (t.bytes() != expect.size() * sizeof(float)) return INFINITY;
  const float* y = t.data_as<float>();
  float err = 0;
  for (size_t i = 0; i < expect.size(); ++i) err = std::fmax(err, std::fabs(y[i] - expect[i]));
  return err;
}

struct Case {
  std::vector<std::string> names;
  std::vector<float> weights;
  std::vector<float> expect;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: test_stress FIXTURE_DIR\n");
    return 2;
  }
  g_dir = argv[1];
  const double seconds = std::getenv("MLORA_STRESS_SECONDS") ? std::atof(std::getenv("MLORA_STRESS_SECONDS")) : 2.0;
  try {
    ml::ModelOptions mo;
    mo.set_intra_op_threads(1);
    ml::Model model(path_of("model.onnx"), &mo);
    ml::Adapters adapters(model);
    adapters.load(path_of("a.onnx_adapter"), "a");
    adapters.load(path_of("b.onnx_adapter"), "b");
    const std::vector<char> a_bytes = read_file(path_of("a.onnx_adapter"));
    const std::vector<char> b_bytes = read_file(path_of("b.onnx_adapter"));
    const std::vector<float> x = read_floats("x.bin", 16);
    const ml::Tensor input = ml::Tensor::copy(MLORA_DTYPE_FLOAT32, {2, 8}, x.data(), x.size() * sizeof(float));

    const std::vector<Case> cases = {
        {{}, {}, read_floats("expect_base.bin", 12)},
        {{"a"}, {1.0f}, read_floats("expect_a.bin", 12)},
        {{"b"}, {1.0f}, read_floats("expect_b.bin", 12)},
        {{"a", "b"}, {1.0f, 0.5f}, read_floats("expect_mix.bin", 12)},
    };

    std::atomic<bool> stop{false};
    std::atomic<long> runs{0}, loads{0}, churn{0};

    auto runner = [&](int k) {
      try {
        ml::RunOptions opts;
        ml::RunOptions held;  // resolved once; must keep its adapters across replaces and unloads
        held.set_active_adapters(adapters, {"a", "b"}, {1.0f, 0.5f});
        for (size_t i = static_cast<size_t>(k); !stop.load(); ++i) {
          const Case& c = cases[i % cases.size()];
          if (c.names.empty()) {
            opts.clear_active_adapters();
          } else {
            opts.set_active_adapters(adapters, c.names, c.weights);
          }
          std::vector<ml::Tensor> out = model.run(&opts, {"x"}, {&input}, {"y"});
          const float err = max_error(out[0], c.expect);
          check(err < 1e-4f, "runner " + std::to_string(k) + " case " + std::to_string(i % cases.size()) +
                                 ": max error " + std::to_string(err));
          out = model.run(&held, {"x"}, {&input}, {"y"});
          check(max_error(out[0], cases[3].expect) < 1e-4f, "runner " + std::to_string(k) + ": held set");
          // A name another thread loads and unloads: NOT_FOUND or a correct result, nothing else.
          try {
            opts.set_active_adapters(adapters, {"tmp"});
            out = model.run(&opts, {"x"}, {&input}, {"y"});
            check(max_error(out[0], cases[2].expect) < 1e-4f, "runner " + std::to_string(k) + ": tmp");
          } catch (const ml::Error& e) {
            check(e.status() == MLORA_STATUS_NOT_FOUND, std::string("tmp: ") + e.status_name() + ": " + e.what());
          }
          runs += 3;
        }
      } catch (const std::exception& e) {
        check(false, "runner " + std::to_string(k) + " threw: " + e.what());
        stop = true;
      }
    };

    auto mutator = [&](int k) {
      try {
        for (long n = 0; !stop.load(); ++n) {
          // Replace the stable adapters with identical copies: runners must not notice.
          if (n % 2 == 0) {
            adapters.load(path_of("a.onnx_adapter"), "a", MLORA_LOAD_REPLACE);
          } else {
            adapters.load_from_memory(a_bytes.data(), a_bytes.size(), "a", MLORA_LOAD_REPLACE);
          }
          adapters.load_from_memory(b_bytes.data(), b_bytes.size(), "b", MLORA_LOAD_REPLACE);
          // "tmp" (= b) comes and goes; both mutators race on it.
          try {
            adapters.load(path_of("b.onnx_adapter"), "tmp", k == 0 ? MLORA_LOAD_DEFAULT : MLORA_LOAD_REPLACE);
          } catch (const ml::Error& e) {
            check(e.status() == MLORA_STATUS_ALREADY_EXISTS, std::string("load tmp: ") + e.what());
          }
          try {
            ml::Adapter inspected = adapters.get("tmp");
            check(inspected.rank() == 3, "tmp rank");
            adapters.unload("tmp");
          } catch (const ml::Error& e) {
            check(e.status() == MLORA_STATUS_NOT_FOUND, std::string("unload tmp: ") + e.what());
          }
          // A private registry created and dropped while runs go on.
          ml::Adapters scratch(model);
          scratch.load_from_memory(a_bytes.data(), a_bytes.size(), "a");
          loads += 4;
          ++churn;
        }
      } catch (const std::exception& e) {
        check(false, "mutator " + std::to_string(k) + " threw: " + e.what());
        stop = true;
      }
    };

    const auto start = std::chrono::steady_clock::now();
    std::vector<std::thread> threads;
    for (int k = 0; k < 8; ++k) threads.emplace_back(runner, k);
    for (int k = 0; k < 2; ++k) threads.emplace_back(mutator, k);
    while (!stop.load() && std::chrono::steady_clock::now() - start < std::chrono::duration<double>(seconds)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    stop = true;
    for (auto& t : threads) t.join();
    check(runs.load() >= 8 && churn.load() >= 1, "some work was done");

    // Afterwards the registry is intact and gives the references.
    const std::vector<std::string> names = adapters.names();
    check(names == std::vector<std::string>{"a", "b"}, "names after the storm");
    for (const Case& c : cases) {
      ml::RunOptions opts;
      if (!c.names.empty()) opts.set_active_adapters(adapters, c.names, c.weights);
      check(max_error(model.run(&opts, {"x"}, {&input}, {"y"})[0], c.expect) < 1e-4f, "after the storm");
    }
    std::printf("stress: %ld runs, %ld loads/replaces/unloads in %.1f s\n", runs.load(), loads.load(),
                std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  } catch (const std::exception& e) {
    check(false, std::string("setup threw: ") + e.what());
  }
  std::printf("%d passed, %d failed\n", g_passed.load(), g_failed.load());
  return g_failed.load() ? 1 : 0;
}
