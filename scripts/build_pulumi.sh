#!/usr/bin/env bash
# Builds the Pulumi CLI from its published Go module (github.com/pulumi/pulumi/pkg/v3, command cmd/pulumi) into a
# cache directory and reuses it afterwards. Needs Go and the Go module proxy; no GitHub download.
#
#   scripts/build_pulumi.sh               build if missing, print where it is
#   scripts/build_pulumi.sh --print-dir   print only the bin dir (building first if needed): for PATH
#
# Env: PULUMI_VERSION (default: the installed Python SDK's version, else PULUMI_FALLBACK_VERSION when the module
# proxy does not serve that one), PISTACHIO_PULUMI_CACHE (default ~/.cache/pistachio-infra), GOMODCACHE / GOCACHE.
#
# `go install pkg/v3/cmd/pulumi@v…` is refused because pkg/go.mod carries `replace` directives (golang/go#44840),
# so a throwaway wrapper module requires pkg/v3 instead; the non-local replaces of pkg/go.mod are copied into it
# (the `sdk/v3 => ../sdk` one is unnecessary: tagged pkg releases pin the same sdk/v3 version).
# The language host (pulumi-language-python) is not built: the tool runs inline Automation programs, for which the
# engine talks to the Python process itself; its module has no tags the proxy serves.
set -euo pipefail

PRINT_DIR=0
case "${1:-}" in
  --print-dir) PRINT_DIR=1 ;;
  "") ;;
  *) echo "usage: $0 [--print-dir]" >&2; exit 2 ;;
esac
log() { echo "build_pulumi: $*" >&2; }

cd "$(dirname "$0")/.."
PULUMI_FALLBACK_VERSION="${PULUMI_FALLBACK_VERSION:-3.274.1}"
if [ -z "${PULUMI_VERSION:-}" ]; then
  PULUMI_VERSION="$( (uv run --frozen python -c 'import importlib.metadata as m; print(m.version("pulumi"))' \
    || .venv/bin/python -c 'import importlib.metadata as m; print(m.version("pulumi"))') 2>/dev/null || true)"
  PULUMI_VERSION="${PULUMI_VERSION:-$PULUMI_FALLBACK_VERSION}"
fi
PULUMI_VERSION="${PULUMI_VERSION#v}"

CACHE_ROOT="${PISTACHIO_PULUMI_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pistachio-infra}"
mkdir -p "$CACHE_ROOT"

write_launcher() {  # the dynamic-provider plugin the engine starts for pulumi-python:dynamic resources
  printf '#!/bin/sh\nexec "${PULUMI_PYTHON_CMD:-python3}" -u -m pulumi.dynamic "$@"\n' \
    > "$1/pulumi-resource-pulumi-python"
  chmod 755 "$1/pulumi-resource-pulumi-python"
}

# A version already built (the wanted one, or the fallback when the wanted one is not on the proxy) is reused.
for v in "$PULUMI_VERSION" "$PULUMI_FALLBACK_VERSION"; do
  if [ -x "$CACHE_ROOT/pulumi-v$v/bin/pulumi" ] && [ -x "$CACHE_ROOT/pulumi-v$v/bin/pulumi-resource-pulumi-python" ]
  then
    if [ "$PRINT_DIR" = 1 ]; then echo "$CACHE_ROOT/pulumi-v$v/bin"
    else log "cached: $CACHE_ROOT/pulumi-v$v/bin ($("$CACHE_ROOT/pulumi-v$v/bin/pulumi" version))"; fi
    exit 0
  fi
done

command -v go >/dev/null || { log "go not found: install Go >= 1.26 or the official Pulumi CLI"; exit 1; }
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=mod" GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"

MOD=github.com/pulumi/pulumi/pkg/v3
if ! go list -m -json "$MOD@v$PULUMI_VERSION" >/dev/null 2>&1; then
  log "the module proxy does not serve $MOD@v$PULUMI_VERSION; using v$PULUMI_FALLBACK_VERSION"
  PULUMI_VERSION="$PULUMI_FALLBACK_VERSION"
fi
DEST="$CACHE_ROOT/pulumi-v$PULUMI_VERSION"
mkdir -p "$DEST"
exec 9>"$DEST/.lock"
flock 9   # one build at a time per version; a second caller waits and then finds the result
if [ ! -x "$DEST/bin/pulumi" ]; then
  START=$(date +%s)
  log "building pulumi v$PULUMI_VERSION from $MOD (first time: many minutes)"
  WRAP="$DEST/wrapper"
  rm -rf "$WRAP" && mkdir -p "$WRAP"
  PKG_GOMOD="$(go mod download -json "$MOD@v$PULUMI_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
  {
    echo "module pistachio.invalid/pulumi-build"
    echo
    grep -E '^go [0-9]' "$PKG_GOMOD"
    echo
    echo "require $MOD v$PULUMI_VERSION"
    echo
    # replace lines whose target is a module (not a ../ path), single-line or inside a replace ( ... ) block
    awk '/^replace \(/{blk=1; next} blk && /^\)/{blk=0; next}
         blk && /=>/ && $0 !~ /=> *\.\.?\// {print "replace " $0}
         /^replace [^(]/ && $0 !~ /=> *\.\.?\// {print}' "$PKG_GOMOD" | sed 's/^replace[[:space:]]*/replace /'
  } > "$WRAP/go.mod"
  echo 'package tools' > "$WRAP/tools.go"
  mkdir -p "$DEST/bin.tmp"
  (cd "$WRAP" && go build -trimpath -tags osusergo,grpcnotrace \
     -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_VERSION" \
     -o "$DEST/bin.tmp/pulumi" "$MOD/cmd/pulumi")
  write_launcher "$DEST/bin.tmp"
  rm -rf "$DEST/bin" && mv "$DEST/bin.tmp" "$DEST/bin"
  log "built $("$DEST/bin/pulumi" version) in $(( $(date +%s) - START )) s -> $DEST/bin"
fi
write_launcher "$DEST/bin"
if [ "$PRINT_DIR" = 1 ]; then echo "$DEST/bin"; else log "ready: $DEST/bin"; fi
