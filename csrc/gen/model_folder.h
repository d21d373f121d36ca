// Opening what a user calls a model: an .onnx file, or a GenAI model folder (genai_config.json naming the
// decoder .onnx file, its search defaults and session options). The folder is read here, in the generation
// layer; the model layer loads the decoder it names (model/model.h ModelSource).
#pragma once

#include <memory>
#include <string>

#include "model/model.h"

namespace mlora {

// Throws INVALID_ARGUMENT (options), NOT_FOUND, IO, FORMAT, RUNTIME with the path in the message.
std::shared_ptr<const Model> open_model(const std::string& path, const ModelOptions& options);

// The decoder .onnx file a GenAI model folder's genai_config.json names (absolute or climbing out of the
// folder only when allow_external_paths). Throws NOT_FOUND (no genai_config.json), IO, FORMAT.
std::string decoder_from_genai_folder(const std::string& dir, bool allow_external_paths);

}  // namespace mlora
