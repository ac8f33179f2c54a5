#!/usr/bin/env bash
# qemu-run.sh: the one launcher for smcd kernel images in QEMU (PVH boot, `-kernel`).
#
#   qemu-run.sh check                      check prerequisites, print install commands
#   qemu-run.sh run <image> [--append "cmdline"] [-- extra qemu args]
#                                          boot one image, serial console on stdout
#   qemu-run.sh runner <binary> [args]     cargo runner for x86_64-unknown-none (tests)
#   qemu-run.sh test                       whole suite: lint, host tests (incl. e2e VM pairs),
#                                          failure-path self-check, in-QEMU kernel tests
#   qemu-run.sh lint                       cargo fmt --check and clippy -D warnings
#   qemu-run.sh selftest-failure           shows that a failing in-guest assertion fails the
#                                          runner with its message (builds the
#                                          `deliberate-failure` feature)
#   qemu-run.sh boot-time [image]          time from QEMU start to the first serial line
#   qemu-run.sh pair [options]             two VMs: link + ivshmem (scripts/pair.sh; --help)
#   qemu-run.sh demo                       SMC-D vs TCP ping-pong and stream, as a table
#   qemu-run.sh bench [--quick] [--out DIR]
#                                          issue-6 benchmark: SMC-D (interrupts, polling),
#                                          TCP, loopback, floors; table, JSON, PNG
#                                          (scripts/bench.sh; --help)
#
# Environment:
#   QEMU_TIMEOUT   hard limit per QEMU run in seconds (default 60)
#   QEMU_ACCEL     tcg | kvm | auto (default auto: TCG unless the CPU has vmx/svm, /dev/kvm
#                  is usable, and a probe boot under KVM is fast)
#   QEMU_MEMORY    guest RAM (default 128M)
#   QEMU_EXTRA     extra QEMU arguments (word-split)
#
# Exit status of a test image: isa-debug-exit writes (code << 1) | 1 -> 33 = pass, 35 = fail
# (kernel/src/qemu.rs). A runner pass needs status 33 AND the final serial line
# `kernel tests: N passed, 0 failed`.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export REPO_ROOT
QEMU_BIN="${QEMU_BIN:-qemu-system-x86_64}"
QEMU_TIMEOUT="${QEMU_TIMEOUT:-60}"
QEMU_MEMORY="${QEMU_MEMORY:-128M}"
TARGET="x86_64-unknown-none"
EXIT_PASS=33
EXIT_FAIL=35

