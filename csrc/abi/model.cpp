// Header sections "Model options" and "Model".
#include "model/model.h"

#include <set>

#include "abi/abi.h"
#include "gen/model_folder.h"
#include "model/tensor.h"
#include "run/batch_set.h"
#include "run/slot_table.h"

using namespace mlora;
using namespace mlora::abi;

namespace {

// The model behind a handle, held for the call.
std::shared_ptr<const Model> model_of(const mlora_model_t* m) { return hold(m, HandleType::kModel, "model")->model; }

// Changes options under their lock (mlora_model_create may be copying them on another thread).
template <class F>
void change_options(mlora_model_options_t* options, F&& change) {
  const auto box = hold(options, HandleType::kModelOptions, "options");
  std::lock_guard<std::mutex> lock(box->mutex);
  change(box->options);
}

void io_info(const std::vector<IoInfo>& list, size_t index, const char* what, mlora_dtype_t* out_dtype,
             int64_t* shape_buf, size_t capacity, size_t* out_ndim) {
  index_arg(index, list.size(), what);
  out_arg(out_dtype, "out_dtype");
  out_arg(out_ndim, "out_ndim");
  const IoInfo& io = list[index];
  *out_dtype = io.dtype;
  *out_ndim = io.shape.size();
  if (capacity < io.shape.size()) {
    fail(MLORA_STATUS_BUFFER_TOO_SMALL, "shape buffer of " + std::to_string(capacity) + " dims is too small for '" +
                                            io.name + "' of rank " + std::to_string(io.shape.size()));
  }
  array_arg(shape_buf, io.shape.size(), "shape_buf");
  for (size_t i = 0; i < io.shape.size(); ++i) shape_buf[i] = io.shape[i];
}

}  // namespace

