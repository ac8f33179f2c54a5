# shellcheck shell=bash
# shellcheck disable=SC2054 # commas belong to QEMU option values
# scripts/pair.sh: two smcd VMs on one host — `qemu-run.sh pair` and `qemu-run.sh demo`.
# Sourced by qemu-run.sh (uses its log, die, base_args, check_prereqs, REPO_ROOT, TARGET).
#
# A pair is: our ivshmem-server (tools/ivshmem-server) on $OUT/ivshmem.sock, and two QEMUs
# (TCG, -m 64M), each with a virtio-net NIC and an ivshmem-doorbell (vectors=2) on that
# socket. The NICs are joined by a QEMU `stream` netdev on a Unix socket ($OUT/link.sock; a UDP
# socket netdev on 127.0.0.1 with --rejoin). The server VM (app=echo,
# app=sink or app=floor-server; else vm1) starts first and listens on the link; the client VM
# starts once the server printed its `{"event":"ready"}` line, and connects. Addresses: vm0 10.0.5.1/24, vm1 10.0.5.2/24 (prepended to each command line).
# Each VM's serial goes to $OUT/vmN.log and to stdout as `vmN| <line>`. Control lines of
# the launcher go to stdout as `pair| <text>` (`pair| vmN pid P`, `pair| vmN exited S`,
# `pair| done`); its diagnostics to stderr.
#
# Exit status of `pair`: 0 when every VM printed a `{"event":"done",...}` line and no VM
# printed an error (`"event":"error"`, a panic, a CPU exception); 1 on such an error or a
# VM that exited before its done line; 124 on timeout; 2 on bad usage or setup failure.

PAIR_IP0="10.0.5.1"
PAIR_IP1="10.0.5.2"
PAIR_DONE_RE='"event" *: *"done"'
PAIR_ERROR_RE='"event" *: *"error"|panicked at|CPU exception'
PAIR_FATAL_RE='panicked at|CPU exception'

# Set by pair_start; read by pair_teardown and pair_wait.
PAIR_PIDS=()         # every pid pair_start started (server, QEMUs), for teardown
PAIR_VM_PID=(-1 -1)  # QEMU pid per VM (-1: not running)
PAIR_VM_ON=(0 0)     # whether the VM takes part in this run
PAIR_SERVER_PID=""
PAIR_OUT=""

pair_usage() {
    cat <<'EOF'
qemu-run.sh pair [options]: boot two smcd VMs linked by virtio-net and one ivshmem region
  --vm0 "cmdline"      vm0's kernel command line (after ip=10.0.5.1/24 peer=10.0.5.2)
  --vm1 "cmdline"      vm1's kernel command line (after ip=10.0.5.2/24 peer=10.0.5.1)
  --only-vm0           boot vm0 alone with two NICs on one QEMU hub (app=loopback)
  --no-ivshmem-vm1     vm1 gets no ivshmem device (SMC-D must fall back to TCP)
  --wait-vm0-only      finish when vm0 printed its done line (vm1 is stopped then)
  --allow-errors       an error line or a VM that ends early does not stop the run: wait
                       for the other VM's done line (peer-death tests); status still 1
  --rejoin "cmdline"   when the client VM ends before its done line (killed), boot a
                       replacement once with this command line (same address, NIC link and
                       ivshmem region; the ivshmem server gives it a peer id); the old
                       serial log is kept as vmN.before-rejoin.log (`pair| vmN rejoined`)
  --pcap FILE          record vm0's NIC traffic (both directions) with filter-dump
  --timeout S          overall limit in seconds (default 120)
  --out DIR            keep logs in DIR (default: a fresh temp dir, printed)
  --image FILE         boot FILE instead of building the release image
  --region SIZE        ivshmem region size (default 64M); --max-peers N (default 4)
Environment: PAIR_TARGET_DIR cargo target dir for the builds (default $CARGO_TARGET_DIR or
target/); QEMU_ACCEL (default tcg).
EOF
}

