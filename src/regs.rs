//! A kernel thread's registers, in the order of gdb's target description.
//!
//! Each architecture's register list is gdb's general registers, as its
//! feature files name them (gdb/features/i386/64bit-core.xml and
//! 64bit-segments.xml, i386/32bit-core.xml, aarch64-core.xml,
//! riscv/64bit-cpu.xml), without the floating-point and vector ones no
//! kernel thread's saved state holds. Where they come from is data: a
//! table of (register, byte offset) per source, a FreeBSD `struct pcb` of
//! each architecture and era, or the `pr_reg` of a Linux `NT_PRSTATUS`
//! note.

use crate::error::{Error, Result};
use crate::kvm::Words;

/// An architecture's register list, as gdb knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// x86-64 (gdb's `i386:x86-64`).
    X86_64,
    /// i386 (gdb's `i386`).
    I386,
    /// AArch64 (gdb's `aarch64`).
    Aarch64,
    /// RISC-V RV64 (gdb's `riscv:rv64`).
    Riscv64,
}

/// One register: gdb's name and its size in bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegisterInfo {
    /// gdb's name (`rip`, `x29`, `ra`, ...).
    pub name: &'static str,
    /// Size in bits (32 or 64).
    pub bits: u32,
    /// The name, NUL-terminated, for C.
    c_name: &'static std::ffi::CStr,
}

impl RegisterInfo {
    /// The name as a C string.
    #[cfg_attr(not(feature = "capi"), allow(dead_code))]
    pub(crate) fn c_name(&self) -> &'static std::ffi::CStr {
        self.c_name
    }
}

macro_rules! r {
    ($name:literal, $bits:literal) => {
        RegisterInfo {
            name: $name,
            bits: $bits,
            c_name: match std::ffi::CStr::from_bytes_with_nul(concat!($name, "\0").as_bytes()) {
                Ok(c) => c,
                Err(_) => panic!("a register name holds a NUL"),
            },
        }
    };
}

// gdb/features/i386/64bit-core.xml (general registers, before st0) and
// 64bit-segments.xml.
const X86_64: &[RegisterInfo] = &[
    r!("rax", 64),
    r!("rbx", 64),
    r!("rcx", 64),
    r!("rdx", 64),
    r!("rsi", 64),
    r!("rdi", 64),
    r!("rbp", 64),
    r!("rsp", 64),
    r!("r8", 64),
    r!("r9", 64),
    r!("r10", 64),
    r!("r11", 64),
    r!("r12", 64),
    r!("r13", 64),
    r!("r14", 64),
    r!("r15", 64),
    r!("rip", 64),
    r!("eflags", 32),
    r!("cs", 32),
    r!("ss", 32),
    r!("ds", 32),
    r!("es", 32),
    r!("fs", 32),
    r!("gs", 32),
    r!("fs_base", 64),
    r!("gs_base", 64),
];

// gdb/features/i386/32bit-core.xml, general registers.
const I386: &[RegisterInfo] = &[
    r!("eax", 32),
    r!("ecx", 32),
    r!("edx", 32),
    r!("ebx", 32),
    r!("esp", 32),
    r!("ebp", 32),
    r!("esi", 32),
    r!("edi", 32),
    r!("eip", 32),
    r!("eflags", 32),
    r!("cs", 32),
    r!("ss", 32),
    r!("ds", 32),
    r!("es", 32),
    r!("fs", 32),
    r!("gs", 32),
];

// gdb/features/aarch64-core.xml.
const AARCH64: &[RegisterInfo] = &[
    r!("x0", 64),
    r!("x1", 64),
    r!("x2", 64),
    r!("x3", 64),
    r!("x4", 64),
    r!("x5", 64),
    r!("x6", 64),
    r!("x7", 64),
    r!("x8", 64),
    r!("x9", 64),
    r!("x10", 64),
    r!("x11", 64),
    r!("x12", 64),
    r!("x13", 64),
    r!("x14", 64),
    r!("x15", 64),
    r!("x16", 64),
    r!("x17", 64),
    r!("x18", 64),
    r!("x19", 64),
    r!("x20", 64),
    r!("x21", 64),
    r!("x22", 64),
    r!("x23", 64),
    r!("x24", 64),
    r!("x25", 64),
    r!("x26", 64),
    r!("x27", 64),
    r!("x28", 64),
    r!("x29", 64),
    r!("x30", 64),
    r!("sp", 64),
    r!("pc", 64),
    r!("cpsr", 32),
];

