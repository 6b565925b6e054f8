#!/usr/bin/env bash
# Builds the web dashboard (dashboard/, Vite) into dashboard/dist/, which smsgate embeds with
# include_str! (src/observe/web.rs). The built files are committed, so building smsgate needs
# no Node.js; run this after changing anything under dashboard/ and commit dashboard/dist/.
# With --check, fails if the committed dist/ differs from a fresh build (scripts/test.sh).
# Usage: scripts/build-dashboard.sh [--check]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
command -v npm >/dev/null 2>&1 || apt_install nodejs npm
[ -d dashboard/node_modules/vite ] || npm ci --prefix dashboard --no-audit --no-fund
npm run --prefix dashboard build --silent
if [ "${1:-}" = "--check" ] && ! git diff --quiet -- dashboard/dist; then
    echo "dashboard/dist is not what dashboard/ builds: run scripts/build-dashboard.sh and commit dashboard/dist" >&2
    git diff --stat -- dashboard/dist >&2
    exit 1
fi
