// Deterministic checks of internals that threads can only show by chance through the C ABI:
//   1. a slot pinned by a lease (a running Run) is never evicted: with S = 2 (one usable slot) and a lease
//      on set A held open, another thread's batch with set B must wait — it may not overwrite A's slot —
//      and proceeds once the lease ends;
//   2. the generator gate: a changing call refuses to overlap any call, reading calls overlap each other;
//   3. float16 slots (prepare-batching --lora-dtype float16) hold a float16 file's bytes exactly and a float32
//      file's values rounded to nearest even, and the model keeps the float32 model's LoRA signature.
// Links the core's objects (not the shared library), so it can hold a lease itself.
// Usage: test_slot_table FIXTURE_DIR (batch.onnx, a.onnx_adapter, b.onnx_adapter from make_fixtures.py).
#include <atomic>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "abi/abi.h"
#include "adapter/adapter.h"
#include "adapter/registry.h"
#include "check.h"
#include "model/model.h"
#include "run/active_set.h"
#include "run/adapter_selection.h"
#include "run/slot_table.h"
#include "util/dtype.h"

using namespace mlora;

namespace {

using mlora_test::check;
using mlora_test::g_failed;
using mlora_test::g_passed;

// Where slot `slot` of the lease's stacked LoRA input `input` starts ([S, fixed, R] or [S, R, fixed] of
// `esize`-byte elements), and how many bytes it has.
std::pair<const uint8_t*, size_t> slot_span(const SlotTable::Lease& lease, size_t input, size_t slot, size_t slots,
                                            size_t esize) {
  const OrtValue* v = lease.feed_values()[input];
  OrtTensorTypeAndShapeInfo* info = nullptr;
  ort_check(ort().GetTensorTypeAndShape(v, &info), "shape");
  size_t count = 0;
  ort_check(ort().GetTensorShapeElementCount(info, &count), "count");
  ort().ReleaseTensorTypeAndShapeInfo(info);
  void* data = nullptr;
  ort_check(ort().GetTensorMutableData(const_cast<OrtValue*>(v), &data), "data");
  const size_t per_slot = count / slots * esize;
  return {static_cast<const uint8_t*>(data) + slot * per_slot, per_slot};
}

// The bytes of slot `slot` of the lease's stacked float LoRA input `input`.
std::vector<uint8_t> slot_bytes(const SlotTable::Lease& lease, size_t input, size_t slot, size_t slots) {
  const auto [p, per_slot] = slot_span(lease, input, slot, slots, sizeof(float));
  return std::vector<uint8_t>(p, p + per_slot);
}

void pinned_slots_are_not_evicted(const std::string& dir) {
  ModelOptions options;
  options.batch_slots = 2;  // slot 0 = base, one usable slot
  std::shared_ptr<const Model> model =
      Model::open(ModelSource{dir + "/batch.onnx", dir + "/batch.onnx", nullptr, nullptr}, options);
  std::shared_ptr<SlotTable> slots = SlotTable::for_model(*model);
  check(slots && slots->slots() == 2, "the fixture model is prepared for batching");
  if (!slots) return;
  Resolver resolver{std::make_shared<Registry>(model), std::make_shared<SetCache>(), slots};
  resolver.registry->add(Adapter::open_file(dir + "/a.onnx_adapter"), "a", 0);
  resolver.registry->add(Adapter::open_file(dir + "/b.onnx_adapter"), "b", 0);
  const auto a = resolve_single(resolver, {"a"}, {1.0f});
  // B: another set of the same rank, so placing it needs no larger storage and would overwrite A's bytes in
  // the storage the held lease reads.
  const auto b = resolve_single(resolver, {"a"}, {0.5f});

  std::unique_ptr<SlotTable::Lease> held = slots->acquire({a}, {0, 0});  // A in slot 1, pinned
  // Input 1 is lora_B: A's block [2, 6] is the slot's [R = 2, 6], byte for byte; B (weight 0.5) differs.
  const std::vector<uint8_t> a_bytes = slot_bytes(*held, 1, 1, 2);
  const ActiveBlock& a_block = a->blocks()[1];
  check(a_block.input == 1, "block 1 is lora_B");
  check(a_bytes.size() == static_cast<size_t>(a_block.fixed * a_block.rank) * sizeof(float) &&
            std::memcmp(a_bytes.data(), a_block.data, a_bytes.size()) == 0,
        "slot 1 holds A");

  std::atomic<bool> b_placed{false};
  std::thread other([&] {
    std::unique_ptr<SlotTable::Lease> lease = slots->acquire({b}, {0, 0});  // needs slot 1: must wait
    b_placed = true;
  });
  // Either the other batch waits for the pinned slot (right) or it is placed at once (it evicted a pinned
  // slot). No timing: whichever happens first is observed.
  while (slots->stats().waits == 0 && !b_placed) std::this_thread::yield();
  check(!b_placed, "a batch that needs the only slot waits while a lease pins it");
  check(slot_bytes(*held, 1, 1, 2) == a_bytes, "the pinned slot still holds A while its lease lives");
  held.reset();  // the run ends: the waiting batch proceeds
  other.join();
  check(b_placed, "the waiting batch proceeds once the lease ended");
  const SlotTable::Stats st = slots->stats();
  check(st.misses == 2 && st.evictions == 1 && st.hits == 0, "stats after A, B: 2 misses, 1 eviction (got " +
                                                                 std::to_string(st.misses) + ", " +
                                                                 std::to_string(st.evictions) + ")");
}

// Slot `slot` of stacked input `input` as the fused layout packs it: the first fixed*rank elements.
const uint16_t* half_slot(const SlotTable::Lease& lease, size_t input, size_t slot, size_t slots) {
  return reinterpret_cast<const uint16_t*>(slot_span(lease, input, slot, slots, sizeof(uint16_t)).first);
}

void half_slots_hold_the_files_values(const std::string& dir) {
  ModelOptions options;
  std::shared_ptr<const Model> model =
      Model::open(ModelSource{dir + "/half/model.onnx", dir + "/half/model.onnx", nullptr, nullptr}, options);
  std::shared_ptr<const Model> plain = Model::open(
      ModelSource{dir + "/engine_plain/model.onnx", dir + "/engine_plain/model.onnx", nullptr, nullptr}, options);
  bool all_half = !model->lora_inputs().empty();
  for (const LoraInput& in : model->lora_inputs()) all_half &= in.dtype == MLORA_DTYPE_FLOAT16;
  check(model->batch_kernel() == BatchKernel::kFused && all_half, "the half model has float16 fused slots");
  check(model->lora_fingerprint() == plain->lora_fingerprint(), "the half model keeps the float32 signature");
  std::shared_ptr<SlotTable> slots = SlotTable::for_model(*model);
  Resolver resolver{std::make_shared<Registry>(model), std::make_shared<SetCache>(), slots};
  resolver.registry->add(Adapter::open_file(dir + "/half/a32.onnx_adapter"), "a32", 0);
  resolver.registry->add(Adapter::open_file(dir + "/half/a16.onnx_adapter"), "a16", 0);
  const auto s32 = resolve_single(resolver, {"a32"}, {1.0f});
  const auto s16 = resolve_single(resolver, {"a16"}, {1.0f});
  std::unique_ptr<SlotTable::Lease> lease = slots->acquire({s32, s16}, {0, 1});  // slot 1: a32, slot 2: a16
  const auto a32 = resolver.registry->get("a32");
  const auto a16 = resolver.registry->get("a16");
  size_t compared = 0, exact16 = 0, rounded32 = 0, changed = 0;
  for (size_t i = 0; i < model->lora_inputs().size(); ++i) {
    const std::string name = lease->feed_names()[i];
    const Param* p16 = a16->find(name);
    const Param* p32 = a32->find(name);
    if (!p16 || !p32) continue;
    const size_t n = p16->nbytes / 2;
    const uint16_t* slot1 = half_slot(*lease, i, 1, slots->slots());
    const uint16_t* slot2 = half_slot(*lease, i, 2, slots->slots());
    exact16 += std::memcmp(slot2, p16->data, p16->nbytes) == 0;
    bool ok = true;
    for (size_t k = 0; k < n; ++k) {
      const float v = static_cast<const float*>(p32->data)[k];
      ok &= slot1[k] == float_to_half(v);
      changed += half_to_float(slot1[k]) != v;
    }
    rounded32 += ok;
    ++compared;
  }
  check(compared > 0 && exact16 == compared, "float16 slots hold the float16 file's bytes (" + std::to_string(exact16) +
                                                 " of " + std::to_string(compared) + ")");
  check(compared > 0 && rounded32 == compared, "float16 slots hold the float32 file rounded to nearest even (" +
                                                   std::to_string(rounded32) + " of " + std::to_string(compared) + ")");
  check(changed > 0, "rounding float32 values to float16 changes some of them");
}

void generator_gate() {
  using mlora::abi::OneAtATime;
  OneAtATime gate;
  auto busy = [&](bool exclusive) {
    try {
      if (exclusive) {
        gate.exclusive("second", "generator");
      } else {
        gate.shared("second", "generator");
      }
      return false;
    } catch (const Error& e) {
      return e.status() == MLORA_STATUS_BUSY && std::strstr(e.what(), "first") != nullptr;
    }
  };
  {
    OneAtATime::Use first = gate.exclusive("first", "generator");
    check(busy(true), "a changing call while another changing call runs: BUSY naming it");
    check(busy(false), "a reading call while a changing call runs: BUSY");
  }
  {
    OneAtATime::Use r1 = gate.shared("first", "generator");
    OneAtATime::Use r2 = gate.shared("reader", "generator");
    try {
      gate.exclusive("writer", "generator");
      check(false, "a changing call while reading calls run: BUSY");
    } catch (const Error& e) {
      check(e.status() == MLORA_STATUS_BUSY, "a changing call while reading calls run: BUSY");
    }
  }
  OneAtATime::Use after = gate.exclusive("after", "generator");  // everything released: free again
  check(true, "the gate is free once the calls returned");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: test_slot_table FIXTURE_DIR\n");
    return 2;
  }
  try {
    pinned_slots_are_not_evicted(argv[1]);
    generator_gate();
    half_slots_hold_the_files_values(argv[1]);
  } catch (const std::exception& e) {
    check(false, std::string("threw: ") + e.what());
  }
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed ? 1 : 0;
}