// gdb/features/riscv/64bit-cpu.xml.
const RISCV64: &[RegisterInfo] = &[
    r!("zero", 64),
    r!("ra", 64),
    r!("sp", 64),
    r!("gp", 64),
    r!("tp", 64),
    r!("t0", 64),
    r!("t1", 64),
    r!("t2", 64),
    r!("fp", 64),
    r!("s1", 64),
    r!("a0", 64),
    r!("a1", 64),
    r!("a2", 64),
    r!("a3", 64),
    r!("a4", 64),
    r!("a5", 64),
    r!("a6", 64),
    r!("a7", 64),
    r!("s2", 64),
    r!("s3", 64),
    r!("s4", 64),
    r!("s5", 64),
    r!("s6", 64),
    r!("s7", 64),
    r!("s8", 64),
    r!("s9", 64),
    r!("s10", 64),
    r!("s11", 64),
    r!("t3", 64),
    r!("t4", 64),
    r!("t5", 64),
    r!("t6", 64),
    r!("pc", 64),
];

/// The most registers of any architecture here (a bit each in a `u64`
/// mask).
pub const MAX_REGISTERS: usize = 64;

impl Arch {
    /// The architecture of ELF machine `machine` (`EM_*`), if registers
    /// of it can be read.
    pub(crate) fn from_machine(machine: u16) -> Option<Arch> {
        use object::elf;
        match machine {
            elf::EM_X86_64 => Some(Arch::X86_64),
            elf::EM_386 => Some(Arch::I386),
            elf::EM_AARCH64 => Some(Arch::Aarch64),
            elf::EM_RISCV => Some(Arch::Riscv64),
            _ => None,
        }
    }

    /// gdb's name of the architecture, for a target description's
    /// `<architecture>`.
    pub fn gdb_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "i386:x86-64",
            Arch::I386 => "i386",
            Arch::Aarch64 => "aarch64",
            Arch::Riscv64 => "riscv:rv64",
        }
    }

    /// The registers, in gdb's order.
    pub fn registers(self) -> &'static [RegisterInfo] {
        match self {
            Arch::X86_64 => X86_64,
            Arch::I386 => I386,
            Arch::Aarch64 => AARCH64,
            Arch::Riscv64 => RISCV64,
        }
    }

    /// The index of the register gdb calls `name`.
    fn index(self, name: &str) -> usize {
        self.registers()
            .iter()
            .position(|r| r.name == name)
            .unwrap_or_else(|| unreachable!("{name} is no {self:?} register"))
    }
}

/// A thread's registers: the value of each of its architecture's
/// registers that the saved state holds.
///
/// ```
/// # fn main() -> kvm::Result<()> {
/// let kvm = kvm::Kvm::open("tests/data/kernel", "tests/data/vmcore")?;
/// let dumping = kvm.threads()?.into_iter().find(|t| t.crashed).unwrap();
/// let regs = kvm.registers(&dumping)?;
/// assert_eq!(regs.arch().gdb_name(), "i386:x86-64");
/// // A PCB holds the callee-saved registers, not the scratch ones.
/// assert!(regs.get("rip").is_some() && regs.get("rax").is_none());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registers {
    arch: Arch,
    big_endian: bool,
    values: [u64; MAX_REGISTERS],
    known: u64,
}

impl Registers {
    fn new(arch: Arch, big_endian: bool) -> Self {
        Registers {
            arch,
            big_endian,
            values: [0; MAX_REGISTERS],
            known: 0,
        }
    }

    fn set(&mut self, i: usize, value: u64) {
        let bits = self.arch.registers()[i].bits;
        self.values[i] = if bits < 64 {
            value & ((1 << bits) - 1)
        } else {
            value
        };
        self.known |= 1 << i;
    }

    /// The architecture.
    pub fn arch(&self) -> Arch {
        self.arch
    }

    /// The dumped machine stores words big-endian.
    pub fn big_endian(&self) -> bool {
        self.big_endian
    }

    /// How many registers the architecture has.
    pub fn len(&self) -> usize {
        self.arch.registers().len()
    }

    /// Always false: every architecture has registers.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Bit `i` is set when register `i` (in gdb's order) is known.
    pub fn known(&self) -> u64 {
        self.known
    }

