//! Linux's kernel log: the lockless printk ring buffer (5.10+), located
//! and laid out by VMCOREINFO (`log_buf_vmcoreinfo_setup`,
//! kernel/printk/printk.c), read as kernel/printk/printk_ringbuffer.c
//! reads it, and printed as `dmesg` prints it: `[seconds.micros] text`.
//!
//! `prb` points to a `struct printk_ringbuffer`: a descriptor ring
//! (`count_bits`, `descs`, `infos`, `head_id`, `tail_id`) and a text data
//! ring (`size_bits`, `data`). Records run from the tail descriptor to the
//! head; a descriptor's `state_var` holds its ID and, in its top two bits,
//! its state (printk_ringbuffer.h: `DESC_STATE`, `DESC_ID`); only committed
//! and finalized records are read. A record's text is the data block its
//! `text_blk_lpos` delimits, after the block's ID word (`get_data`).
//!
//! Kernels before 5.10 keep `log_buf`, an array of variable-length
//! records (`struct printk_log`, called `struct log` before 3.11), read
//! from `log_first_idx` to `log_next_idx` (see [`legacy`]).

use crate::error::{Error, Result};
use crate::kvm::Words;
use crate::vmcoreinfo::{number, VmcoreInfo};

/// `desc_committed` and `desc_finalized` (enum desc_state).
const COMMITTED: u64 = 1;
const FINALIZED: u64 = 2;
/// Most descriptors read: the kernel's ring has `1 << count_bits` of them
/// (CONFIG_LOG_BUF_SHIFT 12-25, less PRB_AVGBITS 5, or log_buf_len=).
const MAX_COUNT_BITS: u64 = 26;
/// Largest text data ring read from (`1 << size_bits` bytes; the kernel
/// takes log_buf_len up to 2 GiB).
const MAX_SIZE_BITS: u64 = 31;

/// The offsets and sizes VMCOREINFO gives.
struct Layout<'a> {
    info: &'a VmcoreInfo,
}

impl Layout<'_> {
    fn get(&self, key: &str) -> Result<u64> {
        let v = self
            .info
            .get(key)
            .ok_or_else(|| Error::BadCore(format!("the kernel log: VMCOREINFO has no {key}")))?;
        number(v)
            .ok_or_else(|| Error::BadCore(format!("the kernel log: VMCOREINFO's {key} is {v:?}")))
    }
    fn offset(&self, field: &str) -> Result<u64> {
        self.get(&format!("OFFSET({field})"))
    }
    fn size(&self, ty: &str) -> Result<u64> {
        self.get(&format!("SIZE({ty})"))
    }
}

