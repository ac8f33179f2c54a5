//! In-QEMU test: the SMC system with an ivshmem-doorbell present (our server, profile in
//! kernel/tests/profiles-smc.sh) next to the loopback ISM. Both devices come up, and a
//! connection between two sockets of this image still picks loopback (listed first in
//! the Proposal; the ivshmem device is for other VMs).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec;
use core::net::Ipv4Addr;
use core::time::Duration;

use embedded_io_async::Read;
use kernel::apps::{self, fill_pattern, pattern, write_all};
use kernel::cmdline::Ipv4Cidr;
use kernel::net;
use kernel::smc::{self, Smc, SmcConfig, SmcListener};
use kernel::{clock, executor, platform};
use smcd::ism::{IsmDevice, CHID_LOOPBACK};
use smcd::socket::Transport;

kernel::test_main!(
    loopback_and_ivshmem_come_up,
    in_image_connection_picks_loopback,
);

const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 8, 1);

fn smc() -> &'static Smc {
    if let Some(smc) = smc::get() {
        return smc;
    }
    platform::init().unwrap_or_else(|e| panic!("{e}"));
    let mut devices = net::virtio_net_devices();
    let first = devices.next().expect("first virtio-net (profiles-smc.sh)");
    let second = devices.next().expect("second virtio-net (profiles-smc.sh)");
    let cidr = Ipv4Cidr {
        address: SERVER_IP,
        prefix_len: 24,
    };
    let a = net::bring_up(first, cidr).unwrap_or_else(|e| panic!("{e}"));
    let b = net::bring_up(second, apps::second_address(cidr)).unwrap_or_else(|e| panic!("{e}"));
    smc::init(&[a, b], SmcConfig::default()).unwrap_or_else(|e| panic!("{e}"))
}

fn loopback_and_ivshmem_come_up() {
    let smc = smc();
    assert_eq!(smc.device_kinds(), ["loopback", "ivshmem"]);
    smc.with_stack(|stack| {
        let [lo, iv] = stack.devices() else {
            panic!("two devices");
        };
        assert_eq!(lo.chid(), CHID_LOOPBACK);
        assert_ne!(iv.chid(), CHID_LOOPBACK);
        assert_ne!(lo.local_gid(), iv.local_gid());
        assert!(iv.supports_v2());
        // Our ivshmem GID reaches no other peer yet (we are alone on the region).
        assert!(!iv.query_remote_gid(lo.local_gid(), None));
    });
}

fn in_image_connection_picks_loopback() {
    const LEN: usize = 1 << 20;
    let smc = smc();
    let mut listener = SmcListener::bind(6100).unwrap();
    let deadline = clock::now().saturating_add(Duration::from_secs(120));
    executor::block_on(executor::with_deadline(deadline, async {
        let server = async {
            let mut s = listener.accept().await.unwrap();
            let mut buf = vec![0u8; LEN + 1];
            assert_eq!(s.read_full(&mut buf).await.unwrap(), LEN);
            for (i, b) in buf[..LEN].iter().enumerate() {
                assert_eq!(*b, pattern(1, i as u64));
            }
            s.close().unwrap();
        };
        let client = async {
            let mut s = smc.connect(SERVER_IP, 6100).await.unwrap();
            match s.transport() {
                Some(Transport::Smcd { device, .. }) => {
                    assert_eq!(smc.device_kinds()[device], "loopback")
                }
                other => panic!("expected SMC-D over loopback, got {other:?}"),
            }
            let mut data = vec![0u8; LEN];
            fill_pattern(1, 0, &mut data);
            write_all(&mut s, &data).await.unwrap();
            s.shutdown().await.unwrap();
            let mut b = [0u8; 1];
            assert_eq!(s.read(&mut b).await.unwrap(), 0);
            s.close().unwrap();
        };
        futures_util::future::join(server, client).await;
    }))
    .unwrap_or_else(|_| panic!("did not finish in time"));
}
