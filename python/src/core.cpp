// multilora._core — the pybind11 extension behind the Python package.
//
// It binds the C ABI through the header-only RAII wrapper include/multilora/multilora.hpp, never csrc/
// internals, so Python exercises exactly the ABI C, C# and Java use. The pure-Python package
// (python/multilora) adds lifetimes, reprs and argument conveniences on top.
//
// numpy in: array-likes are converted with an explicit dtype and C order (np.require: a copy only when
// the array is not already C-contiguous, aligned and native-endian) and passed as borrowed tensors
// (mlora_tensor_create_borrowed); the arrays are kept referenced for the whole call.
// numpy out: every array returned owns its memory — it is a copy of the library's tensor, made before
// the tensor is released (as onnxruntime's own Python run() does), so it is writeable and outlives
// every handle.
// bfloat16: numpy has no such dtype; it is exposed as ml_dtypes.bfloat16 (a dependency of the package;
// uint16 raw bits if ml_dtypes cannot be imported), and ml_dtypes.bfloat16 arrays are accepted.
// Errors: multilora::Error is translated to the matching exception class of multilora._errors (chosen
// by status there), carrying .status, .status_name and the C message verbatim.
// The GIL is released around native work that may take time: model creation, run, adapter load,
// adapter open/write, set_active_adapters and set_active_adapters_per_row (build composites) and generation
// steps.

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "multilora/multilora.hpp"

namespace py = pybind11;
namespace ml = multilora;

namespace {

// ---------------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------------

// Sets the Python error for a multilora::Error: an instance of the class multilora._errors picks for
// the status, carrying the C text verbatim. Falls back to RuntimeError if that module is unavailable.
void set_python_error(const ml::Error& e) {
  try {
    py::object errors = py::module_::import("multilora._errors");
    // The library promises UTF-8 messages; decode tolerantly anyway so a stray byte can never replace the
    // error with a UnicodeDecodeError (status and message lost).
    const std::string text = e.what();
    PyObject* decoded = PyUnicode_DecodeUTF8(text.data(), static_cast<Py_ssize_t>(text.size()), "backslashreplace");
    if (!decoded) throw py::error_already_set();
    py::object message = py::reinterpret_steal<py::object>(decoded);
    py::object exc = errors.attr("error_from_status")(e.status(), e.status_name(), message);
    PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc.ptr())), exc.ptr());
  } catch (py::error_already_set&) {
    std::string text = std::string(e.status_name()) + ": " + e.what();
    PyErr_SetString(PyExc_RuntimeError, text.c_str());
  }
}

// An error raised by the binding itself, with a status so Python sees the same classes as for C errors.
[[noreturn]] void fail(mlora_status_t status, const std::string& message) { throw ml::Error(status, message); }

// Token ids as int32 without silent wrapping or truncation: integer arrays only (TYPE_MISMATCH otherwise);
// an id that does not fit int32 is sent as INT32_MAX (never a valid id: vocab_size <= INT32_MAX), so the
// library refuses it naming the vocabulary, and the message is given the real id back (`big`).
struct TokenIds {
  py::array_t<int32_t, py::array::c_style> ids;
  std::vector<std::pair<py::ssize_t, std::string>> big;  // (flat index, original id as text)
};

// `offset`: flat position of the first id among everything sent in the call (the library's index).
TokenIds token_ids(const py::object& tokens, const char* what, py::ssize_t offset = 0) {
  py::array raw = py::array::ensure(tokens);
  if (!raw) throw py::error_already_set();
  const char kind = raw.dtype().kind();
  auto not_integers = [&] {
    fail(MLORA_STATUS_TYPE_MISMATCH, std::string(what) + ": token ids must be integers, got a " +
                                         py::str(raw.dtype()).cast<std::string>() + " array");
  };
  if (raw.size() > 0 && kind != 'i' && kind != 'u' && kind != 'O') not_integers();
  std::vector<py::ssize_t> shape(raw.shape(), raw.shape() + raw.ndim());
  const py::ssize_t n = raw.size();
  std::vector<int64_t> values(static_cast<size_t>(n));
  std::vector<bool> exact(static_cast<size_t>(n), true);  // false: the value was clipped to fit int64
  if (kind == 'i' || (kind == 'u' && raw.itemsize() < 8)) {
    auto wide = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(raw);
    if (!wide) throw py::error_already_set();
    std::copy(wide.data(), wide.data() + n, values.begin());
  } else {
    // uint64 and Python ints beyond int64 (numpy keeps those as an object array): one element at a time.
    py::list flat = raw.attr("ravel")().attr("tolist")();
    for (py::ssize_t i = 0; i < n; ++i) {
      PyObject* x = flat[static_cast<size_t>(i)].ptr();
      if (!PyLong_Check(x) || PyBool_Check(x)) not_integers();
      int overflow = 0;
      const long long v = PyLong_AsLongLongAndOverflow(x, &overflow);
      if (overflow != 0) {
        values[i] = overflow > 0 ? INT64_MAX : INT64_MIN;
        exact[i] = false;
      } else {
        values[i] = v;
      }
    }
  }
  TokenIds out;
  out.ids = py::array_t<int32_t, py::array::c_style>(shape);
  int32_t* dst = out.ids.mutable_data();
  for (py::ssize_t i = 0; i < n; ++i) {
    const int64_t v = values[i];
    if (v < INT32_MIN || v > INT32_MAX) {
      dst[i] = INT32_MAX;
      std::string text = std::to_string(v);
      if (!exact[i]) text = py::str(raw.attr("ravel")()[py::int_(i)]).cast<std::string>();
      out.big.emplace_back(offset + i, text);
    } else {
      dst[i] = static_cast<int32_t>(v);
    }
  }
  return out;
}

