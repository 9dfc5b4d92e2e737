#!/usr/bin/env bash
# run.sh boots the rspxdp test VM once: it builds (or reuses) the Debian image
# with vm/build-image.sh, builds the rspxdp binary and the test binaries of the
# given packages, boots the image under qemu with them attached as a payload
# disk, shows the guest's console as it runs, and unpacks what the guest wrote
# to its results disk into OUTDIR. Exits with the guest's status (0 when every
# test binary and scenario passed), 124 when the time bound was hit.
#
# Usage: vm/run.sh [-o OUTDIR] [-t SECONDS] [PACKAGE...]
#   PACKAGE   Go packages whose tests run in the guest (default ./transport);
#             packages without test files are left out.
#   -o        where the guest's results go (default bin/vm-results); holds
#             status, console.log, tests/<pkg>.log, scenarios/<name>/...
#   -t        bound on the guest's whole run (default 900)
#
# Environment: RSPXDP_VM_ACCEL=auto|kvm|tcg (auto: KVM only if a guest really
# boots under it), RSPXDP_VM_MEM (MB, default 2048), RSPXDP_VM_CPUS (default
# 2), RSPXDP_VM_KEEP=1 keeps the work directory, RSPXDP_VM_TIME_SCALE (the
# guest's RSPXDP_TIME_SCALE), RSPXDP_VM_SCENARIOS (globs of scenario names, space-separated,
# default all) and RSPXDP_VM_TEST_RUN (-test.run for the test binaries) to
# narrow a run, RSPXDP_VM_TEST_COUNT (-test.count, default 1: repeat a
# test to chase a rare failure), ENRP_TEST_LOG=1 (enrp tests log), RSPXDP_VM_PROFILE=1
# (scenarios that support it leave Go CPU profiles of rspxdp), and
# build-image.sh's own.
#
# The guest's layout (see vm/guest/init): /payload/bin/rspxdp,
# /payload/tests/<name>.test run in /payload/src/<package dir>, with go.mod at
# /payload/src and the team's fixtures at /payload/shared/fixtures, so tests
# find them the way they do in a checkout.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
out=$repo/bin/vm-results
timeout_s=900
while getopts o:t:h opt; do
	case $opt in
	o) out=$OPTARG ;;
	t) timeout_s=$OPTARG ;;
	*) sed -n '2,/^set -euo/p' "$0" | sed 's/^# \{0,1\}//;$d'; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[ $# -gt 0 ] || set -- ./transport

log() { printf 'vm: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
secs() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

for c in qemu-system-x86_64:qemu-system-x86 mmdebstrap:mmdebstrap mke2fs:e2fsprogs setpriv:util-linux go:golang; do
	command -v "${c%%:*}" >/dev/null || die "${c%%:*} not found (apt-get install -y ${c##*:})"
done

t0=$(date +%s.%N)
img=$("$here/build-image.sh" | tail -n 1)
[ -f "$img/complete" ] || die "no image"
log "image $img ready in $(secs "$t0")s"

work=$(mktemp -d "${TMPDIR:-/tmp}/rspxdp-vm.XXXXXX")
qemu_pid=
tail_pid=
cleanup() {
	local rc=$?
	# Never leave a qemu behind, whatever ended this script.
	if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
		kill -TERM "$qemu_pid" 2>/dev/null
		sleep 1
		kill -KILL "$qemu_pid" 2>/dev/null || true
		wait "$qemu_pid" 2>/dev/null || true
	fi
	[ -z "$tail_pid" ] || kill "$tail_pid" 2>/dev/null || true
	if [ "${RSPXDP_VM_KEEP:-0}" = 1 ]; then log "kept $work"; else rm -rf "$work"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The payload: binaries built for the guest (static, no cgo: the guest's libc
# need not match), the guest's init and scenarios, and what tests read.
t1=$(date +%s.%N)
p=$work/payload
mkdir -p "$p/bin" "$p/tests" "$p/src" "$p/shared"
cd "$repo"
export CGO_ENABLED=0
go build -o "$p/bin/rspxdp" ./cmd/rspxdp
cp go.mod "$p/src/"
for pkg in "$@"; do
	read -r dir ntest nxtest < <(go list -e -f '{{.Dir}} {{len .TestGoFiles}} {{len .XTestGoFiles}}' "$pkg")
	rel=${dir#"$repo"/}
	[ -n "$dir" ] && [ "$rel" != "$dir" ] || die "$pkg is not a package of $repo"
	if [ "$ntest" = 0 ] && [ "$nxtest" = 0 ]; then
		log "$pkg has no tests; not run in the guest"
		continue
	fi
	name=$(echo "$rel" | tr / _)
	go test -c -o "$p/tests/$name.test" "$pkg"
	echo "$rel" >"$p/tests/$name.dir"
	mkdir -p "$p/src/$rel"
	[ ! -d "$dir/testdata" ] || cp -r "$dir/testdata" "$p/src/$rel/"
done
[ ! -d "$repo/../shared/fixtures" ] || cp -r "$repo/../shared/fixtures" "$p/shared/"
cp "$here/guest/init" "$here/guest/lib.sh" "$p/"
cp -r "$here/guest/scenarios" "$p/"
# KVM only when a guest really runs under it: here /dev/kvm can exist while a
# guest hangs before its first console line. The probe boots the kernel with
# no root disk and panic=-1; a working KVM gets to the panic and exits in well
# under a second, TCG takes about 2.5 s, a broken KVM prints nothing.
accel=${RSPXDP_VM_ACCEL:-auto}
if [ "$accel" = auto ]; then
	accel=tcg
	if [ -w /dev/kvm ]; then
		timeout -k 1 5 qemu-system-x86_64 -accel kvm -cpu host -m 256 -nodefaults \
			-display none -no-reboot -serial "file:$work/kvm-probe.log" \
			-kernel "$img/vmlinuz" -append 'console=ttyS0 panic=-1' >/dev/null 2>&1 || true
		if grep -q 'Kernel panic' "$work/kvm-probe.log" 2>/dev/null; then
			accel=kvm
		fi
	fi
	log "accelerator: $accel (probed in $(secs "$t1")s since payload start)"
fi
case $accel in
kvm) accel_args=(-accel kvm -cpu host) ;;
tcg) accel_args=(-accel tcg,thread=multi -cpu max) ;;
*) die "RSPXDP_VM_ACCEL=$accel: want auto, kvm or tcg" ;;
esac

# Under TCG the guest runs several times slower than the host the tests'
# timings were chosen on: the integration tests stretch their timers and
# deadlines by RSPXDP_TIME_SCALE.
case $accel in
kvm) scale=${RSPXDP_VM_TIME_SCALE:-1} ;;
*) scale=${RSPXDP_VM_TIME_SCALE:-5} ;;
esac
cat >"$p/env" <<EOF
TEST_TIMEOUT=${RSPXDP_VM_TEST_TIMEOUT:-300}
SCENARIO_TIMEOUT=${RSPXDP_VM_SCENARIO_TIMEOUT:-240}
VM_ADDR4=10.99.0.1
VM_ADDR6=fd00:99::1
RSPXDP_TEST_TRANSPORT=sctp
RSPXDP_TIME_SCALE=$scale
SCENARIOS='${RSPXDP_VM_SCENARIOS:-}'
TEST_RUN='${RSPXDP_VM_TEST_RUN:-}'
TEST_COUNT='${RSPXDP_VM_TEST_COUNT:-1}'
ENRP_TEST_LOG=${ENRP_TEST_LOG:-}
PROFILE=${RSPXDP_VM_PROFILE:-}
PATH=/payload/bin:\$PATH
EOF
tar -c -f "$work/payload.tar" -C "$p" .
# The results disk: the guest writes one tar to it, raw; unwritten space stays
# sparse and reads as zeros, which tar takes as the end of the archive.
truncate -s 1G "$work/results.img"
log "payload $(du -sm "$work/payload.tar" | cut -f1) MB built in $(secs "$t1")s (time scale $scale): $(ls "$p/tests" | grep '\.test$' | tr '\n' ' ')"

