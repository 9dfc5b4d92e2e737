#!/bin/bash
# Scenario: rsplib against itself, as the baseline every interop scenario is
# measured against. rspregistrar serves ASAP on VM_ADDR4:3863; rspserver
# registers an echo PE in pool EchoPool; hsdump reads the registrar's handle
# table over ENRP; rspterminal resolves EchoPool and has a line echoed. tcpdump
# records it all on lo (the site-local addresses are local, so the packets
# travel over lo) into capture.pcap, which the host decodes.
#
# Files left in $OUT for the host's assertions: capture.pcap, registrar.log,
# server.log, hsdump.txt, terminal.txt, sent.txt.
set -u
. /payload/lib.sh

capture_start lo
start_bg registrar rspregistrar -asap="$VM_ADDR4:3863" -enrp="$VM_ADDR4:9901" \
	-asapannounce=off -enrpannounce=off -loglevel=3
wait_sctp_listen 3863 || fail "registrar does not listen on 3863"

start_bg server rspserver -echo -poolhandle=EchoPool -policy=RoundRobin \
	-registrar="$VM_ADDR4:3863" -asapannounce=off -loglevel=3
# Registration is asynchronous: poll the registrar's handle table.
ok=0
for _ in $(seq 1 30); do
	timeout 10 hsdump "$VM_ADDR4:9901" >hsdump.txt 2>&1
	if grep -q EchoPool hsdump.txt; then ok=1; break; fi
	sleep 1
done
cat hsdump.txt
[ "$ok" = 1 ] || fail "EchoPool not in the registrar's handle table"

msg="hello-rspxdp-$$"
echo "$msg" >sent.txt
# rspterminal sends each stdin line to a PE of the pool and prints the replies;
# keep stdin open long enough for the reply to arrive.
{ echo "$msg"; sleep 4; } | timeout 20 rspterminal -poolhandle=EchoPool \
	-registrar="$VM_ADDR4:3863" -asapannounce=off -loglevel=3 >terminal.txt 2>&1
cat terminal.txt
grep -q "$msg" terminal.txt || fail "echo reply not seen by rspterminal"

stop_all
capture_stop
pass