log() { printf 'qemu-run: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 2; }

# ---------------------------------------------------------------- cleanup of what we started
QEMU_PID=""
RUN_DIR=""
cleanup() {
    if [[ -n "$QEMU_PID" ]] && kill -0 "$QEMU_PID" 2>/dev/null; then
        kill -TERM "$QEMU_PID" 2>/dev/null || true
        sleep 0.2
        kill -KILL "$QEMU_PID" 2>/dev/null || true
    fi
    QEMU_PID=""
    if [[ -n "$RUN_DIR" && -d "$RUN_DIR" && -z "${QEMU_KEEP_RUN_DIR:-}" ]]; then
        rm -rf -- "$RUN_DIR"
    fi
}
trap cleanup EXIT
trap 'log "interrupted"; cleanup; exit 130' INT TERM

# ---------------------------------------------------------------- prerequisites
# check_prereqs [--quiet]: prints one exact install command per missing piece; as root,
# installs missing Debian packages itself (QEMU_NO_INSTALL=1 prevents that).
check_prereqs() {
    local quiet="${1:-}" missing=0
    if ! command -v "$QEMU_BIN" >/dev/null 2>&1; then
        if [[ $(id -u) -eq 0 && -z "${QEMU_NO_INSTALL:-}" ]] && command -v apt-get >/dev/null; then
            log "$QEMU_BIN missing; installing: apt-get update && apt-get install -y qemu-system-x86"
            if ! { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y qemu-system-x86 >&2; }; then
                log "install failed; run: apt-get install -y qemu-system-x86"
                missing=1
            fi
        else
            log "missing $QEMU_BIN; install it with: apt-get install -y qemu-system-x86"
            missing=1
        fi
    fi
    # tshark is optional: the Wireshark cross-checks skip with a notice without it.
    if ! command -v tshark >/dev/null 2>&1; then
        if [[ $(id -u) -eq 0 && -z "${QEMU_NO_INSTALL:-}" ]] && command -v apt-get >/dev/null; then
            log "tshark missing; installing: apt-get install -y tshark"
            DEBIAN_FRONTEND=noninteractive apt-get install -y tshark >&2 \
                || log "tshark install failed (optional): apt-get install -y tshark"
        else
            log "optional: apt-get install -y tshark (Wireshark cross-checks are skipped without it)"
        fi
    fi
    if command -v "$QEMU_BIN" >/dev/null 2>&1; then
        local datadir
        datadir="$("$QEMU_BIN" -L help 2>/dev/null | head -n1 || true)"
        if ! "$QEMU_BIN" -machine help 2>/dev/null | grep -q '^q35'; then
            log "$QEMU_BIN has no q35 machine; install: apt-get install -y qemu-system-x86"
            missing=1
        fi
        if [[ -n "$datadir" && ! -e "$datadir/pvh.bin" ]]; then
            log "QEMU's pvh.bin option ROM not found in $datadir; install: apt-get install -y qemu-system-x86"
            missing=1
        fi
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        log "missing cargo; install Rust with rustup (toolchain pinned in rust-toolchain.toml)"
        missing=1
    elif command -v rustup >/dev/null 2>&1; then
        if ! (cd "$REPO_ROOT" && rustup target list --installed 2>/dev/null | grep -qx "$TARGET"); then
            log "missing Rust target $TARGET; installing: rustup target add $TARGET"
            if ! (cd "$REPO_ROOT" && rustup target add "$TARGET" >&2); then
                log "install failed; run: rustup target add $TARGET"
                missing=1
            fi
        fi
    fi
    if [[ $missing -ne 0 ]]; then
        return 1
    fi
    [[ -n "$quiet" ]] || log "prerequisites ok ($("$QEMU_BIN" --version | head -n1))"
    return 0
}

# Image prerequisites only (QEMU), for run/runner: cargo is already running us.
check_qemu() {
    command -v "$QEMU_BIN" >/dev/null 2>&1 && return 0
    check_prereqs --quiet
}

# ---------------------------------------------------------------- accelerator
# TCG by default. KVM only if the CPU advertises vmx/svm, /dev/kvm is usable and a probe boot
# of the image reaches its first serial line within a second (a slow or nested KVM is worse
# than TCG). The choice is cached per boot of the host.
choose_accel() {
    local image="$1" want="${QEMU_ACCEL:-auto}"
    case "$want" in
        tcg|kvm) echo "$want"; return ;;
        auto) ;;
        *) die "QEMU_ACCEL must be tcg, kvm or auto (got '$want')" ;;
    esac
    if ! grep -qE '\b(vmx|svm)\b' /proc/cpuinfo 2>/dev/null || [[ ! -r /dev/kvm || ! -w /dev/kvm ]]; then
        echo tcg; return
    fi
    local boot_id cache
    boot_id="$(cat /proc/sys/kernel/random/boot_id 2>/dev/null || echo unknown)"
    cache="${TMPDIR:-/tmp}/smcd-qemu-accel.$(id -u).$boot_id"
    if [[ -s "$cache" ]]; then cat "$cache"; return; fi
    local result=tcg t
    if t="$(first_line_time "$image" kvm 3)" && awk -v t="${t%% *}" 'BEGIN { exit !(t < 1.0) }'; then
        result=kvm
    fi
    echo "$result" >"$cache"
    echo "$result"
}

# ---------------------------------------------------------------- QEMU command line
# base_args <accel>: fills QEMU_CMD with the machine every run uses.
base_args() {
    local accel="$1" cpu=max
    [[ "$accel" == kvm ]] && cpu=host
    # shellcheck disable=SC2054 # commas belong to QEMU option values
    QEMU_CMD=(
        "$QEMU_BIN" -machine q35 -accel "$accel" -cpu "$cpu" -m "$QEMU_MEMORY"
        -nodefaults -no-user-config -display none -no-reboot
        -device isa-debug-exit,iobase=0xf4,iosize=0x04
    )
}