: >"$work/console.log"
tail -n +1 -F "$work/console.log" 2>/dev/null &
tail_pid=$!
t2=$(date +%s.%N)
# The host's load when the guest starts and ends: other work on the host
# slows a TCG guest, so timing figures are read next to it.
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
# setpriv --pdeathsig: qemu dies with this script even when the script is
# killed outright (SIGKILL runs no trap).
setpriv --pdeathsig KILL -- qemu-system-x86_64 "${accel_args[@]}" \
	-m "${RSPXDP_VM_MEM:-2048}" -smp "${RSPXDP_VM_CPUS:-2}" \
	-nodefaults -display none -no-reboot -nic none \
	-serial "file:$work/console.log" \
	-kernel "$img/vmlinuz" -initrd "$img/initrd.img" \
	-append "console=ttyS0 root=/dev/vda rw init=/sbin/rspxdp-vminit panic=-1 quiet loglevel=4" \
	-drive "file=$img/rootfs.img,format=raw,if=virtio,snapshot=on" \
	-drive "file=$work/payload.tar,format=raw,if=virtio,readonly=on" \
	-drive "file=$work/results.img,format=raw,if=virtio" \
	>"$work/qemu.log" 2>&1 &
qemu_pid=$!
# The time bound: qemu is killed when it is reached.
deadline=$(($(date +%s) + timeout_s))
while kill -0 "$qemu_pid" 2>/dev/null; do
	if [ "$(date +%s)" -ge "$deadline" ]; then
		log "guest still running after ${timeout_s}s: killing qemu"
		kill -KILL "$qemu_pid" 2>/dev/null || true
		break
	fi
	sleep 0.5
done
wait "$qemu_pid" 2>/dev/null && qrc=0 || qrc=$?
qemu_pid=
sleep 0.3
kill "$tail_pid" 2>/dev/null || true
tail_pid=
run_s=$(secs "$t2")
[ ! -s "$work/qemu.log" ] || { log "qemu said:"; cat "$work/qemu.log" >&2; }

rm -rf "$out"
mkdir -p "$out"
cp "$work/console.log" "$out/serial.log"
tar -x -f "$work/results.img" -C "$out" 2>/dev/null || log "results disk holds no tar"
exit_line=$(grep -a -o 'RSPXDP-VM-EXIT [0-9]*' "$work/console.log" | tail -n 1 || true)
cat >"$out/host-timing" <<EOF
accel=$accel
image_seconds=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
payload_seconds=$(awk -v a="$t1" -v b="$t2" 'BEGIN { printf "%.1f", b - a }')
qemu_seconds=$run_s
total_seconds=$(secs "$t0")
qemu_exit=$qrc
host_load_start=$load_start
host_load_end=$(cut -d' ' -f1-3 /proc/loadavg)
EOF
log "qemu ($accel) ran ${run_s}s, exit $qrc; results in $out"
if [ -f "$out/status" ]; then
	log "guest status:"
	sed 's/^/vm:   /' "$out/status" >&2
fi
if [ -z "$exit_line" ]; then
	[ "$(date +%s)" -lt "$deadline" ] || exit 124
	die "the guest ended without reporting a status (see $out/serial.log)"
fi
exit "${exit_line##* }"
