//! Address spaces over address spaces (issue 9) through the Rust API:
//! every stack of the guest lab (tests/fixture/guest.rs) read, translated
//! and walked against the lab's model, over an amd64 full dump and a
//! minidump of the host.

mod fixture;
use fixture::amd64::Dump;
use fixture::guest::{self, gpa, Failure, Lab, Layer, Mmu, DUMP_PHYS, MIB};
use fixture::PAGE;
use kvm::{AddressSpace, Base, Kvm, Paging, Space};
use std::path::PathBuf;
use std::sync::OnceLock;

// ---- The lab, built once per test binary ------------------------------

struct Shared {
    lab: Lab,
    kernel: PathBuf,
    /// (name, dump with its bytes dropped, core file).
    dumps: Vec<(&'static str, Dump, PathBuf)>,
}

/// The standard lab and its dumps, written under cargo's scratch directory
/// for integration tests (overwritten by each run, not accumulated).
fn shared() -> &'static Shared {
    static S: OnceLock<Shared> = OnceLock::new();
    S.get_or_init(|| {
        let lab = Lab::standard();
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("space-lab-rust");
        std::fs::create_dir_all(&dir).unwrap();
        let kernel = dir.join("kernel");
        std::fs::write(&kernel, lab.host.kernel()).unwrap();
        let dumps = lab
            .dumps()
            .into_iter()
            .map(|(name, mut d)| {
                let path = dir.join(name.replace(' ', "-"));
                std::fs::write(&path, &d.bytes).unwrap();
                d.bytes = Vec::new();
                (name, d, path)
            })
            .collect();
        Shared { lab, kernel, dumps }
    })
}

/// The handles of one dump: the host and the spaces guest memory is
/// reached through.
struct Host {
    kvm: Kvm,
    vmm: Space,
    slots: Space,
    aliases: Space,
    ept4: Space,
    ept5: Space,
}

fn ranges(r: &[guest::Range]) -> Vec<kvm::Range> {
    r.iter()
        .map(|r| kvm::Range {
            addr: r.addr,
            len: r.len,
            target: r.target,
        })
        .collect()
}

/// The library's description of a layer.
fn paging(lab: &Lab, l: &Layer) -> Paging {
    match l {
        Layer::Vmm => Paging::X86_64 { cr3: lab.vmm_cr3 },
        Layer::Slots => Paging::Linear(ranges(&lab.slots)),
        Layer::Aliases => Paging::Linear(ranges(&lab.aliases)),
        Layer::Linear(r) => Paging::Linear(ranges(r)),
        Layer::Ept4 => Paging::Ept {
            eptp: lab.ept4.unwrap().root,
        },
        Layer::Ept5 => Paging::Ept {
            eptp: lab.ept5.unwrap().root,
        },
        Layer::Identity => Paging::X86Auto {
            cr3: 0,
            cr0: CR0_PE,
            cr4: 0,
            efer: 0,
        },
        Layer::Guest(n) => {
            let g = lab.guest(n);
            let r = g.root_reg;
            match g.tables.mmu {
                Mmu::X86_64 => Paging::X86_64 { cr3: r },
                Mmu::X86_64La57 => Paging::X86_64La57 { cr3: r },
                Mmu::I386 => Paging::I386 { cr3: r },
                Mmu::I386Pae => Paging::I386Pae { cr3: r },
                Mmu::Aarch64 { .. } => Paging::Aarch64 {
                    ttbr: r,
                    tcr: g.tcr,
                },
                Mmu::Sv39 => Paging::RiscvSv39 { satp_root: r },
                Mmu::Sv48 => Paging::RiscvSv48 { satp_root: r },
                Mmu::Sv57 => Paging::RiscvSv57 { satp_root: r },
                Mmu::Ept4 | Mmu::Ept5 => unreachable!(),
            }
        }
    }
}

