#!/usr/bin/env python3
"""check-kvm.py: checks libkvm.so against every real QEMU dump under /work/realdumps.

Standard library only; the library is loaded with ctypes ($KVM_LIBRARY, else
target/release/libkvm.so, else target/debug/libkvm.so; run `cargo build --release` first).

    python3 scripts/real-dumps/check-kvm.py [--root /work/realdumps] [--only SUBSTR ...]
        [--syms null,map,vmlinux] [--no-walk] [--json OUT.json]
    python3 scripts/real-dumps/check-kvm.py bench [--dump FILE] [--n 100000] [--seed 1]
        [--hot-pages 512] [--hot-frac 0.9] [--addr-out FILE]

Check mode, for each dump file of each variant and each way of giving symbols (NULL
execfile, System.map, vmlinux):
  1. kvm_open2 (error text recorded on failure; time measured);
  2. every `va pa` line of the variant's xlat.*.txt files (union, deduplicated): kvm_read2 of
     8 bytes at va against the 8 bytes at physical pa of the same boot's vmcore.elf (paging
     false: PT_LOAD p_paddr -> file offset, phdrs parsed here; PN_XNUM handled).  A pa that the
     dump under test does not hold (makedumpfile -d 31 excluded it; parsed here from the kdump
     bitmap or the ELF phdrs) is counted apart ("excl") when the read fails.  `va -` lines must
     fail;
  3. linux_banner via kvm_nlist2 (address and 128 bytes) against the oracle of the same boot's
     ELF; kvm_kerndisp against VMCOREINFO KERNELOFFSET (i386: SYMBOL(_stext) - System.map _stext);
  4. kvm_walk_pages: pages and bytes counted; every oracle va inside a walked page must give the
     oracle's pa (kmap and dmap va both used); ELF cores: kp_offset checked against the phdrs;
  5. timings (open / xlat reads / walk).
Prints a table and then each kind of disagreement with examples.

Bench mode: the same list of N 8-byte reads at direct-map addresses of dumped pages (a hot set
of --hot-pages pages gets --hot-frac of the reads, the rest are uniform over all dumped pages),
through libkvm.so (ctypes, kvm_read2) and libkdumpfile.so.10 (ctypes, kdump_read KDUMP_KVADDR),
in the same run; prints both rates and the ratio.  --addr-out writes the address list (one hex
address a line) for bench-kdump.c.
"""

import argparse
import bisect
import collections
import ctypes
import glob
import json
import os
import random
import re
import struct
import sys
import time

ERRBUF_SIZE = 2048
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
U64 = (1 << 64) - 1

KERNEL_DIR = [  # variant prefix -> /work/realdumps/kernels/<dir>
    ("x86_64", "amd64"), ("i386pae", "i386pae"), ("i386", "i386"), ("aarch64", "arm64")]


# ------------------------------------------------------------------------------------------
# ctypes binding of libkvm.so
# ------------------------------------------------------------------------------------------
class kvm_nlist(ctypes.Structure):
    _fields_ = [("n_name", ctypes.c_char_p), ("n_type", ctypes.c_ubyte), ("n_value", ctypes.c_uint64)]


class kvm_page(ctypes.Structure):
    _fields_ = [("kp_version", ctypes.c_uint), ("kp_paddr", ctypes.c_uint64),
                ("kp_kmap_vaddr", ctypes.c_uint64), ("kp_dmap_vaddr", ctypes.c_uint64),
                ("kp_prot", ctypes.c_ubyte), ("kp_offset", ctypes.c_int64), ("kp_len", ctypes.c_size_t)]


WALK_CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(kvm_page), ctypes.c_void_p)


def find_library():
    p = os.environ.get("KVM_LIBRARY")
    if p:
        return p
    for prof in ("release", "debug"):
        c = os.path.join(REPO, "target", prof, "libkvm.so")
        if os.path.exists(c):
            return c
    raise OSError("libkvm.so not found under %s/target (run `cargo build --release`)" % REPO)


def load_kvm():
    lib = ctypes.CDLL(find_library())
    kt = ctypes.c_void_p
    lib.kvm_open2.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int,
                              ctypes.POINTER(ctypes.c_char), ctypes.c_void_p]
    lib.kvm_open2.restype = kt
    lib.kvm_nlist2.argtypes = [kt, ctypes.POINTER(kvm_nlist)]
    lib.kvm_nlist2.restype = ctypes.c_int
    lib.kvm_read2.argtypes = [kt, ctypes.c_uint64, ctypes.c_void_p, ctypes.c_size_t]
    lib.kvm_read2.restype = ctypes.c_ssize_t
    lib.kvm_geterr.argtypes = [kt]
    lib.kvm_geterr.restype = ctypes.c_char_p
    lib.kvm_kerndisp.argtypes = [kt]
    lib.kvm_kerndisp.restype = ctypes.c_int64
    lib.kvm_walk_pages.argtypes = [kt, WALK_CB, ctypes.c_void_p]
    lib.kvm_walk_pages.restype = ctypes.c_int
    lib.kvm_close.argtypes = [kt]
    lib.kvm_close.restype = ctypes.c_int
    return lib


def geterr(lib, kd):
    v = lib.kvm_geterr(kd)
    return v.decode(errors="replace") if v else ""


