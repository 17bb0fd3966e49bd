//! The README's first command: `cargo run --release --example demo`.
//!
//! Writes sample FreeBSD crash dumps into `target/samples/`, built by the
//! test fixture exactly as the FreeBSD kernel writes them: amd64 (an ELF
//! full dump, minidumps v1-v3, and a full dump of a kernel loaded at a
//! non-default physical address), i386 (a non-PAE full dump and a PAE
//! minidump), arm64 (a 16 KiB-page minidump), riscv, arm (an ARMv6 full
//! dump with `PT_DUMP_DELTA` and an ARMv4 minidump), mips (a big-endian n64
//! and a little-endian o32 minidump), powerpc64 (a relocated big-endian and
//! a little-endian minidump) and powerpc (an ELF dump); and Linux vmcores of
//! a KASLR'd x86-64 kernel (an ELF vmcore as /proc/vmcore writes it, a
//! kdump-compressed file as makedumpfile does, and its flattened stream).
//! Then opens each one, resolves the `version` (FreeBSD) or `linux_banner`
//! symbol (Linux, from the dump's own kallsyms tables: no kernel file),
//! prints the string and a hex dump, and shows the error for an address
//! that is mapped but not in a minidump. Last, a KVM host's minidump that
//! holds a guest: the guest kernel's memory read through the VMM process
//! and its memory slots, and through the EPT (address spaces over the
//! dump).

#[path = "../tests/fixture/mod.rs"]
mod fixture;

