# shellcheck shell=bash
# QEMU profiles of the network tests (kernel/tests/net_*.rs); sourced by profiles.sh.
# Same conventions: profile_<name> appends to QEMU_ARGS, pre_/post_ run on the host,
# RUN_DIR is the run's scratch directory.

NET_SYN_TOOL="$REPO_ROOT/kernel/tests/host/net_syn_options.py"

# ---------------------------------------------------------------- net_loop
# Two virtio-net NICs joined by QEMU hub 0; filter-dump records NIC 0's traffic (both
# directions) so post_ can check the SMC option in SYN and SYN-ACK per port
# (ports: kernel/tests/net_loop.rs).
profile_net_loop() {
    QEMU_ARGS+=(
        -netdev hubport,id=n0,hubid=0
        -device virtio-net-pci,netdev=n0,mac=52:54:00:00:00:01
        -netdev hubport,id=n1,hubid=0
        -device virtio-net-pci,netdev=n1,mac=52:54:00:00:00:02
        -object "filter-dump,id=dump0,netdev=n0,file=$RUN_DIR/net_loop.pcap"
    )
}

post_net_loop() {
    [[ "$1" -eq 33 ]] || return 0 # the guest failed already
    # 5000: SMC on both sides; 5001: listener without SMC; 5002: client without SMC.
    python3 "$NET_SYN_TOOL" "$RUN_DIR/net_loop.pcap" 5000:1:1 5001:1:0 5002:0:0
}