/// The kernel log as text, oldest record first, read through `w`;
/// `limit` bounds the text read: what the dump holds.
pub fn kernel_log(info: &VmcoreInfo, w: &Words<'_>, limit: u64) -> Result<Vec<u8>> {
    let l = Layout { info };
    let ptr = w.ptr_size;
    let Some(prb_var) = info.symbol("prb") else {
        return legacy(info, w, limit);
    };
    let prb = w.ptr(prb_var)?;
    let counter = l.offset("atomic_long_t.counter").unwrap_or(0);
    let desc_ring = prb.wrapping_add(l.offset("printk_ringbuffer.desc_ring")?);
    let data_ring = prb.wrapping_add(l.offset("printk_ringbuffer.text_data_ring")?);
    let count_bits = w.uint(
        desc_ring.wrapping_add(l.offset("prb_desc_ring.count_bits")?),
        4,
    )?;
    let size_bits = w.uint(
        data_ring.wrapping_add(l.offset("prb_data_ring.size_bits")?),
        4,
    )?;
    if count_bits > MAX_COUNT_BITS || !(3..=MAX_SIZE_BITS).contains(&size_bits) {
        return Err(Error::BadCore(format!(
            "the kernel log at {prb:#x}: a ring of 2^{count_bits} descriptors and 2^{size_bits} \
             bytes of text is no printk ring"
        )));
    }
    let descs = w.ptr(desc_ring.wrapping_add(l.offset("prb_desc_ring.descs")?))?;
    let infos = w.ptr(desc_ring.wrapping_add(l.offset("prb_desc_ring.infos")?))?;
    let head =
        w.ptr(desc_ring.wrapping_add(l.offset("prb_desc_ring.head_id")?.wrapping_add(counter)))?;
    let tail =
        w.ptr(desc_ring.wrapping_add(l.offset("prb_desc_ring.tail_id")?.wrapping_add(counter)))?;
    let data = w.ptr(data_ring.wrapping_add(l.offset("prb_data_ring.data")?))?;
    let (desc_size, info_size) = (l.size("prb_desc")?, l.size("printk_info")?);
    let state_var = l.offset("prb_desc.state_var")?.wrapping_add(counter);
    let lpos = l.offset("prb_desc.text_blk_lpos")?;
    let (begin_off, next_off) = (
        l.offset("prb_data_blk_lpos.begin")?,
        l.offset("prb_data_blk_lpos.next")?,
    );
    let ts_off = l.offset("printk_info.ts_nsec")?;
    let len_off = l.offset("printk_info.text_len")?;

    // DESC_SV_BITS is the bits of an unsigned long.
    let bits = 8 * ptr as u32;
    let id_mask = u64::MAX >> (64 - bits + 2);
    let count = 1u64 << count_bits;
    let size = 1u64 << size_bits;
    if size > limit {
        return Err(Error::BadCore(format!(
            "the kernel log at {prb:#x}: a text ring of {size} bytes, more than the dump holds"
        )));
    }
    // Positions (lpos) are unsigned longs: on a 32-bit kernel they wrap
    // at 2^32, and the first wrap of the ring crosses it (they start at
    // -size, BLK0_LPOS).
    let long = u64::MAX >> (64 - bits);
    // Every record's text lies in the ring: more in all is a ring whose
    // descriptors share blocks.
    let mut budget = size;
    let mut out = Vec::new();
    let ring = Ring {
        data,
        size,
        size_bits,
        long,
        w,
    };
    let mut id = tail & id_mask;
    // At most one pass over the ring, whatever the IDs say.
    for _ in 0..count {
        let index = id & (count - 1);
        let desc = descs.wrapping_add(index.wrapping_mul(desc_size));
        let sv = w.ptr(desc.wrapping_add(state_var))?;
        let state = (sv >> (bits - 2)) & 3;
        if sv & id_mask == id && (state == COMMITTED || state == FINALIZED) {
            let info = infos.wrapping_add(index.wrapping_mul(info_size));
            let ts = w.uint(info.wrapping_add(ts_off), 8)?;
            let text_len = w.uint(info.wrapping_add(len_off), 2)?;
            let begin = w.ptr(desc.wrapping_add(lpos).wrapping_add(begin_off))?;
            let next = w.ptr(desc.wrapping_add(lpos).wrapping_add(next_off))?;
            // FAILED_BLK_LPOS: the text was lost; the kernel's reader
            // skips the record (desc_read_finalized_seq).
            if !(begin == 1 && next == 1) {
                let text = record_text(begin, next, text_len, &ring, &mut budget)?;
                push_record(&mut out, ts, &text);
            }
        }
        if id == head & id_mask {
            break;
        }
        id = id.wrapping_add(1) & id_mask;
    }
    Ok(out)
}

/// The text data ring.
struct Ring<'a> {
    data: u64,
    size: u64,
    size_bits: u64,
    /// The bits of an unsigned long.
    long: u64,
    w: &'a Words<'a>,
}

/// A record's text from its data block, as get_data() finds the block:
/// data-less (both positions odd: EMPTY_LINE_LPOS or NO_LPOS, an empty
/// line), in place, or wrapped to the ring's start. A block wraps when its
/// last byte lies in the next wrap (is_blk_wrapped: Linux 6.18 leaves a
/// block that ends exactly at the end in place; before, such a block
/// always wrapped, so this rule reads both). The block holds its ID word,
/// then the text; a `text_len` past the block is cut to it (as crash and
/// makedumpfile do; the kernel's reader drops the record). `budget` is
/// the text the ring can still hold: descriptors that share blocks cannot
/// make more.
fn record_text(
    begin: u64,
    next: u64,
    text_len: u64,
    r: &Ring<'_>,
    budget: &mut u64,
) -> Result<Vec<u8>> {
    if begin & 1 == 1 && next & 1 == 1 {
        return Ok(Vec::new());
    }
    let wraps = |p: u64| (p & r.long) >> r.size_bits;
    let last = next.wrapping_sub(1);
    let block = if wraps(begin) == wraps(last) && begin < next {
        Some((begin & (r.size - 1), next - begin))
    } else if wraps(begin.wrapping_add(r.size)) == wraps(last) {
        Some((0, next & (r.size - 1)))
    } else {
        None
    };
    let word = r.w.ptr_size as u64;
    let Some((at, len)) = block.filter(|&(_, len)| len >= word && len <= r.size) else {
        return Ok(Vec::new());
    };
    let n = (len - word).min(text_len);
    if n > *budget {
        return Err(Error::BadCore(format!(
            "the kernel log: its records hold more text than its {}-byte ring",
            r.size
        )));
    }
    *budget -= n;
    let mut text = vec![0u8; n as usize];
    r.w.read(r.data.wrapping_add(at + word), &mut text)?;
    Ok(text)
}

