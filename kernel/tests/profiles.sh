# shellcheck shell=bash
# Per-test QEMU profiles for the in-QEMU kernel tests, sourced by `qemu-run.sh runner`.
#
# For a test binary <name>: `profile_<name>` appends QEMU arguments to the array QEMU_ARGS
# (and may change CMDLINE); `pre_<name>` runs before QEMU (prepare files, start servers);
# `post_<name> <qemu-status>` runs after QEMU exits (host-side checks and clean-up; nonzero
# fails the test). RUN_DIR is a fresh directory for this run (removed afterwards) and
# REPO_ROOT the repository. Every wait below is bounded.

PATTERN_TOOL="$REPO_ROOT/kernel/tests/host/ivshmem_pattern.py"

# ---------------------------------------------------------------- clock
# The guest compares its TSC clock with the CMOS RTC, which must follow the host's wall clock.
profile_clock() {
    QEMU_ARGS+=(-rtc base=utc,clock=host)
}

# ---------------------------------------------------------------- cmdline
# Appended to the runner's `test=cmdline`; must match BOOT_LINE in kernel/tests/cmdline.rs.
profile_cmdline() {
    CMDLINE+=" ip=10.0.0.1/24 peer=10.0.0.2 app=pingpong size=64K count=1000 smc=off conns=4 log=debug port=5001"
}

# ---------------------------------------------------------------- pci_scan
# q35 (host bridge 8086:29c0) + a modern virtio-net-pci without a backend + a 2 MiB
# ivshmem-plain (kernel/tests/pci_scan.rs expects exactly these).
profile_pci_scan() {
    QEMU_ARGS+=(
        -device virtio-net-pci,netdev=net0
        -netdev hubport,id=net0,hubid=0
        -object "memory-backend-file,id=shm0,share=on,mem-path=$RUN_DIR/pci_scan.shm,size=2M"
        -device ivshmem-plain,memdev=shm0
    )
}

pre_pci_scan() {
    python3 "$PATTERN_TOOL" create "$RUN_DIR/pci_scan.shm" $((2 << 20))
}

# ---------------------------------------------------------------- ivshmem_bar
# 4 MiB region filled with pattern 1 by the host; the guest checks it and writes pattern 2
# everywhere, which post_ checks in the file after QEMU has exited.
IVSHMEM_BAR_SIZE=$((4 << 20))

profile_ivshmem_bar() {
    QEMU_ARGS+=(
        -object "memory-backend-file,id=shm0,share=on,mem-path=$RUN_DIR/ivshmem_bar.shm,size=$IVSHMEM_BAR_SIZE"
        -device ivshmem-plain,memdev=shm0
    )
}

pre_ivshmem_bar() {
    python3 "$PATTERN_TOOL" create "$RUN_DIR/ivshmem_bar.shm" "$IVSHMEM_BAR_SIZE" &&
        python3 "$PATTERN_TOOL" fill "$RUN_DIR/ivshmem_bar.shm" 1 0 "$IVSHMEM_BAR_SIZE"
}

post_ivshmem_bar() {
    [[ "$1" -eq 33 ]] || return 0 # the guest failed already; nothing to check
    python3 "$PATTERN_TOOL" check "$RUN_DIR/ivshmem_bar.shm" 2 0 "$IVSHMEM_BAR_SIZE"
}

# ---------------------------------------------------------------- ivshmem_bar_high
# 1 GiB sparse region: too large for the 32-bit PCI window, so BAR2 lands above 4 GiB.
# Page lists must match kernel/tests/ivshmem_bar_high.rs.
IVSHMEM_HIGH_SIZE=$((1 << 30))
IVSHMEM_HIGH_HOST_PAGES=(0 4096 $((512 << 20)) $(((1 << 30) - 4096)))
IVSHMEM_HIGH_HOLE_PAGE=$((256 << 20))
IVSHMEM_HIGH_GUEST_PAGES=(8192 $((768 << 20)) $(((1 << 30) - 4096)))

profile_ivshmem_bar_high() {
    QEMU_ARGS+=(
        -object "memory-backend-file,id=shm0,share=on,mem-path=$RUN_DIR/ivshmem_high.shm,size=$IVSHMEM_HIGH_SIZE"
        -device ivshmem-plain,memdev=shm0
    )
}

