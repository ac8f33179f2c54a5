# shellcheck shell=bash
# scripts/bench.sh: `qemu-run.sh bench` — issue-6 measurements over VM pairs.
# Sourced by qemu-run.sh after scripts/pair.sh (uses pair_build, pair_run, pair_traps, log,
# check_prereqs, REPO_ROOT).
#
# One pair boot per (configuration, size): ping-pong (vm1 app=echo, vm0 app=pingpong) for
# sizes 14, 1024, 16384 and stream (vm1 app=sink, vm0 app=stream, verify=sample) for
# chunks 1K, 64K, 1M, in these configurations (SMC-D streams with dmb=$BENCH_STREAM_DMB,
# 1 MiB, on both VMs: a 64 KiB message then fits the ring whole; ping-pongs keep the
# stack's 64 KiB default):
#   smcd-irq   SMC-D over ivshmem, interrupts (smc=on spin=0)
#   smcd-poll  SMC-D over ivshmem, adaptive polling (smc=on spin=$BENCH_SPIN on both VMs)
#   tcp        plain TCP over virtio-net (smc=off on both)
#   loopback   SMC-D loopback inside one VM (--only-vm0; streams app=loopback, ping-pong
#              app=loopback-pingpong: echo server and pingpong client in one image)
#   floor      vm1 app=floor-server, vm0 app=floor count=N (shm cache-line ping-pong,
#              doorbell round trip, memcpy bandwidth)
# Output directory: <out>/<config>-<kind>-<param>/{run.json,vm0.log,vm1.log,...} and
# <out>/meta.json; then `smcd-bench report <out>` writes results.json, table.md, bench.png.

bench_usage() {
    cat <<'EOF'
qemu-run.sh bench [--quick] [--out DIR]: issue-6 benchmark (SMC-D interrupts/polling, TCP,
loopback, floors), one VM-pair boot per configuration and size; table, JSON and PNG in DIR
  --quick     short counts for the test suite (2000 round trips, 4 MiB streams)
  --out DIR   output directory (default out/bench-<UTC date>)
Environment (defaults full / quick):
  BENCH_PP_COUNT       ping-pong round trips per size (100000 / 2000)
  BENCH_FLOOR_COUNT    floor round trips (100000 / 2000)
  BENCH_STREAM_SMCD    bytes per SMC-D stream, ivshmem (64M / 4M)
  BENCH_STREAM_TCP     bytes per TCP stream (32M / 4M)
  BENCH_STREAM_LOOP    bytes per loopback stream (64M / 4M)
  BENCH_SPIN           adaptive polling budget in µs for smcd-poll (200)
  BENCH_STREAM_DMB     own DMB bytes of each VM in the SMC-D stream runs (1048576)
  BENCH_ONLY           space-separated configurations to run (default: all five)
  BENCH_BUDGET         seconds for all runs (600 / 300; the builds come on top); a run gets at most what is left
  QEMU_ACCEL           accelerator (default tcg)
EOF
}

# bench_json <file> <key=value>...: writes a flat JSON object (numbers stay numbers).
bench_json() {
    local file="$1"
    shift
    python3 - "$@" >"$file" <<'PY'
import json, sys
out = {}
for arg in sys.argv[1:]:
    k, _, v = arg.partition("=")
    if k.startswith("#"):
        out[k[1:]] = int(v)
    elif k.startswith("%"):
        out[k[1:]] = float(v)
    elif k.startswith("@"):
        out[k[1:]] = json.loads(v)
    else:
        out[k] = v
print(json.dumps(out))
PY
}

