//! Kernel threads, as a debugger lists them.
//!
//! FreeBSD: the process list from `allproc` (and `zombproc` where the
//! kernel has it), each process's threads, through the offsets the kernel
//! exports for debuggers (sys/kern/kern_proc.c: `proc_off_p_list`,
//! `proc_off_p_threads`, `proc_off_p_pid`, `proc_off_p_comm`,
//! `thread_off_td_plist`, `thread_off_td_tid`, `thread_off_td_name`,
//! `thread_off_td_oncpu`, `thread_off_td_pcb`), as kgdb's fbsd-kthr.c and
//! lldb's FreeBSDKernel plugin walk them. The PCB a thread's registers
//! come from is chosen as they choose it: `dumppcb` for the thread whose
//! tid is `dumptid`; `stoppcbs[cpu]` (`pcb_size` apart) for a thread on a
//! CPU in `stopped_cpus`; else the thread's `td_pcb`.
//!
//! Linux: one thread per CPU the dump saved registers of (its
//! `NT_PRSTATUS` notes), with the tid the note carries.

use crate::error::{Error, Result};
use crate::kvm::Words;

/// A kernel thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thread {
    /// Thread id (FreeBSD `td_tid`; Linux: the note's `pr_pid`).
    pub tid: i32,
    /// Process id (FreeBSD `p_pid`); -1 where the dump does not say.
    pub pid: i32,
    /// The CPU the thread was running on, if any (Linux: the index of
    /// the CPU's `NT_PRSTATUS` note; the crash kernel writes one per
    /// online CPU, in CPU order).
    pub cpu: Option<u32>,
    /// Address of its `struct thread` (0 where there is none).
    pub thread: u64,
    /// Address of the PCB its registers come from (0 where there is none:
    /// Linux threads' registers are in the dump's notes).
    pub pcb: u64,
    /// Thread name (`td_name`); empty where unknown.
    pub name: String,
    /// Process name (`p_comm`); empty where unknown.
    pub comm: String,
    /// The thread that was dumping (FreeBSD `dumptid`), or, for Linux,
    /// the CPU that panicked (`panic_cpu`, where symbols give it).
    pub crashed: bool,
}

/// `MAXCOMLEN + 1` (sys/sys/param.h): `td_name` and `p_comm`.
const COMLEN: usize = 20;

