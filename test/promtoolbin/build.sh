#!/usr/bin/env bash
# Builds the promtool CLI that ferry's tests check deploy/monitoring's alert rules with, and
# promqlnames (Prometheus's PromQL parser listing the metrics an expression reads), from the Go
# module proxy, into a cache outside the clone keyed by this module's go.mod, go.sum and
# sources, and prints the directory that holds both binaries. A warm cache returns at once; a
# cold build (downloads included) takes a few minutes on 2 cores. Concurrent callers wait for
# one another instead of building twice. Service discovery plugins are left out (remove_all_sd):
# checking and unit-testing rules needs none, and they are most of the build.
# Usage: build.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
key=$(cat "$here/go.mod" "$here/go.sum" "$here/promqlnames/main.go" | sha256sum | cut -c1-12)
cache=${FERRY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ferry}
out="$cache/promtool-$key"
mkdir -p "$out"
if [[ ! -x "$out/promtool" || ! -x "$out/promqlnames" ]]; then
  exec 9>"$out/.lock"
  flock 9
  if [[ ! -x "$out/promtool" || ! -x "$out/promqlnames" ]]; then
    echo "building promtool into $out (first time only)" >&2
    start=$SECONDS
    (cd "$here" && CGO_ENABLED=0 go build -trimpath -tags remove_all_sd -ldflags='-s -w' -o "$out/promtool.tmp" github.com/prometheus/prometheus/cmd/promtool)
    (cd "$here" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$out/promqlnames.tmp" ./promqlnames)
    mv "$out/promtool.tmp" "$out/promtool"
    mv "$out/promqlnames.tmp" "$out/promqlnames"
    echo "built promtool in $((SECONDS - start))s" >&2
  fi
fi
echo "$out"
