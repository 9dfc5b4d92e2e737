# Helpers sourced by the guest's scenario scripts (/payload/lib.sh in the
# guest). Each scenario runs with its own output directory $OUT as working
# directory; everything it leaves there comes back to the host.

pids=()
capture_pid=

# Fast timers for the operation-scope scenarios: rsplib's registrar keeps
# its PEs alive every second (KA); rspxdp's registrar too, with peer
# timers of 1-2 s, over SCTP (XKA).
KA=(-endpointkeepalivetransmissioninterval=1000 -endpointkeepalivetimeoutinterval=1000)
XKA=(--keepalive-interval=1s --keepalive-timeout=1s --heartbeat=1s --max-time-last-heard=2s
	--max-time-no-response=2s --takeover-expiry=2s --transport=sctp)

# start_bg NAME CMD...: run CMD in the background, output in NAME.log.
start_bg() {
	local name=$1
	shift
	echo "+ $*" >"$name.log"
	"$@" >>"$name.log" 2>&1 &
	pids+=($!)
	echo "started $name (pid $!): $*"
}

# stop_all: stop what start_bg started, gently first so PEs deregister.
stop_all() {
	local p
	# With no pids, a bare wait would wait for every child (tcpdump too).
	[ ${#pids[@]} -gt 0 ] || return 0
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
	sleep 1
	for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
	wait "${pids[@]}" 2>/dev/null
	pids=()
}

# capture_start IFACE: tcpdump on IFACE into capture.pcap, returning once it
# listens so that no early packet is lost.
capture_start() {
	tcpdump -i "$1" -U -s 0 -w capture.pcap 'sctp or tcp port 3863 or udp port 3863 or udp port 9901' \
		>tcpdump.log 2>&1 &
	capture_pid=$!
	local i
	for i in $(seq 1 50); do
		grep -q 'listening on' tcpdump.log && return 0
		sleep 0.1
	done
	echo "tcpdump did not start:"
	cat tcpdump.log
	return 1
}

# capture_stop: let tcpdump write out what it has and stop it.
capture_stop() {
	[ -n "$capture_pid" ] || return 0
	sleep 0.5
	kill -INT "$capture_pid" 2>/dev/null
	wait "$capture_pid" 2>/dev/null
	capture_pid=
	cat tcpdump.log
}

# wait_sctp_listen PORT: wait up to 10 s for an SCTP listener on PORT.
wait_sctp_listen() {
	local i
	for i in $(seq 1 100); do
		ss -Hln --sctp 2>/dev/null | grep -q ":$1\b" && return 0
		sleep 0.1
	done
	ss -aln --sctp
	return 1
}

fail() {
	echo "SCENARIO FAIL: $*"
	for f in *.log; do
		echo "--- $f"
		tail -n 30 "$f"
	done
	stop_all
	capture_stop
	exit 1
}

pass() {
	echo "SCENARIO PASS"
	exit 0
}

# echo_through REGISTRAR_ADDR POOL OUTFILE: one rspterminal exchange through
# the registrar at REGISTRAR_ADDR; true if the line came back from a PE.
echo_through() {
	local msg="echo-$2-via-${1##*:}-$RANDOM"
	{ echo "$msg"; sleep 4; } | timeout 20 rspterminal -poolhandle="$2" \
		-registrar="$1" -asapannounce=off -loglevel=3 >"$3" 2>&1
	grep -q "> $msg" "$3"
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

# Phases of a scenario are independent: a failed one is noted and the next
# still runs, so one run shows every disagreement; finish fails at the end.
failed=()
phase_fail() {
	echo "PHASE FAIL: $*"
	failed+=("$*")
}

finish() {
	stop_all
	capture_stop
	[ ${#failed[@]} -eq 0 ] || fail "${failed[*]}"
	pass
}

# resolve_json REGISTRAR_ADDR POOL OUTFILE: `rspxdp pu resolve --json` of POOL
# through the registrar at REGISTRAR_ADDR over SCTP; true if it names a PE.
resolve_json() {
	timeout 5 rspxdp pu --pool "$2" --registrar "$1" --transport sctp resolve --json >"$3" 2>>json-stderr.txt &&
		grep -q '"id"' "$3"
}

# checksums_of FILE: the per-owner checksum block of `rspxdp status --json`
# (encoding/json sorts map keys, so equal handlespaces print equal blocks).
checksums_of() {
	sed -n '/"checksums"/,/}/p' "$1"
}

# same_checksums ENRP_ADDR_A ENRP_ADDR_B: both registrars' handlespaces, read
# with `rspxdp status` over ENRP/SCTP into status-<port>.json, have equal
# per-owner checksums (and at least one owner).
same_checksums() {
	local a=status-${1##*:}.json b=status-${2##*:}.json
	timeout 10 rspxdp status --registrar "$1" --transport sctp --json >"$a" 2>>json-stderr.txt || return 1
	timeout 10 rspxdp status --registrar "$2" --transport sctp --json >"$b" 2>>json-stderr.txt || return 1
	grep -q '"0x' <(checksums_of "$a") || return 1
	[ "$(checksums_of "$a")" = "$(checksums_of "$b")" ]
}

# enrp_pair_start: rsplib's rspregistrar R (ASAP 3863, ENRP 9901) and `rspxdp
# registrar` X (id 0x58, ASAP 3864, ENRP 9902) over SCTP, with an rsplib echo
# PE registered at each: pool PoolR homed at R, PoolX at X. Only X names its
# peer (--peer): R learns X from X's association, which leaves from X's ENRP
# port as rsplib requires. Starts the capture first. Sets r_pid and x_pid.
enrp_pair_start() {
	capture_start lo || fail "no capture"
	start_bg rsplib-registrar rspregistrar -asap="$VM_ADDR4:3863" -enrp="$VM_ADDR4:9901" \
		-asapannounce=off -enrpannounce=off -loglevel=3 \
		-endpointkeepalivetransmissioninterval=1000 -endpointkeepalivetimeoutinterval=1000
	r_pid=${pids[-1]}
	wait_sctp_listen 9901 || fail "rspregistrar does not listen"
	start_bg rspxdp-registrar rspxdp registrar --id 0x58 --transport=sctp \
		--keepalive-interval=1s --keepalive-timeout=1s \
		--asap="$VM_ADDR4:3864" --enrp="$VM_ADDR4:9902" --peer="$VM_ADDR4:9901"
	x_pid=${pids[-1]}
	wait_sctp_listen 3863 || fail "rspregistrar does not listen"
	wait_sctp_listen 3864 || fail "rspxdp registrar does not listen"
	start_bg pe-at-rsplib rspserver -echo -poolhandle=PoolR -policy=RoundRobin \
		-registrar="$VM_ADDR4:3863" -asapannounce=off -loglevel=3
	start_bg pe-at-rspxdp rspserver -echo -poolhandle=PoolX -policy=RoundRobin \
		-registrar="$VM_ADDR4:3864" -asapannounce=off -loglevel=3
}

# enrp_pair_agree: the phase both ENRP scenarios start with. Each pool is
# resolvable through both registrars (rspxdp pu, both PEs at each), each PE
# echoes through the registrar that is not its home (rspterminal), rsplib's
# own handle table (hsdump) holds both pools, and both handlespaces have the
# same per-owner checksums (rspxdp status over ENRP). Leaves agree.ok when
# all of that held.
enrp_pair_agree() {
	local ok=1 reg pool
	for reg in 3863 3864; do
		for pool in PoolR PoolX; do
			retry 10 resolve_json "$VM_ADDR4:$reg" "$pool" "resolve-$pool-via-$reg.json" ||
				{ ok=; phase_fail "$pool not resolvable through registrar port $reg"; }
		done
	done
	retry 5 echo_through "$VM_ADDR4:3864" PoolR cross-R-via-rspxdp.txt ||
		{ ok=; phase_fail "PoolR (homed at rsplib) not served through rspxdp"; }
	retry 5 echo_through "$VM_ADDR4:3863" PoolX cross-X-via-rsplib.txt ||
		{ ok=; phase_fail "PoolX (homed at rspxdp) not served through rsplib"; }
	timeout 10 hsdump "$VM_ADDR4:9901" >hsdump-rsplib.txt 2>&1
	grep -q '"PoolX"' hsdump-rsplib.txt || { ok=; phase_fail "rsplib's handle table lacks PoolX"; }
	grep -q '"PoolR"' hsdump-rsplib.txt || { ok=; phase_fail "rsplib's handle table lacks PoolR"; }
	retry 10 same_checksums "$VM_ADDR4:9901" "$VM_ADDR4:9902" ||
		{ ok=; phase_fail "the registrars' handlespace checksums differ"; }
	echo "rsplib:"; checksums_of status-9901.json
	echo "rspxdp:"; checksums_of status-9902.json
	[ -z "$ok" ] || echo "agree" >agree.ok
}

# uptime_since T: seconds since uptime T, one decimal.
uptime_since() {
	awk -v a="$1" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN { printf "%.1f", b - a }'
}

# kill_now WHAT PID: SIGKILL (no goodbye to anyone), noting the uptime in
# $killed for uptime_since.
kill_now() {
	kill -KILL "$2"
	killed=$(cut -d' ' -f1 /proc/uptime)
	echo "$1 killed at uptime $killed"
}
