#include "gen/model_folder.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "gen/genai_config.h"
#include "io/folder_file.h"
#include "io/read_file.h"
#include "util/error.h"
#include "util/json.h"

namespace mlora {

// Resolves a GenAI model folder to its decoder .onnx file.
std::string decoder_from_genai_folder(const std::string& dir, bool allow_external_paths) {
  const std::string config_path = dir + "/genai_config.json";
  // Non-blocking open, regular files only, size cap: a FIFO, a directory or /dev/zero is an IO error.
  std::string text;
  try {
    text = read_small_file(config_path);
  } catch (const Error& e) {
    if (e.status() != MLORA_STATUS_NOT_FOUND) throw;
    fail(MLORA_STATUS_NOT_FOUND, "model folder '" + dir + "' has no genai_config.json (expected '" + config_path +
                                     "'); pass an .onnx file or a GenAI model folder");
  }
  const nlohmann::json config = parse_json(text, "'" + config_path + "'");
  // Only the decoder file name is read here; open_model parses the whole file with parse_genai_config.
  const nlohmann::json* filename = nullptr;
  if (config.is_object() && config.contains("model") && config["model"].is_object() &&
      config["model"].contains("decoder") && config["model"]["decoder"].is_object() &&
      config["model"]["decoder"].contains("filename")) {
    filename = &config["model"]["decoder"]["filename"];
  }
  if (!filename || !filename->is_string() || filename->get<std::string>().empty()) {
    fail(MLORA_STATUS_FORMAT, "'" + config_path + "' has no string model.decoder.filename");
  }
  return model_folder_file(dir, config_path, "model.decoder.filename", filename->get<std::string>(),
                           allow_external_paths);
}

std::shared_ptr<const Model> open_model(const std::string& path, const ModelOptions& options) {
  check_model_options(path, options);
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    const int err = errno;
    fail(err == ENOENT || err == ENOTDIR ? MLORA_STATUS_NOT_FOUND : MLORA_STATUS_IO,
         "cannot open model '" + path + "': " + std::strerror(err));
  }
  ModelSource source{path, path, nullptr, nullptr};
  if (S_ISDIR(st.st_mode)) {
    source.onnx_path = decoder_from_genai_folder(path, options.allow_external_paths);
    auto genai = std::make_shared<const GenaiConfig>(parse_genai_config(path + "/genai_config.json"));
    struct stat onnx_st;
    if (::stat(source.onnx_path.c_str(), &onnx_st) != 0) {
      const int err = errno;
      fail(err == ENOENT || err == ENOTDIR ? MLORA_STATUS_NOT_FOUND : MLORA_STATUS_IO,
           "cannot open the decoder '" + source.onnx_path + "' named by '" + path +
               "/genai_config.json': " + std::strerror(err));
    }
    // genai_config.json's session options; the caller's options (applied after them) take precedence.
    source.session_defaults = [genai, options](OrtSessionOptions* session_options) {
      apply_genai_session_options(*genai, options, session_options);
    };
    source.genai = std::move(genai);
  }
  return Model::open(source, options);
}

}  // namespace mlora
