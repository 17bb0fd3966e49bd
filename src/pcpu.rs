//! Per-CPU and VNET data of a FreeBSD kernel, found as
//! `lib/libkvm/kvm_pcpu.c` and `kvm_vnet.c` find them, from the kernel's
//! symbols and words read in its own size and byte order (any
//! architecture, on any host):
//!
//! - `struct pcpu` of each CPU: `cpuid_to_pcpu[mp_maxcpus]`
//!   (sys/kern/subr_pcpu.c), with `mp_maxcpus` and `mp_ncpus`
//!   (sys/kern/subr_smp.c, `int`s);
//! - dynamic per-CPU variables (`DPCPU_DEFINE`, sys/sys/pcpu.h): each is a
//!   `pcpu_entry_NAME` symbol in `set_pcpu`, `[__start_set_pcpu,
//!   __stop_set_pcpu)`, and a CPU's copy lies `dpcpu_off[cpu]` bytes from
//!   it (`uintptr_t dpcpu_off[MAXCPU]`);
//! - virtualised network stack variables (`VNET_DEFINE`, sys/net/vnet.h):
//!   `vnet_entry_NAME` in `set_vnet`, `[__start_set_vnet,
//!   __stop_set_vnet)`, relocated by the vnet's `vnet_data_base`.

use crate::error::{Error, Result};
use crate::kvm::Words;

/// FreeBSD's largest `MAXCPU` (amd64 and arm64 `MAXCPU` 1024 with
/// `NUMA`, sys/<arch>/include/param.h) times 64: more is no kernel's.
const MAX_CPUS: u32 = 65536;

/// `VNET_MAGIC_N` (sys/net/vnet.h, the same since FreeBSD 8).
pub const VNET_MAGIC_N: u32 = 0x3e0d_8f29;

/// What `kvm_getmaxcpu(3)` and `kvm_getpcpu(3)` read (`_kvm_pcpu_init`).
#[derive(Debug, Clone)]
pub struct Pcpu {
    /// `mp_maxcpus`.
    pub maxcpus: u32,
    /// `mp_ncpus`.
    pub ncpus: u32,
    /// `cpuid_to_pcpu[]`: each CPU's `struct pcpu`, 0 for a CPU absent.
    pub pcpu: Vec<u64>,
}

/// The kernel's dynamic per-CPU area (`_kvm_dpcpu_init`).
#[derive(Debug, Clone)]
pub struct Dpcpu {
    /// `__start_set_pcpu`.
    pub start: u64,
    /// `__stop_set_pcpu`.
    pub stop: u64,
    /// `dpcpu_off[0 .. mp_maxcpus]`.
    pub off: Vec<u64>,
}

/// The vnet `vnet_entry_*` symbols are relocated into
/// (`_kvm_vnet_selectpid`).
#[derive(Debug, Clone, Copy)]
pub struct Vnet {
    /// `__start_set_vnet`.
    pub start: u64,
    /// `__stop_set_vnet`.
    pub stop: u64,
    /// Its `vnet_data_base`.
    pub base: u64,
}

fn need(w: &Words<'_>, name: &'static str) -> Result<u64> {
    w.symbol(name).ok_or(Error::MissingSymbol(name))
}

/// `mp_maxcpus`, checked.
fn maxcpus(w: &Words<'_>) -> Result<u32> {
    let at = need(w, "mp_maxcpus")?;
    let n = w.int(at)?;
    u32::try_from(n)
        .ok()
        .filter(|n| (1..=MAX_CPUS).contains(n))
        .ok_or_else(|| {
            Error::BadCore(format!(
                "mp_maxcpus at {at:#x} is {n}: no FreeBSD kernel has fewer than 1 or more than \
                 {MAX_CPUS} CPUs"
            ))
        })
}

/// `n` pointers from `at`.
fn pointers(w: &Words<'_>, at: u64, n: u32, what: &str) -> Result<Vec<u64>> {
    let size = w.ptr_size;
    let mut buf = vec![0u8; n as usize * size];
    w.read(at, &mut buf).map_err(|e| {
        Error::BadCore(format!(
            "{what} ({n} pointers at {at:#x}) cannot be read: {e}"
        ))
    })?;
    Ok(buf
        .chunks_exact(size)
        .map(|c| crate::image::uint(c, w.big_endian()))
        .collect())
}

