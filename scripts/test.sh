#!/usr/bin/env bash
# The whole test suite: installs what it needs first (scripts/setup.sh), then runs ruff and pytest.
# Extra arguments go to pytest, e.g. `scripts/test.sh -k sandbox -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$HOME/.local/bin:$PATH"
if [ -x scripts/build_pulumi.sh ]; then
  # The real Pulumi engine for the env tests (built once from its Go module, then cached).
  echo "==> Pulumi CLI for the env tests (built from its Go module the first time: ~15 min on 2 cores; then cached)"
  PULUMI_BIN_DIR="$(scripts/build_pulumi.sh --print-dir 2>/dev/null || true)"
  [ -n "$PULUMI_BIN_DIR" ] && export PATH="$PULUMI_BIN_DIR:$PATH"
fi
echo "==> ruff"
uv run --frozen ruff check .
echo "==> pytest"
uv run --frozen pytest -q "$@"
