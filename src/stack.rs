//! Address spaces over address spaces: a guest's, a process's or a
//! hypervisor's view of a dump, stacked on a handle ([`Space`]).
//!
//! A space is an MMU (a page-table format and root, or a table of linear
//! ranges) over a base: the physical or the virtual space of another
//! handle. Its tables and pages are read through the base, so spaces
//! stack: guest virtual → guest physical (memory slots) → VMM process
//! virtual → host physical. Every layer translates down to where the bytes
//! lie in the dump's container, and caches that in its TLB, so a read
//! that hits costs the same through three layers as through one.

use crate::error::{Error, Fault, Result};
use crate::image::Image;
use crate::kvm::Kvm;
use crate::mmu::{x86_mode, Mode, Tables};
use crate::pagetable::{Mapping, Step};
use crate::physmem::{last_at_or_below, PhysMem, Span};
use crate::registry::Translator;
use crate::space::{Mmu, Paged};
use crate::walk::{prot, Page};
use std::sync::Arc;

/// Reads through a handle: a dump ([`Kvm`]) or a space stacked on one
/// ([`Space`]). Every handle has a virtual space (what [`read`] reads)
/// and a physical space (what [`read_phys`] reads): for a dump, the
/// kernel's virtual memory and the machine's physical memory in the dump;
/// for a space, its own virtual space and its base's space.
///
/// [`read`]: AddressSpace::read
/// [`read_phys`]: AddressSpace::read_phys
pub trait AddressSpace: sealed::Sealed + Send + Sync {
    /// Reads the virtual space at `va` (`kvm_read2`): `buf.len()` bytes,
    /// fewer only when the core file ends early; an error naming the first
    /// address (and, in a stack, the layer) that does not translate.
    fn read(&self, va: u64, buf: &mut [u8]) -> Result<usize>;

    /// Reads the physical space at `pa` (`kvm_read_phys`), as [`read`].
    ///
    /// [`read`]: AddressSpace::read
    fn read_phys(&self, pa: u64, buf: &mut [u8]) -> Result<usize>;

    /// The physical-space address `va` translates to (`kvm_vtop`).
    fn vtop(&self, va: u64) -> Result<u64>;

    /// Calls `f` for every mapped page until it returns false
    /// (`kvm_walk_pages`); `Ok(true)` when the walk completed.
    fn walk_pages(&self, f: &mut dyn FnMut(&Page) -> bool) -> Result<bool>;

    /// Reads exactly `buf.len()` bytes, treating a short read as an error.
    fn read_exact(&self, va: u64, buf: &mut [u8]) -> Result<()> {
        let n = self.read(va, buf)?;
        if n == buf.len() {
            Ok(())
        } else {
            Err(Error::BadCore(format!(
                "the core file ends after {n} of the {} bytes at {va:#x}",
                buf.len()
            )))
        }
    }
}

mod sealed {
    use super::*;

    /// What a space stacked on a handle needs of it.
    pub struct Layer {
        pub core: Arc<Image>,
        /// The handle's translator.
        pub vtop: Arc<dyn Translator>,
        /// The dump's translator, which reads locations.
        pub bottom: Arc<dyn Translator>,
        /// Names of the virtual and physical spaces, for messages.
        pub virt: Arc<str>,
        pub phys: Arc<str>,
        /// 0 for a dump, else the space's layer.
        pub depth: u32,
    }

    /// Only this crate's handles are address spaces.
    pub trait Sealed {
        fn layer(&self) -> Layer;
    }
}

/// The name of a dump handle's virtual space, in messages.
const KERNEL_VIRTUAL: &str = "kernel virtual memory";
/// The name of a dump handle's physical space.
const DUMP_PHYSICAL: &str = "the dump's physical memory";

impl sealed::Sealed for Kvm {
    fn layer(&self) -> sealed::Layer {
        let (core, vtop) = self.parts();
        sealed::Layer {
            core: core.clone(),
            vtop: vtop.clone(),
            bottom: vtop.clone(),
            virt: KERNEL_VIRTUAL.into(),
            phys: DUMP_PHYSICAL.into(),
            depth: 0,
        }
    }
}

