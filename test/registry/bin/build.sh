#!/usr/bin/env bash
# Builds the OCI registry (github.com/distribution/distribution/v3/cmd/registry, pinned by this
# directory's go.mod) from the Go module proxy into a cache outside the clone, keyed by go.mod and
# go.sum, and prints the path of the binary. A warm cache returns at once; a cold build takes
# about 10 minutes on 2 cores. Concurrent callers wait for one another instead of building twice.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
key=$(cat "$here/go.mod" "$here/go.sum" | sha256sum | cut -c1-12)
cache=${FERRY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ferry}
out="$cache/registry-$key"
bin="$out/registry"
mkdir -p "$out"
if [[ ! -x $bin ]]; then
  exec 9>"$out/.lock"
  flock 9
  if [[ ! -x $bin ]]; then
    echo "building the OCI registry into $out (first time only)" >&2
    start=$SECONDS
    (cd "$here" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$bin.tmp" github.com/distribution/distribution/v3/cmd/registry)
    mv "$bin.tmp" "$bin"
    echo "built the OCI registry in $((SECONDS - start))s" >&2
  fi
fi
echo "$bin"
