//! The bytes of a kdump file: the file itself, or makedumpfile's flattened
//! stream reassembled (`makedumpfile.c`: `write_buffer`,
//! `rearrange_dumpdata`).

use super::*;

/// One record of a flattened stream, after merging: dump bytes
/// `[virt, virt + len)` are file bytes from `file`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Rec {
    pub(super) virt: u64,
    pub(super) len: u64,
    pub(super) file: u64,
}

/// A flattened stream's index: its records sorted by dump offset, disjoint
/// (a later record overrides an earlier one for the bytes they share, as
/// `makedumpfile -R` writing them in order leaves them). Dump bytes no
/// record covers read as zeros, as the holes of a rearranged file do.
#[derive(Debug, Default)]
pub(super) struct Flat {
    pub(super) recs: Vec<Rec>,
    /// End of the furthest record: the reassembled dump's length.
    pub(super) vlen: u64,
    /// Bytes the records hold, after merging.
    pub(super) held: u64,
}

/// Where the dump's bytes are.
pub(super) enum Source {
    Plain,
    Flat(Flat),
}

impl Flat {
    /// Indexes the records of the flattened stream in `image` (which starts
    /// with a makedumpfile header), checking each against the file.
    pub(super) fn parse(image: &Image) -> Result<Flat> {
        let head: [u8; 32] = image.header(0).ok_or_else(|| {
            Error::BadCore(format!(
                "makedumpfile flattened header: the {}-byte file is too short",
                image.len()
            ))
        })?;
        // struct makedumpfile_header: signature[16], int64_t type, version,
        // big-endian ("change the values to big endian", makedumpfile.h).
        let typ = i64::from_be_bytes(head[16..24].try_into().unwrap());
        if typ != TYPE_FLAT_HEADER {
            return Err(Error::BadCore(format!(
                "makedumpfile flattened header: type {typ} (expected {TYPE_FLAT_HEADER}, \
                 TYPE_FLAT_HEADER)"
            )));
        }
        let len = image.len();
        let mut raw: Vec<(u64, u64, u64)> = Vec::new();
        let mut pos = MDF_HEADER_SIZE;
        loop {
            // struct makedumpfile_data_header: int64_t offset, buf_size, big-endian.
            let Some(h) = image.array::<16>(pos) else {
                return Err(Error::BadCore(format!(
                    "flattened stream cut short: no record header at file offset {pos:#x} \
                     (the file ends at {len:#x}, before the end mark)"
                )));
            };
            let off = i64::from_be_bytes(h[..8].try_into().unwrap());
            let size = i64::from_be_bytes(h[8..].try_into().unwrap());
            if off == END_FLAG_FLAT_HEADER && size == END_FLAG_FLAT_HEADER {
                break;
            }
            let data = pos + 16;
            let (Ok(o), Ok(s)) = (u64::try_from(off), u64::try_from(size)) else {
                return Err(Error::BadCore(format!(
                    "flattened stream: the record at file offset {pos:#x} has offset {off} and \
                     size {size} (expected both >= 0, or -1 and -1 to end the stream)"
                )));
            };
            if o.checked_add(s).is_none_or(|e| e > i64::MAX as u64) {
                return Err(Error::BadCore(format!(
                    "flattened stream: the record at file offset {pos:#x} ({s} bytes at dump \
                     offset {o:#x}) overflows"
                )));
            }
            if data.checked_add(s).is_none_or(|e| e > len) {
                return Err(Error::BadCore(format!(
                    "flattened stream cut short: the record at file offset {pos:#x} holds {s} \
                     bytes for dump offset {o:#x}, but the file ends at {len:#x}"
                )));
            }
            if s > 0 {
                raw.try_reserve(1)
                    .map_err(|_| Error::OutOfMemory("the flattened stream's index".into()))?;
                raw.push((o, s, data));
            }
            pos = data + s;
        }
        Flat::merge(raw)
    }

    /// Sorts records `(dump offset, size, file offset)`, given in stream
    /// order, into disjoint runs; where they overlap, the later one wins.
    pub(super) fn merge(raw: Vec<(u64, u64, u64)>) -> Result<Flat> {
        let oom = || Error::OutOfMemory("the flattened stream's index".into());
        let mut sorted: Vec<(u64, u64, u64, usize)> = Vec::new();
        sorted.try_reserve_exact(raw.len()).map_err(|_| oom())?;
        sorted.extend(raw.iter().enumerate().map(|(i, &(o, s, f))| (o, s, f, i)));
        sorted.sort_unstable_by_key(|r| (r.0, r.3));
        let overlaps = sorted.windows(2).any(|w| w[0].0 + w[0].1 > w[1].0);
        let mut recs: Vec<Rec> = Vec::new();
        if !overlaps {
            recs.try_reserve_exact(sorted.len()).map_err(|_| oom())?;
            recs.extend(
                sorted
                    .iter()
                    .map(|&(virt, len, file, _)| Rec { virt, len, file }),
            );
        } else {
            // Insert in stream order, cutting what each record covers out
            // of those before it: O(n log n), and as many runs as records
            // plus the pieces cut in two.
            drop(sorted);
            let mut map: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
            for &(s, len, f) in &raw {
                let e = s + len;
                if let Some((&a, &(b, fo))) = map.range(..s).next_back() {
                    if b > s {
                        map.insert(a, (s, fo));
                        if b > e {
                            map.insert(e, (b, fo + (e - a)));
                        }
                    }
                }
                while let Some((&a, &(b, fo))) = map.range(s..e).next() {
                    map.remove(&a);
                    if b > e {
                        map.insert(e, (b, fo + (e - a)));
                    }
                }
                map.insert(s, (e, f));
            }
            recs.try_reserve_exact(map.len()).map_err(|_| oom())?;
            recs.extend(map.into_iter().map(|(virt, (end, file))| Rec {
                virt,
                len: end - virt,
                file,
            }));
        }
        let vlen = recs.last().map_or(0, |r| r.virt + r.len);
        let held = recs.iter().map(|r| r.len).sum();
        Ok(Flat { recs, vlen, held })
    }

