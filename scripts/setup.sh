#!/usr/bin/env bash
# Installs everything pistachio-infra needs on a fresh Debian/Ubuntu machine, then the project's locked
# Python environment in .venv. Safe to run again: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

need_apt=()
command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
command -v ssh >/dev/null 2>&1 || need_apt+=(openssh-client)
command -v rsync >/dev/null 2>&1 || need_apt+=(rsync)
command -v git >/dev/null 2>&1 || need_apt+=(git)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
command -v unshare >/dev/null 2>&1 || need_apt+=(util-linux)
# headless Chromium + its chromedriver: the dashboard tests drive a real browser (tests/dashboard)
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || need_apt+=(chromium)
command -v chromedriver >/dev/null 2>&1 || [ -x /usr/bin/chromedriver ] || need_apt+=(chromium-driver)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "==> installing system packages: ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if ! command -v uv >/dev/null 2>&1; then
  echo "==> installing uv"
  python3 -m pip install --quiet --user uv 2>/dev/null || python3 -m pip install --quiet --break-system-packages --user uv
  export PATH="$HOME/.local/bin:$PATH"
fi

echo "==> syncing the locked Python environment (.venv)"
uv sync --frozen --quiet
