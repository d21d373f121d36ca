#!/usr/bin/env bash
# Installs the Debian packages the test command needs when they are missing (as root; otherwise it
# only says what is missing). mono-mcs: C# compiler + runtime for the C# bindings; libjna-java: JNA
# for the Java bindings; default-jdk-headless: javac/java; abigail-tools: the ABI baseline check; pkgconf:
# pkg-config for the C consumer test (scripts/test_consumers.sh);
# cmake/g++/make come with the machine (cmake also from PyPI).
set -euo pipefail
pkgs=(mono-mcs libjna-java abigail-tools default-jdk-headless pkgconf)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ "${MLORA_SKIP_APT:-0}" == 1 || ${#missing[@]} -eq 0 ]]; then
  [[ ${#missing[@]} -eq 0 ]] || echo "install_system_deps: skipping apt (MLORA_SKIP_APT=1); missing: ${missing[*]}"
  exit 0
fi
if [[ "$(id -u)" != 0 ]]; then
  echo "install_system_deps: not root; please install: ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install_system_deps: installed ${missing[*]}"
