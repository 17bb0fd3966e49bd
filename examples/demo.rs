//! The README's first command: `cargo run --release --example demo`.
//!
//! Writes sample FreeBSD/amd64 crash dumps into `target/samples/` (a small
//! kernel image, an ELF full dump, minidumps v1-v3, and a full dump of a
//! kernel loaded at a non-default physical address), built by the test
//! fixture exactly as the FreeBSD kernel writes them. Then opens each one,
//! resolves the `version` symbol, prints the string and a hex dump, and shows
//! the error for an address that is mapped but not in a minidump.

#[path = "../tests/fixture/mod.rs"]
mod fixture;

use fixture::amd64::{va, Amd64, MMIO};
use fixture::{write_sparse, Fill};
use kvm::Kvm;
use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/samples");
    std::fs::create_dir_all(&dir)?;
    let normal = Amd64::new(2 << 20, Fill::Zero);
    let relocated = Amd64::new(22 << 20, Fill::Zero);
    std::fs::write(dir.join("kernel"), normal.kernel())?;
    std::fs::write(dir.join("kernel.relocated"), relocated.kernel())?;
    let samples = [
        ("vmcore.full", "kernel", normal.full_dump(false)),
        ("vmcore.minidump1", "kernel", normal.minidump(1)),
        ("vmcore.minidump2", "kernel", normal.minidump(2)),
        ("vmcore.minidump3", "kernel", normal.minidump(3)),
        (
            "vmcore.full.relocated",
            "kernel.relocated",
            relocated.full_dump(false),
        ),
    ];
    for (core, kernel, dump) in &samples {
        write_sparse(&dir.join(core), &dump.bytes);
        let (kernel, core) = (dir.join(kernel), dir.join(core));
        let kvm = Kvm::open(&kernel, &core)?;
        let sym = kvm.symbol("version").ok_or("no symbol `version`")?;
        let mut buf = [0u8; 96];
        let n = kvm.read(sym.value, &mut buf)?;
        let text = String::from_utf8_lossy(&buf[..n]);
        println!("{} ({})", core.display(), kvm.backend());
        println!(
            "  version = {:#x}: {:?}",
            sym.value,
            text.split('\0').next().unwrap_or("")
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
    println!(
        "\nTry: cargo run --example kvmread -- {0}/kernel {0}/vmcore.minidump3 version 128",
        dir.display()
    );
    Ok(())
}
