#!/usr/bin/env bash
# build-image.sh builds (or finds in its cache) the rspxdp test VM: a Debian
# bookworm root filesystem made only from Debian packages, as a raw ext4 image,
# with the kernel and initrd beside it for qemu's direct boot.
#
# The image is cached outside the repository under
#   $RSPXDP_VM_CACHE/<key>/{rootfs.img,vmlinuz,initrd.img,packages,build.log}
# where <key> hashes the package list (the "all" and "vm" lines of
# vm/packages.txt), the mirror list and this script. A run whose key exists
# reuses the image; a changed key builds a new one and removes the old ones.
#
# The image holds no rspxdp code: its init (/sbin/rspxdp-vminit) unpacks the
# payload tar that vm/run.sh attaches as the second virtio disk and executes
# the payload's own init, so test changes never rebuild the image.
#
# Prints the image directory as the last line of stdout. Needs root (mmdebstrap
# in root mode, so mke2fs -d copies real owners), mmdebstrap and e2fsprogs.
#
# Environment:
#   RSPXDP_VM_CACHE   cache root (default /var/cache/rspxdp-vm)
#   RSPXDP_VM_MIRROR  Debian mirror (default http://deb.debian.org/debian)
#   RSPXDP_VM_SECURITY_MIRROR  (default http://deb.debian.org/debian-security)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${RSPXDP_VM_CACHE:-/var/cache/rspxdp-vm}
mirror=${RSPXDP_VM_MIRROR:-http://deb.debian.org/debian}
secmirror=${RSPXDP_VM_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
suite=bookworm

log() { printf 'build-image: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "needs root (mmdebstrap --mode=root; mke2fs -d keeps owners)"
command -v mmdebstrap >/dev/null || die "mmdebstrap not found (apt-get install -y mmdebstrap)"
command -v mke2fs >/dev/null || die "mke2fs not found (apt-get install -y e2fsprogs)"

# The image's packages: every line of packages.txt scoped "all" or "vm".
packages=$(awk '!/^[[:space:]]*(#|$)/ && ($2 == "all" || $2 == "vm") { print $1 }' \
	"$here/packages.txt" | sort -u)
[ -n "$packages" ] || die "no packages in $here/packages.txt"

sources="deb $mirror $suite main
deb $mirror $suite-updates main
deb $secmirror $suite-security main"

key=$( { printf '%s\n' "$packages"; printf '%s\n' "$sources"; cat "${BASH_SOURCE[0]}"; } |
	sha256sum | cut -c1-16)
dir=$cache/$key

if [ -f "$dir/complete" ]; then
	log "cached image $dir"
	echo "$dir"
	exit 0
fi

mkdir -p "$cache"
# One builder at a time per cache; a second caller waits, then finds the image.
exec 9>"$cache/.lock"
flock 9
if [ -f "$dir/complete" ]; then
	log "cached image $dir (built by a concurrent run)"
	echo "$dir"
	exit 0
fi

work=$(mktemp -d "$cache/build.XXXXXX")
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
root=$work/root
mkdir -p "$root" "$work/out"

log "building image $key with: $(echo $packages)"
start=$(date +%s)

# The guest's first process. The initrd has already mounted the root disk and
# moved /dev, /proc, /sys and /run into it. Unpack the payload and hand over;
# if anything fails, say so on the console and power off so the host's qemu
# exits instead of waiting for its timeout.
cat >"$work/vminit" <<'EOF'
#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sysfs /sys
mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
mkdir -p /payload
if tar -x -f /dev/vdb -C /payload && [ -x /payload/init ]; then
	exec /payload/init
fi
echo "rspxdp-vminit: no payload on /dev/vdb" >/dev/console
echo "RSPXDP-VM-EXIT 125" >/dev/console
sync
echo o >/proc/sysrq-trigger
sleep 10
EOF

# Trim what a test guest never reads (docs, man pages, translations) to keep the
# image small; keep copyright files.
mmdebstrap --mode=root --variant=minbase --format=directory \
	--include="$(echo $packages | tr ' ' ',')" \
	--dpkgopt='path-exclude=/usr/share/man/*' \
	--dpkgopt='path-exclude=/usr/share/locale/*' \
	--dpkgopt='path-exclude=/usr/share/info/*' \
	--dpkgopt='path-exclude=/usr/share/doc/*' \
	--dpkgopt='path-include=/usr/share/doc/*/copyright' \
	--customize-hook="install -m 0755 '$work/vminit' \"\$1/sbin/rspxdp-vminit\"" \
	--customize-hook='echo rspxdp-vm >"$1/etc/hostname"' \
	--customize-hook='printf "127.0.0.1 localhost\n10.99.0.1 rspxdp-vm\n::1 localhost\n" >"$1/etc/hosts"' \
	--customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
	--customize-hook="cp \"\$1\"/boot/vmlinuz-* '$work/out/vmlinuz'" \
	--customize-hook="cp \"\$1\"/boot/initrd.img-* '$work/out/initrd.img'" \
	"$suite" "$root" "$sources" >"$work/out/build.log" 2>&1 ||
	{ tail -n 40 "$work/out/build.log" >&2; die "mmdebstrap failed (log above)"; }
debootstrapped=$(date +%s)

[ -s "$work/out/vmlinuz" ] && [ -s "$work/out/initrd.img" ] || die "no kernel or initrd in the root filesystem"
# Fail now, not at boot, if the kernel has no SCTP module.
find "$root/lib/modules" -name 'sctp.ko*' | grep -q . || die "kernel has no sctp module"

# Room for the payload and results written inside the guest (the disk is
# attached with snapshot=on, so the cached image itself is never changed).
used_mb=$(du -sm "$root" | cut -f1)
size_mb=$((used_mb + used_mb / 4 + 512))
mke2fs -q -t ext4 -L rspxdp-vm -d "$root" -F "$work/out/rootfs.img" "${size_mb}M" >&2 ||
	die "mke2fs failed"
end=$(date +%s)

printf '%s\n' "$packages" >"$work/out/packages"
chroot "$root" dpkg-query -W -f '${Package} ${Version}\n' >"$work/out/versions"
cat >"$work/out/info" <<EOF
key=$key
built=$(date -u +%Y-%m-%dT%H:%M:%SZ)
mmdebstrap_seconds=$((debootstrapped - start))
mke2fs_seconds=$((end - debootstrapped))
rootfs_used_mb=$used_mb
image_mb=$size_mb
image_allocated_mb=$(du -sm "$work/out/rootfs.img" | cut -f1)
EOF
touch "$work/out/complete"

rm -rf "$dir"
mv "$work/out" "$dir"
# Older images are dead weight once their key changed.
for old in "$cache"/*/; do
	old=${old%/}
	[ "$old" = "$dir" ] || [ ! -f "$old/complete" ] || { log "removing old image $old"; rm -rf "$old"; }
done
log "built $dir in $((end - start))s (mmdebstrap $((debootstrapped - start))s, mke2fs $((end - debootstrapped))s, rootfs ${used_mb} MB, image ${size_mb} MB)"
echo "$dir"
