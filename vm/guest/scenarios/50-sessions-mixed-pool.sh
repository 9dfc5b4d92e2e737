#!/bin/bash
# Scenario (issue 15 item 2): one pool holding an rsplib PE (rspserver) and
# an rspxdp PE (rspxdp pe --transport sctp) side by side at rspregistrar,
# with sessions both ways over rsplib's session layer (one SCTP association
# per session, data and ASAP control multiplexed by PPID):
#   - both PEs resolve in the one pool (resolve.json);
#   - rspterminal reaches the rspxdp PE (terminal-*.txt, pe log);
#   - `rspxdp pu echo` reaches the rspserver PE (echo-rsplib.txt);
#   - `rspxdp pu echo` fails over when the PE in use is killed, no line
#     lost (failover.txt), and rspregistrar keeps the live PE (no report of
#     a PE for the PU's own transport, issue 15 item 3);
#   - rspterminal on the rspxdp PE fails over when that PE is killed after
#     line 5 of 20: every line answered, the later ones by the other PE
#     (terminal-failover.txt; terminal-kill.txt has the kill's epoch for
#     the host's Cookie Echo check in the capture).
set -u
. /payload/lib.sh

A=$VM_ADDR4
PEID=0x00005001

capture_start lo || fail "no capture"
start_bg rsplib-registrar rspregistrar -asap="$A:3863" -enrp="$A:9901" \
	-asapannounce=off -enrpannounce=off -loglevel=3 \
	-endpointkeepalivetransmissioninterval=1000 -endpointkeepalivetimeoutinterval=1000
wait_sctp_listen 3863 || fail "rspregistrar does not listen"
start_bg rspxdp-pe rspxdp pe --pool PoolM --registrar "$A:3863" --transport sctp \
	--listen "$A:7100" --asap-listen "$A:7101" --service echo --policy RoundRobin --id "$PEID" --log-level debug
rspxdp_pe=${pids[-1]}
wait_sctp_listen 7100 || fail "rspxdp pe does not listen"
start_bg rsplib-pe rspserver -echo -poolhandle=PoolM -policy=RoundRobin \
	-registrar="$A:3863" -asapannounce=off -loglevel=3
rsplib_pe=${pids[-1]}

two_pes() {
	timeout 10 rspxdp pu --pool PoolM --registrar "$A:3863" --transport sctp resolve --json >resolve.json 2>>json-stderr.txt &&
		[ "$(grep -c '"id"' resolve.json)" -eq 2 ]
}
retry 15 two_pes || phase_fail "PoolM does not hold both PEs"
cat resolve.json

# rspterminal through the mixed pool: round robin sends some sessions to
# the rspxdp PE, which logs each one it accepts.
for i in 1 2 3 4; do
	echo_through "$A:3863" PoolM "terminal-$i.txt" || phase_fail "rspterminal session $i got no echo"
done
grep -q 'session opened.*network=sctp' rspxdp-pe.log || phase_fail "no rspterminal session reached the rspxdp PE"

# rspxdp pu through the mixed pool: some answers come from rspserver.
timeout 30 rspxdp pu --pool PoolM --registrar "$A:3863" --transport sctp echo --count 6 --interval 100ms \
	>echo-rsplib.txt 2>&1 || phase_fail "rspxdp pu echo through the mixed pool failed"
cat echo-rsplib.txt
grep 'answer from PE' echo-rsplib.txt | grep -vq '0x00005001' ||
	{ timeout 30 rspxdp pu --pool PoolM --registrar "$A:3863" --transport sctp echo --count 3 --interval 100ms \
		>>echo-rsplib.txt 2>&1; grep 'answer from PE' echo-rsplib.txt | grep -vq '0x00005001'; } ||
	phase_fail "rspxdp pu never reached the rspserver PE"

# Failover: kill the PE the session is on (whichever kind), mid-run.
timeout 60 rspxdp pu --pool PoolM --registrar "$A:3863" --transport sctp echo --count 20 --interval 250ms \
	--timeout 2s >failover.txt 2>&1 &
pu=$!
sleep 2
on=$(sed -n 's/^session with pool "PoolM" on PE 0x\([0-9a-f]*\)@.*/\1/p' failover.txt)
echo "session on PE 0x$on"
if [ "$on" = "00005001" ]; then
	kill_now rspxdp-pe "$rspxdp_pe"