impl AddressSpace for Kvm {
    fn read(&self, va: u64, buf: &mut [u8]) -> Result<usize> {
        Kvm::read(self, va, buf)
    }
    fn read_phys(&self, pa: u64, buf: &mut [u8]) -> Result<usize> {
        Kvm::read_phys(self, pa, buf)
    }
    fn vtop(&self, va: u64) -> Result<u64> {
        Kvm::vtop(self, va)
    }
    fn walk_pages(&self, f: &mut dyn FnMut(&Page) -> bool) -> Result<bool> {
        Kvm::walk_pages(self, f)
    }
}

/// Which of the base handle's spaces a new space's tables and pages lie
/// in (`KVM_BASE_PHYS`, `KVM_BASE_VIRT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base {
    /// The base's physical space (for a dump, the machine's memory).
    Phys,
    /// The base's virtual space (for a dump, kernel virtual addresses).
    Virt,
}

/// A linear range (`struct kvm_range`): `[addr, addr + len)` of the new
/// space lies at `target` in the base.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// First address in the new space.
    pub addr: u64,
    /// Length in bytes.
    pub len: u64,
    /// Where `addr` lies in the base space.
    pub target: u64,
}

/// How a space translates (`KVM_MMU_*`). Page-table entries are frames
/// of the base space; nothing else is applied (a Xen paravirtual guest's
/// entries hold machine frames: open its space over the host's physical
/// memory).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Paging {
    /// Linear ranges (memory slots, aliases, p2m runs), in any order;
    /// overlapping or wrapping ranges are refused.
    Linear(Vec<Range>),
    /// IA-32e 4-level paging from CR3.
    X86_64 {
        /// CR3 (bits 11:0, PCID or flags, are ignored).
        cr3: u64,
    },
    /// 5-level paging from CR3.
    X86_64La57 {
        /// CR3.
        cr3: u64,
    },
    /// 32-bit 2-level paging with 4 MiB pages from CR3.
    I386 {
        /// CR3.
        cr3: u64,
    },
    /// PAE 3-level paging from CR3 (the PDPT, bits 31:5).
    I386Pae {
        /// CR3.
        cr3: u64,
    },
    /// The mode the CPU would use with these control registers: CR0.PG
    /// clear is the identity map; otherwise CR4.PAE, CR4.LA57 and
    /// EFER.LMA choose, and CR4.PSE gives 32-bit paging its 4 MiB pages.
    X86Auto {
        /// CR3.
        cr3: u64,
        /// CR0.
        cr0: u64,
        /// CR4.
        cr4: u64,
        /// IA32_EFER.
        efer: u64,
    },
    /// Intel EPT from the EPTP (walk length from bits 5:3).
    Ept {
        /// EPTP.
        eptp: u64,
    },
    /// aarch64 stage 1: `ttbr`'s tables translate TTBR1's half of the
    /// address space with TCR_EL1's TG1 and T1SZ, or, when TCR_EL1.EPD1
    /// is set, TTBR0's half with TG0 and T0SZ; addresses of the other half
    /// fail. TBI is honoured; the root is aligned to its table's size.
    Aarch64 {
        /// TTBR0_EL1 or TTBR1_EL1.
        ttbr: u64,
        /// TCR_EL1.
        tcr: u64,
    },
    /// riscv Sv39.
    RiscvSv39 {
        /// satp.PPN << 12.
        satp_root: u64,
    },
    /// riscv Sv48.
    RiscvSv48 {
        /// satp.PPN << 12.
        satp_root: u64,
    },
    /// riscv Sv57.
    RiscvSv57 {
        /// satp.PPN << 12.
        satp_root: u64,
    },
}

/// Most layers a stack has: every TLB miss goes down the stack, one call
/// per layer (a guest's process over a guest kernel over memory slots
/// over a VMM over a host is 4; nested virtualisation adds 2 a level).
pub const MAX_LAYERS: u32 = 16;

/// Most linear ranges a space takes (KVM has at most 32767 memory slots;
/// a fragmented Xen p2m of a large guest has more runs): 96 MiB of ranges.
pub const MAX_RANGES: usize = 1 << 22;

