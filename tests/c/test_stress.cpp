// Concurrency stress of the C ABI (through the header-only C++ wrapper): 8 threads run the fixture model
// with different active sets while 2 threads load, replace and unload adapters. Every output must equal
// the numpy reference written by make_fixtures.py; nothing may crash, deadlock or leak (run under
// scripts/sanitize.sh with LeakSanitizer). Bounded: MLORA_STRESS_SECONDS (default 2) of stress.
// Then a per-row load on a small slot table (evictions, pinned slots) and the release races (issue 11): a handle
// released while calls on other threads use it — those calls complete correctly or return INVALID_HANDLE; calls that
// must not overlap on one generator return BUSY. Usage: test_stress FIXTURE_DIR [GENERATION_MODEL_DIR]. Prints "N
// passed, N failed"; exit code 1 on any failure.
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

// Starts `n` threads running body(k), waits until one of them reports progress, then calls `release`
// (the race), and joins them.
template <class Body, class Release>
void race(int n, Body body, Release release) {
  std::atomic<bool> started{false};
  std::vector<std::thread> threads;
  for (int k = 0; k < n; ++k) threads.emplace_back([&, k] { body(k, started); });
  while (!started.load()) std::this_thread::yield();
  release();
  for (auto& t : threads) t.join();
}

// A status a call that lost the race with a release may return.
void check_ok_or_released(mlora_status_t st, const std::string& what) {
  check(st == MLORA_STATUS_OK || st == MLORA_STATUS_INVALID_HANDLE,
        what + ": " + mlora_status_name(st) + ": " + mlora_last_error_message());
}

