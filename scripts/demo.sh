#!/usr/bin/env bash
# The demo: installs what it needs (scripts/setup.sh), then runs the whole pipeline in the local sandbox, $0.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$HOME/.local/bin:$PATH"
exec uv run --frozen pistachio-infra demo "$@"
