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
