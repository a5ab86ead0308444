#!/usr/bin/env bash
# Sets up everything the project needs on a fresh machine, idempotently:
#   .venv/          Python virtual environment with the project (editable) and its tools
#   .tools/anvil    the anvil devnet binary, from the npm package @foundry-rs/anvil-linux-amd64
# Needs: python3 (3.11+), npm. Re-running is cheap: each step is skipped when its inputs are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
ANVIL_PKG="@foundry-rs/anvil-linux-amd64@1.7.1"
mkdir -p .stamps

stamp_ok() { [ -f ".stamps/$1" ] && [ "$(cat ".stamps/$1")" = "$2" ]; }

# 1. Python environment ---------------------------------------------------------------
py_key=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || ! stamp_ok venv "$py_key"; then
    echo "setup: creating the Python environment in .venv"
    [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check --upgrade pip wheel setuptools
    # Brownie's prebuilt wheel is compiled with mypyc and breaks at run time on Vyper 0.4 source
    # maps; its pure-Python build works.
    BROWNIE_NOCOMPILE=1 .venv/bin/pip install --quiet --disable-pip-version-check \
        --no-binary eth-brownie eth-brownie==1.22.2
    .venv/bin/pip install --quiet --disable-pip-version-check -e ".[dev]"
    echo "$py_key" > .stamps/venv
fi

# 2. anvil ----------------------------------------------------------------------------
if [ ! -x .tools/anvil ] || ! stamp_ok anvil "$ANVIL_PKG"; then
    echo "setup: installing anvil from npm ($ANVIL_PKG)"
    mkdir -p .tools/npm
    npm install --silent --no-save --no-audit --no-fund --prefix .tools/npm "$ANVIL_PKG" >/dev/null
    ln -sf "$PWD/.tools/npm/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil" .tools/anvil
    echo "$ANVIL_PKG" > .stamps/anvil
fi
.tools/anvil --version | head -1