# run_qemu <image> <cmdline> <serial-log> [extra args...]: boots with a hard timeout, serial
# on stdout and copied to <serial-log>. Returns QEMU's exit status (124 on timeout).
run_qemu() {
    local image="$1" cmdline="$2" serial_log="$3"
    shift 3
    local accel
    accel="$(choose_accel "$image")"
    log "accel=$accel timeout=${QEMU_TIMEOUT}s image=$(basename "$image")"
    base_args "$accel"
    QEMU_CMD+=(
        -chardev "stdio,id=console,logfile=$serial_log,signal=off"
        -serial chardev:console
        -kernel "$image" -append "$cmdline"
    )
    # shellcheck disable=SC2206
    [[ -n "${QEMU_EXTRA:-}" ]] && QEMU_CMD+=($QEMU_EXTRA)
    QEMU_CMD+=("$@")
    [[ -n "${QEMU_VERBOSE:-}" ]] && log "${QEMU_CMD[*]}"
    "${QEMU_CMD[@]}" </dev/null &
    QEMU_PID=$!
    local deadline=$((SECONDS + QEMU_TIMEOUT)) status=0
    while kill -0 "$QEMU_PID" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            log "timeout: QEMU ran longer than ${QEMU_TIMEOUT}s; killing pid $QEMU_PID"
            kill -KILL "$QEMU_PID" 2>/dev/null || true
            wait "$QEMU_PID" 2>/dev/null || true
            QEMU_PID=""
            return 124
        fi
        sleep 0.05
    done
    wait "$QEMU_PID" || status=$?
    QEMU_PID=""
    return "$status"
}

# first_line_time <image> <accel> <timeout>: prints "<wall> <cpu>": seconds from QEMU start
# to the first complete serial line, and the CPU time QEMU used until then (user + system,
# 10 ms resolution; unlike wall time it does not grow when other processes share the CPUs).
first_line_time() {
    local image="$1" accel="$2" limit="$3" dir pid start now
    dir="$(mktemp -d "${TMPDIR:-/tmp}/smcd-boot-time.XXXXXX")"
    base_args "$accel"
    QEMU_CMD+=(-serial "file:$dir/serial" -kernel "$image" -append "boot-time")
    start="$(date +%s.%N)"
    "${QEMU_CMD[@]}" </dev/null >/dev/null 2>&1 &
    pid=$!
    local found="" cpu=""
    while now="$(date +%s.%N)"; awk -v n="$now" -v s="$start" -v l="$limit" 'BEGIN { exit !(n - s < l) }'; do
        if [[ -f "$dir/serial" ]] && grep -q $'\n' "$dir/serial" 2>/dev/null; then
            cpu="$(awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$pid/stat" 2>/dev/null || true)"
            found=yes
            break
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.002
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -rf -- "$dir"
    [[ -n "$found" ]] || return 1
    awk -v n="$now" -v s="$start" -v c="${cpu:-?}" 'BEGIN { printf "%.3f %s\n", n - s, c }'
}

# ---------------------------------------------------------------- subcommands
cmd_run() {
    [[ $# -ge 1 ]] || die "usage: qemu-run.sh run <image> [--append \"cmdline\"] [-- qemu args]"
    local image="$1"
    shift
    # `--append "cmdline"` may stand before or after `--`; everything else goes to QEMU.
    local cmdline="" extra=()
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --append) [[ $# -ge 2 ]] || die "--append needs a value"; cmdline="$2"; shift 2 ;;
            --) shift ;;
            *) extra+=("$1"); shift ;;
        esac
    done
    [[ -f "$image" ]] || die "no such image: $image"
    check_qemu || exit 2
    RUN_DIR="$(mktemp -d "${TMPDIR:-/tmp}/smcd-run.XXXXXX")"
    export RUN_DIR
    local status=0
    run_qemu "$image" "$cmdline" "$RUN_DIR/serial.log" "${extra[@]}" || status=$?
    case "$status" in
        "$EXIT_PASS") log "guest exited with success (isa-debug-exit)"; return 0 ;;
        "$EXIT_FAIL") log "guest reported failure (isa-debug-exit)"; return 1 ;;
        124) return 124 ;;
        *) log "QEMU exited with status $status"; return "$status" ;;
    esac
}

