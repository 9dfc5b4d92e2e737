#!/bin/bash
# Scenario (issue 15, registrar throughput over SCTP): rsplib's rspregistrar
# and `rspxdp registrar` answer Handle Resolutions side by side, one after
# the other, under the same load: the same pool (three rspserver echo PEs,
# RoundRobin), the same client (`rspxdp pu bench` over ASAP/SCTP, which
# speaks plain RFC 5352), the same flags and the same duration. Each
# registrar's CPU time (utime+stime from /proc/PID/stat) is read just before
# and just after the run. The registrar runs pinned to vCPU 0 and everything
# else (client, PEs) to vCPU 1 (taskset), so each registrar has one CPU to
# itself and the client's own CPU use (the Go runtime spins while it waits)
# does not take from it; rsplib's registrar is single-threaded, and rspxdp's
# Go runtime sizes GOMAXPROCS from the affinity mask, so both get one CPU.
# No capture: tcpdump would cost more CPU than the registrars and distort
# the figure.
#
# Leaves for the host, per registrar NAME (rsplib, rspxdp): bench-NAME.json
# (the client's figures), cpu-NAME.txt (cpu_ticks, clk_tck, pid, the SCTP
# packets and DATA chunks sent in the guest over the run, both directions,
# the guest's load average before and after), and the logs. The host test prints the
# rates, CPU per resolution and the ratios; it asserts only that both runs
# were answered without error.
set -u
. /payload/lib.sh

if ! rspxdp pu --help 2>&1 | grep -q -- '-outstanding'; then
	echo "rspxdp pu has no bench in this build: skipped"
	exit 77
fi
A=$VM_ADDR4
SECONDS_PER_RUN=${BENCH_SECONDS:-12}
CONNS=${BENCH_CONNECTIONS:-4}
OUTSTANDING=${BENCH_OUTSTANDING:-16}
PES=3
TCK=$(getconf CLK_TCK)
# Time is read often on both paths; under TCG the clock source decides
# whether that is a vDSO read or a system call.
echo "clocksource: $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"

# cpu_ticks PID: utime+stime of PID in clock ticks (fields 14 and 15 of
# /proc/PID/stat; the fields are counted after the command name, which
# may hold spaces).
cpu_ticks() {
	local f
	read -r -a f < <(sed 's/^.*) //' "/proc/$1/stat")
	echo $((f[11] + f[12]))
}

# sctp_mib NAME: a counter of /proc/net/sctp/snmp (the whole guest's SCTP:
# client and registrar together).
sctp_mib() {
	awk -v k="$1" '$1 == k { print $2 }' /proc/net/sctp/snmp
}

# pes_up: the pool resolves to all PEs through the registrar.
pes_up() {
	resolve_json "$A:3863" TputPool resolve-$name.json &&
		[ "$(grep -c '"id"' resolve-$name.json)" = "$PES" ]
}

# measure NAME PID: the bench against the registrar PID, with its CPU time.
measure() {
	local name=$1 pid=$2 t0 t1
	for i in $(seq 1 "$PES"); do
		start_bg pe-$name-$i taskset -c 1 rspserver -echo -poolhandle=TputPool -policy=RoundRobin \
			-registrar="$A:3863" -asapannounce=off -loglevel=1
	done
	retry 20 pes_up || { phase_fail "$name: TputPool does not resolve to $PES PEs"; return; }
	[ -r "/proc/$pid/stat" ] || { phase_fail "$name: registrar pid $pid gone"; return; }
	echo "$name: registrar pid $pid is $(cat "/proc/$pid/comm"), $(taskset -p "$pid")"
	local load0
	load0=$(cut -d' ' -f1-3 /proc/loadavg)
	local pk0 ch0
	pk0=$(sctp_mib SctpOutSCTPPacks)
	ch0=$(sctp_mib SctpOutOrderChunks)
	t0=$(cpu_ticks "$pid")
	timeout $((SECONDS_PER_RUN + 30)) taskset -c 1 rspxdp pu --pool TputPool --registrar "$A:3863" --transport sctp \
		bench --connections "$CONNS" --outstanding "$OUTSTANDING" --pes "$PES" \
		--duration "${SECONDS_PER_RUN}s" --json >bench-$name.json 2>bench-$name.err
	local rc=$?
	t1=$(cpu_ticks "$pid")
	cat >cpu-$name.txt <<-EOF
		pid=$pid
		cpu_ticks=$((t1 - t0))
		clk_tck=$TCK
		sctp_packets=$(($(sctp_mib SctpOutSCTPPacks) - pk0))
		sctp_data_chunks=$(($(sctp_mib SctpOutOrderChunks) - ch0))
		load_before=$load0
		load_after=$(cut -d' ' -f1-3 /proc/loadavg)
	EOF
	echo "$name: bench exit $rc"
	cat bench-$name.json bench-$name.err cpu-$name.txt
	[ "$rc" = 0 ] || phase_fail "$name: rspxdp pu bench failed (exit $rc)"
}

# rsplib: no rate limit on handle resolutions (-maxhrrate), logging at
# errors only (a line per request would be what is measured).
start_bg rsplib-registrar taskset -c 0 rspregistrar -asap="$A:3863" -enrp="$A:9901" \
	-asapannounce=off -enrpannounce=off -loglevel=1 -maxhrrate=-1
if wait_sctp_listen 3863; then
	measure rsplib "${pids[-1]}"
else
	phase_fail "rspregistrar does not listen"
fi
stop_all

# PROFILE=1 (RSPXDP_VM_PROFILE=1 vm/run.sh): a CPU profile of rspxdp's
# registrar over the run, cpu-rspxdp.pprof (its SIGPROF costs the
# registrar some CPU: not for the figure of record).
prof=()
[ -z "${PROFILE:-}" ] || prof=(--cpu-profile "$OUT/cpu-rspxdp.pprof")
start_bg rspxdp-registrar taskset -c 0 rspxdp registrar --transport=sctp --asap="$A:3863" --enrp="$A:9901" --log-level warn "${prof[@]}"
if wait_sctp_listen 3863; then
	x=${pids[-1]}
	measure rspxdp "$x"
	# Stopped on its own (SIGTERM, then time to leave and write the
	# profile) before finish's stop_all.
	kill -TERM "$x"
	for _ in $(seq 1 100); do kill -0 "$x" 2>/dev/null || break; sleep 0.1; done
else
	phase_fail "rspxdp registrar does not listen"
fi

finish
