#!/usr/bin/env bash
# Installs what the demo and the tests need on Debian/Ubuntu: OpenLDAP's slapd (the tests
# and the demo start their own instances in temporary directories), the OpenLDAP
# command-line tools, and Prometheus's promtool (the tests check the example alerting rules
# with it; Debian ships it only in the prometheus package) and systemd-analyze (the tests
# verify the example unit with it), and Samba as an Active Directory domain controller (the
# tests provision their own domains in temporary directories; samba-ad-provision holds the
# schema and templates that provisioning reads, samba-dsdb-modules the directory's database
# modules, samba-vfs-modules the ACL module that provisioning sets the sysvol share's ACLs
# with), and GNU time for the benchmark scripts' peak RSS. Does nothing when they are
# already there.
set -euo pipefail
need=()
{ command -v slapd >/dev/null 2>&1 || [ -x /usr/sbin/slapd ]; } || need+=(slapd)
command -v ldapsearch >/dev/null 2>&1 || need+=(ldap-utils)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
{ command -v samba >/dev/null 2>&1 || [ -x /usr/sbin/samba ]; } || need+=(samba)
command -v samba-tool >/dev/null 2>&1 || need+=(samba-common-bin)
[ -d /usr/share/samba/setup ] || need+=(samba-ad-provision)
ls /usr/lib/*/samba/ldb/samba_dsdb.so >/dev/null 2>&1 || need+=(samba-dsdb-modules)
ls /usr/lib/*/samba/vfs/acl_xattr.so >/dev/null 2>&1 || need+=(samba-vfs-modules)
[ -x /usr/bin/time ] || need+=(time) # the benchmark scripts' peak RSS
[ ${#need[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
echo "Installing ${need[*]} ..." >&2
export DEBIAN_FRONTEND=noninteractive
prometheus=false
[[ " ${need[*]} " == *" prometheus "* ]] && prometheus=true
samba=false
[[ " ${need[*]} " == *" samba "* ]] && samba=true
# The prometheus package is wanted for promtool alone, and the samba package for the
# binaries the tests start themselves: keep their services from being started by the
# install (policy-rc.d answers 101, "forbidden", for them and allows everything else).
# A policy-rc.d that is already there is left as it is.
policy=/usr/sbin/policy-rc.d
if { $prometheus || $samba; } && [ ! -e "$policy" ]; then
	printf '%s\n' '#!/bin/sh' '# Written by setup-debian.sh for the length of one install.' \
		'case "${1%.service}" in prometheus | smbd | nmbd | samba | samba-ad-dc | winbind) exit 101 ;; esac' 'exit 0' |
		$sudo tee "$policy" >/dev/null
	$sudo chmod 755 "$policy"
	trap '$sudo rm -f "$policy"' EXIT
fi
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Nor at boot.
services=()
$prometheus && services+=(prometheus)
$samba && services+=(smbd nmbd samba-ad-dc)
for svc in "${services[@]}"; do
	if [ -d /run/systemd/system ]; then
		$sudo systemctl disable --quiet "$svc.service" 2>/dev/null || true
	elif command -v update-rc.d >/dev/null 2>&1; then
		$sudo update-rc.d "$svc" disable >/dev/null 2>&1 || true
	fi
done
