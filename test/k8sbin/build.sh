#!/usr/bin/env bash
# Builds the local control plane (etcd, kube-apiserver, kube-controller-manager, kubectl) from the
# Go module proxy into a cache outside the clone, keyed by this module's go.mod and go.sum, and
# prints the directory that holds the binaries. A warm cache returns at once; a cold build takes
# about 20 minutes on 2 cores. Concurrent callers wait for one another instead of building twice.
# Usage: build.sh [tool...]   (default: all four)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
key=$(cat "$here/go.mod" "$here/go.sum" "$here/build.sh" | sha256sum | cut -c1-12)
# The Kubernetes binaries report the version of the k8s.io/kubernetes module they are built
# from, as released binaries do: charts compare .Capabilities.KubeVersion (and their
# Chart.yaml's kubeVersion) against it, and a development build would say v0.0.0.
kver=$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' "$here/go.mod")
kmajor=${kver#v}; kmajor=${kmajor%%.*}
kminor=${kver#v*.}; kminor=${kminor%%.*}
vpkg=k8s.io/component-base/version
ldflags="-s -w -X $vpkg.gitVersion=$kver -X $vpkg.gitMajor=$kmajor -X $vpkg.gitMinor=$kminor -X $vpkg.gitTreeState=clean"
cache=${FERRY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ferry}
out="$cache/k8s-$key"
declare -A pkg=(
  [etcd]=go.etcd.io/etcd/server/v3
  [kube-apiserver]=k8s.io/kubernetes/cmd/kube-apiserver
  [kube-controller-manager]=k8s.io/kubernetes/cmd/kube-controller-manager
  [kubectl]=k8s.io/kubernetes/cmd/kubectl
)
if (($# == 0)); then set -- etcd kube-apiserver kube-controller-manager kubectl; fi
mkdir -p "$out"
exec 9>"$out/.lock"
for t in "$@"; do
  [[ -n ${pkg[$t]:-} ]] || { echo "build.sh: unknown tool $t" >&2; exit 2; }
  [[ -x "$out/$t" ]] && continue
  flock 9
  [[ -x "$out/$t" ]] && continue
  echo "building $t into $out (first time only; the whole control plane takes ~20 minutes on 2 cores)" >&2
  start=$SECONDS
  (cd "$here" && CGO_ENABLED=0 go build -trimpath -ldflags="$ldflags" -o "$out/$t.tmp" "${pkg[$t]}")
  mv "$out/$t.tmp" "$out/$t"
  echo "built $t in $((SECONDS - start))s" >&2
done
echo "$out"
