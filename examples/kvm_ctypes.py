#!/usr/bin/env python3
"""kvm_ctypes: the kvmdump example (examples/kvmdump.c) in Python, via ctypes.

Usage: kvm_ctypes.py KERNEL CORE WHAT [LENGTH]

WHAT is a kernel symbol name (resolved with kvm_nlist2) or a 0x-prefixed
hexadecimal kernel virtual address.  LENGTH (decimal or 0x hex, at most
1 MiB) is the number of bytes to read; it defaults to 64.  The output, the
messages (prefixed "kvmdump:") and the exit status are those of kvmdump.c:
0 on success (also after a short read), 1 on an error, 2 on a usage error.

The library is $KVM_LIBRARY if set, else target/release/libkvm.so or
target/debug/libkvm.so in the repository (run `cargo build` first).
Standard library only.
"""

import ctypes
import os
import sys

PROG = "kvmdump"
DEFAULT_LENGTH = 64
MAX_LENGTH = 1024 * 1024
ERRBUF_SIZE = 2048  # KVM_ERRBUF_SIZE, FreeBSD's _POSIX2_LINE_MAX


class kvm_nlist(ctypes.Structure):
    """struct kvm_nlist from kvm.h."""

    _fields_ = [
        ("n_name", ctypes.c_char_p),
        ("n_type", ctypes.c_ubyte),
        ("n_value", ctypes.c_uint64),
    ]


def find_library():
    path = os.environ.get("KVM_LIBRARY")
    if path:
        return path
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for profile in ("release", "debug"):
        candidate = os.path.join(root, "target", profile, "libkvm.so")
        if os.path.exists(candidate):
            return candidate
    raise OSError("libkvm.so not found under %s/target (run `cargo build` "
                  "or set KVM_LIBRARY)" % root)


def load_library():
    lib = ctypes.CDLL(find_library())
    kvm_t = ctypes.c_void_p
    lib.kvm_open2.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int,
                              ctypes.POINTER(ctypes.c_char), ctypes.c_void_p]
    lib.kvm_open2.restype = kvm_t
    lib.kvm_nlist2.argtypes = [kvm_t, ctypes.POINTER(kvm_nlist)]
    lib.kvm_nlist2.restype = ctypes.c_int
    lib.kvm_read2.argtypes = [kvm_t, ctypes.c_uint64, ctypes.c_void_p,
                              ctypes.c_size_t]
    lib.kvm_read2.restype = ctypes.c_ssize_t
    lib.kvm_geterr.argtypes = [kvm_t]
    lib.kvm_geterr.restype = ctypes.c_char_p
    lib.kvm_native.argtypes = [kvm_t]
    lib.kvm_native.restype = ctypes.c_int
    lib.kvm_close.argtypes = [kvm_t]
    lib.kvm_close.restype = ctypes.c_int
    return lib


def hexdump_lines(addr, data):
    """The hex dump lines of kvmdump.c, 16 bytes per line."""
    for off in range(0, len(data), 16):
        chunk = data[off:off + 16]
        hexes = "".join("%02x " % b for b in chunk) + "   " * (16 - len(chunk))
        ascii = "".join(chr(b) if 0x20 <= b <= 0x7e else "." for b in chunk)
        line_addr = (addr + off) & 0xFFFFFFFFFFFFFFFF
        yield "0x%016x  %s |%s|" % (line_addr, hexes, ascii)


def parse_digits(s, hex_digits):
    """All of s as an unsigned 64-bit number: hexadecimal digits if
    hex_digits, else decimal digits (no sign, space, prefix or octal).
    None if s is not such a number."""
    digits = "0123456789abcdefABCDEF" if hex_digits else "0123456789"
    if not s or any(c not in digits for c in s):
        return None
    v = int(s, 16 if hex_digits else 10)
    return v if v < 1 << 64 else None


def is_hex_address(s):
    return s[:2] in ("0x", "0X")


def parse_length(s):
    """LENGTH: decimal or 0x hex."""
    if is_hex_address(s):
        return parse_digits(s[2:], True)
    return parse_digits(s, False)


def fail(msg, status=1):
    sys.stdout.flush()
    sys.stderr.write("%s: %s\n" % (PROG, msg))
    return status


def text(b):
    return os.fsdecode(b) if b is not None else ""


def main(argv):
    if len(argv) not in (4, 5):
        sys.stderr.write("usage: %s KERNEL CORE SYMBOL|0xADDRESS [LENGTH]\n"
                         % PROG)
        return 2
    kernel, core, what = argv[1], argv[2], argv[3]
    length = DEFAULT_LENGTH
    if len(argv) == 5:
        length = parse_length(argv[4])
        if length is None or not 1 <= length <= MAX_LENGTH:
            return fail("invalid LENGTH '%s' (1 to %d bytes)"
                        % (argv[4], MAX_LENGTH), 2)
    is_addr = is_hex_address(what)
    addr = None
    if is_addr:
        addr = parse_digits(what[2:], True)
        if addr is None:
            return fail("invalid address '%s'" % what, 2)

    try:
        lib = load_library()
    except OSError as e:
        return fail(str(e))

    errbuf = ctypes.create_string_buffer(ERRBUF_SIZE)
    # "-": no kernel file (a Linux dump's symbols come from the dump).
    execfile = None if kernel == "-" else os.fsencode(kernel)
    kd = lib.kvm_open2(execfile, os.fsencode(core), os.O_RDONLY,
                       errbuf, None)
    if not kd:
        return fail(text(errbuf.value))
    try:
        print("native: %d" % lib.kvm_native(kd))
        if not is_addr:
            nl = (kvm_nlist * 2)()
            nl[0].n_name = os.fsencode(what)
            nl[1].n_name = None
            missing = lib.kvm_nlist2(kd, nl)
            if missing < 0:
                return fail("kvm_nlist2: %s" % text(lib.kvm_geterr(kd)))
            if missing > 0:
                return fail("%s: symbol not found" % what)
            addr = nl[0].n_value
            print("%s = 0x%016x (n_type 0x%02x)" % (what, addr, nl[0].n_type))

        buf = ctypes.create_string_buffer(length)
        n = lib.kvm_read2(kd, addr, buf, length)
        if n < 0:
            return fail("kvm_read2: %s" % text(lib.kvm_geterr(kd)))
        for line in hexdump_lines(addr, buf.raw[:n]):
            print(line)
        if n < length:
            print("(short read: %d of %d bytes; the core file ends early)"
                  % (n, length))
        sys.stdout.flush()
        return 0
    finally:
        lib.kvm_close(kd)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