// Runs `append`; an error about a substituted id gets the caller's id back in its message.
template <class F>
void with_real_ids(const TokenIds& t, F&& append) {
  try {
    append();
  } catch (const ml::Error& e) {
    std::string msg = e.what();
    for (const auto& [index, text] : t.big) {
      const std::string fake = "[" + std::to_string(index) + "] = " + std::to_string(INT32_MAX);
      const size_t at = msg.find(fake);
      if (at != std::string::npos) {
        msg.replace(at, fake.size(), "[" + std::to_string(index) + "] = " + text);
        throw ml::Error(e.status(), msg);
      }
    }
    throw;
  }
}

// ---------------------------------------------------------------------------------------------------
// dtypes
// ---------------------------------------------------------------------------------------------------

// The library's name ("float32", ...; mlora_dtype_name), "dtype(N)" for a value it does not know.
std::string dtype_label(mlora_dtype_t dtype) {
  const std::string name = ml::dtype_name(dtype);
  return name == "unknown" ? "dtype(" + std::to_string(dtype) + ")" : name;
}

py::object ml_dtypes_bfloat16() {
  static py::object* cached = nullptr;  // leaked on purpose: outlives interpreter teardown order issues
  static bool tried = false;
  if (!tried) {
    tried = true;
    try {
      cached = new py::object(py::module_::import("ml_dtypes").attr("bfloat16"));
    } catch (py::error_already_set&) {
      cached = nullptr;
    }
  }
  return cached != nullptr ? *cached : py::object();
}

// numpy dtype for a multilora dtype.
py::dtype numpy_dtype(mlora_dtype_t dtype) {
  switch (dtype) {
    case MLORA_DTYPE_FLOAT32:
      return py::dtype::of<float>();
    case MLORA_DTYPE_UINT8:
      return py::dtype::of<uint8_t>();
    case MLORA_DTYPE_INT8:
      return py::dtype::of<int8_t>();
    case MLORA_DTYPE_UINT16:
      return py::dtype::of<uint16_t>();
    case MLORA_DTYPE_INT16:
      return py::dtype::of<int16_t>();
    case MLORA_DTYPE_INT32:
      return py::dtype::of<int32_t>();
    case MLORA_DTYPE_INT64:
      return py::dtype::of<int64_t>();
    case MLORA_DTYPE_BOOL:
      return py::dtype::of<bool>();
    case MLORA_DTYPE_FLOAT16:
      return py::dtype::from_args(py::str("float16"));
    case MLORA_DTYPE_FLOAT64:
      return py::dtype::of<double>();
    case MLORA_DTYPE_UINT32:
      return py::dtype::of<uint32_t>();
    case MLORA_DTYPE_UINT64:
      return py::dtype::of<uint64_t>();
    case MLORA_DTYPE_BFLOAT16: {
      py::object bf16 = ml_dtypes_bfloat16();
      if (bf16) return py::dtype::from_args(bf16);
      return py::dtype::of<uint16_t>();
    }
    default:
      fail(MLORA_STATUS_TYPE_MISMATCH, "multilora dtype " + dtype_label(dtype) + " has no numpy equivalent");
  }
}

// multilora dtype of a numpy dtype; 0 when there is none.
mlora_dtype_t mlora_dtype_of(const py::dtype& dt) {
  const char kind = dt.kind();
  const py::ssize_t size = dt.itemsize();
  if (py::str(dt.attr("name")).cast<std::string>() == "bfloat16") return MLORA_DTYPE_BFLOAT16;
  switch (kind) {
    case 'f':
      return size == 4 ? MLORA_DTYPE_FLOAT32 : size == 2 ? MLORA_DTYPE_FLOAT16 : size == 8 ? MLORA_DTYPE_FLOAT64 : 0;
    case 'i':
      return size == 1   ? MLORA_DTYPE_INT8
             : size == 2 ? MLORA_DTYPE_INT16
             : size == 4 ? MLORA_DTYPE_INT32
             : size == 8 ? MLORA_DTYPE_INT64
                         : 0;
    case 'u':
      return size == 1   ? MLORA_DTYPE_UINT8
             : size == 2 ? MLORA_DTYPE_UINT16
             : size == 4 ? MLORA_DTYPE_UINT32
             : size == 8 ? MLORA_DTYPE_UINT64
                         : 0;
    case 'b':
      return size == 1 ? MLORA_DTYPE_BOOL : 0;
    default:
      return 0;
  }
}