/// An address space stacked on a handle: a guest's, a process's, a
/// hypervisor's view of a dump.
///
/// ```
/// # fn main() -> kvm::Result<()> {
/// use kvm::{AddressSpace, Base, Paging, Range, Space};
/// let kvm = kvm::Kvm::open("tests/data/kernel", "tests/data/vmcore")?;
/// // The kernel's first 2 MiB of text, seen at address 0 of a new space.
/// let text = kvm.symbol("version").unwrap().value & !0x1f_ffff;
/// let window = Space::new(&kvm, Base::Virt, Paging::Linear(vec![Range {
///     addr: 0,
///     len: 2 << 20,
///     target: text,
/// }]))?;
/// let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
/// window.read_exact(0x1000, &mut a)?;
/// kvm.read_exact(text + 0x1000, &mut b)?;
/// assert_eq!(a, b);
/// assert_eq!(window.name(), "linear space (layer 1)");
/// # Ok(())
/// # }
/// ```
pub struct Space {
    core: Arc<Image>,
    vtop: Arc<dyn Translator>,
    bottom: Arc<dyn Translator>,
    name: Arc<str>,
    phys: Arc<str>,
    depth: u32,
}

impl std::fmt::Debug for Space {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Space").field("name", &self.name).finish()
    }
}

impl Space {
    /// Opens a space whose tables and pages lie in `base`'s physical or
    /// virtual space. The space keeps what it needs of `base`: `base` may
    /// be dropped first.
    pub fn new<B: AddressSpace + ?Sized>(base: &B, on: Base, paging: Paging) -> Result<Space> {
        let layer = base.layer();
        let depth = layer.depth + 1;
        if depth > MAX_LAYERS {
            return Err(Error::InvalidSpace(format!(
                "the base is layer {} of its stack, and a stack has at most {MAX_LAYERS} \
                 layers",
                layer.depth
            )));
        }
        let under = Under {
            core: layer.core.clone(),
            in_file: layer.bottom.in_file(),
            bottom: layer.bottom.clone(),
            name: match on {
                Base::Phys => layer.phys.clone(),
                Base::Virt => layer.virt.clone(),
            },
            virt: on == Base::Virt,
            layer: layer.vtop,
        };
        let mode = match paging {
            Paging::Linear(ranges) => {
                let linear = Linear::new(under, ranges)?;
                return Ok(Space::build(layer.core, layer.bottom, depth, linear));
            }
            Paging::X86Auto {
                cr3,
                cr0,
                cr4,
                efer,
            } => match x86_mode(cr3, cr0, cr4, efer)? {
                Some(mode) => mode,
                None => {
                    return Ok(Space::build(
                        layer.core,
                        layer.bottom,
                        depth,
                        Identity(under),
                    ))
                }
            },
            Paging::X86_64 { cr3 } => Mode::X86_64 { cr3 },
            Paging::X86_64La57 { cr3 } => Mode::X86_64La57 { cr3 },
            Paging::I386 { cr3 } => Mode::I386 { cr3, pse: true },
            Paging::I386Pae { cr3 } => Mode::I386Pae { cr3 },
            Paging::Ept { eptp } => Mode::Ept { eptp },
            Paging::Aarch64 { ttbr, tcr } => Mode::Aarch64 { ttbr, tcr },
            Paging::RiscvSv39 { satp_root } => Mode::Riscv {
                root: satp_root,
                levels: 3,
            },
            Paging::RiscvSv48 { satp_root } => Mode::Riscv {
                root: satp_root,
                levels: 4,
            },
            Paging::RiscvSv57 { satp_root } => Mode::Riscv {
                root: satp_root,
                levels: 5,
            },
        };
        let tables = Tables::new(under, mode)?;
        Ok(Space::build(
            layer.core,
            layer.bottom,
            depth,
            TablesMmu(tables),
        ))
    }

    /// The space of `mmu`, layer `depth` of a stack on the dump whose
    /// translator is `bottom`.
    fn build<A: Mmu<Mem = Under> + Kind + 'static>(
        core: Arc<Image>,
        bottom: Arc<dyn Translator>,
        depth: u32,
        mmu: A,
    ) -> Space {
        let name: Arc<str> = format!("{} space (layer {depth})", mmu.kind()).into();
        let phys = mmu.mem().name.clone();
        Space {
            core,
            vtop: Arc::from(Paged::boxed(mmu)),
            bottom,
            name,
            phys,
            depth,
        }
    }

    /// This space's name in messages: "EPT space (layer 1)", "linear
    /// space (layer 2)", ...: its MMU and how many layers lie below it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Puts this layer's name on a translation error from it.
    #[cold]
    fn tag(&self, e: Error) -> Error {
        match e {
            Error::Translate { va, fault } => Error::Translate {
                va,
                fault: Fault::In {
                    what: format!("in {}", self.name),
                    fault: Box::new(fault),
                },
            },
            e => e,
        }
    }
}

