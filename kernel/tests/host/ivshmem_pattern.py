#!/usr/bin/env python3
"""Host side of the ivshmem BAR2 tests: writes and checks the word patterns in the file
that backs the ivshmem region (kernel/tests/ivshmem_bar*.rs compute the same patterns).

Pattern n, 64-bit little-endian word k (k = byte offset / 8 from the region start):
    pattern 1 (host writes, guest checks): (k * 0x9E3779B97F4A7C15) ^ 0x5EED00015EED0001
    pattern 2 (guest writes, host checks): (k * 0xD1B54A32D192ED03) ^ 0xC0FFEE00C0FFEE00
    pattern 0: zero (a hole of a sparse file)

usage: ivshmem_pattern.py create FILE SIZE
       ivshmem_pattern.py fill  FILE PATTERN OFFSET LEN [OFFSET LEN ...]
       ivshmem_pattern.py check FILE PATTERN OFFSET LEN [OFFSET LEN ...]
"""
import array
import os
import sys

MASK = (1 << 64) - 1
PATTERNS = {
    1: (0x9E3779B97F4A7C15, 0x5EED00015EED0001),
    2: (0xD1B54A32D192ED03, 0xC0FFEE00C0FFEE00),
}


def words(pattern, offset, length):
    if offset % 8 or length % 8:
        raise SystemExit(f"offset {offset:#x} and length {length:#x} must be multiples of 8")
    first = offset // 8
    out = array.array("Q")
    if pattern == 0:
        out.frombytes(bytes(length))
        return out
    mul, seed = PATTERNS[pattern]
    out.extend(((k * mul) & MASK) ^ seed for k in range(first, first + length // 8))
    if sys.byteorder != "little":
        out.byteswap()
    return out


def ranges(args):
    if len(args) % 2:
        raise SystemExit("OFFSET LEN pairs expected")
    return [(int(args[i], 0), int(args[i + 1], 0)) for i in range(0, len(args), 2)]


def main(argv):
    cmd, path = argv[1], argv[2]
    if cmd == "create":
        size = int(argv[3], 0)
        with open(path, "wb") as f:
            f.truncate(size)  # sparse: unwritten pages read as zero
        return 0
    pattern = int(argv[3])
    with open(path, "r+b" if cmd == "fill" else "rb") as f:
        for offset, length in ranges(argv[4:]):
            want = words(pattern, offset, length).tobytes()
            if cmd == "fill":
                f.seek(offset)
                f.write(want)
                continue
            f.seek(offset)
            got = f.read(length)
            if got != want:
                bad = next(i for i in range(len(want)) if i >= len(got) or got[i] != want[i])
                word = (offset + bad) & ~7
                g = got[word - offset:word - offset + 8].hex()
                w = want[word - offset:word - offset + 8].hex()
                print(f"ivshmem_pattern: {path}: pattern {pattern} mismatch at {word:#x}: "
                      f"got {g} want {w}", file=sys.stderr)
                return 1
        if cmd == "fill":
            f.flush()
            os.fsync(f.fileno())
    if cmd == "check":
        print(f"ivshmem_pattern: {path}: pattern {pattern} ok at {argv[4:]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