plat_pages_args() { # plat_pages_args PAGE... -> "PAGE 4096 PAGE 4096 ..."
    local p
    for p in "$@"; do printf '%s 4096 ' "$p"; done
}

pre_ivshmem_bar_high() {
    local f="$RUN_DIR/ivshmem_high.shm"
    # shellcheck disable=SC2046
    python3 "$PATTERN_TOOL" create "$f" "$IVSHMEM_HIGH_SIZE" &&
        python3 "$PATTERN_TOOL" fill "$f" 1 $(plat_pages_args "${IVSHMEM_HIGH_HOST_PAGES[@]}")
}

post_ivshmem_bar_high() {
    [[ "$1" -eq 33 ]] || return 0
    local f="$RUN_DIR/ivshmem_high.shm" last=$(((1 << 30) - 4096))
    # Host pages the guest did not overwrite keep pattern 1; the hole stays zero; the
    # guest's pages (including the last page) hold pattern 2.
    # shellcheck disable=SC2046
    python3 "$PATTERN_TOOL" check "$f" 1 $(plat_pages_args 0 4096 $((512 << 20))) &&
        python3 "$PATTERN_TOOL" check "$f" 0 "$IVSHMEM_HIGH_HOLE_PAGE" 4096 &&
        python3 "$PATTERN_TOOL" check "$f" 2 $(plat_pages_args "${IVSHMEM_HIGH_GUEST_PAGES[@]}") &&
        [[ " ${IVSHMEM_HIGH_GUEST_PAGES[*]} " == *" $last "* ]]
}

# ---------------------------------------------------------------- msix_doorbell
# ivshmem-doorbell with 2 MSI-X vectors, connected to our ivshmem-server (tools/ivshmem-server).
# pre_ builds and starts the server and waits for its socket; post_ stops it.
profile_msix_doorbell() {
    QEMU_ARGS+=(
        -chardev "socket,path=$RUN_DIR/ivshmem.sock,id=ivsh0"
        -device ivshmem-doorbell,chardev=ivsh0,vectors=2
    )
}

pre_msix_doorbell() {
    local target="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/host-hooks"
    # A separate target directory: the cargo that runs this test holds the lock on its own.
    (cd "$REPO_ROOT" && CARGO_TARGET_DIR="$target" cargo build --quiet -p ivshmem-server) || {
        echo "pre_msix_doorbell: cannot build ivshmem-server" >&2
        return 1
    }
    "$target/debug/ivshmem-server" -S "$RUN_DIR/ivshmem.sock" -l 4M -n 2 \
        >"$RUN_DIR/ivshmem-server.log" 2>&1 &
    IVSHMEM_SERVER_PID=$!
    local i
    for ((i = 0; i < 200; i++)); do # up to 10 s
        [[ -S "$RUN_DIR/ivshmem.sock" ]] && return 0
        if ! kill -0 "$IVSHMEM_SERVER_PID" 2>/dev/null; then
            echo "pre_msix_doorbell: ivshmem-server exited:" >&2
            cat "$RUN_DIR/ivshmem-server.log" >&2
            return 1
        fi
        sleep 0.05
    done
    echo "pre_msix_doorbell: no socket from ivshmem-server after 10 s" >&2
    kill "$IVSHMEM_SERVER_PID" 2>/dev/null
    return 1
}

post_msix_doorbell() {
    if [[ -n "${IVSHMEM_SERVER_PID:-}" ]]; then
        kill "$IVSHMEM_SERVER_PID" 2>/dev/null
        wait "$IVSHMEM_SERVER_PID" 2>/dev/null
        IVSHMEM_SERVER_PID=""
    fi
    return 0
}

# ---------------------------------------------------------------- other areas' profiles
# Other test areas keep their profiles in kernel/tests/profiles-<area>.sh (same conventions);
# they are sourced here so the runner needs to know only this file.
for _profiles in "$REPO_ROOT"/kernel/tests/profiles-*.sh; do
    if [[ -f "$_profiles" ]]; then
        # shellcheck source=/dev/null
        source "$_profiles"
    fi
done
unset _profiles
