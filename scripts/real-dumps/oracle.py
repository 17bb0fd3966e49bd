#!/usr/bin/env python3
"""Independent oracle for Linux vmcores (QEMU ELF / kdump-compressed), using drgn and libkdumpfile.

Usage:
  oracle.py DUMP [--system-map FILE] [--vmlinux FILE] [--arch x86_64|ia32|aarch64]
                 [--readers drgn,kdumpfile] [--xlat-out FILE] [--vmcoreinfo-out FILE]
                 [--samples N]

Run it with the venv that has both readers:  /work/realdumps/venv/bin/python oracle.py ...
(python3-libkdumpfile is a Debian package for /usr/bin/python3; drgn comes from PyPI; the venv
is made with --system-site-packages so it sees both.)

Prints sections:
  == header      raw ELF / kdump header facts (own parser; no reader library)
  == vmcoreinfo  the VMCOREINFO text (both readers, compared)
  == facts       OSRELEASE, KERNELOFFSET (or derived), phys_base, page_offset_base, 5-level, ...
  == symbols     NAME VA SOURCE (kallsyms / System.map+offset / VMCOREINFO)
  == bytes       bytes at some kernel virtual addresses (linux_banner, init_uts_ns, init_task comm)
  == xlat        VA -> PA samples (kernel image, direct map, vmalloc, vmemmap) from each reader
and writes the translation list to --xlat-out as "0xVA 0xPA" or "0xVA -" lines (# comments),
keeping only samples where all readers that answered agree.
"""
import argparse
import ctypes
import os
import re
import struct
import sys
import time

try:
    import drgn
    from drgn.helpers.linux import mm as drgn_mm
    import drgn.helpers.linux.kallsyms as drgn_kallsyms
except ImportError:  # pragma: no cover
    drgn = None
try:
    import kdumpfile
    import addrxlat
except ImportError:  # pragma: no cover
    kdumpfile = None

U64 = (1 << 64) - 1


def s64(v):
    v &= U64
    return v - (1 << 64) if v >> 63 else v


# ------------------------------------------------------------------------------------------
# Own header parser (ELF64/ELF32 core, kdump-compressed diskdump, makedumpfile flattened)
# ------------------------------------------------------------------------------------------
class FlatReader:
    """Random access to a makedumpfile flattened file by replaying its records (first MiBs)."""

    def __init__(self, f, limit=64 << 20):
        self.segs = []
        f.seek(4096)  # flat header is one 4 KiB block
        while True:
            h = f.read(16)
            if len(h) < 16:
                break
            off, size = struct.unpack(">qq", h)
            if off == -1 and size == -1:  # END_FLAG_FLAT_HEADER
                break
            self.segs.append((off, size, f.tell()))
            f.seek(size, 1)
        self.f = f

    def pread(self, off, size):
        out = bytearray(size)
        for o, s, pos in self.segs:
            lo, hi = max(o, off), min(o + s, off + size)
            if lo < hi:
                self.f.seek(pos + lo - o)
                out[lo - off:hi - off] = self.f.read(hi - lo)
        return bytes(out)


def parse_header(path):
    info = {}
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] == b"\x7fELF":
            info.update(parse_elf(f, head))
        elif head[:12] == b"makedumpfile":
            typ, ver = struct.unpack(">qq", head[16:32])
            info["format"] = "kdump-flattened (makedumpfile flat type=%d version=%d)" % (typ, ver)
            fr = FlatReader(f)
            info["flat_records"] = len(fr.segs)
            info.update(parse_kdump(fr.pread))
        elif head[:8] in (b"KDUMP   ", b"DISKDUMP"):
            info["format"] = "kdump-compressed (diskdump, not flattened)"

            def pread(off, size):
                f.seek(off)
                return f.read(size)
            info.update(parse_kdump(pread))
        else:
            info["format"] = "unknown magic %r" % head[:16]
    return info


EM = {3: "EM_386", 62: "EM_X86_64", 183: "EM_AARCH64", 40: "EM_ARM"}
NT = {1: "NT_PRSTATUS", 2: "NT_PRFPREG", 3: "NT_PRPSINFO", 0x46494c45: "NT_PRXFPREG"}


