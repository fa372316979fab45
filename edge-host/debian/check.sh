#!/usr/bin/env bash
# Checks a built wattlet-edge package without installing it (`./dev test`, a few seconds):
# its control data and files (dpkg-deb --info/--contents), the unit (systemd-analyze verify and
# its exposure score), the udev rule. Usage: check.sh DEB
set -euo pipefail
deb=$1
fail() { echo "package check: $*" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

info=$(dpkg-deb --info "$deb")
field() { dpkg-deb --field "$deb" "$1"; }
[[ "$(field Package)" == wattlet-edge ]] || fail "Package: $(field Package)"
field Depends | grep -qw systemd || fail "Depends lacks systemd: $(field Depends)"
[[ "$(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles)" == /etc/wattlet/edge.toml ]] ||
    fail "conffiles: $(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles)"
postinst=$(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./postinst)
for needle in 'systemd-sysusers' 'systemd-tmpfiles' 'deb-systemd-helper enable wattlet-edge.service'; do
    grep -qF -- "$needle" <<<"$postinst" || fail "postinst lacks: $needle"
done
# Enabled, not started: it would only refuse the unfilled example configuration.
! grep -q 'deb-systemd-invoke start' <<<"$postinst" || fail "postinst starts the service"
grep -q 'postrm' <<<"$info" || fail "no postrm (the unit's links are not removed on purge)"

# Every file with its mode and owner; nothing else.
expected="-rwxr-xr-x root/root ./usr/bin/wattlet-edge
-rw-r--r-- root/root ./etc/wattlet/edge.toml
-rw-r--r-- root/root ./usr/lib/systemd/system/wattlet-edge.service
-rw-r--r-- root/root ./usr/lib/sysusers.d/wattlet-edge.conf
-rw-r--r-- root/root ./usr/lib/tmpfiles.d/wattlet-edge.conf
-rw-r--r-- root/root ./usr/lib/udev/rules.d/60-wattlet-probe.rules
-rw-r--r-- root/root ./usr/lib/wattlet/components/wattlet_meter_parser.wasm
-rw-r--r-- root/root ./usr/lib/wattlet/components/wattlet_upload.wasm
-rw-r--r-- root/root ./usr/share/doc/wattlet-edge/README.md
-rw-r--r-- root/root ./usr/share/doc/wattlet-edge/copyright"
actual=$(dpkg-deb --contents "$deb" | awk '$1 !~ /^d/ { print $1, $2, $6 }' |
    sed 's#0/0#root/root#' | sort -k3)
[[ "$actual" == "$(sort -k3 <<<"$expected")" ]] ||
    fail "contents differ:"$'\n'"$(diff <(sort -k3 <<<"$expected") <(cat <<<"$actual") || true)"
dpkg-deb --contents "$deb" | awk '$1 ~ /^d/ && $1 != "drwxr-xr-x" { bad = 1; print }
    END { exit bad }' || fail "a directory is not 0755"

dpkg-deb -x "$deb" "$work/root"
file "$work/root/usr/bin/wattlet-edge" | grep -q 'not stripped' && fail "the binary is not stripped"
grep -qx 'u wattlet - "wattlet measurement device" /var/lib/wattlet /usr/sbin/nologin' \
    "$work/root/usr/lib/sysusers.d/wattlet-edge.conf" || fail "sysusers: no system user wattlet"
grep -qx 'd /var/lib/wattlet 0750 wattlet wattlet -' "$work/root/usr/lib/tmpfiles.d/wattlet-edge.conf" ||
    fail "tmpfiles: /var/lib/wattlet is not 0750 wattlet:wattlet"

# The unit: systemd's own verification in the package's root (the host's units beside it, for
# the targets it names), warnings included, and the hardening it must keep.
unit="$work/root/usr/lib/systemd/system/wattlet-edge.service"
cp -an /usr/lib/systemd/system/. "$work/root/usr/lib/systemd/system/"
verify=$(systemd-analyze verify --root="$work/root" wattlet-edge.service 2>&1) ||
    fail "systemd-analyze verify: $verify"
[[ -z "$verify" ]] || fail "systemd-analyze verify warns: $verify"
for line in Type=notify WatchdogSec=5min Restart=on-failure RestartPreventExitStatus=78 \
    User=wattlet StateDirectory=wattlet ProtectSystem=strict ReadWritePaths=/var/lib/wattlet \
    ProtectHome=yes PrivateTmp=yes NoNewPrivileges=yes CapabilityBoundingSet= \
    'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6' SystemCallFilter=@system-service \
    DevicePolicy=closed 'DeviceAllow=char-ttyUSB rw'; do
    grep -qxF -- "$line" "$unit" || fail "the unit lacks $line"
done
! grep -q '^MemoryDenyWriteExecute=yes' "$unit" || fail "MemoryDenyWriteExecute breaks wasmtime"
exposure=$(systemd-analyze security --offline=yes --root="$work/root" wattlet-edge.service |
    sed -n 's/.*Overall exposure level for wattlet-edge.service: \([0-9.]*\).*/\1/p')
awk -v e="$exposure" 'BEGIN { exit !(e != "" && e <= 2.5) }' ||
    fail "systemd-analyze security: exposure ${exposure:-unknown} (at most 2.5)"

# The udev rule: `udevadm verify` (systemd 254 and later); older udevadm has none, so every
# rule line is checked to be a well-formed match on a USB id giving group, mode and link.
rules="$work/root/usr/lib/udev/rules.d/60-wattlet-probe.rules"
if udevadm verify --help >/dev/null 2>&1; then
    udevadm verify --resolve-names=never "$rules" || fail "udevadm verify"
    udev="udevadm verify"
else
    awk '/^#/ || /^$/ { next }
        /^ACTION=="remove", GOTO="wattlet_probe_end"$/ || /^SUBSYSTEM!="tty", GOTO="wattlet_probe_end"$/ ||
        /^LABEL="wattlet_probe_end"$/ { next }
        /^ATTRS\{idVendor\}=="[0-9a-f][0-9a-f][0-9a-f][0-9a-f]", ATTRS\{idProduct\}=="[0-9a-f][0-9a-f][0-9a-f][0-9a-f]", GROUP="wattlet", MODE="0660", SYMLINK\+="wattlet-probe%n"$/ { ids++; next }
        { print "udev rule line " NR ": " $0; bad = 1 }
        END { if (ids < 5) { print "only " ids " probe ids"; bad = 1 }; exit bad }' "$rules" ||
        fail "the udev rule"
    udev="line check (no udevadm verify before systemd 254)"
fi
echo "package check: $(basename "$deb") ok (unit exposure $exposure; udev: $udev)"
