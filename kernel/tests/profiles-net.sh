# shellcheck shell=bash
# shellcheck disable=SC2034,SC2054 # QEMU_ARGS/CMDLINE are read by qemu-run.sh; commas are QEMU syntax
# QEMU profiles of the network tests (kernel/tests/net_*.rs); sourced by profiles.sh.
# Same conventions: profile_<name> appends to QEMU_ARGS, pre_/post_ run on the host,
# RUN_DIR is the run's scratch directory.

NET_SYN_TOOL="$REPO_ROOT/kernel/tests/host/net_syn_options.py"

# ---------------------------------------------------------------- net_loop
# Two virtio-net NICs joined by QEMU hub 0; filter-dump records NIC 0's traffic (both
# directions) so post_ can check the SMC option in SYN and SYN-ACK per port
# (ports: kernel/tests/net_loop.rs).
profile_net_loop() {
    QEMU_ARGS+=(
        -netdev hubport,id=n0,hubid=0
        -device virtio-net-pci,netdev=n0,mac=52:54:00:00:00:01
        -netdev hubport,id=n1,hubid=0
        -device virtio-net-pci,netdev=n1,mac=52:54:00:00:00:02
        -object "filter-dump,id=dump0,netdev=n0,file=$RUN_DIR/net_loop.pcap"
    )
}

post_net_loop() {
    [[ "$1" -eq 33 ]] || return 0 # the guest failed already
    # 5000: SMC on both sides; 5001: listener without SMC; 5002: client without SMC;
    # 5003: three concurrent SMC connections (backlog). (5004, the ByteStream test, ends
    # with a deliberate reset and is not checked here.)
    python3 "$NET_SYN_TOOL" --no-resets "$RUN_DIR/net_loop.pcap" 5000:1:1 5001:1:0 5002:0:0 5003:1:1
}

# ---------------------------------------------------------------- net_pair
# Two VMs: the runner's VM is the client (app=stream); pre_ starts the server VM
# (app=sink) from the same image with its own QEMU, joined to the client's NIC by a QEMU
# UDP socket netdev on 127.0.0.1 (a TCP one puts Nagle on the listener's side: QEMU sets
# TCP_NODELAY only when connecting; see scripts/pair.sh). filter-dump records the link on the client side. post_
# checks the server VM's verdict and the SMC option per port (kernel/tests/net_pair.rs).
# Uses the runner's `image` variable and `base_args` function (qemu-run.sh cmd_runner).
NET_PAIR_SERVER_PID=""

NET_PAIR_PORTS=()

net_pair_free_port() {
    python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

profile_net_pair() {
    NET_PAIR_PORTS=("$(net_pair_free_port)" "$(net_pair_free_port)")
    while [[ "${NET_PAIR_PORTS[1]}" == "${NET_PAIR_PORTS[0]}" ]]; do
        NET_PAIR_PORTS[1]="$(net_pair_free_port)"
    done
    CMDLINE="ip=10.0.1.1/24 peer=10.0.1.2 app=stream size=16M port=5000 smc=on"
    QEMU_ARGS+=(
        -netdev "socket,id=n0,udp=127.0.0.1:${NET_PAIR_PORTS[1]},localaddr=127.0.0.1:${NET_PAIR_PORTS[0]}"
        -device virtio-net-pci,netdev=n0,mac=52:54:00:00:01:01
        -object "filter-dump,id=dump0,netdev=n0,file=$RUN_DIR/net_pair.pcap"
    )
}

pre_net_pair() {
    if ! declare -F base_args >/dev/null || [[ -z "${image:-}" ]]; then
        echo "pre_net_pair: needs qemu-run.sh runner (base_args, image)" >&2
        return 1
    fi
    base_args tcg
    local server_log="$RUN_DIR/server-serial.log"
    timeout --kill-after=5 "$QEMU_TIMEOUT" "${QEMU_CMD[@]}" \
        -chardev "file,id=console,path=$server_log" -serial chardev:console \
        -kernel "$image" \
        -append "ip=10.0.1.2/24 peer=10.0.1.1 app=sink size=16M port=5000 smc=on" \
        -netdev "socket,id=n0,udp=127.0.0.1:${NET_PAIR_PORTS[0]},localaddr=127.0.0.1:${NET_PAIR_PORTS[1]}" \
        -device virtio-net-pci,netdev=n0,mac=52:54:00:00:01:02 \
        </dev/null >"$RUN_DIR/server-qemu.log" 2>&1 &
    NET_PAIR_SERVER_PID=$!
    local i
    for ((i = 0; i < 1200; i++)); do # up to 60 s: boot, platform and NIC bring-up
        grep -q '^net_pair: listening' "$server_log" 2>/dev/null && return 0
        if ! kill -0 "$NET_PAIR_SERVER_PID" 2>/dev/null; then
            echo "pre_net_pair: server VM exited early:" >&2
            cat "$RUN_DIR/server-qemu.log" "$server_log" >&2 2>/dev/null
            NET_PAIR_SERVER_PID=""
            return 1
        fi
        sleep 0.05
    done
    echo "pre_net_pair: server VM not listening after 60 s:" >&2
    tail -n 20 "$server_log" >&2 2>/dev/null
    kill -KILL "$NET_PAIR_SERVER_PID" 2>/dev/null
    NET_PAIR_SERVER_PID=""
    return 1
}

post_net_pair() {
    local client_status="$1" server_status=0 server_log="$RUN_DIR/server-serial.log"
    if [[ -n "$NET_PAIR_SERVER_PID" ]]; then
        if [[ "$client_status" -ne 33 ]]; then
            kill -KILL "$NET_PAIR_SERVER_PID" 2>/dev/null
        fi
        # The server VM ends by itself after the last connection; its own `timeout` bounds it.
        wait "$NET_PAIR_SERVER_PID" || server_status=$?
        NET_PAIR_SERVER_PID=""
    fi
    echo "post_net_pair: server VM:" >&2
    grep -E '^(net_pair:|test |kernel tests:|\[(WARN|ERROR))' "$server_log" | tr -d '\r' | sed 's/^/    /' >&2
    [[ "$client_status" -eq 33 ]] || return 0 # the client failed already
    local last
    last="$(tr -d '\r' <"$server_log" | grep -v '^[[:space:]]*$' | tail -n1)"
    if [[ "$server_status" -ne 33 || ! "$last" =~ ^kernel\ tests:\ [0-9]+\ passed,\ 0\ failed$ ]]; then
        echo "post_net_pair: server VM failed (status $server_status, last line '$last')" >&2
        return 1
    fi
    python3 "$NET_SYN_TOOL" --no-resets "$RUN_DIR/net_pair.pcap" 5000:1:1 5001:1:0 5002:0:0
}
