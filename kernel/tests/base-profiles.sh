# shellcheck shell=bash
# QEMU profiles for the base (boot/memory) in-QEMU tests, sourced by `qemu-run.sh runner`
# before kernel/tests/profiles.sh (same conventions: profile_<name> appends to QEMU_ARGS).

# RAM above 4 GiB: q35 then maps 2 GiB below the PCI hole and the rest from 4 GiB up.
profile_high_memory() {
    QEMU_ARGS+=(-m 6G)
}

# boot_info: the first serial line comes from kernel::init, and `log` records reach COM1 with
# their level and target; debug records are filtered at the default level.
post_boot_info() {
    local log="$RUN_DIR/serial.log"
    [[ "$1" -eq 33 ]] || return 0 # the guest failed already
    head -n1 "$log" | grep -q '^smcd: booting (PVH v1, ' || { echo "post_boot_info: unexpected first line" >&2; return 1; }
    grep -q '^\[INFO  boot_info\] log check: info line 7f3a' "$log" || { echo "post_boot_info: info record missing" >&2; return 1; }
    grep -q '^\[WARN  boot_info\] log check: warn line 7f3b' "$log" || { echo "post_boot_info: warn record missing" >&2; return 1; }
    if grep -q '7f3c' "$log"; then echo "post_boot_info: debug record not filtered" >&2; return 1; fi
}
