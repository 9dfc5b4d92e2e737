#!/bin/bash
# Scenario (issue 15, registrar throughput over SCTP): rsplib's rspregistrar
# and `rspxdp registrar` answer Handle Resolutions side by side under the
# same load: the same pool (three rspserver echo PEs each, RoundRobin), the
# same client (`rspxdp pu bench` over ASAP/SCTP, which speaks plain RFC
# 5352), the same flags and the same duration. Both registrars run for the
# whole scenario (rsplib on port 3863, rspxdp on 3864, each with its own
# PEs and no peers), and the client measures them in interleaved rounds
# (rsplib first in odd rounds, rspxdp first in even ones: ABBAABBA), so
# that a drift of the emulated machine's speed over the run falls on both
# alike (a linear one cancels out over an even number of rounds): one
# 12 s run of each varied by more than any change measured with it.
# Each registrar's CPU time (utime+stime from /proc/PID/stat) is read just
# before and just after each round, and the idle one's too. The registrars
# run pinned to vCPU 0 and everything else (client, PEs) to vCPU 1
# (taskset), so the measured registrar has one CPU to itself (the other is
# idle) and the client's own CPU use does not take from it; rsplib's
# registrar is single-threaded, and rspxdp's Go runtime sizes GOMAXPROCS
# from the affinity mask, so both get one CPU.
# No capture: tcpdump would cost more CPU than the registrars and distort
# the figure.
#
# Leaves for the host, per registrar NAME (rsplib, rspxdp) and round R:
# bench-NAME-R.json (the client's figures) and cpu-NAME-R.txt (cpu_ticks
# of the measured registrar, idle_ticks of the other, clk_tck, pid, the
# SCTP packets and DATA chunks sent in the guest over the run, both
# directions, the guest's load average before and after), and the logs.
# The host test prints each round, the median ratios and whether the goal
# (twice rsplib's rate) is met; it asserts only that every run was
# answered without error.
set -u
. /payload/lib.sh

if ! rspxdp pu --help 2>&1 | grep -q -- '-outstanding'; then
	echo "rspxdp pu has no bench in this build: skipped"
	exit 77
fi
A=$VM_ADDR4
SECONDS_PER_RUN=${BENCH_SECONDS:-8}
ROUNDS=${BENCH_ROUNDS:-4}
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

# start_pes NAME PORT: three rspserver PEs registered at the registrar on
# PORT, and wait until the pool resolves to them there.
start_pes() {
	local name=$1 port=$2 i
	for i in $(seq 1 "$PES"); do
		start_bg pe-$name-$i taskset -c 1 rspserver -echo -poolhandle=TputPool -policy=RoundRobin \
			-registrar="$A:$port" -asapannounce=off -loglevel=1
	done
	pes_up() {
		resolve_json "$A:$port" TputPool resolve-$name.json &&
			[ "$(grep -c '"id"' resolve-$name.json)" = "$PES" ]
	}
	retry 20 pes_up || phase_fail "$name: TputPool does not resolve to $PES PEs"
}

# measure NAME PORT PID IDLE_PID ROUND: one bench run against the registrar
# PID on PORT, with its CPU time and the idle registrar's.
measure() {
	local name=$1 port=$2 pid=$3 idle=$4 round=$5 t0 t1 i0 i1
	[ -r "/proc/$pid/stat" ] || { phase_fail "$name: registrar pid $pid gone"; return; }
	local load0 pk0 ch0
	load0=$(cut -d' ' -f1-3 /proc/loadavg)
	pk0=$(sctp_mib SctpOutSCTPPacks)
	ch0=$(sctp_mib SctpOutOrderChunks)
	t0=$(cpu_ticks "$pid")
	i0=$(cpu_ticks "$idle")
	timeout $((SECONDS_PER_RUN + 30)) taskset -c 1 rspxdp pu --pool TputPool --registrar "$A:$port" --transport sctp \
		bench --connections "$CONNS" --outstanding "$OUTSTANDING" --pes "$PES" \
		--duration "${SECONDS_PER_RUN}s" --json >bench-$name-$round.json 2>bench-$name-$round.err
	local rc=$?
	t1=$(cpu_ticks "$pid")
	i1=$(cpu_ticks "$idle")
	cat >cpu-$name-$round.txt <<-EOF
		pid=$pid
		cpu_ticks=$((t1 - t0))
		idle_ticks=$((i1 - i0))
		clk_tck=$TCK
		sctp_packets=$(($(sctp_mib SctpOutSCTPPacks) - pk0))
		sctp_data_chunks=$(($(sctp_mib SctpOutOrderChunks) - ch0))
		load_before=$load0
		load_after=$(cut -d' ' -f1-3 /proc/loadavg)
	EOF
	echo "$name round $round: bench exit $rc"
	cat bench-$name-$round.json bench-$name-$round.err cpu-$name-$round.txt
	[ "$rc" = 0 ] || phase_fail "$name round $round: rspxdp pu bench failed (exit $rc)"
}

# rsplib: no rate limit on handle resolutions (-maxhrrate), logging at
# errors only (a line per request would be what is measured).
start_bg rsplib-registrar taskset -c 0 rspregistrar -asap="$A:3863" -enrp="$A:9901" \
	-asapannounce=off -enrpannounce=off -loglevel=1 -maxhrrate=-1
lpid=${pids[-1]}
wait_sctp_listen 3863 || phase_fail "rspregistrar does not listen"

# PROFILE=1 (RSPXDP_VM_PROFILE=1 vm/run.sh): a CPU profile of rspxdp's
# registrar over the run, cpu-rspxdp.pprof (its SIGPROF costs the
# registrar some CPU: not for the figure of record).
prof=()
[ -z "${PROFILE:-}" ] || prof=(--cpu-profile "$OUT/cpu-rspxdp.pprof")
start_bg rspxdp-registrar taskset -c 0 rspxdp registrar --transport=sctp --asap="$A:3864" --enrp="$A:9902" --log-level warn "${prof[@]}"
xpid=${pids[-1]}
wait_sctp_listen 3864 || phase_fail "rspxdp registrar does not listen"

if [ ${#failed[@]} -eq 0 ]; then
	start_pes rsplib 3863
	start_pes rspxdp 3864
	echo "rsplib: registrar pid $lpid is $(cat "/proc/$lpid/comm"), $(taskset -p "$lpid")"
	echo "rspxdp: registrar pid $xpid is $(cat "/proc/$xpid/comm"), $(taskset -p "$xpid")"
fi
if [ ${#failed[@]} -eq 0 ]; then
	for round in $(seq 1 "$ROUNDS"); do
		if [ $((round % 2)) = 1 ]; then
			measure rsplib 3863 "$lpid" "$xpid" "$round"
			measure rspxdp 3864 "$xpid" "$lpid" "$round"
		else
			measure rspxdp 3864 "$xpid" "$lpid" "$round"
			measure rsplib 3863 "$lpid" "$xpid" "$round"
		fi
	done
fi
# rspxdp's registrar is stopped on its own (SIGTERM, then time to leave and
# write the profile) before finish's stop_all.
kill -TERM "$xpid" 2>/dev/null
for _ in $(seq 1 100); do kill -0 "$xpid" 2>/dev/null || break; sleep 0.1; done

finish
