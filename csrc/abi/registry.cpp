// Header section "Adapter registry".
#include "adapter/registry.h"

#include <cstring>

#include "abi/abi.h"
#include "adapter/adapter.h"
#include "peft/peft_folder.h"

using namespace mlora;
using namespace mlora::abi;

namespace {
// The registry behind a handle, held for the call.
std::shared_ptr<Registry> registry_of(const mlora_adapters_t* a) {
  return hold(a, HandleType::kAdapters, "adapters")->resolver.registry;
}
}  // namespace

extern "C" {

MLORA_API mlora_status_t mlora_adapters_create(const mlora_model_t* model, mlora_adapters_t** out_adapters) {
  return guard(__func__, [&] {
    const auto m = hold(model, HandleType::kModel, "model");
    out_arg(out_adapters, "out_adapters");
    emit(out_adapters, HandleType::kAdapters,
         Resolver{std::make_shared<Registry>(m->model), std::make_shared<SetCache>(), m->slots});
  });
}

MLORA_API void mlora_adapters_release(mlora_adapters_t* adapters) { release(adapters, HandleType::kAdapters); }

MLORA_API mlora_status_t mlora_adapters_load(mlora_adapters_t* adapters, const char* path, const char* name,
                                             int32_t flags) {
  return guard(__func__, [&] {
    const auto held = registry_of(adapters);
    Registry& r = *held;
    const std::string p = str_arg(path, "path");
    const std::string n = str_arg(name, "name");
    // A directory is a PEFT LoRA folder, resolved against the registry's model (docs/design.md §4).
    // MLORA_LOAD_COPY: read into private memory (a PEFT folder is always converted into memory).
    bool is_directory = false;
    auto adapter = Adapter::open_file(p, flags & MLORA_LOAD_COPY, &is_directory);
    r.add(is_directory ? peft::load_folder(p, *r.model()) : std::move(adapter), n, flags);
  });
}

MLORA_API mlora_status_t mlora_adapters_load_from_memory(mlora_adapters_t* adapters, const void* data, size_t size,
                                                         const char* name, int32_t flags) {
  return guard(__func__, [&] {
    const auto held = registry_of(adapters);
    Registry& r = *held;
    array_arg(data, size, "data");
    const std::string n = str_arg(name, "name");
    r.add(Adapter::open_memory(data, size, "<memory:" + n + ">"), n, flags);
  });
}

MLORA_API mlora_status_t mlora_adapters_unload(mlora_adapters_t* adapters, const char* name) {
  return guard(__func__, [&] { registry_of(adapters)->unload(str_arg(name, "name")); });
}

MLORA_API mlora_status_t mlora_adapters_names(const mlora_adapters_t* adapters, char* buf, size_t capacity,
                                              size_t* out_len, size_t* out_count) {
  return guard(__func__, [&] {
    const auto names = registry_of(adapters)->names();
    std::string packed;
    for (const auto& n : names) packed.append(n).push_back('\0');
    out_arg(out_len, "out_len");
    if (out_count) *out_count = names.size();
    *out_len = packed.size();
    if (capacity < packed.size()) {
      fail(MLORA_STATUS_BUFFER_TOO_SMALL, "buffer of " + std::to_string(capacity) +
                                              " bytes is too small for the adapter names (needs " +
                                              std::to_string(packed.size()) + ")");
    }
    array_arg(buf, packed.size(), "buf");
    if (!packed.empty()) std::memcpy(buf, packed.data(), packed.size());
  });
}

MLORA_API mlora_status_t mlora_adapters_get(const mlora_adapters_t* adapters, const char* name,
                                            mlora_adapter_t** out_adapter) {
  return guard(__func__, [&] {
    const auto held = registry_of(adapters);
    Registry& r = *held;
    const std::string n = str_arg(name, "name");
    out_arg(out_adapter, "out_adapter");
    emit(out_adapter, HandleType::kAdapter, r.get(n));
  });
}

}  // extern "C"