    /// Register `i`'s value, `None` when the saved state does not hold it.
    pub fn value(&self, i: usize) -> Option<u64> {
        (i < self.len() && self.known >> i & 1 == 1).then(|| self.values[i])
    }

    /// The value of the register gdb calls `name`, `None` when unknown.
    pub fn get(&self, name: &str) -> Option<u64> {
        let i = self.arch.registers().iter().position(|r| r.name == name)?;
        self.value(i)
    }

    /// Each register with its value, in gdb's order.
    pub fn iter(&self) -> impl Iterator<Item = (RegisterInfo, Option<u64>)> + '_ {
        self.arch
            .registers()
            .iter()
            .enumerate()
            .map(|(i, &r)| (r, self.value(i)))
    }
}

/// Where registers lie in a saved state: (gdb's name, byte offset); each
/// is a word of the state's word size unless the table says otherwise.
struct Layout {
    /// Size of each field in bytes.
    word: usize,
    /// (register, offset).
    fields: &'static [(&'static str, usize)],
    /// Registers whose value is a constant (a kernel segment selector).
    constants: &'static [(&'static str, u64)],
    /// Registers whose value is another's (aarch64's `pc` is the `lr`
    /// a PCB saved): (register, source register).
    copies: &'static [(&'static str, &'static str)],
}

impl Layout {
    /// The registers `bytes` holds, or an error naming `what` when it is
    /// too short.
    fn decode(&self, arch: Arch, be: bool, bytes: &[u8], what: &str) -> Result<Registers> {
        let mut regs = Registers::new(arch, be);
        for &(name, at) in self.fields {
            let field = bytes.get(at..at + self.word).ok_or_else(|| {
                Error::BadCore(format!(
                    "{what} has {} bytes, too few to hold {name} at offset {at}",
                    bytes.len()
                ))
            })?;
            regs.set(arch.index(name), crate::image::uint(field, be));
        }
        for &(name, value) in self.constants {
            regs.set(arch.index(name), value);
        }
        for &(name, from) in self.copies {
            if let Some(v) = regs.get(from) {
                regs.set(arch.index(name), v);
            }
        }
        Ok(regs)
    }

    /// Bytes the state takes: past its last field.
    fn size(&self) -> usize {
        self.fields
            .iter()
            .map(|&(_, at)| at + self.word)
            .max()
            .unwrap_or(0)
    }
}

/// `pr_reg` of Linux's `struct elf_prstatus` (include/linux/elfcore.h):
/// after `struct elf_prstatus_common`, 112 bytes with 8-byte longs and
/// 72 on i386.
pub(crate) fn pr_reg_offset(machine: u16) -> usize {
    if machine == object::elf::EM_386 {
        72
    } else {
        112
    }
}

/// x86-64's `struct user_regs_struct` (arch/x86/include/asm/user_64.h).
const LINUX_X86_64: Layout = Layout {
    word: 8,
    fields: &[
        ("r15", 0),
        ("r14", 8),
        ("r13", 16),
        ("r12", 24),
        ("rbp", 32),
        ("rbx", 40),
        ("r11", 48),
        ("r10", 56),
        ("r9", 64),
        ("r8", 72),
        ("rax", 80),
        ("rcx", 88),
        ("rdx", 96),
        ("rsi", 104),
        ("rdi", 112),
        // orig_rax at 120 has no gdb register.
        ("rip", 128),
        ("cs", 136),
        ("eflags", 144),
        ("rsp", 152),
        ("ss", 160),
        ("fs_base", 168),
        ("gs_base", 176),
        ("ds", 184),
        ("es", 192),
        ("fs", 200),
        ("gs", 208),
    ],
    constants: &[],
    copies: &[],
};

/// i386's `struct user_regs_struct` (arch/x86/include/asm/user_32.h).
const LINUX_I386: Layout = Layout {
    word: 4,
    fields: &[
        ("ebx", 0),
        ("ecx", 4),
        ("edx", 8),
        ("esi", 12),
        ("edi", 16),
        ("ebp", 20),
        ("eax", 24),
        ("ds", 28),
        ("es", 32),
        ("fs", 36),
        ("gs", 40),
        // orig_eax at 44 has no gdb register.
        ("eip", 48),
        ("cs", 52),
        ("eflags", 56),
        ("esp", 60),
        ("ss", 64),
    ],
    constants: &[],
    copies: &[],
};

