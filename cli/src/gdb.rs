//! A dump as gdb's remote target: its target description, threads,
//! registers and memory, for [`crate::rsp::serve`].

use crate::rsp::{Register, Target, ThreadInfo};
use kvm::{Arch, Kvm, Thread};

/// One register of the target description: gdb's name, size in bits, a
/// type gdb predefines (gdbsupport/tdesc.cc's `tdesc_predefined_types`,
/// so the description defines none), and the index of the library's
/// register it shows (`None`: one no saved state holds, sent as `xx`).
struct Reg {
    name: &'static str,
    bits: u32,
    ty: &'static str,
    lib: Option<usize>,
}

/// The x87 registers gdb's `org.gnu.gdb.i386.core` feature must list
/// after the general ones (i386_validate_tdesc_p requires all of
/// gdb/features/i386/64bit-core.xml's and 32bit-core.xml's names).
const X87: [(&str, u32, &str); 16] = [
    ("st0", 80, "i387_ext"),
    ("st1", 80, "i387_ext"),
    ("st2", 80, "i387_ext"),
    ("st3", 80, "i387_ext"),
    ("st4", 80, "i387_ext"),
    ("st5", 80, "i387_ext"),
    ("st6", 80, "i387_ext"),
    ("st7", 80, "i387_ext"),
    ("fctrl", 32, "int"),
    ("fstat", 32, "int"),
    ("ftag", 32, "int"),
    ("fiseg", 32, "int"),
    ("fioff", 32, "int"),
    ("foseg", 32, "int"),
    ("fooff", 32, "int"),
    ("fop", 32, "int"),
];

/// The target description's features, each (feature name, registers),
/// in gdb's register order.
fn features(arch: Arch) -> Vec<(&'static str, Vec<Reg>)> {
    let lib = arch.registers();
    let ty = |name: &str, bits: u32| match (name, bits) {
        ("rip" | "eip" | "pc" | "ra", _) => "code_ptr",
        ("rsp" | "rbp" | "esp" | "ebp" | "sp" | "fp", _) => "data_ptr",
        (_, 32) => "int32",
        _ => "int64",
    };
    let reg = |i: usize| Reg {
        name: lib[i].name,
        bits: lib[i].bits,
        ty: ty(lib[i].name, lib[i].bits),
        lib: Some(i),
    };
    let x87 = || {
        X87.iter().map(|&(name, bits, ty)| Reg {
            name,
            bits,
            ty,
            lib: None,
        })
    };
    match arch {
        // gdb/features/i386/64bit-core.xml, then 64bit-segments.xml.
        Arch::X86_64 => vec![
            (
                "org.gnu.gdb.i386.core",
                (0..24).map(reg).chain(x87()).collect(),
            ),
            ("org.gnu.gdb.i386.segments", vec![reg(24), reg(25)]),
        ],
        // gdb/features/i386/32bit-core.xml.
        Arch::I386 => vec![(
            "org.gnu.gdb.i386.core",
            (0..lib.len()).map(reg).chain(x87()).collect(),
        )],
        // gdb/features/aarch64-core.xml.
        Arch::Aarch64 => vec![(
            "org.gnu.gdb.aarch64.core",
            (0..lib.len()).map(reg).collect(),
        )],
        // gdb/features/riscv/64bit-cpu.xml.
        Arch::Riscv64 => vec![("org.gnu.gdb.riscv.cpu", (0..lib.len()).map(reg).collect())],
    }
}

/// `target.xml` for `features` ("Target Descriptions" in the gdb
/// manual).
fn target_xml(arch: Arch, features: &[(&str, Vec<Reg>)]) -> String {
    let mut x = String::from(
        "<?xml version=\"1.0\"?>\n<!DOCTYPE target SYSTEM \"gdb-target.dtd\">\n<target>\n",
    );
    x += &format!("  <architecture>{}</architecture>\n", arch.gdb_name());
    let mut regnum = 0;
    for (name, regs) in features {
        x += &format!("  <feature name=\"{name}\">\n");
        for r in regs {
            x += &format!(
                "    <reg name=\"{}\" bitsize=\"{}\" type=\"{}\" regnum=\"{regnum}\"/>\n",
                r.name, r.bits, r.ty
            );
            regnum += 1;
        }
        x += "  </feature>\n";
    }
    x + "</target>\n"
}

/// A dump served to gdb.
pub struct DumpTarget<'a> {
    kvm: &'a Kvm,
    threads: Vec<Thread>,
    infos: Vec<ThreadInfo>,
    regs: Vec<Reg>,
    xml: String,
    stopped: u64,
}

