// multilora sample host in C++ (include/multilora/multilora.hpp): load a model, load two adapters, run the
// base model, each adapter and a weighted mix, print a few output numbers per case, unload.
//
// Build: c++ -std=c++17 -I include bindings/samples/cpp/sample.cpp -L build -lmultilora -o sample_cpp
// Run:   LD_LIBRARY_PATH=build ./sample_cpp MODEL.onnx ADAPTER_A.onnx_adapter ADAPTER_B.onnx_adapter
//          [GEN_DIR MAX_LENGTH PROMPT_IDS]
// With GEN_DIR (a GenAI model folder with adapters/a.onnx_adapter), MAX_LENGTH (prompt + generated tokens)
// and PROMPT_IDS (comma-separated token ids) it then generates greedily with the base model and adapter a.
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "multilora/multilora.hpp"

namespace {

struct Case {
  const char* label;
  std::vector<std::string> names;  // empty = base model
  std::vector<float> weights;
};

void run(const multilora::Model& model, const multilora::Adapters& adapters, const std::string& input,
         const std::string& output, const Case& c) {
  const std::vector<int64_t> ids = {1, 2, 3, 4, 5};
  multilora::Tensor tokens = multilora::Tensor::copy(MLORA_DTYPE_INT64, {1, 5}, ids.data(), ids.size() * sizeof(int64_t));
  multilora::RunOptions options;
  if (c.names.empty()) {
    options.clear_active_adapters();
  } else {
    options.set_active_adapters(adapters, c.names, c.weights);
  }
  std::vector<multilora::Tensor> outs = model.run(&options, {input}, std::vector<const multilora::Tensor*>{&tokens},
                                                  {output});
  const multilora::Tensor& y = outs.at(0);
  std::vector<int64_t> shape = y.shape();
  std::string dims;
  for (size_t i = 0; i < shape.size(); ++i) dims += (i ? ", " : "") + std::to_string(shape[i]);
  const size_t row = shape.empty() ? 1 : static_cast<size_t>(shape.back());
  const size_t n = y.bytes() / sizeof(float);
  const float* data = y.data_as<float>();
  std::printf("%-5s %s[%s] last row:", c.label, output.c_str(), dims.c_str());
  for (size_t i = 0; i < 4 && i < row; ++i) std::printf(" %.6f", static_cast<double>(data[n - row + i]));
  std::printf("\n");
}

// Greedy generation with the given active set (empty = base model); prints the generated tokens.
void generate(const multilora::Model& model, const multilora::Adapters& adapters, const char* label,
              const std::vector<std::string>& names, double max_length, const std::vector<int32_t>& prompt) {
  multilora::GeneratorParams params(model);
  params.set_search_number("max_length", max_length).set_search_bool("do_sample", false);
  if (names.empty()) {
    params.clear_active_adapters();
  } else {
    params.set_active_adapters(adapters, names);
  }
  multilora::Generator gen(model, params);
  gen.append_tokens(prompt);
  while (!gen.is_done()) gen.generate_next_token();
  const std::vector<int32_t> seq = gen.get_sequence(0);
  std::printf("gen %s:", label);
  for (size_t i = prompt.size(); i < seq.size(); ++i) std::printf(" %d", static_cast<int>(seq[i]));
  std::printf("\n");
}

// Opens the GenAI model folder, loads its adapter a, and generates with the base model and with a.
void generation(const std::string& dir, const std::string& max_length, const std::string& prompt_ids) {
  std::vector<int32_t> prompt;
  std::stringstream ss(prompt_ids);
  for (std::string item; std::getline(ss, item, ',');) prompt.push_back(static_cast<int32_t>(std::stol(item)));
  multilora::Model model(dir);
  multilora::Adapters adapters(model);
  adapters.load(dir + "/adapters/a.onnx_adapter", "a");
  std::printf("generation: %s, prompt of %zu tokens, max_length %s\n", dir.c_str(), prompt.size(), max_length.c_str());
  const double max_len = std::atof(max_length.c_str());
  generate(model, adapters, "base", {}, max_len, prompt);
  generate(model, adapters, "a", {"a"}, max_len, prompt);
  adapters.unload("a");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4 && argc != 7) {
    std::fprintf(stderr, "usage: %s MODEL ADAPTER_A ADAPTER_B [GEN_DIR MAX_LENGTH PROMPT_IDS]\n", argv[0]);
    return 2;
  }
  try {
    multilora::check_abi_version();
    std::printf("multilora sample (C++): library %s, ABI %d\n", multilora::version_string().c_str(),
                multilora::abi_version());
    multilora::Model model(argv[1]);
    const std::string input = model.input_name(0), output = model.output_name(0);
    std::printf("model: input %s, output %s, %zu LoRA inputs\n", input.c_str(), output.c_str(), model.lora_count());

    multilora::Adapters adapters(model);
    adapters.load(argv[2], "a");
    adapters.load(argv[3], "b");
    std::printf("loaded: a, b\n");

    const Case cases[] = {{"base", {}, {}}, {"a", {"a"}, {1.0f}}, {"b", {"b"}, {1.0f}}, {"mix", {"a", "b"}, {0.5f, 1.5f}}};
    for (const Case& c : cases) run(model, adapters, input, output, c);

    adapters.unload("a");
    adapters.unload("b");
    std::printf("unloaded: a, b\n");
    if (argc == 7) generation(argv[4], argv[5], argv[6]);
  } catch (const multilora::Error& e) {
    std::fprintf(stderr, "%s: %s\n", e.status_name(), e.what());
    return 1;
  }
  return 0;
}
