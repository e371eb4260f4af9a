#!/usr/bin/env bash
# Installs what the demo and the tests need on Debian/Ubuntu: OpenLDAP's slapd (the tests
# and the demo start their own instances in temporary directories) and the OpenLDAP
# command-line tools. Does nothing when they are already there.
set -euo pipefail
need=()
{ command -v slapd >/dev/null 2>&1 || [ -x /usr/sbin/slapd ]; } || need+=(slapd)
command -v ldapsearch >/dev/null 2>&1 || need+=(ldap-utils)
[ ${#need[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
echo "Installing ${need[*]} ..." >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
