#!/usr/bin/env bash
# provision.sh prepares a Debian bookworm machine (the Vagrant box; any
# bookworm host) to build and test rspxdp, SCTP included: the "all" and "dev"
# packages of vm/packages.txt (the list the test VM image is built from),
# Go, the sctp module, bpffs. Run as root: vm/provision.sh [REPO_DIR].
#
# Go: bookworm's own golang is 1.19; bookworm-backports has golang-1.23, which
# honours GOTOOLCHAIN and fetches the go.mod's toolchain (go 1.26) from the Go
# module proxy, checksum-verified against sum.golang.org.
set -euo pipefail
repo=${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
export DEBIAN_FRONTEND=noninteractive

. /etc/os-release
[ "${VERSION_CODENAME:-}" = bookworm ] || echo "provision: written for bookworm, this is ${VERSION_CODENAME:-unknown}" >&2

echo "deb http://deb.debian.org/debian bookworm-backports main" >/etc/apt/sources.list.d/bookworm-backports.list
apt-get update -q
packages=$(awk '!/^[[:space:]]*(#|$)/ && ($2 == "all" || $2 == "dev") { print $1 }' "$repo/vm/packages.txt")
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $packages
apt-get install -y -q --no-install-recommends -t bookworm-backports golang-1.23-go
ln -sf /usr/lib/go-1.23/bin/go /usr/local/bin/go
ln -sf /usr/lib/go-1.23/bin/gofmt /usr/local/bin/gofmt
# Debian's Go defaults to GOTOOLCHAIN=local; let it switch to go.mod's version.
cat >/etc/profile.d/rspxdp-go.sh <<'EOT'
export GOTOOLCHAIN=auto
EOT
export GOTOOLCHAIN=auto
(cd "$repo" && go version)

# SCTP now and at every boot; bpffs for the pinned XDP maps.
modprobe sctp
echo sctp >/etc/modules-load.d/rspxdp-sctp.conf
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
grep -q ' /sys/fs/bpf ' /etc/fstab || echo 'bpf /sys/fs/bpf bpf defaults 0 0' >>/etc/fstab
echo "provision: done; run: cd $repo && sudo make test"
