#!/bin/bash
# Scenario (issue 9, item 3): rspxdp against rsplib's registrar. `rspxdp pe`
# registers an echo PE with rspregistrar over ASAP/SCTP; `rspxdp pu`
# resolves the pool through rspregistrar and echoes through the PE; hsdump
# reads rspregistrar's handle table over ENRP, where the PE must appear with
# its identifier, policy, user address and an SCTP registrator (ASAP)
# transport, after several rounds of 1 s keep-alives it answered. Leaves
# for the host: resolve.txt, resolve.json, echo.txt, hsdump.txt, the logs
# and capture.pcap.
# Exits 77 (skipped) while this build of rspxdp has no SCTP for pe/pu.
set -u
. /payload/lib.sh

if ! rspxdp pe --help 2>&1 | grep -q -- '-transport'; then
	echo "rspxdp pe has no --transport in this build: skipped"
	exit 77
fi
A=$VM_ADDR4
PEID=0x00004242

capture_start lo
# Keep-alives every second with a 1 s timeout: a PE that does not answer
# rsplib's Endpoint Keep-Alive correctly is gone within seconds.
start_bg rsplib-registrar rspregistrar -asap="$A:3863" -enrp="$A:9901" \
	-asapannounce=off -enrpannounce=off -loglevel=3 \
	-endpointkeepalivetransmissioninterval=1000 -endpointkeepalivetimeoutinterval=1000
wait_sctp_listen 3863 || fail "rspregistrar does not listen"
start_bg rspxdp-pe rspxdp pe --pool PoolP --registrar "$A:3863" --transport sctp \
	--listen "$A:7000" --asap-listen "$A:7001" --service echo --policy RoundRobin --id "$PEID" --log-level debug

# The PE is in rspregistrar's handlespace once rspxdp pu resolves it there.
resolved=
for _ in $(seq 1 15); do
	if timeout 10 rspxdp pu --pool PoolP --registrar "$A:3863" --transport sctp resolve >resolve.txt 2>&1 &&
		grep -q '0x00004242' resolve.txt; then
		resolved=1
		break
	fi
	sleep 1
done
cat resolve.txt
[ -n "$resolved" ] || fail "rspxdp pu did not resolve rspxdp's PE through rspregistrar"
timeout 10 rspxdp pu --pool PoolP --registrar "$A:3863" --transport sctp resolve --json >resolve.json 2>>json-stderr.txt ||
	fail "rspxdp pu resolve --json failed"
cat resolve.json

# Data through the PE found via rsplib's registrar.
timeout 30 rspxdp pu --pool PoolP --registrar "$A:3863" --transport sctp echo --count 3 --interval 100ms \
	>echo.txt 2>&1 || fail "rspxdp pu echo through rspregistrar failed"
cat echo.txt

# rsplib's own view, over ENRP, after several keep-alive rounds.
sleep 4
timeout 10 hsdump "$A:9901" >hsdump.txt 2>&1
sed -n '/Handlespace/,$p' hsdump.txt | head -n 30
grep -q 'Pool "PoolP", Policy "RoundRobin"' hsdump.txt || fail "rspregistrar's handle table lacks PoolP with RoundRobin"
grep -q '\$00004242' hsdump.txt || fail "rspregistrar's handle table lacks PE \$00004242"
grep -q "userT: {$A} 7000/SCTP" hsdump.txt || fail "rspregistrar holds the PE without its user transport $A:7000/SCTP"
# rsplib records the association's source as the PE's registrator: it must
# be the PE's ASAP endpoint (--asap-listen), where a takeover's keep-alives go.
grep -Eq "regT: +\{$A\} 7001/SCTP" hsdump.txt || fail "rspregistrar holds the PE without its ASAP endpoint $A:7001/SCTP as registrator"

# SIGTERM: the PE deregisters (in the capture) before it exits.
stop_all
capture_stop
pass