# pair_free_port udp: prints a UDP port on 127.0.0.1 that was free a moment ago.
pair_free_port() {
    python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# pair_build [image-var]: builds the release kernel image and the ivshmem server; sets
# PAIR_IMAGE (unless already set) and PAIR_SERVER_BIN.
pair_build() {
    local tdir="${PAIR_TARGET_DIR:-${CARGO_TARGET_DIR:-$REPO_ROOT/target}}"
    if [[ -z "${PAIR_IMAGE:-}" ]]; then
        log "building the kernel image (release) in $tdir"
        (cd "$REPO_ROOT" && CARGO_TARGET_DIR="$tdir" cargo build --quiet -p kernel --release --target "$TARGET" >&2) ||
            { log "kernel build failed"; return 2; }
        PAIR_IMAGE="$tdir/$TARGET/release/kernel"
    fi
    [[ -f "$PAIR_IMAGE" ]] || { log "no such image: $PAIR_IMAGE"; return 2; }
    # The server only hands out eventfds (doorbells go QEMU to QEMU): the dev profile,
    # which the test suite builds too, is enough and much quicker to build.
    log "building ivshmem-server"
    (cd "$REPO_ROOT" && CARGO_TARGET_DIR="$tdir" cargo build --quiet -p ivshmem-server >&2) ||
        { log "ivshmem-server build failed"; return 2; }
    PAIR_SERVER_BIN="$tdir/debug/ivshmem-server"
    [[ -x "$PAIR_SERVER_BIN" ]] || { log "no server binary at $PAIR_SERVER_BIN"; return 2; }
}

# pair_start_server <size> <max-peers>: starts the server on $PAIR_OUT/ivshmem.sock and waits
# (at most 10 s) for its readiness line; the socket exists only once it accepts clients.
pair_start_server() {
    local size="$1" max_peers="$2" sock="$PAIR_OUT/ivshmem.sock" i
    "$PAIR_SERVER_BIN" -S "$sock" -l "$size" -n 2 --max-peers "$max_peers" \
        >"$PAIR_OUT/ivshmem-server.out" 2>"$PAIR_OUT/ivshmem-server.log" </dev/null &
    PAIR_SERVER_PID=$!
    PAIR_PIDS+=("$PAIR_SERVER_PID")
    for ((i = 0; i < 200; i++)); do
        if grep -q '^ivshmem-server: listening on ' "$PAIR_OUT/ivshmem-server.out" 2>/dev/null && [[ -S "$sock" ]]; then
            return 0
        fi
        if ! kill -0 "$PAIR_SERVER_PID" 2>/dev/null; then
            log "ivshmem-server exited:"
            cat "$PAIR_OUT/ivshmem-server.log" >&2
            return 2
        fi
        sleep 0.05
    done
    log "ivshmem-server not listening after 10 s"
    return 2
}

# pair_prefix <tag>: copies stdin to stdout with `<tag>| ` before each line (CR removed).
pair_prefix() {
    local tag="$1" line
    while IFS= read -r line || [[ -n "$line" ]]; do
        printf '%s| %s\n' "$tag" "${line%$'\r'}"
    done
}

# pair_start_vm <n> <cmdline> <ivshmem:0|1> <netdev-args...>: starts QEMU for vm<n>; its
# serial goes to $PAIR_OUT/vm<n>.log and, prefixed, to stdout. Sets PAIR_VM_PID[n].
pair_start_vm() {
    local n="$1" cmdline="$2" ivshmem="$3"
    shift 3
    # shellcheck disable=SC2034 # read by base_args (qemu-run.sh)
    local QEMU_MEMORY="${PAIR_MEMORY:-64M}"
    base_args "${QEMU_ACCEL:-tcg}"
    if [[ "${PAIR_KEEP_RUNNING:-0}" -eq 1 ]]; then
        # No isa-debug-exit: the guest halts after its done line and QEMU keeps running
        # until the teardown (see --rejoin).
        local i kept=()
        for ((i = 0; i < ${#QEMU_CMD[@]}; i++)); do
            if [[ "${QEMU_CMD[i]}" == -device && "${QEMU_CMD[i + 1]:-}" == isa-debug-exit* ]]; then
                i=$((i + 1))
                continue
            fi
            kept+=("${QEMU_CMD[i]}")
        done
        QEMU_CMD=("${kept[@]}")
    fi
    QEMU_CMD+=(
        -chardev "stdio,id=console,logfile=$PAIR_OUT/vm$n.log,signal=off"
        -serial chardev:console
        -kernel "$PAIR_IMAGE" -append "$cmdline"
        "$@"
    )
    if [[ "$ivshmem" -eq 1 ]]; then
        QEMU_CMD+=(
            -chardev "socket,path=$PAIR_OUT/ivshmem.sock,id=ivsh0"
            -device ivshmem-doorbell,chardev=ivsh0,vectors=2
        )
    fi
    : >"$PAIR_OUT/vm$n.log"
    printf '%s\n' "${QEMU_CMD[*]}" >"$PAIR_OUT/vm$n.cmd"
    # Process substitution: $! is QEMU itself, the prefixer follows it.
    "${QEMU_CMD[@]}" </dev/null 2>>"$PAIR_OUT/vm$n.qemu.log" > >(pair_prefix "vm$n") &
    PAIR_VM_PID[n]=$!
    PAIR_PIDS+=("${PAIR_VM_PID[n]}")
    printf 'pair| vm%s pid %s\n' "$n" "${PAIR_VM_PID[n]}"
}

# pair_wait_line <file> <regex> <pid> <seconds>: waits for a line matching regex in file while
# pid lives; 0 found, 1 pid ended, 124 timeout.
pair_wait_line() {
    local file="$1" re="$2" pid="$3" limit="$4" deadline
    deadline=$((SECONDS + limit))
    while ((SECONDS < deadline)); do
        grep -qE -- "$re" "$file" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || { grep -qE -- "$re" "$file" 2>/dev/null && return 0; return 1; }
        sleep 0.05
    done
    return 124
}

pair_teardown() {
    local p
    for p in "${PAIR_PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
    done
    for p in "${PAIR_PIDS[@]}"; do
        # Bounded: QEMU and the server end on SIGTERM at once; KILL after 2 s.
        local i
        for ((i = 0; i < 40; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    PAIR_PIDS=()
    PAIR_VM_PID=(-1 -1)
    PAIR_SERVER_PID=""
}

# pair_run [options]: one pair run (options as in pair_usage). Needs PAIR_IMAGE and
# PAIR_SERVER_BIN (pair_build). Sets PAIR_OUT. Returns the pair exit status.
pair_run() {
    local vm0="" vm1="" only0=0 ivsh1=1 pcap="" timeout_s=120 out="" region="64M" max_peers=4
    local wait1=1 allow_errors=0 rejoin="" rejoined=0
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --vm0) vm0="$2"; shift 2 ;;
            --vm1) vm1="$2"; shift 2 ;;
            --only-vm0) only0=1; shift ;;
            --wait-vm0-only) wait1=0; shift ;;
            --allow-errors) allow_errors=1; shift ;;
            --rejoin) rejoin="$2"; shift 2 ;;
            --no-ivshmem-vm1) ivsh1=0; shift ;;
            --pcap) pcap="$2"; shift 2 ;;
            --timeout) timeout_s="$2"; shift 2 ;;
            --out) out="$2"; shift 2 ;;
            --image) PAIR_IMAGE="$2"; shift 2 ;;
            --region) region="$2"; shift 2 ;;
            --max-peers) max_peers="$2"; shift 2 ;;
            -h|--help) pair_usage; return 0 ;;
            *) log "pair: unknown option '$1'"; pair_usage >&2; return 2 ;;
        esac
    done
    [[ "$timeout_s" =~ ^[0-9]+$ ]] || { log "pair: --timeout needs seconds"; return 2; }
    if [[ -n "$out" ]]; then
        mkdir -p "$out" && PAIR_OUT="$(cd "$out" && pwd)"
    else
        PAIR_OUT="$(mktemp -d "${TMPDIR:-/tmp}/smcd-pair.XXXXXX")"
    fi
    log "pair: logs in $PAIR_OUT"
    local started=$SECONDS
    pair_start_server "$region" "$max_peers" || return 2

    # Start order: the server VM (app=echo/sink/floor-server; else vm1) first; it also listens on the
    # link. The client VM starts once the server printed `{"event":"ready"}` (apps do not
    # retry a refused connect), or, for other apps, its first serial line (by then its
    # QEMU listens on the link).
    local first=1 second=0
    [[ " $vm0 " =~ \ app=(echo|sink|floor-server)\  && ! " $vm1 " =~ \ app=(echo|sink|floor-server)\  ]] && { first=0; second=1; }
    local dump=() netl=() netc=() net0=()
    PAIR_VM_ON=(1 1)
    [[ $only0 -eq 1 ]] && PAIR_VM_ON=(1 0)
    if [[ $only0 -eq 0 ]]; then
        # A Unix `stream` netdev: lossless (QEMU waits for the socket to drain) and no Nagle.
        # A UDP `socket` netdev dropped frames whenever the receiving QEMU fell behind: the
        # host's default 208 KiB socket buffer holds only a dozen or so 9 KiB datagrams (by
        # their kernel size), fewer than a 128 KiB TCP window, and smoltcp then waited out
        # retransmission timeouts (TCP stream 0.5 MB/s with jumbo
        # frames; 11-39 MB/s run to run with 1500-byte ones). A TCP `socket` netdev meets
        # Nagle + the host's delayed ACK on the listening side (QEMU 7.2 sets TCP_NODELAY
        # only when connecting: 16 KiB ping-pong p50 44 ms).
        # With --rejoin the link stays UDP: QEMU 7.2 corrupts its heap when a `stream`
        # client reconnects.
        netl=(-netdev "stream,id=n0,server=on,addr.type=unix,addr.path=$PAIR_OUT/link.sock")
        netc=(-netdev "stream,id=n0,server=off,addr.type=unix,addr.path=$PAIR_OUT/link.sock")
        if [[ -n "$rejoin" ]]; then
            local port1 port2
            port1="$(pair_free_port udp)"
            port2="$(pair_free_port udp)"
            while [[ "$port2" == "$port1" ]]; do port2="$(pair_free_port udp)"; done
            netl=(-netdev "socket,id=n0,udp=127.0.0.1:$port2,localaddr=127.0.0.1:$port1")
            netc=(-netdev "socket,id=n0,udp=127.0.0.1:$port1,localaddr=127.0.0.1:$port2")
        fi
    else
        # Two NICs on one QEMU hub: client and server inside one image (app=loopback).
        net0=(-netdev hubport,id=n0,hubid=0 -device virtio-net-pci,netdev=n0,mac=52:54:00:00:05:01
              -netdev hubport,id=n1,hubid=0 -device virtio-net-pci,netdev=n1,mac=52:54:00:00:05:03)
    fi
    [[ -n "$pcap" ]] && dump=(-object "filter-dump,id=dump0,netdev=n0,file=$pcap")
    local cmdl=("ip=$PAIR_IP0/24 peer=$PAIR_IP1 $vm0" "ip=$PAIR_IP1/24 peer=$PAIR_IP0 $vm1")
    cmdl[0]="${cmdl[0]% }"
    cmdl[1]="${cmdl[1]% }"
    local ivsh=(1 "$ivsh1") mac=(52:54:00:00:05:01 52:54:00:00:05:02)
    PAIR_NET_CONNECT=("${netc[@]}" -device "virtio-net-pci,netdev=n0,mac=${mac[second]}")

    if [[ $only0 -eq 1 ]]; then
        pair_start_vm 0 "${cmdl[0]}" 1 "${net0[@]}" "${dump[@]}"
    else
        local ldump=() cdump=()
        if [[ $first -eq 0 ]]; then ldump=("${dump[@]}"); else cdump=("${dump[@]}"); fi
        pair_start_vm "$first" "${cmdl[first]}" "${ivsh[first]}" "${netl[@]}" \
            -device "virtio-net-pci,netdev=n0,mac=${mac[first]}" "${ldump[@]}"
        local st=0 re='.'
        [[ " ${cmdl[first]} " =~ \ app=(echo|sink|floor-server)\  ]] && re='"event" *: *"ready"'
        pair_wait_line "$PAIR_OUT/vm$first.log" "$re" "${PAIR_VM_PID[first]}" "$timeout_s" || st=$?
        if [[ $st -ne 0 ]]; then
            log "pair: vm$first not ready (status $st; waited for /$re/)"
            cat "$PAIR_OUT/vm$first.qemu.log" >&2 2>/dev/null || true
            pair_teardown
            return $((st == 124 ? 124 : 1))
        fi
        pair_start_vm "$second" "${cmdl[second]}" "${ivsh[second]}" "${PAIR_NET_CONNECT[@]}" "${cdump[@]}"
    fi

    # Wait for every VM's done line. A VM's error line ends the run (status 1) once that
    # VM printed its done line; a panic or CPU exception, or a VM ending early, at once;
    # the deadline with status 124.
    local deadline=$((started + timeout_s)) result="" n done_flags=(0 0) errors_seen=(0 0)
    while [[ -z "$result" ]]; do
        local all=1
        for n in 0 1; do
            [[ ${PAIR_VM_ON[n]} -eq 1 && ${done_flags[n]} -eq 0 ]] || continue
            [[ $n -eq 1 && $wait1 -eq 0 ]] && continue
            local logf="$PAIR_OUT/vm$n.log"
            if grep -qE -- "$PAIR_ERROR_RE" "$logf" 2>/dev/null && [[ ${errors_seen[n]} -eq 0 ]]; then
                log "pair: vm$n reported an error: $(grep -m1 -E -- "$PAIR_ERROR_RE" "$logf" | tr -d '\r')"
                errors_seen[n]=1
                # A panic or CPU exception ends the run at once (no done line follows).
                if [[ $allow_errors -eq 0 ]] && grep -qE -- "$PAIR_FATAL_RE" "$logf" 2>/dev/null; then
                    result=1
                    break
                fi
            fi
            if grep -qE -- "$PAIR_DONE_RE" "$logf" 2>/dev/null; then
                done_flags[n]=1
                # Without --allow-errors, a VM's error ends the run once that VM is done
                # (its counters and done line still come out).
                if [[ ${errors_seen[n]} -eq 1 && $allow_errors -eq 0 ]]; then
                    result=1
                    break
                fi
                continue
            fi
            all=0
            if ! kill -0 "${PAIR_VM_PID[n]}" 2>/dev/null; then
                local status=0
                wait "${PAIR_VM_PID[n]}" 2>/dev/null || status=$?
                if grep -qE -- "$PAIR_DONE_RE" "$logf" 2>/dev/null; then
                    # Its last lines arrived between the checks above and the exit.
                    done_flags[n]=1
                    grep -qE -- "$PAIR_ERROR_RE" "$logf" 2>/dev/null && errors_seen[n]=1
                    if [[ ${errors_seen[n]} -eq 1 && $allow_errors -eq 0 ]]; then
                        result=1
                        break
                    fi
                    continue
                fi
                printf 'pair| vm%s exited %s\n' "$n" "$status"
                log "pair: vm$n ended (QEMU status $status) before its done line"
                if [[ -n "$rejoin" && $rejoined -eq 0 && $n -eq $second && $only0 -eq 0 ]]; then
                    # A replacement client joins the same link and ivshmem region.
                    rejoined=1
                    mv "$logf" "$PAIR_OUT/vm$n.before-rejoin.log"
                    local ip=("$PAIR_IP0" "$PAIR_IP1") rline
                    rline="ip=${ip[n]}/24 peer=${ip[1 - n]} $rejoin"
                    # It keeps running after its done line (no isa-debug-exit) until the
                    # teardown: QEMU 7.2's ivshmem-doorbell in the survivor aborts ("double
                    # free") when a peer ID it saw leave and come back leaves again, so the
                    # newcomer must not leave while the survivor runs.
                    PAIR_KEEP_RUNNING=1 pair_start_vm "$n" "${rline% }" "${ivsh[n]}" "${PAIR_NET_CONNECT[@]}"
                    printf 'pair| vm%s rejoined\n' "$n"
                    continue
                fi
                errors_seen[n]=1
                if [[ $allow_errors -eq 1 ]]; then
                    done_flags[n]=1
                    continue
                fi
                result=1
                break
            fi
        done
        [[ -n "$result" ]] && break
        if [[ $all -eq 1 ]]; then
            result=0
            [[ "${errors_seen[*]}" == "0 0" ]] || result=1
            break
        fi
        if ((SECONDS >= deadline)); then
            log "pair: timeout after ${timeout_s}s"
            result=124
            break
        fi
        sleep 0.05
    done
    [[ $result -eq 0 ]] && printf 'pair| done\n'
    if [[ $result -ne 0 ]]; then
        for n in 0 1; do
            [[ ${PAIR_VM_ON[n]} -eq 1 && -s "$PAIR_OUT/vm$n.qemu.log" ]] || continue
            sed "s/^/  qemu vm$n: /" "$PAIR_OUT/vm$n.qemu.log" >&2
        done
    fi
    pair_teardown
    log "pair: finished in $((SECONDS - started))s with status $result"
    return "$result"
}

