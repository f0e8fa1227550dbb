#!/usr/bin/env bash
# Headless Chromium for tests/lab/test_report_browser.py (the report page in a real browser).
#
#   eval "$(bash .ci/chromium.sh)"
#
# Installs Debian's chromium and chromium-driver with apt-get when either is missing (as root),
# running `apt-get update` at most once (only when the package lists cannot serve the install).
# It never fails: on any problem it prints why on stderr and
# `export POOLKIT_TEST_CHROMIUM_SKIP=...`, so the test skips with that reason.
# Diagnostics go to stderr; stdout carries only export lines.
set -u

skip() {
    echo "chromium.sh: $1" >&2
    printf 'export POOLKIT_TEST_CHROMIUM_SKIP=%q\n' "$1"
    exit 0
}

have() { command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; }

if ! have; then
    [ "$(id -u)" = 0 ] || skip "chromium/chromedriver are not installed and installing them needs root (uid $(id -u))"
    command -v apt-get >/dev/null 2>&1 || skip "chromium/chromedriver are not installed and apt-get is missing (not Debian?)"
    export DEBIAN_FRONTEND=noninteractive
    apt_install() { apt-get install -y -qq --no-install-recommends chromium chromium-driver >&2; }
    echo "chromium.sh: installing chromium and chromium-driver with apt-get" >&2
    if ! apt_install; then
        apt-get update -qq >&2 || skip "apt-get update failed (no network or no package mirror?)"
        apt_install || skip "apt-get install chromium chromium-driver failed"
    fi
    have || skip "chromium-driver installed but chromium or chromedriver is not on PATH"
fi
echo "chromium.sh: $(chromium --version 2>/dev/null | head -n 1); $(chromedriver --version 2>/dev/null | head -n 1)" >&2
echo "unset POOLKIT_TEST_CHROMIUM_SKIP"
