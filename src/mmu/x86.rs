//! x86 paging modes chosen from control registers, and Intel EPT.

use super::Mode;
use crate::arch::amd64;
use crate::error::{Error, Result};
use crate::pagetable::{Bits, Format, Frame, Level};

// Control-register bits the x86 paging mode follows (Intel SDM vol. 3A,
// 4.1.1, "Four Paging Modes"; 2.5 "Control Registers"; 2.2.1 IA32_EFER).
const CR0_PE: u64 = 1 << 0;
const CR0_PG: u64 = 1 << 31;
const CR4_PSE: u64 = 1 << 4;
const CR4_PAE: u64 = 1 << 5;
const CR4_LA57: u64 = 1 << 12;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

/// The paging mode a CPU runs in with these control registers, as the
/// SDM's table 4-1 chooses it; `None` when paging is off (CR0.PG clear:
/// addresses are physical). A combination no CPU can run in is refused.
pub fn x86_mode(cr3: u64, cr0: u64, cr4: u64, efer: u64) -> Result<Option<Mode>> {
    let bad = |m: &str| {
        Err(Error::InvalidSpace(format!(
            "CR0 {cr0:#x}, CR4 {cr4:#x} and EFER {efer:#x}: {m}, a state no x86 CPU can run in"
        )))
    };
    let (pg, pae, lma) = (cr0 & CR0_PG != 0, cr4 & CR4_PAE != 0, efer & EFER_LMA != 0);
    if pg && cr0 & CR0_PE == 0 {
        return bad("CR0.PG is set without CR0.PE");
    }
    if lma && !pg {
        return bad("EFER.LMA is set with paging off");
    }
    if lma && !pae {
        return bad("EFER.LMA is set without CR4.PAE");
    }
    // With paging on, LMA is LME (SDM 9.8.5; KVM's kvm_is_valid_sregs).
    if pg && lma != (efer & EFER_LME != 0) {
        return bad("EFER.LMA differs from EFER.LME with paging on");
    }
    Ok(match (pg, lma, pae) {
        (false, _, _) => None,
        (true, true, _) if cr4 & CR4_LA57 != 0 => Some(Mode::X86_64La57 { cr3 }),
        (true, true, _) => Some(Mode::X86_64 { cr3 }),
        (true, false, true) => Some(Mode::I386Pae { cr3 }),
        (true, false, false) => Some(Mode::I386 {
            cr3,
            pse: cr4 & CR4_PSE != 0,
        }),
    })
}

// Intel EPT (Intel SDM vol. 3C, 29.3.2 and tables 29-1 to 29-7): an
// entry is present when any of bits 2:0 (read, write, execute) is set;
// bit 7 makes a PDPTE map 1 GiB and a PDE 2 MiB; frames are bits 51:12
// (up to MAXPHYADDR). The EPTP holds the memory type in bits 2:0, the
// page-walk length minus one in bits 5:3 (3: four levels, 4: five) and
// the root's address in bits 51:12.
const EPT_RWX: u64 = 0b111;
const EPT_PS: u64 = 1 << 7;
const EPT_PRESENT: Bits = Bits::eq(0, 0).and_any(EPT_RWX);
const EPT_LARGE: Bits = Bits::eq(EPT_PS, EPT_PS);
/// Write without read (bits 2:0 010b or 110b) is a misconfiguration in
/// any entry (SDM 29.3.3.1; KVM's `__reset_rsvds_bits_mask_ept` marks
/// both at every level).
const EPT_NOT_WRITE_ONLY: Bits = Bits {
    mask: 0b11,
    value: 0b10,
    negate: true,
    any: 0,
};

const fn ept_level(name: &'static str, shift: u32, leaf: Bits) -> Level {
    Level {
        name,
        shift,
        bits: 9,
        valid: EPT_PRESENT,
        leaf,
        frame: Frame::mask(amd64::PG_FRAME & !((1 << shift) - 1)),
    }
}

const EPT_PDPTE: Level = ept_level("EPT PDPTE", 30, EPT_LARGE);
const EPT_PDE: Level = ept_level("EPT PDE", 21, EPT_LARGE);
const EPT_PTE: Level = ept_level("EPT PTE", 12, Bits::NEVER);

/// Four-level EPT (48-bit guest-physical addresses).
pub(super) static EPT4: Format<4> = Format {
    entry_size: 8,
    big_endian: false,
    pointer: EPT_NOT_WRITE_ONLY,
    table: Frame::mask(amd64::PG_FRAME),
    levels: [
        ept_level("EPT PML4E", 39, Bits::NEVER),
        EPT_PDPTE,
        EPT_PDE,
        EPT_PTE,
    ],
};

/// Five-level EPT (57-bit guest-physical addresses).
pub(super) static EPT5: Format<5> = Format {
    entry_size: 8,
    big_endian: false,
    pointer: EPT_NOT_WRITE_ONLY,
    table: Frame::mask(amd64::PG_FRAME),
    levels: [
        ept_level("EPT PML5E", 48, Bits::NEVER),
        ept_level("EPT PML4E", 39, Bits::NEVER),
        EPT_PDPTE,
        EPT_PDE,
        EPT_PTE,
    ],
};