impl sealed::Sealed for Space {
    fn layer(&self) -> sealed::Layer {
        sealed::Layer {
            core: self.core.clone(),
            vtop: self.vtop.clone(),
            bottom: self.bottom.clone(),
            virt: self.name.clone(),
            phys: self.phys.clone(),
            depth: self.depth,
        }
    }
}

impl AddressSpace for Space {
    #[inline]
    fn read(&self, va: u64, buf: &mut [u8]) -> Result<usize> {
        self.vtop.read(&self.core, va, buf).map_err(|e| self.tag(e))
    }

    fn read_phys(&self, pa: u64, buf: &mut [u8]) -> Result<usize> {
        self.vtop.read_phys(&self.core, pa, buf)
    }

    fn vtop(&self, va: u64) -> Result<u64> {
        self.vtop
            .vtop(&self.core, va)
            .map_err(|f| self.tag(Error::fault(va, f)))
    }

    fn walk_pages(&self, f: &mut dyn FnMut(&Page) -> bool) -> Result<bool> {
        self.vtop.walk_pages(&self.core, f)
    }
}

/// A space's MMU, by the name its messages use ("linear", "EPT", ...).
trait Kind {
    fn kind(&self) -> &'static str;
}

/// The base space as a space stacked on it reads it: locations are the
/// dump's (file offsets, or kdump physical addresses), found by
/// translating through the base and read by the dump's container.
pub struct Under {
    core: Arc<Image>,
    /// The base handle's translator.
    layer: Arc<dyn Translator>,
    /// The base's virtual space (else its physical space).
    virt: bool,
    /// The dump's translator.
    bottom: Arc<dyn Translator>,
    /// The dump's locations are offsets of bytes in the core file: read it
    /// directly, without a call through `bottom`.
    in_file: bool,
    /// The base space's name, for messages.
    name: Arc<str>,
}

impl PhysMem for Under {
    const TRANSLATES: bool = true;

    #[inline]
    fn locate(&self, a: u64) -> Option<Span> {
        if self.virt {
            self.layer.kvatop(&self.core, a).ok()
        } else {
            self.layer.locate_phys(a).ok()
        }
    }

    fn held_pages(&self) -> u64 {
        self.bottom.held_pages()
    }

    /// The base's own reason (see `find`).
    #[cold]
    fn missing(&self, a: u64) -> Fault {
        match self.find(a) {
            Err(why) => why,
            Ok(_) => Fault::NotInDump { pa: a },
        }
    }

    /// One translation through the base, its reason kept on failure,
    /// with the base's name when it is a virtual space (a physical
    /// space's reason says "not in the dump").
    #[inline]
    fn find(&self, a: u64) -> Result<Span, Fault> {
        if !self.virt {
            return self.layer.locate_phys(a);
        }
        self.layer.kvatop(&self.core, a).map_err(|why| Fault::In {
            what: format!("{a:#x} in {}", self.name),
            fault: Box::new(why),
        })
    }

    fn in_file(&self) -> bool {
        self.in_file
    }

    #[inline(always)]
    fn read_at(&self, image: &Image, off: u64, buf: &mut [u8]) -> Result<usize> {
        if self.in_file {
            image.read_at(off, buf)
        } else {
            self.bottom.read_at(image, off, buf)
        }
    }

    fn view<'a>(&'a self, image: &'a Image, off: u64, buf: &'a mut [u8]) -> Option<&'a [u8]> {
        if self.in_file {
            image.view(off, buf)
        } else {
            self.bottom.view(image, off, buf)
        }
    }

    #[inline]
    fn array<const N: usize>(&self, image: &Image, off: u64) -> Option<[u8; N]> {
        if self.in_file {
            return image.array(off);
        }
        let mut a = [0u8; N];
        (self.bottom.read_at(image, off, &mut a).ok()? == N).then_some(a)
    }

    fn location_offset(&self, image: &Image, loc: u64) -> Option<u64> {
        self.bottom.location_offset(image, loc)
    }

    fn end(&self, image: &Image) -> u64 {
        self.bottom.end(image)
    }
}

/// A page-table space's MMU.
struct TablesMmu(Tables<Under>);

impl Kind for TablesMmu {
    fn kind(&self) -> &'static str {
        self.0.name()
    }
}