# ------------------------------------------------------------------------------------------
# Own parsers: ELF core phdrs, kdump (plain / flattened) bitmaps
# ------------------------------------------------------------------------------------------
def elf_loads(path):
    """-> list of (paddr, vaddr, offset, filesz, memsz) of the PT_LOADs (ELF64 or ELF32)."""
    with open(path, "rb") as f:
        h = f.read(64)
        cls = h[4]
        if cls == 2:
            (_, _, _, _, phoff, shoff, _, _, phentsize, phnum, _, _, _) = struct.unpack("<HHIQQQIHHHHHH", h[16:64])
        else:
            (_, _, _, _, phoff, shoff, _, _, phentsize, phnum, _, _, _) = struct.unpack("<HHIIIIIHHHHHH", h[16:52])
        if phnum == 0xFFFF and shoff:  # PN_XNUM
            f.seek(shoff)
            sh0 = f.read(64 if cls == 2 else 40)
            phnum = struct.unpack_from("<I", sh0, 44 if cls == 2 else 28)[0]
        f.seek(phoff)
        raw = f.read(phnum * phentsize)
    out = []
    for i in range(phnum):
        b = raw[i * phentsize:(i + 1) * phentsize]
        if cls == 2:
            t, fl, off, va, pa, fsz, msz, al = struct.unpack("<IIQQQQQQ", b[:56])
        else:
            t, off, va, pa, fsz, msz, fl, al = struct.unpack("<IIIIIIII", b[:32])
        if t == 1:
            out.append((pa, va, off, fsz, msz))
    return out


class PhysElf:
    """Physical reads from a paging=false ELF (the reference)."""

    def __init__(self, path):
        self.path = path
        self.loads = sorted(elf_loads(path))
        self.starts = [l[0] for l in self.loads]
        self.f = open(path, "rb")

    def off(self, pa):
        i = bisect.bisect_right(self.starts, pa) - 1
        if i < 0:
            return None
        p, _, o, fsz, _ = self.loads[i]
        if pa - p < fsz:
            return o + pa - p
        return None

    def read(self, pa, n):
        o = self.off(pa)
        if o is None or self.off(pa + n - 1) != o + n - 1:
            return None
        self.f.seek(o)
        return self.f.read(n)