# Cargo calls `qemu-run.sh runner <binary> [test args]` for every kernel test binary.
cmd_runner() {
    [[ $# -ge 1 ]] || die "usage: qemu-run.sh runner <binary>"
    local image="$1"
    shift
    [[ -f "$image" ]] || die "no such binary: $image"
    check_qemu || exit 2
    local base name
    base="$(basename "$image")"
    # cargo names test binaries <name>-<16 hex digits>.
    name="$(sed -E 's/-[0-9a-f]{16}$//' <<<"$base")"

    RUN_DIR="$(mktemp -d "${TMPDIR:-/tmp}/smcd-test-$name.XXXXXX")"
    export RUN_DIR
    # Per-test QEMU profiles (kernel/tests/profiles.sh): profile_<name> appends to QEMU_ARGS
    # and may append words to CMDLINE; pre_<name> runs before QEMU, post_<name> after it
    # (nonzero = fail; also for clean-up).
    QEMU_ARGS=()
    CMDLINE="test=$name"
    local profiles
    for profiles in "$REPO_ROOT/kernel/tests/base-profiles.sh" "$REPO_ROOT/kernel/tests/profiles.sh"; do
        if [[ -f "$profiles" ]]; then
            # shellcheck source=/dev/null
            source "$profiles"
        fi
    done
    if declare -F "profile_$name" >/dev/null; then "profile_$name"; fi
    if declare -F "pre_$name" >/dev/null; then
        "pre_$name" || { log "FAIL $name: pre_$name failed"; return 1; }
    fi

    local status=0 serial="$RUN_DIR/serial.log"
    run_qemu "$image" "$CMDLINE" "$serial" "${QEMU_ARGS[@]}" || status=$?

    local post_status=0
    if declare -F "post_$name" >/dev/null; then
        "post_$name" "$status" || post_status=$?
    fi

    # The verdict: pass code AND the final line, and the post-check.
    local last
    last="$(tr -d '\r' <"$serial" | grep -v '^[[:space:]]*$' | tail -n1 || true)"
    if [[ "$status" -eq "$EXIT_PASS" && "$last" =~ ^kernel\ tests:\ [0-9]+\ passed,\ 0\ failed$ \
          && "$post_status" -eq 0 ]]; then
        log "PASS $name ($last)"
        return 0
    fi
    local final_ok=""
    [[ "$last" =~ ^kernel\ tests:\ [0-9]+\ passed,\ 0\ failed$ ]] && final_ok=yes
    case "$status" in
        "$EXIT_PASS") [[ -n "$final_ok" ]] || log "FAIL $name: success code but final line was '$last'" ;;
        "$EXIT_FAIL") log "FAIL $name: guest reported a failure (see the FAILED lines above)" ;;
        124) log "FAIL $name: timed out after ${QEMU_TIMEOUT}s; last line '$last'" ;;
        *) log "FAIL $name: QEMU exit status $status (no isa-debug-exit code: triple fault or crash?); last line '$last'" ;;
    esac
    [[ "$post_status" -eq 0 ]] || log "FAIL $name: post_$name exited $post_status"
    # Repeat the failure lines at the end, so they are visible under cargo's output too.
    if grep -qE '(FAILED|panicked at|CPU exception|page fault at)' "$serial"; then
        log "failure report:"
        grep -E -A6 '(FAILED|CPU exception)' "$serial" | tr -d '\r' | sed 's/^/    /' >&2 || true
    fi
    return 1
}

# cmd_lint: formatting and clippy (-D warnings) for the host crates and the bare-metal image.
cmd_lint() {
    cd "$REPO_ROOT"
    log "lint: cargo fmt --check; clippy -D warnings (host, all targets; $TARGET image and libraries)"
    cargo fmt --all -- --check
    cargo clippy --all-targets --features smcd/std -- -D warnings
    cargo clippy -p kernel -p boot --target "$TARGET" --all-targets \
        --features kernel/deliberate-failure -- -D warnings
    cargo clippy -p drivers -p smcd -p ivshmem-region --target "$TARGET" -- -D warnings
}