fn open_dump(s: &Shared, path: &PathBuf) -> Kvm {
    Kvm::open(&s.kernel, path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

fn space<B: AddressSpace + ?Sized>(base: &B, on: Base, lab: &Lab, l: &Layer) -> Space {
    Space::new(base, on, paging(lab, l)).unwrap_or_else(|e| panic!("open {l:?}: {e}"))
}

fn open(s: &Shared, path: &PathBuf) -> Host {
    let lab = &s.lab;
    let kvm = open_dump(s, path);
    let vmm = space(&kvm, Base::Phys, lab, &Layer::Vmm);
    let slots = space(&vmm, Base::Virt, lab, &Layer::Slots);
    let aliases = space(&slots, Base::Virt, lab, &Layer::Aliases);
    let ept4 = space(&kvm, Base::Phys, lab, &Layer::Ept4);
    let ept5 = space(&kvm, Base::Phys, lab, &Layer::Ept5);
    Host {
        kvm,
        vmm,
        slots,
        aliases,
        ept4,
        ept5,
    }
}

/// The ways to guest-physical memory.
#[derive(Clone, Copy, Debug)]
enum Gpa {
    Slots,
    Aliases,
    Ept4,
    Ept5,
}

impl Gpa {
    /// The model's layers below a guest.
    fn stack(self) -> Vec<Layer> {
        match self {
            Gpa::Slots => vec![Layer::Slots, Layer::Vmm],
            Gpa::Aliases => vec![Layer::Aliases, Layer::Slots, Layer::Vmm],
            Gpa::Ept4 => vec![Layer::Ept4],
            Gpa::Ept5 => vec![Layer::Ept5],
        }
    }

    fn space(self, h: &Host) -> &Space {
        match self {
            Gpa::Slots => &h.slots,
            Gpa::Aliases => &h.aliases,
            Gpa::Ept4 => &h.ept4,
            Gpa::Ept5 => &h.ept5,
        }
    }
}

/// `top` over `below`.
fn stack(top: Layer, below: &[Layer]) -> Vec<Layer> {
    let mut v = vec![top];
    v.extend_from_slice(below);
    v
}

// ---- Checks against the model -----------------------------------------

const CR0_PE: u64 = 1;
const CR0_PG: u64 = 1 << 31;
const CR4_PSE: u64 = 1 << 4;
const CR4_PAE: u64 = 1 << 5;
const CR4_LA57: u64 = 1 << 12;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

/// Asserts an error text starts with `kind (0x<at>)` and names the layer
/// the model says fails.
fn assert_failure(text: &str, kind: &str, f: &Failure, what: &str) {
    let head = format!("{kind} ({:#x})", f.at);
    assert!(
        text.starts_with(&head),
        "{what}: error {text:?} should start with {head:?}"
    );
    // A page the dump lacks may be blamed on the dump, or on the layer
    // that mapped to it, saying it is not in the dump.
    let bottom = f.layer == DUMP_PHYS
        && text.contains("(layer 1)")
        && text.contains("which is not in the dump");
    assert!(
        text.contains(&f.layer) || bottom,
        "{what}: error {text:?} should name the failing layer {:?}",
        f.layer
    );
}

fn summary(r: &Result<Vec<u8>, Failure>) -> String {
    match r {
        Ok(b) => format!("{} bytes", b.len()),
        Err(f) => format!("{f:?}"),
    }
}

/// One read of `len` bytes at `va` through `sp`, against the model.
fn check_read(sp: &dyn AddressSpace, lab: &Lab, st: &[Layer], d: &Dump, va: u64, len: u64) {
    let want = lab.expect_read(st, d, va, len);
    let mut buf = vec![0u8; len as usize];
    let got = sp.read(va, &mut buf);
    let what = format!("{:?} read {va:#x}+{len:#x}", st[0]);
    match (&want, got) {
        (Ok(w), Ok(n)) => {
            assert_eq!(n as u64, len, "{what}: short read");
            if let Some(i) = (0..w.len()).find(|&i| buf[i] != w[i]) {
                panic!("{what}: wrong byte at {:#x}", va + i as u64);
            }
        }
        (Err(f), Err(e)) => assert_failure(&e.to_string(), "invalid address", f, &what),
        (_, got) => panic!(
            "{what}: model says {}, library says {:?}",
            summary(&want),
            got.map_err(|e| e.to_string())
        ),
    }
    // read_exact agrees.
    let exact = sp.read_exact(va, &mut buf);
    assert_eq!(exact.is_ok(), want.is_ok(), "{what}: read_exact");
}

/// vtop of `va` in the top layer, and a read of the physical space at
/// the address it gives.
fn check_vtop(sp: &dyn AddressSpace, lab: &Lab, st: &[Layer], d: &Dump, va: u64) {
    let what = format!("{:?} vtop {va:#x}", st[0]);
    let pa = match (lab.expect_vtop(st, va), sp.vtop(va)) {
        (Ok(w), Ok(g)) => {
            assert_eq!(g, w, "{what}");
            g
        }
        (Err(f), Err(e)) => {
            assert_failure(&e.to_string(), "invalid address", &f, &what);
            return;
        }
        (w, g) => panic!("{what}: model says {w:x?}, library says {g:x?}"),
    };
    check_read_phys(sp, lab, st, d, pa, 16);
}

/// read_phys of `len` bytes at `pa` against the model of the layers below
/// the top one.
fn check_read_phys(sp: &dyn AddressSpace, lab: &Lab, st: &[Layer], d: &Dump, pa: u64, len: u64) {
    let what = format!("{:?} read_phys {pa:#x}+{len}", st[0]);
    let mut buf = vec![0u8; len as usize];
    match (
        lab.expect_read(&st[1..], d, pa, len),
        sp.read_phys(pa, &mut buf),
    ) {
        (Ok(w), Ok(n)) => {
            assert_eq!(n as u64, len, "{what}: short read");
            assert!(buf == w, "{what}: wrong bytes");
        }
        (Err(f), Err(e)) => {
            let text = e.to_string();
            let head = format!("invalid physical address ({:#x})", f.at);
            assert!(
                text.starts_with(&head),
                "{what}: {text:?} should start {head:?}"
            );
        }
        (w, g) => panic!(
            "{what}: model says {}, library says {:?}",
            summary(&w),
            g.map_err(|e| e.to_string())
        ),
    }
}

fn walk(sp: &dyn AddressSpace) -> kvm::Result<(bool, Vec<kvm::Page>)> {
    let mut got = Vec::new();
    let done = sp.walk_pages(&mut |p| {
        got.push(*p);
        true
    })?;
    Ok((done, got))
}

/// walk_pages of the top layer against the model's walk.
fn check_walk(sp: &dyn AddressSpace, lab: &Lab, st: &[Layer], d: &Dump, what: &str) {
    match lab.expect_walk(st, d) {
        Some(want) => {
            let (done, got) = walk(sp).unwrap_or_else(|e| panic!("{what}: walk failed: {e}"));
            assert!(done, "{what}: the walk did not complete");
            fixture::assert_pages(&got, &want, what);
            // A callback that says stop is obeyed at once.
            if !want.is_empty() {
                let mut n = 0;
                let done = sp
                    .walk_pages(&mut |_| {
                        n += 1;
                        false
                    })
                    .unwrap();
                assert!(
                    !done && n == 1,
                    "{what}: stopped walk: done {done}, {n} calls"
                );
            }
        }
        None => assert!(walk(sp).is_err(), "{what}: the walk must fail"),
    }
}

/// Everything about one space: its name, the probes, `n` random reads,
/// vtop and read_phys at each probe, and the walk.
fn check_space(sp: &Space, lab: &Lab, st: &[Layer], d: &Dump, n: usize, what: &str) {
    let names = lab.names(st);
    assert_eq!(sp.name(), names[0], "{what}: name");
    let probes = lab.probes(&st[0]);
    for &(va, len) in &probes {
        check_read(sp, lab, st, d, va, len);
        check_vtop(sp, lab, st, d, va);
    }
    let regions = lab.regions(&st[0]);
    let mut ok = 0;
    fixture::random_reads(&regions, n, |va, len| {
        ok += usize::from(lab.expect_read(st, d, va, len).is_ok());
        check_read(sp, lab, st, d, va, len)
    });
    // Not vacuous: most of what a layer maps reads.
    assert!(
        ok * 4 >= n,
        "{what}: only {ok} of {n} random reads succeed in the model"
    );
    let mut rng = fixture::Rng(0x5eed);
    for _ in 0..n / 4 {
        let (start, size) = regions[rng.below(regions.len() as u64) as usize];
        check_vtop(sp, lab, st, d, start + rng.below(size));
    }
    check_walk(sp, lab, st, d, what);
}

// ---- The host-side layers -----------------------------------------------

#[test]
fn vmm_process_space() {
    let s = shared();
    for (name, d, path) in &s.dumps {
        let h = open(s, path);
        check_space(&h.vmm, &s.lab, &[Layer::Vmm], d, 1500, name);
    }
}

#[test]
fn memory_slots_and_aliases() {
    let s = shared();
    for (name, d, path) in &s.dumps {
        let h = open(s, path);
        let st = [Layer::Slots, Layer::Vmm];
        check_space(&h.slots, &s.lab, &st, d, 1500, name);
        let st = [Layer::Aliases, Layer::Slots, Layer::Vmm];
        check_space(&h.aliases, &s.lab, &st, d, 1500, name);
    }
}

#[test]
fn ept_spaces() {
    let s = shared();
    for (name, d, path) in &s.dumps {
        let h = open(s, path);
        check_space(&h.ept4, &s.lab, &[Layer::Ept4], d, 1500, name);
        check_space(&h.ept5, &s.lab, &[Layer::Ept5], d, 1500, name);
    }
}

// ---- Guests, over every way to their physical memory -----------------

/// Checks the guest `name` over each of `bases`, on both dumps.
fn check_guest(name: &'static str, bases: &[Gpa]) {
    let s = shared();
    let lab = &s.lab;
    for (dname, d, path) in &s.dumps {
        let h = open(s, path);
        for &b in bases {
            let st = stack(Layer::Guest(name), &b.stack());
            let sp = space(b.space(&h), Base::Virt, lab, &st[0]);
            check_space(
                &sp,
                lab,
                &st,
                d,
                400,
                &format!("{name} over {b:?}, {dname}"),
            );
        }
    }
}

macro_rules! guests {
    ($($test:ident: $name:literal over [$($base:ident),*];)*) => {$(
        #[test]
        fn $test() {
            check_guest($name, &[$(Gpa::$base),*]);
        }
    )*};
}

guests! {
    guest_x86_64: "x86-64" over [Slots, Ept4, Ept5, Aliases];
    guest_x86_64_la57: "x86-64 LA57" over [Slots, Ept5];
    guest_i386_pae: "i386 PAE" over [Slots, Ept4];
    guest_i386: "i386" over [Slots, Ept4, Aliases];
    guest_aarch64_4k_upper: "aarch64 4K upper" over [Slots, Ept4];
    guest_aarch64_4k_lower: "aarch64 4K lower" over [Slots, Ept5];
    guest_aarch64_16k_upper: "aarch64 16K upper" over [Slots, Ept4];
    guest_aarch64_16k_lower: "aarch64 16K lower" over [Slots, Ept4];
    guest_aarch64_64k_upper: "aarch64 64K upper" over [Slots, Ept4];
    guest_aarch64_64k_lower: "aarch64 64K lower" over [Slots, Ept5];
    guest_aarch64_16k_user_a: "aarch64 16K user A" over [Slots, Ept4];
    guest_aarch64_16k_user_b: "aarch64 16K user B" over [Slots, Ept5];
    guest_riscv_sv39: "riscv Sv39" over [Slots, Ept4];
    guest_riscv_sv48: "riscv Sv48" over [Slots, Ept5];
    guest_riscv_sv57: "riscv Sv57" over [Slots, Ept4];
}

/// The paravirtual guest: tables and frames in host memory, opened as the
/// CPU state says (Xen's CR4 alone does not tell 32 from 64 bits; EFER
/// does) and as plain x86-64.
#[test]
fn paravirtual_guest() {
    let s = shared();
    let lab = &s.lab;
    let g = lab.guest("paravirtual");
    for (dname, d, path) in &s.dumps {
        let h = open(s, path);
        let st = [Layer::Guest("paravirtual")];
        let plain = space(&h.kvm, Base::Phys, lab, &st[0]);
        check_space(&plain, lab, &st, d, 600, dname);
        let auto = Space::new(
            &h.kvm,
            Base::Phys,
            Paging::X86Auto {
                cr3: g.root_reg,
                cr0: CR0_PE | CR0_PG | 1 << 16,
                cr4: CR4_PAE | CR4_PSE | 1 << 7,
                efer: EFER_LME | EFER_LMA | 1 << 11,
            },
        )
        .unwrap();
        check_space(&auto, lab, &st, d, 600, dname);
    }
}

/// Guest VA → guest PA → VMM VA → host PA and guest VA → guest PA → EPT →
/// host PA give the same bytes wherever both succeed, and both succeed
/// for most of what the guests map.
#[test]
fn slot_and_ept_paths_agree() {
    let s = shared();
    let lab = &s.lab;
    let (_, _, path) = &s.dumps[0];
    let h = open(s, path);
    let mut both = 0;
    for g in lab
        .guests
        .iter()
        .filter(|g| g.tables.mem == guest::Mem::Guest)
    {
        if g.name.contains("loop") {
            continue;
        }
        let l = Layer::Guest(g.name);
        let via_slots = space(&h.slots, Base::Virt, lab, &l);
        let via_ept = space(&h.ept4, Base::Virt, lab, &l);
        for m in g.maps.values() {
            for va in (m.va..=m.va + (m.size.min(4 * MIB) - 1)).step_by(PAGE as usize) {
                let (mut a, mut b) = ([0u8; 64], [0u8; 64]);
                let x = via_slots.read(va + 0xfc0, &mut a);
                let y = via_ept.read(va + 0xfc0, &mut b);
                if let (Ok(_), Ok(_)) = (&x, &y) {
                    assert_eq!(a, b, "{} {va:#x}: the two paths differ", g.name);
                    both += 1;
                }
            }
        }
    }
    assert!(both > 2000, "only {both} pages read both ways");
}

// ---- Failures name the layer ------------------------------------------

/// Reads that must fail, each at a chosen layer: the model must agree
/// (the lab is laid out as meant), and the library must say so.
#[test]
fn must_fail_reads_name_the_layer() {
    const VMALLOC: u64 = 0xffff_c900_0000_0000;
    let s = shared();
    let lab = &s.lab;
    let page = |k: u64| VMALLOC + k * PAGE;
    let g = Layer::Guest("x86-64");
    // (base, va, layer on the full dump, layer on the minidump); None: succeeds.
    let slots = "linear space (layer 2)";
    let vmm = "x86-64 space (layer 1)";
    let guest3 = "x86-64 space (layer 3)";
    let ept = "EPT space (layer 1)";
    let cases: &[(Gpa, u64, Option<&str>, Option<&str>)] = &[
        (Gpa::Slots, page(16), Some(guest3), Some(guest3)),
        (
            Gpa::Slots,
            0x0000_8000_0000_0000,
            Some(guest3),
            Some(guest3),
        ),
        (Gpa::Slots, page(9), Some(slots), Some(slots)),
        (Gpa::Slots, page(17), Some(slots), Some(slots)),
        (Gpa::Slots, page(8), Some(vmm), Some(vmm)),
        (Gpa::Slots, page(10), Some(vmm), Some(vmm)),
        (Gpa::Slots, page(4), None, None),
        (Gpa::Slots, page(5), None, Some(DUMP_PHYS)),
        (Gpa::Slots, page(14), None, Some(DUMP_PHYS)),
        (Gpa::Ept4, page(4), Some(ept), Some(ept)),
        (Gpa::Ept4, page(9), Some(ept), Some(ept)),
        (Gpa::Ept4, page(8), Some(ept), Some(ept)),
        (Gpa::Ept4, page(5), None, Some(DUMP_PHYS)),
        // EPT entries allowing writes without reads: misconfigurations;
        // the slots map the same frames.
        (Gpa::Ept4, page(18), Some(ept), Some(ept)),
        (Gpa::Ept4, page(19), Some(ept), Some(ept)),
        (Gpa::Slots, page(18), None, None),
        (Gpa::Slots, page(19), None, None),
        (Gpa::Ept4, page(17), Some(DUMP_PHYS), Some(DUMP_PHYS)),
        (
            Gpa::Ept4,
            page(16),
            Some("x86-64 space (layer 2)"),
            Some("x86-64 space (layer 2)"),
        ),
        // Through the aliases the legacy hole is high memory; the flash
        // slot is not aliased.
        (Gpa::Aliases, page(9), None, None),
        (
            Gpa::Aliases,
            page(10),
            Some("linear space (layer 3)"),
            Some("linear space (layer 3)"),
        ),
    ];
    for (i, (dname, d, path)) in s.dumps.iter().enumerate() {
        let h = open(s, path);
        for &(b, va, full, mini) in cases {
            let want = if i == 0 { full } else { mini };
            let st = stack(g.clone(), &b.stack());
            let what = format!("{dname}: {b:?} {va:#x}");
            let model = lab.expect_read(&st, d, va, 8);
            assert_eq!(
                model.as_ref().err().map(|f| f.layer.as_str()),
                want,
                "{what}: the lab is not laid out as this test means"
            );
            let sp = space(b.space(&h), Base::Virt, lab, &g);
            check_read(&sp, lab, &st, d, va, 8);
            // A read that starts in good memory fails at the first bad byte.
            if model.is_err() && lab.expect_read(&st, d, va - 8, 8).is_ok() {
                check_read(&sp, lab, &st, d, va - 8, 16);
            }
        }
    }
}

/// vtop translates one layer only: a guest address whose guest-physical
/// page is in no slot still translates; the slots then fail it.
#[test]
fn vtop_is_one_layer() {
    let s = shared();
    let lab = &s.lab;
    let (_, d, path) = &s.dumps[1];
    let h = open(s, path);
    let g = space(&h.slots, Base::Virt, lab, &Layer::Guest("x86-64"));
    let va = 0xffff_c900_0000_0000 + 9 * PAGE;
    assert_eq!(g.vtop(va + 0x123).unwrap(), gpa::GAP + 0x123);
    let e = h.slots.vtop(gpa::GAP).unwrap_err().to_string();
    assert!(e.starts_with("invalid address (0xb0000)"), "{e}");
    assert!(e.contains("linear space (layer 2)"), "{e}");
    let e = g.read_phys(gpa::GAP, &mut [0; 8]).unwrap_err().to_string();
    assert!(e.starts_with("invalid physical address (0xb0000)"), "{e}");
    // The slot of an untouched VMM page translates; the VMM then fails.
    let u = h.slots.vtop(gpa::VMM_HOLE).unwrap();
    assert_eq!(u, guest::uva::LOW + gpa::VMM_HOLE);
    let e = h.vmm.vtop(u).unwrap_err().to_string();
    assert!(e.contains("x86-64 space (layer 1)"), "{e}");
    // Host frames: vtop of the VMM and the EPT agree.
    let hp = h.vmm.vtop(guest::uva::MAIN + 0x1234).unwrap();
    assert_eq!(hp, h.ept4.vtop(gpa::MAIN.0 + 0x1234).unwrap());
    assert_eq!(Some(hp), lab.gpa_host(gpa::MAIN.0 + 0x1234));
    // A host page the minidump lacks: vtop works, reads fail.
    let nd = lab.gpa_host(gpa::NOT_DUMPED).unwrap();
    assert_eq!(h.ept4.vtop(gpa::NOT_DUMPED).unwrap(), nd);
    assert!(lab
        .expect_read(&[Layer::Ept4], d, gpa::NOT_DUMPED, 8)
        .is_err());
    assert!(h.ept4.read(gpa::NOT_DUMPED, &mut [0; 8]).is_err());
}

// ---- x86 modes from the control registers ------------------------------

#[test]
fn x86_auto_chooses_the_mode() {
    let s = shared();
    let lab = &s.lab;
    let (dname, d, path) = &s.dumps[0];
    let h = open(s, path);
    let lm = EFER_LME | EFER_LMA;
    let pg = CR0_PE | CR0_PG;
    let cases = [
        ("x86-64", CR4_PAE, lm),
        ("x86-64 LA57", CR4_PAE | CR4_LA57, lm),
        ("i386 PAE", CR4_PAE, 0),
        ("i386", CR4_PSE, 0),
    ];
    for (name, cr4, efer) in cases {
        let g = lab.guest(name);
        let st = stack(Layer::Guest(name), &Gpa::Slots.stack());
        let sp = Space::new(
            &h.slots,
            Base::Virt,
            Paging::X86Auto {
                cr3: g.root_reg,
                cr0: pg,
                cr4,
                efer,
            },
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        check_space(&sp, lab, &st, d, 300, &format!("auto {name}, {dname}"));
    }
    // Without CR4.PSE a PDE's PS bit means nothing: the 4 MiB page is not
    // one (its first 4 KiB become a page table), but 4 KiB pages still are.
    let g = lab.guest("i386");
    let nopse = Space::new(
        &h.slots,
        Base::Virt,
        Paging::X86Auto {
            cr3: g.root_reg,
            cr0: pg,
            cr4: 0,
            efer: 0,
        },
    )
    .unwrap();
    assert_eq!(nopse.name(), "i386 space (layer 3)");
    let st = stack(Layer::Guest("i386"), &Gpa::Slots.stack());
    let big = lab.expect_read(&st, d, 0xc000_0000, 64).unwrap();
    let mut buf = [0u8; 64];
    if nopse.read(0xc000_0000, &mut buf).is_ok() {
        assert_ne!(&buf[..], &big[..], "a 4 MiB page without CR4.PSE");
    }
    check_read(&nopse, lab, &st, d, 0xc080_0000, 64);
    // Paging off: the identity map of the base.
    let id = Space::new(
        &h.slots,
        Base::Virt,
        Paging::X86Auto {
            cr3: 0x1234_5000,
            cr0: CR0_PE,
            cr4: CR4_PAE,
            efer: 0,
        },
    )
    .unwrap();
    let st = stack(Layer::Identity, &Gpa::Slots.stack());
    check_space(&id, lab, &st, d, 500, "identity");
    assert_eq!(id.name(), "identity space (layer 3)");
    // EFER.LME without LMA and paging off: a CPU about to enter long
    // mode; addresses are still physical.
    let entering = Space::new(
        &h.slots,
        Base::Virt,
        Paging::X86Auto {
            cr3: lab.guest("x86-64").root_reg,
            cr0: CR0_PE,
            cr4: CR4_PAE,
            efer: EFER_LME,
        },
    )
    .unwrap();
    assert_eq!(entering.name(), "identity space (layer 3)");
    check_read(&entering, lab, &st, d, gpa::MAIN.0 + 0x10, 64);
    // Modes no CPU runs in: with paging on, EFER.LMA is EFER.LME.
    for (cr0, cr4, efer, why, needle) in [
        (CR0_PG, CR4_PAE, lm, "PG without PE", "CR0.PG"),
        (CR0_PE, CR4_PAE, lm, "LMA without PG", "EFER.LMA"),
        (pg, 0, lm, "LMA without PAE", "CR4.PAE"),
        (
            pg,
            CR4_PAE,
            EFER_LME,
            "LME without LMA, paging on",
            "EFER.LME",
        ),
        (pg, CR4_PSE, EFER_LME, "LME without LMA nor PAE", "EFER.LME"),
        (pg, CR4_PAE, EFER_LMA, "LMA without LME", "EFER.LME"),
        (
            pg,
            CR4_PAE | CR4_LA57,
            EFER_LMA,
            "LA57, LMA without LME",
            "EFER.LME",
        ),
    ] {
        refused(
            &h.slots,
            Base::Virt,
            Paging::X86Auto {
                cr3: lab.guest("x86-64").root_reg,
                cr0,
                cr4,
                efer,
            },
            &[&format!("EFER {efer:#x}"), needle],
            why,
        );
    }
}

// ---- Leaves a CPU refuses or reads its own way -------------------------

/// The model's walk of the top layer of `st`, on `d`.
fn model_walk(lab: &Lab, st: &[Layer], d: &Dump) -> Vec<kvm::Page> {
    lab.expect_walk(st, d).expect("a layer with tables")
}

/// Asserts that a read of 8 bytes at `va` fails in the model at the layer
/// named `layer` and in the library with a text that names it and holds
/// each of `needles`.
fn must_fail(
    sp: &Space,
    lab: &Lab,
    st: &[Layer],
    d: &Dump,
    va: u64,
    layer: &str,
    needles: &[&str],
) {
    let f = lab
        .expect_read(st, d, va, 8)
        .expect_err("the lab is not laid out as this test means");
    assert_eq!(f.layer, layer, "{va:#x}: the model fails elsewhere");
    let e = sp.read(va, &mut [0; 8]).unwrap_err().to_string();
    assert_failure(&e, "invalid address", &f, &format!("{va:#x}"));
    for n in needles {
        assert!(e.contains(n), "{va:#x}: {e:?} should contain {n:?}");
    }
    let e = sp.vtop(va).unwrap_err().to_string();
    assert!(e.contains(layer), "{va:#x}: vtop: {e:?}");
}

/// i386 with PSE (KVM_MMU_I386, or X86Auto with CR4.PSE): a 4 MiB PDE's
/// bits 20:13 are physical bits 39:32 (PSE-36); reads, vtop and walks
/// reach above 4 GiB.
#[test]
fn i386_pse36_pages_reach_above_4gib() {
    use guest::I386_HIGH;
    let s = shared();
    let lab = &s.lab;
    for (dname, d, path) in &s.dumps {
        let h = open(s, path);
        let cr3 = lab.guest("i386").root_reg;
        let auto = Paging::X86Auto {
            cr3,
            cr0: CR0_PE | CR0_PG,
            cr4: CR4_PSE,
            efer: 0,
        };
        for b in [Gpa::Slots, Gpa::Ept4, Gpa::Aliases] {
            let st = stack(Layer::Guest("i386"), &b.stack());
            let plain = space(b.space(&h), Base::Virt, lab, &st[0]);
            let auto = Space::new(b.space(&h), Base::Virt, auto.clone()).unwrap();
            for sp in [&plain, &auto] {
                let what = format!("{dname}, over {b:?}");
                for k in 0..4 {
                    let va = I386_HIGH + k * 4 * MIB + 0x12_3456;
                    let pa = lab.expect_vtop(&st, va).unwrap();
                    assert!(pa >> 32 != 0, "{what}: the model maps {va:#x} low");
                    assert_eq!(sp.vtop(va).unwrap(), pa, "{what}: vtop {va:#x}");
                    check_read(sp, lab, &st, d, va, 64);
                    check_read(sp, lab, &st, d, I386_HIGH + k * 4 * MIB - 8, 16);
                }
                // Over the slots and the EPT the first two are the high
                // slot's, and differ from what low memory holds.
                if !matches!(b, Gpa::Aliases) {
                    let high = lab.expect_read(&st, d, I386_HIGH, 64).unwrap();
                    let low = lab.expect_read(&st[1..], d, 0x1000, 64).unwrap();
                    assert_ne!(high, low, "{what}: a vacuous lab");
                }
                let walk = walk(sp).unwrap().1;
                assert!(
                    walk.iter()
                        .any(|p| p.kmap_vaddr == I386_HIGH + 12 * MIB && p.paddr == 0xff_ffc0_0000),
                    "{what}: the walk lacks PSE-36's top page"
                );
                check_walk(sp, lab, &st, d, &what);
            }
        }
    }
}

/// riscv leaves as the privileged spec reads them (12.3.2 steps 2 and 6,
/// 12.6 Svnapot): write without read, reserved bits 60:54, misaligned
/// superpages and N anywhere but on a 4 KiB leaf with PPN[3:0] = 0b1000
/// fault; a walk skips them; an Svnapot run maps 64 KiB, each entry
/// reported as its own 4 KiB page.
#[test]
fn riscv_leaves_follow_the_spec() {
    use guest::{RV_BAD, RV_BAD_GIGA, RV_NAPOT};
    let s = shared();
    let lab = &s.lab;
    let layer = "riscv Sv39 space (layer 3)";
    for (dname, d, path) in &s.dumps {
        let h = open(s, path);
        let st = stack(Layer::Guest("riscv Sv39"), &Gpa::Slots.stack());
        let sp = space(&h.slots, Base::Virt, lab, &st[0]);
        let bad = [
            (RV_BAD, "write without read"),
            (RV_BAD + PAGE, "write without read"),
            (RV_BAD + 2 * PAGE, "reserved bits"),
            (RV_BAD + 3 * PAGE, "reserved bits"),
            (RV_BAD + 4 * PAGE, "Svnapot"),
            (RV_BAD + 5 * PAGE, "Svnapot"),
            (RV_BAD + 2 * MIB + 0x1234, "misaligned superpage"),
            (RV_BAD + 4 * MIB + 0x1234, "Svnapot"),
            (RV_BAD_GIGA + 3 * MIB, "misaligned superpage"),
        ];
        for (va, why) in bad {
            must_fail(&sp, lab, &st, d, va, layer, &["riscv leaf", why]);
        }
        // The Svnapot run: each page where its own entry says, though
        // all 16 entries are alike.
        for k in 0..16 {
            let va = RV_NAPOT + k * PAGE + 0x123;
            let want = gpa::NAPOT + k * PAGE + 0x123;
            assert_eq!(lab.expect_vtop(&st, va).unwrap(), want);
            assert_eq!(sp.vtop(va).unwrap(), want, "{dname}: vtop {va:#x}");
        }
        check_read(&sp, lab, &st, d, RV_NAPOT, 0x1_0000);
        check_read(&sp, lab, &st, d, RV_NAPOT + 0xfff0, 32);
        let want = model_walk(lab, &st, d);
        let napot: Vec<_> = want
            .iter()
            .filter(|p| (RV_NAPOT..RV_NAPOT + 0x1_0000).contains(&p.kmap_vaddr))
            .collect();
        assert_eq!(napot.len(), 16);
        assert!(napot.iter().all(|p| p.len == PAGE));
        assert!(!want.iter().any(|p| {
            (RV_BAD..RV_BAD + 6 * MIB).contains(&p.kmap_vaddr) || p.kmap_vaddr == RV_BAD_GIGA
        }));
        check_walk(&sp, lab, &st, d, dname);
    }
}

/// EPT entries allowing writes but not reads are misconfigurations (SDM
/// 29.3.3.1): they translate nothing and walks skip them, while the slots
/// reach the same frames.
#[test]
fn ept_write_without_read_is_a_misconfiguration() {
    let s = shared();
    let lab = &s.lab;
    let (_, d, path) = &s.dumps[0];
    let h = open(s, path);
    for (ept, l) in [(&h.ept4, Layer::Ept4), (&h.ept5, Layer::Ept5)] {
        for g in [gpa::WRITE_ONLY, gpa::WRITE_EXEC] {
            let st = [l.clone()];
            assert!(lab.expect_vtop(&st, g).is_err());
            let e = ept.vtop(g + 8).unwrap_err().to_string();
            assert!(e.contains("EPT space (layer 1)"), "{e}");
            assert!(e.contains("misconfiguration"), "{e}");
            let e = ept.read(g, &mut [0; 8]).unwrap_err().to_string();
            assert!(e.starts_with(&format!("invalid address ({g:#x})")), "{e}");
            assert!(!model_walk(lab, &st, d).iter().any(|p| p.kmap_vaddr == g));
            // The slots map the frame.
            check_read(&h.slots, lab, &[Layer::Slots, Layer::Vmm], d, g, 64);
        }
        check_walk(ept, lab, &[l], d, "EPT");
    }
}

/// aarch64: a space walks one half, TTBR1's unless TCR_EL1.EPD1 is set;
/// addresses of the other half fail saying so. The root is aligned to its
/// table's size, not to 64 bytes: two 16 KiB-granule, 48-bit user tables
/// (16 bytes each) share a page and translate differently.
#[test]
fn aarch64_one_half_per_space() {
    let s = shared();
    let lab = &s.lab;
    let (dname, d, path) = &s.dumps[1];
    let h = open(s, path);
    let layer = "aarch64 space (layer 3)";
    let over = |n: &'static str| stack(Layer::Guest(n), &Gpa::Slots.stack());

    // The shared page.
    let (a, b) = (
        lab.guest("aarch64 16K user A"),
        lab.guest("aarch64 16K user B"),
    );
    assert_eq!(a.tables.root >> 14, b.tables.root >> 14);
    assert!(a.tables.root % 64 != 0 && b.tables.root % 64 != 0);
    let (sa, sb) = (over(a.name), over(b.name));
    let spa = space(&h.slots, Base::Virt, lab, &sa[0]);
    let spb = space(&h.slots, Base::Virt, lab, &sb[0]);
    for va in [0x40_0000u64, 0x40_3ff8, 0x0000_ffff_ffff_c100] {
        let wa = lab.expect_read(&sa, d, va, 8).unwrap();
        let wb = lab.expect_read(&sb, d, va, 8).unwrap();
        assert_ne!(wa, wb, "{va:#x}: the two spaces should differ");
        check_read(&spa, lab, &sa, d, va, 8);
        check_read(&spb, lab, &sb, d, va, 8);
    }
    check_space(&spa, lab, &sa, d, 200, &format!("user A, {dname}"));
    check_space(&spb, lab, &sb, d, 200, &format!("user B, {dname}"));

    // The other half fails, whatever the other TTBR's tables map.
    let lower = "in the lower half (TTBR0's): this space walks TTBR1's tables";
    let upper = "in the upper half (TTBR1's): this space walks TTBR0's tables";
    for (up, low) in [
        ("aarch64 4K upper", "aarch64 4K lower"),
        ("aarch64 16K upper", "aarch64 16K lower"),
        ("aarch64 64K upper", "aarch64 64K lower"),
    ] {
        let (su, sl) = (over(up), over(low));
        let spu = space(&h.slots, Base::Virt, lab, &su[0]);
        let spl = space(&h.slots, Base::Virt, lab, &sl[0]);
        let lva = lab.guest(low).maps.values().next().unwrap().va;
        let uva = lab.guest(up).maps.values().next().unwrap().va;
        must_fail(&spu, lab, &su, d, lva, layer, &["out of range", lower]);
        must_fail(&spl, lab, &sl, d, uva, layer, &["out of range", upper]);
        // EPD0 alone changes nothing for TTBR1's half.
        let g = lab.guest(up);
        let epd0 = Space::new(
            &h.slots,
            Base::Virt,
            Paging::Aarch64 {
                ttbr: g.root_reg,
                tcr: g.tcr | 1 << 7,
            },
        )
        .unwrap();
        check_read(&epd0, lab, &su, d, uva, 64);
        must_fail(&epd0, lab, &su, d, lva, layer, &[lower]);
        // EPD0 and EPD1 together leave nothing to walk.
        refused(
            &h.slots,
            Base::Virt,
            Paging::Aarch64 {
                ttbr: g.root_reg,
                tcr: g.tcr | 1 << 7 | 1 << 23,
            },
            &["EPD0 and EPD1"],
            "EPD0 and EPD1",
        );
    }
    must_fail(&spa, lab, &sa, d, 0xffff_ffff_ffff_c000, layer, &[upper]);

    // TBI0: the top byte of a lower-half address is a tag.
    let tagged = 0x5a00_0000_0040_0010u64;
    let want = lab.expect_read(&sa, d, 0x40_0010, 16).unwrap();
    let tbi = Space::new(
        &h.slots,
        Base::Virt,
        Paging::Aarch64 {
            ttbr: a.root_reg,
            tcr: a.tcr | 1 << 37,
        },
    )
    .unwrap();
    let mut buf = [0u8; 16];
    tbi.read(tagged, &mut buf).unwrap();
    assert_eq!(&buf[..], &want[..], "TBI0");
    assert!(spa.read(tagged, &mut buf).is_err(), "a tag without TBI0");

    // BADDR[51:48] sits in TTBR bits 5:2 only with 52-bit output
    // addresses: 64 KiB pages and IPS 52 bits (B's 16 KiB pages with IPS
    // 52 bits and no DS use 48). The same tables then read the same, and
    // a TTBR with bit 2 set names a root 2^48 higher, outside the base.
    let g = lab.guest("aarch64 64K lower");
    let tcr52 = (g.tcr & !(7 << 32)) | 6 << 32;
    let st = over(g.name);
    let lpa = Space::new(
        &h.slots,
        Base::Virt,
        Paging::Aarch64 {
            ttbr: g.root_reg,
            tcr: tcr52,
        },
    )
    .unwrap();
    check_space(&lpa, lab, &st, d, 100, "64K lower, IPS 52 bits");
    let high = g.tables.root | 1 << 48;
    refused(
        &h.slots,
        Base::Virt,
        Paging::Aarch64 {
            ttbr: g.root_reg | 1 << 2,
            tcr: tcr52,
        },
        &[&format!("{high:#x}")],
        "BADDR[48] from TTBR bit 2",
    );
    // With DS, 16 KiB pages have 52-bit addresses too: B's TTBR bit 5 is
    // BADDR[51], and its 16-byte offset is no part of a 64-byte-aligned
    // root.
    let ds = b.tcr | 1 << 59;
    let root = (b.tables.root & !0x3f) | ((b.root_reg >> 2) & 0xf) << 48;
    assert_eq!(root, (a.tables.root & !0x3f) | 1 << 51);
    refused(
        &h.slots,
        Base::Virt,
        Paging::Aarch64 {
            ttbr: b.root_reg,
            tcr: ds,
        },
        &[&format!("{root:#x}")],
        "BADDR[51] from TTBR bit 5 with DS",
    );
}

// ---- The depth of a stack -------------------------------------------------

/// A stack holds `kvm::MAX_LAYERS` (16) spaces: 16 linear spaces, each
/// moving addresses up a page over the one below (so that a layer left
/// out shows), read right, and failing at the layer the model says; a
/// 17th is refused, over either space of the 16th.
#[test]
fn sixteen_layers_and_no_more() {
    const B: u64 = 0x10_0000;
    const L: u64 = 40 * MIB;
    let s = shared();
    let lab = &s.lab;
    assert_eq!(kvm::MAX_LAYERS, 16);
    // The minidump: many reads fail in the dump, at the bottom of 16
    // layers (a failure costs one translation per layer, not 2^16).
    let (dname, d, path) = &s.dumps[1];
    let kvm = open_dump(s, path);
    // Layer k maps [B, B + L + k pages) to B + a page below, and 4 MiB of
    // high memory likewise: the deeper the layer, the shorter its range.
    let layer = |k: u64| {
        Layer::Linear(vec![
            guest::Range {
                addr: B,
                len: L + k * PAGE,
                target: B + PAGE,
            },
            guest::Range {
                addr: gpa::HIGH.0,
                len: 4 * MIB,
                target: gpa::HIGH.0 + PAGE,
            },
        ])
    };
    let mut spaces: Vec<Space> = Vec::new();
    let mut st: Vec<Layer> = Vec::new();
    for k in 1..=16u64 {
        let l = layer(k);
        let sp = match spaces.last() {
            None => space(&kvm, Base::Phys, lab, &l),
            Some(below) => space(below, Base::Virt, lab, &l),
        };
        st.insert(0, l);
        assert_eq!(sp.name(), format!("linear space (layer {k})"));
        spaces.push(sp);
    }
    let top = spaces.last().unwrap();
    check_space(top, lab, &st, d, 300, &format!("16 layers, {dname}"));
    assert_eq!(
        lab.expect_vtop(&st, B + 0x123).unwrap(),
        B + PAGE + 0x123,
        "one layer"
    );
    let (h, _) = lab.translate(&st, B + 0x123).unwrap();
    assert_eq!(h, B + 16 * PAGE + 0x123, "sixteen layers");
    for (va, len) in [
        (B, 64),
        (B - 8, 16),
        (0x80_0000 + 0x123, 0x2000),
        (gpa::HIGH.0 + 4 * MIB - 8, 16),
    ] {
        check_read(top, lab, &st, d, va, len);
    }
    // Near the end of the ranges, reads fail at every layer in turn.
    for j in 1..=16u64 {
        let va = B + L + 2 * j * PAGE - 16 * PAGE + 8;
        assert_eq!(
            lab.expect_read(&st, d, va, 8).unwrap_err().layer,
            format!("linear space (layer {j})")
        );
        check_read(top, lab, &st, d, va, 8);
        check_read(top, lab, &st, d, va - 16, 16);
    }
    for on in [Base::Virt, Base::Phys] {
        refused(
            top,
            on,
            paging(lab, &layer(17)),
            &["layer 16", "at most 16 layers"],
            "a 17th layer",
        );
        refused(
            top,
            on,
            Paging::X86Auto {
                cr3: 0,
                cr0: CR0_PE,
                cr4: 0,
                efer: 0,
            },
            &["at most 16 layers"],
            "a 17th identity layer",
        );
    }
    // Below the top, a new layer is still welcome.
    let fifteen = &spaces[14];
    let again = space(fifteen, Base::Virt, lab, &layer(16));
    assert_eq!(again.name(), "linear space (layer 16)");
}

// ---- Lifetimes and threads ---------------------------------------------

/// A space keeps its bases alive: dropping the dump handle and every
/// space below first is allowed, and reads go on.
#[test]
fn space_outlives_its_base() {
    let s = shared();
    let lab = &s.lab;
    let (_, d, path) = &s.dumps[1];
    let st = stack(Layer::Guest("x86-64"), &Gpa::Aliases.stack());
    let guest = {
        let h = open(s, path);
        let g = space(&h.aliases, Base::Virt, lab, &st[0]);
        drop(h);
        g
    };
    check_space(&guest, lab, &st, d, 500, "after the base is gone");
    // And a space over a space over a dropped Kvm, opened after the drop.
    let kvm = open_dump(s, path);
    let ept = space(&kvm, Base::Phys, lab, &Layer::Ept5);
    drop(kvm);
    let st = stack(Layer::Guest("x86-64 LA57"), &Gpa::Ept5.stack());
    let g = space(&ept, Base::Virt, lab, &st[0]);
    drop(ept);
    check_space(&g, lab, &st, d, 300, "opened over an orphan");
}

/// Threads reading one stack at once see what the model says.
#[test]
fn threads_share_a_stack() {
    let s = shared();
    let lab = &s.lab;
    let (_, d, path) = &s.dumps[1];
    let h = open(s, path);
    let st = stack(Layer::Guest("aarch64 16K upper"), &Gpa::Slots.stack());
    let g = space(&h.slots, Base::Virt, lab, &st[0]);
    let st2 = stack(Layer::Guest("x86-64"), &Gpa::Ept4.stack());
    let g2 = space(&h.ept4, Base::Virt, lab, &st2[0]);
    std::thread::scope(|scope| {
        for t in 0..4u64 {
            let (g, g2, st, st2) = (&g, &g2, &st, &st2);
            scope.spawn(move || {
                let mut rng = fixture::Rng(0x7000 + t);
                let r1 = lab.regions(&st[0]);
                let r2 = lab.regions(&st2[0]);
                for _ in 0..600 {
                    let (which, regions) = if rng.below(2) == 0 {
                        (0, &r1)
                    } else {
                        (1, &r2)
                    };
                    let (start, size) = regions[rng.below(regions.len() as u64) as usize];
                    let va = start + rng.below(size);
                    let len = 1 + rng.below(2 * PAGE);
                    if which == 0 {
                        check_read(g, lab, st, d, va, len);
                    } else {
                        check_read(g2, lab, st2, d, va, len);
                    }
                }
            });
        }
    });
}

// ---- Descriptors refused ------------------------------------------------

fn r(addr: u64, len: u64, target: u64) -> kvm::Range {
    kvm::Range { addr, len, target }
}

/// Asserts `Space::new` refuses, with a text containing each of `needles`.
fn refused<B: AddressSpace + ?Sized>(base: &B, on: Base, p: Paging, needles: &[&str], why: &str) {
    match Space::new(base, on, p) {
        Ok(sp) => panic!("{why}: accepted as {}", sp.name()),
        Err(e) => {
            let text = e.to_string();
            for n in needles {
                assert!(text.contains(n), "{why}: {text:?} should contain {n:?}");
            }
        }
    }
}

#[test]
fn bad_descriptors_are_refused() {
    let s = shared();
    let lab = &s.lab;
    let (_, _, path) = &s.dumps[1];
    let h = open(s, path);
    let lin = Paging::Linear;
    refused(
        &h.vmm,
        Base::Virt,
        lin(vec![
            r(0x1000, 0x3000, 0),
            r(0x10_0000, PAGE, 0),
            r(0x3000, 0x2000, 0),
        ]),
        &["0x1000", "0x3000"],
        "overlapping ranges",
    );
    refused(
        &h.vmm,
        Base::Virt,
        lin(vec![r(0x5000, 0x1000, 0), r(0x5000, 0x1000, 0x9000)]),
        &["0x5000"],
        "the same range twice",
    );
    refused(
        &h.vmm,
        Base::Virt,
        lin(vec![r(0xffff_ffff_ffff_f000, 0x2000, 0)]),
        &["0xfffffffffffff000"],
        "a range wrapping past 2^64",
    );
    refused(
        &h.vmm,
        Base::Virt,
        lin(vec![r(0x1000, 0x2000, 0xffff_ffff_ffff_f000)]),
        &["0xfffffffffffff000"],
        "a target wrapping past 2^64",
    );
    refused(
        &h.vmm,
        Base::Virt,
        lin(vec![r(0x1000, PAGE, 0), r(0x8000, 0, 0x1000)]),
        &["0x8000"],
        "an empty range",
    );
    // Overlapping targets are aliases, not errors; a range ending at 2^64
    // does not wrap.
    Space::new(
        &h.vmm,
        Base::Virt,
        lin(vec![
            r(0, PAGE, 0x1000),
            r(PAGE, PAGE, 0x1000),
            r(u64::MAX - 0xfff, PAGE, 0),
        ]),
    )
    .unwrap();
    // Roots the base cannot read: past host RAM, in a slot the VMM never
    // touched, in no slot at all, and left out of the minidump.
    let outside = 0x7_0000_0000u64;
    refused(
        &h.kvm,
        Base::Phys,
        Paging::X86_64 { cr3: outside },
        &["0x700000000"],
        "a CR3 past RAM",
    );
    refused(
        &h.kvm,
        Base::Phys,
        Paging::Ept {
            eptp: outside | 6 | 3 << 3,
        },
        &["0x700000000"],
        "an EPTP past RAM",
    );
    refused(
        &h.slots,
        Base::Virt,
        Paging::X86_64 { cr3: gpa::GAP },
        &["0xb0000"],
        "a guest CR3 in no slot",
    );
    refused(
        &h.slots,
        Base::Virt,
        Paging::RiscvSv39 {
            satp_root: gpa::VMM_HOLE,
        },
        &["0x9e000"],
        "a root the VMM never touched",
    );
    refused(
        &h.ept4,
        Base::Virt,
        Paging::Aarch64 {
            ttbr: gpa::EPT_HOLE,
            tcr: Lab::tcr(16, 12, 25, 12),
        },
        &["0x5000"],
        "a TTBR in an EPT hole",
    );
    refused(
        &h.kvm,
        Base::Phys,
        Paging::X86_64 {
            cr3: lab.gpa_host(gpa::NOT_DUMPED).unwrap(),
        },
        &[&format!("{:#x}", lab.gpa_host(gpa::NOT_DUMPED).unwrap())],
        "a CR3 left out of the minidump",
    );
}

// ---- Loops ----------------------------------------------------------------

/// A PML4 that names itself: in three entries the walk is finite and the
/// model says what it is; in all 512 it cannot complete (512^4 leaves), so
/// it must stop with an error, and soon; reads stay bounded either way.
#[test]
fn table_loops_end() {
    let s = shared();
    let lab = &s.lab;
    let (dname, d, path) = &s.dumps[0];
    let h = open(s, path);
    let st = stack(Layer::Guest("loop"), &Gpa::Slots.stack());
    let sp = space(&h.slots, Base::Virt, lab, &st[0]);
    check_walk(&sp, lab, &st, d, &format!("loop, {dname}"));
    assert_eq!(lab.expect_walk(&st, d).unwrap().len(), 81);
    for va in [0, 0x1234, 0xffff_ff80_0000_0000, 0x0000_0080_4020_1008] {
        check_read(&sp, lab, &st, d, va, 16);
    }
    let root = lab.guest("endless loop").tables.root;
    let endless = space(&h.slots, Base::Virt, lab, &Layer::Guest("endless loop"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut n = 0u64;
        let r = endless.walk_pages(&mut |_| {
            n += 1;
            true
        });
        // Every address maps to the PML4 page: reads end too.
        let mut buf = [0u8; 16];
        let read = endless.read(0xffff_8000_1234_5678, &mut buf).map(|_| buf);
        let _ = tx.send((
            r.map_err(|e| e.to_string()),
            n,
            read.map_err(|e| e.to_string()),
        ));
    });
    let (r, n, read) = rx
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("the walk of an endless loop did not end within 2 minutes");
    assert!(
        r.is_err(),
        "endless loop: the walk says {r:?} after {n} pages"
    );
    let want = lab.host.ram.read(lab.gpa_host(root).unwrap() + 0x678, 16);
    match read {
        Ok(b) => assert_eq!(&b[..], &want[..], "endless loop: read"),
        Err(e) => panic!("endless loop: read failed: {e}"),
    }
}

// ---- Linear spaces over a dump handle ----------------------------------

/// Ranges that start and end mid-page, over the host's physical memory and
/// over its kernel's virtual memory: reads across ranges; a walk reports
/// each range once, by address, whole, with the file offset of its first
/// byte when the dump holds it (whatever the rest of the range holds).
#[test]
fn linear_pieces_over_a_dump() {
    use fixture::amd64::{DMAP_MIN, DMAP_SIZE, MMIO};
    let s = shared();
    let lab = &s.lab;
    let rs = vec![
        guest::Range {
            addr: 0x10_1800,
            len: 0x2000,
            target: 0x80_0234,
        },
        guest::Range {
            addr: 0x10_0000,
            len: 0x1800,
            target: 0x1_0000_0000,
        },
        guest::Range {
            addr: 0x20_0000,
            len: 0x3000,
            target: MMIO,
        },
        guest::Range {
            addr: 0x30_0ff8,
            len: 8,
            target: lab.gpa_host(gpa::NOT_DUMPED).unwrap() + 8,
        },
    ];
    let edges = vec![
        // From the end of RAM past it, and from the hole below 1 MiB into
        // RAM.
        guest::Range {
            addr: 0x40_0000,
            len: 0x2000,
            target: 0x1_0080_0000 - 0x800,
        },
        guest::Range {
            addr: 0x50_0000,
            len: 0x2000,
            target: 0xf_f800,
        },
        // From a page the minidump lacks into one it holds.
        guest::Range {
            addr: 0x60_0000,
            len: 0x1010,
            target: lab.gpa_host(gpa::NOT_DUMPED).unwrap() + 0xff8,
        },
    ];
    for (dname, d, path) in &s.dumps {
        let h = open(s, path);
        let st = [Layer::Linear(rs.clone())];
        let sp = space(&h.kvm, Base::Phys, lab, &st[0]);
        assert_eq!(sp.name(), "linear space (layer 1)");
        check_space(&sp, lab, &st, d, 500, dname);
        for (va, len) in [(0x10_17f8, 16), (0x10_37f8, 16), (0x30_0ff0, 16)] {
            check_read(&sp, lab, &st, d, va, len);
        }
        // Ranges whose first byte the dump holds or not, unlike the rest
        // of them: the model's walk is the ranges, by address, whole.
        let st = [Layer::Linear(edges.clone())];
        let sp = space(&h.kvm, Base::Phys, lab, &st[0]);
        for &(va, len) in &lab.probes(&st[0]) {
            check_read(&sp, lab, &st, d, va, len);
        }
        check_walk(&sp, lab, &st, d, dname);
        let want = model_walk(lab, &st, d);
        let mut sorted = edges.clone();
        sorted.sort_by_key(|r| r.addr);
        let got: Vec<_> = want
            .iter()
            .map(|p| (p.kmap_vaddr, p.len, p.paddr))
            .collect();
        let ranges: Vec<_> = sorted.iter().map(|r| (r.addr, r.len, r.target)).collect();
        assert_eq!(got, ranges);
        let at = |a: u64| want.iter().find(|p| p.kmap_vaddr == a).unwrap().offset;
        assert!(
            at(0x40_0000).is_some() && at(0x50_0000).is_none(),
            "{dname}"
        );
        assert_eq!(at(0x60_0000).is_none(), d.dumped.is_some(), "{dname}");
        // Over the kernel's virtual space: the direct map, shifted; the
        // model of the host kernel's direct map is a linear map of RAM.
        let virt = Space::new(
            &h.kvm,
            Base::Virt,
            Paging::Linear(vec![kvm::Range {
                addr: 0x1000,
                len: 0x4000,
                target: DMAP_MIN + 0x80_0800,
            }]),
        )
        .unwrap();
        let dmap = [Layer::Linear(vec![guest::Range {
            addr: DMAP_MIN,
            len: DMAP_SIZE,
            target: 0,
        }])];
        let want = lab.expect_read(&dmap, d, DMAP_MIN + 0x80_0800, 0x4000);
        let mut buf = vec![0u8; 0x4000];
        match (&want, virt.read(0x1000, &mut buf)) {
            (Ok(w), Ok(_)) => assert!(buf == *w, "{dname}: over the kernel's map"),
            (Err(_), Err(e)) => assert!(e.to_string().starts_with("invalid address"), "{e}"),
            (w, g) => panic!("{dname}: over the kernel's map: {} vs {g:?}", summary(w)),
        }
        assert_eq!(virt.vtop(0x1010).unwrap(), DMAP_MIN + 0x80_0810);
        // Its physical space is the kernel's virtual one.
        let mut p = vec![0u8; 0x4000];
        match (&want, virt.read_phys(DMAP_MIN + 0x80_0800, &mut p)) {
            (Ok(w), Ok(_)) => assert!(p == *w, "{dname}: read_phys over Virt"),
            (Err(_), Err(_)) => {}
            (w, g) => panic!("{dname}: read_phys over Virt: {} vs {g:?}", summary(w)),
        }
    }
}

/// A dump handle is an address space too: its physical space is the
/// dump's physical memory.
#[test]
fn a_dump_handle_is_an_address_space() {
    use fixture::amd64::{va, DMAP_MIN};
    let s = shared();
    let lab = &s.lab;
    let (_, d, path) = &s.dumps[1];
    let kvm = open_dump(s, path);
    let sp: &dyn AddressSpace = &kvm;
    let mut a = [0u8; 64];
    let mut b = [0u8; 64];
    sp.read(va::VERSION, &mut a).unwrap();
    kvm.read(va::VERSION, &mut b).unwrap();
    assert_eq!(a, b);
    let pa = sp.vtop(DMAP_MIN + 0x80_1234).unwrap();
    assert_eq!(pa, 0x80_1234);
    check_read_phys(sp, lab, &[Layer::Identity], d, 0x80_1000, 0x2000);
    let nd = lab.gpa_host(gpa::NOT_DUMPED).unwrap();
    let e = sp.read_phys(nd, &mut [0; 8]).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("invalid physical address ({nd:#x})")),
        "{e}"
    );
    // Layers count from a dump handle: 1 over it, 2 over that.
    let one = space(&kvm, Base::Phys, lab, &Layer::Vmm);
    let two = space(&one, Base::Virt, lab, &Layer::Slots);
    let three = space(&two, Base::Virt, lab, &Layer::Guest("riscv Sv48"));
    let four = space(&three, Base::Phys, lab, &Layer::Identity);
    assert_eq!(one.name(), "x86-64 space (layer 1)");
    assert_eq!(two.name(), "linear space (layer 2)");
    assert_eq!(three.name(), "riscv Sv48 space (layer 3)");
    assert_eq!(four.name(), "identity space (layer 4)");
    // Over Base::Phys of the guest: guest-physical addresses read as is.
    let mut x = [0u8; 32];
    four.read(gpa::MAIN.0 + 0x10, &mut x).unwrap();
    let want = lab
        .expect_read(&[Layer::Slots, Layer::Vmm], d, gpa::MAIN.0 + 0x10, 32)
        .unwrap();
    assert_eq!(&x[..], &want[..]);
}

/// Hostile descriptions: random roots (table pages of other formats, data
/// pages, addresses outside RAM) with random control registers, TCRs,
/// EPTPs and ranges, over every base. Each opens or is refused; what
/// opens reads, translates and walks (a bounded number of pages) without
/// a panic or a hang. `KVM_SPACE_ROUNDS` runs more rounds.
#[test]
fn random_descriptions_never_panic() {
    let s = shared();
    let (_, _, path) = &s.dumps[0];
    let h = open(s, path);
    let rounds: u64 = std::env::var("KVM_SPACE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600);
    let mut rng = fixture::Rng(0x5eed_1234_abcd_0001);
    // Roots worth trying: every table root the lab has, nearby pages,
    // and random addresses.
    let mut roots: Vec<u64> = s.lab.guests.iter().map(|g| g.root_reg).collect();
    roots.extend([
        s.lab.vmm_cr3,
        s.lab.ept4.unwrap().root,
        s.lab.ept5.unwrap().root,
    ]);
    let (mut opened, mut read) = (0, 0);
    for _ in 0..rounds {
        let pick = |rng: &mut fixture::Rng| -> u64 {
            match rng.below(4) {
                0 => roots[rng.below(roots.len() as u64) as usize],
                1 => roots[rng.below(roots.len() as u64) as usize] ^ (rng.below(64) << 12),
                2 => rng.below(64 * MIB) & !0xfff,
                _ => rng.next(),
            }
        };
        let root = pick(&mut rng);
        let reg = rng.next();
        let paging = match rng.below(11) {
            0 => Paging::X86_64 { cr3: root },
            1 => Paging::X86_64La57 { cr3: root },
            2 => Paging::I386 { cr3: root },
            3 => Paging::I386Pae { cr3: root },
            4 => Paging::X86Auto {
                cr3: root,
                cr0: reg & 0x8000_0001,
                cr4: rng.next() & 0x1030,
                efer: rng.next() & (EFER_LME | EFER_LMA),
            },
            5 => Paging::Ept {
                eptp: (root & !0x3f) | (rng.below(8) << 3) | rng.below(8),
            },
            6 => Paging::Aarch64 {
                ttbr: root,
                tcr: reg,
            },
            7 => Paging::RiscvSv39 { satp_root: root },
            8 => Paging::RiscvSv48 { satp_root: root },
            9 => Paging::RiscvSv57 { satp_root: root },
            _ => Paging::Linear(
                (0..1 + rng.below(4))
                    .map(|_| kvm::Range {
                        addr: pick(&mut rng),
                        len: 1 + rng.below(16 * MIB),
                        target: pick(&mut rng),
                    })
                    .collect(),
            ),
        };
        let base: &dyn AddressSpace = match rng.below(4) {
            0 => &h.kvm,
            1 => &h.vmm,
            2 => &h.slots,
            _ => &h.ept4,
        };
        let on = if rng.below(2) == 0 {
            Base::Phys
        } else {
            Base::Virt
        };
        let Ok(sp) = Space::new(base, on, paging) else {
            continue;
        };
        opened += 1;
        let mut buf = [0u8; 64];
        for _ in 0..32 {
            let va = match rng.below(3) {
                0 => rng.next(),
                1 => rng.below(1 << 32),
                _ => rng.next() | 0xffff_8000_0000_0000,
            };
            let n = rng.below(65) as usize;
            read += usize::from(sp.read(va, &mut buf[..n]).is_ok());
            let _ = sp.vtop(va);
            let _ = sp.read_phys(va, &mut buf[..n]);
        }
        let mut pages = 0;
        let _ = sp.walk_pages(&mut |_| {
            pages += 1;
            pages < 2000
        });
    }
    assert!(
        opened > rounds / 4,
        "{opened} of {rounds} descriptions opened"
    );
    assert!(read > 0, "no random read succeeded");
}

/// A lab of its own, written out and opened.
fn open_lab(lab: &Lab, name: &str, minidump: bool) -> (Kvm, Dump) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("space-lab-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    let kernel = dir.join("kernel");
    std::fs::write(&kernel, lab.host.kernel()).unwrap();
    let mut d = if minidump {
        lab.host.minidump(3)
    } else {
        lab.host.full_dump(false)
    };
    let core = dir.join("core");
    std::fs::write(&core, &d.bytes).unwrap();
    d.bytes = Vec::new();
    let kvm = Kvm::open(&kernel, &core).unwrap_or_else(|e| panic!("open {name}: {e}"));
    (kvm, d)
}

/// riscv pointers to the next table (no R, W or X) fault with reserved
/// bits 60:54 set (privileged spec 12.3.2 step 2: "any bits or encodings
/// that are reserved for future standard use") and with U, A, D (reserved
/// in non-leaf PTEs, 12.3.1), N (Svnapot) or PBMT (Svpbmt) set; QEMU's
/// get_physical_address (target/riscv/cpu_helper.c) checks PTE_RESERVED
/// on every PTE and `PTE_D | PTE_A | PTE_U | PTE_ATTR` on inner ones.
/// The library checks leaves only: ignored until it checks pointers too.
#[test]
fn riscv_pointer_entries_follow_the_spec() {
    use guest::{RV_N, RV_NAPOT};
    for (what, bits) in [
        ("reserved bit 54", 1u64 << 54),
        ("N", RV_N),
        ("PBMT", 1 << 61),
        ("U", 1 << 4),
        ("A", 1 << 6),
        ("D", 1 << 7),
    ] {
        let mut lab = Lab::builder().ept(4).guest(guest::GuestKind::Sv39).build();
        let t = lab.guest("riscv Sv39").tables;
        // The pointer to the page table of the Svnapot run.
        lab.edit(t, RV_NAPOT, 1, |e| e | bits);
        let (kvm, d) = open_lab(&lab, "riscv-pointers", false);
        let ept = space(&kvm, Base::Phys, &lab, &Layer::Ept4);
        let st = stack(Layer::Guest("riscv Sv39"), &[Layer::Ept4]);
        let sp = space(&ept, Base::Virt, &lab, &st[0]);
        assert!(lab.expect_read(&st, &d, RV_NAPOT, 8).is_err(), "{what}");
        check_read(&sp, &lab, &st, &d, RV_NAPOT, 8);
        check_walk(&sp, &lab, &st, &d, what);
    }
}

/// EPT paging-structure entries of any level with bits 2:0 of 010b or
/// 110b are misconfigurations (SDM 29.3.3.1 speaks of "an EPT
/// paging-structure entry", not of leaves; Linux KVM's
/// __reset_rsvds_bits_mask_ept puts them in bad_mt_xwr, checked at every
/// level of its guest EPT walk). The library checks leaves only: ignored
/// until it checks every level.
#[test]
fn ept_write_without_read_pointers_are_misconfigurations() {
    for (what, xwr) in [("010b", 0b010u64), ("110b", 0b110)] {
        let mut lab = Lab::builder().ept(4).build();
        let t = lab.ept4.unwrap();
        // The PDE naming the page table of guest-physical [0, 2 MiB).
        lab.edit(t, 0x1000, 2, |e| (e & !7) | xwr);
        let (kvm, d) = open_lab(&lab, "ept-pointers", false);
        let ept = space(&kvm, Base::Phys, &lab, &Layer::Ept4);
        let st = [Layer::Ept4];
        assert!(lab.expect_read(&st, &d, 0x1000, 8).is_err(), "{what}");
        check_read(&ept, &lab, &st, &d, 0x1000, 8);
        check_walk(&ept, &lab, &st, &d, what);
    }
}
