#!/usr/bin/env bash
# Builds the sops CLI that ferry's tests encrypt their fixtures with, from the Go module proxy,
# into a cache outside the clone keyed by this module's go.mod and go.sum, and prints the
# directory that holds the binary. A warm cache returns at once; a cold build (downloads
# included) takes a few minutes on 2 cores. Concurrent callers wait for one another instead of
# building twice.
# Usage: build.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
key=$(cat "$here/go.mod" "$here/go.sum" | sha256sum | cut -c1-12)
cache=${FERRY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ferry}
out="$cache/sops-$key"
mkdir -p "$out"
if [[ ! -x "$out/sops" ]]; then
  exec 9>"$out/.lock"
  flock 9
  if [[ ! -x "$out/sops" ]]; then
    echo "building sops into $out (first time only)" >&2
    start=$SECONDS
    (cd "$here" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$out/sops.tmp" github.com/getsops/sops/v3/cmd/sops)
    mv "$out/sops.tmp" "$out/sops"
    echo "built sops in $((SECONDS - start))s" >&2
  fi
fi
echo "$out"
