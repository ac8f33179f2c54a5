//! In-QEMU test: ACPI finds the APICs and the ECAM window, and the PCI scan finds exactly the
//! devices profiles.sh gives QEMU (q35 host bridge, virtio-net-pci, ivshmem-plain) with
//! correctly decoded BARs and capability lists.
#![no_std]
#![no_main]

use kernel::pci::{self, BarInfo, BarWidth, PciDevice};
use kernel::platform;

kernel::test_main!(
    acpi_describes_apics_and_ecam,
    q35_host_bridge_is_found,
    virtio_net_bars_and_capabilities_decode,
    ivshmem_plain_bars_decode,
    devices_are_listed_once,
    every_memory_bar_is_mapped_after_the_scan,
);

/// Size of the ivshmem-plain region set in profiles.sh (`profile_pci_scan`).
const IVSHMEM_SIZE: u64 = 2 << 20;
const MSIX_CAPABILITY: u8 = 0x11;
const VENDOR_CAPABILITY: u8 = 0x09;

fn one(vendor: u16, devices: &[u16]) -> &'static PciDevice {
    let mut found = pci::devices()
        .iter()
        .filter(|d| d.vendor_id == vendor && devices.contains(&d.device_id));
    let d = found
        .next()
        .unwrap_or_else(|| panic!("no {vendor:04x}:{devices:04x?} on the bus"));
    assert!(
        found.next().is_none(),
        "more than one {vendor:04x}:{devices:04x?}"
    );
    d
}

fn acpi_describes_apics_and_ecam() {
    let p = platform::init().unwrap_or_else(|e| panic!("{e}"));
    let a = p.acpi;
    assert_eq!(a.processor_apic_ids.len(), 1, "{a:?}");
    assert_eq!(a.local_apic_address, 0xFEE0_0000, "{a:?}");
    assert_eq!(a.io_apics.len(), 1, "{a:?}");
    assert_eq!(a.io_apics[0].address, 0xFEC0_0000, "{a:?}");
    assert_eq!(a.io_apics[0].gsi_base, 0, "{a:?}");
    assert!(p.apic.ioapic_inputs >= 24, "{:?}", p.apic);
    // QEMU's MADT sends ISA IRQ 0 (PIT) to GSI 2.
    assert_eq!(a.isa_irq_to_gsi(0), 2);
    assert_eq!(a.isa_irq_to_gsi(4), 4);
    assert_eq!(a.ecam_regions.len(), 1, "{a:?}");
    let ecam = a.ecam_regions[0];
    assert_eq!((ecam.segment, ecam.bus_start), (0, 0), "{ecam:?}");
    assert!(a.pm_timer.is_some(), "{a:?}");
}

fn q35_host_bridge_is_found() {
    platform::init().unwrap_or_else(|e| panic!("{e}"));
    let host = one(0x8086, &[0x29c0]);
    assert_eq!(
        (
            host.address.bus(),
            host.address.device(),
            host.address.function()
        ),
        (0, 0, 0)
    );
    assert_eq!(
        (host.class, host.subclass),
        (0x06, 0x00),
        "host bridge class: {host}"
    );
}

fn virtio_net_bars_and_capabilities_decode() {
    platform::init().unwrap_or_else(|e| panic!("{e}"));
    let net = one(0x1af4, &[0x1000, 0x1041]);
    assert_eq!(
        (net.class, net.subclass),
        (0x02, 0x00),
        "network controller: {net}"
    );
    // Modern virtio: vendor capabilities for the config structures and MSI-X.
    assert!(
        net.capability_ids.contains(&MSIX_CAPABILITY),
        "{:?}",
        net.capability_ids
    );
    assert!(
        net.capability_ids
            .iter()
            .filter(|&&c| c == VENDOR_CAPABILITY)
            .count()
            >= 4,
        "{:?}",
        net.capability_ids
    );
    // BAR1: 4 KiB 32-bit MSI-X BAR; BAR4: 16 KiB 64-bit prefetchable modern BAR (so
    // slot 5 is its upper half); transitional devices add an I/O BAR0.
    assert!(
        matches!(
            net.bars[1],
            Some(BarInfo::Memory {
                size: 0x1000,
                width: BarWidth::Bits32,
                ..
            })
        ),
        "{:?}",
        net.bars
    );
    assert!(
        matches!(
            net.bars[4],
            Some(BarInfo::Memory {
                size: 0x4000,
                width: BarWidth::Bits64,
                prefetchable: true,
                ..
            })
        ),
        "{:?}",
        net.bars
    );
    assert_eq!(net.bars[5], None);
    if net.device_id == 0x1000 {
        assert!(
            matches!(net.bars[0], Some(BarInfo::Io { size: 0x20, port }) if port != 0),
            "{:?}",
            net.bars
        );
    }
    let cap = net.msix_capability().unwrap().expect("MSI-X capability");
    assert_eq!(cap.table_bar(), 1);
    for bar in net.bars.iter().flatten() {
        if let Some((addr, size)) = bar.memory() {
            assert!(
                size.is_power_of_two() && addr % size == 0,
                "misaligned BAR {bar:?}"
            );
        }
    }
}

fn ivshmem_plain_bars_decode() {
    platform::init().unwrap_or_else(|e| panic!("{e}"));
    let shm = one(0x1af4, &[0x1110]);
    assert!(
        matches!(
            shm.bars[0],
            Some(BarInfo::Memory {
                size: 0x100,
                width: BarWidth::Bits32,
                ..
            })
        ),
        "{:?}",
        shm.bars
    );
    match shm.bars[2] {
        Some(BarInfo::Memory {
            address,
            size,
            prefetchable: true,
            width: BarWidth::Bits64,
        }) => {
            assert_eq!(size, IVSHMEM_SIZE);
            assert_eq!(address % size, 0);
        }
        other => panic!("ivshmem BAR2: {other:?}"),
    }
    // ivshmem-plain has no interrupts, hence no MSI-X.
    assert!(shm.msix_capability().unwrap().is_none());
}

fn devices_are_listed_once() {
    platform::init().unwrap_or_else(|e| panic!("{e}"));
    let devs = pci::devices();
    for (i, a) in devs.iter().enumerate() {
        for b in &devs[i + 1..] {
            assert_ne!(a.address, b.address, "listed twice: {a}");
        }
    }
    assert_eq!(pci::find(0x1af4, 0x1110).count(), 1);
}

/// Issue 2: every PCI MMIO window the firmware assigned is mapped once the scan is done,
/// without a driver asking for it (first, last and middle page of each memory BAR).
fn every_memory_bar_is_mapped_after_the_scan() {
    let mut checked = 0;
    for d in kernel::pci::devices() {
        for (address, size) in d.bars.iter().flatten().filter_map(|b| b.memory()) {
            for probe in [address, address + size / 2, address + size - 1] {
                let m = kernel::memory::translate(probe)
                    .unwrap_or_else(|| panic!("{d}: BAR byte {probe:#x} is not mapped"));
                assert_eq!(m.phys, probe, "{d}: BAR not identity-mapped");
            }
            checked += 1;
        }
    }
    assert!(checked >= 3, "only {checked} memory BARs found");
}