extern "C" {

MLORA_API mlora_status_t mlora_model_options_create(mlora_model_options_t** out_options) {
  return guard(__func__, [&] {
    out_arg(out_options, "out_options");
    emit(out_options, HandleType::kModelOptions);
  });
}

MLORA_API void mlora_model_options_release(mlora_model_options_t* options) {
  release(options, HandleType::kModelOptions);
}

MLORA_API mlora_status_t mlora_model_options_set_log_level(mlora_model_options_t* options, int32_t level) {
  return guard(__func__, [&] {
    if (level < MLORA_LOG_VERBOSE || level > MLORA_LOG_FATAL) {
      hold(options, HandleType::kModelOptions, "options");
      fail(MLORA_STATUS_INVALID_ARGUMENT, "log level " + std::to_string(level) + " is outside 0..4");
    }
    change_options(options, [&](ModelOptions& o) { o.log_level = level; });
  });
}

MLORA_API mlora_status_t mlora_model_options_set_intra_op_threads(mlora_model_options_t* options, int32_t threads) {
  return guard(__func__, [&] {
    hold(options, HandleType::kModelOptions, "options");
    if (threads < 0) fail(MLORA_STATUS_INVALID_ARGUMENT, "intra-op threads " + std::to_string(threads) + " < 0");
    change_options(options, [&](ModelOptions& o) { o.intra_op_threads = threads; });
  });
}

MLORA_API mlora_status_t mlora_model_options_set_batch_slots(mlora_model_options_t* options, size_t slots) {
  return guard(__func__, [&] {
    hold(options, HandleType::kModelOptions, "options");
    if (slots < 2 || slots > 4097) {
      fail(MLORA_STATUS_INVALID_ARGUMENT,
           "batch_slots " + std::to_string(slots) + " is outside 2..4097 (slot 0 is the base model)");
    }
    change_options(options, [&](ModelOptions& o) { o.batch_slots = slots; });
  });
}

MLORA_API mlora_status_t mlora_model_options_set_allow_external_paths(mlora_model_options_t* options, int32_t allow) {
  return guard(__func__, [&] {
    hold(options, HandleType::kModelOptions, "options");
    if (allow != 0 && allow != 1) {
      fail(MLORA_STATUS_INVALID_ARGUMENT, "allow_external_paths " + std::to_string(allow) + " is not 0 or 1");
    }
    change_options(options, [&](ModelOptions& o) { o.allow_external_paths = allow != 0; });
  });
}

MLORA_API mlora_status_t mlora_model_options_set_base_graph(mlora_model_options_t* options, int32_t use) {
  return guard(__func__, [&] {
    hold(options, HandleType::kModelOptions, "options");
    if (use != 0 && use != 1)
      fail(MLORA_STATUS_INVALID_ARGUMENT, "base_graph " + std::to_string(use) + " is not 0 or 1");
    change_options(options, [&](ModelOptions& o) { o.base_graph = use != 0; });
  });
}

MLORA_API mlora_status_t mlora_model_options_set_config_entry(mlora_model_options_t* options, const char* key,
                                                              const char* value) {
  return guard(__func__, [&] {
    hold(options, HandleType::kModelOptions, "options");
    std::pair<std::string, std::string> entry(str_arg(key, "key"), str_arg(value, "value"));
    change_options(options, [&](ModelOptions& o) { o.config_entries.push_back(std::move(entry)); });
  });
}

MLORA_API mlora_status_t mlora_model_create(const char* path, const mlora_model_options_t* options,
                                            mlora_model_t** out_model) {
  return guard(__func__, [&] {
    out_arg(out_model, "out_model");
    const std::string p = str_arg(path, "path");
    ModelOptions opts;  // a copy: the options may be changed or released while the model loads
    if (options) {
      const auto box = hold(options, HandleType::kModelOptions, "options");
      std::lock_guard<std::mutex> lock(box->mutex);
      opts = box->options;
    }
    std::shared_ptr<const Model> model = open_model(p, opts);
    std::shared_ptr<SlotTable> slots = SlotTable::for_model(*model);
    emit(out_model, HandleType::kModel, std::move(model), std::move(slots));
  });
}

MLORA_API void mlora_model_release(mlora_model_t* model) { release(model, HandleType::kModel); }

MLORA_API mlora_status_t mlora_model_input_count(const mlora_model_t* model, size_t* out_count) {
  return guard(__func__, [&] {
    const auto m = model_of(model);
    out_arg(out_count, "out_count");
    *out_count = m->inputs().size();
  });
}

MLORA_API mlora_status_t mlora_model_output_count(const mlora_model_t* model, size_t* out_count) {
  return guard(__func__, [&] {
    const auto m = model_of(model);
    out_arg(out_count, "out_count");
    *out_count = m->outputs().size();
  });
}

MLORA_API mlora_status_t mlora_model_input_name(const mlora_model_t* model, size_t index, char* buf, size_t capacity,
                                                size_t* out_len) {
  return guard(__func__, [&] {
    const auto m = model_of(model);
    index_arg(index, m->inputs().size(), "input");
    write_string(m->inputs()[index].name, buf, capacity, out_len, "the input name");
  });
}

MLORA_API mlora_status_t mlora_model_output_name(const mlora_model_t* model, size_t index, char* buf, size_t capacity,
                                                 size_t* out_len) {
  return guard(__func__, [&] {
    const auto m = model_of(model);
    index_arg(index, m->outputs().size(), "output");
    write_string(m->outputs()[index].name, buf, capacity, out_len, "the output name");
  });
}

MLORA_API mlora_status_t mlora_model_input_info(const mlora_model_t* model, size_t index, mlora_dtype_t* out_dtype,
                                                int64_t* shape_buf, size_t capacity, size_t* out_ndim) {
  return guard(__func__,
               [&] { io_info(model_of(model)->inputs(), index, "input", out_dtype, shape_buf, capacity, out_ndim); });
}

MLORA_API mlora_status_t mlora_model_output_info(const mlora_model_t* model, size_t index, mlora_dtype_t* out_dtype,
                                                 int64_t* shape_buf, size_t capacity, size_t* out_ndim) {
  return guard(__func__,
               [&] { io_info(model_of(model)->outputs(), index, "output", out_dtype, shape_buf, capacity, out_ndim); });
}

MLORA_API mlora_status_t mlora_model_lora_count(const mlora_model_t* model, size_t* out_count) {
  return guard(__func__, [&] {
    const auto m = model_of(model);
    out_arg(out_count, "out_count");
    *out_count = m->lora_inputs().size();
  });
}

MLORA_API mlora_status_t mlora_model_lora_name(const mlora_model_t* model, size_t index, char* buf, size_t capacity,
                                               size_t* out_len) {
  return guard(__func__, [&] {
    const auto m = model_of(model);
    index_arg(index, m->lora_inputs().size(), "LoRA input");
    write_string(m->lora_inputs()[index].name, buf, capacity, out_len, "the LoRA input name");
  });
}

MLORA_API mlora_status_t mlora_model_lora_info(const mlora_model_t* model, size_t index, mlora_dtype_t* out_dtype,
                                               int64_t* out_dim0, int64_t* out_dim1, int32_t* out_rank_axis) {
  return guard(__func__, [&] {
    const auto m = model_of(model);
    index_arg(index, m->lora_inputs().size(), "LoRA input");
    out_arg(out_dtype, "out_dtype");
    out_arg(out_dim0, "out_dim0");
    out_arg(out_dim1, "out_dim1");
    out_arg(out_rank_axis, "out_rank_axis");
    const LoraInput& l = m->lora_inputs()[index];
    *out_dtype = l.dtype;
    *out_dim0 = l.dim0;
    *out_dim1 = l.dim1;
    *out_rank_axis = l.rank_axis;
  });
}

MLORA_API mlora_status_t mlora_model_version(const mlora_model_t* model, int32_t* out_version) {
  return guard(__func__, [&] {
    const auto m = model_of(model);
    out_arg(out_version, "out_version");
    *out_version = m->lora_fingerprint();
  });
}

MLORA_API mlora_status_t mlora_model_batch_slots(const mlora_model_t* model, size_t* out_slots, size_t* out_resident) {
  return guard(__func__, [&] {
    const auto box = hold(model, HandleType::kModel, "model");
    const size_t slots = box->slots ? box->slots->slots() : 0;
    const size_t resident = box->slots ? box->slots->resident() : 0;
    if (out_slots) *out_slots = slots;
    if (out_resident) *out_resident = resident;
  });
}

MLORA_API mlora_status_t mlora_model_batch_slot_stats(const mlora_model_t* model, uint64_t* out_hits,
                                                      uint64_t* out_misses, uint64_t* out_evictions) {
  return guard(__func__, [&] {
    const auto box = hold(model, HandleType::kModel, "model");
    const SlotTable::Stats stats = box->slots ? box->slots->stats() : SlotTable::Stats();
    if (out_hits) *out_hits = stats.hits;
    if (out_misses) *out_misses = stats.misses;
    if (out_evictions) *out_evictions = stats.evictions;
  });
}

MLORA_API mlora_status_t mlora_model_session_runs(const mlora_model_t* model, uint64_t* out_lora_runs,
                                                  uint64_t* out_base_runs) {
  return guard(__func__, [&] { model_of(model)->session_runs(out_lora_runs, out_base_runs); });
}

MLORA_API mlora_status_t mlora_model_run(const mlora_model_t* model, const mlora_run_options_t* options,
                                         const char* const* input_names, const mlora_tensor_t* const* inputs,
                                         size_t input_count, const char* const* output_names, size_t output_count,
                                         mlora_tensor_t** out_outputs) {
  return guard(__func__, [&] {
    const auto m = model_of(model);
    AdapterSelection selection;  // a snapshot: the options may be changed or released during the run
    if (options) selection = hold(options, HandleType::kRunOptions, "options")->selection.get();
    selection.check_model(*m, "the run options");
    std::vector<std::string> in_names = str_array_arg(input_names, input_count, "input_names");
    array_arg(inputs, input_count, "inputs");
    std::vector<const OrtValue*> in_values;
    std::vector<std::shared_ptr<const Tensor>> keep;  // inputs stay alive for the call
    for (size_t i = 0; i < input_count; ++i) {
      const std::string what = "inputs[" + std::to_string(i) + "] ('" + in_names[i] + "')";
      keep.push_back(hold(inputs[i], HandleType::kTensor, what.c_str())->tensor);
      in_values.push_back(keep.back()->ort_value());
    }
    std::vector<std::string> out_names = str_array_arg(output_names, output_count, "output_names");
    out_arg(out_outputs, "out_outputs");
    if (selection.per_row()) m->check_batch(in_names, in_values, selection.per_row()->batch_size());
    // Per-row sets: slots pinned for this run. No feeds when no row has an adapter (the base graph runs).
    const AdapterSelection::Feeds lora = selection.feeds();
    auto results = m->run(in_names, in_values, lora.names(), lora.values(), out_names);
    // All-or-nothing: wrap every output before handing any out.
    std::vector<std::shared_ptr<mlora_tensor_t>> boxes;
    for (auto& v : results)
      boxes.push_back(std::make_shared<mlora_tensor_t>(mlora_tensor_t{Tensor::from_ort(std::move(v))}));
    for (size_t i = 0; i < boxes.size(); ++i) {
      mlora_tensor_t* raw = boxes[i].get();
      register_handle(raw, HandleType::kTensor, std::move(boxes[i]));
      out_outputs[i] = raw;
    }
  });
}

}  // extern "C"