impl Mmu for TablesMmu {
    type Mem = Under;
    fn mem(&self) -> &Under {
        self.0.mem()
    }
    #[inline]
    fn translate_traced(
        &self,
        image: &Image,
        va: u64,
        trace: &mut impl FnMut(Step),
    ) -> Result<Mapping, Fault> {
        self.0.translate_traced(image, va, trace)
    }
    fn walk_pages(&self, image: &Image, f: &mut dyn FnMut(&Page) -> bool) -> Result<bool> {
        self.0.walk_pages(image, f)
    }
}

/// A table of linear ranges, sorted by address.
struct Linear {
    mem: Under,
    ranges: Vec<Range>,
}

impl Linear {
    /// Checks and sorts `ranges`: none empty, none wrapping in either
    /// space, none overlapping another in the new space.
    fn new(mem: Under, mut ranges: Vec<Range>) -> Result<Linear> {
        let bad = |m: String| Err(Error::InvalidSpace(m));
        if ranges.is_empty() {
            return bad("a linear space needs at least one range".into());
        }
        if ranges.len() > MAX_RANGES {
            return bad(format!(
                "{} linear ranges, more than the {MAX_RANGES} a space takes",
                ranges.len()
            ));
        }
        let show = |r: &Range| format!("range [{:#x}, +{:#x}) at {:#x}", r.addr, r.len, r.target);
        for r in &ranges {
            if r.len == 0 {
                return bad(format!("{} is empty", show(r)));
            }
            if r.addr.checked_add(r.len - 1).is_none() {
                return bad(format!("{} wraps past the top of the new space", show(r)));
            }
            if r.target.checked_add(r.len - 1).is_none() {
                return bad(format!("{} wraps past the top of the base space", show(r)));
            }
        }
        ranges.sort_unstable_by_key(|r| r.addr);
        for w in ranges.windows(2) {
            if w[0].addr + (w[0].len - 1) >= w[1].addr {
                return bad(format!("{} overlaps {}", show(&w[0]), show(&w[1])));
            }
        }
        Ok(Linear { mem, ranges })
    }
}

impl Kind for Linear {
    fn kind(&self) -> &'static str {
        "linear"
    }
}

impl Mmu for Linear {
    type Mem = Under;
    const PAGES: bool = false;
    fn mem(&self) -> &Under {
        &self.mem
    }

    #[inline]
    fn translate_traced(
        &self,
        _image: &Image,
        va: u64,
        _trace: &mut impl FnMut(Step),
    ) -> Result<Mapping, Fault> {
        let hit = last_at_or_below(&self.ranges, va, |r| r.addr)
            .map(|i| &self.ranges[i])
            .filter(|r| va - r.addr < r.len);
        match hit {
            Some(r) => Ok(Mapping {
                pa: r.target + (va - r.addr),
                first: r.addr,
                size: r.len,
                entry: 0,
            }),
            None => Err(no_range(self.ranges.len())),
        }
    }

    /// Each range once, in address order: its leaves are the ranges (a
    /// walk's time follows their count, whatever their length), with the
    /// file offset of the first byte.
    fn walk_pages(&self, image: &Image, f: &mut dyn FnMut(&Page) -> bool) -> Result<bool> {
        for r in &self.ranges {
            let page = Page {
                paddr: r.target,
                kmap_vaddr: r.addr,
                dmap_vaddr: 0,
                prot: prot::READ | prot::WRITE | prot::EXECUTE,
                offset: self.mem.file_offset(image, r.target),
                len: r.len,
            };
            if !f(&page) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

#[cold]
#[inline(never)]
fn no_range(n: usize) -> Fault {
    Fault::Unmapped(format!("none of the space's {n} linear ranges holds it"))
}

/// x86 with paging off (CR0.PG clear): every address is its own.
struct Identity(Under);

impl Kind for Identity {
    fn kind(&self) -> &'static str {
        "identity"
    }
}

impl Mmu for Identity {
    type Mem = Under;
    const PAGES: bool = false;
    fn mem(&self) -> &Under {
        &self.0
    }
    #[inline]
    fn translate_traced(
        &self,
        _image: &Image,
        va: u64,
        _trace: &mut impl FnMut(Step),
    ) -> Result<Mapping, Fault> {
        Ok(Mapping {
            pa: va,
            first: 0,
            size: u64::MAX,
            entry: 0,
        })
    }
    fn walk_pages(&self, _image: &Image, _f: &mut dyn FnMut(&Page) -> bool) -> Result<bool> {
        Err(Error::NotSupported(
            "a space with paging off (CR0.PG clear) has no tables to walk: every address is its own",
        ))
    }
}