def parse_elf(f, head):
    cls, data, ver, osabi = head[4], head[5], head[6], head[7]
    e = "<" if data == 1 else ">"
    out = {"format": "ELF", "ei_class": {1: "ELFCLASS32", 2: "ELFCLASS64"}.get(cls, cls),
           "ei_data": {1: "LSB", 2: "MSB"}.get(data, data), "ei_osabi": osabi}
    if cls == 2:
        (etype, mach, ever, entry, phoff, shoff, flags, ehsize, phentsize, phnum, shentsize, shnum,
         shstrndx) = struct.unpack(e + "HHIQQQIHHHHHH", head[16:64])
    else:
        (etype, mach, ever, entry, phoff, shoff, flags, ehsize, phentsize, phnum, shentsize, shnum,
         shstrndx) = struct.unpack(e + "HHIIIIIHHHHHH", head[16:52])
    out.update(e_type=etype, e_machine="%d (%s)" % (mach, EM.get(mach, "?")), e_version=ever,
               e_entry=hex(entry), e_phnum=phnum, e_shnum=shnum, e_flags=hex(flags))
    if phnum == 0xFFFF and shoff:  # PN_XNUM: real count in section header 0's sh_info
        f.seek(shoff)
        sh0 = f.read(64 if cls == 2 else 40)
        phnum = struct.unpack_from(e + "I", sh0, 44 if cls == 2 else 28)[0]
        out["e_phnum"] = "0xffff (PN_XNUM) -> sh_info %d" % phnum
    f.seek(phoff)
    phs = []
    for _ in range(phnum):
        b = f.read(phentsize)
        if cls == 2:
            t, fl, off, va, pa, fsz, msz, al = struct.unpack(e + "IIQQQQQQ", b[:56])
        else:
            t, off, va, pa, fsz, msz, fl, al = struct.unpack(e + "IIIIIIII", b[:32])
        phs.append((t, off, va, pa, fsz, msz, fl, al))
    out["e_phoff"], out["e_shoff"] = phoff, shoff
    out["phdrs"] = ["%s off=%#x vaddr=%#x paddr=%#x filesz=%#x memsz=%#x flags=%#x align=%#x"
                    % ({1: "LOAD", 4: "NOTE"}.get(t, str(t)), off, va, pa, fsz, msz, fl, al)
                    for t, off, va, pa, fsz, msz, fl, al in phs[:12]]
    if len(phs) > 12:
        out["phdrs"].append("... %d more" % (len(phs) - 12))
    loads = sorted((pa, msz) for t, off, va, pa, fsz, msz, fl, al in phs if t == 1)
    merged = []
    for pa, msz in loads:  # paging=true dumps: one PT_LOAD per mapping, possibly aliased
        if merged and pa <= merged[-1][0] + merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], pa + msz - merged[-1][0]))
        else:
            merged.append((pa, msz))
    out["load_ranges"] = merged
    notes = []
    for t, off, va, pa, fsz, msz, fl, al in phs:
        if t != 4:
            continue
        f.seek(off)
        buf = f.read(fsz)
        i = 0
        while i + 12 <= len(buf):
            namesz, descsz, ntype = struct.unpack(e + "III", buf[i:i + 12])
            name = buf[i + 12:i + 12 + namesz].rstrip(b"\0").decode(errors="replace")
            d0 = i + 12 + ((namesz + 3) & ~3)
            desc = buf[d0:d0 + descsz]
            i = d0 + ((descsz + 3) & ~3)
            extra = ""
            if name == "VMCOREINFO":
                out["vmcoreinfo_note"] = desc.rstrip(b"\0").decode(errors="replace")
            if name == "QEMU":
                v, sz = struct.unpack(e + "II", desc[:8])
                extra = " (QEMUCPUState version=%d size=%d)" % (v, sz)
            notes.append("name=%r type=%#x (%s) descsz=%#x%s" % (name, ntype, NT.get(ntype, "?") if name == "CORE" else "-", descsz, extra))
            if namesz == 0 and descsz == 0:
                break
    out["notes"] = notes
    out["note_counts"] = {}
    for n in notes:
        k = n.split(" descsz")[0]
        out["note_counts"][k] = out["note_counts"].get(k, 0) + 1
    return out


def parse_kdump(pread):
    out = {}
    h = pread(0, 4096)
    out["signature"] = h[:8].decode(errors="replace")
    out["header_version"] = struct.unpack("<i", h[8:12])[0]
    uts = [h[12 + 65 * j:12 + 65 * (j + 1)].split(b"\0")[0].decode(errors="replace") for j in range(6)]
    out["utsname"] = dict(zip(["sysname", "nodename", "release", "version", "machine", "domainname"], uts))
    # 64-bit layout: timeval(16) at 408; 32-bit layout: timeval(8) at 404
    cands = {}
    for lay, (tv_off, tv_fmt, tv_len) in {"64": (408, "<qq", 16), "32": (404, "<ii", 8)}.items():
        o = tv_off + tv_len
        fields = struct.unpack("<IiiIIIIIIi", h[o:o + 40])
        cands[lay] = (tv_off, tv_fmt, fields)
    lay = "64" if cands["64"][2][1] in (1024, 4096, 16384, 65536) else "32"
    tv_off, tv_fmt, fields = cands[lay]
    out["header_layout"] = lay + "-bit"
    out["timestamp"] = struct.unpack(tv_fmt, h[tv_off:tv_off + struct.calcsize(tv_fmt)])
    names = ["status", "block_size", "sub_hdr_size", "bitmap_blocks", "max_mapnr", "total_ram_blocks",
             "device_blocks", "written_blocks", "current_cpu", "nr_cpus"]
    out.update(zip(names, fields))
    out["status_flags"] = "|".join(n for b, n in [(1, "ZLIB"), (2, "LZO"), (4, "SNAPPY"), (8, "INCOMPLETE"), (16, "ZSTD")] if out["status"] & b) or "none"
    bs = out["block_size"]
    sh = pread(bs, 256)
    if lay == "64":
        (phys_base, dump_level, split, start_pfn, end_pfn, off_vmci, size_vmci, off_note, size_note,
         off_erase, size_erase, start64, end64, max64) = struct.unpack("<QiiQQqQqQqQQQQ", sh[:104])
    else:
        (phys_base, dump_level, split, start_pfn, end_pfn, off_vmci, size_vmci, off_note, size_note,
         off_erase, size_erase, start64, end64, max64) = struct.unpack("<IiiIIqIqIqIQQQ", sh[:72])
    out["sub_phys_base"] = "%#x (as signed: %d)" % (phys_base, s64(phys_base) if lay == "64" else phys_base)
    out.update(sub_dump_level=dump_level, sub_split=split, offset_vmcoreinfo=off_vmci,
               size_vmcoreinfo=size_vmci, offset_note=off_note, size_note=size_note,
               offset_eraseinfo=off_erase, size_eraseinfo=size_erase, max_mapnr_64=max64)
    out["bitmap_offset"] = (1 + out["sub_hdr_size"]) * bs
    out["bitmap_bytes"] = out["bitmap_blocks"] * bs
    if 0 < size_vmci < (1 << 20):
        out["vmcoreinfo_note"] = pread(off_vmci, size_vmci).rstrip(b"\0").decode(errors="replace")
    return out


