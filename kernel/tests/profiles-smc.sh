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

# ---------------------------------------------------------------- smc_ivshmem
# As smc_loopback, plus an ivshmem-doorbell (2 vectors) served by our ivshmem-server
# (ivsh_start_server/ivsh_stop_server from profiles-ivshmem.sh).
profile_smc_ivshmem() {
    QEMU_ARGS+=(
        -netdev hubport,id=n0,hubid=0
        -device virtio-net-pci,netdev=n0,mac=52:54:00:00:08:01
        -netdev hubport,id=n1,hubid=0
        -device virtio-net-pci,netdev=n1,mac=52:54:00:00:08:02
        -chardev "socket,path=$RUN_DIR/ivshmem.sock,id=ivsh0"
        -device ivshmem-doorbell,chardev=ivsh0,vectors=2
    )
}

pre_smc_ivshmem() {
    ivsh_start_server -l 4M -n 2 --max-peers 4
}

post_smc_ivshmem() {
    ivsh_stop_server
}
