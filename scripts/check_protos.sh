#!/usr/bin/env bash
# Fail (exit 1) when the committed engine/api/gen differs from what the protos generate.
# Run in CI and before committing a .proto change.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
COMMITTED="$ROOT/engine/api/gen"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

"$ROOT/scripts/gen_protos.sh" "$TMP/gen" >/dev/null

# Compare only generated files; ignore bytecode caches.
if ! diff -r -u --exclude='__pycache__' "$COMMITTED" "$TMP/gen"; then
  echo >&2
  echo "check_protos: engine/api/gen is out of date with protos/ (see the diff above)." >&2
  echo "check_protos: run scripts/gen_protos.sh and commit the result." >&2
  exit 1
fi
echo "check_protos: engine/api/gen matches protos/"