def parse_vmcoreinfo(text):
    d = {}
    for line in text.splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            d[k] = v
    return d


# ------------------------------------------------------------------------------------------
ERR = "?"  # a reader failed for a reason other than "not mapped"


class KdfC:
    """libkdumpfile/libaddrxlat through ctypes, for VA->PA.

    The python3-libkdumpfile 0.5.1 binding breaks page-table translation: once
    kdumpfile.get_addrxlat_ctx() has been called, every page-table walk (and every KVADDR read
    that needs one, e.g. vmalloc) fails with "Cannot read 64-bit PTE ...: No suitable
    capabilities" (the Python Context wrapper lacks cb_read_caps). So translations go through
    the C API directly: kdump_get_addrxlat() + addrxlat_fulladdr_conv().
    """

    class Attr(ctypes.Structure):
        class Val(ctypes.Union):
            _fields_ = [("number", ctypes.c_uint64), ("string", ctypes.c_char_p)]
        _fields_ = [("type", ctypes.c_int), ("val", Val)]

    class FullAddr(ctypes.Structure):
        _fields_ = [("addr", ctypes.c_uint64), ("as_", ctypes.c_int)]

    def __init__(self, path, arch=None):
        L = self.L = ctypes.CDLL("libkdumpfile.so.10")
        X = self.X = ctypes.CDLL("libaddrxlat.so.3")
        L.kdump_new.restype = ctypes.c_void_p
        L.kdump_get_err.restype = ctypes.c_char_p
        L.kdump_get_err.argtypes = [ctypes.c_void_p]
        L.kdump_open_fdset.argtypes = [ctypes.c_void_p, ctypes.c_uint, ctypes.POINTER(ctypes.c_int)]
        L.kdump_set_attr.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
        L.kdump_get_addrxlat.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        X.addrxlat_fulladdr_conv.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        self.fd = os.open(path, os.O_RDONLY)
        self.ctx = ctx = L.kdump_new()
        fds = (ctypes.c_int * 1)(self.fd)
        if L.kdump_open_fdset(ctx, 1, fds) != 0:
            raise RuntimeError("kdump_open_fdset: %s" % L.kdump_get_err(ctx))
        if arch:
            self._set_str("arch.name", arch, quiet=True)
        self._set_str("addrxlat.ostype", "linux")
        self.axctx, self.axsys = ctypes.c_void_p(), ctypes.c_void_p()
        if L.kdump_get_addrxlat(ctx, ctypes.byref(self.axctx), ctypes.byref(self.axsys)) != 0:
            raise RuntimeError("kdump_get_addrxlat: %s" % L.kdump_get_err(ctx))

    def root_fix(self, root_pa):
        """Make the kernel page-table root a KPHYSADDR (libkdumpfile 0.5.1 on Debian's i386
        6.1 kernels keeps it as a KVADDR that can only be translated through itself:
        'Infinite read recursion')."""
        X = self.X
        X.addrxlat_sys_get_meth.restype = ctypes.c_void_p
        X.addrxlat_sys_get_meth.argtypes = [ctypes.c_void_p, ctypes.c_int]
        m = X.addrxlat_sys_get_meth(self.axsys, 0)  # ADDRXLAT_SYS_METH_PGT
        # addrxlat_meth_t: kind(int) target_as(int) param{pgt{root{addr u64, as int}...}}
        ctypes.c_uint64.from_address(m + 8).value = root_pa
        ctypes.c_int.from_address(m + 16).value = 0  # ADDRXLAT_KPHYSADDR

    def _set_str(self, key, value, quiet=False):
        a = self.Attr()
        a.type = 4  # KDUMP_STRING
        a.val.string = value.encode()
        st = self.L.kdump_set_attr(self.ctx, key.encode(), ctypes.byref(a))
        if st != 0 and not quiet:
            raise RuntimeError("set %s: %s" % (key, self.L.kdump_get_err(self.ctx)))

    def vtop(self, va):
        """-> pa, None (not mapped: ERR_NOTPRESENT / ERR_NOMETH) or ERR (could not tell)"""
        fa = self.FullAddr(va, 2)  # ADDRXLAT_KVADDR
        st = self.X.addrxlat_fulladdr_conv(ctypes.byref(fa), 0, self.axctx, self.axsys)  # -> KPHYSADDR
        if st == 0:
            return fa.addr
        return None if st in (2, 6) else ERR