    /// Index of the first record that ends after `off`.
    #[inline]
    pub(super) fn first_after(&self, off: u64) -> usize {
        self.recs.partition_point(|r| r.virt + r.len <= off)
    }

    /// Copies dump bytes `[off, off + buf.len())` into `buf` (holes read as
    /// zeros) with `read(file_offset, piece)`; false past the end of the
    /// dump or when `read` fails.
    pub(super) fn read(
        &self,
        off: u64,
        buf: &mut [u8],
        mut read: impl FnMut(u64, &mut [u8]) -> bool,
    ) -> bool {
        let Some(end) = off
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= self.vlen)
        else {
            return false;
        };
        let mut i = self.first_after(off);
        let mut at = off;
        while at < end {
            let lo = (at - off) as usize;
            match self.recs.get(i) {
                Some(r) if r.virt <= at => {
                    let stop = end.min(r.virt + r.len);
                    let hi = (stop - off) as usize;
                    if !read(r.file + (at - r.virt), &mut buf[lo..hi]) {
                        return false;
                    }
                    at = stop;
                    i += 1;
                }
                next => {
                    let stop = next.map_or(end, |r| r.virt.min(end));
                    buf[lo..(stop - off) as usize].fill(0);
                    at = stop;
                }
            }
        }
        true
    }

    /// The single record holding all of `[off, off + len)`, as a file offset.
    #[inline]
    pub(super) fn contiguous(&self, off: u64, len: u64) -> Option<u64> {
        let r = self.recs.get(self.first_after(off))?;
        (r.virt <= off && off.checked_add(len)? <= r.virt + r.len).then(|| r.file + (off - r.virt))
    }
}

impl Source {
    /// Length of the dump's bytes.
    pub(super) fn len(&self, image: &Image) -> u64 {
        match self {
            Source::Plain => image.len(),
            Source::Flat(f) => f.vlen,
        }
    }

    /// Bytes the file really holds.
    pub(super) fn held(&self, image: &Image) -> u64 {
        match self {
            Source::Plain => image.len(),
            Source::Flat(f) => f.held,
        }
    }

    /// Fills `buf` from dump offset `off` with `pread` (for what is read
    /// once); false if the dump does not hold it all.
    pub(super) fn read_exact(&self, image: &Image, off: u64, buf: &mut [u8]) -> bool {
        match self {
            Source::Plain => image.read_exact_at(off, buf),
            Source::Flat(f) => f.read(off, buf, |o, b| image.read_exact_at(o, b)),
        }
    }

    /// The bytes at dump offset `off`: borrowed from the mapped file when
    /// they are contiguous there, else copied into `buf`.
    #[inline]
    pub(super) fn view<'a>(
        &'a self,
        image: &'a Image,
        off: u64,
        buf: &'a mut [u8],
    ) -> Option<&'a [u8]> {
        match self {
            Source::Plain => image.view(off, buf),
            Source::Flat(f) => match f.contiguous(off, buf.len() as u64) {
                Some(fo) => image.view(fo, buf),
                None => {
                    let ok = f.read(off, buf, |o, b| {
                        image.read_at(o, b).is_ok_and(|n| n == b.len())
                    });
                    ok.then_some(&*buf)
                }
            },
        }
    }

    /// `N` bytes at dump offset `off`.
    #[inline]
    pub(super) fn array<const N: usize>(&self, image: &Image, off: u64) -> Option<[u8; N]> {
        match self {
            Source::Plain => image.array(off),
            Source::Flat(f) => match f.contiguous(off, N as u64) {
                Some(fo) => image.array(fo),
                None => {
                    let mut b = [0u8; N];
                    f.read(off, &mut b, |o, p| image.read_exact_at(o, p))
                        .then_some(b)
                }
            },
        }
    }

    /// The data path: copies the bytes at dump offset `off` into `buf`;
    /// how many there were (fewer only at the end of a plain file).
    #[inline]
    pub(super) fn read_at(&self, image: &Image, off: u64, buf: &mut [u8]) -> Result<usize> {
        match self {
            Source::Plain => image.read_at(off, buf),
            Source::Flat(f) => {
                let mut err = None;
                let ok = f.read(off, buf, |o, b| match image.read_at(o, b) {
                    Ok(n) => n == b.len(),
                    Err(e) => {
                        err = Some(e);
                        false
                    }
                });
                match err {
                    Some(e) => Err(e),
                    None if ok => Ok(buf.len()),
                    None => Ok(0),
                }
            }
        }
    }

    /// Calls `f` on `[off, off + len)` in pieces of `piece` bytes, in order,
    /// read with `pread`; false if the dump does not hold it all.
    pub(super) fn for_each_piece(
        &self,
        image: &Image,
        off: u64,
        len: u64,
        piece: usize,
        f: impl FnMut(&[u8]),
    ) -> bool {
        match self {
            Source::Plain => image.for_each_piece(off, len, piece, f),
            Source::Flat(flat) => {
                let read =
                    |at: u64, b: &mut [u8]| flat.read(at, b, |o, b| image.read_exact_at(o, b));
                crate::image::pieces(off, len, flat.vlen, piece, read, f)
            }
        }
    }
}
