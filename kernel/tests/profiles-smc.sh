# shellcheck shell=bash
# shellcheck disable=SC2034,SC2054 # QEMU_ARGS/CMDLINE are read by qemu-run.sh; commas are QEMU syntax
# QEMU profiles of the SMC socket tests (kernel/tests/smc_*.rs); sourced by profiles.sh.
# Same conventions: profile_<name> appends to QEMU_ARGS, pre_/post_ run on the host,
# RUN_DIR is the run's scratch directory.

# ---------------------------------------------------------------- smc_loopback
# Two virtio-net NICs on QEMU hub 0 (10.0.7.1 and 10.0.7.2 in the guest): client and
# server of one image talk TCP between them, and SMC-D over the loopback ISM.
profile_smc_loopback() {
    QEMU_ARGS+=(
        -netdev hubport,id=n0,hubid=0
        -device virtio-net-pci,netdev=n0,mac=52:54:00:00:07:01
        -netdev hubport,id=n1,hubid=0
        -device virtio-net-pci,netdev=n1,mac=52:54:00:00:07:02
    )
}
