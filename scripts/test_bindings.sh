#!/usr/bin/env bash
# Tests the bindings end to end against a built libmultilora.so:
#   generated shims up to date (gen_bindings.py --check), ABI checks (scripts/check_abi.sh), reflection over the
#   generated C# and Java raw layers against the header's C types (bindings/*/tests), the sample hosts
#   in C, C++, C# and Java (built, run, their printed numbers compared with each other and the tokens they
#   generate on the GenAI fixture with tests/python/fixtures/generation/reference.json), the snippets of
#   bindings/README.md (built, run, generated tokens checked the same way), and the conformance vectors
#   through every runner: C, Python cffi (raw .so), the Python package, C#, Java.
# It installs what it needs when missing: Debian mono-mcs, libjna-java, default-jdk-headless, abigail-tools
# (as root, `apt-get update` once first) and the Python modules the runners use (cffi; numpy/onnx/onnxruntime
# for the fixtures) with pip.
#
# Usage: scripts/test_bindings.sh [LIB_DIR]
#   LIB_DIR holds libmultilora.so (default $MLORA_LIB_DIR; if neither is given the library is built into
#   build-bind with CMake). Outputs go to $MLORA_BIND_OUT (default LIB_DIR/bindings-test).
# Env: MULTILORA_ORT_LIBRARY (default: the onnxruntime wheel's capi/libonnxruntime.so.*, found with python3),
#      MLORA_SKIP_APT=1 (never apt-get), MLORA_SKIP_PYPKG=1 (skip the Python-package runner when the package
#      is not installed), MLORA_SKIP_ABIDIFF=1 (see check_abi.sh).
# Prints one line per stage and ends with "N passed, N failed" (stages); exits 1 if any stage failed.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
py="${PYTHON:-python3}"

say() { printf '\n---- %s ----\n' "$*"; }