class Dumped:
    """Does a dump file hold the page of physical address pa?  True / False / None (unknown)."""

    def __init__(self, path):
        self.kind = None
        f = self.fh = open(path, "rb")  # kept open: page descriptors are read later
        if True:
            head = f.read(16)
            if head[:4] == b"\x7fELF":
                self.kind = "elf"
                loads = elf_loads(path)
                # paging=true ELFs have overlapping (aliased) segments: merge the pa ranges
                self.cov = self._merge((pa, pa + fsz) for pa, va, off, fsz, msz in loads if fsz)
                self.covz = self._merge((pa, pa + msz) for pa, va, off, fsz, msz in loads if msz)
                self.f = open(path, "rb")
                return
            if head[:12] == b"makedumpfile":
                pread = self._flat(f)
            elif head[:8] in (b"KDUMP   ", b"DISKDUMP"):
                def pread(off, size, f=f):
                    f.seek(off)
                    return f.read(size)
            else:
                return
            h = pread(0, 4096)
            (self.bs, sub_blocks, bitmap_blocks, max_mapnr) = struct.unpack_from("<iiII", h, 428)
            bmoff = (1 + sub_blocks) * self.bs
            half = bitmap_blocks * self.bs // 2
            self.bitmap2 = pread(bmoff + half, half)
            self.kind = "kdump"
            self.flat = head[:12] == b"makedumpfile"
            self.pread = pread
            self.descoff = (1 + sub_blocks + bitmap_blocks) * self.bs
            self.pref = None

    def desc(self, pa):
        """kdump: the page_desc (offset, size, flags, page_flags) of pa's block, or None."""
        pfn = pa // self.bs
        byte, bit = divmod(pfn, 8)
        if byte >= len(self.bitmap2) or not self.bitmap2[byte] >> bit & 1:
            return None
        if self.pref is None:
            pref, acc = [0] * (len(self.bitmap2) + 1), 0
            for i, b in enumerate(self.bitmap2):
                acc += bin(b).count("1")
                pref[i + 1] = acc
            self.pref = pref
        rank = self.pref[byte] + bin(self.bitmap2[byte] & ((1 << bit) - 1)).count("1")
        return struct.unpack("<qIIQ", self.pread(self.descoff + 24 * rank, 24))

    @staticmethod
    def _flat(f):
        segs = []
        f.seek(4096)
        while True:
            h = f.read(16)
            if len(h) < 16:
                break
            off, size = struct.unpack(">qq", h)
            if off == -1 and size == -1:
                break
            segs.append((off, size, f.tell()))
            f.seek(size, 1)
            if off > (256 << 20) and len(segs) > 100:  # past headers/bitmaps (pages follow)
                pass

        def pread(off, size):
            out = bytearray(size)
            for o, s, pos in segs:
                lo, hi = max(o, off), min(o + s, off + size)
                if lo < hi:
                    f.seek(pos + lo - o)
                    out[lo - off:hi - off] = f.read(hi - lo)
            return bytes(out)
        return pread

    @staticmethod
    def _merge(ranges):
        m = []
        for lo, hi in sorted(ranges):
            if m and lo <= m[-1][1]:
                m[-1][1] = max(m[-1][1], hi)
            else:
                m.append([lo, hi])
        return ([r[0] for r in m], m)

    @staticmethod
    def _in(cov, pa):
        starts, m = cov
        i = bisect.bisect_right(starts, pa) - 1
        return i >= 0 and pa < m[i][1]

    def offset_ok(self, pa, off, ref):
        """ELF: off -1 when no segment holds pa in p_filesz; else the 64 bytes at off in the file
        are those of pa in the reference (segments of paging ELFs overlap, so by content)."""
        if off == -1:
            return not self._in(self.cov, pa)
        if not self._in(self.cov, pa):
            return False
        want = ref.read(pa, 64)
        self.f.seek(off)
        return want is None or self.f.read(64) == want

    def __call__(self, pa):
        if self.kind == "elf":
            if self._in(self.cov, pa):
                return True
            if self._in(self.covz, pa):
                return "zero"  # in p_memsz beyond p_filesz
            return False
        if self.kind == "kdump":
            pfn = pa // self.bs
            if pfn // 8 >= len(self.bitmap2):
                return False
            return bool(self.bitmap2[pfn // 8] >> (pfn % 8) & 1)
        return None


def parse_vmcoreinfo(path):
    d = {}
    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if "=" in line:
                k, v = line.split("=", 1)
                d[k] = v
    return d


def load_system_map(path):
    m = {}
    with open(path) as f:
        for line in f:
            p = line.split()
            if len(p) >= 3:
                m.setdefault(p[2], int(p[0], 16))
    return m


def read_xlat(paths):
    """Union of the xlat files: -> (dict va -> pa|None, conflicts list, category dict)."""
    xl, cat, conflicts = {}, {}, []
    for p in paths:
        c = ""
        with open(p) as f:
            for line in f:
                line = line.strip()
                if line.startswith("#"):
                    c = line[1:].strip()
                    continue
                if not line:
                    continue
                a, b = line.split()[:2]
                va, pa = int(a, 16), (None if b == "-" else int(b, 16))
                if va in xl and xl[va] != pa:
                    conflicts.append((os.path.basename(p), va, xl[va], pa))
                    continue
                xl[va] = pa
                cat.setdefault(va, c.split()[0] if c else "?")
    return xl, conflicts, cat


def oracle_banner(path):
    """-> (va, bytes) of linux_banner from an oracle report, or (None, None)."""
    va, data = None, None
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return None, None
    for i, line in enumerate(lines):
        m = re.match(r"linux_banner @0x([0-9a-f]+) size (\d+)", line)
        if m:
            va = int(m.group(1), 16)
            for l2 in lines[i + 1:i + 4]:
                m2 = re.match(r"\s+(drgn|kdumpfile)\s+([0-9a-f]+)\s", l2)
                if m2:
                    data = bytes.fromhex(m2.group(2))
                    break
            break
    return va, data


def norm_err(s):
    s = re.sub(r"0x[0-9a-fA-F]+", "0x#", s)
    s = re.sub(r"\b\d+\b", "#", s)
    return s


# ------------------------------------------------------------------------------------------
# The check
# ------------------------------------------------------------------------------------------
class Issues:
    def __init__(self):
        self.kinds = collections.OrderedDict()  # (kind, normerr) -> [count, examples]

    def add(self, kind, err, example):
        k = (kind, norm_err(err or ""))
        e = self.kinds.setdefault(k, [0, [], set()])
        e[0] += 1
        pair = example.split("]")[0]
        e[2].add(pair)
        # two examples, from different dump files when there are several
        if len(e[1]) < 2 and not any(example.split(" ")[0] == x.split(" ")[0] for x in e[1]):
            e[1].append(example)


def kernel_dir(root, variant):
    for pre, d in KERNEL_DIR:
        if variant.startswith(pre):
            return os.path.join(root, "kernels", d)
    return None


def check_dump(lib, issues, ctx, dump, symmode, symfile, do_walk):
    """Checks one (dump, symbols) pair; returns a row dict."""
    tag = "%s/%s [%s]" % (ctx["variant"], os.path.basename(dump), symmode)
    row = {"dump": "%s/%s" % (ctx["variant"], os.path.basename(dump).replace("vmcore.", "")),
           "syms": symmode}
    errbuf = ctypes.create_string_buffer(ERRBUF_SIZE)
    t0 = time.perf_counter()
    kd = lib.kvm_open2(os.fsencode(symfile) if symfile else None, os.fsencode(dump), os.O_RDONLY, errbuf, None)
    row["t_open"] = time.perf_counter() - t0
    if not kd:
        err = errbuf.value.decode(errors="replace")
        row["opened"] = False
        row["error"] = err
        issues.add("open fails", err, "%s: %s" % (tag, err))
        return row
    row["opened"] = True
    try:
        dumped = ctx["dumped"]
        ref = ctx["ref"]
        buf = ctypes.create_string_buffer(8)
        ok = tot = excl = exclz = noref = umok = umtot = 0
        t0 = time.perf_counter()
        for va, pa in ctx["xlat"].items():
            n = lib.kvm_read2(kd, va, buf, 8)
            err = geterr(lib, kd) if n != 8 else ""
            got = buf.raw[:8] if n == 8 else None
            cat = ctx["cat"].get(va, "?")
            if pa is None:
                umtot += 1
                if n < 0:
                    umok += 1
                    row.setdefault("unmapped_err", err)
                else:
                    issues.add("unmapped va reads (oracle: not mapped)", "",
                               "%s va=%#x (%s) expected failure; kvm_read2 returned %d bytes %s"
                               % (tag, va, cat, n, got.hex() if got else ""))
                continue
            tot += 1
            want = ref.read(pa, 8)
            d = dumped(pa)
            if want is None:  # pa outside the RAM QEMU dumps (MMIO: ioremap'd vmalloc areas)
                if n < 0:
                    noref += 1
                    row.setdefault("noref_err", err)
                else:
                    issues.add("read succeeds at a pa no dump holds", "",
                               "%s va=%#x (%s) pa=%#x (not in vmcore.elf); kvm_read2 gave %s"
                               % (tag, va, cat, pa, got.hex() if got else n))
                continue
            if n == 8 and got == want:
                ok += 1
                continue
            if n < 0 and d is False:
                excl += 1
                row.setdefault("excl_err", err)
                continue
            if n < 0 and d == "zero":
                exclz += 1
                row.setdefault("exclz_err", err)
                continue
            if n < 0:
                issues.add("read fails on a mapped, dumped va", err,
                           "%s va=%#x (%s) expected pa=%#x bytes %s; kvm_read2=-1: %s"
                           % (tag, va, cat, pa, want.hex(), err))
            elif n != 8:
                issues.add("short read", err, "%s va=%#x pa=%#x n=%d: %s" % (tag, va, pa, n, err))
            else:
                where = ""
                if d is False:
                    where = " (pa not in this dump)"
                elif d == "zero":
                    where = " (pa in p_memsz beyond p_filesz)"
                issues.add("wrong bytes" + where, "",
                           "%s va=%#x (%s) expected pa=%#x bytes %s; got %s"
                           % (tag, va, cat, pa, want.hex(), got.hex()))
        row["t_reads"] = time.perf_counter() - t0
        row.update(reads_ok=ok, reads_tot=tot - noref, excl=excl, exclz=exclz, noref=noref, um_ok=umok, um_tot=umtot)

        # kerndisp
        kd_got = lib.kvm_kerndisp(kd)
        row["kerndisp"] = kd_got
        want_kd = ctx["kerndisp"]
        row["kerndisp_ok"] = (kd_got == want_kd) if want_kd is not None else None
        if want_kd is not None and kd_got != want_kd:
            issues.add("kvm_kerndisp differs", "", "%s kvm_kerndisp=%#x expected %#x (%s)"
                       % (tag, kd_got & U64, want_kd & U64, ctx["kerndisp_src"]))

        # banner
        nl = (kvm_nlist * 2)()
        nl[0].n_name = b"linux_banner"
        nl[1].n_name = None
        r = lib.kvm_nlist2(kd, nl)
        bva, bdata = ctx["banner"]
        if r != 0:
            row["banner"] = "nosym" if r > 0 else "nlist-err"
            if r < 0:
                issues.add("kvm_nlist2 error", geterr(lib, kd), "%s: %s" % (tag, geterr(lib, kd)))
            elif symmode != "null":
                issues.add("linux_banner not found with a symbol file", "", "%s kvm_nlist2 -> %d" % (tag, r))
        else:
            va = nl[0].n_value
            b = ctypes.create_string_buffer(128)
            n = lib.kvm_read2(kd, va, b, 128)
            if bva is not None and va != bva:
                row["banner"] = "BADADDR"
                issues.add("linux_banner address differs", "", "%s kvm_nlist2=%#x oracle=%#x" % (tag, va, bva))
            elif n != 128:
                row["banner"] = "READFAIL"
                issues.add("linux_banner read fails", geterr(lib, kd),
                           "%s va=%#x: %s" % (tag, va, geterr(lib, kd)))
            elif bdata is not None and b.raw[:len(bdata)] != bdata:
                row["banner"] = "BADBYTES"
                issues.add("linux_banner bytes differ", "", "%s got %r want %r" % (tag, b.raw[:40], bdata[:40]))
            else:
                row["banner"] = "ok" if bdata is not None else "no-oracle"
        if do_walk:
            walk(lib, kd, row, issues, ctx, tag, dump)
    finally:
        lib.kvm_close(kd)
    return row


def walk(lib, kd, row, issues, ctx, tag, dump):
    kpages, dpages, donly = [], [], []
    npages = [0, 0]

    def cb(p, _closure):
        q = p.contents
        npages[0] += 1
        npages[1] += q.kp_len
        t = (q.kp_paddr, q.kp_len, q.kp_offset)
        if q.kp_kmap_vaddr:
            kpages.append((q.kp_kmap_vaddr,) + t)
        if q.kp_dmap_vaddr:
            dpages.append((q.kp_dmap_vaddr,) + t)
            if not q.kp_kmap_vaddr:
                donly.append((q.kp_dmap_vaddr,) + t + (0,))
        return 1
    cbf = WALK_CB(cb)
    t0 = time.perf_counter()
    r = lib.kvm_walk_pages(kd, cbf, None)
    row["t_walk"] = time.perf_counter() - t0
    row["walk_pages"] = npages[0]
    row["walk_bytes"] = npages[1]
    row["walk_ret"] = r
    if r != 1:
        err = geterr(lib, kd)
        row["walk_err"] = err
        issues.add("kvm_walk_pages returns %d" % r, err, "%s after %d pages: %s" % (tag, npages[0], err))
    kpages.sort()
    dpages.sort()

    def index(pages):  # per page size, so that overlapping entries are all found
        by = collections.defaultdict(list)
        for p in pages:
            by[p[2]].append(p)
        return [([p[0] for p in v], v) for v in by.values()]
    kidx, didx = index(kpages), index(dpages)

    def find(idx, va):
        for starts, pages in idx:
            i = bisect.bisect_right(starts, va) - 1
            if i >= 0 and va < pages[i][0] + pages[i][2]:
                return pages[i]
        return None
    # dmap-only entries (kp_kmap_vaddr 0) whose physical pages a kernel-map leaf also gives
    merged = []
    for lo, hi in sorted((p[1], p[1] + p[2]) for p in kpages):  # kernel-map pa ranges, merged
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    mst = [m[0] for m in merged]
    dup_entries = dup_bytes = 0
    for v, pa, ln, off, km in donly:
        i = bisect.bisect_right(mst, pa + ln - 1) - 1
        ov = 0
        while i >= 0 and merged[i][1] > pa:
            ov += min(merged[i][1], pa + ln) - max(merged[i][0], pa)
            i -= 1
        if ov > 0:
            dup_entries += 1
            dup_bytes += ov
            if dup_entries == 1:
                ex = (v, pa, ln)
    if dup_entries:
        issues.add("walk: physical pages listed twice (a direct-map leaf, kp_kmap_vaddr 0, repeats memory a kernel-map leaf gave with its kp_dmap_vaddr)", "",
                   "%s %d of %d dmap-only entries, %#x bytes; first: dmap va=%#x pa=%#x len=%#x"
                   % (tag, dup_entries, len(donly), dup_bytes, ex[0], ex[1], ex[2]))
    row.update(walk_kmap=len(kpages), walk_donly=len(donly), walk_dup=dup_entries)
    if ctx["dumped"].kind == "kdump" and ctx["dumped"].flat:
        if not [p for p in kpages + donly if p[3] != -1]:
            issues.add("walk: kp_offset is -1 for every page of a flattened kdump file (reads work)", "",
                       "%s %d pages, e.g. pa=%#x kp_offset=-1" % (tag, npages[0], (kpages or donly)[0][1]))
    elif ctx["dumped"].kind == "kdump":
        # plain kdump: kp_offset should be the page's place in the file: desc.offset (+ the page's
        # offset in its block when the block is stored uncompressed); -1 when not dumped
        dmk = ctx["dumped"]
        rnd = random.Random(5)
        allp = kpages + donly
        nbad, nsame, first = 0, 0, None
        for p in (rnd.sample(allp, min(3000, len(allp))) if allp else []):
            v, pa, ln, off = p[:4]
            d = dmk.desc(pa)
            if d is None:
                good = off == -1
            elif d[2] == 0:  # stored raw
                good = off == d[0] + pa % dmk.bs
            else:  # compressed: there is no file offset of the first byte; accept the block's
                good = off == d[0]
            if not good:
                nbad += 1
                if off >= 0 and d is not None and d[2] == 0:
                    want64 = ctx["ref"].read(pa, 64)
                    dmk.fh.seek(off)
                    same = dmk.fh.read(64) == want64
                    nsame += same
                if first is None:
                    first = (v, pa, off, d)
        if nbad:
            same_txt = "; the 64 bytes at kp_offset equal the page's in %d of them (QEMU's shared zero block)" % nsame
            want = "-1" if first[3] is None else "%d" % (first[3][0] + (first[1] % dmk.bs if first[3][2] == 0 else 0))
            issues.add("walk: kp_offset differs from the kdump page descriptor", "",
                       "%s %d of 3000 sampled pages%s; first: va=%#x pa=%#x kp_offset=%d expected %s (desc offset=%d size=%d flags=%d, block %d bytes)"
                       % (tag, nbad, same_txt, first[0], first[1], first[2], want,
                          *(first[3][:3] if first[3] else (-1, 0, 0)), dmk.bs))
    checked = bad = missing = extra = 0
    for va, pa in ctx["xlat"].items():
        hit = find(kidx, va) or find(didx, va)
        if pa is None:
            if hit:
                extra += 1
                issues.add("walk lists a va the oracle says is unmapped", "",
                           "%s va=%#x in walked page va=%#x pa=%#x len=%#x" % (tag, va, hit[0], hit[1], hit[2]))
            continue
        if hit is None:
            missing += 1
            issues.add("walk misses a mapped va", "", "%s va=%#x (%s) pa=%#x" % (tag, va, ctx["cat"].get(va), pa))
            continue
        checked += 1
        wpa = hit[1] + (va - hit[0])
        if wpa != pa:
            bad += 1
            issues.add("walk pa differs from oracle", "", "%s va=%#x oracle pa=%#x walk pa=%#x (page va=%#x pa=%#x len=%#x)"
                       % (tag, va, pa, wpa, hit[0], hit[1], hit[2]))
    # kp_offset of ELF cores against the file's own PT_LOADs (any segment holding pa in p_filesz)
    dm = ctx["dumped"]
    if dm.kind == "elf":
        rnd = random.Random(7)
        allp = kpages + donly
        sample = rnd.sample(allp, min(3000, len(allp))) if allp else []
        nbad = 0
        for p in sample:
            v, pa, ln, off = p[:4]
            if not dm.offset_ok(pa, off, ctx["ref"]):
                nbad += 1
                if nbad == 1:
                    first = (v, pa, off)
        if nbad:
            issues.add("walk: kp_offset differs from the ELF phdrs", "",
                       "%s %d of %d sampled pages; first: va=%#x pa=%#x kp_offset=%d"
                       % (tag, nbad, len(sample), first[0], first[1], first[2]))
    # a sample of walked pages read back via kvm_read2 vs reference physical bytes
    rnd = random.Random(11)
    buf = ctypes.create_string_buffer(8)
    sample = rnd.sample(kpages, min(300, len(kpages))) if kpages else []
    rb_ok = rb_tot = 0
    for v, pa, ln, off in sample:
        o = rnd.randrange(0, ln // 8) * 8
        want = ctx["ref"].read(pa + o, 8)
        if want is None:
            continue
        d = ctx["dumped"](pa + o)
        n = lib.kvm_read2(kd, v + o, buf, 8)
        if n < 0 and d in (False, "zero"):
            continue
        rb_tot += 1
        if n == 8 and buf.raw == want:
            rb_ok += 1
        else:
            issues.add("walked page reads back wrong", geterr(lib, kd) if n < 0 else "",
                       "%s va=%#x walk pa=%#x want %s got %s"
                       % (tag, v + o, pa + o, want.hex(), buf.raw.hex() if n == 8 else "err: " + geterr(lib, kd)))
    row.update(walk_checked=checked, walk_bad=bad, walk_missing=missing, walk_extra=extra,
               walk_rb_ok=rb_ok, walk_rb_tot=rb_tot)


def variant_ctx(root, vdir):
    variant = os.path.basename(vdir)
    elf = os.path.join(vdir, "vmcore.elf")
    xfiles = sorted(glob.glob(os.path.join(vdir, "xlat.*.txt")))
    xl, conflicts, cat = read_xlat(xfiles)
    vmci = parse_vmcoreinfo(os.path.join(vdir, "vmcoreinfo.vmcore.elf.txt"))
    kdir = kernel_dir(root, variant)
    smap_path = os.path.join(kdir, "System.map")
    vml = os.path.join(kdir, "vmlinux")
    kerndisp, src = None, ""
    if "KERNELOFFSET" in vmci:
        kerndisp, src = int(vmci["KERNELOFFSET"], 16), "VMCOREINFO KERNELOFFSET"
    elif "SYMBOL(_stext)" in vmci and os.path.exists(smap_path):
        sm = load_system_map(smap_path)
        kerndisp, src = int(vmci["SYMBOL(_stext)"], 16) - sm["_stext"], "SYMBOL(_stext) - System.map _stext"
    return {"variant": variant, "ref": PhysElf(elf), "xlat": xl, "cat": cat, "conflicts": conflicts,
            "kerndisp": kerndisp, "kerndisp_src": src,
            "banner": oracle_banner(os.path.join(vdir, "oracle.vmcore.elf.txt")),
            "symfiles": [("null", None), ("map", smap_path)] + ([("vmlinux", vml)] if os.path.exists(vml) else [])}


def fmt_row(r):
    if not r["opened"]:
        return "%-44s %-7s %-4s %s" % (r["dump"], r["syms"], "NO", r["error"][:110])
    excl = (" +%dx" % r["excl"]) if r.get("excl") else ""
    excl += (" +%dz" % r["exclz"]) if r.get("exclz") else ""
    kdok = {True: "ok", False: "BAD", None: "-"}[r["kerndisp_ok"]]
    walk = ""
    if "walk_pages" in r:
        walk = "%d%s" % (r["walk_pages"], "" if r["walk_ret"] == 1 else "(ret %d)" % r["walk_ret"])
        walk += " chk %d/%d" % (r["walk_checked"] - r["walk_bad"], r["walk_checked"])
        if r["walk_missing"] or r["walk_extra"]:
            walk += " miss %d extra %d" % (r["walk_missing"], r["walk_extra"])
    t = "%.3f/%.3f" % (r["t_open"], r["t_reads"])
    if "t_walk" in r:
        t += "/%.2f" % r["t_walk"]
    return "%-44s %-7s %-4s %-12s %-7s %-9s %-4s %-26s %s" % (
        r["dump"], r["syms"], "yes", "%d/%d%s" % (r["reads_ok"], r["reads_tot"], excl),
        "%d/%d" % (r["um_ok"], r["um_tot"]), r["banner"], kdok, walk, t)


def print_compact(rows):
    """One line per dump file: the symbol modes' results joined with '/' where they differ."""
    print("\n== compact (one line per dump file; symbols null/map/vmlinux)")
    print("%-40s %-5s %-13s %-6s %-18s %-12s %-6s %-22s %s" % ("dump", "open", "reads ok", "unmap", "banner n/m/v",
          "disp n/m/v", "walk", "walk xlat chk / dup", "t open ms n/m/v; reads ms; walk s"))
    by = collections.OrderedDict()
    for r in rows:
        by.setdefault(r["dump"], []).append(r)
    for d, rs in by.items():
        if not all(r["opened"] for r in rs):
            print("%-40s NO    %s" % (d, " / ".join(r.get("error", "ok")[:60] for r in rs)))
            continue

        def j(key, f=str):
            v = [f(r.get(key)) for r in rs]
            return v[0] if len(set(v)) == 1 else "/".join(v)
        reads = j("reads_ok") + "/" + j("reads_tot")
        if rs[0].get("excl"):
            reads += " +%sx" % j("excl")
        if rs[0].get("exclz"):
            reads += " +%sz" % j("exclz")
        disp = "/".join({True: "ok", False: "BAD", None: "-"}[r["kerndisp_ok"]] for r in rs)
        chk = "%s/%s dup %s" % (j("walk_checked", lambda c: str(c)), j("walk_checked"), j("walk_dup"))
        chk = "%s/%s" % (j("walk_checked"), j("walk_checked")) if all(r.get("walk_bad") == 0 for r in rs) else "BAD " + j("walk_bad")
        miss = sum(r.get("walk_missing", 0) + r.get("walk_extra", 0) for r in rs)
        chk += (" miss/extra %d" % miss if miss else "") + " dup %s" % j("walk_dup")
        t = "%s; %s; %s" % ("/".join("%.0f" % (r["t_open"] * 1e3) for r in rs),
                            "/".join("%.0f" % (r["t_reads"] * 1e3) for r in rs),
                            "/".join("%.2f" % r.get("t_walk", 0) for r in rs))
        print("%-40s %-5s %-13s %-6s %-18s %-12s %-6s %-22s %s" % (
            d, "yes", reads, j("um_ok") + "/" + j("um_tot"), "/".join(r["banner"] for r in rs), disp,
            j("walk_pages"), chk, t))


def main_check(a):
    lib = load_kvm()
    issues = Issues()
    rows = []
    syms = a.syms.split(",")
    vdirs = sorted(d for d in glob.glob(os.path.join(a.root, "*", "*"))
                   if os.path.exists(os.path.join(d, "vmcore.elf")))
    if a.only:
        vdirs = [d for d in vdirs if os.path.basename(d) in a.only]
    print("library: %s" % find_library())
    hdr = "%-44s %-7s %-4s %-12s %-7s %-9s %-4s %-26s %s" % (
        "dump", "symbols", "open", "reads ok", "unmap", "banner", "disp", "walk pages (xlat chk)",
        "open/reads[/walk] s")
    print(hdr)
    print("-" * len(hdr))
    t_all = time.perf_counter()
    for vdir in vdirs:
        ctx = variant_ctx(a.root, vdir)
        for c in ctx["conflicts"]:
            issues.add("oracle xlat files disagree", "", "%s %s va=%#x %s vs %s" % (ctx["variant"], c[0], c[1], c[2], c[3]))
        dumps = sorted(p for p in glob.glob(os.path.join(vdir, "vmcore.*")))
        if a.files:
            dumps = [d for d in dumps if any(d.endswith(s) for s in a.files)]
        for dump in dumps:
            ctx["dumped"] = Dumped(dump)
            for mode, sf in ctx["symfiles"]:
                if mode not in syms:
                    continue
                r = check_dump(lib, issues, ctx, dump, mode, sf, not a.no_walk)
                rows.append(r)
                print(fmt_row(r), flush=True)
    print("\n(total %.1f s)\nreads ok 'N/M': 8-byte reads equal to vmcore.elf at the oracle pa; M leaves out"
          " VAs whose pa is outside the RAM QEMU dumps (MMIO), which must fail and did unless listed below;"
          "\n '+Kx' = K more reads failed on pages the dump's kdump bitmap excludes (makedumpfile -d 31);"
          "\n '+Kz' = K more failed on pages in an ELF PT_LOAD's p_memsz beyond p_filesz (makedumpfile -E -d 31)."
          "\nunmap: oracle-unmapped VAs whose read failed.  walk: pages; 'chk a/b' = oracle VAs inside walked"
          " pages (kmap or dmap va) whose pa agrees; miss = oracle-mapped VAs in no walked page."
          % (time.perf_counter() - t_all))
    ex = {}
    for r in rows:
        for k in ("unmapped_err", "excl_err", "exclz_err", "noref_err"):
            if r.get(k):
                ex.setdefault((k, norm_err(r[k])), r[k])
    if a.compact:
        print_compact(rows)
    print("\nSample error texts (expected failures):")
    for (k, _), v in ex.items():
        print("  %-12s %s" % (k, v))
    print("\n== disagreements (%d kinds)" % len(issues.kinds))
    for (kind, nerr), (cnt, exs, dumps) in issues.kinds.items():
        print("* %s%s: %d times in %d (dump,symbols) pairs" % (kind, (" [%s]" % nerr) if nerr else "", cnt, len(set(dumps))))
        for e in exs:
            print("    e.g. %s" % e)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"rows": rows, "issues": [{"kind": k[0], "err": k[1], "count": v[0], "examples": v[1]}
                                                for k, v in issues.kinds.items()]}, f, indent=1)


# ------------------------------------------------------------------------------------------
# Bench: libkvm vs libkdumpfile, same addresses
# ------------------------------------------------------------------------------------------
class Kdf:
    class Attr(ctypes.Structure):
        class Val(ctypes.Union):
            _fields_ = [("number", ctypes.c_uint64), ("string", ctypes.c_char_p)]
        _fields_ = [("type", ctypes.c_int), ("val", Val)]

    def __init__(self, path, arch="x86_64"):
        L = self.L = ctypes.CDLL("libkdumpfile.so.10")
        L.kdump_new.restype = ctypes.c_void_p
        L.kdump_get_err.restype = ctypes.c_char_p
        L.kdump_get_err.argtypes = [ctypes.c_void_p]
        L.kdump_open_fdset.argtypes = [ctypes.c_void_p, ctypes.c_uint, ctypes.POINTER(ctypes.c_int)]
        L.kdump_set_attr.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
        L.kdump_read.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint64, ctypes.c_void_p,
                                 ctypes.POINTER(ctypes.c_size_t)]
        L.kdump_read.restype = ctypes.c_int
        L.kdump_free.argtypes = [ctypes.c_void_p]
        self.fd = os.open(path, os.O_RDONLY)
        self.ctx = L.kdump_new()
        fds = (ctypes.c_int * 1)(self.fd)
        if L.kdump_open_fdset(self.ctx, 1, fds) != 0:
            raise RuntimeError("kdump_open_fdset: %s" % L.kdump_get_err(self.ctx))
        self._set("arch.name", arch, quiet=True)  # QEMU kdump files have no arch name
        self._set("addrxlat.ostype", "linux")

    def _set(self, key, value, quiet=False):
        at = self.Attr()
        at.type = 4  # KDUMP_STRING
        at.val.string = value.encode()
        if self.L.kdump_set_attr(self.ctx, key.encode(), ctypes.byref(at)) != 0 and not quiet:
            raise RuntimeError("set %s: %s" % (key, self.L.kdump_get_err(self.ctx)))

    def close(self):
        self.L.kdump_free(self.ctx)
        os.close(self.fd)


