#!/bin/bash
# Scenario (issue 15 item 6): two registrars that open their ENRP
# associations to each other at the same time. Each round starts a pair,
# each registrar naming the other as a static peer, the second a few
# milliseconds (0-100) after the first, on ports of its own (so no
# association of an earlier round is in the way), with an echo PE at each
# (an rspserver at one, `rspxdp pe` at the other). Within a bound both must
# list each other as peers (rsplib: hsdump's peer list of the registrar;
# rspxdp: its "peer joined" log line) and each one's pool must resolve
# through the other registrar (`rspxdp pu resolve`). Every other round the
# second registrar of the pair has the lower ENRP port. Pairs:
#   rsplib  rspregistrar R and rspxdp registrar X (0x58)
#   rspxdp  rspxdp registrars X (0x58) and Y (0x59)
# The last rounds delay every packet on lo by 100 ms, so that the two
# registrars' INITs can be in flight at once. One line per round in
# race.txt: "ROUND PAIR FIRST OFFSET_MS ok|fail SECONDS A_ENRP B_ENRP
# DELAY_MS WHAT", where SECONDS is from the second start to the round's
# success; files race-ROUND-*.{log,txt,json} hold each round's evidence.
set -u
. /payload/lib.sh

A=$VM_ADDR4
S=${RSPXDP_TIME_SCALE:-1}
bound=$((6 * S > 12 ? 6 * S : 12))
capture_start lo || fail "no capture"
XT=(--transport=sctp --keepalive-interval=1s --keepalive-timeout=1s)

# wait_sctp_closed PORT: until nothing listens on PORT (10 s at most).
wait_sctp_closed() {
	local i
	for i in $(seq 1 100); do
		ss -Hln --sctp 2>/dev/null | grep -q ":$1\b" || return 0
		sleep 0.1
	done
	return 1
}

# start_reg ROUND KIND NAME ASAP ENRP PEER_ENRP: one registrar of a round.
start_reg() {
	local r=$1 kind=$2 name=$3 asap=$4 enrp=$5 peer=$6
	case $kind in
	rsplib) start_bg "race-$r-$name" rspregistrar -asap="$A:$asap" -enrp="$A:$enrp" -peer="$A:$peer" \
		-asapannounce=off -enrpannounce=off -loglevel=3 ;;
	x) start_bg "race-$r-$name" rspxdp registrar --id 0x58 "${XT[@]}" --asap="$A:$asap" --enrp="$A:$enrp" --peer="$A:$peer" ;;
	y) start_bg "race-$r-$name" rspxdp registrar --id 0x59 "${XT[@]}" --asap="$A:$asap" --enrp="$A:$enrp" --peer="$A:$peer" ;;
	esac
}

# xpeer ROUND NAME ID: rspxdp registrar NAME of ROUND logged peer ID joining.
xpeer() { grep -q "msg=\"peer joined\".* peer=$3" "race-$1-$2.log"; }

# rpeer ROUND ENRP_R X_ENRP: rsplib's registrar at ENRP_R lists the rspxdp
# registrar 0x58 at X_ENRP among its peers (hsdump reads its peer list).
rpeer() {
	timeout 10 hsdump "$A:$2" >"race-$1-hsdump.txt" 2>&1 || true
	sed -n '/^PeerList/,/Peers by Timer/p' "race-$1-hsdump.txt" | grep -A1 '\$00000058' | grep -q "} $3/SCTP"
}

