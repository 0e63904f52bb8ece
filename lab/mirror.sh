#!/bin/sh
# Print the Debian mirror to use: $DSRPROV_MIRROR if set, otherwise the first
# Debian "main" archive this machine's own apt sources name. The repository
# never names a mirror itself.
set -eu
if [ -n "${DSRPROV_MIRROR:-}" ]; then
  echo "$DSRPROV_MIRROR"
  exit 0
fi
for f in /etc/apt/sources.list.d/*.sources; do
  [ -r "$f" ] || continue
  # deb822: the stanza whose Suites line names plain "bookworm".
  awk '
    /^[[:space:]]*$/ { if (uri != "" && main) { print uri; exit } uri=""; main=0; next }
    /^URIs:/ { uri=$2 }
    /^Suites:/ { for (i=2;i<=NF;i++) if ($i ~ /^(bookworm|stable)$/) main=1 }
    END { if (uri != "" && main) print uri }
  ' "$f" | head -n1
done | head -n1 | grep . && exit 0
if [ -r /etc/apt/sources.list ]; then
  awk '$1=="deb" && ($3=="bookworm" || $3=="stable") { print $2; exit }' /etc/apt/sources.list | grep . && exit 0
fi
echo "no Debian mirror found: set DSRPROV_MIRROR or configure apt" >&2
exit 1
