#!/usr/bin/env bash
# Fetches the build-time headers and tools multilora needs from Debian's packages into a private,
# git-ignored folder, installing nothing into the system (works without root):
#   libonnxruntime-dev   ONNX Runtime C headers (from Debian 13 "trixie": Debian 12 lacks the package)
#   libflatbuffers-dev   FlatBuffers C++ runtime headers + flatc (the .onnx_adapter format)
#   flatbuffers-compiler
#   nlohmann-json3-dev   JSON parsing (genai_config.json, safetensors headers)
# The packages come from the Debian mirror this machine is configured with.
# Usage: scripts/fetch_deps.sh [DEST]   (default: <repo>/third_party/.deps). Prints DEST on success.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${1:-$here/third_party/.deps}"
stamp="$dest/.complete-v1"
if [[ -f "$stamp" ]]; then echo "$dest"; exit 0; fi

mkdir -p "$dest"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The configured Debian mirror (deb822 .sources or one-line sources.list), else the default one.
mirror=""
for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
  [[ -f "$f" ]] || continue
  m=$(grep -Eo 'https?://[^ ]*/debian/?( |$)' "$f" 2>/dev/null | grep -v security | head -n1 | tr -d ' ' || true)
  if [[ -n "$m" ]]; then mirror="${m%/}"; break; fi
done
mirror="${mirror:-http://deb.debian.org/debian}"
codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
signed=""; [[ -f "$keyring" ]] && signed="signed-by=$keyring"

mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/debs"
{
  echo "deb [${signed}] $mirror $codename main"
  [[ "$codename" == trixie ]] || echo "deb [${signed}] $mirror trixie main"
} >"$work/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
  -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o "Debug::NoLocking=1"
  -o "APT::Sandbox::User=root" -o "Dir::State::status=/var/lib/dpkg/status")
echo "fetch_deps: using $mirror ($codename + trixie)" >&2
apt-get "${apt_opts[@]}" -qq update >&2
cd "$work/debs"
# flatc and its headers must run on this machine's libc: take them from this machine's suite.
apt-get "${apt_opts[@]}" -qq download \
  "libonnxruntime-dev/trixie" \
  "flatbuffers-compiler/$codename" "libflatbuffers-dev/$codename" "flatbuffers-compiler-dev/$codename" \
  "nlohmann-json3-dev/$codename" >&2
# the shared library flatc links against, whatever its versioned name is in this suite
flatlib=$(apt-cache "${apt_opts[@]}" depends "flatbuffers-compiler/$codename" 2>/dev/null |
  awk '/Depends: libflatbuffers[0-9]/{print $2; exit}')
[[ -n "$flatlib" ]] && apt-get "${apt_opts[@]}" -qq download "$flatlib/$codename" >&2
for deb in *.deb; do dpkg-deb -x "$deb" "$dest"; done
test -f "$dest/usr/include/onnxruntime/onnxruntime_c_api.h"
test -x "$dest/usr/bin/flatc"
touch "$stamp"
echo "$dest"
