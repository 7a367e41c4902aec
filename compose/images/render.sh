#!/usr/bin/env bash
# Writes compose/images/NAME/Dockerfile for each image from Dockerfile.in, so
# the three cannot drift apart. With --check: fails when one differs from what
# it would write (scripts/test-images.sh runs that).
set -euo pipefail
cd "$(dirname "$0")"
status=0
for name in ewii-client ewii-adapter ewii-hub; do
    want="$(sed "s/@NAME@/$name/g" Dockerfile.in)"
    if [[ "${1:-}" == --check ]]; then
        [[ "$want" == "$(cat "$name/Dockerfile" 2>/dev/null)" ]] \
            || { echo "compose/images/$name/Dockerfile is stale: run compose/images/render.sh" >&2; status=1; }
    else
        mkdir -p "$name" && printf '%s\n' "$want" >"$name/Dockerfile"
    fi
done
exit "$status"
