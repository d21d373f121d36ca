#!/usr/bin/env bash
# Builds the C# and Java artifacts of the bindings, as their build files describe them, with the tools this
# machine has (no dotnet or Maven needed):
#   OUT/Multilora.dll               Mono's mcs over every .cs file under bindings/csharp except tests/, bin/, obj/
#                                   (exactly what bindings/csharp/Multilora.csproj compiles: the SDK's default glob)
#   OUT/multilora-<version>.jar     javac --release 11 + jar over every .java file under bindings/java/src
#                                   (bindings/java/pom.xml's sourceDirectory), JNA on the class path
# Fails when the version in Multilora.csproj or pom.xml differs from the header's MLORA_VERSION_STRING.
# Usage: scripts/build_bindings.sh OUT   Env: JNA_JAR (default /usr/share/java/jna.jar, Debian libjna-java).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$(mkdir -p "$1" && cd "$1" && pwd)"
jna="${JNA_JAR:-/usr/share/java/jna.jar}"
cd "$here"
version="$(sed -nE 's/^#define MLORA_VERSION_STRING "([0-9.]+)".*/\1/p' include/multilora/multilora.h)"
csproj_version="$(sed -nE 's|.*<Version>([^<]+)</Version>.*|\1|p' bindings/csharp/Multilora.csproj | head -n1)"
pom_version="$(sed -nE '/<artifactId>multilora<\/artifactId>/{n;s|.*<version>([^<]+)</version>.*|\1|p}' bindings/java/pom.xml | head -n1)"
if [[ "$csproj_version" != "$version" || "$pom_version" != "$version" ]]; then
  echo "build_bindings: versions differ: header $version, Multilora.csproj $csproj_version, pom.xml $pom_version" >&2
  exit 1
fi

mapfile -t cs < <(find bindings/csharp -name '*.cs' -not -path 'bindings/csharp/tests/*' \
  -not -path 'bindings/csharp/bin/*' -not -path 'bindings/csharp/obj/*' | sort)
echo "build_bindings: Multilora.dll from ${#cs[@]} C# files (mcs)"
mcs -nologo -warnaserror+ -target:library -optimize+ -out:"$out/Multilora.dll" "${cs[@]}"

mapfile -t java < <(find bindings/java/src -name '*.java' | sort)
echo "build_bindings: multilora-$version.jar from ${#java[@]} Java files (javac --release 11, JNA $jna)"
classes="$out/java-classes"
rm -rf "$classes" && mkdir -p "$classes"
javac --release 11 -Xlint:all -Werror -d "$classes" -cp "$jna" "${java[@]}"
printf 'Automatic-Module-Name: ai.multilora\nImplementation-Title: multilora\nImplementation-Version: %s\n' \
  "$version" >"$out/MANIFEST.MF"
rm -f "$out/multilora-$version.jar"
jar --create --file "$out/multilora-$version.jar" --manifest "$out/MANIFEST.MF" -C "$classes" .
rm -rf "$classes" "$out/MANIFEST.MF"
echo "build_bindings: $out/Multilora.dll $out/multilora-$version.jar"
