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
# Parallel (pytest-xdist): the sandbox tests mostly wait on pods, so more workers than cores pays off; every worker
# has its own sandboxes, ports and state dirs (tests/conftest.py) and they share one pod-image cache.
# PISTACHIO_TEST_WORKERS=0 runs serially.
WORKERS="${PISTACHIO_TEST_WORKERS:-4}"
echo "==> pytest ($WORKERS workers)"
set +e
uv run --frozen pytest -q -n "$WORKERS" --dist worksteal "$@"
code=$?
set -e
if [ "$code" -eq 5 ]; then
  # exit 5: pytest collected nothing. Never a pass (CI must not go green on an empty run), and said plainly.
  echo "error: pytest collected no tests (exit 5): check the paths, -k or -m given to scripts/test.sh" >&2
fi
exit "$code"