void release_races(const ml::Tensor& input, const std::vector<float>& expect_base, const std::string& gen_dir) {
  // 1. A model released while 3 threads run it.
  long completed = 0;
  std::mutex completed_mu;
  for (int round = 0; round < 20; ++round) {
    mlora_model_t* model = nullptr;
    mlora_status_t st = mlora_model_create(path_of("model.onnx").c_str(), nullptr, &model);
    check(st == MLORA_STATUS_OK, "race: model create");
    if (st) return;
    race(
        3,
        [&](int, std::atomic<bool>& started) {
          const char* in_names[] = {"x"};
          const mlora_tensor_t* ins[] = {input.get()};
          const char* out_names[] = {"y"};
          for (int i = 0; i < 40; ++i) {
            mlora_tensor_t* out = nullptr;
            const mlora_status_t s = mlora_model_run(model, nullptr, in_names, ins, 1, out_names, 1, &out);
            check_ok_or_released(s, "race: run during model release");
            if (s != MLORA_STATUS_OK) break;
            ml::Tensor t(out);
            check(max_error(t, expect_base) < 1e-4f, "race: run during model release: result");
            std::lock_guard<std::mutex> lock(completed_mu);
            ++completed;
            started = true;
          }
        },
        [&] { mlora_model_release(model); });
  }
  check(completed > 0, "race: some runs completed");

  // 2. A registry released while 2 threads load adapters into it.
  ml::Model shared(path_of("model.onnx"));
  for (int round = 0; round < 20; ++round) {
    mlora_adapters_t* adapters = nullptr;
    check(mlora_adapters_create(shared.get(), &adapters) == MLORA_STATUS_OK, "race: adapters create");
    race(
        2,
        [&](int k, std::atomic<bool>& started) {
          for (int i = 0; i < 20; ++i) {
            const std::string name = std::to_string(k) + "-" + std::to_string(i);
            const mlora_status_t s =
                mlora_adapters_load(adapters, path_of(i % 2 ? "a.onnx_adapter" : "b.onnx_adapter").c_str(),
                                    name.c_str(), MLORA_LOAD_DEFAULT);
            check_ok_or_released(s, "race: load during registry release");
            if (s != MLORA_STATUS_OK) break;
            started = true;
          }
        },
        [&] { mlora_adapters_release(adapters); });
  }

  // 3. Run options changed while runs read them: every run sees one whole selection (a or b).
  {
    ml::Adapters adapters(shared);
    adapters.load(path_of("a.onnx_adapter"), "a");
    adapters.load(path_of("b.onnx_adapter"), "b");
    const std::vector<float> expect_a = read_floats("expect_a.bin", 12), expect_b = read_floats("expect_b.bin", 12);
    ml::RunOptions opts;
    opts.set_active_adapters(adapters, {"a"});
    std::atomic<bool> stop{false};
    std::thread setter([&] {
      for (int i = 0; i < 400 && !stop; ++i) opts.set_active_adapters(adapters, {i % 2 ? "a" : "b"});
    });
    for (int i = 0; i < 200; ++i) {
      std::vector<ml::Tensor> out = shared.run(&opts, {"x"}, {&input}, {"y"});
      check(max_error(out[0], expect_a) < 1e-4f || max_error(out[0], expect_b) < 1e-4f,
            "race: run while its options change: a whole selection");
    }
    stop = true;
    setter.join();
  }

  if (gen_dir.empty()) return;
  ml::Model gmodel(gen_dir);
  ml::Adapters gadapters(gmodel);
  gadapters.load(gen_dir + "/adapters/a.onnx_adapter", "a");
  gadapters.load(gen_dir + "/adapters/b.onnx_adapter", "b");
  const std::vector<int32_t> prompt = {1, 5, 9, 3};

  // 4. A generator released while another thread steps it.
  for (int round = 0; round < 20; ++round) {
    ml::GeneratorParams params(gmodel);
    params.set_search_number("max_length", 40);
    params.set_active_adapters(gadapters, {"a"});
    mlora_generator_t* gen = nullptr;
    check(mlora_generator_create(gmodel.get(), params.get(), &gen) == MLORA_STATUS_OK, "race: generator create");
    check(mlora_generator_append_tokens(gen, prompt.data(), prompt.size()) == MLORA_STATUS_OK, "race: prompt");
    race(
        1,
        [&](int, std::atomic<bool>& started) {
          for (int i = 0; i < 30; ++i) {
            int32_t done = 0;
            mlora_status_t s = mlora_generator_is_done(gen, &done);
            if (s == MLORA_STATUS_OK && done) break;
            if (s == MLORA_STATUS_OK) s = mlora_generator_generate_next_token(gen);
            check_ok_or_released(s, "race: step during generator release");
            if (s != MLORA_STATUS_OK) break;
            started = true;
          }
          started = true;
        },
        [&] { mlora_generator_release(gen); });
  }

  // 5. Params released while another thread creates generators from them.
  for (int round = 0; round < 20; ++round) {
    mlora_generator_params_t* params = nullptr;
    check(mlora_generator_params_create(gmodel.get(), &params) == MLORA_STATUS_OK, "race: params create");
    const char* names[] = {"a", "b"};
    const float weights[] = {0.5f, 1.0f};
    check(mlora_generator_params_set_active_adapters(params, gadapters.get(), names, weights, 2) == MLORA_STATUS_OK,
          "race: params adapters");
    race(
        1,
        [&](int, std::atomic<bool>& started) {
          for (int i = 0; i < 30; ++i) {
            mlora_generator_t* gen = nullptr;
            const mlora_status_t s = mlora_generator_create(gmodel.get(), params, &gen);
            check_ok_or_released(s, "race: generator create during params release");
            if (s != MLORA_STATUS_OK) break;
            check(mlora_generator_append_tokens(gen, prompt.data(), prompt.size()) == MLORA_STATUS_OK,
                  "race: prompt of a generator whose params were released");
            mlora_generator_release(gen);
            started = true;
          }
          started = true;
        },
        [&] { mlora_generator_params_release(params); });
  }

  // 6. Changing a generator's adapters while another thread steps it: BUSY, never both at once.
  long busy = 0;
  for (int round = 0; round < 10; ++round) {
    ml::GeneratorParams params(gmodel);
    params.set_search_number("max_length", 60);
    ml::Generator gen(gmodel, params);
    gen.append_tokens(prompt);
    std::atomic<bool> stepping{true};
    std::thread stepper([&] {
      for (;;) {
        int32_t done = 0;
        mlora_status_t s = mlora_generator_is_done(gen.get(), &done);  // a reading call: BUSY during a change
        if (s == MLORA_STATUS_OK && done) break;
        if (s == MLORA_STATUS_OK) s = mlora_generator_generate_next_token(gen.get());
        check(s == MLORA_STATUS_OK || s == MLORA_STATUS_BUSY,
              std::string("race: step while adapters change: ") + mlora_status_name(s));
        if (s == MLORA_STATUS_BUSY) ++busy;
      }
      stepping = false;
    });
    const char* sets[][1] = {{"a"}, {"b"}};
    for (int i = 0; i < 400 && stepping; ++i) {
      const mlora_status_t s =
          mlora_generator_set_active_adapters(gen.get(), gadapters.get(), sets[i % 2], nullptr, i % 3 ? 1 : 0);
      check(s == MLORA_STATUS_OK || s == MLORA_STATUS_BUSY,
            std::string("race: set_active_adapters during a step: ") + mlora_status_name(s));
      if (s == MLORA_STATUS_BUSY) {
        ++busy;
        check(std::strstr(mlora_last_error_message(), "busy") != nullptr, "race: the BUSY message");
      }
    }
    stepper.join();
  }
  std::printf("release races: %ld runs completed before/while their model was released, %ld BUSY refusals\n", completed,
              busy);
}