use fixture::amd64::{va, Amd64, MMIO};
use fixture::arm::{Arm, Pmap};
use fixture::dmap::{DmapMachine, ARM64_16K, RISCV};
use fixture::i386::{Era, Mode, I386};
use fixture::kdump::{flatten, Codec, Kdump};
use fixture::linux::{LinuxX86, Style};
use fixture::mips::{Abi, Flavour, Mips};
use fixture::powerpc::{Config, Ppc64Machine, VirtMachine};
use fixture::{write_sparse, Fill};
use kvm::Kvm;
use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/samples");
    std::fs::create_dir_all(&dir)?;
    let normal = Amd64::new(2 << 20, Fill::Zero);
    let relocated = Amd64::new(22 << 20, Fill::Zero);
    let (i386, i386_pae) = (
        I386::with_fill(Mode::NoPae, Era::New, false, Fill::Zero),
        I386::with_fill(Mode::Pae, Era::New, true, Fill::Zero),
    );
    let (arm64, riscv) = (
        DmapMachine::new(&ARM64_16K, Fill::Zero),
        DmapMachine::new(&RISCV, Fill::Zero),
    );
    let (armv6, armv4) = (Arm::new(Pmap::V6), Arm::new(Pmap::V4));
    let (mips64, mipsel) = (
        Mips::new(Flavour::new(Abi::N64, true)),
        Mips::new(Flavour::new(Abi::O32, false)),
    );
    let ppc64 = |big_endian, relocated| {
        let cfg = Config {
            big_endian,
            phyp: false,
            relocated,
            ptegs_log2: 11,
        };
        Ppc64Machine::with_ram(cfg, &[(0, 0x0800_0000)], Fill::Zero)
    };
    let (ppc64, ppc64le, ppc) = (
        ppc64(true, true),
        ppc64(false, false),
        VirtMachine::new(false, true),
    );
    for (name, image) in [
        ("kernel.armv6", armv6.kernel()),
        ("kernel.armv4", armv4.kernel()),
        ("kernel.mips64", mips64.kernel()),
        ("kernel.mipsel", mipsel.kernel()),
        ("kernel.powerpc64", ppc64.kernel()),
        ("kernel.powerpc64le", ppc64le.kernel()),
        ("kernel.powerpc", ppc.kernel()),
        ("kernel", normal.kernel()),
        ("kernel.relocated", relocated.kernel()),
        ("kernel.i386", i386.kernel()),
        ("kernel.i386-pae", i386_pae.kernel()),
        ("kernel.arm64", arm64.kernel()),
        ("kernel.riscv", riscv.kernel()),
    ] {
        std::fs::write(dir.join(name), image)?;
    }
    let samples = [
        ("vmcore.full", "kernel", normal.full_dump(false).bytes),
        ("vmcore.minidump1", "kernel", normal.minidump(1).bytes),
        ("vmcore.minidump2", "kernel", normal.minidump(2).bytes),
        ("vmcore.minidump3", "kernel", normal.minidump(3).bytes),
        (
            "vmcore.full.relocated",
            "kernel.relocated",
            relocated.full_dump(false).bytes,
        ),
        ("vmcore.i386.full", "kernel.i386", i386.full_dump().bytes),
        (
            "vmcore.i386-pae.minidump2",
            "kernel.i386-pae",
            i386_pae.minidump(2).bytes,
        ),
        (
            "vmcore.arm64-16k.minidump3",
            "kernel.arm64",
            arm64.minidump(3).bytes,
        ),
        (
            "vmcore.riscv.minidump2",
            "kernel.riscv",
            riscv.minidump(2).bytes,
        ),
        (
            "vmcore.armv6.full",
            "kernel.armv6",
            armv6.full_dump(true).bytes,
        ),
        (
            "vmcore.armv4.minidump2",
            "kernel.armv4",
            armv4.minidump(2).bytes,
        ),
        (
            "vmcore.mips64.minidump2",
            "kernel.mips64",
            mips64.minidump(2).bytes,
        ),
        (
            "vmcore.mipsel.minidump2",
            "kernel.mipsel",
            mipsel.minidump(2).bytes,
        ),
        (
            "vmcore.powerpc64.minidump2",
            "kernel.powerpc64",
            ppc64.minidump(2).bytes,
        ),
        (
            "vmcore.powerpc64le.minidump1",
            "kernel.powerpc64le",
            ppc64le.minidump(1).bytes,
        ),
        ("vmcore.powerpc.elf", "kernel.powerpc", ppc.elf_dump(false)),
    ];
    // Linux: the kernel's kallsyms tables in the dump, VMCOREINFO naming them.
    let mut linux = LinuxX86::new(
        false,
        0x1c60_0000,
        0x240_0000,
        0xffff_9a40_0000_0000,
        Fill::Zero,
    );
    let info = linux.vmcoreinfo() + &linux.write_kallsyms();
    let elf = fixture::linux::elf_core(
        fixture::linux::TARGET,
        &linux.notes(Some(&info)),
        &linux_loads(&linux, Style::Kdump),
        &linux.ram,
    );
    let kdump = Kdump::new(&linux.ram)
        .codec(Codec::Zlib)
        .uts("x86_64", fixture::linux::RELEASE)
        .vmcoreinfo(&info)
        .write()
        .bytes;
    let flat = flatten(&kdump, 64 << 10, false);
    let samples = samples.into_iter().chain([
        ("vmcore.linux-x86_64.elf", "", elf),
        ("vmcore.linux-x86_64.kdump", "", kdump),
        ("vmcore.linux-x86_64.flat", "", flat),
    ]);
    for (core, kernel, bytes) in samples {
        write_sparse(&dir.join(core), &bytes);
        let core = dir.join(core);
        let (kvm, name) = if kernel.is_empty() {
            let kvm = kvm::OpenOptions::new().open_dump(None, &core)?;
            (kvm, "linux_banner")
        } else {
            (Kvm::open(dir.join(kernel), &core)?, "version")
        };
        let sym = kvm.symbol(name).ok_or("no such symbol")?;
        let mut buf = [0u8; 96];
        let n = kvm.read(sym.value, &mut buf)?;
        let text = String::from_utf8_lossy(&buf[..n]);
        println!("{} ({})", core.display(), kvm.backend());
        println!(
            "  {name} = {:#x}: {:?}",
            sym.value,
            text.split(['\0', '\n']).next().unwrap_or("")
        );
        for (i, chunk) in buf[..32].chunks(16).enumerate() {
            let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
            println!("  {:#018x}  {}", sym.value + 16 * i as u64, hex.join(" "));
        }
    }
    // Mapped, but the minidump does not hold the (device) page.
    let kvm = Kvm::open(dir.join("kernel"), dir.join("vmcore.minidump3"))?;
    let err = kvm.read(va::K4 + 12 * 4096, &mut [0u8; 8]).unwrap_err();
    println!("\nreading device memory at {MMIO:#x} through the minidump:\n  {err}");
    guest(&dir)?;
    println!(
        "\nTry: cargo run --example kvmread -- {0}/kernel {0}/vmcore.minidump3 version 128",
        dir.display()
    );
    println!(
        "  cargo run --example kvmread -- - {0}/vmcore.linux-x86_64.kdump linux_banner 128",
        dir.display()
    );
    Ok(())
}

