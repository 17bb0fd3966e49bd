//! riscv Sv39, Sv48 and Sv57 page tables, with the privileged spec's leaf
//! rules and Svnapot.

use crate::error::Fault;
use crate::pagetable::{Bits, Format, Frame, Level, Mapping};

// riscv (The RISC-V Privileged Architecture, 12.3-12.6: Sv32/39/48/57):
// V is bit 0, R/W/X bits 1-3; a valid entry with any of R, W, X is a
// leaf, one without points to the next table; the PPN is entry bits
// 53:10 for physical bits 55:12. A superpage whose low PPN bits are not
// zero is misaligned, a page fault (`leaf` below refuses it, so the frame
// masks may leave those bits out).
const RV_V: u64 = 1 << 0;
pub(super) const RV_W: u64 = 1 << 2;
pub(super) const RV_X: u64 = 1 << 3;
const RV_RWX: u64 = 0b1110;
const RV_PPN: u64 = 0x003f_ffff_ffff_fc00;
/// What an entry pointing to the next table must leave clear (12.3.1:
/// U, A and D are reserved in them; 12.3.2 step 2: reserved bits 60:54,
/// PBMT 62:61 and N 63 fault; QEMU checks the same).
const RV_NOT_IN_POINTERS: u64 = (0x1ff << 54) | (1 << 63) | (0b11 << 6) | (1 << 4);

const fn rv_level(shift: u32, last: bool) -> Level {
    const NAMES: [&str; 5] = ["L0 PTE", "L1 PTE", "L2 PTE", "L3 PTE", "L4 PTE"];
    Level {
        name: NAMES[((shift - 12) / 9) as usize],
        shift,
        bits: 9,
        valid: if last {
            Bits::eq(RV_V, RV_V).and_any(RV_RWX)
        } else {
            Bits::eq(RV_V, RV_V)
        },
        leaf: Bits::eq(0, 0).and_any(RV_RWX),
        frame: Frame {
            mask: RV_PPN & !((1 << (shift - 2)) - 1),
            shl: 2,
        },
    }
}

pub(super) const fn format<const N: usize>() -> Format<N> {
    let mut levels = [rv_level(12, true); N];
    let mut i = 0;
    while i + 1 < N {
        levels[i] = rv_level(12 + 9 * (N - 1 - i) as u32, false);
        i += 1;
    }
    Format {
        entry_size: 8,
        big_endian: false,
        pointer: Bits::eq(RV_NOT_IN_POINTERS, 0),
        table: Frame {
            mask: RV_PPN,
            shl: 2,
        },
        levels,
    }
}

// riscv leaf rules (privileged spec 12.3.2 steps 3 and 6, 12.6 Svnapot;
// QEMU target/riscv/cpu_helper.c get_physical_address).
const RV_R: u64 = 1 << 1;
/// Bits 60:54 are reserved (a page fault when set).
const RV_RESERVED: u64 = 0x7f << 54;
/// Svnapot's N bit: with PPN[3:0] = 0b1000 on a 4 KiB leaf, one of 16
/// entries of a naturally aligned 64 KiB mapping.
const RV_N: u64 = 1 << 63;

/// The CPU's reading of a riscv leaf the walker found for `va`.
pub(super) fn leaf(va: u64, m: Mapping) -> Result<Mapping, Fault> {
    let e = m.entry;
    let ppn = (e & RV_PPN) >> 10;
    if e & (RV_R | RV_W) == RV_W {
        return Err(rv_fault(e, "write without read is reserved"));
    }
    if e & RV_RESERVED != 0 {
        return Err(rv_fault(e, "reserved bits 60:54 are set"));
    }
    if m.size > 4096 && ppn & ((m.size >> 12) - 1) != 0 {
        return Err(rv_fault(e, "a misaligned superpage"));
    }
    if e & RV_N != 0 {
        if m.size != 4096 || ppn & 0xf != 0b1000 {
            return Err(rv_fault(e, "an N (Svnapot) entry that is no 64 KiB run"));
        }
        let first = va & !0xffff;
        return Ok(Mapping {
            pa: ((ppn & !0xf) << 12) | (va & 0xffff),
            first,
            size: 0x1_0000,
            entry: e,
        });
    }
    Ok(m)
}

#[cold]
#[inline(never)]
fn rv_fault(e: u64, why: &str) -> Fault {
    Fault::BadPageTable(format!("riscv leaf {e:#x}: {why} (a page fault)"))
}