# round N PAIR FIRST OFFSET_MS [DELAY_MS]: one round. FIRST names who
# starts first ("a" or "b" of the pair); the other follows OFFSET_MS later.
# DELAY_MS delays every packet on lo (netem) so that INITs sent within that
# long of each other are in flight at once and cross.
round() {
	local r=$1 pair=$2 first=$3 off=$4 delay=${5:-0} base=$((20000 + 10 * $1))
	local aa=$((base + 1)) ae=$((base + 2)) ba=$((base + 3)) be=$((base + 4))
	# Who has the lower ENRP address alternates: rspxdp's lower side
	# dials at once, its higher side first waits for the peer's
	# association (enrp/peerlink.go); rsplib always dials at once.
	if [ $((r % 2)) = 0 ]; then
		ae=$((base + 4)) be=$((base + 2))
	fi
	local ka kb ida idb
	case $pair in
	rsplib) ka=rsplib kb=x ;;
	rspxdp) ka=x kb=y ;;
	esac
	if [ "$delay" != 0 ]; then
		modprobe sch_netem 2>/dev/null
		tc qdisc replace dev lo root netem delay "${delay}ms" || phase_fail "round $r: no netem delay on lo"
	fi
	local secs
	secs() { awk -v o="$off" 'BEGIN { printf "%.3f", o / 1000 }'; }
	if [ "$first" = a ]; then
		start_reg "$r" "$ka" a "$aa" "$ae" "$be"
		sleep "$(secs)"
		start_reg "$r" "$kb" b "$ba" "$be" "$ae"
	else
		start_reg "$r" "$kb" b "$ba" "$be" "$ae"
		sleep "$(secs)"
		start_reg "$r" "$ka" a "$aa" "$ae" "$be"
	fi
	local t0 ok=1 what=""
	t0=$(cut -d' ' -f1 /proc/uptime)
	wait_sctp_listen "$aa" && wait_sctp_listen "$ba" || { ok=; what+="no listener; "; }
	start_bg "race-$r-pe-a" rspserver -echo -poolhandle="Pool$r-a" -policy=RoundRobin -registrar="$A:$aa" \
		-asapannounce=off -loglevel=3
	start_bg "race-$r-pe-b" rspxdp pe --pool "Pool$r-b" --registrar "$A:$ba" --transport sctp \
		--listen "$A:$((base + 5))" --asap-listen "$A:$((base + 6))" --service echo
	# Both sides list each other, and each pool resolves through the other.
	local peers= res=
	while :; do
		if [ -z "$peers" ]; then
			case $pair in
			rsplib)
				ida=$(timeout 10 rspxdp status --registrar "$A:$ae" --transport sctp --json 2>>json-stderr.txt |
					sed -n 's/^  "registrar": "\(.*\)",$/\1/p')
				[ -n "$ida" ] && xpeer "$r" b "$ida" && rpeer "$r" "$ae" "$be" && peers=1 ;;
			rspxdp) xpeer "$r" a 0x00000059 && xpeer "$r" b 0x00000058 && peers=1 ;;
			esac
		fi
		if [ -z "$res" ] && resolve_json "$A:$aa" "Pool$r-b" "race-$r-b-via-a.json" &&
			resolve_json "$A:$ba" "Pool$r-a" "race-$r-a-via-b.json"; then
			res=1
		fi
		[ -n "$peers" ] && [ -n "$res" ] && break
		awk -v e="$(uptime_since "$t0")" -v b="$bound" 'BEGIN { exit !(e >= b) }' && break
		sleep 0.5
	done
	[ -n "$peers" ] || { ok=; what+="not both listed as peers; "; }
	[ -n "$res" ] || { ok=; what+="a pool does not resolve through the other registrar; "; }
	ss -ina --sctp >"race-$r-ss.txt" 2>&1
	local took
	took=$(uptime_since "$t0")
	local verdict=fail
	[ -z "$ok" ] || verdict=ok
	echo "$r $pair $first $off $verdict $took $ae $be $delay ${what:-both peers, both pools resolved}" | tee -a race.txt
	[ -n "$ok" ] || phase_fail "round $r ($pair, $first first, +${off}ms, ${delay}ms delay): $what"
	stop_all
	[ "$delay" = 0 ] || tc qdisc del dev lo root || phase_fail "round $r: netem delay not removed"
	wait_sctp_closed "$ae" && wait_sctp_closed "$be" || phase_fail "round $r: ENRP ports still held after the round"
}

r=0
for spec in "rsplib a 0" "rsplib b 40" "rsplib a 100" "rsplib b 0" "rspxdp a 0" "rspxdp b 25" "rspxdp a 70" \
	"rspxdp b 100" "rspxdp a 10" "rsplib b 0 100" "rsplib a 20 100" "rspxdp a 0 100"; do
	r=$((r + 1))
	# shellcheck disable=SC2086
	round "$r" $spec
done

finish
