#!/usr/bin/env bash
# ABI checks of multilora (docs/conventions.md §1, §4, §6):
#   1. the header compiles as C99 (-std=c99 -Wall -Wextra -pedantic -Werror; two translation units, one of
#      them including it twice, linked together) and as C++17 with the same warnings;
#   2. export coverage: the mlora_* symbols the built libmultilora.so exports (nm -D --defined-only) ==
#      the header's declarations == the functions of each generated shim (C# NativeMethods.g.cs, Java
#      MultiloraLibrary.java). Declared functions the core does not export yet are listed, with a reason, in
#      tests/abi/not_yet_exported.txt; an entry that is exported after all is an error (stale list);
#   3. the ABI baseline: abidw (libabigail) of a library built with debug info, restricted to the public
#      header, is compared with tests/abi/libmultilora.abi by abidiff; an incompatible change fails, a
#      compatible one (e.g. an added function) is reported. Refresh the baseline with
#      scripts/update_abi_baseline.sh when an intended change lands (with its MLORA_ABI_VERSION bump).
#
# Usage: scripts/check_abi.sh [LIB_DIR]   (default $MLORA_LIB_DIR, else build-bind)
# Env:   MLORA_ABI_BUILD_DIR  build dir of the debug-info library for step 3 (default build-bind-abi); it is
#                             configured and built here when the given library lacks debug info.
#        MLORA_SKIP_ABIDIFF=1 skip step 3.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
lib_dir="${1:-${MLORA_LIB_DIR:-$here/build-bind}}"
lib="$lib_dir/libmultilora.so"
header="include/multilora/multilora.h"
pending_file="tests/abi/not_yet_exported.txt"
baseline="tests/abi/libmultilora.abi"
fail=0
passed=0
failed=0
ok() { echo "  ok   $*"; passed=$((passed + 1)); }
bad() { echo "  FAIL $*"; failed=$((failed + 1)); fail=1; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "check_abi: header compiles"
cat >"$tmp/tu1.c" <<'EOF'
#include "multilora/multilora.h"
#include "multilora/multilora.h" /* include guard */
int tu2_abi(void);
int main(void) { return mlora_abi_version() == MLORA_ABI_VERSION && tu2_abi() == MLORA_ABI_VERSION ? 0 : 1; }
EOF
cat >"$tmp/tu2.c" <<'EOF'
#include "multilora/multilora.h"
int tu2_abi(void) {
  mlora_status_t s = MLORA_STATUS_OK;
  mlora_dtype_t d = MLORA_DTYPE_FLOAT32;
  return (int)(s + d - 1) + MLORA_ABI_VERSION;
}
EOF
cat >"$tmp/tu3.cpp" <<'EOF'
#include "multilora/multilora.h"
#include "multilora/multilora.h"
static_assert(sizeof(mlora_status_t) == 4, "mlora_status_t is int32_t");
int tu3_abi() { return mlora_abi_version(); }
EOF
cat >"$tmp/tu4.cpp" <<'EOF'
#include "multilora/multilora.h"
int tu3_abi();
int main() { return tu3_abi() == MLORA_ABI_VERSION ? 0 : 1; }
EOF
cflags=(-Wall -Wextra -pedantic -Werror -Iinclude)
if gcc -std=c99 "${cflags[@]}" -c "$tmp/tu1.c" -o "$tmp/tu1.o" && gcc -std=c99 "${cflags[@]}" -c "$tmp/tu2.c" -o "$tmp/tu2.o"; then
  ok "C99 -pedantic -Werror (2 translation units, double include)"
else
  bad "the header does not compile as C99 -pedantic -Werror"
fi
if g++ -std=c++17 "${cflags[@]}" -c "$tmp/tu3.cpp" -o "$tmp/tu3.o" && g++ -std=c++17 "${cflags[@]}" -c "$tmp/tu4.cpp" -o "$tmp/tu4.o"; then
  ok "C++17 -pedantic -Werror (2 translation units, double include)"
else
  bad "the header does not compile as C++17 -pedantic -Werror"
fi
if [[ -f "$lib" ]]; then
  if gcc "$tmp/tu1.o" "$tmp/tu2.o" -L"$lib_dir" -lmultilora -o "$tmp/c_link" &&
    g++ "$tmp/tu3.o" "$tmp/tu4.o" -L"$lib_dir" -lmultilora -o "$tmp/cxx_link" &&
    LD_LIBRARY_PATH="$lib_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$tmp/c_link" &&
    LD_LIBRARY_PATH="$lib_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$tmp/cxx_link"; then
    ok "C and C++ units link against libmultilora.so and agree on MLORA_ABI_VERSION"
  else
    bad "linking/running the header units against $lib failed"
  fi
fi

echo "check_abi: export coverage ($lib)"
if [[ ! -f "$lib" ]]; then
  bad "no library at $lib (build it, or pass its directory)"
else
  nm -D --defined-only "$lib" | awk '{print $NF}' | sed 's/@.*//' | { grep '^mlora_' || true; } | sort -u >"$tmp/exported"
  nm -D --defined-only "$lib" | awk '{print $NF}' | sed 's/@.*//' | { grep -v '^mlora_' || true; } | sort -u >"$tmp/other"
  python3 scripts/gen_bindings.py --names >"$tmp/declared"
  grep -oE 'static extern [^ ]+ (mlora_[a-z0-9_]+)\(' bindings/csharp/NativeMethods.g.cs | sed -E 's/.* (mlora_[a-z0-9_]+)\(/\1/' | sort -u >"$tmp/csharp"
  grep -oE '^    [A-Za-z.]+ (mlora_[a-z0-9_]+)\(' bindings/java/src/ai/multilora/MultiloraLibrary.java | sed -E 's/.* (mlora_[a-z0-9_]+)\(/\1/' | sort -u >"$tmp/java"
  sed -e 's/#.*//' -e 's/[[:space:]]*$//' "$pending_file" 2>/dev/null | awk 'NF{print $1}' | sort -u >"$tmp/pending" || true
  n_decl=$(wc -l <"$tmp/declared")
  if [[ -s "$tmp/other" ]]; then
    bad "the library exports symbols outside the mlora_ namespace: $(tr '\n' ' ' <"$tmp/other")"
  else
    ok "only mlora_* symbols are exported"
  fi
  extra=$(comm -23 "$tmp/exported" "$tmp/declared")
  [[ -z "$extra" ]] && ok "every exported symbol is declared in the header" ||
    bad "exported but not declared in $header: $(echo $extra)"
  missing=$(comm -13 "$tmp/exported" "$tmp/declared" | comm -23 - "$tmp/pending")
  [[ -z "$missing" ]] && ok "every declaration is exported ($n_decl declared, $(wc -l <"$tmp/exported") exported, $(wc -l <"$tmp/pending") listed in $pending_file)" ||
    bad "declared but not exported (and not in $pending_file): $(echo $missing)"
  stale=$(comm -12 "$tmp/pending" "$tmp/exported")
  [[ -z "$stale" ]] && ok "$pending_file lists nothing that is exported" ||
    bad "exported now, remove from $pending_file: $(echo $stale)"
  undeclared_pending=$(comm -23 "$tmp/pending" "$tmp/declared")
  [[ -z "$undeclared_pending" ]] || bad "$pending_file lists undeclared functions: $(echo $undeclared_pending)"
  for shim in csharp java; do
    if diff -q "$tmp/declared" "$tmp/$shim" >/dev/null; then
      ok "$shim shim declares exactly the header's $n_decl functions"
    else
      bad "$shim shim differs from the header: $(diff "$tmp/declared" "$tmp/$shim" | grep '^[<>]' | tr '\n' ' ')"
    fi
  done
fi

echo "check_abi: ABI baseline ($baseline)"
if [[ "${MLORA_SKIP_ABIDIFF:-0}" == 1 ]]; then
  echo "  skip abidiff (MLORA_SKIP_ABIDIFF=1)"
elif ! command -v abidw >/dev/null || ! command -v abidiff >/dev/null; then
  bad "abidw/abidiff not found (Debian package abigail-tools)"
elif [[ ! -f "$baseline" ]]; then
  bad "no baseline at $baseline; create it with scripts/update_abi_baseline.sh"
else
  bash scripts/update_abi_baseline.sh --out "$tmp/current.abi" "$lib_dir" >/dev/null
  set +e
  abidiff "$baseline" "$tmp/current.abi" >"$tmp/abidiff.txt" 2>&1
  rc=$?
  set -e
  if (((rc & 8) != 0)); then
    bad "incompatible ABI change against $baseline (abidiff exit $rc):"
    sed 's/^/       /' "$tmp/abidiff.txt"
  elif (((rc & 3) != 0)); then
    bad "abidiff failed (exit $rc): $(cat "$tmp/abidiff.txt")"
  else
    ok "no incompatible change against the baseline (abidiff exit $rc)"
    if ((rc != 0)); then
      echo "  note: compatible changes since the baseline (refresh it with scripts/update_abi_baseline.sh):"
      head -40 "$tmp/abidiff.txt" | sed 's/^/       /'
    fi
  fi
fi

echo "check_abi: $passed passed, $failed failed"
exit $fail