# bench_one <out> <config> <kind> <param> <timeout> <pair_run args...>: one pair run into
# <out>/<config>-<kind>-<param>; records run.json; never aborts the bench.
bench_one() {
    local out="$1" config="$2" kind="$3" param="$4" timeout_s="$5"
    shift 5
    local name="$config-$kind-$param" started=$SECONDS status=0 vm0="" vm1="" a prev=""
    for a in "$@"; do
        [[ $prev == --vm0 ]] && vm0="$a"
        [[ $prev == --vm1 ]] && vm1="$a"
        prev="$a"
    done
    mkdir -p "$out/$name"
    # The whole bench has a time budget: a run gets at most what is left of it, and none
    # starts with less than 15 s left (status 125: skipped, reported as a failed run).
    local left=$((BENCH_DEADLINE - SECONDS))
    ((timeout_s <= left)) || timeout_s=$left
    if ((timeout_s < 15)); then
        log "bench: $name skipped: the ${BENCH_BUDGET}s budget is spent"
        status=125
    else
        log "bench: $name (timeout ${timeout_s}s)"
        pair_run --out "$out/$name" --timeout "$timeout_s" "$@" >"$out/$name/pair.out" 2>"$out/$name/pair.err" ||
            status=$?
    fi
    [[ $status -eq 0 ]] || { log "bench: $name failed with status $status (logs: $out/$name)"; BENCH_FAILED=1; }
    bench_json "$out/$name/run.json" name="$name" config="$config" kind="$kind" "#param=$param" \
        "#status=$status" "#elapsed_s=$((SECONDS - started))" vm0="$vm0" vm1="$vm1"
}

# bench_bytes <size>: 64M -> bytes.
bench_bytes() {
    local v="$1"
    case "$v" in
        *K) echo $((${v%K} << 10)) ;;
        *M) echo $((${v%M} << 20)) ;;
        *G) echo $((${v%G} << 30)) ;;
        *) echo "$v" ;;
    esac
}

# bench_flags <config>: sets flags (both VMs' SMC keys) and bytes (stream length).
bench_flags() {
    case "$1" in
        smcd-irq) flags="smc=on spin=0"; bytes=$s_smcd ;;
        smcd-poll) flags="smc=on spin=$spin"; bytes=$s_smcd ;;
        tcp) flags="smc=off"; bytes=$s_tcp ;;
    esac
}

bench_want() {
    [[ -z "${BENCH_ONLY:-}" || " $BENCH_ONLY " == *" $1 "* ]]
}

