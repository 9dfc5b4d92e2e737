#!/bin/bash
# Scenario (issue 9, item 4): ENRP between rsplib's rspregistrar (R: ASAP
# 3863, ENRP 9901) and `rspxdp registrar` (X: ASAP 3864, ENRP 9902), over
# SCTP. An rsplib echo PE registers at R in pool PoolR, another at X in pool
# PoolX. Then, each phase leaving a file the host asserts on:
#   peering   both registrars see each other (logs, ENRP Presences both ways)
#   cross     PoolR resolves and echoes through X, PoolX through R
#   takeover  R is killed; X takes over R's PE, and PoolR still echoes
#             through X after R's PE would otherwise have been dropped
# Exits 77 (skipped) while this build of rspxdp has no registrar subcommand.
set -u
. /payload/lib.sh

if ! rspxdp registrar --help >/dev/null 2>&1; then
	echo "rspxdp registrar is not in this build: skipped"
	exit 77
fi
A=$VM_ADDR4

# echo_through REGISTRAR_PORT POOL OUTFILE: one rspterminal exchange; true if
# the line came back from a PE.
echo_through() {
	local msg="echo-$2-via-$1-$RANDOM"
	{ echo "$msg"; sleep 4; } | timeout 20 rspterminal -poolhandle="$2" \
		-registrar="$A:$1" -asapannounce=off -loglevel=3 >"$3" 2>&1
	grep -q "> $msg" "$3"
}

# Phases are independent: a failed one is noted and the next still runs, so
# one run shows every disagreement; the scenario fails at the end.
failed=()
phase_fail() {
	echo "PHASE FAIL: $*"
	failed+=("$*")
}

# retry N CMD...: run CMD up to N times, a second apart, until it succeeds.
retry() {
	local n=$1 i
	shift
	for i in $(seq 1 "$n"); do
		"$@" && return 0
		sleep 1
	done
	return 1
}

capture_start lo
start_bg rsplib-registrar rspregistrar -asap="$A:3863" -enrp="$A:9901" -peer="$A:9902" \
	-asapannounce=off -enrpannounce=off -loglevel=3
r_pid=${pids[-1]}
start_bg rspxdp-registrar rspxdp registrar --id 0x58 --transport=sctp \
	--asap="$A:3864" --enrp="$A:9902" --peer="$A:9901"
wait_sctp_listen 3863 || fail "rspregistrar does not listen"
wait_sctp_listen 3864 || fail "rspxdp registrar does not listen"

start_bg pe-at-rsplib rspserver -echo -poolhandle=PoolR -policy=RoundRobin \
	-registrar="$A:3863" -asapannounce=off -loglevel=3
start_bg pe-at-rspxdp rspserver -echo -poolhandle=PoolX -policy=RoundRobin \
	-registrar="$A:3864" -asapannounce=off -loglevel=3

# Phase cross: each pool resolvable at the registrar that is not its home.
cross=ok
retry 5 echo_through 3864 PoolR cross-R-via-rspxdp.txt ||
	{ cross=; phase_fail "PoolR (homed at rsplib) not served through rspxdp"; }
retry 5 echo_through 3863 PoolX cross-X-via-rsplib.txt ||
	{ cross=; phase_fail "PoolX (homed at rspxdp) not served through rsplib"; }
timeout 10 hsdump "$A:9901" >hsdump-rsplib.txt 2>&1
grep -q '"PoolX"' hsdump-rsplib.txt || { cross=; phase_fail "rsplib's handle table lacks PoolX"; }
[ -z "$cross" ] || echo "cross ok" >cross.ok

# Phase takeover: R dies without a word; X must take its PEs over.
kill -KILL "$r_pid"
killed=$(cut -d' ' -f1 /proc/uptime)
echo "rspregistrar killed at uptime $killed"
ok=0
for _ in $(seq 1 60); do
	if grep -q 'takeover complete' rspxdp-registrar.log; then
		ok=1
		break
	fi
	sleep 1
done
grep -i 'takeover' rspxdp-registrar.log
if [ "$ok" = 1 ]; then
	awk -v a="$killed" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN { printf "takeover_seconds=%.1f\n", b - a }' | tee takeover.txt
	# Keep-alives from the new home must keep the PE: still served well after.
	sleep 20
	if retry 3 echo_through 3864 PoolR after-takeover.txt; then
		echo "takeover ok" >takeover.ok
	else
		phase_fail "PoolR not served through rspxdp 20 s after the takeover"
	fi
else
	phase_fail "rspxdp registrar did not take over rspregistrar's PEs within 60 s"
fi

stop_all
capture_stop
[ ${#failed[@]} -eq 0 ] || fail "${failed[*]}"
pass