def bench_addrs(dump, vdir, n, seed, hot_pages, hot_frac):
    """N direct-map addresses (8-byte aligned) of pages the dump holds."""
    d = Dumped(dump)
    assert d.kind == "kdump", "bench wants a kdump file"
    pfns = [i * 8 + b for i, byte in enumerate(d.bitmap2) if byte for b in range(8) if byte >> b & 1]
    pob = None
    with open(os.path.join(vdir, "oracle.vmcore.elf.txt")) as f:
        for line in f:
            m = re.match(r"page_offset_base: (0x[0-9a-f]+)", line)
            if m:
                pob = int(m.group(1), 16)
    ref = PhysElf(os.path.join(vdir, "vmcore.elf"))
    pfns = [p for p in pfns if ref.off(p * d.bs) is not None]  # RAM pages (not VGA/BIOS)
    rnd = random.Random(seed)
    hot = rnd.sample(pfns, min(hot_pages, len(pfns)))
    out = []
    for _ in range(n):
        p = rnd.choice(hot) if rnd.random() < hot_frac else rnd.choice(pfns)
        out.append(pob + p * d.bs + rnd.randrange(0, d.bs // 8) * 8)
    return out, pob, len(pfns)


def main_bench(a):
    dump = os.path.abspath(a.dump)
    vdir = os.path.dirname(dump)
    addrs, pob, npf = bench_addrs(dump, vdir, a.n, a.seed, a.hot_pages, a.hot_frac)
    if a.addr_out:
        with open(a.addr_out, "w") as f:
            f.write("".join("%#x\n" % x for x in addrs))
    print("dump %s: %d dumped RAM pages, page_offset_base %#x, %d addresses (%.0f%% on %d hot pages, seed %d)"
          % (dump, npf, pob, len(addrs), a.hot_frac * 100, a.hot_pages, a.seed))
    lib = load_kvm()
    errbuf = ctypes.create_string_buffer(ERRBUF_SIZE)
    t0 = time.perf_counter()
    kd = lib.kvm_open2(None, os.fsencode(dump), os.O_RDONLY, errbuf, None)
    t_open_kvm = time.perf_counter() - t0
    if not kd:
        sys.exit("kvm_open2: %s" % errbuf.value.decode())
    t0 = time.perf_counter()
    k = Kdf(dump)
    t_open_kdf = time.perf_counter() - t0
    buf1 = ctypes.create_string_buffer(8)
    buf2 = ctypes.create_string_buffer(8)
    ln = ctypes.c_size_t(8)
    # correctness of the same list, then timing (each twice, interleaved)
    r2, kdread, ctx = lib.kvm_read2, k.L.kdump_read, k.ctx
    mism = fail1 = fail2 = 0
    for x in addrs[:5000]:
        n = r2(kd, x, buf1, 8)
        ln.value = 8
        s = kdread(ctx, 2, x, buf2, ctypes.byref(ln))  # KDUMP_KVADDR = 2
        fail1 += n != 8
        fail2 += s != 0
        mism += (n == 8 and s == 0 and buf1.raw != buf2.raw)
    print("agreement on the first 5000: %d mismatches, libkvm failures %d, libkdumpfile failures %d"
          % (mism, fail1, fail2))
    res = {"libkvm": [], "libkdumpfile": []}
    for rep in range(2):
        t0 = time.perf_counter()
        for x in addrs:
            r2(kd, x, buf1, 8)
        res["libkvm"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for x in addrs:
            ln.value = 8
            kdread(ctx, 2, x, buf2, ctypes.byref(ln))
        res["libkdumpfile"].append(time.perf_counter() - t0)
    # ctypes floor: a call of a trivial C function with the same argument shape
    libc = ctypes.CDLL(None)
    libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
    t0 = time.perf_counter()
    for x in addrs:
        libc.memset(buf1, 0, 8)
    t_floor = time.perf_counter() - t0
    print("open: libkvm %.3f s, libkdumpfile %.3f s" % (t_open_kvm, t_open_kdf))
    for name, ts in res.items():
        best = min(ts)
        print("%-13s %8.0f reads/s (%.2f us/read; runs %s s)" % (name, len(addrs) / best, best / len(addrs) * 1e6,
                                                                  ", ".join("%.3f" % t for t in ts)))
    print("ratio libkvm/libkdumpfile rate: %.2fx" % (min(res["libkdumpfile"]) / min(res["libkvm"])))
    print("ctypes floor (memset through ctypes, same loop): %.2f us/call" % (t_floor / len(addrs) * 1e6))
    lib.kvm_close(kd)
    k.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", nargs="?", default="check", choices=["check", "bench"])
    ap.add_argument("--root", default="/work/realdumps")
    ap.add_argument("--only", nargs="*", help="variant names (directory basenames)")
    ap.add_argument("--files", nargs="*", help="dump file name suffixes (e.g. elf kdump-zlib)")
    ap.add_argument("--syms", default="null,map,vmlinux")
    ap.add_argument("--no-walk", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--compact", action="store_true", help="also a table with one line per dump file")
    ap.add_argument("--dump", default="/work/realdumps/x86_64/x86_64-kaslr/vmcore.mdf-lzo-d31")
    ap.add_argument("--n", type=int, default=100000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--hot-pages", type=int, default=512)
    ap.add_argument("--hot-frac", type=float, default=0.9)
    ap.add_argument("--addr-out")
    a = ap.parse_args()
    if a.mode == "bench":
        main_bench(a)
    else:
        main_check(a)


if __name__ == "__main__":
    main()
