#!/bin/bash
# Scenario (issue 15 item 7): an rspxdp registrar that was SIGSTOPped while
# rsplib shares its operation scope. Registrars: rsplib's rspregistrar R
# (ENRP 9901), rspxdp X1 = 0x58 (ENRP 9902) and X2 = 0x59 (ENRP 9904). Pool
# PoolS holds an rspserver PE (told only X1, re-registering every 3 s) and an
# rspxdp PE (0x7001, told X1 then X2, re-registering every 3 s), both homed
# at X1.
#   agree:    every registrar lists both PEs homed at X1;
#   stopped:  X1 is SIGSTOPped (its kernel still holds the associations, so
#             the PEs' re-registrations and its peers' messages queue up);
#             X2 takes X1's PEs over; R and X2 are polled throughout;
#   resumed:  after at least 15 s X1 is SIGCONTed; it works off what queued
#             and must neither reclaim nor drop the PEs now at X2: R, X1
#             and X2 are polled for 25 s more.
# Every poll of every registrar must list both PEs (none missing at any
# poll), homed at X2 at every poll from the takeover on. Polls: polls.txt
# ("N UPTIME PHASE PORT..."), poll-N-PORT.json (`rspxdp status --json`) and
# poll-N-hsdump.txt (rsplib's own hsdump of R). sigstop.txt holds the
# uptimes and epochs of the stop, the takeover and the continue, for the
# host to place the capture's frames.
set -u
. /payload/lib.sh

A=$VM_ADDR4
capture_start lo || fail "no capture"
start_bg r rspregistrar -asap="$A:3863" -enrp="$A:9901" -asapannounce=off -enrpannounce=off -loglevel=3 "${KA[@]}"
wait_sctp_listen 9901 || fail "R does not listen"
start_bg x1 rspxdp registrar --id 0x58 "${XKA[@]}" --asap="$A:3864" --enrp="$A:9902" --peer="$A:9901"
x1=${pids[-1]}
start_bg x2 rspxdp registrar --id 0x59 "${XKA[@]}" --asap="$A:3866" --enrp="$A:9904" \
	--peer="$A:9901" --peer="$A:9902"
wait_sctp_listen 3864 || fail "X1 does not listen"
wait_sctp_listen 3866 || fail "X2 does not listen"
sleep 3 # let ENRP settle before the PEs come

start_bg pe-rsplib rspserver -echo -poolhandle=PoolS -policy=RoundRobin -registrar="$A:3864" \
	-rereginterval=3000 -asapannounce=off -loglevel=3
start_bg pe-rspxdp rspxdp pe --pool PoolS --registrar "$A:3864,$A:3866" --transport sctp --id 0x7001 \
	--listen "$A:7301" --asap-listen "$A:7311" --service echo --policy RoundRobin --reregister-interval 3s

n=0
# poll PHASE PORT...: read every listed registrar once (rspxdp status; for R
# also hsdump), one line in polls.txt. Sets $homes to "PORT:PES:HOMED_AT_X2 ...".
poll() {
	local phase=$1 p f
	shift
	n=$((n + 1))
	echo "$n $(cut -d' ' -f1 /proc/uptime) $phase $*" >>polls.txt
	homes=
	# The registrars are read at once, so that a poll is one moment.
	local readers=()
	for p in "$@"; do
		timeout 10 rspxdp status --registrar "$A:$p" --transport sctp --json >"poll-$n-$p.json" 2>>json-stderr.txt &
		readers+=($!)
	done
	if [[ " $* " == *" 9901 "* ]]; then
		timeout 10 hsdump "$A:9901" >"poll-$n-hsdump.txt" 2>&1 &
		readers+=($!)
	fi
	wait "${readers[@]}"
	for p in "$@"; do
		f=poll-$n-$p.json
		homes+="$p:$(grep -c '"id"' "$f"):$(grep -c '"home": "0x00000059"' "$f") "
	done
	echo "poll $n $phase: $homes"
}
# all_homed COUNT_AT_X2: every registrar in the last poll lists 2 PEs, with
# COUNT_AT_X2 of them homed at X2 (0 in agree, 2 after the takeover).
all_homed() {
	local h
	for h in $homes; do
		[ "${h#*:}" = "2:$1" ] || return 1
	done
}

# all_present: every registrar in the last poll lists both PEs.
all_present() {
	local h
	for h in $homes; do
		[ "$(echo "$h" | cut -d: -f2)" = 2 ] || return 1
	done
}

agreed=
for _ in $(seq 1 40); do
	poll agree 9901 9902 9904
	if all_homed 0 && grep -q '"home": "0x00000058"' "poll-$n-9901.json" &&
		[ "$(grep -c '"home": "0x00000058"' "poll-$n-9904.json")" = 2 ]; then
		agreed=1
		break
	fi
	sleep 1
done
[ -n "$agreed" ] || fail "the registrars do not agree on PoolS's two PEs homed at X1"

# SIGSTOP X1 for at least 15 s and until X2 has taken its PEs over (as R
# and X2 see it), bounded.
hold=15
bound=$((hold + 12 * ${RSPXDP_TIME_SCALE:-1}))
stop_epoch=$(date +%s.%N)
kill -STOP "$x1"
stopped=$(cut -d' ' -f1 /proc/uptime)
echo "stop_uptime=$stopped stop_epoch=$stop_epoch" | tee sigstop.txt
taken=
while :; do
	poll stopped 9901 9904
	all_present || phase_fail "poll $n while X1 is stopped: $homes (a PE is missing)"
	el=$(uptime_since "$stopped")
	if [ -z "$taken" ] && all_homed 2; then
		taken=$el
		echo "takeover_uptime=$(cut -d' ' -f1 /proc/uptime) takeover_seconds=$taken takeover_poll=$n" | tee -a sigstop.txt
	fi
	awk -v e="$el" -v h="$hold" 'BEGIN { exit !(e >= h) }' && [ -n "$taken" ] && break
	awk -v e="$el" -v b="$bound" 'BEGIN { exit !(e >= b) }' && break
	sleep 0.5
done
[ -n "$taken" ] || phase_fail "X2 did not take X1's PEs over within ${bound}s of the SIGSTOP"
# The epoch is read before the signal: every frame X1 sends after it is
# one of the resumed X1's (forking date under TCG can take longer than X1
# takes to send its first messages).
cont_epoch=$(date +%s.%N)
kill -CONT "$x1"
echo "cont_uptime=$(cut -d' ' -f1 /proc/uptime) cont_epoch=$cont_epoch stopped_seconds=$(uptime_since "$stopped")" | tee -a sigstop.txt

# Afterwards: R, X1 and X2 keep listing both PEs at X2.
cont=$(cut -d' ' -f1 /proc/uptime)
while awk -v e="$(uptime_since "$cont")" 'BEGIN { exit !(e < 25) }'; do
	poll resumed 9901 9902 9904
	all_homed 2 || phase_fail "poll $n after SIGCONT: $homes (want every registrar with both PEs at X2)"
	sleep 0.5
done
grep -E 'stalled|yielded|ignored' x1.log | head -n 20
echo_through "$A:3863" PoolS echo-after.txt || phase_fail "PoolS not served through R after the SIGCONT"
sed 's/\x1b\[[0-9;]*m//g' r.log | grep -v '^$' | tail -n 20

finish
