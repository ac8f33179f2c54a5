# shellcheck shell=bash
# QEMU profiles of the ivshmem ISM in-QEMU tests (kernel/tests/ivshmem_*.rs), in the format
# of kernel/tests/profiles.sh: profile_<name> appends to QEMU_ARGS, pre_<name> runs before
# QEMU, post_<name> <qemu-status> after it. RUN_DIR and REPO_ROOT come from the runner.
# Every wait is bounded.

# Starts tools/ivshmem-server on $RUN_DIR/ivshmem.sock with the given extra arguments and
# waits (up to 10 s) for its socket. Sets IVSH_SERVER_PID.
ivsh_start_server() {
    local target="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/host-hooks"
    # A separate target directory: the cargo that runs this test holds the lock on its own.
    (cd "$REPO_ROOT" && CARGO_TARGET_DIR="$target" cargo build --quiet -p ivshmem-server) || {
        echo "ivshmem profile: cannot build ivshmem-server" >&2
        return 1
    }
    "$target/debug/ivshmem-server" -S "$RUN_DIR/ivshmem.sock" "$@" \
        >"$RUN_DIR/ivshmem-server.log" 2>&1 &
    IVSH_SERVER_PID=$!
    local i
    for ((i = 0; i < 200; i++)); do
        [[ -S "$RUN_DIR/ivshmem.sock" ]] && return 0
        if ! kill -0 "$IVSH_SERVER_PID" 2>/dev/null; then
            echo "ivshmem profile: ivshmem-server exited:" >&2
            cat "$RUN_DIR/ivshmem-server.log" >&2
            IVSH_SERVER_PID=""
            return 1
        fi
        sleep 0.05
    done
    echo "ivshmem profile: no socket from ivshmem-server after 10 s" >&2
    ivsh_stop_server
    return 1
}

ivsh_stop_server() {
    if [[ -n "${IVSH_SERVER_PID:-}" ]]; then
        kill "$IVSH_SERVER_PID" 2>/dev/null
        wait "$IVSH_SERVER_PID" 2>/dev/null
        IVSH_SERVER_PID=""
    fi
    return 0
}

# ---------------------------------------------------------------- ivshmem_ism
# One VM: ivshmem-doorbell (2 MSI-X vectors: 0 control, 1 DMB signal) on a 4 MiB region
# formatted by our server for 4 peers.
profile_ivshmem_ism() {
    QEMU_ARGS+=(
        -chardev "socket,path=$RUN_DIR/ivshmem.sock,id=ivsh0"
        -device ivshmem-doorbell,chardev=ivsh0,vectors=2
    )
}

pre_ivshmem_ism() {
    ivsh_start_server -l 4M -n 2 --max-peers 4
}

post_ivshmem_ism() {
    ivsh_stop_server
}

# ---------------------------------------------------------------- ivshmem_pair
# Two VMs on one region: the runner boots this image as VM A; pre_ starts the server and
# the same image as VM B (same QEMU base arguments as the runner, serial to a file, its own
# hard timeout); post_ requires VM B's pass code and final line as well.
IVSH_PAIR_TIMEOUT=240

profile_ivshmem_pair() {
    ((QEMU_TIMEOUT < IVSH_PAIR_TIMEOUT)) && QEMU_TIMEOUT=$IVSH_PAIR_TIMEOUT
    QEMU_ARGS+=(
        -chardev "socket,path=$RUN_DIR/ivshmem.sock,id=ivsh0"
        -device ivshmem-doorbell,chardev=ivsh0,vectors=2
    )
}

pre_ivshmem_pair() {
    # `image` is the runner's local variable (bash scoping: visible in this hook).
    [[ -n "${image:-}" && -f "$image" ]] || {
        echo "pre_ivshmem_pair: the runner's image path is not visible" >&2
        return 1
    }
    ivsh_start_server -l 4M -n 2 --max-peers 4 || return 1
    base_args tcg
    local cmd=("${QEMU_CMD[@]}"
        -serial "file:$RUN_DIR/peer-b.serial"
        -kernel "$image" -append "test=ivshmem_pair"
        -chardev "socket,path=$RUN_DIR/ivshmem.sock,id=ivsh0"
        -device ivshmem-doorbell,chardev=ivsh0,vectors=2)
    timeout -s KILL "$QEMU_TIMEOUT" "${cmd[@]}" </dev/null >"$RUN_DIR/peer-b.qemu.log" 2>&1 &
    IVSH_PEER_PID=$!
    return 0
}

post_ivshmem_pair() {
    local status=0 last=""
    if [[ -n "${IVSH_PEER_PID:-}" ]]; then
        wait "$IVSH_PEER_PID" || status=$?
        IVSH_PEER_PID=""
    else
        status=1
    fi
    ivsh_stop_server
    last="$(tr -d '\r' <"$RUN_DIR/peer-b.serial" 2>/dev/null | grep -v '^[[:space:]]*$' | tail -n1 || true)"
    echo "post_ivshmem_pair: VM B exit status $status, final line '$last'" >&2
    if [[ "$status" -eq 33 && "$last" =~ ^kernel\ tests:\ [0-9]+\ passed,\ 0\ failed$ ]]; then
        grep -E '^(pair|ivshmem):' "$RUN_DIR/peer-b.serial" | sed 's/^/VM B: /' >&2 || true
        return 0
    fi
    echo "post_ivshmem_pair: VM B failed; its serial output:" >&2
    tr -d '\r' <"$RUN_DIR/peer-b.serial" | tail -n 40 | sed 's/^/VM B: /' >&2 || true
    cat "$RUN_DIR/peer-b.qemu.log" >&2 || true
    return 1
}