// ---------------------------------------------------------------------------------------------------
// numpy <-> tensors
// ---------------------------------------------------------------------------------------------------

// An array converted for the library plus the borrowed tensor over it; the array must outlive the tensor.
struct BorrowedArray {
  py::array array;
  ml::Tensor tensor;
};

// Converts an array-like for the library. A numpy array (or anything with a dtype) keeps its dtype —
// a mismatch is reported by the library with expected vs actual — while other array-likes (lists,
// scalars) are converted to `preferred` when given. `as_dtype` (non-zero) reinterprets the array's
// bytes as that dtype (e.g. uint16 bits as bfloat16); the element sizes must agree.
BorrowedArray borrow_array(const py::handle& obj, const std::string& what, mlora_dtype_t preferred = 0,
                           mlora_dtype_t as_dtype = 0) {
  py::module_ np = py::module_::import("numpy");
  py::object arr;
  if (py::isinstance<py::array>(obj) || py::hasattr(obj, "dtype")) {
    arr = np.attr("asarray")(obj);
  } else if (preferred != 0) {
    arr = np.attr("asarray")(obj, numpy_dtype(preferred));
  } else {
    arr = np.attr("asarray")(obj);
  }
  py::dtype dt = py::reinterpret_borrow<py::dtype>(arr.attr("dtype"));
  mlora_dtype_t code = mlora_dtype_of(dt);
  if (code == 0) {
    fail(MLORA_STATUS_TYPE_MISMATCH,
         what + ": numpy dtype " + py::str(dt).cast<std::string>() + " has no multilora/ONNX element type");
  }
  // Native byte order, C order, aligned: copies only if the array is not all of these already.
  py::object native = dt.attr("newbyteorder")("=");
  py::array ready = np.attr("require")(arr, native, py::make_tuple("C", "A")).cast<py::array>();
  if (as_dtype != 0 && as_dtype != code) {
    if (ml::dtype_size(as_dtype) != static_cast<size_t>(dt.itemsize())) {
      fail(MLORA_STATUS_TYPE_MISMATCH, what + ": cannot reinterpret numpy dtype " + py::str(dt).cast<std::string>() +
                                           " (" + std::to_string(dt.itemsize()) + " bytes) as " +
                                           dtype_label(as_dtype) + " (" + std::to_string(ml::dtype_size(as_dtype)) +
                                           " bytes)");
    }
    code = as_dtype;
  }
  std::vector<int64_t> shape(ready.shape(), ready.shape() + ready.ndim());
  const size_t nbytes = static_cast<size_t>(ready.nbytes());
  ml::Tensor tensor = ml::Tensor::borrow(code, shape, ready.data(), nbytes);
  return BorrowedArray{std::move(ready), std::move(tensor)};
}

// A numpy array owning a copy of the tensor's contents.
py::array array_from_tensor(const ml::Tensor& tensor) {
  const mlora_dtype_t code = tensor.dtype();
  const std::vector<int64_t> shape = tensor.shape();
  const void* data = nullptr;
  size_t nbytes = 0;
  ml::detail::check(mlora_tensor_data(tensor.get(), &data, &nbytes));
  std::vector<py::ssize_t> dims(shape.begin(), shape.end());
  py::array out(numpy_dtype(code), dims);
  if (static_cast<size_t>(out.nbytes()) != nbytes) {
    fail(MLORA_STATUS_INTERNAL, "tensor of " + std::to_string(nbytes) + " bytes does not match its shape (" +
                                    std::to_string(out.nbytes()) + " bytes expected)");
  }
  if (nbytes > 0) std::memcpy(out.mutable_data(), data, nbytes);
  return out;
}