impl<'a> DumpTarget<'a> {
    /// The dump's threads and architecture, or why gdb cannot be served.
    pub fn new(kvm: &'a Kvm) -> kvm::Result<Self> {
        let arch = kvm.register_arch().ok_or(kvm::Error::NotSupported(
            "gdb's registers of this dump's architecture",
        ))?;
        // A damaged thread list (or none: a kernel without the debugger
        // exports, a Linux dump without NT_PRSTATUS notes) leaves memory
        // and symbols to debug: one thread without registers, and why.
        let threads = match kvm.threads() {
            Ok(t) if !t.is_empty() => t,
            failed => {
                let why = match failed {
                    Err(e) => e.to_string(),
                    Ok(_) => "the dump lists none".into(),
                };
                eprintln!("vmcore: no kernel threads ({why}): serving memory and symbols");
                vec![Thread {
                    tid: 0,
                    pid: -1,
                    cpu: None,
                    thread: 0,
                    pcb: 0,
                    name: "no threads".into(),
                    comm: String::new(),
                    crashed: true,
                }]
            }
        };
        if kvm.kerndisp() != 0 {
            // gdb moves only .text, .data and .bss by qOffsets' displacement.
            eprintln!(
                "vmcore: the kernel is displaced by {:#x}: gdb moves its .text, .data and .bss; \
                 for every section, load it with `symbol-file KERNEL -o {:#x}`",
                kvm.kerndisp(),
                kvm.kerndisp()
            );
        }
        let infos = threads
            .iter()
            .enumerate()
            .map(|(i, t)| ThreadInfo {
                id: i as u64 + 1,
                name: thread_name(t),
                core: t.cpu,
            })
            .collect();
        let stopped = threads.iter().position(|t| t.crashed).unwrap_or(0) as u64 + 1;
        let features = features(arch);
        let xml = target_xml(arch, &features);
        Ok(DumpTarget {
            kvm,
            threads,
            infos,
            regs: features.into_iter().flat_map(|(_, r)| r).collect(),
            xml,
            stopped,
        })
    }
}

/// The name gdb shows: `pid/tid comm/tdname` (FreeBSD), `CPU n` with the
/// tid the dump gives (Linux).
fn thread_name(t: &Thread) -> String {
    if t.thread == 0 && t.cpu.is_none() {
        return t.name.clone();
    }
    if t.pid < 0 {
        let cpu = t.cpu.map_or_else(|| "-".into(), |c| c.to_string());
        return format!("CPU {cpu} tid {}", t.tid);
    }
    format!("{}/{} {}/{}", t.pid, t.tid, t.comm, t.name)
}

impl Target for DumpTarget<'_> {
    fn target_xml(&self) -> &str {
        &self.xml
    }

    fn threads(&self) -> &[ThreadInfo] {
        &self.infos
    }

    fn stopped_thread(&self) -> u64 {
        self.stopped
    }

    fn registers(&self, thread: u64) -> Result<Vec<Register>, String> {
        let t = usize::try_from(thread.wrapping_sub(1))
            .ok()
            .and_then(|i| self.threads.get(i))
            .ok_or_else(|| format!("no thread {thread}"))?;
        // A thread whose saved state cannot be read shows every register
        // as unavailable, so that gdb still lists the threads after it.
        let values = self.kvm.registers(t).ok();
        Ok(self
            .regs
            .iter()
            .map(|r| {
                let size = r.bits as usize / 8;
                let value = r
                    .lib
                    .zip(values.as_ref())
                    .and_then(|(i, v)| Some((v.value(i)?, v.big_endian())))
                    .map(|(v, be)| {
                        if be {
                            v.to_be_bytes()[8 - size..].to_vec()
                        } else {
                            v.to_le_bytes()[..size].to_vec()
                        }
                    });
                Register { size, value }
            })
            .collect())
    }

    fn read_memory(&self, addr: u64, buf: &mut [u8]) -> Result<usize, String> {
        // All of it, else the pages up to the first that fails (gdb takes
        // a short reply as a partial read).
        let err = match self.kvm.read(addr, buf) {
            Ok(0) => return Err(format!("nothing readable at {addr:#x}")),
            Ok(n) => return Ok(n),
            Err(e) => e.to_string(),
        };
        let mut done = 0;
        while done < buf.len() {
            let at = addr.wrapping_add(done as u64);
            let chunk = ((0x1000 - (at & 0xfff)) as usize).min(buf.len() - done);
            match self.kvm.read(at, &mut buf[done..done + chunk]) {
                Ok(n) => {
                    done += n;
                    if n < chunk {
                        break; // the core file ends early
                    }
                }
                Err(_) => break,
            }
        }
        if done > 0 {
            Ok(done)
        } else {
            Err(err)
        }
    }

    fn offsets(&self) -> Option<i64> {
        Some(self.kvm.kerndisp()).filter(|&d| d != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_hold_what_gdb_requires() {
        for arch in [Arch::X86_64, Arch::I386, Arch::Aarch64, Arch::Riscv64] {
            let f = features(arch);
            let xml = target_xml(arch, &f);
            assert!(xml.contains(&format!("<architecture>{}", arch.gdb_name())));
            let regs: Vec<&Reg> = f.iter().flat_map(|(_, r)| r).collect();
            // Every library register appears once, in order.
            let lib: Vec<usize> = regs.iter().filter_map(|r| r.lib).collect();
            assert_eq!(lib, (0..arch.registers().len()).collect::<Vec<_>>());
            match arch {
                // 40 (amd64) or 32 (i386) core registers, the x87 ones too.
                Arch::X86_64 => assert_eq!(f[0].1.len(), 40),
                Arch::I386 => assert_eq!(f[0].1.len(), 32),
                Arch::Aarch64 => assert_eq!(regs.len(), 34),
                Arch::Riscv64 => assert!(regs.iter().all(|r| r.bits == 64)),
            }
            assert!(xml.contains("regnum=\"0\"") && !xml.contains("vec128"));
        }
    }

    #[test]
    fn names() {
        let t = Thread {
            tid: 100042,
            pid: 42,
            cpu: Some(0),
            thread: 0,
            pcb: 0,
            name: "sh<1>".into(),
            comm: "sh".into(),
            crashed: true,
        };
        assert_eq!(thread_name(&t), "42/100042 sh/sh<1>");
        let linux = Thread {
            pid: -1,
            tid: 7,
            cpu: Some(3),
            ..t
        };
        assert_eq!(thread_name(&linux), "CPU 3 tid 7");
    }
}