else
	kill_now rspserver "$rsplib_pe"
fi
wait "$pu" || phase_fail "rspxdp pu echo did not survive the PE's death"
cat failover.txt
grep -q '^FAILOVER' failover.txt || phase_fail "no failover"
grep -q 'done: 20 lines answered' failover.txt || phase_fail "lines lost across the failover"

# rspterminal's own failover: rsplib's pool user on the rspxdp PE, which
# is SIGKILLed mid-session. First both kinds back in the pool.
if [ "$on" = "00005001" ]; then
	start_bg rspxdp-pe-2 rspxdp pe --pool PoolM --registrar "$A:3863" --transport sctp \
		--listen "$A:7100" --asap-listen "$A:7101" --service echo --policy RoundRobin --id "$PEID" --log-level debug
	rspxdp_pe=${pids[-1]}
else
	start_bg rsplib-pe-2 rspserver -echo -poolhandle=PoolM -policy=RoundRobin \
		-registrar="$A:3863" -asapannounce=off -loglevel=3
fi
retry 15 two_pes || phase_fail "PoolM does not hold both kinds of PE again"
cp resolve.json resolve-terminal.json

# wait_answer FILE LINE SECONDS: rspterminal printed the echo of LINE.
wait_answer() {
	local i
	for i in $(seq 1 $((10 * $3))); do
		grep -q "> $2" "$1" && return 0
		sleep 0.1
	done
	return 1
}
# stop_terminal PID: rspterminal does not end at the end of its input; its
# timeout (PID) passes it a SIGTERM.
stop_terminal() {
	sleep 1
	kill -TERM "$1" 2>/dev/null
	wait "$1"
}
# terminal_failover TRY: one rspterminal session fed line by line through a
# FIFO. Returns 1 (try again) when its session did not start on the rspxdp
# PE; otherwise kills that PE after line 5 and sends lines 6-20.
terminal_failover() {
	local f=terminal-failover-$1.txt tp i
	rm -f term.in
	mkfifo term.in
	timeout 90 rspterminal -poolhandle=PoolM -registrar="$A:3863" -asapannounce=off -loglevel=3 <term.in >"$f" 2>&1 &
	tp=$!
	exec 3>term.in
	echo "fo-01" >&3
	if ! wait_answer "$f" fo-01 20 || ! grep -q 'from PE \$00005001> fo-01' "$f"; then
		exec 3>&-
		stop_terminal "$tp"
		return 1
	fi
	for i in 02 03 04 05; do echo "fo-$i" >&3; sleep 0.3; done
	wait_answer "$f" fo-05 20 || phase_fail "rspterminal: no echo of line 5 before the kill"
	# The time before the kill: what rsplib sends after it may come
	# sooner than a fork of date under TCG.
	echo "kill_epoch=$(date +%s.%N)" >terminal-kill.txt
	kill_now rspxdp-pe "$rspxdp_pe"
	for i in $(seq 6 20); do echo "fo-$(printf %02d "$i")" >&3; sleep 0.3; done
	wait_answer "$f" fo-20 30
	sleep 1
	exec 3>&-
	stop_terminal "$tp"
	cp "$f" terminal-failover.txt
	return 0
}
done_fo=
for try in 1 2 3 4 5 6; do
	terminal_failover "$try" && { done_fo=1; break; }
done
if [ -z "$done_fo" ]; then
	phase_fail "no rspterminal session started on the rspxdp PE in 6 tries"
else
	sed 's/\x1b\[[0-9;]*m//g' terminal-failover.txt | grep -E 'from PE|ailover'
	lost=0
	for i in $(seq 1 20); do
		grep -q "> fo-$(printf %02d "$i")" terminal-failover.txt || lost=$((lost + 1))
	done
	echo "rspterminal failover: $lost of 20 lines lost" | tee -a terminal-kill.txt
	[ "$lost" = 0 ] || phase_fail "rspterminal lost $lost lines across its failover"
	sed 's/\x1b\[[0-9;]*m//g' terminal-failover.txt | grep -E '> fo-(0[6-9]|1[0-9]|20)' | grep -vq '\$00005001' ||
		phase_fail "rspterminal's lines after the kill were not answered by another PE"
fi

finish