cmd_test() {
    check_prereqs || exit 2
    cd "$REPO_ROOT"
    cmd_lint
    log "host tests: cargo test (default members, incl. the e2e VM-pair tests), smcd over std TCP, boot"
    cargo test
    cargo test -p smcd --features std --test socket_tcp
    cargo test -p boot --lib
    log "failure path: deliberately failing in-guest tests must fail the runner with their report"
    cmd_selftest_failure
    local bench_status=0
    bench_quick_check || bench_status=1
    log "in-QEMU kernel tests: cargo test -p kernel --target $TARGET --no-fail-fast"
    local out status=0
    out="$(mktemp "${TMPDIR:-/tmp}/smcd-kernel-tests.XXXXXX")"
    cargo test -p kernel --target "$TARGET" --no-fail-fast 2>&1 | tee "$out" || status=$?
    # Closing summary over all test images: functions passed in passing images, and failed
    # images (an image stops at its first failing test).
    local passed images failed
    # (grep exits 1 when nothing matches: keep that from tripping `set -e -o pipefail`.)
    passed="$({ grep -oE '^qemu-run: PASS [^ ]+ \(kernel tests: [0-9]+ passed' "$out" || true; } \
        | { grep -oE '[0-9]+ passed' || true; } | awk '{ s += $1 } END { print s + 0 }')"
    images="$(grep -cE '^qemu-run: PASS ' "$out" || true)"
    failed="$({ grep -oE '^qemu-run: FAIL [^:]+' "$out" || true; } | sort -u | wc -l)"
    rm -f "$out"
    log "in-QEMU kernel tests: $images image(s) passed, $failed failed"
    if [[ $status -ne 0 && $failed -eq 0 ]]; then
        failed=1 # cargo failed before any image ran (build error)
    fi
    [[ $bench_status -eq 0 ]] || { log "FAIL: bench --quick (see above)"; [[ $status -ne 0 ]] || status=1; }
    echo "kernel: $passed passed, $failed failed"
    return "$status"
}

# bench_quick_check: `bench --quick` into a temp dir must succeed (every run passed, every
# required figure present) and leave table.md, results.json and a PNG bench.png.
bench_quick_check() {
    local dir status=0 f
    dir="$(mktemp -d "${TMPDIR:-/tmp}/smcd-bench-quick.XXXXXX")"
    log "bench --quick (one pair boot per configuration and size) into $dir"
    # A subshell: cmd_bench installs its own traps and may exit.
    ("$REPO_ROOT/qemu-run.sh" bench --quick --out "$dir") || status=$?
    for f in table.md results.json bench.png; do
        [[ -s "$dir/$f" ]] || { log "FAIL bench --quick: $dir/$f not produced"; status=1; }
    done
    if [[ -s "$dir/bench.png" && "$(head -c 8 "$dir/bench.png" | od -An -tx1 | tr -d ' \n')" != 89504e470d0a1a0a ]]; then
        log "FAIL bench --quick: $dir/bench.png is not a PNG"
        status=1
    fi
    python3 -c 'import json, sys; json.load(open(sys.argv[1]))' "$dir/results.json" 2>/dev/null ||
        { log "FAIL bench --quick: $dir/results.json is not JSON"; status=1; }
    if [[ $status -ne 0 ]]; then
        log "FAIL bench --quick (status $status; outputs kept in $dir)"
        return 1
    fi
    log "bench --quick: ok (table.md, results.json, bench.png in $dir)"
    rm -rf -- "$dir"
}

# selftest_one <test> <pattern>...: runs a `deliberate_*` test, which must fail, and checks
# that the output shows every pattern (fixed strings).
selftest_one() {
    local test="$1" out status=0 ok=1 pattern
    shift
    out="$(mktemp "${TMPDIR:-/tmp}/smcd-selftest.XXXXXX")"
    cargo test -p kernel --target "$TARGET" --features deliberate-failure \
        --test "$test" >"$out" 2>&1 || status=$?
    [[ $status -ne 0 ]] || { log "selftest $test: cargo test passed, but it must fail"; ok=0; }
    for pattern in "$@" "qemu-run: FAIL $test"; do
        grep -qF -- "$pattern" "$out" || { log "selftest $test: output lacks '$pattern'"; ok=0; }
    done
    if [[ $ok -eq 1 ]]; then
        log "selftest $test: failed as required, with:"
        grep -E 'FAILED|panicked at|deliberate in-guest|CPU exception|page fault at|cr2' "$out" \
            | grep -v '^    ' | sed 's/^/    /' >&2 || true
    else
        sed 's/^/    /' "$out" >&2
    fi
    rm -f "$out"
    [[ $ok -eq 1 ]]
}