/// arm64's `struct user_pt_regs` (arch/arm64/include/uapi/asm/ptrace.h):
/// `regs[31]`, `sp`, `pc`, `pstate`.
const LINUX_AARCH64: Layout = Layout {
    word: 8,
    fields: &[
        ("x0", 0),
        ("x1", 8),
        ("x2", 16),
        ("x3", 24),
        ("x4", 32),
        ("x5", 40),
        ("x6", 48),
        ("x7", 56),
        ("x8", 64),
        ("x9", 72),
        ("x10", 80),
        ("x11", 88),
        ("x12", 96),
        ("x13", 104),
        ("x14", 112),
        ("x15", 120),
        ("x16", 128),
        ("x17", 136),
        ("x18", 144),
        ("x19", 152),
        ("x20", 160),
        ("x21", 168),
        ("x22", 176),
        ("x23", 184),
        ("x24", 192),
        ("x25", 200),
        ("x26", 208),
        ("x27", 216),
        ("x28", 224),
        ("x29", 232),
        ("x30", 240),
        ("sp", 248),
        ("pc", 256),
        ("cpsr", 264),
    ],
    constants: &[],
    copies: &[],
};

/// The registers of a Linux `NT_PRSTATUS` note's `pr_reg` (`reg`, the
/// note's bytes from `pr_reg` on) for ELF machine `machine`.
pub(crate) fn linux(machine: u16, be: bool, reg: &[u8], cpu: u32) -> Result<Registers> {
    let (arch, layout) = match Arch::from_machine(machine) {
        Some(a @ Arch::X86_64) => (a, &LINUX_X86_64),
        Some(a @ Arch::I386) => (a, &LINUX_I386),
        Some(a @ Arch::Aarch64) => (a, &LINUX_AARCH64),
        _ => {
            return Err(Error::NotSupported(
                "registers of this architecture's Linux dumps",
            ))
        }
    };
    layout.decode(
        arch,
        be,
        reg,
        &format!("CPU {cpu}'s NT_PRSTATUS note's pr_reg"),
    )
}

// FreeBSD `struct pcb`s: the registers cpu_switch() and dumpsys() save,
// supplied as kgdb supplies them (freebsd-ports devel/gdb/files/kgdb/
// *fbsd-kern.c, `*_pcb_offset[]` and `*_pcbmap`).

/// amd64 (sys/amd64/include/pcb.h: `pcb_r15` ... `pcb_rip`, the fields
/// marked "used by kernel debuggers"); `%cs` and `%ss` are the kernel's
/// `GSEL(GCODE_SEL, SEL_KPL)` and `GSEL(GDATA_SEL, SEL_KPL)`.
const FREEBSD_AMD64: Layout = Layout {
    word: 8,
    fields: &[
        ("r15", 0),
        ("r14", 8),
        ("r13", 16),
        ("r12", 24),
        ("rbp", 32),
        ("rsp", 40),
        ("rbx", 48),
        ("rip", 56),
    ],
    constants: &[("cs", 0x20), ("ss", 0x28)],
    copies: &[],
};

/// i386 (sys/i386/include/pcb.h: `pcb_edi` ... `pcb_eip`); the segment
/// registers kgdb hardcodes: `CODE_SEL`, `DATA_SEL`, `PRIV_SEL` (%fs).
const FREEBSD_I386: Layout = Layout {
    word: 4,
    fields: &[
        ("edi", 0),
        ("esi", 4),
        ("ebp", 8),
        ("esp", 12),
        ("ebx", 16),
        ("eip", 20),
    ],
    constants: &[
        ("cs", 0x20),
        ("ss", 0x28),
        ("ds", 0x28),
        ("es", 0x28),
        ("fs", 0x08),
        ("gs", 0x28),
    ],
    copies: &[],
};

/// i386 before the AVX-era layout: `struct pcb` started with `pcb_cr3`
/// (older sys/i386/include/pcb.h). kgdb decodes only the newer layout and
/// guards its offsets with `__FreeBSD_version` 1001505; kernels older than
/// that are read with this one (a development snapshot between the two
/// is misread).
const FREEBSD_I386_OLD: Layout = Layout {
    word: 4,
    fields: &[
        ("edi", 4),
        ("esi", 8),
        ("ebp", 12),
        ("esp", 16),
        ("ebx", 20),
        ("eip", 24),
    ],
    constants: FREEBSD_I386.constants,
    copies: &[],
};