/// The PT_LOADs of the machine's ELF vmcore (what `elf_vmcore` writes,
/// here with the notes carrying the kallsyms lines too).
fn linux_loads(m: &LinuxX86, style: Style) -> Vec<(u64, u64, u64)> {
    let mut loads = Vec::new();
    if style == Style::Kdump {
        let text = m.runtime(fixture::linux::LINK_TEXT);
        loads.push((text, m.phys_text, fixture::linux::KERNEL_SIZE));
    }
    for &(start, end) in &m.ram.ranges {
        loads.push((m.page_offset + start, start, end - start));
    }
    loads
}

/// A host dump holding a virtual machine: the guest's kernel text read
/// through guest VA -> memory slots -> VMM process -> host, and through
/// guest VA -> EPT -> host.
fn guest(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    use fixture::guest::{GuestKind, Lab};
    use kvm::{AddressSpace, Base, Paging, Range, Space};
    let lab = Lab::builder().ept(4).guest(GuestKind::X86_64).build();
    std::fs::write(dir.join("kernel.kvm-host"), lab.host.kernel())?;
    write_sparse(&dir.join("vmcore.kvm-host"), &lab.host.minidump(3).bytes);
    let host = Kvm::open(dir.join("kernel.kvm-host"), dir.join("vmcore.kvm-host"))?;
    let vmm = Space::new(&host, Base::Phys, Paging::X86_64 { cr3: lab.vmm_cr3 })?;
    let slots: Vec<Range> = lab
        .slots
        .iter()
        .map(|r| Range {
            addr: r.addr,
            len: r.len,
            target: r.target,
        })
        .collect();
    let gpa = Space::new(&vmm, Base::Virt, Paging::Linear(slots))?;
    let cr3 = lab.guest("x86-64").root_reg;
    let guest = Space::new(&gpa, Base::Virt, Paging::X86_64 { cr3 })?;
    let eptp = lab.ept4.as_ref().ok_or("no EPT")?.root;
    let ept = Space::new(&host, Base::Phys, Paging::Ept { eptp })?;
    let guest2 = Space::new(&ept, Base::Virt, Paging::X86_64 { cr3 })?;
    let text = 0xffff_ffff_8000_0000u64;
    let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
    guest.read_exact(text, &mut a)?;
    guest2.read_exact(text, &mut b)?;
    let hex = |b: &[u8]| {
        b.iter()
            .map(|x| format!("{x:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "\n{} (a KVM host's minidump): the guest kernel's text at {text:#x}",
        dir.join("vmcore.kvm-host").display()
    );
    for (how, space, bytes) in [
        ("the slots and the VMM", &guest, &a),
        ("the EPT", &guest2, &b),
    ] {
        let via = format!("through {how} ({}):", space.name());
        println!("  {via:<52} {}", hex(bytes));
    }
    let err = guest.read(0xffff_ffff_9000_0000, &mut a).unwrap_err();
    println!("  a guest address nothing maps: {err}");
    Ok(())
}
