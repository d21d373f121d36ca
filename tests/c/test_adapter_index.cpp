// Checks of the adapter load path's internals against plain references (links the core's objects):
//   1. lora_halves (word-at-a-time scan) against std::string::rfind of "lora_A" / "lora_B", on names of every
//      length 0..40 built from the letters that matter and on random names;
//   2. NameTable with forced hash collisions (every name one hash): finds, misses and the first position of
//      a name inserted twice; name_hash equal for equal names, different for one-byte edits;
//   3. Dims: inline (<= 4) and heap (> 4) shapes through copy, move and assignment;
//   4. Adapter read from serialize_adapter's bytes: 1-D to 7-D parameters keep their shapes and bytes, find()
//      finds every name and no other, a renamed view keeps its names after the caller's strings are gone,
//      and a duplicate name is reported with the positions a reader meets first.
// Usage: test_adapter_index (no arguments).
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "adapter/adapter.h"
#include "check.h"
#include "util/error.h"
#include "util/name_hash.h"

using namespace mlora;

namespace {

using mlora_test::check;
using mlora_test::g_failed;
using mlora_test::g_passed;

LoraHalves reference_halves(const std::string& name) {
  LoraHalves h;
  h.last_a = name.rfind("lora_A");
  h.last_b = name.rfind("lora_B");
  return h;
}

void check_halves(const std::string& name) {
  const LoraHalves got = lora_halves(name);
  const LoraHalves want = reference_halves(name);
  check(got.last_a == want.last_a && got.last_b == want.last_b,
        "lora_halves('" + name + "'): got " + std::to_string(static_cast<long long>(got.last_a)) + "/" +
            std::to_string(static_cast<long long>(got.last_b)) + ", want " +
            std::to_string(static_cast<long long>(want.last_a)) + "/" +
            std::to_string(static_cast<long long>(want.last_b)));
}

void test_lora_halves() {
  for (const char* name :
       {"", "lora_A", "lora_B", "lora_", "xlora_A", "model.layers.0.attn.q_proj.lora_A.MatMul.weight",
        "model.layers.0.attn.q_proj.lora_B.MatMul.weight", "lora_Alora_B", "lora_Blora_A", "lllllllllllllora_A",
        "lora_lora_B", "a.lora_A.b.lora_A", "x.lora_B.lora_A.lora_B", "1234567lora_A", "12345678lora_B",
        "123456789lora_A", "lora_a", "LORA_A"}) {
    check_halves(name);
  }
  // Every placement of the patterns in short names, and random names over an alphabet that makes near misses.
  std::mt19937 rng(7);
  const std::string alphabet = "lora_ABl.x";
  for (size_t len = 0; len <= 40; ++len) {
    for (int k = 0; k < 300; ++k) {
      std::string name(len, '.');
      for (char& c : name) c = alphabet[rng() % alphabet.size()];
      if (len >= 6 && k % 3 == 0) name.replace(rng() % (len - 5), 6, k % 2 ? "lora_A" : "lora_B");
      if (len >= 12 && k % 5 == 0) name.replace(rng() % (len - 5), 6, "lora_A");
      check_halves(name);
    }
  }
}

void test_name_table() {
  const std::vector<std::string> names = {"a", "b", "lora_A", "lora_B", "model.layers.0.q_proj.lora_A", "", "z"};
  auto name_of = [&](uint32_t i) { return std::string_view(names[i]); };
  NameTable table;
  table.reset(names.size());
  // One hash for all: every lookup must fall back to comparing the names.
  constexpr uint64_t kSame = 0x1234567890abcdefull;
  for (uint32_t i = 0; i < names.size(); ++i) {
    check(table.insert(names[i], kSame, i, name_of) == NameTable::kNone, "insert '" + names[i] + "'");
  }
  for (uint32_t i = 0; i < names.size(); ++i) {
    check(table.find(names[i], kSame, name_of) == i, "find '" + names[i] + "' among colliding hashes");
  }
  check(table.find("c", kSame, name_of) == NameTable::kNone, "a missing name with a colliding hash");
  check(table.find("a", kSame ^ 1, name_of) == NameTable::kNone, "a present name under another hash");
  check(table.insert("lora_A", kSame, 99, name_of) == 2, "inserting a name twice gives the first position");
  NameTable empty;
  check(empty.find("a", name_hash("a"), name_of) == NameTable::kNone, "an empty table finds nothing");

  // The hash: equal names, equal hashes; every one-byte edit and every prefix of a long name differs.
  const std::string base = "model.layers.11.mlp.down_proj.lora_B.MatMul.weight";
  check(name_hash(base) == name_hash(std::string(base)), "name_hash is a function of the bytes");
  std::vector<uint64_t> seen;
  for (size_t len = 0; len <= base.size(); ++len) seen.push_back(name_hash(std::string_view(base).substr(0, len)));
  for (size_t i = 0; i < base.size(); ++i) {
    std::string edited = base;
    edited[i] ^= 1;
    seen.push_back(name_hash(edited));
  }
  std::vector<uint64_t> sorted = seen;
  std::sort(sorted.begin(), sorted.end());
  check(std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end(), "prefixes and one-byte edits hash apart");
}

void test_dims() {
  const Dims small{3, 4};
  const Dims big{1, 2, 3, 4, 5, 6};
  Dims copy_small = small, copy_big = big;
  check(copy_small == std::vector<int64_t>{3, 4} && copy_big == std::vector<int64_t>{1, 2, 3, 4, 5, 6}, "copies");
  Dims moved = std::move(copy_big);
  check(moved == std::vector<int64_t>{1, 2, 3, 4, 5, 6} && copy_big.empty(), "move leaves the source empty");
  moved = small;  // heap -> inline
  check(moved == std::vector<int64_t>{3, 4} && moved.vec() == std::vector<int64_t>{3, 4}, "assign inline over heap");
  moved = big;  // inline -> heap
  check(moved.size() == 6 && moved[5] == 6 && big[0] == 1, "assign heap over inline");
  Dims five{1, 1, 1, 1, 7};
  five = Dims{9};
  check(five.size() == 1 && five[0] == 9, "move-assign a short shape over a long one");
  check(Dims{}.empty() && Dims{}.vec().empty(), "empty dims");
}

void test_adapter_reading() {
  // Parameters of 1 to 7 dims (inline and heap), float32, distinct bytes.
  std::vector<std::vector<float>> values;
  std::vector<ParamView> views;
  for (int nd = 1; nd <= 7; ++nd) {
    std::vector<int64_t> dims(nd, 1);
    dims[0] = 2;
    dims[nd - 1] = nd == 1 ? 2 : 3;
    size_t count = 1;
    for (int64_t d : dims) count *= static_cast<size_t>(d);
    std::vector<float> v(count);
    for (size_t k = 0; k < count; ++k) v[k] = static_cast<float>(nd * 100 + static_cast<int>(k));
    values.push_back(std::move(v));
    views.push_back(ParamView{"layer" + std::to_string(nd) + (nd % 2 ? ".lora_A" : ".lora_B"), 1, dims,
                              values.back().data(), values.back().size() * sizeof(float)});
  }
  const std::vector<uint8_t> bytes = serialize_adapter(views, 0, 0);
  auto adapter = Adapter::open_memory(bytes.data(), bytes.size(), "test");
  check(adapter->params().size() == views.size(), "parameter count");
  for (size_t i = 0; i < views.size(); ++i) {
    const Param& p = adapter->params()[i];
    check(p.name == views[i].name, "name of parameter " + std::to_string(i));
    check(p.dims == views[i].dims, "dims of '" + views[i].name + "' (" + std::to_string(views[i].dims.size()) + "-D)");
    check(p.nbytes == views[i].nbytes && std::memcmp(p.data, views[i].data, p.nbytes) == 0,
          "bytes of '" + views[i].name + "'");
    check(adapter->find(views[i].name) == &p, "find('" + views[i].name + "')");
    check(adapter->param_hash(i) == name_hash(views[i].name), "param_hash(" + std::to_string(i) + ")");
    const LoraHalves want = reference_halves(views[i].name), got = adapter->param_halves(i);
    check(got.last_a == want.last_a && got.last_b == want.last_b, "param_halves(" + std::to_string(i) + ")");
  }
  check(adapter->find("layer1") == nullptr && adapter->find("") == nullptr && adapter->find("layer1.lora_B") == nullptr,
        "find of names the adapter does not have");
  // 2-D lora_B [2, 3]: 2; 3-D lora_A (a MatMulNBits weight [N, blocks, bytes]): N = 2; the 4-D..7-D ones are read
  // like 2-D ones (A: dim 1 = 1, B: dim 0 = 2).
  check(adapter->rank() == 2, "rank " + std::to_string(adapter->rank()) + ", want 2");

  // A renamed view owns its names: the strings it was given are gone when it is read.
  std::shared_ptr<const Adapter> renamed;
  {
    std::vector<std::string> names;
    for (size_t i = 0; i < views.size(); ++i) names.push_back("renamed.parameter.number." + std::to_string(i));
    renamed = Adapter::renamed(adapter, names);
  }
  for (size_t i = 0; i < views.size(); ++i) {
    const std::string want = "renamed.parameter.number." + std::to_string(i);
    check(renamed->params()[i].name == want && renamed->find(want) == &renamed->params()[i],
          "renamed view's name " + std::to_string(i));
  }
  check(renamed->find(views[0].name) == nullptr, "a renamed view does not find the old name");

  // Duplicates: the pair a reader meets first (second position smallest), from files and from views.
  std::vector<float> one = {1.0f};
  auto view = [&](const std::string& name) { return ParamView{name, 1, {1}, one.data(), sizeof(float)}; };
  // serialize_adapter refuses duplicates, so write distinct names and rename them into duplicates.
  const std::vector<uint8_t> five = serialize_adapter({view("p"), view("q"), view("r"), view("s"), view("t")}, 0, 0);
  auto base = Adapter::open_memory(five.data(), five.size(), "five");
  std::string message;
  try {
    Adapter::renamed(base, {"x", "y", "y", "x", "x"});
  } catch (const Error& e) {
    message = e.what();
  }
  check(message.find("two parameters are named 'y'") != std::string::npos,
        "duplicate in a view names the first repeated name: " + message);

  // In a file: names QQ0..QQ4 patched in place to QQ0 QQ1 QQ1 QQ0 QQ0 (the file's first repeat is #2, of #1).
  const std::vector<uint8_t> named =
      serialize_adapter({view("QQ0"), view("QQ1"), view("QQ2"), view("QQ3"), view("QQ4")}, 0, 0);
  std::vector<uint8_t> patched = named;
  auto rename = [&](const char* from, const char* to) {
    auto it = std::search(patched.begin(), patched.end(), from, from + 3);
    check(it != patched.end(), std::string("name ") + from + " in the buffer");
    if (it != patched.end()) std::copy(to, to + 3, it);
  };
  rename("QQ2", "QQ1");
  rename("QQ3", "QQ0");
  rename("QQ4", "QQ0");
  message.clear();
  try {
    Adapter::open_memory(patched.data(), patched.size(), "dups");
  } catch (const Error& e) {
    message = e.what();
  }
  check(message.find("parameter 'QQ1' appears twice (parameters #1 and #2)") != std::string::npos,
        "duplicate in a file: the first repeat and its earlier position: " + message);
}

}  // namespace

int main() {
  test_lora_halves();
  test_name_table();
  test_dims();
  test_adapter_reading();
  std::printf("test_adapter_index: %d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
