#!/usr/bin/env bash
# Screenshots of the audit report in headless Chromium (Debian: apt-get install chromium),
# for the README: the file list and one file's page. Usage:
#   scripts/screenshot_report.sh AUDIT_OUT [IMG_DIR]     e.g. genvis-demo/audit docs/img
set -euo pipefail
audit=$(realpath "${1:?usage: $0 AUDIT_OUT [IMG_DIR]}")
img=${2:-docs/img}
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$browser" ] || { echo "no Chromium found: apt-get install chromium" >&2; exit 2; }
shoot() {  # URL PNG WIDTH HEIGHT
  "$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$(mktemp -d)" --hide-scrollbars --screenshot="$2" --window-size="$3,$4" "$1" 2>/dev/null
  echo "wrote $2"
}
mkdir -p "$img"
shoot "file://$audit/report.html" "$img/audit-report.png" 1280 900
# the page of the first file whose verdict came from a watermark: the richest evidence table
page=$(grep -l "watermark, record" "$audit"/report/files/*.html | head -1 || true)
page=${page:-$(ls "$audit"/report/files/*.html | head -1)}
shoot "file://$page" "$img/audit-file.png" 1280 900
