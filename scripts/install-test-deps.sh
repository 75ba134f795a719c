#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian 12 machine (run as root):
# ZooKeeper and etcd servers (real servers for the backend tests), protoc (etcd-client's
# build script), openssl (test certificates), Apache Curator + javac (ha-bench's peer),
# and moto (an S3-compatible server for the s3:// storage tests).
# Idempotent: skips what is already present.
set -euo pipefail

need_apt=()
command -v protoc >/dev/null 2>&1 || need_apt+=(protobuf-compiler)
[ -f /usr/share/java/zookeeper.jar ] || need_apt+=(zookeeper)
command -v etcd >/dev/null 2>&1 || need_apt+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need_apt+=(etcd-client)
command -v java >/dev/null 2>&1 || need_apt+=(default-jre-headless)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
# ha-bench: Apache Curator's LeaderLatch as a peer, compiled at run time with javac.
command -v javac >/dev/null 2>&1 || need_apt+=(default-jdk-headless)
[ -f /usr/share/java/curator-recipes.jar ] || need_apt+=(libcurator-recipes-java)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! command -v moto_server >/dev/null 2>&1; then
  echo "installing moto (S3-compatible test server)"
  python3 -m pip install --quiet --disable-pip-version-check 'moto[server]'
fi
