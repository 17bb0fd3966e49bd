#!/usr/bin/python3
"""Checks the kdump-compressed fixture writer (tests/fixture/kdump.rs) and
the library's reader (src/kdump.rs) against independent readers.

Not part of the test suite. Needs Debian's python3-libkdumpfile (run with
/usr/bin/python3, whose site-packages hold it) and, for the flattened
check, makedumpfile:

    apt-get install -y python3-libkdumpfile makedumpfile
    /usr/bin/python3 scripts/oracle/kdump_check.py [DIR]

1. The fixture writes sample dumps (every codec, 32/64-bit, both byte
   orders, header versions 3-6, 64 KiB blocks, filtered pages, flattened
   streams) and, per dumped page, the bytes it wrote (NAME.expect).
2. libkdumpfile reads every dumped page of each sample by physical address:
   its bytes must be those the writer meant.
3. `makedumpfile -R` turns each flattened sample into a plain file, which
   libkdumpfile reads the same way.
4. The library reads every sample, plain and flattened, mapped and with
   pread (an ignored unit test in src/kdump.rs).
"""
import os
import struct
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# Samples an older libkdumpfile cannot read, and why: the verdict is then
# printed but not counted.
KNOWN = {
    # The 32-bit sub-header with 64-bit fields aligned to 8 (ARM EABI) is
    # read from libkdumpfile 0.5.2 on ("diskdump: correctly parse sub-header
    # on 32-bit Arm"); Debian 12 ships 0.5.1.
    "armeb": (0, 5, 2),
}


def run(cmd, **kw):
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT, **kw)


def expected(path):
    data = open(path, "rb").read()
    at = 0
    while at < len(data):
        pfn, bs = struct.unpack_from("<QQ", data, at)
        yield pfn, bs, data[at + 16 : at + 16 + bs]
        at += 16 + bs


def check_libkdumpfile(dump, expect):
    import kdumpfile

    ctx = kdumpfile.kdumpfile(dump)
    n = bad = 0
    for pfn, bs, want in expected(expect):
        # libkdumpfile's page size is the header's block size.
        got = ctx.read(kdumpfile.KDUMP_MACHPHYSADDR, pfn * bs, bs)
        n += 1
        if got != want:
            bad += 1
            if bad <= 3:
                print(f"  {dump}: pfn {pfn:#x} differs")
    desc = ctx.attr.get("file.description", "?")
    return n, bad, desc


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="kdump-oracle-")
    os.makedirs(out, exist_ok=True)
    env = dict(os.environ, KDUMP_ORACLE_DIR=out)
    run(["cargo", "test", "--quiet", "--test", "kdump", "kdump_oracle_samples",
         "--", "--ignored", "--exact", "kdump_oracle_samples"], env=env)
    names = sorted(f[:-6] for f in os.listdir(out) if f.endswith(".kdump"))
    failed = 0
    for name in names:
        dump = os.path.join(out, name + ".kdump")
        expect = os.path.join(out, name + ".expect")
        try:
            n, bad, desc = check_libkdumpfile(dump, expect)
            status = "ok" if bad == 0 else f"{bad} pages differ"
        except Exception as e:  # libkdumpfile refuses the file
            n, status, desc = 0, f"libkdumpfile error: {e}", ""
        if name.startswith("flat") and status != "ok":
            # Debian's libkdumpfile 0.5.1 does not read flattened files.
            status += " (flattened: checked after makedumpfile -R below)"
        elif name in KNOWN and status != "ok":
            status += f" (known: needs libkdumpfile >= {'.'.join(map(str, KNOWN[name]))})"
        else:
            failed += status != "ok"
        print(f"{name:14} libkdumpfile: {status} ({n} pages; {desc})")
        if name.startswith("flat"):
            plain = os.path.join(out, name + ".rearranged")
            if os.path.exists(plain):
                os.remove(plain)  # makedumpfile will not overwrite it
            with open(dump, "rb") as f:
                subprocess.run(["makedumpfile", "-R", plain], stdin=f, check=True,
                               stdout=subprocess.DEVNULL)
            try:
                n, bad, desc = check_libkdumpfile(plain, expect)
                status = "ok" if bad == 0 else f"{bad} pages differ"
            except Exception as e:
                n, status = 0, f"libkdumpfile error: {e}"
            failed += status != "ok"
            print(f"{name:14} makedumpfile -R, then libkdumpfile: {status} ({n} pages)")
    run(["cargo", "test", "--quiet", "--lib", "kdump_oracle_samples_read", "--",
         "--ignored", "--nocapture"], env=env)
    print(f"{len(names)} samples, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
