#!/bin/bash
# Scenario (issue 15): one operation scope shared by two rsplib registrars
# (R1, R2) and two rspxdp registrars (X1 = $00000058, X2 = $00000059), with
# three pools (RoundRobin, WeightedRoundRobin, LeastUsed) each holding
# rspserver PEs and rspxdp PEs (rspxdp pe --transport sctp), homed across
# all four registrars, X1 and R1 each home to PEs of both kinds (8 PEs).
#   agree:      every registrar's handlespace, read with `rspxdp status`
#               (status-<enrp port>-agree.json), lists the eight PEs with the
#               same homes, and the per-owner checksums are equal;
#   kill X1:    the survivors take X1's PEs over (status-*-x1.json);
#   kill R1:    the survivors take R1's PEs over (status-*-r1.json).
# The host judges the JSON (who owns what at whom) and the capture (no
# audit loop: Handle Table Requests between registrars counted).
set -u
. /payload/lib.sh

A=$VM_ADDR4
capture_start lo || fail "no capture"
start_bg r1 rspregistrar -asap="$A:3863" -enrp="$A:9901" -asapannounce=off -enrpannounce=off -loglevel=3 "${KA[@]}"
r1=${pids[-1]}
wait_sctp_listen 9901 || fail "R1 does not listen"
start_bg r2 rspregistrar -asap="$A:3865" -enrp="$A:9903" -peer="$A:9901" -asapannounce=off -enrpannounce=off \
	-loglevel=3 "${KA[@]}"
wait_sctp_listen 9903 || fail "R2 does not listen"
start_bg x1 rspxdp registrar --id 0x58 "${XKA[@]}" --asap="$A:3864" --enrp="$A:9902" \
	--peer="$A:9901" --peer="$A:9903"
x1=${pids[-1]}
start_bg x2 rspxdp registrar --id 0x59 "${XKA[@]}" --asap="$A:3866" --enrp="$A:9904" \
	--peer="$A:9901" --peer="$A:9903" --peer="$A:9902"
wait_sctp_listen 3864 || fail "X1 does not listen"
wait_sctp_listen 3866 || fail "X2 does not listen"
sleep 3 # let ENRP settle before the PEs come

# Pools: rspserver and rspxdp PEs side by side, homes spread.
start_bg rr-rsplib rspserver -echo -poolhandle=PoolRR -policy=RoundRobin -registrar="$A:3863" -asapannounce=off -loglevel=3
start_bg rr-rspxdp rspxdp pe --pool PoolRR --registrar "$A:3864" --transport sctp --id 0x6001 \
	--listen "$A:7201" --asap-listen "$A:7211" --service echo --policy RoundRobin
start_bg wrr-rsplib rspserver -echo -poolhandle=PoolWRR -policy=WeightedRoundRobin:3 -registrar="$A:3865" -asapannounce=off -loglevel=3
start_bg wrr-rspxdp rspxdp pe --pool PoolWRR --registrar "$A:3866" --transport sctp --id 0x6002 \
	--listen "$A:7202" --asap-listen "$A:7212" --service echo --policy wrr:2
start_bg lu-rsplib rspserver -echo -poolhandle=PoolLU -policy=LeastUsed -registrar="$A:3863" -asapannounce=off -loglevel=3
start_bg lu-rspxdp rspxdp pe --pool PoolLU --registrar "$A:3864" --transport sctp --id 0x6003 \
	--listen "$A:7203" --asap-listen "$A:7213" --service echo --policy lu:10%
# And each kind at the other kind's registrar, so that both takeovers below
# move PEs of both kinds: an rspserver homed at X1, an rspxdp PE at R1.
start_bg wrr-rsplib-x1 rspserver -echo -poolhandle=PoolWRR -policy=WeightedRoundRobin:3 -registrar="$A:3864" -asapannounce=off -loglevel=3
start_bg lu-rspxdp-r1 rspxdp pe --pool PoolLU --registrar "$A:3863" --transport sctp --id 0x6004 \
	--listen "$A:7204" --asap-listen "$A:7214" --service echo --policy lu:10%

# status_of PORT PHASE: `rspxdp status --json` of the registrar whose ENRP
# port is PORT, into status-PORT-PHASE.json; true if it answered.
status_of() {
	timeout 10 rspxdp status --registrar "$A:$1" --transport sctp --json >"status-$1-$2.json" 2>>json-stderr.txt &&
		grep -q '"pools"' "status-$1-$2.json"
}

# converged PHASE PORT...: every listed registrar holds the eight PEs and they
# all print the same per-owner checksums.
converged() {
	local phase=$1 p first=
	shift
	for p in "$@"; do status_of "$p" "$phase"; done # all read, for the host
	for p in "$@"; do
		[ "$(grep -c '"id"' "status-$p-$phase.json")" -eq 8 ] || return 1
		if [ -z "$first" ]; then
			first=$p
		elif [ "$(checksums_of "status-$first-$phase.json")" != "$(checksums_of "status-$p-$phase.json")" ]; then
			return 1
		fi
	done
}

# taken_over DEAD PHASE PORT...: converged, and no listed registrar still
# holds a PE homed at the dead registrar DEAD. Survivors that agree on the
# dead one's stale PEs (before anyone took them over) have not converged.
taken_over() {
	local dead=$1
	shift
	converged "$@" || return 1
	! grep -qs "\"home\": \"$dead\"" status-*-"$1".json
}

retry 40 converged agree 9901 9902 9903 9904 || phase_fail "the four registrars do not agree"
for p in 9901 9902 9903 9904; do echo "$p:"; checksums_of "status-$p-agree.json"; done
timeout 10 hsdump "$A:9901" >hsdump-r1.txt 2>&1
# Sessions through each registrar reach the mixed pools.
for reg in 3863 3864 3865 3866; do
	retry 3 echo_through "$A:$reg" PoolRR "terminal-RR-$reg.txt" || phase_fail "rspterminal via $reg got no echo from PoolRR"
done
timeout 30 rspxdp pu --pool PoolWRR --registrar "$A:3865" --transport sctp echo --count 4 --interval 100ms \
	>echo-WRR.txt 2>&1 || phase_fail "rspxdp pu echo in PoolWRR through R2 failed"

# Takeover of an rspxdp registrar: X1 dies, its PEs move to a survivor.
kill_now X1 "$x1"
retry 60 taken_over 0x00000058 x1 9901 9903 9904 ||
	phase_fail "after X1's death the survivors do not agree on eight PEs, none homed at X1"
echo "X1's PEs taken over after $(uptime_since "$killed") s"

# Takeover of an rsplib registrar: R1 dies, its PEs move to a survivor.
r1id=$(sed -n 's/^  "registrar": "\(.*\)",$/\1/p' status-9901-agree.json)
[ -n "$r1id" ] || phase_fail "no registrar id for R1 in its status"
kill_now R1 "$r1"
retry 90 taken_over "${r1id:-none}" r1 9903 9904 ||
	phase_fail "after R1's death the survivors do not agree on eight PEs, none homed at R1"
echo "R1's PEs taken over after $(uptime_since "$killed") s"
for p in 9903 9904; do echo "$p:"; checksums_of "status-$p-r1.json"; done

finish
