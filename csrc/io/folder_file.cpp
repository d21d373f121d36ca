#include "io/folder_file.h"

#include "util/error.h"
#include "util/utf8.h"

namespace mlora {

std::string model_folder_file(const std::string& dir, const std::string& config_path, const std::string& key,
                              const std::string& name, bool allow_external) {
  const std::string who = "'" + config_path + "': " + key + " '" + printable_text(name) + "'";
  if (name.find('\0') != std::string::npos) fail(MLORA_STATUS_FORMAT, who + " contains a NUL byte");
  if (name.empty()) fail(MLORA_STATUS_FORMAT, "'" + config_path + "': " + key + " is empty");
  if (name[0] == '/') {
    if (!allow_external) {
      fail(MLORA_STATUS_FORMAT, who +
                                    " is an absolute path; a model folder may only name files inside it (allow "
                                    "external paths in the model options to permit this)");
    }
    return name;
  }
  if (!allow_external) {
    size_t start = 0;
    while (start <= name.size()) {
      size_t end = name.find('/', start);
      if (end == std::string::npos) end = name.size();
      if (name.compare(start, end - start, "..") == 0 && end - start == 2) {
        fail(MLORA_STATUS_FORMAT, who +
                                      " climbs out of the model folder with '..'; a model folder may only name "
                                      "files inside it (allow external paths in the model options to permit this)");
      }
      start = end + 1;
    }
  }
  return dir + "/" + name;
}

}  // namespace mlora
