#!/usr/bin/env bash
# Installs the arm64 package into a Debian bookworm arm64 root under qemu-user (binfmt_misc,
# qemu-user-static) and checks what a Pi would have: the system user, the files and their
# owners and modes, the unit enabled, the daemon running. Usage: package-check.sh DEB WORKDIR
# (`./dev package-check`). The bootstrapped root is kept in WORKDIR/pristine and copied for each
# run, so only the first run downloads.
set -euo pipefail
deb=$(realpath "$1")
work=$2
mirror=${DEBIAN_MIRROR:-$(sed -n 's/^URIs: *\(http[^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)}
mirror=${mirror:-http://deb.debian.org/debian}
pristine="$work/pristine"
root="$work/root"
fail() { echo "package-check: $*" >&2; exit 1; }
step() { printf '\n==> %s\n' "$*" >&2; }

if [[ ! -x "$pristine/usr/bin/systemctl" ]]; then
    step "debootstrap bookworm arm64 from $mirror (first stage, then the second under qemu)"
    rm -rf "$pristine"
    mkdir -p "$pristine"
    debootstrap --arch arm64 --foreign --variant=minbase --include=systemd,udev \
        bookworm "$pristine" "$mirror"
    chroot "$pristine" /debootstrap/debootstrap --second-stage
fi
step "a fresh copy of the root"
rm -rf "$root"
cp -a "$pristine" "$root"
mount -t proc proc "$root/proc"
trap 'umount "$root/proc" 2>/dev/null || true' EXIT
in_root() { chroot "$root" "$@"; }

step "dpkg -i $(basename "$deb")"
cp "$deb" "$root/tmp/"
in_root dpkg -i "/tmp/$(basename "$deb")"

step "checks"
in_root getent passwd wattlet | grep -q ':/var/lib/wattlet:/usr/sbin/nologin$' ||
    fail "no system user wattlet with home /var/lib/wattlet: $(in_root getent passwd wattlet)"
in_root getent group wattlet >/dev/null || fail "no group wattlet"
uid=$(in_root id -u wattlet)
((uid < 1000)) || fail "wattlet is not a system user (uid $uid)"
[[ "$(in_root stat -c '%a %U:%G' /var/lib/wattlet)" == "750 wattlet:wattlet" ]] ||
    fail "/var/lib/wattlet: $(in_root stat -c '%a %U:%G' /var/lib/wattlet)"
[[ "$(in_root stat -c '%a %U:%G' /etc/wattlet)" == "750 root:wattlet" ]] ||
    fail "/etc/wattlet: $(in_root stat -c '%a %U:%G' /etc/wattlet)"
for file in /usr/bin/wattlet-edge /usr/lib/wattlet/components/wattlet_meter_parser.wasm \
    /usr/lib/wattlet/components/wattlet_upload.wasm /etc/wattlet/edge.toml \
    /usr/lib/udev/rules.d/60-wattlet-probe.rules /usr/lib/systemd/system/wattlet-edge.service; do
    [[ -f "$root$file" ]] || fail "$file missing"
done
in_root dpkg-query -W -f='${Conffiles}\n' wattlet-edge | grep -q /etc/wattlet/edge.toml ||
    fail "edge.toml is not a conffile"
link=/etc/systemd/system/multi-user.target.wants/wattlet-edge.service
[[ -L "$root$link" ]] || fail "$link missing: the unit is not enabled"
[[ "$(systemctl --root="$root" is-enabled wattlet-edge.service)" == enabled ]] ||
    fail "systemctl --root: not enabled"
file "$root/usr/bin/wattlet-edge" | grep -q 'ARM aarch64' || fail "not an arm64 binary"
in_root wattlet-edge --version | grep -q '^wattlet-edge ' || fail "wattlet-edge --version"
in_root wattlet-edge --help | grep -q enrol || fail "wattlet-edge --help"
# The packaged example is refused with what to do, and not restarted (exit 78).
status=0
in_root runuser -u wattlet -- wattlet-edge run --config /etc/wattlet/edge.toml 2>"$work/run.err" ||
    status=$?
((status == 78)) || fail "run with the example config: exit $status, $(cat "$work/run.err")"
grep -q 'Installing on a Raspberry Pi' "$work/run.err" || fail "$(cat "$work/run.err")"
# Enrolment as root, the key for the daemon's group only.
in_root wattlet-edge enrol request >/dev/null
[[ "$(in_root stat -c '%a %U:%G' /etc/wattlet/device.key)" == "640 root:wattlet" ]] ||
    fail "device.key: $(in_root stat -c '%a %U:%G' /etc/wattlet/device.key)"
in_root runuser -u wattlet -- cat /etc/wattlet/device.key >/dev/null ||
    fail "the daemon's user cannot read the key"

step "dpkg --purge"
in_root dpkg --purge wattlet-edge
[[ ! -e "$root$link" ]] || fail "$link left after purge"
echo "package-check: the arm64 package installs, enables its unit and runs under qemu" >&2
