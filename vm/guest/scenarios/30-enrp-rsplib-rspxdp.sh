#!/bin/bash
# Scenario (issue 9, item 4): ENRP between rsplib's rspregistrar R and `rspxdp
# registrar` X over SCTP (enrp_pair_start: R is not told about X; X dials R
# from its ENRP port). Phases, each leaving a file the host asserts on:
#   agree     both pools resolvable and served through both registrars,
#             equal checksums (enrp_pair_agree; agree.ok)
#   takeover  R is killed; X takes over R's PE, and PoolR still echoes
#             through X after R's PE would otherwise have been dropped
#             (takeover.ok, takeover.txt)
set -u
. /payload/lib.sh

A=$VM_ADDR4
enrp_pair_start
enrp_pair_agree

# Phase takeover: R dies without a word; X must take its PEs over.
kill_now "rspregistrar" "$r_pid" # sets killed
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
	echo "takeover_seconds=$(uptime_since "$killed")" | tee takeover.txt
	# Keep-alives from the new home must keep the PE: still served well after.
	sleep 10
	if retry 3 echo_through "$A:3864" PoolR after-takeover.txt; then
		echo "takeover ok" >takeover.ok
	else
		phase_fail "PoolR not served through rspxdp 10 s after the takeover"
	fi
	timeout 10 rspxdp status --registrar "$A:9902" --transport sctp --json >status-after-takeover.json 2>>json-stderr.txt
	cat status-after-takeover.json
else
	phase_fail "rspxdp registrar did not take over rspregistrar's PEs within 60 s"
fi

finish