/// A NUL-terminated name of `COMLEN` bytes at `at`; empty when it cannot
/// be read.
fn name(w: &Words<'_>, at: u64) -> String {
    let mut b = [0u8; COMLEN];
    if w.read(at, &mut b).is_err() {
        return String::new();
    }
    let end = b.iter().position(|&c| c == 0).unwrap_or(COMLEN);
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// An offset the kernel exports for debuggers (a `const int`).
fn offset(w: &Words<'_>, name: &'static str) -> Result<u64> {
    let at = w.symbol(name).ok_or(Error::MissingSymbol(name))?;
    let v = w.int(at)?;
    u64::try_from(v)
        .map_err(|_| Error::BadCore(format!("the kernel's {name} is {v}, not an offset")))
}

/// The threads of a FreeBSD kernel: the processes of `allproc`, then of
/// `zombproc`, each list reversed (new processes go to its head, so this
/// is oldest first, as lldb lists them); threads in list order.
/// `limit` bounds the processes and threads: what the dump can hold.
pub fn freebsd(m: &Words<'_>, limit: u64) -> Result<Vec<Thread>> {
    let p_list = offset(m, "proc_off_p_list")?;
    let p_threads = offset(m, "proc_off_p_threads")?;
    let p_pid = offset(m, "proc_off_p_pid")?;
    let p_comm = offset(m, "proc_off_p_comm")?;
    let td_plist = offset(m, "thread_off_td_plist")?;
    let td_tid = offset(m, "thread_off_td_tid")?;
    let td_name = offset(m, "thread_off_td_name")?;
    let td_oncpu = offset(m, "thread_off_td_oncpu")?;
    let td_pcb = offset(m, "thread_off_td_pcb")?;
    let dumptid = match m.symbol("dumptid") {
        Some(at) => Some(m.int(at)?),
        None => None,
    };
    let dumppcb = m.symbol("dumppcb").unwrap_or(0);
    let stoppcbs = m.symbol("stoppcbs");
    let pcb_size = match m.symbol("pcb_size") {
        Some(at) => u64::try_from(m.int(at)?).unwrap_or(0),
        None => 0,
    };
    let stopped_cpus = m.symbol("stopped_cpus");
    let mp_maxid = match m.symbol("mp_maxid") {
        Some(at) => u32::try_from(m.int(at)?).ok(),
        None => None,
    };
    // kgdb's cpu_stopped(): CPU_ISSET on the cpuset_t, an array of longs;
    // false without the set, or past mp_maxid.
    let stopped = |cpu: u32| -> bool {
        let Some(set) = stopped_cpus else {
            return false;
        };
        if mp_maxid.is_some_and(|max| cpu > max) || cpu >= 65536 {
            return false;
        }
        let bits = 8 * m.ptr_size as u64;
        let at = set.wrapping_add(u64::from(cpu) / bits * m.ptr_size as u64);
        m.uint(at, m.ptr_size)
            .is_ok_and(|word| word >> (u64::from(cpu) % bits) & 1 == 1)
    };
    // Every process and thread once: a list that comes back to an entry
    // loops (a damaged dump), and the walk stops there with an error.
    let mut seen = std::collections::HashSet::new();
    let mut visit = |at: u64, what: &str| -> Result<()> {
        if seen.len() as u64 >= limit {
            return Err(too_many(what, limit));
        }
        if !seen.insert(at) {
            return Err(Error::BadCore(format!(
                "{what}: the list comes back to {at:#x}: it loops"
            )));
        }
        Ok(())
    };
    let mut procs = Vec::new();
    for list in ["allproc", "zombproc"] {
        let Some(head) = m.symbol(list) else {
            continue;
        };
        let first = procs.len();
        // A link that cannot be read ends the list, as in kgdb.
        let mut p = m.ptr(head)?;
        while p != 0 {
            visit(p, list)?;
            procs.push(p);
            match m.ptr(p.wrapping_add(p_list)) {
                Ok(next) => p = next,
                Err(_) => break,
            }
        }
        procs[first..].reverse();
    }
    let mut out = Vec::new();
    for p in procs {
        let Ok(pid) = m.int(p.wrapping_add(p_pid)) else {
            continue;
        };
        let comm = name(m, p.wrapping_add(p_comm));
        let mut td = m.ptr(p.wrapping_add(p_threads)).unwrap_or(0);
        while td != 0 {
            visit(td, "a process's thread list")?;
            // A thread that cannot be read ends its process's list.
            let (Ok(tid), Ok(oncpu)) = (
                m.int(td.wrapping_add(td_tid)),
                m.int(td.wrapping_add(td_oncpu)),
            ) else {
                break;
            };
            let cpu = u32::try_from(oncpu).ok();
            let crashed = dumptid == Some(tid);
            let pcb = match (cpu, stoppcbs) {
                _ if crashed && dumppcb != 0 => dumppcb,
                (Some(c), Some(base)) if pcb_size > 0 && stopped(c) => {
                    base.wrapping_add(u64::from(c) * pcb_size)
                }
                _ => m.ptr(td.wrapping_add(td_pcb)).unwrap_or(0),
            };
            out.push(Thread {
                tid,
                pid,
                cpu,
                thread: td,
                pcb,
                name: name(m, td.wrapping_add(td_name)),
                comm: comm.clone(),
                crashed,
            });
            td = m.ptr(td.wrapping_add(td_plist)).unwrap_or(0);
        }
    }
    Ok(out)
}

#[cold]
fn too_many(what: &str, limit: u64) -> Error {
    Error::BadCore(format!(
        "{what}: more than {limit} processes and threads, more than the dump can hold: the \
         lists loop or are damaged"
    ))
}
