// Paths a model folder's own files name (genai_config.json's file names, a model's base graph).
#pragma once

#include <string>

namespace mlora {

// The path of a file a model folder's config names (`key` = "model.decoder.filename"): `name` joined to
// `dir`. Throws FORMAT naming `config_path`, the key and the name when the name holds a NUL byte or, unless
// `allow_external` (mlora_model_options_set_allow_external_paths), is absolute or has a ".." component
// (a model folder may come from someone else; it must not make us open files outside it).
std::string model_folder_file(const std::string& dir, const std::string& config_path, const std::string& key,
                              const std::string& name, bool allow_external);

}  // namespace mlora
