#!/usr/bin/env python3
"""net_syn_options.py: check the SMC TCP option in the SYN/SYN-ACKs of a pcap.

Usage: net_syn_options.py [--no-resets] PCAP PORT:SYN:SYNACK [PORT:SYN:SYNACK ...]

For each server PORT, every SYN to it must (1) or must not (0) carry the SMC option,
and likewise every SYN-ACK from it; each listed port must have at least one SYN and one
SYN-ACK. The option is recognised by Linux's rules (protocol reference section 1): kind
254, even length >= 6, first four data bytes E2 D4 C3 D9, on SYN segments only.
With --no-resets, a TCP segment with RST set to or from a listed port fails the check
(those connections must end with the ordinary FIN exchange). When tshark is installed, its decoding of the same
capture must agree.
Exit 0 when everything matches, 1 otherwise (with a message), 2 on usage errors.
"""
import shutil
import struct
import subprocess
import sys

MAGIC = bytes.fromhex("e2d4c3d9")


def carries_smc(options: bytes) -> bool:
    i = 0
    while i < len(options):
        kind = options[i]
        if kind == 0:
            return False
        if kind == 1:
            i += 1
            continue
        if i + 1 >= len(options):
            return False
        size = options[i + 1]
        if size < 2 or i + size > len(options):
            return False
        if kind == 254 and size % 2 == 0 and size >= 6 and options[i + 2:i + 6] == MAGIC:
            return True
        i += size
    return False


def tcp_segments(path):
    """Yield (src_port, dst_port, flags, options) for each TCP segment in an Ethernet pcap."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        raise ValueError("pcap too short")
    magic = struct.unpack("<I", data[:4])[0]
    if magic in (0xA1B2C3D4, 0xA1B23C4D):
        endian = "<"
    elif magic in (0xD4C3B2A1, 0x4D3CB2A1):
        endian = ">"
    else:
        raise ValueError("not a pcap file")
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    if linktype != 1:
        raise ValueError(f"link type {linktype} is not Ethernet")
    offset = 24
    while offset + 16 <= len(data):
        incl_len = struct.unpack(endian + "I", data[offset + 8:offset + 12])[0]
        frame = data[offset + 16:offset + 16 + incl_len]
        offset += 16 + incl_len
        if len(frame) < 14 + 20 or frame[12:14] != b"\x08\x00":
            continue
        ip = frame[14:]
        ihl = (ip[0] & 0x0F) * 4
        if ip[0] >> 4 != 4 or ip[9] != 6 or len(ip) < ihl + 20:
            continue
        tcp = ip[ihl:]
        header_len = (tcp[12] >> 4) * 4
        flags = tcp[13]
        if len(tcp) < header_len or header_len < 20:
            continue
        src, dst = struct.unpack("!HH", tcp[:4])
        yield src, dst, flags, bytes(tcp[20:header_len])


def syn_segments(segments):
    """(src_port, dst_port, ack, options) of the SYN segments."""
    return [(s, d, bool(f & 0x10), o) for s, d, f, o in segments if f & 0x02]


def tshark_segments(path):
    out = subprocess.run(
        ["tshark", "-r", path, "-Y", "tcp.flags.syn==1", "-T", "fields",
         "-e", "tcp.srcport", "-e", "tcp.dstport", "-e", "tcp.flags.ack", "-e", "tcp.options"],
        check=True, capture_output=True, text=True, timeout=60).stdout
    for line in out.splitlines():
        fields = line.split("\t")
        if len(fields) < 4:
            continue
        ack = fields[2].strip() in ("1", "True", "true")
        options = bytes.fromhex(fields[3].replace(":", "").strip())
        yield int(fields[0]), int(fields[1]), ack, options


def check(segments, expectations, source):
    ok = True
    for port, want_syn, want_synack in expectations:
        syns = [carries_smc(o) for s, d, ack, o in segments if d == port and not ack]
        synacks = [carries_smc(o) for s, d, ack, o in segments if s == port and ack]
        if not syns or not synacks:
            print(f"{source}: port {port}: {len(syns)} SYN(s), {len(synacks)} SYN-ACK(s) captured")
            ok = False
            continue
        for name, seen, want in (("SYN", syns, want_syn), ("SYN-ACK", synacks, want_synack)):
            if any(s != want for s in seen):
                print(f"{source}: port {port}: {name} option {seen}, expected {want}")
                ok = False
            else:
                print(f"{source}: port {port}: {len(seen)} {name}(s), SMC option {'present' if want else 'absent'}")
    return ok


def main(argv):
    no_resets = "--no-resets" in argv
    argv = [a for a in argv if a != "--no-resets"]
    if len(argv) < 3:
        print(__doc__)
        return 2
    try:
        expectations = [tuple(int(x) for x in e.split(":")) for e in argv[2:]]
        assert all(len(e) == 3 for e in expectations)
    except (ValueError, AssertionError):
        print("bad PORT:SYN:SYNACK argument")
        return 2
    try:
        all_segments = list(tcp_segments(argv[1]))
    except (OSError, ValueError) as e:
        print(f"cannot read {argv[1]}: {e}")
        return 1
    ok = check(syn_segments(all_segments), expectations, "pcap")
    ports = {port for port, _, _ in expectations}
    resets = [(s, d) for s, d, f, o in all_segments if f & 0x04 and (s in ports or d in ports)]
    if no_resets:
        if resets:
            print(f"pcap: {len(resets)} RST segment(s), first {resets[0][0]} -> {resets[0][1]}")
            ok = False
        else:
            print(f"pcap: {len(all_segments)} TCP segments, no RST on the listed ports")
    if shutil.which("tshark"):
        try:
            ok = check(list(tshark_segments(argv[1])), expectations, "tshark") and ok
        except (subprocess.SubprocessError, ValueError) as e:
            print(f"tshark failed: {e}")
            ok = False
    else:
        print("tshark not installed: pcap parsed by this script only")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