std::vector<std::string> names_from(const py::handle& seq, const char* what) {
  if (py::isinstance<py::str>(seq)) return {seq.cast<std::string>()};
  std::vector<std::string> out;
  for (py::handle item : seq) {
    if (!py::isinstance<py::str>(item)) {
      fail(MLORA_STATUS_INVALID_ARGUMENT, std::string(what) + ": names must be str, got " +
                                              py::str(py::type::of(item).attr("__name__")).cast<std::string>());
    }
    out.push_back(item.cast<std::string>());
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Model
// ---------------------------------------------------------------------------------------------------

py::tuple tensor_info_tuple(const ml::TensorInfo& info) { return py::make_tuple(info.name, info.dtype, info.shape); }

py::list run_model(const ml::Model& model, const py::object& output_names, const py::dict& feeds,
                   const ml::RunOptions* options) {
  // Declared dtypes of the regular inputs: array-likes that are not arrays are converted to them.
  std::vector<std::string> input_names;
  std::vector<BorrowedArray> inputs;
  inputs.reserve(feeds.size());
  std::vector<ml::TensorInfo> declared;
  for (size_t i = 0, n = model.input_count(); i < n; ++i) declared.push_back(model.input_info(i));
  for (const auto& item : feeds) {
    if (!py::isinstance<py::str>(item.first)) {
      fail(MLORA_STATUS_INVALID_ARGUMENT, "run: input names must be str, got " +
                                              py::str(py::type::of(item.first).attr("__name__")).cast<std::string>());
    }
    std::string name = item.first.cast<std::string>();
    mlora_dtype_t preferred = 0;
    for (const ml::TensorInfo& d : declared) {
      if (d.name == name) preferred = d.dtype;
    }
    inputs.push_back(borrow_array(item.second, "run: input '" + name + "'", preferred));
    input_names.push_back(std::move(name));
  }
  std::vector<std::string> outputs;
  if (!output_names.is_none()) outputs = names_from(output_names, "run: output_names");
  std::vector<const ml::Tensor*> tensors;
  tensors.reserve(inputs.size());
  for (const BorrowedArray& b : inputs) tensors.push_back(&b.tensor);
  std::vector<ml::Tensor> results;
  {
    py::gil_scoped_release release;
    results = model.run(options, input_names, tensors, outputs);
  }
  py::list out;
  for (const ml::Tensor& t : results) out.append(array_from_tensor(t));
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Adapter files
// ---------------------------------------------------------------------------------------------------

// A bytes-like object's contents, borrowed for a call (the buffer view keeps the object alive).
struct BytesView {
  py::buffer_info info;
  const void* data() const { return info.ptr; }
  size_t size() const { return static_cast<size_t>(info.size * info.itemsize); }
};

BytesView bytes_view(const py::buffer& buffer) {
  py::buffer_info info = buffer.request();
  if (info.ndim > 1) {
    // Require a contiguous buffer: a C-contiguous multi-dimensional one is fine as raw bytes.
    bool contiguous = true;
    py::ssize_t expect = info.itemsize;
    for (py::ssize_t d = info.ndim - 1; d >= 0; --d) {
      if (info.strides[static_cast<size_t>(d)] != expect) contiguous = false;
      expect *= info.shape[static_cast<size_t>(d)];
    }
    if (!contiguous) fail(MLORA_STATUS_INVALID_ARGUMENT, "the buffer is not contiguous");
  } else if (info.ndim == 1 && info.strides[0] != info.itemsize) {
    fail(MLORA_STATUS_INVALID_ARGUMENT, "the buffer is not contiguous");
  }
  return BytesView{std::move(info)};
}

void write_adapter(const std::string& path, const py::list& items, int32_t adapter_version, int32_t model_version) {
  std::vector<std::string> names;
  std::vector<BorrowedArray> arrays;
  for (py::handle item : items) {
    py::tuple t = item.cast<py::tuple>();
    std::string name = t[0].cast<std::string>();
    const mlora_dtype_t as_dtype = t.size() > 2 && !t[2].is_none() ? t[2].cast<mlora_dtype_t>() : 0;
    arrays.push_back(borrow_array(t[1], "write_adapter '" + path + "': parameter '" + name + "'", 0, as_dtype));
    names.push_back(std::move(name));
  }
  std::vector<const ml::Tensor*> tensors;
  for (const BorrowedArray& b : arrays) tensors.push_back(&b.tensor);
  py::gil_scoped_release release;
  ml::Adapter::write(path, names, tensors, adapter_version, model_version);
}

py::tuple adapter_param(const ml::Adapter& adapter, size_t index) {
  ml::Tensor t = adapter.param_tensor(index);
  const std::string name = adapter.param_name(index);
  py::array values;
  try {
    values = array_from_tensor(t);
  } catch (py::error_already_set& e) {
    // numpy refuses arrays of more dims than it supports (64 in numpy 2, 32 before); a valid adapter
    // parameter may have more. A named error instead of numpy's bare ValueError.
    if (!e.matches(PyExc_ValueError)) throw;
    fail(MLORA_STATUS_SHAPE_MISMATCH, "parameter '" + name + "' has " + std::to_string(t.shape().size()) +
                                          " dims, more than numpy arrays support: " + e.what());
  }
  return py::make_tuple(name, t.dtype(), values);
}

py::list adapter_param_infos(const ml::Adapter& adapter) {
  py::list out;
  for (size_t i = 0, n = adapter.param_count(); i < n; ++i) {
    ml::Tensor t = adapter.param_tensor(i);
    out.append(py::make_tuple(adapter.param_name(i), t.dtype(), t.shape(), t.bytes()));
  }
  return out;
}

template <class T>
void set_active(T& receiver, const ml::Adapters* adapters, const py::object& names, const py::object& weights) {
  std::vector<std::string> n = names.is_none() ? std::vector<std::string>() : names_from(names, "set_active_adapters");
  if (n.empty() && (weights.is_none() || py::len(weights) == 0)) {  // [] = the base model
    receiver.clear_active_adapters();
    return;
  }
  if (adapters == nullptr)
    fail(MLORA_STATUS_INVALID_ARGUMENT, "set_active_adapters: adapters is None but names were given");
  if (weights.is_none()) {
    py::gil_scoped_release release;
    receiver.set_active_adapters(*adapters, n);
  } else {
    std::vector<float> w;
    for (py::handle x : weights) w.push_back(x.cast<float>());
    py::gil_scoped_release release;
    receiver.set_active_adapters(*adapters, n, w);
  }
}

// set_active_adapters_per_row of RunOptions, GeneratorParams and Generator: rows of names (a str row is one
// name), weights None or one list of numbers per row. Composing the sets is native work: the GIL is released.
template <class T>
void set_active_rows(T& receiver, const ml::Adapters& adapters, const py::object& rows, const py::object& weights) {
  std::vector<std::vector<std::string>> r;
  for (py::handle row : rows)
    r.push_back(names_from(py::reinterpret_borrow<py::object>(row), "set_active_adapters_per_row"));
  if (weights.is_none()) {
    py::gil_scoped_release release;
    receiver.set_active_adapters_per_row(adapters, r);
    return;
  }
  std::vector<std::vector<float>> w;
  for (py::handle row : weights) {
    w.emplace_back();
    for (py::handle x : row) w.back().push_back(x.cast<float>());
  }
  py::gil_scoped_release release;
  receiver.set_active_adapters_per_row(adapters, r, &w);
}

// Library-wide functions and constants: versions, status and dtype names, the ONNX Runtime library.
void bind_library(py::module_& m) {
  m.attr("ABI_VERSION") = MLORA_ABI_VERSION;
  m.attr("HEADER_VERSION") = MLORA_VERSION_STRING;
  m.attr("LOAD_REPLACE") = MLORA_LOAD_REPLACE;
  m.attr("LOAD_IGNORE_MODEL_VERSION") = MLORA_LOAD_IGNORE_MODEL_VERSION;
  m.attr("LOAD_COPY") = MLORA_LOAD_COPY;

  m.def("version", &ml::version_string, "Version of the loaded library.");
  m.def("abi_version", &ml::abi_version, "ABI version of the loaded library.");
  m.def("status_name", &ml::status_name, py::arg("status"));
  m.def("dtype_name", &ml::dtype_name, py::arg("dtype"), "mlora_dtype_name: \"float32\", ...; \"unknown\".");
  m.def(
      "dtype_size",
      [](mlora_dtype_t dtype) {
        size_t size = 0;
        ml::detail::check(mlora_dtype_size(dtype, &size));
        return size;
      },
      py::arg("dtype"), "mlora_dtype_size: bytes per element; InvalidArgumentError for an unknown dtype.");
  m.def("set_ort_library_path", &ml::set_ort_library_path, py::arg("path"));
  m.def(
      "ort_info",
      [] {
        ml::OrtInfo info;
        {
          py::gil_scoped_release release;
          info = ml::ort_info();
        }
        return py::make_tuple(info.path, info.version);
      },
      "(path, version) of the ONNX Runtime library in use; loads it if needed.");
  m.def("shutdown", &ml::shutdown);
  m.def(
      "set_global_threads",
      [](int32_t intra_op_threads, bool allow_spinning) { ml::set_global_threads(intra_op_threads, allow_spinning); },
      py::arg("intra_op_threads"), py::arg("allow_spinning"),
      "ONNX Runtime's thread policy for the process, before the first model (mlora_set_global_threads).");
  m.def(
      "raise_status", [](mlora_status_t status, const std::string& message) { fail(status, message); },
      py::arg("status"), py::arg("message"), "Raises the exception the bindings raise for status (for tests).");
}

// ModelOptions, RunOptions and Model.
void bind_model(py::module_& m) {
  py::class_<ml::ModelOptions>(m, "ModelOptions")
      .def(py::init<>())
      .def(
          "set_log_level", [](ml::ModelOptions& o, int32_t level) { o.set_log_level(level); }, py::arg("level"))
      .def(
          "set_intra_op_threads", [](ml::ModelOptions& o, int32_t n) { o.set_intra_op_threads(n); }, py::arg("threads"))
      .def(
          "set_config_entry",
          [](ml::ModelOptions& o, const std::string& k, const std::string& v) { o.set_config_entry(k, v); },
          py::arg("key"), py::arg("value"))
      .def(
          "set_batch_slots", [](ml::ModelOptions& o, size_t slots) { o.set_batch_slots(slots); }, py::arg("slots"))
      .def(
          "set_allow_external_paths", [](ml::ModelOptions& o, bool allow) { o.set_allow_external_paths(allow); },
          py::arg("allow"))
      .def(
          "set_base_graph", [](ml::ModelOptions& o, bool use) { o.set_base_graph(use); }, py::arg("use"))
      .def("close", &ml::ModelOptions::reset);

  py::class_<ml::RunOptions>(m, "RunOptions")
      .def(py::init<>())
      .def(
          "set_active_adapters",
          [](ml::RunOptions& o, const ml::Adapters* adapters, const py::object& names, const py::object& weights) {
            set_active(o, adapters, names, weights);
          },
          py::arg("adapters").none(true), py::arg("names"), py::arg("weights") = py::none())
      .def(
          "set_active_adapters_per_row",
          [](ml::RunOptions& o, const ml::Adapters& adapters, const py::object& rows, const py::object& weights) {
            set_active_rows(o, adapters, rows, weights);
          },
          py::arg("adapters"), py::arg("rows"), py::arg("weights") = py::none())
      .def_property_readonly("active_count", &ml::RunOptions::active_count)
      .def("close", &ml::RunOptions::reset);

  py::class_<ml::Model>(m, "Model")
      .def(py::init([](const std::string& path, const ml::ModelOptions* options) {
             py::gil_scoped_release release;
             return std::make_unique<ml::Model>(path, options);
           }),
           py::arg("path"), py::arg("options") = nullptr)
      .def_property_readonly(
          "inputs",
          [](const ml::Model& model) {
            py::list out;
            for (size_t i = 0, n = model.input_count(); i < n; ++i) out.append(tensor_info_tuple(model.input_info(i)));
            return out;
          },
          "[(name, dtype code, shape with -1 for symbolic dims)] of the regular inputs.")
      .def_property_readonly("outputs",
                             [](const ml::Model& model) {
                               py::list out;
                               for (size_t i = 0, n = model.output_count(); i < n; ++i)
                                 out.append(tensor_info_tuple(model.output_info(i)));
                               return out;
                             })
      .def_property_readonly(
          "lora_inputs",
          [](const ml::Model& model) {
            py::list out;
            for (const ml::LoraInputInfo& l : model.lora_inputs()) {
              out.append(py::make_tuple(l.name, l.dtype, l.dim0, l.dim1, l.rank_axis));
            }
            return out;
          },
          "[(name, dtype code, dim0, dim1, rank axis)] of the LoRA inputs (the rank axis reads 0).")
      .def_property_readonly("version", &ml::Model::version,
                             "Fingerprint of the LoRA input signature, as adapters record it in model_version.")
      .def_property_readonly(
          "batch_slots",
          [](const ml::Model& model) {
            ml::BatchSlots b = model.batch_slots();
            return py::make_tuple(b.slots, b.resident);
          },
          "(slots, resident): the slot table for per-row adapters (slots 0 when the model is not prepared).")
      .def_property_readonly(
          "batch_slot_stats",
          [](const ml::Model& model) {
            ml::BatchSlotStats s = model.batch_slot_stats();
            return py::make_tuple(s.hits, s.misses, s.evictions);
          },
          "(hits, misses, evictions) of the slot table since the model was created.")
      .def_property_readonly(
          "session_runs",
          [](const ml::Model& model) {
            ml::SessionRuns r = model.session_runs();
            return py::make_tuple(r.lora, r.base);
          },
          "(lora, base): runs on the LoRA graph's session and on the base graph's since the model was created.")
      .def("run", &run_model, py::arg("output_names").none(true), py::arg("feeds"),
           py::arg("options").none(true) = py::none())
      .def("close", &ml::Model::reset);
}

// Adapter, Adapters and the adapter writer.
void bind_adapters(py::module_& m) {
  py::class_<ml::Adapter>(m, "Adapter")
      .def_static(
          "open",
          [](const std::string& path) {
            py::gil_scoped_release release;
            return ml::Adapter::open(path);
          },
          py::arg("path"))
      .def_static(
          "open_from_memory",
          [](const py::buffer& data) {
            BytesView view = bytes_view(data);
            py::gil_scoped_release release;
            return ml::Adapter::open_from_memory(view.data(), view.size());
          },
          py::arg("data"))
      .def_property_readonly(
          "versions",
          [](const ml::Adapter& a) {
            ml::AdapterVersions v = a.versions();
            return py::make_tuple(v.format_version, v.adapter_version, v.model_version);
          },
          "(format_version, adapter_version, model_version)")
      .def_property_readonly(
          "bytes",
          [](const ml::Adapter& a) {
            ml::AdapterBytes b = a.bytes();
            return py::make_tuple(b.mapped, b.copied);
          },
          "(bytes_mapped, bytes_copied)")
      .def_property_readonly("rank", &ml::Adapter::rank)
      .def_property_readonly("param_names", &ml::Adapter::param_names)
      .def_property_readonly("param_infos", &adapter_param_infos, "[(name, dtype code, shape, nbytes)]")
      .def("param", &adapter_param, py::arg("index"), "(name, dtype code, numpy copy) of parameter index")
      .def("close", &ml::Adapter::reset);

  py::class_<ml::Adapters>(m, "Adapters")
      .def(py::init<const ml::Model&>(), py::arg("model"))
      .def(
          "load",
          [](ml::Adapters& a, const std::string& path, const std::string& name, int32_t flags) {
            py::gil_scoped_release release;
            a.load(path, name, flags);
          },
          py::arg("path"), py::arg("name"), py::arg("flags") = 0)
      .def(
          "load_from_memory",
          [](ml::Adapters& a, const py::buffer& data, const std::string& name, int32_t flags) {
            BytesView view = bytes_view(data);
            py::gil_scoped_release release;
            a.load_from_memory(view.data(), view.size(), name, flags);
          },
          py::arg("data"), py::arg("name"), py::arg("flags") = 0)
      .def("unload", &ml::Adapters::unload, py::arg("name"))
      .def("names", &ml::Adapters::names)
      .def(
          "get", [](const ml::Adapters& a, const std::string& name) { return a.get(name); }, py::arg("name"))
      .def("close", &ml::Adapters::reset);

  m.def("write_adapter", &write_adapter, py::arg("path"), py::arg("items"), py::arg("adapter_version") = 0,
        py::arg("model_version") = 0, "Writes [(name, array, dtype code or None)] as an .onnx_adapter file.");
}

// GeneratorParams and Generator.
void bind_generation(py::module_& m) {
  py::class_<ml::GeneratorParams>(m, "GeneratorParams")
      .def(py::init<const ml::Model&>(), py::arg("model"))
      .def(
          "set_search_number",
          [](ml::GeneratorParams& p, const std::string& k, double v) { p.set_search_number(k, v); }, py::arg("name"),
          py::arg("value"))
      .def(
          "set_search_bool", [](ml::GeneratorParams& p, const std::string& k, bool v) { p.set_search_bool(k, v); },
          py::arg("name"), py::arg("value"))
      .def("get_search_number", &ml::GeneratorParams::get_search_number, py::arg("name"))
      .def(
          "set_active_adapters",
          [](ml::GeneratorParams& p, const ml::Adapters* adapters, const py::object& names, const py::object& w) {
            set_active(p, adapters, names, w);
          },
          py::arg("adapters").none(true), py::arg("names"), py::arg("weights") = py::none())
      .def(
          "set_active_adapters_per_row",
          [](ml::GeneratorParams& p, const ml::Adapters& adapters, const py::object& rows, const py::object& w) {
            set_active_rows(p, adapters, rows, w);
          },
          py::arg("adapters"), py::arg("rows"), py::arg("weights") = py::none())
      .def(
          "set_stop_tokens",
          [](ml::GeneratorParams& p, const std::vector<int32_t>& tokens) { p.set_stop_tokens(tokens); },
          py::arg("tokens"))
      .def("close", &ml::GeneratorParams::reset);

  py::class_<ml::Generator>(m, "Generator")
      .def(py::init([](const ml::Model& model, const ml::GeneratorParams& params) {
             py::gil_scoped_release release;
             return std::make_unique<ml::Generator>(model, params);
           }),
           py::arg("model"), py::arg("params"))
      .def(
          "append_tokens",
          [](ml::Generator& g, const py::object& tokens) {
            // 1-D: one prompt; 2-D [batch, length]: one prompt per sequence. Token ids are int32.
            const TokenIds t = token_ids(tokens, "append_tokens");
            const auto& ids = t.ids;
            if (ids.ndim() == 2) {
              std::vector<std::vector<int32_t>> seqs;
              auto view = ids.unchecked<2>();
              for (py::ssize_t r = 0; r < view.shape(0); ++r) {
                seqs.emplace_back(ids.data(r, 0), ids.data(r, 0) + view.shape(1));
              }
              with_real_ids(t, [&] {
                py::gil_scoped_release release;
                g.append_token_sequences(seqs);
              });
              return;
            }
            if (ids.ndim() != 1) fail(MLORA_STATUS_INVALID_ARGUMENT, "append_tokens: tokens must be 1-D or 2-D");
            const int32_t* data = ids.data();
            const size_t count = static_cast<size_t>(ids.size());
            with_real_ids(t, [&] {
              py::gil_scoped_release release;
              g.append_tokens(data, count);
            });
          },
          py::arg("tokens"))
      .def(
          "append_token_sequences",
          [](ml::Generator& g, const py::list& sequences) {
            std::vector<std::vector<int32_t>> seqs;
            TokenIds all;  // substitutions of every sequence (the library indexes the concatenation)
            py::ssize_t offset = 0;
            for (py::handle s : sequences) {
              TokenIds t = token_ids(py::reinterpret_borrow<py::object>(s), "append_token_sequences", offset);
              offset += t.ids.size();
              if (t.ids.ndim() != 1)
                fail(MLORA_STATUS_INVALID_ARGUMENT, "append_token_sequences: each sequence must be 1-D");
              seqs.emplace_back(t.ids.data(), t.ids.data() + t.ids.size());
              all.big.insert(all.big.end(), t.big.begin(), t.big.end());
            }
            with_real_ids(all, [&] {
              py::gil_scoped_release release;
              g.append_token_sequences(seqs);
            });
          },
          py::arg("sequences"))
      .def(
          "rewind_to",
          [](ml::Generator& g, size_t new_length) {
            py::gil_scoped_release release;
            g.rewind_to(new_length);
          },
          py::arg("new_length"))
      .def("generate_next_token",
           [](ml::Generator& g) {
             py::gil_scoped_release release;
             g.generate_next_token();
           })
      .def("is_done", &ml::Generator::is_done)
      .def("batch_size", &ml::Generator::batch_size)
      .def(
          "get_sequence",
          [](const ml::Generator& g, size_t index) {
            std::vector<int32_t> s = g.get_sequence(index);
            py::array_t<int32_t> out(static_cast<py::ssize_t>(s.size()));
            if (!s.empty()) std::memcpy(out.mutable_data(), s.data(), s.size() * sizeof(int32_t));
            return out;
          },
          py::arg("index"))
      .def("get_next_tokens",
           [](const ml::Generator& g) {
             std::vector<int32_t> s = g.get_next_tokens();
             py::array_t<int32_t> out(static_cast<py::ssize_t>(s.size()));
             if (!s.empty()) std::memcpy(out.mutable_data(), s.data(), s.size() * sizeof(int32_t));
             return out;
           })
      .def("get_logits",
           [](const ml::Generator& g) {
             ml::Tensor t = [&] {
               py::gil_scoped_release release;  // may run the pending pass
               return g.get_logits();
             }();
             return array_from_tensor(t);
           })
      .def(
          "set_active_adapters",
          [](ml::Generator& g, const ml::Adapters* adapters, const py::object& names, const py::object& w) {
            set_active(g, adapters, names, w);
          },
          py::arg("adapters").none(true), py::arg("names"), py::arg("weights") = py::none())
      .def(
          "set_active_adapters_per_row",
          [](ml::Generator& g, const ml::Adapters& adapters, const py::object& rows, const py::object& w) {
            set_active_rows(g, adapters, rows, w);
          },
          py::arg("adapters"), py::arg("rows"), py::arg("weights") = py::none())
      .def("close", &ml::Generator::reset);
  py::class_<ml::EngineOptions>(m, "EngineOptions")
      .def(py::init<>())
      .def("set_max_batch_size", &ml::EngineOptions::set_max_batch_size, py::arg("n"))
      .def("set_max_tokens_per_step", &ml::EngineOptions::set_max_tokens_per_step, py::arg("n"))
      .def("set_max_queue", &ml::EngineOptions::set_max_queue, py::arg("n"))
      .def("set_worker", &ml::EngineOptions::set_worker, py::arg("enable"));

  py::class_<ml::Request>(m, "Request")
      .def(
          "read",
          [](ml::Request& r, int32_t timeout_ms, size_t max_tokens) {
            // (tokens, more): more is False once the request finished and every token was read.
            std::vector<int32_t> out;
            bool more = false;
            {
              py::gil_scoped_release release;
              more = r.read(out, timeout_ms, max_tokens);
            }
            return py::make_tuple(out, more);
          },
          py::arg("timeout_ms"), py::arg("max_tokens") = 256)
      .def("cancel",
           [](ml::Request& r) {
             py::gil_scoped_release release;
             return r.cancel();
           })
      .def("finish_reason", &ml::Request::finish_reason)
      .def("usage",
           [](const ml::Request& r) {
             const ml::RequestUsage u = r.usage();
             return py::make_tuple(u.prompt_tokens, u.generated_tokens, u.queue_seconds, u.ttft_seconds);
           })
      .def("error_status", &ml::Request::error_status)
      .def("error_message", &ml::Request::error_message)
      .def("close", [](ml::Request& r) {
        py::gil_scoped_release release;
        r.reset();
      });

  py::class_<ml::Engine>(m, "Engine")
      .def(py::init([](const ml::Model& model, const ml::EngineOptions* options) {
             py::gil_scoped_release release;
             return std::make_unique<ml::Engine>(model, options);
           }),
           py::arg("model"), py::arg("options").none(true) = py::none())
      .def(
          "submit",
          [](ml::Engine& e, const ml::GeneratorParams& params, const std::vector<int32_t>& prompt) {
            py::gil_scoped_release release;
            return e.submit(params, prompt);
          },
          py::arg("params"), py::arg("prompt"))
      .def("step",
           [](ml::Engine& e) {
             py::gil_scoped_release release;
             return e.step();
           })
      .def("stats",
           [](const ml::Engine& e) {
             const ml::EngineStats s = e.stats();
             return py::make_tuple(s.queued, s.running, s.finished, s.steps, s.decode_tokens, s.prefill_tokens);
           })
      .def("shutdown",
           [](ml::Engine& e) {
             py::gil_scoped_release release;
             e.close();
           })
      .def("close", [](ml::Engine& e) {
        py::gil_scoped_release release;
        e.reset();
      });
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "multilora native core (C ABI via multilora.hpp). Use the `multilora` package, not this module.";

  try {
    ml::check_abi_version();
  } catch (const ml::Error& e) {
    throw py::import_error(e.what());
  }

  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const ml::Error& e) {
      set_python_error(e);
    }
  });

  bind_library(m);
  bind_model(m);
  bind_adapters(m);
  bind_generation(m);
}
