#!/bin/bash
# Scenario (issue 9, item 2): rsplib's rspserver registers with `rspxdp
# registrar` over SCTP, for three services under three policies:
#   EchoPool     two echo PEs, RoundRobin
#   DiscardPool  one discard PE, LeastUsed
#   DaytimePool  one daytime PE, WeightedRandom (weight 5)
# rsplib's rspterminal resolves each pool through rspxdp and talks to a PE
# (echo answered, daytime answered with the time, discard accepted);
# `rspxdp pu resolve --json` records what rspxdp holds (policies checked on
# the host). One echo PE is then killed: it must leave rspxdp's handlespace
# once its keep-alives fail, and EchoPool keeps being served by the other.
set -u
. /payload/lib.sh

if ! rspxdp registrar --help >registrar-help.txt 2>&1; then
	echo "rspxdp registrar is not in this build: skipped"
	exit 77
fi
A=$VM_ADDR4

capture_start lo
start_bg registrar rspxdp registrar --transport=sctp --keepalive-interval=1s --keepalive-timeout=1s \
	--asap="$A:3863" --enrp="$A:9901"
wait_sctp_listen 3863 || fail "rspxdp registrar does not listen on SCTP 3863"

start_bg echo1 rspserver -echo -poolhandle=EchoPool -policy=RoundRobin \
	-registrar="$A:3863" -asapannounce=off -loglevel=3
echo1_pid=${pids[-1]}
start_bg echo2 rspserver -echo -poolhandle=EchoPool -policy=RoundRobin \
	-registrar="$A:3863" -asapannounce=off -loglevel=3
start_bg discard rspserver -discard -poolhandle=DiscardPool -policy=LeastUsed \
	-registrar="$A:3863" -asapannounce=off -loglevel=3
start_bg daytime rspserver -daytime -poolhandle=DaytimePool -policy=WeightedRandom:5 \
	-registrar="$A:3863" -asapannounce=off -loglevel=3

# Registration is asynchronous: wait until rspxdp resolves every pool.
for pool in EchoPool DiscardPool DaytimePool; do
	retry 15 resolve_json "$A:3863" "$pool" "resolve-$pool.json" ||
		phase_fail "rspxdp does not resolve $pool"
done
# Both echo PEs, not just the first.
both_echo() {
	resolve_json "$A:3863" EchoPool resolve-EchoPool.json &&
		[ "$(grep -c '"id"' resolve-EchoPool.json)" = 2 ]
}
retry 10 both_echo || phase_fail "EchoPool does not hold both echo PEs"
cat resolve-*.json

msg="hello-rspxdp-registrar-$$"
echo "$msg" >sent.txt
ok=0
for _ in 1 2 3; do
	{ echo "$msg"; sleep 4; } | timeout 20 rspterminal -poolhandle=EchoPool \
		-registrar="$A:3863" -asapannounce=off -loglevel=3 >terminal.txt 2>&1
	if grep -q "> $msg" terminal.txt; then ok=1; break; fi
	sleep 1
done
cat terminal.txt
[ "$ok" = 1 ] || phase_fail "no echo through rspxdp's registrar"

# Daytime answers the first line with the time of day; discard answers
# nothing, so the session itself is what is checked: rspterminal finds the
# pool through rspxdp and its line reaches the PE (the capture shows it).
{ echo "time please"; sleep 4; } | timeout 20 rspterminal -poolhandle=DaytimePool \
	-registrar="$A:3863" -asapannounce=off -loglevel=0 >daytime.txt 2>&1
head -n 3 daytime.txt
grep -Eq "from PE [^>]*> .*[0-9]{2}:[0-9]{2}:[0-9]{2}" daytime.txt || phase_fail "no time of day from the daytime PE"
{ echo "into the void"; sleep 3; } | timeout 20 rspterminal -poolhandle=DiscardPool \
	-registrar="$A:3863" -asapannounce=off -loglevel=3 >discard.txt 2>&1
echo "rspterminal to DiscardPool exit $?"
cat discard.txt

# A PE that dies without deregistering must go once keep-alives fail: time it
# from the kill to the registrar's log line, then check a pool user agrees.
kill -KILL "$echo1_pid"
killed=$(cut -d' ' -f1 /proc/uptime)
gone=0
for _ in $(seq 1 300); do
	if grep -q 'PE removed' registrar.log; then gone=1; break; fi
	sleep 0.2
done
if [ "$gone" = 1 ]; then
	awk -v a="$killed" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN { printf "removal_seconds=%.1f\n", b - a }' | tee removal.txt
	grep 'PE removed' registrar.log
	resolve_json "$A:3863" EchoPool after-kill.json
	cat after-kill.json
	[ "$(grep -c '"id"' after-kill.json)" = 1 ] || phase_fail "EchoPool does not hold exactly the surviving PE after the kill"
	retry 3 echo_through "$A:3863" EchoPool after-kill.txt ||
		phase_fail "EchoPool not served by the surviving PE after the kill"
else
	phase_fail "killed rspserver not removed within 60 s"
fi

finish