cmd_selftest_failure() {
    check_prereqs --quiet || exit 2
    cd "$REPO_ROOT"
    log "running the deliberately failing kernel tests (each must FAIL with its report)"
    local ok=0
    selftest_one deliberate_failure \
        'test passes_first ... ok' \
        'test fails_on_purpose ... FAILED' \
        'panicked at kernel/tests/deliberate_failure.rs:' \
        'deliberate in-guest failure: answer was 41' \
        'kernel tests: 1 passed, 1 failed' || ok=1
    selftest_one deliberate_page_fault \
        'test write_to_unmapped_address ... FAILED' \
        'CPU exception: page fault (vector 14), error code 0x2, rip 0x' \
        'page fault at 0x500000000abc (cr2), write on a not-present page' \
        'kernel tests: 0 passed, 1 failed' || ok=1
    selftest_one deliberate_double_fault \
        'test overflow_the_boot_stack ... FAILED' \
        'CPU exception: double fault (vector 8), error code 0x0, rip 0x' \
        'cr2 0x' \
        'kernel tests: 0 passed, 1 failed' || ok=1
    if [[ $ok -eq 0 ]]; then
        log "selftest-failure: ok (every deliberate failure failed the runner with its report)"
    fi
    return "$ok"
}

cmd_boot_time() {
    check_prereqs --quiet || exit 2
    local image="${1:-}" runs="${BOOT_TIME_RUNS:-5}"
    if [[ -z "$image" ]]; then
        (cd "$REPO_ROOT" && cargo build --release -p kernel --target "$TARGET" >&2)
        image="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/$TARGET/release/kernel"
    fi
    [[ -f "$image" ]] || die "no such image: $image"
    local accel="${QEMU_ACCEL:-tcg}" i t walls=() cpus=()
    [[ "$accel" == auto ]] && accel="$(choose_accel "$image")"
    log "accel=$accel image=$image size=$(stat -c %s "$image") bytes"
    for ((i = 0; i < runs; i++)); do
        t="$(first_line_time "$image" "$accel" 10)" || die "no serial line within 10 s"
        walls+=("${t%% *}")
        cpus+=("${t##* }")
    done
    local median best
    median="$(printf '%s\n' "${walls[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')"
    best="$(printf '%s\n' "${walls[@]}" | sort -n | head -n1)"
    echo "boot to first serial line, $runs runs, accel=$accel"
    echo "  wall seconds: ${walls[*]} (best $best, median $median)"
    echo "  QEMU CPU seconds until then: ${cpus[*]}"
    echo "  host load average: $(cut -d' ' -f1-3 /proc/loadavg)"
    local size limit=$((2 << 20))
    size="$(stat -c %s "$image")"
    echo "image size: $size bytes (limit $limit)"
    [[ "$size" -le "$limit" ]] || { log "image larger than 2 MiB"; return 1; }
}

# shellcheck source=scripts/pair.sh
source "$REPO_ROOT/scripts/pair.sh"
# shellcheck source=scripts/bench.sh
source "$REPO_ROOT/scripts/bench.sh"

main() {
    local cmd="${1:-help}"
    [[ $# -gt 0 ]] && shift
    case "$cmd" in
        check) check_prereqs ;;
        run) cmd_run "$@" ;;
        runner) cmd_runner "$@" ;;
        test) cmd_test "$@" ;;
        lint) check_prereqs --quiet || exit 2; cmd_lint ;;
        selftest-failure) cmd_selftest_failure "$@" ;;
        boot-time) cmd_boot_time "$@" ;;
        pair) cmd_pair "$@" ;;
        demo) cmd_demo "$@" ;;
        bench) cmd_bench "$@" ;;
        help|-h|--help) sed -n '2,31p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' ;;
        *) die "unknown subcommand '$cmd' (try: qemu-run.sh help)" ;;
    esac
}

main "$@"
