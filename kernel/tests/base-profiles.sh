# shellcheck shell=bash
# QEMU profiles for the base (boot/memory) in-QEMU tests, sourced by `qemu-run.sh runner`
# before kernel/tests/profiles.sh (same conventions: profile_<name> appends to QEMU_ARGS).

# RAM above 4 GiB: q35 then maps 2 GiB below the PCI hole and the rest from 4 GiB up.
profile_high_memory() {
    QEMU_ARGS+=(-m 6G)
}