class Readers:
    def __init__(self, path, want, arch_hint):
        self.path = path
        self.p = None
        self.k = None
        self.kc = None
        self.errors = {}
        if "drgn" in want and drgn is not None:
            try:
                t = time.time()
                p = drgn.Program()
                p.set_core_dump(path)
                self.p = p
                self.drgn_open_s = time.time() - t
            except Exception as e:
                self.errors["drgn"] = repr(e)
        if "kdumpfile" in want and kdumpfile is not None:
            try:
                k = kdumpfile.kdumpfile(path)
                try:
                    k.attr["arch.name"]
                except (KeyError, Exception):
                    if arch_hint:
                        k.attr["arch.name"] = arch_hint
                        self.errors["kdumpfile-note"] = "arch.name missing in dump; forced to %r" % arch_hint
                k.attr["addrxlat.ostype"] = "linux"
                self.k = k
                # NB: never call k.get_addrxlat_ctx() here (see KdfC)
            except Exception as e:
                self.errors["kdumpfile"] = repr(e)
            try:
                self.kc = KdfC(path, arch_hint)
            except Exception as e:
                self.kc = None
                self.errors["kdumpfile-ctypes"] = repr(e)

    def fix_ia32_root(self, root_va, page_offset=0xC0000000):
        """libkdumpfile 0.5.1 + Debian i386 6.1 vmcore: the page-table root is left as a KVADDR
        that only the page table itself could translate (Infinite read recursion). swapper_pg_dir
        lives in lowmem, so its physical address is va - PAGE_OFFSET; set that as the root."""
        pa = root_va - page_offset
        if self.k is not None:
            s = self.k.get_addrxlat_sys()  # (get_addrxlat_sys is safe; get_addrxlat_ctx is not)
            m = s.get_meth(addrxlat.SYS_METH_PGT)
            m.root = addrxlat.FullAddress(addrxlat.KPHYSADDR, pa)
            s.set_meth(addrxlat.SYS_METH_PGT, m)
        if self.kc is not None:
            self.kc.root_fix(pa)
        return pa

    # each returns dict reader -> value or exception string
    def read(self, va, size):
        r = {}
        if self.p is not None:
            try:
                r["drgn"] = self.p.read(va, size)
            except Exception as e:
                r["drgn"] = "ERR " + type(e).__name__
        if self.k is not None:
            try:
                r["kdumpfile"] = bytes(self.k.read(kdumpfile.KDUMP_KVADDR, va, size))
            except Exception as e:
                r["kdumpfile"] = "ERR " + type(e).__name__
        return r

    def read_phys(self, pa, size):
        if self.p is not None:
            try:
                return self.p.read(pa, size, True)
            except Exception:
                pass
        if self.k is not None:
            try:
                return bytes(self.k.read(kdumpfile.KDUMP_KPHYSADDR, pa, size))
            except Exception:
                pass
        return None

    def read_ptr(self, va, ptr_size):
        for v in self.read(va, ptr_size).values():
            if isinstance(v, bytes):
                return int.from_bytes(v, "little")
        return None

    def vtop(self, va, pgtable):
        r = {}
        if getattr(self, "kc", None) is not None:
            r["kdumpfile"] = self.kc.vtop(va)
        if self.p is not None and pgtable:
            try:
                r["drgn"] = int(drgn_mm._linux_helper_follow_phys(self.p, pgtable, va))
            except NotImplementedError as e:
                self.errors.setdefault("drgn-vtop", repr(e))
            except drgn.FaultError:
                r["drgn"] = None
            except Exception:
                r["drgn"] = ERR
        return r


def guess_arch(vmci, hdr):
    rel = vmci.get("OSRELEASE", "")
    if "SYMBOL(init_top_pgt)" in vmci or rel.endswith("amd64"):
        return "x86_64"
    if "NUMBER(VA_BITS)" in vmci or rel.endswith("arm64"):
        return "aarch64"
    if "686" in rel or "CONFIG_X86_PAE" in vmci:
        return "ia32"
    m = hdr.get("e_machine", "")
    return {"EM_X86_64": "x86_64", "EM_386": "ia32", "EM_AARCH64": "aarch64"}.get(m.split("(")[-1].rstrip(")"), None)


def load_system_map(path):
    m = {}
    if not path:
        return m
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3:
                m.setdefault(parts[2], int(parts[0], 16))
    return m