// Adapter-aware batching on batch.onnx (the fixture model prepared with a slot table of S = 3, i.e. two
// usable slots): first the eviction order (deterministic), then 6 threads running 2-row batches over five
// distinct sets, so slots are evicted and pinned all the time. Row r of a set (wa, wb) must equal
// base + wa·(a - base) + wb·(b - base) from the numpy references.
void per_row_load(const ml::Tensor& input, double seconds) {
  const std::vector<float> base = read_floats("expect_base.bin", 12), ea = read_floats("expect_a.bin", 12),
                           eb = read_floats("expect_b.bin", 12);
  auto expect_row = [&](float wa, float wb, size_t row) {
    std::vector<float> out(6);
    for (size_t j = 0; j < 6; ++j) {
      const size_t k = row * 6 + j;
      out[j] = base[k] + wa * (ea[k] - base[k]) + wb * (eb[k] - base[k]);
    }
    return out;
  };
  struct Set {
    std::vector<std::string> names;
    std::vector<float> weights;
    float wa, wb;
  };
  const std::vector<Set> sets = {{{"a"}, {1.0f}, 1, 0},
                                 {{"b"}, {1.0f}, 0, 1},
                                 {{"a", "b"}, {1.0f, 0.5f}, 1, 0.5f},
                                 {{"a"}, {0.5f}, 0.5f, 0},
                                 {{"b"}, {2.0f}, 0, 2}};
  ml::ModelOptions mo;
  mo.set_intra_op_threads(1);
  mo.set_batch_slots(3);
  ml::Model model(path_of("batch.onnx"), &mo);
  ml::Adapters adapters(model);
  adapters.load(path_of("a.onnx_adapter"), "a");
  adapters.load(path_of("b.onnx_adapter"), "b");
  check(model.batch_slots().slots == 3, "per-row: the fixture model is prepared");
  auto run_rows = [&](size_t s0, size_t s1, const std::string& what) {
    ml::RunOptions opts;
    const std::vector<std::vector<float>> weights = {sets[s0].weights, sets[s1].weights};
    opts.set_active_adapters_per_row(adapters, {sets[s0].names, sets[s1].names}, &weights);
    std::vector<ml::Tensor> out = model.run(&opts, {"x"}, {&input}, {"y"});
    const float* y = out[0].data_as<float>();
    for (size_t r = 0; r < 2; ++r) {
      const Set& set = sets[r == 0 ? s0 : s1];
      const std::vector<float> want = expect_row(set.wa, set.wb, r);
      float err = 0;
      for (size_t j = 0; j < 6; ++j) err = std::fmax(err, std::fabs(y[r * 6 + j] - want[j]));
      check(err < 1e-4f, what + ": row " + std::to_string(r) + " max error " + std::to_string(err));
    }
  };
  // Eviction order: batches using A, B, A, C (one set each, the other row too) -> C evicts B, the least
  // recently used; A stays resident.
  auto stats = [&] {
    const ml::BatchSlotStats st = model.batch_slot_stats();
    return std::vector<uint64_t>{st.hits, st.misses, st.evictions};
  };
  for (size_t s : {0, 1, 0, 2}) run_rows(s, s, "LRU");
  check(stats() == std::vector<uint64_t>{1, 3, 1}, "LRU: A, B, A, C gives 1 hit, 3 misses, 1 eviction");
  run_rows(0, 0, "LRU");
  check(stats() == std::vector<uint64_t>{2, 3, 1}, "LRU: A is still resident (the least recently used set went)");
  run_rows(1, 1, "LRU");
  check(stats() == std::vector<uint64_t>{2, 4, 2}, "LRU: B was evicted");

  std::atomic<bool> stop{false};
  std::atomic<long> runs{0};
  std::vector<std::thread> threads;
  for (int k = 0; k < 6; ++k) {
    threads.emplace_back([&, k] {
      try {
        for (size_t i = static_cast<size_t>(k); !stop; ++i) {
          run_rows(i % sets.size(), (i * 3 + 1) % sets.size(), "per-row thread " + std::to_string(k));
          ++runs;
        }
      } catch (const std::exception& e) {
        check(false, "per-row thread " + std::to_string(k) + " threw: " + e.what());
        stop = true;
      }
    });
  }
  const auto start = std::chrono::steady_clock::now();
  while (!stop && std::chrono::steady_clock::now() - start < std::chrono::duration<double>(seconds)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  stop = true;
  for (auto& t : threads) t.join();
  const ml::BatchSlotStats st = model.batch_slot_stats();
  check(runs > 0 && st.evictions > 2, "per-row: runs were done and sets evicted");
  check(model.batch_slots().resident <= 2, "per-row: at most S-1 sets resident");
  std::printf("per-row: %ld runs on S=3, %llu hits, %llu misses, %llu evictions\n", runs.load(),
              static_cast<unsigned long long>(st.hits), static_cast<unsigned long long>(st.misses),
              static_cast<unsigned long long>(st.evictions));
}

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
    per_row_load(input, seconds / 2);
    release_races(input, cases[0].expect, argc > 2 ? argv[2] : "");
  } catch (const std::exception& e) {
    check(false, std::string("setup threw: ") + e.what());
  }
  std::printf("%d passed, %d failed\n", g_passed.load(), g_failed.load());
  return g_failed.load() ? 1 : 0;
}