/// arm64 from FreeBSD 14 (osreldate 1400084, sys/arm64/include/pcb.h):
/// `pcb_x[12]` holds x19 ... x30, then `pcb_sp`. The saved lr is where the
/// thread resumes: kgdb gives it as the pc, and not as x30 (lldb too: the
/// caller's x30 is not what the slot holds).
const FREEBSD_ARM64: Layout = Layout {
    word: 8,
    fields: &[
        ("x19", 0),
        ("x20", 8),
        ("x21", 16),
        ("x22", 24),
        ("x23", 32),
        ("x24", 40),
        ("x25", 48),
        ("x26", 56),
        ("x27", 64),
        ("x28", 72),
        ("x29", 80),
        ("pc", 88),
        ("sp", 96),
    ],
    constants: &[],
    copies: &[],
};

/// arm64 before osreldate 1400084: `pcb_x[31]` (x0 ... x30, the last the
/// pc, as above), `pcb_pc` (which kgdb skips), `pcb_sp`.
const FREEBSD_ARM64_13: Layout = Layout {
    word: 8,
    fields: &[
        ("x0", 0),
        ("x1", 8),
        ("x2", 16),
        ("x3", 24),
        ("x4", 32),
        ("x5", 40),
        ("x6", 48),
        ("x7", 56),
        ("x8", 64),
        ("x9", 72),
        ("x10", 80),
        ("x11", 88),
        ("x12", 96),
        ("x13", 104),
        ("x14", 112),
        ("x15", 120),
        ("x16", 128),
        ("x17", 136),
        ("x18", 144),
        ("x19", 152),
        ("x20", 160),
        ("x21", 168),
        ("x22", 176),
        ("x23", 184),
        ("x24", 192),
        ("x25", 200),
        ("x26", 208),
        ("x27", 216),
        ("x28", 224),
        ("x29", 232),
        ("pc", 240),
        ("sp", 256),
    ],
    constants: &[],
    copies: &[],
};

/// riscv (sys/riscv/include/pcb.h): `pcb_ra`, `pcb_sp`, `pcb_gp`,
/// `pcb_tp`, `pcb_s[12]`; `zero` is 0 and the pc is the saved ra, where
/// the thread resumes (kgdb's riscv-fbsd-kern.c). The first riscv kernels
/// had `pcb_t[7]` before `pcb_s` (and `pcb_a[8]` after); kgdb reads every
/// riscv PCB with this layout, and so does this table.
const FREEBSD_RISCV: Layout = Layout {
    word: 8,
    fields: &[
        ("ra", 0),
        ("sp", 8),
        ("gp", 16),
        ("tp", 24),
        ("fp", 32),
        ("s1", 40),
        ("s2", 48),
        ("s3", 56),
        ("s4", 64),
        ("s5", 72),
        ("s6", 80),
        ("s7", 88),
        ("s8", 96),
        ("s9", 104),
        ("s10", 112),
        ("s11", 120),
    ],
    constants: &[("zero", 0)],
    copies: &[("pc", "ra")],
};

/// The `struct pcb` layout of a FreeBSD kernel of `arch` whose
/// `osreldate` is `osreldate` (where the kernel has the symbol).
fn freebsd_layout(arch: Arch, osreldate: Option<i32>) -> &'static Layout {
    let before = |v: i32| osreldate.is_some_and(|o| o < v);
    match arch {
        Arch::X86_64 => &FREEBSD_AMD64,
        Arch::I386 if before(1_001_505) => &FREEBSD_I386_OLD,
        Arch::I386 => &FREEBSD_I386,
        Arch::Aarch64 if before(1_400_084) => &FREEBSD_ARM64_13,
        Arch::Aarch64 => &FREEBSD_ARM64,
        Arch::Riscv64 => &FREEBSD_RISCV,
    }
}

/// The registers a FreeBSD thread's PCB at `pcb` holds.
pub(crate) fn freebsd(w: &Words<'_>, arch: Arch, pcb: u64) -> Result<Registers> {
    let osreldate = w.symbol("osreldate").and_then(|at| w.int(at).ok());
    let layout = freebsd_layout(arch, osreldate);
    let mut bytes = [0u8; 8 * 33];
    let bytes = &mut bytes[..layout.size()];
    w.read(pcb, bytes)?;
    layout.decode(arch, w.big_endian(), bytes, &format!("the PCB at {pcb:#x}"))
}

