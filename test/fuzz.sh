#!/usr/bin/env bash
# Runs every fuzz target of the module briefly with its seed corpus. A target fails when it finds
# an input that panics or is accepted wrongly: go test then saves that input under the package's
# testdata/fuzz/, and this script fails. On a loaded machine the go fuzzing coordinator sometimes
# ends a run with "context deadline exceeded" while a worker is still busy, having found nothing;
# such a run (no new input saved) is run once more, and fails for good if it happens again.
set -euo pipefail
fuzztime=${FUZZTIME:-5s}
go=${GO:-go}
for pkg in $($go list ./...); do
  dir=$($go list -f '{{.Dir}}' "$pkg")
  for f in $($go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
    for try in 1 2; do
      echo "fuzz $pkg $f (try $try)"
      if $go test -run '^$' -fuzz "^$f\$" -fuzztime "$fuzztime" -fuzzminimizetime 1s "$pkg"; then
        break
      fi
      if [[ -n $(git status --porcelain -- "$dir/testdata/fuzz/$f" 2>/dev/null) ]]; then
        echo "fuzz: $f found a failing input, saved under $dir/testdata/fuzz/$f" >&2
        exit 1
      fi
      if ((try == 2)); then
        echo "fuzz: $f failed twice without saving an input" >&2
        exit 1
      fi
    done
  done
done
