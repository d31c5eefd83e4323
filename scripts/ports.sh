# Sourced by the scripts that start servers on loopback (bench, peer test).
# Needs a die function in the caller.

# port_busy PORT: true if something accepts connections on 127.0.0.1:PORT.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# free_port: a port nothing listens on now (a random start keeps parallel
# runs apart; the server that binds it fails loudly if it was taken since).
free_port() {
	local p=$((20000 + RANDOM % 20000))
	while port_busy "$p"; do p=$((p + 1)); done
	echo "$p"
}

# wait_port PORT PID LOG: wait up to 20 s until PORT accepts, failing if PID dies.
wait_port() {
	local i
	for ((i = 0; i < 400; i++)); do
		port_busy "$1" && return 0
		kill -0 "$2" 2>/dev/null || { tail -n 20 "$3" >&2; die "process $2 exited (log: $3)"; }
		sleep 0.05
	done
	die "port $1 not ready after 20s (log: $3)"
}
