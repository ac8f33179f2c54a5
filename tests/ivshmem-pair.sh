#!/usr/bin/env bash
# ivshmem-pair.sh — boots two smcd VMs on one ivshmem region served by our ivshmem-server.
#
# Usage: tests/ivshmem-pair.sh [options] IMAGE_A [IMAGE_B]
#   IMAGE_B defaults to IMAGE_A (the same image in both VMs; it can tell the two apart by
#   its ivshmem peer ID).
# Options:
#   --append-a STR   kernel command line of VM A (default: test=<name of IMAGE_A>)
#   --append-b STR   kernel command line of VM B (default: test=<name of IMAGE_B>)
#   --size SIZE      region size for the server (default 4M)
#   --max-peers N    directory entries (default 4)
#   --timeout SECS   hard limit for each VM (default 240)
#   --expect REGEX   final serial line each VM must print
#                    (default: ^kernel tests: [0-9]+ passed, 0 failed$)
#   --keep DIR       write the logs to DIR and keep them (default: a temp dir, removed on
#                    success, kept and named on failure)
# Exit status 0 only if both VMs exit through isa-debug-exit with the pass code (33) and
# print the expected final line. Each VM has its own serial log (serial-a.log,
# serial-b.log) and QEMU log; the server's log is server.log. Every wait is bounded.
#
# Both VMs get the QEMU base arguments of qemu-run.sh (q35, TCG, -cpu max, 128 MiB,
# isa-debug-exit at 0xf4) plus `-device ivshmem-doorbell,chardev=...,vectors=2`.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
QEMU_BIN="${QEMU_BIN:-qemu-system-x86_64}"
EXIT_PASS=33

append_a="" append_b="" size="4M" max_peers=4 timeout_s=240 keep=""
expect='^kernel tests: [0-9]+ passed, 0 failed$'
images=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --append-a) append_a="$2"; shift 2 ;;
        --append-b) append_b="$2"; shift 2 ;;
        --size) size="$2"; shift 2 ;;
        --max-peers) max_peers="$2"; shift 2 ;;
        --timeout) timeout_s="$2"; shift 2 ;;
        --expect) expect="$2"; shift 2 ;;
        --keep) keep="$2"; shift 2 ;;
        -h|--help) sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "ivshmem-pair: unknown option $1" >&2; exit 2 ;;
        *) images+=("$1"); shift ;;
    esac
done
[[ ${#images[@]} -ge 1 && ${#images[@]} -le 2 ]] || { echo "usage: ivshmem-pair.sh [options] IMAGE_A [IMAGE_B]" >&2; exit 2; }
image_a="${images[0]}"
image_b="${images[1]:-$image_a}"
for img in "$image_a" "$image_b"; do
    [[ -f "$img" ]] || { echo "ivshmem-pair: no such image: $img" >&2; exit 2; }
done
test_name() { basename "$1" | sed -E 's/-[0-9a-f]{16}$//'; }
[[ -n "$append_a" ]] || append_a="test=$(test_name "$image_a")"
[[ -n "$append_b" ]] || append_b="test=$(test_name "$image_b")"

if [[ -n "$keep" ]]; then
    mkdir -p "$keep"
    dir="$(cd "$keep" && pwd)"
else
    dir="$(mktemp -d "${TMPDIR:-/tmp}/smcd-pair.XXXXXX")"
fi

server_pid="" pid_a="" pid_b=""
cleanup() {
    local p
    for p in "$pid_a" "$pid_b" "$server_pid"; do
        [[ -n "$p" ]] && kill -KILL "$p" 2>/dev/null || true
    done
    for p in "$pid_a" "$pid_b" "$server_pid"; do
        [[ -n "$p" ]] && wait "$p" 2>/dev/null || true
    done
}
trap cleanup EXIT

# The server, built into its own target directory (a cargo running this script may hold
# the lock of the main one).
target="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/host-hooks"
(cd "$REPO_ROOT" && CARGO_TARGET_DIR="$target" cargo build --quiet -p ivshmem-server) || {
    echo "ivshmem-pair: cannot build ivshmem-server" >&2
    exit 1
}
sock="$dir/ivshmem.sock"
"$target/debug/ivshmem-server" -S "$sock" -l "$size" -n 2 --max-peers "$max_peers" >"$dir/server.log" 2>&1 &
server_pid=$!
for ((i = 0; i < 200; i++)); do # up to 10 s
    [[ -S "$sock" ]] && break
    kill -0 "$server_pid" 2>/dev/null || { echo "ivshmem-pair: server exited:" >&2; cat "$dir/server.log" >&2; exit 1; }
    sleep 0.05
done
[[ -S "$sock" ]] || { echo "ivshmem-pair: no server socket after 10 s" >&2; exit 1; }

start_vm() { # start_vm <tag> <image> <cmdline>; the caller takes the PID from $!
    local tag="$1" image="$2" cmdline="$3"
    timeout -s KILL "$timeout_s" "$QEMU_BIN" -machine q35 -accel tcg -cpu max -m 128M \
        -nodefaults -no-user-config -display none -no-reboot \
        -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
        -serial "file:$dir/serial-$tag.log" \
        -kernel "$image" -append "$cmdline" \
        -chardev "socket,path=$sock,id=ivsh0" \
        -device ivshmem-doorbell,chardev=ivsh0,vectors=2 \
        </dev/null >"$dir/qemu-$tag.log" 2>&1 &
}
start_vm a "$image_a" "$append_a"
pid_a=$!
start_vm b "$image_b" "$append_b"
pid_b=$!
status_a=0 status_b=0
wait "$pid_a" || status_a=$?
pid_a=""
wait "$pid_b" || status_b=$?
pid_b=""

verdict() { # verdict <tag> <status>: 0 if the VM passed
    local tag="$1" status="$2" last
    last="$(tr -d '\r' <"$dir/serial-$tag.log" 2>/dev/null | grep -v '^[[:space:]]*$' | tail -n1 || true)"
    if [[ "$status" -eq "$EXIT_PASS" && "$last" =~ $expect ]]; then
        echo "ivshmem-pair: VM $tag passed ($last)"
        return 0
    fi
    case "$status" in
        137) echo "ivshmem-pair: VM $tag killed after ${timeout_s}s; last line '$last'" >&2 ;;
        *) echo "ivshmem-pair: VM $tag failed: exit status $status, last line '$last'" >&2 ;;
    esac
    tr -d '\r' <"$dir/serial-$tag.log" 2>/dev/null | tail -n 30 | sed "s/^/  VM $tag: /" >&2 || true
    sed "s/^/  qemu $tag: /" "$dir/qemu-$tag.log" >&2 || true
    return 1
}
ok=0
verdict a "$status_a" || ok=1
verdict b "$status_b" || ok=1
grep -hE '^(pair|ivshmem):' "$dir/serial-a.log" "$dir/serial-b.log" 2>/dev/null | sed 's/^/  /' || true
if [[ "$ok" -eq 0 && -z "$keep" ]]; then
    cleanup
    trap - EXIT
    rm -rf -- "$dir"
else
    echo "ivshmem-pair: logs in $dir"
fi
exit "$ok"
