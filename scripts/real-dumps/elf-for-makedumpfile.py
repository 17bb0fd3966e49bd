#!/usr/bin/env python3
"""Copy a QEMU ELF vmcore into a form makedumpfile 1.7.2 accepts.

QEMU (7.2 and 10.0) writes e_phoff=64+e_shnum*64: a section header table (for PN_XNUM
support) sits between the ELF header and the program headers. makedumpfile's
get_elf64_phdr() ignores e_phoff and reads phdr[i] at sizeof(Elf64_Ehdr) + i*sizeof(Elf64_Phdr),
so it finds no PT_LOAD ("Can't get the number of PT_LOAD."). This moves the phdrs to offset 64
(dropping the section headers) when they fit before the first segment's data.
Usage: elf-for-makedumpfile.py IN OUT
"""
import shutil
import struct
import sys

src, dst = sys.argv[1], sys.argv[2]
with open(src, "rb") as f:
    eh = bytearray(f.read(64))
    assert eh[:4] == b"\x7fELF" and eh[4] == 2, "ELF64 only"
    phoff, shoff = struct.unpack_from("<QQ", eh, 32)
    phentsize, phnum = struct.unpack_from("<HH", eh, 54)
    assert phnum != 0xFFFF, "PN_XNUM (paging=true dump) not supported"
    f.seek(phoff)
    ph = f.read(phentsize * phnum)
    first = min(struct.unpack_from("<Q", ph, i * phentsize + 8)[0] for i in range(phnum))
    assert 64 + len(ph) <= first, "no room for phdrs at offset 64"
shutil.copyfile(src, dst)
struct.pack_into("<QQ", eh, 32, 64, 0)       # e_phoff=64, e_shoff=0
struct.pack_into("<HHH", eh, 58, 0, 0, 0)    # e_shentsize, e_shnum, e_shstrndx = 0
with open(dst, "r+b") as f:
    f.write(eh)
    f.seek(64)
    f.write(ph)
print("wrote %s (phdrs moved %#x -> 0x40)" % (dst, phoff))
