#!/bin/bash
# Scenario (issue 9, item 2): rsplib's rspserver registers with `rspxdp
# registrar` over SCTP; rsplib's rspterminal resolves the pool through it and
# has a line echoed; a killed rspserver disappears from rspxdp's handlespace
# once its keep-alives fail (the registrar's log says so and resolution stops
# returning it).
#
# Exits 77 (skipped) while this build of rspxdp has no registrar subcommand.
# The flags used: --transport sctp, --asap ADDR:PORT, --enrp ADDR:PORT; if the
# registrar's flags differ, this script is the one place to change.
set -u
. /payload/lib.sh

if ! rspxdp registrar --help >registrar-help.txt 2>&1; then
	echo "rspxdp registrar is not in this build: skipped"
	exit 77
fi

capture_start lo
start_bg registrar rspxdp registrar --transport=sctp --keepalive-interval=1s --keepalive-timeout=1s \
	--asap="$VM_ADDR4:3863" --enrp="$VM_ADDR4:9901"
wait_sctp_listen 3863 || fail "rspxdp registrar does not listen on SCTP 3863"

start_bg server rspserver -echo -poolhandle=EchoPool -policy=RoundRobin \
	-registrar="$VM_ADDR4:3863" -asapannounce=off -loglevel=3
server_pid=${pids[-1]}

msg="hello-rspxdp-registrar-$$"
echo "$msg" >sent.txt
ok=0
# The PE's registration is asynchronous: retry the pool user a few times.
for _ in 1 2 3 4 5; do
	{ echo "$msg"; sleep 4; } | timeout 20 rspterminal -poolhandle=EchoPool \
		-registrar="$VM_ADDR4:3863" -asapannounce=off -loglevel=3 >terminal.txt 2>&1
	if grep -q "> $msg" terminal.txt; then ok=1; break; fi
	sleep 1
done
cat terminal.txt
[ "$ok" = 1 ] || fail "no echo through rspxdp's registrar"

# A PE that dies without deregistering must go once keep-alives fail: time it
# from the kill to the registrar's log line, then check a pool user agrees.
kill -KILL "$server_pid"
killed=$(cut -d' ' -f1 /proc/uptime)
gone=0
for _ in $(seq 1 300); do
	if grep -q 'PE removed' registrar.log; then gone=1; break; fi
	sleep 0.2
done
[ "$gone" = 1 ] || fail "killed rspserver not removed within 60 s"
awk -v a="$killed" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN { printf "removal_seconds=%.1f\n", b - a }' | tee removal.txt
grep 'PE removed' registrar.log
{ echo "after-kill"; sleep 3; } | timeout 10 rspterminal -poolhandle=EchoPool \
	-registrar="$VM_ADDR4:3863" -asapannounce=off -loglevel=3 >after-kill.txt 2>&1
! grep -q '> after-kill' after-kill.txt || fail "removed PE still served"

stop_all
capture_stop
pass