pair_traps() {
    trap 'pair_teardown; cleanup' EXIT
    trap 'log "interrupted"; pair_teardown; cleanup; exit 130' INT TERM
}

cmd_pair() {
    local a
    for a in "$@"; do [[ "$a" == -h || "$a" == --help ]] && { pair_usage; return 0; }; done
    check_qemu || exit 2
    pair_traps
    local image_given=""
    for a in "$@"; do [[ "$a" == --image ]] && image_given=1; done
    if [[ -z "$image_given" ]]; then PAIR_IMAGE=""; fi
    # --image is parsed by pair_run; pair_build needs it first.
    local args=("$@") i
    for ((i = 0; i < ${#args[@]}; i++)); do
        [[ "${args[i]}" == --image ]] && PAIR_IMAGE="${args[i + 1]:-}"
    done
    pair_build || return 2
    pair_run "$@"
}

# ---------------------------------------------------------------- demo
# Four pair runs (ping-pong and stream, over SMC-D and then plain TCP), then a table of the
# JSON results. Sizes are chosen to finish within 2 minutes under TCG.
DEMO_PP_COUNT="${DEMO_PP_COUNT:-2000}"
DEMO_PP_SIZE="${DEMO_PP_SIZE:-64}"
DEMO_STREAM_SIZE="${DEMO_STREAM_SIZE:-16M}"

cmd_demo() {
    check_prereqs --quiet || exit 2
    pair_traps
    PAIR_IMAGE=""
    pair_build || return 2
    local root
    root="$(mktemp -d "${TMPDIR:-/tmp}/smcd-demo.XXXXXX")"
    log "demo: logs in $root"
    local mode smc status=0 started=$SECONDS
    for mode in smcd tcp; do
        smc=on
        [[ $mode == tcp ]] && smc=off
        log "demo: ping-pong over $mode ($DEMO_PP_COUNT round trips of $DEMO_PP_SIZE bytes)"
        pair_run --out "$root/pingpong-$mode" --timeout 60 \
            --vm1 "app=echo port=7000 smc=$smc" --wait-vm0-only \
            --vm0 "app=pingpong port=7000 smc=$smc count=$DEMO_PP_COUNT size=$DEMO_PP_SIZE" \
            >/dev/null || { status=1; log "demo: ping-pong over $mode failed (logs: $root/pingpong-$mode)"; break; }
        log "demo: stream over $mode ($DEMO_STREAM_SIZE)"
        pair_run --out "$root/stream-$mode" --timeout 60 \
            --vm1 "app=sink port=7001 smc=$smc" \
            --vm0 "app=stream port=7001 smc=$smc size=$DEMO_STREAM_SIZE" \
            >/dev/null || { status=1; log "demo: stream over $mode failed (logs: $root/stream-$mode)"; break; }
    done
    [[ $status -eq 0 ]] || return 1
    demo_table "$root" || return 1
    log "demo: finished in $((SECONDS - started))s (logs: $root)"
}

# demo_table <dir>: reads the JSON result lines of the four runs and prints the table.
# Latency keys: p50/p90/p99/max with a unit suffix (_ns, _us; bare = µs); throughput from
# `bytes` and an elapsed time (`elapsed_ns`, `elapsed_us`, `secs`) or a rate key (`mib_s`,
# `mbps`, `gbps`). A missing figure is an error (no made-up numbers).
demo_table() {
    python3 - "$1" <<'PY'
import json, pathlib, re, sys

root = pathlib.Path(sys.argv[1])

def records(run, vm):
    out = []
    path = root / run / f"vm{vm}.log"
    for line in path.read_text(errors="replace").splitlines():
        line = line.strip()
        i = line.find("{")
        if i < 0:
            continue
        try:
            obj = json.loads(line[i:])
        except ValueError:
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out

UNIT = {"ns": 1e-3, "us": 1.0, "ms": 1e3}

def latency(objs, q):
    for obj in reversed(objs):
        for key, val in obj.items():
            m = re.fullmatch(rf"(?:rtt_|lat_|latency_)?{q}(?:_(ns|us|ms))?", key)
            if m and isinstance(val, (int, float)):
                return val * UNIT[m.group(1) or "us"]
    return None

def throughput(objs):
    """MiB/s from the last record that allows computing it."""
    for obj in reversed(objs):
        for key, scale in (("mib_s", 1.0), ("mbps", 1e6 / 8 / 2**20), ("gbps", 1e9 / 8 / 2**20),
                           ("bytes_per_sec", 1 / 2**20)):
            if isinstance(obj.get(key), (int, float)):
                return obj[key] * scale
        nbytes = obj.get("bytes")
        if not isinstance(nbytes, (int, float)):
            continue
        for key, scale in (("elapsed_ns", 1e-9), ("elapsed_us", 1e-6), ("elapsed_ms", 1e-3),
                           ("secs", 1.0), ("seconds", 1.0)):
            t = obj.get(key)
            if isinstance(t, (int, float)) and t > 0:
                return nbytes / (t * scale) / 2**20
    return None

def transport(objs):
    for obj in objs:
        for key in ("transport", "path", "mode"):
            if isinstance(obj.get(key), str):
                return obj[key]
    return "?"

rows, missing = {}, []
for mode in ("smcd", "tcp"):
    pp = records(f"pingpong-{mode}", 0)
    st = records(f"stream-{mode}", 0) + records(f"stream-{mode}", 1)
    row = {q: latency(pp, q) for q in ("p50", "p90", "p99", "max")}
    row["mib_s"] = throughput(st)
    row["transport"] = transport(pp) + " / " + transport(st)
    for k, v in row.items():
        if v is None:
            missing.append(f"{mode}: {k}")
    rows[mode] = row
if missing:
    print("demo: results missing from the JSON lines: " + ", ".join(missing), file=sys.stderr)
    sys.exit(1)
for mode, want in (("smcd", "smcd / smcd"), ("tcp", "tcp / tcp")):
    if rows[mode]["transport"] != want:
        print(f"demo: the {mode} runs used {rows[mode]['transport']}, expected {want}", file=sys.stderr)
        sys.exit(1)

def ratio(a, b):
    return f"{a / b:.2f}x" if b else "n/a"

print()
print(f"{'':22}{'SMC-D':>14}{'TCP':>14}{'SMC-D/TCP':>12}")
for q in ("p50", "p90", "p99", "max"):
    a, b = rows["smcd"][q], rows["tcp"][q]
    print(f"{'latency ' + q + ' (us)':22}{a:14.1f}{b:14.1f}{ratio(a, b):>12}")
a, b = rows["smcd"]["mib_s"], rows["tcp"]["mib_s"]
print(f"{'throughput (MiB/s)':22}{a:14.1f}{b:14.1f}{ratio(a, b):>12}")
print(f"{'transport seen':22}{rows['smcd']['transport']:>14}{rows['tcp']['transport']:>14}")
print()
PY
}
