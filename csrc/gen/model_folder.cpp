#include "gen/model_folder.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "gen/genai_config.h"
#include "util/error.h"

namespace mlora {

// Resolves a GenAI model folder to its decoder .onnx file.
std::string decoder_from_genai_folder(const std::string& dir) {
  const std::string config_path = dir + "/genai_config.json";
  // A FIFO would block the read below forever and a directory reads as empty: only a regular file will do.
  struct stat cst;
  if (::stat(config_path.c_str(), &cst) == 0 && !S_ISREG(cst.st_mode)) {
    fail(MLORA_STATUS_IO, "cannot read '" + config_path + "': it is " +
                              (S_ISDIR(cst.st_mode)    ? "a directory"
                               : S_ISFIFO(cst.st_mode) ? "a FIFO"
                                                       : "a special file") +
                              ", not a regular file");
  }
  std::ifstream in(config_path);
  if (!in) {
    struct stat st;
    if (::stat(config_path.c_str(), &st) != 0 && errno == ENOENT) {
      fail(MLORA_STATUS_NOT_FOUND, "model folder '" + dir + "' has no genai_config.json (expected '" + config_path +
                                       "'); pass an .onnx file or a GenAI model folder");
    }
    fail(MLORA_STATUS_IO, "cannot read '" + config_path + "': " + std::strerror(errno));
  }
  nlohmann::json config;
  try {
    config = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    fail(MLORA_STATUS_FORMAT, "'" + config_path + "' is not valid JSON: " + e.what());
  }
  // Only the decoder file name is read here; Model::open parses the whole file with parse_genai_config.
  const nlohmann::json* filename = nullptr;
  if (config.is_object() && config.contains("model") && config["model"].is_object() &&
      config["model"].contains("decoder") && config["model"]["decoder"].is_object() &&
      config["model"]["decoder"].contains("filename")) {
    filename = &config["model"]["decoder"]["filename"];
  }
  if (!filename || !filename->is_string() || filename->get<std::string>().empty()) {
    fail(MLORA_STATUS_FORMAT, "'" + config_path + "' has no string model.decoder.filename");
  }
  const std::string name = filename->get<std::string>();
  return name[0] == '/' ? name : dir + "/" + name;
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
    source.onnx_path = decoder_from_genai_folder(path);
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