/// The kernel log of Linux 3.5 to 5.9: `log_buf` (a pointer) of
/// `log_buf_len` bytes holds records from `log_first_idx` to
/// `log_next_idx`, each a `struct printk_log` header (`ts_nsec`, `len`:
/// the whole record, `text_len`), its text right after the header; a
/// record of length 0 marks the end of the buffer, and reading goes on at
/// its start (kernel/printk/printk.c: log_from_idx, log_next).
fn legacy(info: &VmcoreInfo, w: &Words<'_>, limit: u64) -> Result<Vec<u8>> {
    let l = Layout { info };
    let missing = || {
        Error::BadCore(
            "the kernel log: VMCOREINFO has neither SYMBOL(prb) (Linux 5.10+) nor \
             SYMBOL(log_buf)"
                .into(),
        )
    };
    let sym = |name: &str| info.symbol(name).ok_or_else(missing);
    let buf = w.ptr(sym("log_buf")?)?;
    let len = w.uint(sym("log_buf_len")?, 4)?;
    let first = w.uint(sym("log_first_idx")?, 4)?;
    let next = w.uint(sym("log_next_idx")?, 4)?;
    // `struct printk_log`, `struct log` before Linux 3.11.
    let ty = if info.get("SIZE(printk_log)").is_some() {
        "printk_log"
    } else {
        "log"
    };
    let hdr = l.size(ty)?;
    let ts_off = l.offset(&format!("{ty}.ts_nsec"))?;
    let len_off = l.offset(&format!("{ty}.len"))?;
    let text_off = l.offset(&format!("{ty}.text_len"))?;
    if len > limit || len > 1 << 31 || hdr == 0 || hdr > 256 || first >= len || next >= len {
        return Err(Error::BadCore(format!(
            "the kernel log at {buf:#x}: log_buf_len {len}, a {hdr}-byte record header and \
             indexes {first} to {next} are no kernel log"
        )));
    }
    let mut out = Vec::new();
    let mut idx = first;
    // Every record is at least a header long: no more than this many, and
    // at most one jump back to the start.
    let mut left = len / hdr + 2;
    while idx != next {
        if left == 0 {
            return Err(Error::BadCore(format!(
                "the kernel log at {buf:#x}: the records from index {first} never reach \
                 log_next_idx {next}"
            )));
        }
        left -= 1;
        let at = buf.wrapping_add(idx);
        let rec = if idx + hdr <= len {
            w.uint(at.wrapping_add(len_off), 2)?
        } else {
            0
        };
        if rec == 0 {
            // The end-of-buffer marker (or no room for a header): wrap.
            if idx == 0 {
                break;
            }
            idx = 0;
            continue;
        }
        if rec < hdr || idx + rec > len {
            return Err(Error::BadCore(format!(
                "the kernel log at {buf:#x}: the record at index {idx} claims {rec} bytes"
            )));
        }
        let ts = w.uint(at.wrapping_add(ts_off), 8)?;
        let text_len = w.uint(at.wrapping_add(text_off), 2)?.min(rec - hdr);
        let mut text = vec![0u8; text_len as usize];
        w.read(at.wrapping_add(hdr), &mut text)?;
        push_record(&mut out, ts, &text);
        idx += rec;
    }
    Ok(out)
}

/// Appends a record as `dmesg` prints it: each line of `text` after the
/// timestamp, `[seconds.micros] `.
fn push_record(out: &mut Vec<u8>, ts: u64, text: &[u8]) {
    let stamp = format!(
        "[{:5}.{:06}] ",
        ts / 1_000_000_000,
        ts % 1_000_000_000 / 1000
    );
    for line in text.split(|&b| b == b'\n') {
        out.extend_from_slice(stamp.as_bytes());
        out.extend_from_slice(line);
        out.push(b'\n');
    }
}
