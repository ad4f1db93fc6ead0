#!/usr/bin/env bash
# Set up what the apps and their tests need; safe to run again (each step is skipped when already done).
#
#   apps/setup.sh [VENV]          VENV defaults to .venv (relative to the repository root)
#
#  1. Debian's chromium + chromium-driver (headless browser tests), when /usr/bin/chromium is missing:
#     installed with apt-get when running as root, otherwise the command to run is printed.
#  2. apps/browser/node_modules (onnxruntime-web) from the committed package.json + package-lock.json.
#  3. The Python extra `apps` (starlette, uvicorn, selenium) into VENV.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-.venv}"
case "$VENV" in /*) ;; *) VENV="$ROOT/$VENV" ;; esac
start=$SECONDS

say() { printf 'apps/setup: %s\n' "$*"; }

# 1. Chromium + chromedriver
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    say "chromium present ($(/usr/bin/chromium --version 2>/dev/null | head -n1))"
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing chromium chromium-driver with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends chromium chromium-driver
else
    say "chromium is missing; the browser tests will be skipped. Install it with:"
    say "    sudo apt-get update && sudo apt-get install -y chromium chromium-driver"
fi

# 2. onnxruntime-web for apps/browser
BROWSER="$ROOT/apps/browser"
if ! command -v npm >/dev/null; then
    say "npm is missing; install Node.js 18+ to run apps/browser and its tests"
elif [ -f "$BROWSER/node_modules/onnxruntime-web/dist/ort.min.js" ] \
        && [ "$BROWSER/node_modules/.package-lock.json" -nt "$BROWSER/package-lock.json" ]; then
    say "apps/browser/node_modules up to date"
else
    say "installing apps/browser npm packages"
    (cd "$BROWSER" && npm ci --no-audit --no-fund --loglevel=error)
fi

# 3. Python extra `apps`
if [ ! -x "$VENV/bin/python" ]; then
    say "no virtual environment at $VENV; create it first (make setup), then run: apps/setup.sh $VENV"
    exit 1
elif "$VENV/bin/python" -c "import starlette, uvicorn, selenium" 2>/dev/null; then
    say "python extra 'apps' present in $VENV"
else
    say "installing python packages for the apps into $VENV"
    # The extra's own requirements, read from pyproject.toml: the project's install stays as `make setup` made it.
    mapfile -t reqs < <("$VENV/bin/python" -c 'import sys
try:
    import tomllib
except ImportError:  # Python 3.10
    from pip._vendor import tomli as tomllib
with open(sys.argv[1], "rb") as f:
    print("\n".join(tomllib.load(f)["project"]["optional-dependencies"]["apps"]))' "$ROOT/pyproject.toml")
    "$VENV/bin/python" -m pip install -q "${reqs[@]}"
fi

say "done in $((SECONDS - start)) s"