cmd_bench() {
    local quick=0 out="" begun=$SECONDS
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --quick) quick=1; shift ;;
            --out) out="${2:?--out needs a directory}"; shift 2 ;;
            -h|--help) bench_usage; return 0 ;;
            *) log "bench: unknown option '$1'"; bench_usage >&2; return 2 ;;
        esac
    done
    local pp floor s_smcd s_tcp s_loop spin="${BENCH_SPIN:-200}" sdmb="${BENCH_STREAM_DMB:-1048576}"
    if [[ $quick -eq 1 ]]; then
        pp="${BENCH_PP_COUNT:-2000}" floor="${BENCH_FLOOR_COUNT:-2000}"
        s_smcd="${BENCH_STREAM_SMCD:-4M}" s_tcp="${BENCH_STREAM_TCP:-4M}" s_loop="${BENCH_STREAM_LOOP:-4M}"
    else
        pp="${BENCH_PP_COUNT:-100000}" floor="${BENCH_FLOOR_COUNT:-100000}"
        s_smcd="${BENCH_STREAM_SMCD:-64M}" s_tcp="${BENCH_STREAM_TCP:-32M}" s_loop="${BENCH_STREAM_LOOP:-64M}"
    fi
    s_smcd="$(bench_bytes "$s_smcd")" s_tcp="$(bench_bytes "$s_tcp")" s_loop="$(bench_bytes "$s_loop")"
    local n
    for n in "$pp" "$floor" "$s_smcd" "$s_tcp" "$s_loop" "$spin" "$sdmb"; do
        [[ "$n" =~ ^[0-9]+$ ]] || { log "bench: counts must be numbers (got '$n')"; return 2; }
    done
    [[ -n "$out" ]] || out="$REPO_ROOT/out/bench-$(date -u +%Y%m%d-%H%M%S)"
    mkdir -p "$out" && out="$(cd "$out" && pwd)"

    check_prereqs --quiet || return 2
    pair_traps
    # The commit that is built (others may commit while the runs go on).
    local commit dirty=false
    commit="$(cd "$REPO_ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    [[ -z "$(cd "$REPO_ROOT" && git status --porcelain --untracked-files=no 2>/dev/null)" ]] || dirty=true
    export QEMU_ACCEL="${QEMU_ACCEL:-tcg}"
    # shellcheck disable=SC2034 # read by pair_build (scripts/pair.sh)
    PAIR_IMAGE=""
    pair_build || return 2
    local tdir="${PAIR_TARGET_DIR:-${CARGO_TARGET_DIR:-$REPO_ROOT/target}}"
    # The report tool is not measured: the dev profile builds much quicker.
    log "building smcd-bench"
    (cd "$REPO_ROOT" && CARGO_TARGET_DIR="$tdir" cargo build --quiet -p smcd-bench >&2) ||
        { log "smcd-bench build failed"; return 2; }
    local bench_bin="$tdir/debug/smcd-bench"

    log "bench: output in $out ($([[ $quick -eq 1 ]] && echo quick || echo full) mode; accel $QEMU_ACCEL)"
    local started=$SECONDS loadavg
    loadavg="$(cut -d' ' -f1-3 /proc/loadavg)"
    BENCH_FAILED=0
    # Bounded timeouts, generous for TCG: 60 s + 2 ms per round trip; streams 60 s + 1 s
    # per MiB (1 MB/s would be 20x slower than TCP measured so far).
    BENCH_BUDGET="${BENCH_BUDGET:-$([[ $quick -eq 1 ]] && echo 300 || echo 600)}"
    [[ "$BENCH_BUDGET" =~ ^[0-9]+$ ]] || { log "bench: BENCH_BUDGET must be seconds"; return 2; }
    BENCH_DEADLINE=$((SECONDS + BENCH_BUDGET))
    # Order: the short runs first (floors, streams), then the ping-pongs, TCP last, so one
    # slow configuration cannot starve the others of the budget.
    local pp_t=$((60 + pp * 2 / 1000)) fl_t=$((60 + floor * 4 / 1000)) cfg flags size chunk bytes
    if bench_want floor; then
        bench_one "$out" floor floor 0 "$fl_t" \
            --vm1 "app=floor-server" --vm0 "app=floor count=$floor"
    fi
    for cfg in smcd-irq smcd-poll tcp; do
        bench_want "$cfg" || continue
        bench_flags "$cfg"
        [[ "$cfg" == tcp ]] || flags="$flags dmb=$sdmb"
        for chunk in 1024 65536 1048576; do
            bench_one "$out" "$cfg" stream "$chunk" $((60 + (bytes >> 20))) \
                --vm1 "app=sink port=7001 $flags verify=sample" \
                --vm0 "app=stream port=7001 $flags size=$bytes chunk=$chunk verify=sample"
        done
    done
    if bench_want loopback; then
        for chunk in 1024 65536 1048576; do
            bench_one "$out" loopback stream "$chunk" $((60 + (s_loop >> 20))) \
                --only-vm0 --vm0 "app=loopback port=7002 smc=on dmb=$sdmb size=$s_loop chunk=$chunk verify=sample"
        done
    fi
    if bench_want loopback; then
        for size in 14 1024 16384; do
            bench_one "$out" loopback pingpong "$size" "$pp_t" \
                --only-vm0 --vm0 "app=loopback-pingpong port=7003 smc=on count=$pp size=$size"
        done
    fi
    for cfg in smcd-irq smcd-poll tcp; do
        bench_want "$cfg" || continue
        bench_flags "$cfg"
        for size in 14 1024 16384; do
            bench_one "$out" "$cfg" pingpong "$size" "$pp_t" \
                --vm1 "app=echo port=7000 $flags" --wait-vm0-only \
                --vm0 "app=pingpong port=7000 $flags count=$pp size=$size"
        done
    done
    local elapsed=$((SECONDS - started))
    bench_json "$out/meta.json" commit="$commit" "@dirty=$dirty" date="$(date -u +%FT%TZ)" \
        accel="$QEMU_ACCEL" qemu="$("$QEMU_BIN" --version | head -n1)" loadavg="$loadavg" \
        mode="$([[ $quick -eq 1 ]] && echo quick || echo full)" "#elapsed_s=$elapsed" "#budget_s=$BENCH_BUDGET" \
        "@counts={\"pingpong_round_trips\":$pp,\"floor_round_trips\":$floor,\"stream_bytes_smcd\":$s_smcd,\"stream_bytes_tcp\":$s_tcp,\"stream_bytes_loopback\":$s_loop,\"spin_us\":$spin,\"stream_dmb\":$sdmb}"
    local status=0
    "$bench_bin" report "$out" || status=$?
    log "bench: runs took ${elapsed}s, $((SECONDS - begun))s with the builds and the report; outputs in $out"
    [[ $BENCH_FAILED -eq 0 || $status -ne 0 ]] || status=1
    return "$status"
}
