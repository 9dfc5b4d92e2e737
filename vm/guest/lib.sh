# Helpers sourced by the guest's scenario scripts (/payload/lib.sh in the
# guest). Each scenario runs with its own output directory $OUT as working
# directory; everything it leaves there comes back to the host.

pids=()
capture_pid=

# start_bg NAME CMD...: run CMD in the background, output in NAME.log.
start_bg() {
	local name=$1
	shift
	echo "+ $*" >"$name.log"
	"$@" >>"$name.log" 2>&1 &
	pids+=($!)
	echo "started $name (pid $!): $*"
}

# stop_all: stop what start_bg started, gently first so PEs deregister.
stop_all() {
	local p
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
	sleep 1
	for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
	wait "${pids[@]}" 2>/dev/null
	pids=()
}

# capture_start IFACE: tcpdump on IFACE into capture.pcap, returning once it
# listens so that no early packet is lost.
capture_start() {
	tcpdump -i "$1" -U -s 0 -w capture.pcap 'sctp or tcp port 3863 or udp port 3863 or udp port 9901' \
		>tcpdump.log 2>&1 &
	capture_pid=$!
	local i
	for i in $(seq 1 50); do
		grep -q 'listening on' tcpdump.log && return 0
		sleep 0.1
	done
	echo "tcpdump did not start:"
	cat tcpdump.log
	return 1
}

# capture_stop: let tcpdump write out what it has and stop it.
capture_stop() {
	[ -n "$capture_pid" ] || return 0
	sleep 0.5
	kill -INT "$capture_pid" 2>/dev/null
	wait "$capture_pid" 2>/dev/null
	capture_pid=
	cat tcpdump.log
}

# wait_sctp_listen PORT: wait up to 10 s for an SCTP listener on PORT.
wait_sctp_listen() {
	local i
	for i in $(seq 1 100); do
		ss -Hln --sctp 2>/dev/null | grep -q ":$1\b" && return 0
		sleep 0.1
	done
	ss -aln --sctp
	return 1
}

fail() {
	echo "SCENARIO FAIL: $*"
	for f in *.log; do
		echo "--- $f"
		tail -n 30 "$f"
	done
	stop_all
	capture_stop
	exit 1
}

pass() {
	echo "SCENARIO PASS"
	exit 0
}