# ---- what this needs ------------------------------------------------------------------------------------------
need_pkgs=()
command -v mcs >/dev/null && command -v mono >/dev/null || need_pkgs+=(mono-mcs)
[[ -f /usr/share/java/jna.jar ]] || need_pkgs+=(libjna-java)
command -v javac >/dev/null || need_pkgs+=(default-jdk-headless)
command -v abidw >/dev/null && command -v abidiff >/dev/null || need_pkgs+=(abigail-tools)
if ((${#need_pkgs[@]})); then
  if [[ "${MLORA_SKIP_APT:-0}" != 1 && "$(id -u)" == 0 ]]; then
    say "installing ${need_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
  else
    echo "test_bindings: missing Debian packages: ${need_pkgs[*]} (not root or MLORA_SKIP_APT=1)" >&2
  fi
fi
for mod in cffi numpy onnx onnxruntime; do
  "$py" -c "import $mod" 2>/dev/null || "$py" -m pip install -q --disable-pip-version-check "$mod"
done

lib_dir="${1:-${MLORA_LIB_DIR:-}}"
if [[ -z "$lib_dir" ]]; then
  lib_dir="$here/build-bind"
  say "building libmultilora.so into $lib_dir"
  cmake -S . -B "$lib_dir" -DMLORA_BUILD_TESTS=OFF -DMLORA_BUILD_PYTHON=OFF >/dev/null && cmake --build "$lib_dir" -j2 >/dev/null ||
    { echo "test_bindings: the library does not build" >&2; echo "0 passed, 1 failed"; exit 1; }
fi
lib_dir="$(cd "$lib_dir" && pwd)"
if [[ ! -f "$lib_dir/libmultilora.so" ]]; then
  echo "test_bindings: no libmultilora.so in $lib_dir" >&2
  echo "0 passed, 1 failed"
  exit 1
fi
out="${MLORA_BIND_OUT:-$lib_dir/bindings-test}"
mkdir -p "$out"
if [[ -z "${MULTILORA_ORT_LIBRARY:-}" ]]; then
  MULTILORA_ORT_LIBRARY="$("$py" -c 'import glob, os, onnxruntime as o
d = os.path.join(os.path.dirname(o.__file__), "capi")
print(sorted(glob.glob(os.path.join(d, "libonnxruntime.so*")), key=len)[-1])')"
fi
export MULTILORA_ORT_LIBRARY
export MLORA_LIB_DIR="$lib_dir"
export LD_LIBRARY_PATH="$lib_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
jna=/usr/share/java/jna.jar
echo "test_bindings: library $lib_dir/libmultilora.so; ONNX Runtime $MULTILORA_ORT_LIBRARY; outputs $out"

passed=0
failed=0
failures=()
# stage NAME CMD...: runs CMD, shows its output, records pass/fail by exit code.
stage() {
  local name="$1"
  shift
  say "$name"
  if "$@"; then
    passed=$((passed + 1))
    echo "stage ok: $name"
  else
    failed=$((failed + 1))
    failures+=("$name")
    echo "stage FAILED: $name"
  fi
}

vectors="$here/tests/conformance/vectors"
fixtures="$out/fixtures"

# ---- generated shims, ABI -----------------------------------------------------------------------------------
stage "generated shims are up to date (gen_bindings.py --check)" "$py" scripts/gen_bindings.py --check
stage "ABI checks (check_abi.sh)" bash scripts/check_abi.sh "$lib_dir"
stage "fixtures (tests/conformance/make_fixtures.py)" "$py" tests/conformance/make_fixtures.py "$fixtures"

# ---- builds -------------------------------------------------------------------------------------------------
cflags=(-Wall -Wextra -pedantic -Werror -I"$here/include")
build_c() {
  gcc -std=c99 "${cflags[@]}" -O1 tests/conformance/runners/c/runner.c tests/conformance/runners/c/json.c \
    -L"$lib_dir" -lmultilora -lm -o "$out/conformance_c" &&
    gcc -std=c99 "${cflags[@]}" bindings/samples/c/sample.c -L"$lib_dir" -lmultilora -o "$out/sample_c"
}
build_cpp() {
  g++ -std=c++17 "${cflags[@]}" bindings/samples/cpp/sample.cpp -L"$lib_dir" -lmultilora -o "$out/sample_cpp"
}
# The C# and Java artifacts (Multilora.dll, multilora-<version>.jar) come from scripts/build_bindings.sh (the files
# Multilora.csproj and pom.xml describe); the runners, samples and checks build against them, not the sources.
version="$(sed -nE 's/^#define MLORA_VERSION_STRING "([0-9.]+)".*/\1/p' include/multilora/multilora.h)"
jar="$out/artifacts/multilora-$version.jar"
javacp="$jna:$jar:$out/java"
build_artifacts() {
  rm -rf "$out/artifacts" && bash scripts/build_bindings.sh "$out/artifacts"
}
build_csharp() {
  rm -rf "$out/csharp" && mkdir -p "$out/csharp" && cp "$out/artifacts/Multilora.dll" "$out/csharp/" &&
    mcs -nologo -out:"$out/csharp/conformance_csharp.exe" -r:"$out/csharp/Multilora.dll" tests/conformance/runners/csharp/*.cs &&
    mcs -nologo -out:"$out/csharp/sample_csharp.exe" -r:"$out/csharp/Multilora.dll" bindings/samples/csharp/Sample.cs &&
    mcs -nologo -out:"$out/csharp/raw_layer_check.exe" -r:"$out/csharp/Multilora.dll" bindings/csharp/tests/RawLayerCheck.cs &&
    mcs -nologo -out:"$out/csharp/wrapper_check.exe" -r:"$out/csharp/Multilora.dll" bindings/csharp/tests/WrapperCheck.cs
}
build_java() {
  rm -rf "$out/java" && mkdir -p "$out/java" &&
    javac -Xlint:all -Xlint:-serial -d "$out/java" -cp "$jna:$jar" \
      tests/conformance/runners/java/ai/multilora/conformance/*.java bindings/samples/java/Sample.java \
      bindings/java/tests/RawLayerCheck.java bindings/java/tests/WrapperCheck.java
}
stage "build C runner + C sample (C99 -Werror)" build_c
have_hpp=0
if [[ -f include/multilora/multilora.hpp ]]; then
  have_hpp=1
  stage "build C++ sample (multilora.hpp, C++17 -Werror)" build_cpp
fi
stage "build Multilora.dll and multilora-$version.jar (scripts/build_bindings.sh)" build_artifacts
stage "build C# runner, sample, checks against Multilora.dll (mcs)" build_csharp
stage "build Java runner, sample, checks against the jar (javac)" build_java

# ---- marshalling: reflection over the generated raw layers against the header's C types ---------------------
"$py" scripts/gen_bindings.py --signatures >"$out/signatures.txt"
stage "marshalling: C# raw layer (reflection)" mono "$out/csharp/raw_layer_check.exe" "$out/signatures.txt"
stage "marshalling: Java raw layer (reflection)" java -cp "$javacp" RawLayerCheck "$out/signatures.txt"
# Wrapper-level argument checks (weights vs names/rows) of the idiomatic C# and Java classes.
stage "wrapper checks: C#" mono "$out/csharp/wrapper_check.exe" "$fixtures/generation/lora"
stage "wrapper checks: Java" java -Djna.library.path="$MLORA_LIB_DIR" -cp "$javacp" WrapperCheck \
  "$fixtures/generation/lora"

# ---- samples ------------------------------------------------------------------------------------------------
# Generation: the committed GenAI fixture (copied by make_fixtures.py into FIXTURES/generation), prompt 0 of
# its reference.json, max_length = prompt + GEN_NEW tokens (small enough that one case stops at eos and the
# other at max_length).
gen_dir="$fixtures/generation/lora"
gen_new=6
gen_prompt="$("$py" -c 'import json, sys; print(",".join(map(str, json.load(open(sys.argv[1]))["prompt_ids"][0])))' \
  "$fixtures/generation/reference.json" 2>/dev/null)"
gen_max=$(( $(tr ',' '\n' <<<"$gen_prompt" | grep -c .) + gen_new ))
sample_args=("$fixtures/model.onnx" "$fixtures/adapter_a.onnx_adapter" "$fixtures/adapter_b.onnx_adapter"
  "$gen_dir" "$gen_max" "$gen_prompt")
stage "sample C" bash -c '"$0/sample_c" "$@" | tee "$0/sample_c.txt"' "$out" "${sample_args[@]}"
if ((have_hpp)); then
  stage "sample C++" bash -c '"$0/sample_cpp" "$@" | tee "$0/sample_cpp.txt"' "$out" "${sample_args[@]}"
fi
stage "sample C#" bash -c 'mono "$0/csharp/sample_csharp.exe" "$@" | tee "$0/sample_csharp.txt"' "$out" "${sample_args[@]}"
stage "sample Java" bash -c 'java -Djna.library.path="$MLORA_LIB_DIR" -cp "'"$javacp"'" Sample "$@" | tee "$0/sample_java.txt"' \
  "$out" "${sample_args[@]}"
compare_samples() {
  "$py" - "$out" "$fixtures/generation/reference.json" "$gen_new" <<'EOF'
import json, re, sys, pathlib
out = pathlib.Path(sys.argv[1])
reference = json.loads(pathlib.Path(sys.argv[2]).read_text())
new = int(sys.argv[3])
runs, gens = {}, {}
for f in sorted(out.glob("sample_*.txt")):
    rows, gen = {}, {}
    for line in f.read_text().splitlines():
        m = re.match(r"^(base|a|b|mix)\s+.*? last row:(.*)$", line)
        if m:
            rows[m.group(1)] = [float(x) for x in m.group(2).split()]
        m = re.match(r"^gen (base|a):(.*)$", line)
        if m:
            gen[m.group(1)] = [int(x) for x in m.group(2).split()]
    runs[f.stem] = rows
    gens[f.stem] = gen
# Greedy tokens of prompt 0 from PyTorch + PEFT (eos kept, as multilora does), cut to the new-token budget.
expected = {case: reference["torch"][case][0][:new] for case in ("base", "a")}
gen_ok = True
for name, gen in gens.items():
    for case, want in expected.items():
        if gen.get(case) != want:
            print(f"{name}: generation {case} printed {gen.get(case)}, reference.json expects {want}")
            gen_ok = False
if expected["base"] == expected["a"]:
    print("adapter a changes nothing in the reference tokens")
    gen_ok = False
print(f"{len(gens)} samples generate the reference tokens (base {expected['base']}, a {expected['a']})"
      if gen_ok else "samples' generated tokens differ from reference.json")
ref_name, ref = "sample_c", runs.get("sample_c", {})
ok = len(ref) == 4
for name, rows in runs.items():
    for case in ("base", "a", "b", "mix"):
        a, b = ref.get(case), rows.get(case)
        if a is None or b is None or len(a) != len(b) or any(abs(x - y) > 2e-6 for x, y in zip(a, b)):
            print(f"{name}: case {case} differs from {ref_name}: {b} vs {a}")
            ok = False
if ref and ref["base"] == ref["a"] and ref["a"] == ref["mix"]:
    print("the adapters change nothing in the samples' output")
    ok = False
print(f"{len(runs)} samples agree on base/a/b/mix" if ok else "samples disagree")
sys.exit(0 if ok and gen_ok else 1)
EOF
}
stage "samples print the same numbers and generate the reference tokens" compare_samples

# ---- README snippets ------------------------------------------------------------------------------------------
# Every fenced c / cpp / csharp / java / python block of bindings/README.md is written out with /tmp/ml replaced
# by the fixtures folder, built and run; its last line must hold the generated tokens reference.json expects.
readme_snippets() {
  local root="$out/readme" rc=0 lang log ok d
  rm -rf "$root" && mkdir -p "$root/java" "$root/engine/java" || return 1
  d="$root"
  "$py" - "$root" "$fixtures" <<'EOF' || return 1
import re, sys, pathlib
d, fixtures = pathlib.Path(sys.argv[1]), sys.argv[2]
text = pathlib.Path("bindings/README.md").read_text(encoding="utf-8")
names = {"c": "demo.c", "cpp": "demo.cpp", "csharp": "demo.cs", "java": "Demo.java", "python": "demo.py"}
found = 0
# "```lang" blocks go to d, "```lang engine" blocks (the Engine section) to d/engine
for lang, variant, body in re.findall(r"^```(\w+)( engine)?\n(.*?)^```", text, flags=re.S | re.M):
    if lang in names:
        target = d / "engine" if variant else d
        (target / names[lang]).write_text(body.replace("/tmp/ml", fixtures), encoding="utf-8")
        found += 1
print(f"readme: {found} snippets written to {d}")
sys.exit(0 if found == 2 * len(names) else 1)
EOF
  for d in "$root" "$root/engine"; do
  for lang in c cpp csharp java python; do
    log="$d/$lang.txt"
    ok=1
    case "$lang" in
      c) gcc -std=c99 "${cflags[@]}" "$d/demo.c" -L"$lib_dir" -lmultilora -o "$d/demo_c" && "$d/demo_c" >"$log" || ok=0 ;;
      cpp) g++ -std=c++17 "${cflags[@]}" "$d/demo.cpp" -L"$lib_dir" -lmultilora -o "$d/demo_cpp" && "$d/demo_cpp" >"$log" || ok=0 ;;
      csharp) mcs -nologo -out:"$d/demo.exe" -r:"$out/csharp/Multilora.dll" "$d/demo.cs" &&
        MONO_PATH="$out/csharp" mono "$d/demo.exe" >"$log" || ok=0 ;;
      java) javac -d "$d/java" -cp "$jna:$jar" "$d/Demo.java" &&
        java -Djna.library.path="$lib_dir" -cp "$jna:$jar:$d/java" Demo >"$log" || ok=0 ;;
      python)
        if ! "$py" -c "import multilora.generation" 2>/dev/null; then
          echo "readme python: skipped (multilora not importable)"
          continue
        fi
        "$py" "$d/demo.py" >"$log" || ok=0 ;;
    esac
    if ((ok)) && "$py" - "$log" "$fixtures/reference.json" <<'EOF'; then
import json, re, sys
lines = [ln for ln in open(sys.argv[1]).read().splitlines() if ln.strip()]
last = lines[-1] if lines else ""
values = json.load(open(sys.argv[2]))["values"]
want = values["gen_sequence_a"][len(values["gen_prompt"]):]
got = [int(x) for x in re.findall(r"-?\d+", last)]
print(f"  printed {last.strip()!r}" + ("" if got == want else f", reference.json expects {want}"))
sys.exit(0 if got == want else 1)
EOF
      echo "readme $lang${d#"$root"}: ok"
    else
      echo "readme $lang${d#"$root"}: FAILED"
      rc=1
    fi
  done
  done
  return $rc
}
stage "README snippets build, run and generate the reference tokens" readme_snippets

# ---- conformance ----------------------------------------------------------------------------------------------
stage "conformance: C (raw ABI)" "$out/conformance_c" "$vectors" "$fixtures"
stage "conformance: Python cffi (raw .so)" "$py" tests/conformance/runners/python_cffi/run.py "$vectors" "$fixtures"
if "$py" -c "import multilora" 2>/dev/null; then
  stage "conformance: Python package" "$py" tests/conformance/runners/python_pkg/run.py "$vectors" "$fixtures"
elif [[ "${MLORA_SKIP_PYPKG:-0}" == 1 ]]; then
  say "conformance: Python package — skipped (multilora not importable, MLORA_SKIP_PYPKG=1)"
else
  stage "conformance: Python package (multilora is not importable: run scripts/setup_env.sh)" false
fi
stage "conformance: C#" mono "$out/csharp/conformance_csharp.exe" "$vectors" "$fixtures"
stage "conformance: Java" java -Djna.library.path="$lib_dir" -cp "$javacp" \
  ai.multilora.conformance.ConformanceRunner "$vectors" "$fixtures"

say "summary"
for f in "${failures[@]}"; do echo "failed: $f"; done
echo "$passed passed, $failed failed"
((failed == 0))
