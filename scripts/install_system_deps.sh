#!/usr/bin/env bash
# System packages geotl's tests use (Debian): QGIS for the real-client check of the GeoJSON,
# PostgreSQL + PostGIS for the local STAC API server of the monitor tests, chromium for the
# headless-browser test of the monitor's report page (driven by Playwright, which uses
# Debian's chromium: Playwright's own browser download is never needed).
# Idempotent: installs only what is missing. Needs root (or sudo).
set -euo pipefail
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
want=(python3-qgis qgis-providers postgresql postgis chromium)
missing=()
for p in "${want[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# PostGIS for the installed server version (the "postgis" package only recommends it, and
# --no-install-recommends skips it): the monitor tests' pgstac needs the extension itself.
pg_major="$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -n1)"
if [ -n "$pg_major" ] && ! dpkg -s "postgresql-${pg_major}-postgis-3" >/dev/null 2>&1; then
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "postgresql-${pg_major}-postgis-3" >/dev/null
fi