/// Reads `cpuid_to_pcpu`, `mp_maxcpus` and `mp_ncpus`.
pub fn pcpu(w: &Words<'_>) -> Result<Pcpu> {
    let table = need(w, "cpuid_to_pcpu")?;
    let maxcpus = maxcpus(w)?;
    let at = need(w, "mp_ncpus")?;
    let n = w.int(at)?;
    let ncpus = u32::try_from(n)
        .ok()
        .filter(|n| (1..=maxcpus).contains(n))
        .ok_or_else(|| {
            Error::BadCore(format!(
                "mp_ncpus at {at:#x} is {n}, outside 1 to mp_maxcpus ({maxcpus})"
            ))
        })?;
    Ok(Pcpu {
        maxcpus,
        ncpus,
        pcpu: pointers(w, table, maxcpus, "cpuid_to_pcpu")?,
    })
}

/// Reads the dynamic per-CPU area's bounds and `dpcpu_off[]`.
pub fn dpcpu(w: &Words<'_>) -> Result<Dpcpu> {
    let start = need(w, "__start_set_pcpu")?;
    let stop = need(w, "__stop_set_pcpu")?;
    let table = need(w, "dpcpu_off")?;
    let n = maxcpus(w)?;
    Ok(Dpcpu {
        start,
        stop,
        off: pointers(w, table, n, "dpcpu_off")?,
    })
}

/// `vnet0`: the vnet of `prison0`, which is `proc0`'s, which libkvm
/// chooses for every dump (`VMCORE_VNET_OF_PROC0`); read from the `vnet0`
/// pointer (sys/net/vnet.c) instead of through `struct ucred` and
/// `struct prison`, whose layouts a cross-debugger cannot know.
///
/// `struct vnet` (sys/net/vnet.h): a `LIST_ENTRY` (two pointers), `u_int
/// vnet_magic_n`, `vnet_ifcnt`, `vnet_sockcnt`, from FreeBSD 11 `u_int
/// vnet_state`, then `void *vnet_data_mem` and `uintptr_t vnet_data_base`
/// (FreeBSD 14 adds a `bool` after them). The two layouts differ on 32-bit
/// kernels only; the one whose `vnet_data_base` is `vnet_data_mem -
/// __start_set_vnet`, as `vnet_alloc` sets it, is taken (with the run-time
/// address of `__start_set_vnet`: its symbol moved by `kerndisp`).
pub fn vnet(w: &Words<'_>, kerndisp: i64) -> Result<Vnet> {
    let start = need(w, "__start_set_vnet")?;
    let stop = need(w, "__stop_set_vnet")?;
    let at = need(w, "vnet0")?;
    let vnet = w.ptr(at)?;
    let p = w.ptr_size as u64;
    let field = |off: u64| vnet.wrapping_add(off);
    let magic = w.uint(field(2 * p), 4)? as u32;
    if magic != VNET_MAGIC_N {
        return Err(Error::BadCore(format!(
            "vnet0 ({vnet:#x}) has magic {magic:#x}, not VNET_MAGIC_N {VNET_MAGIC_N:#x}"
        )));
    }
    // vnet_data_mem after three or four u_ints, pointer-aligned.
    for ints in [4, 3] {
        let mem_off = (2 * p + 4 * ints).next_multiple_of(p);
        let mem = w.ptr(field(mem_off))?;
        let base = w.ptr(field(mem_off + p))?;
        if mem.wrapping_sub(start.wrapping_add_signed(kerndisp)) == base {
            return Ok(Vnet { start, stop, base });
        }
    }
    Err(Error::BadCore(format!(
        "vnet0 ({vnet:#x}): no vnet_data_base equal to vnet_data_mem - __start_set_vnet \
         ({start:#x}) in either struct vnet layout"
    )))
}

/// `_kvm_vnet_validaddr` and `_kvm_dpcpu_validaddr`: a value in
/// `[start, stop)` moved by `by`; others (0 included) unchanged.
pub fn relocate(value: u64, start: u64, stop: u64, by: u64) -> u64 {
    if value == 0 || value < start || value >= stop {
        value
    } else {
        value.wrapping_add(by)
    }
}

/// The name a `prefix`ed variable has in the symbol table, as
/// `kvm_fdnlist_prefix` forms it: a leading `_` of `name` is dropped.
pub fn prefixed(prefix: &str, name: &str) -> String {
    format!("{prefix}{}", name.strip_prefix('_').unwrap_or(name))
}