/// The most bytes of a note's `pr_reg` kept: every layout here fits.
pub(crate) const PR_REG_MAX: usize = 512;

const _: () = assert!(LINUX_AARCH64.fields.len() <= MAX_REGISTERS);

#[cfg(test)]
mod tests {
    use super::*;

    /// A saved state whose word at offset `o` is `0x1000 + o`.
    fn state(words: usize, word: usize) -> Vec<u8> {
        (0..words)
            .flat_map(|i| (0x1000 + (i * word) as u64).to_le_bytes()[..word].to_vec())
            .collect()
    }

    fn decode(arch: Arch, osreldate: Option<i32>) -> Registers {
        let layout = freebsd_layout(arch, osreldate);
        let word = layout.word;
        layout
            .decode(arch, false, &state(layout.size() / word, word), "test")
            .unwrap()
    }

    #[test]
    fn freebsd_pcbs_by_era() {
        // i386: edi first from the AVX-era layout on; pcb_cr3 before it.
        let r = decode(Arch::I386, Some(1_400_000));
        assert_eq!((r.get("edi"), r.get("eip")), (Some(0x1000), Some(0x1014)));
        assert_eq!((r.get("fs"), r.get("eax")), (Some(8), None));
        let r = decode(Arch::I386, Some(1_001_000));
        assert_eq!((r.get("edi"), r.get("eip")), (Some(0x1004), Some(0x1018)));
        // arm64 14: x19..x30 then sp; the pc is the saved lr.
        let r = decode(Arch::Aarch64, Some(1_400_084));
        assert_eq!((r.get("x19"), r.get("x29")), (Some(0x1000), Some(0x1050)));
        assert_eq!((r.get("sp"), r.get("pc")), (Some(0x1060), Some(0x1058)));
        assert_eq!((r.get("x18"), r.get("x30")), (None, None));
        // arm64 13: x0..x30, pcb_pc (skipped), sp.
        let r = decode(Arch::Aarch64, Some(1_400_083));
        assert_eq!((r.get("x0"), r.get("x19")), (Some(0x1000), Some(0x1098)));
        assert_eq!((r.get("pc"), r.get("sp")), (Some(0x10f0), Some(0x1100)));
        // Without osreldate: the current layout.
        assert_eq!(decode(Arch::Aarch64, None).get("sp"), Some(0x1060));
        // riscv: ra, sp, gp, tp, s0..s11; pc = ra, zero = 0.
        let r = decode(Arch::Riscv64, None);
        assert_eq!(
            (r.get("ra"), r.get("pc"), r.get("zero")),
            (Some(0x1000), Some(0x1000), Some(0))
        );
        assert_eq!((r.get("fp"), r.get("s11")), (Some(0x1020), Some(0x1078)));
        assert_eq!(r.get("a0"), None);
    }

    #[test]
    fn short_state_is_an_error() {
        let e = LINUX_X86_64
            .decode(Arch::X86_64, false, &[0; 100], "CPU 0's note")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("CPU 0's note has 100 bytes") && e.contains("rdx at offset 96"),
            "{e}"
        );
    }

    #[test]
    fn tables_name_real_registers() {
        for arch in [Arch::X86_64, Arch::I386, Arch::Aarch64, Arch::Riscv64] {
            assert!(arch.registers().len() <= MAX_REGISTERS);
            let layouts: &[&Layout] = match arch {
                Arch::X86_64 => &[&FREEBSD_AMD64, &LINUX_X86_64],
                Arch::I386 => &[&FREEBSD_I386, &FREEBSD_I386_OLD, &LINUX_I386],
                Arch::Aarch64 => &[&FREEBSD_ARM64, &FREEBSD_ARM64_13, &LINUX_AARCH64],
                Arch::Riscv64 => &[&FREEBSD_RISCV],
            };
            for l in layouts {
                // index() panics on a name the architecture lacks.
                let names = l.fields.iter().map(|f| f.0);
                let names = names.chain(l.constants.iter().map(|c| c.0));
                for n in names.chain(l.copies.iter().flat_map(|c| [c.0, c.1])) {
                    arch.index(n);
                }
            }
        }
    }
}