def hexdump(b, n=64):
    b = b[:n]
    return b.hex() + "  |" + "".join(chr(c) if 32 <= c < 127 else "." for c in b) + "|"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dump")
    ap.add_argument("--system-map")
    ap.add_argument("--vmlinux", help="load DWARF into drgn (slow, several seconds)")
    ap.add_argument("--arch", help="libkdumpfile arch name for kdump files whose header lacks it")
    ap.add_argument("--readers", default="drgn,kdumpfile")
    ap.add_argument("--xlat-out")
    ap.add_argument("--vmcoreinfo-out")
    ap.add_argument("--samples", type=int, default=16)
    a = ap.parse_args()
    want = a.readers.split(",")
    out = sys.stdout.write

    out("# oracle %s\n" % a.dump)
    out("# readers: drgn %s, libkdumpfile python %s\n" % (
        getattr(drgn, "__version__", "missing"), "present" if kdumpfile else "missing"))

    # ---- header (own parser)
    t = time.time()
    hdr = parse_header(a.dump)
    out("== header (own parser, %.2fs)\n" % (time.time() - t))
    for key, v in hdr.items():
        if key in ("vmcoreinfo_note", "load_ranges"):
            continue
        if isinstance(v, list):
            out("%s:\n" % key)
            for x in v:
                out("  %s\n" % x)
        else:
            out("%s: %s\n" % (key, v))
    vtext_hdr = hdr.get("vmcoreinfo_note", "")
    vmci = parse_vmcoreinfo(vtext_hdr)
    arch = a.arch or guess_arch(vmci, hdr)

    R = Readers(a.dump, want, arch)
    for key, v in R.errors.items():
        out("reader-error %s: %s\n" % (key, v))

    # ---- vmcoreinfo
    out("== vmcoreinfo\n")
    texts = {"own-parser": vtext_hdr}
    if R.p is not None:
        try:
            texts["drgn"] = bytes(R.p["VMCOREINFO"].value_()).rstrip(b"\0").decode()
        except Exception as e:
            out("drgn VMCOREINFO: ERR %r\n" % e)
    if R.k is not None:
        try:
            texts["kdumpfile"] = bytes(R.k.attr["linux.vmcoreinfo.raw"]).rstrip(b"\0").decode()
        except Exception as e:
            out("kdumpfile linux.vmcoreinfo.raw: ERR %r\n" % e)
    ref = next((v for v in texts.values() if v), "")
    for key, v in texts.items():
        out("vmcoreinfo[%s]: %d bytes, %s\n" % (key, len(v), "same" if v == ref else "DIFFERENT"))
    out(ref + ("\n" if not ref.endswith("\n") else ""))
    if not vmci:
        vmci = parse_vmcoreinfo(ref)
    if a.vmcoreinfo_out and ref:
        with open(a.vmcoreinfo_out, "w") as f:
            f.write(ref if ref.endswith("\n") else ref + "\n")
    arch = a.arch or guess_arch(vmci, hdr)
    ptr = 4 if arch == "ia32" else 8

    # ---- symbols
    if arch == "ia32" and "SYMBOL(swapper_pg_dir)" in vmci and (R.k is not None or R.kc is not None):
        pa = R.fix_ia32_root(int(vmci["SYMBOL(swapper_pg_dir)"], 16))
        out("libkdumpfile workaround: page-table root set to KPHYSADDR %#x (swapper_pg_dir - 0xc0000000)\n" % pa)
    smap = load_system_map(a.system_map)
    koff = None
    koff_src = None
    if "KERNELOFFSET" in vmci:
        koff, koff_src = int(vmci["KERNELOFFSET"], 16), "VMCOREINFO KERNELOFFSET"
    elif smap.get("_stext") and "SYMBOL(_stext)" in vmci:
        koff = int(vmci["SYMBOL(_stext)"], 16) - smap["_stext"]
        koff_src = "SYMBOL(_stext) - System.map _stext"
    kallsyms_ok = False
    if R.p is not None:
        try:
            t = time.time()
            idx = drgn_kallsyms.load_vmlinux_kallsyms(R.p)
            R.p.register_symbol_finder("vmcoreinfo-kallsyms", idx, enable_index=0)
            kallsyms_ok = True
            kallsyms_s = time.time() - t
        except Exception as e:
            out("drgn kallsyms from VMCOREINFO: ERR %r\n" % e)
    dwarf_ok = False
    if a.vmlinux and R.p is not None:
        try:
            t = time.time()
            R.p.load_debug_info([a.vmlinux])
            dwarf_ok = True
            out("drgn: loaded DWARF from %s in %.1fs\n" % (a.vmlinux, time.time() - t))
        except Exception as e:
            out("drgn load_debug_info: ERR %r\n" % e)

    def sym(name):
        """-> (va, source) trying VMCOREINFO, kallsyms (drgn), System.map + offset"""
        found = []
        if "SYMBOL(%s)" % name in vmci and name != "mem_section":
            # (SYMBOL(mem_section) is the *value* of the mem_section pointer with
            # SPARSEMEM_EXTREME, not the variable's address; reported under facts)
            found.append((int(vmci["SYMBOL(%s)" % name], 16), "vmcoreinfo"))
        if kallsyms_ok:
            try:
                found.append((R.p.symbol(name).address, "kallsyms"))
            except Exception:
                pass
        if dwarf_ok:
            try:
                found.append((R.p.object(name).address_, "dwarf"))
            except Exception:
                pass
        if name in smap and koff is not None:
            found.append(((smap[name] + koff) & ((1 << (8 * ptr)) - 1), "System.map+offset"))
        if not found:
            return None, "not found"
        # preference: VMCOREINFO, System.map + offset, drgn kallsyms/symtab, DWARF. (drgn leaves
        # i386 DWARF/symtab addresses unrelocated -- no KERNELOFFSET -- and reports arm64 `_end`
        # from vmlinux's symtab at its link-time address.)
        rank = {"vmcoreinfo": 0, "System.map+offset": 1, "kallsyms": 2, "dwarf": 3}
        found.sort(key=lambda x: rank[x[1]])
        vals = sorted(set(v for v, _ in found))
        src = ",".join(s for _, s in found)
        if len(vals) > 1:
            src += " DISAGREE " + " ".join("%s=%#x" % (s, v) for v, s in found)
        return found[0][0], src

    # ---- facts
    out("== facts\n")
    out("arch: %s (pointer %d bytes)\n" % (arch, ptr))
    if R.p is not None:
        out("drgn platform: %s; open %.2fs%s\n" % (R.p.platform, R.drgn_open_s,
            "; kallsyms %.2fs" % kallsyms_s if kallsyms_ok else "; kallsyms unavailable"))
    if R.k is not None:
        for key in ("file.format", "file.description", "arch.name", "arch.page_size", "max_pfn",
                    "linux.uts.release", "linux.uts.machine", "linux.phys_base", "cpu.number"):
            try:
                v = R.k.attr[key]
                if key == "linux.phys_base":
                    v = "%#x (signed %d)" % (v, s64(v) if ptr == 8 else v)
                out("kdumpfile %s: %s\n" % (key, v))
            except Exception as e:
                out("kdumpfile %s: ERR %s\n" % (key, type(e).__name__))
    out("OSRELEASE: %s\n" % vmci.get("OSRELEASE"))
    out("PAGESIZE: %s\n" % vmci.get("PAGESIZE"))
    out("KERNELOFFSET: %s\n" % (vmci.get("KERNELOFFSET") or "(absent)"))
    out("kernel offset used: %s (%s)\n" % (hex(koff) if koff is not None else None, koff_src))
    if "NUMBER(phys_base)" in vmci:
        pb = int(vmci["NUMBER(phys_base)"])
        out("phys_base (VMCOREINFO NUMBER, signed decimal): %d = %s%#x\n" % (pb, "-" if pb < 0 else "", abs(pb)))
    for key in sorted(vmci):
        if key.startswith("NUMBER(") or key.startswith("CONFIG_") or not re.match(r"^(SYMBOL|OFFSET|SIZE|LENGTH)\(", key):
            if key not in ("OSRELEASE", "PAGESIZE", "KERNELOFFSET", "NUMBER(phys_base)"):
                if not key.startswith("NUMBER(PG_") and "MAPCOUNT" not in key:
                    out("vmcoreinfo %s: %s\n" % (key, vmci[key]))
    level5 = vmci.get("NUMBER(pgtable_l5_enabled)")
    out("5-level paging (NUMBER(pgtable_l5_enabled)): %s\n" % (level5 if level5 is not None else "(absent)"))
    bases = {}
    if arch == "x86_64":
        for b in ("page_offset_base", "vmalloc_base", "vmemmap_base", "phys_base"):
            va, src = sym(b)
            if va is not None:
                v = R.read_ptr(va, 8)
                bases[b] = v
                out("%s: %s (read at %#x, %s)\n" % (b, "%#x" % v if v is not None else "unreadable", va, src))
        if "phys_base" in bases and bases["phys_base"] is not None:
            out("phys_base variable as signed: %d\n" % s64(bases["phys_base"]))
        bases["direct"] = bases.get("page_offset_base")
        bases["phys_offset"] = 0
    elif arch == "ia32":
        bases["direct"] = 0xC0000000  # Debian i386: CONFIG_VMSPLIT_3G, PAGE_OFFSET not in VMCOREINFO
        bases["phys_offset"] = 0
        out("PAGE_OFFSET (assumed, CONFIG_PAGE_OFFSET of Debian i386): 0xc0000000\n")
    elif arch == "aarch64":
        vab = int(vmci.get("NUMBER(VA_BITS)", "48"))
        bases["direct"] = (-(1 << vab)) & U64
        bases["phys_offset"] = s64(int(vmci.get("NUMBER(PHYS_OFFSET)", "0"), 0))
        out("PAGE_OFFSET (derived -(1<<VA_BITS)): %#x; PHYS_OFFSET (memstart_addr, signed) %d = %s%#x\n" % (
            bases["direct"], bases["phys_offset"], "-" if bases["phys_offset"] < 0 else "", abs(bases["phys_offset"])))
        out("linear map: va = PAGE_OFFSET + (pa - PHYS_OFFSET); e.g. pa 0x40000000 -> %#x\n" % ((bases["direct"] + 0x40000000 - bases["phys_offset"]) & U64))

    # ---- symbols
    out("== symbols (name va source)\n")
    names = ["_text", "_stext", "_etext", "_end", "linux_banner", "init_task", "init_uts_ns",
             "swapper_pg_dir", "init_top_pgt", "init_mm", "jiffies_64", "vmap_area_list", "mem_section",
             "page_offset_base", "vmalloc_base", "vmemmap_base", "phys_base", "kimage_voffset",
             "memstart_addr", "high_memory", "max_low_pfn"]
    symv = {}
    for n in names:
        va, src = sym(n)
        if va is not None:
            symv[n] = va
            out("%-18s %#x %s\n" % (n, va, src))
        else:
            out("%-18s - %s\n" % (n, src))

    # ---- bytes
    out("== bytes (va size: per reader hex |ascii|)\n")

    def show(label, va, size):
        r = R.read(va, size)
        vals = [v for v in r.values() if isinstance(v, bytes)]
        agree = "agree" if len(set(vals)) <= 1 else "DISAGREE"
        out("%s @%#x size %d (%s)\n" % (label, va, size, agree))
        for key, v in r.items():
            out("  %-9s %s\n" % (key, hexdump(v, size) if isinstance(v, bytes) else v))
        return vals[0] if vals else None

    if "linux_banner" in symv:
        b = show("linux_banner", symv["linux_banner"], 128)
        if b:
            out("  string: %r\n" % b.split(b"\0")[0].decode(errors="replace"))
    if "init_uts_ns" in symv:
        off = int(vmci.get("OFFSET(uts_namespace.name)", "0"))
        b = show("init_uts_ns.name", symv["init_uts_ns"] + off, 390)
        if b:
            f = [b[65 * j:65 * (j + 1)].split(b"\0")[0].decode(errors="replace") for j in range(6)]
            out("  utsname: %s\n" % f)
    if "init_task" in symv:
        b = show("init_task(first 64)", symv["init_task"], 64)
        full = R.read(symv["init_task"], 0x3000)
        blob = next((v for v in full.values() if isinstance(v, bytes)), b"")
        i = blob.find(b"swapper")
        if i >= 0:
            out("init_task comm: %r found at init_task+%#x (by search for 'swapper')\n" % (blob[i:i + 16].split(b"\0")[0].decode(), i))
            show("init_task.comm", symv["init_task"] + i, 16)
        else:
            out("init_task comm: 'swapper' not found in first 0x3000 bytes\n")
        if dwarf_ok:
            try:
                it = R.p["init_task"]
                out("drgn DWARF: init_task.comm=%r offsetof(task_struct, comm)=%#x init_uts_ns.name.release=%r\n" % (
                    it.comm.string_().decode(), drgn.offsetof(it.type_, "comm"),
                    R.p["init_uts_ns"].name.release.string_().decode()))
            except Exception as e:
                out("drgn DWARF read: ERR %r\n" % e)

    # ---- xlat
    out("== xlat samples\n")
    pgtable = symv.get("init_top_pgt") or symv.get("swapper_pg_dir")
    if R.p is not None:
        out("drgn follow_phys page table: %s\n" % (hex(pgtable) if pgtable else None))
    samples = []  # (category, va)
    N = a.samples
    # kernel image
    ks, ke = symv.get("_stext") or symv.get("_text"), symv.get("_end")
    if ks:
        if not ke:
            ke = ks + (32 << 20)
        step = max(0x1000, ((ke - ks) // N) & ~0xfff)
        for n in ("_stext", "_etext", "linux_banner", "init_task", "init_uts_ns", "swapper_pg_dir", "init_mm", "jiffies_64"):
            if n in symv:
                samples.append(("kernel-image " + n, symv[n]))
        for va in range(ks, ke, step):
            samples.append(("kernel-image", va + 0x123))
        samples.append(("kernel-image past _end", (ke + (64 << 20)) & ~0xfff))
    # direct map, from RAM ranges
    ranges = hdr.get("load_ranges") or []
    if not ranges and R.k is not None:
        try:
            bm = R.k.attr["memory.pagemap"]
            mp = R.k.attr["max_pfn"]
            i = 0
            while i < mp and len(ranges) < 64:
                s = bm.find_set(i)
                try:
                    e = bm.find_clear(s)
                except Exception:
                    e = mp
                ranges.append((s << 12, (e - s) << 12))
                i = e
        except Exception:
            pass
    out("ram/dump ranges: %s\n" % " ".join("%#x+%#x" % r for r in ranges))
    if bases.get("direct") is not None:
        D, P0 = bases["direct"], bases.get("phys_offset", 0)
        lowmem_limit = 0x38000000 if arch == "ia32" else 1 << 62
        for pa0, size in ranges:
            if size < 0x200000 and pa0 > 0x100000:
                continue  # device windows (VGA etc.)
            cnt = max(2, N // max(1, len(ranges)))
            for j in range(cnt):
                pa = pa0 + (size * j // cnt) + 0x567
                if pa >= lowmem_limit or (P0 >= 0 and pa < P0):
                    continue
                samples.append(("direct-map pa=%#x" % pa, (D + pa - P0) & U64))
        samples.append(("direct-map beyond RAM", (D + (1 << 40 if ptr == 8 else 0x3f000000)) & U64))
    # vmalloc: walk vmap_area_list with VMCOREINFO offsets
    if "vmap_area_list" in symv and "OFFSET(vmap_area.list)" in vmci:
        lo, so = int(vmci["OFFSET(vmap_area.list)"]), int(vmci["OFFSET(vmap_area.va_start)"])
        head = symv["vmap_area_list"]
        node = R.read_ptr(head, ptr)
        areas = []
        while node and node != head and len(areas) < 4000:
            va_start = R.read_ptr(node - lo + so, ptr)
            va_end = R.read_ptr(node - lo + so + ptr, ptr)
            if va_start is None:
                break
            areas.append((va_start, va_end))
            node = R.read_ptr(node, ptr)
        out("vmap_area_list: %d areas walked; first %s\n" % (len(areas), " ".join("%#x-%#x" % x for x in areas[:4])))
        pick = areas[:: max(1, len(areas) // N)][:N]
        for s, e in pick:
            samples.append(("vmalloc area %#x-%#x" % (s, e), s + 0x10))
            if e and e - s > 0x2000:
                samples.append(("vmalloc area end-guard", e - 1))
    # vmemmap: struct page of some pfns, from mem_section (SPARSEMEM_VMEMMAP) or vmemmap_base
    spage = int(vmci.get("SIZE(page)", "0"))
    if spage and ptr == 8 and ranges:
        vm = bases.get("vmemmap_base")
        pfns = []
        for pa0, size in ranges:
            if size >= 0x200000 or pa0 < 0x100000:
                pfns += [(pa0 >> 12) + k * ((size >> 12) // 4) for k in range(4)]
        if vm:
            for pfn in pfns[:N]:
                samples.append(("vmemmap pfn=%#x (vmemmap_base)" % pfn, vm + pfn * spage))
        elif "SYMBOL(mem_section)" in vmci and "NUMBER(SECTION_SIZE_BITS)" in vmci:
            # SPARSEMEM_EXTREME: mem_section -> roots[]; section_mem_map encodes mem_map - start_pfn
            ms = int(vmci["SYMBOL(mem_section)"], 16)
            ssize = int(vmci.get("SIZE(mem_section)", "16"))
            per_root = int(vmci.get("PAGESIZE", "4096")) // ssize
            sbits = int(vmci["NUMBER(SECTION_SIZE_BITS)"]) - 12
            for pfn in pfns[:N]:
                nr = pfn >> sbits
                root = R.read_ptr(ms + (nr // per_root) * 8, 8)
                if not root:
                    continue
                coded = R.read_ptr(root + (nr % per_root) * ssize, 8)
                if coded is None:
                    continue
                mem_map = coded & ~((1 << 6) - 1) & U64  # SECTION_MAP_LAST_BIT <= 6
                samples.append(("vmemmap pfn=%#x (mem_section)" % pfn, (mem_map + pfn * spage) & U64))
    # the vmcoreinfo note page itself (direct map) -- no
    lines = []
    answered_by = set()
    disagree = 0
    for cat, va in samples:
        va &= (1 << (8 * ptr)) - 1
        r = R.vtop(va, pgtable)
        answered_by.update(k2 for k2, v in r.items() if v != ERR)
        answered = ", ".join("%s=%s" % (k2, "%#x" % v if isinstance(v, int) else (v or "-")) for k2, v in r.items())
        r = {k2: v for k2, v in r.items() if v != ERR}
        if not r:
            out("NO-ANSWER %#x [%s] [%s]\n" % (va, cat, answered))
            lines.append("# NO-ANSWER %#x [%s]" % (va, cat))
            continue
        vals = set(v for v in r.values())
        if len(vals) > 1:
            disagree += 1
            out("DISAGREE %#x %s [%s]\n" % (va, answered, cat))
            lines.append("# DISAGREE %#x %s [%s]" % (va, answered, cat))
            continue
        v = vals.pop() if vals else None
        out("%#x %s    # %s [%s]\n" % (va, "%#x" % v if v is not None else "-", cat, answered))
        lines.append("# %s\n%#x %s" % (cat, va, "%#x" % v if v is not None else "-"))
    out("xlat: %d samples, %d disagreements\n" % (len(samples), disagree))
    # sanity: a reader that cannot read linux_banner cannot be trusted to say "not mapped"
    sane = False
    if "linux_banner" in symv:
        sane = any(isinstance(v, bytes) and v.startswith(b"Linux version")
                   for v in R.read(symv["linux_banner"], 16).values())
    out("sanity (linux_banner readable through a reader): %s\n" % sane)
    if a.xlat_out and not sane:
        with open(a.xlat_out, "w") as f:
            f.write("# NO-ORACLE: no reader could read linux_banner from %s; no translations given\n" % os.path.basename(a.dump))
            for key, v in R.errors.items():
                f.write("# reader-error %s: %s\n" % (key, v))
    elif a.xlat_out:
        with open(a.xlat_out, "w") as f:
            f.write("# va pa ('-' = not mapped); dump %s; translations from %s\n" % (
                os.path.basename(a.dump), ",".join(sorted(answered_by)) or "none"))
            f.write("\n".join(lines) + "\n")
    # check: physical read of the kernel image via both (first bytes of linux_banner through pa)
    if "linux_banner" in symv:
        r = R.vtop(symv["linux_banner"], pgtable)
        pa = next((v for v in r.values() if v is not None), None)
        if pa is not None:
            b = R.read_phys(pa, 32)
            out("linux_banner via physical read at %#x: %r\n" % (pa, b))


if __name__ == "__main__":
    main()
