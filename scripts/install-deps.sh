#!/usr/bin/env bash
# Installs what clerk needs on a Debian machine that has the Rust toolchain: Chromium (from
# Debian's `chromium` package; clerk never downloads a browser build), a font set for
# readable screenshots, PostgreSQL's server binaries (for the cluster tests), python3 and
# openssl (the
# auditors' stdlib checkers of journals and proofs, run by the tests), and the `wacz` and
# `warcio` web-archive checkers in `.audit-venv/`. Idempotent.
set -euo pipefail

need=()
if ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/lib/chromium/chromium ]; then
  need+=(chromium)
fi
if [ ! -d /usr/share/fonts/truetype/dejavu ]; then
  need+=(fonts-dejavu-core)
fi
if ! command -v python3 >/dev/null 2>&1; then
  need+=(python3)
fi
# openssl 3 checks the Ed25519 signatures of tlog proofs in verify_proof.py.
if ! command -v openssl >/dev/null 2>&1; then
  need+=(openssl)
fi

# PostgreSQL server binaries (initdb, pg_ctl, postgres): the tests of the cluster mode start
# throwaway servers of their own; clerk itself needs none unless [cluster] is configured.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  need+=(postgresql)
fi

if [ "${#need[@]}" -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "installing: ${need[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# The web-archive tools auditors use on the WARC and WACZ files clerk writes (PyPI's `wacz`
# and `warcio`), in a virtualenv of the repo (`.audit-venv/`), which the tests run.
venv="$(cd "$(dirname "$0")/.." && pwd)/.audit-venv"
if [ ! -x "$venv/bin/wacz" ] || [ ! -x "$venv/bin/warcio" ]; then
  if ! python3 -m venv "$venv" >/dev/null 2>&1; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install -q --disable-pip-version-check 'wacz==0.6.0' 'warcio>=1.7,<2' >&2
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: clerk needs the Rust toolchain (https://rustup.rs)" >&2
  exit 1
fi
echo "dependencies ok: $(/usr/lib/chromium/chromium --version 2>/dev/null || chromium --version)" >&2
