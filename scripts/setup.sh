#!/usr/bin/env bash
# Install what modelhub's build and tests need on Debian 12, only what is missing.
# Idempotent and quiet when everything is there. Run as root or with sudo available.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(build-essential cmake pkg-config libevent-dev libcurl4-openssl-dev libjansson-dev
          libyaml-dev libcyaml-dev libcmocka-dev curl jq nodejs npm
          clang-format  # tests/e2e/format.sh checks the house format
          chromium)     # the dashboard's browser test (tests/e2e/dashboard.test.mjs)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node and npm may come from elsewhere than Debian's packages: accept them if they run.
if command -v node >/dev/null && command -v npm >/dev/null; then
  filtered=()
  for p in "${missing[@]}"; do [ "$p" = nodejs ] || [ "$p" = npm ] || filtered+=("$p"); done
  missing=("${filtered[@]+"${filtered[@]}"}")
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm packages of the tests (openai, ai, @langchain/openai, ajv, playwright-core), pinned by package-lock.json.
if [ -f package-lock.json ]; then
  if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    echo "setup: npm ci"
    npm ci --no-audit --no-fund --loglevel=error >/dev/null
  fi
fi
