#!/usr/bin/env bash
# Fetches Apache Flink 2.3's jars (PyPI's apache-flink-libraries wheel, ~330 MB) for the
# optional Flink peers: ha-bench's Flink HA contenders and hactl's live Flink tests.
# Usage: scripts/fetch-flink.sh [DIR]   (default: target/flink; or $HA_FLINK_DIR)
# Leaves DIR/lib/flink-dist-2.3.0.jar and the other jars of pyflink/lib. Idempotent.
# Needs python3 with pip, unzip and a JDK (javac) to build the harnesses.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-${HA_FLINK_DIR:-target/flink}}"
version=2.3.0
mkdir -p "$dir"
if [ -f "$dir/lib/flink-dist-$version.jar" ]; then
  echo "Flink $version jars already in $dir/lib"
  exit 0
fi
wheel="$(ls "$dir"/apache_flink_libraries-"$version"-*.whl 2>/dev/null | head -1 || true)"
if [ -z "$wheel" ]; then
  echo "downloading apache-flink-libraries==$version from PyPI"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps \
    "apache-flink-libraries==$version" -d "$dir"
  wheel="$(ls "$dir"/apache_flink_libraries-"$version"-*.whl | head -1)"
fi
command -v unzip >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq unzip >/dev/null; }
rm -rf "$dir/unpack" && mkdir -p "$dir/unpack" "$dir/lib"
unzip -q -o "$wheel" 'pyflink/lib/*.jar' -d "$dir/unpack"
mv "$dir"/unpack/pyflink/lib/*.jar "$dir/lib/"
rm -rf "$dir/unpack"
echo "Flink $version jars in $dir/lib"
