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
#     a PE for the PU's own transport, issue 15 item 3).
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

finish
