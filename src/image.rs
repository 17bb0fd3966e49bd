//! A kernel or core file, read-only, with bounds-checked accessors.
//!
//! Every byte the library reads from a kernel or core file goes through
//! [`Image`], so no header field can make it read outside the file. A file
//! is normally mapped: a read is then a bounds check and a copy, with no
//! system call. It is read with `pread(2)` instead when the caller asks
//! for it ([`ReadMode::Pread`]: a core that another process may truncate
//! while it is open then gives short reads, not `SIGBUS`) or when the file
//! cannot be mapped (a sparse core larger than the address space allows).

use crate::cold::Cold;
use crate::error::{Error, Result};
use memmap2::Mmap;
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// How a file's bytes are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadMode {
    /// Map the file; fall back to `pread` if it cannot be mapped.
    #[default]
    Map,
    /// Never map the file: every read is a `pread(2)`, which reports the end
    /// of a file that shrank while open instead of faulting.
    Pread,
}

/// A file opened read-only.
pub struct Image {
    file: File,
    path: PathBuf,
    /// "kernel" or "core", for messages.
    what: &'static str,
    len: u64,
    /// The file's bytes in memory, when they are.
    bytes: Bytes,
}

/// Where a file's bytes are, besides the file.
enum Bytes {
    /// Read with `pread` only.
    Unmapped,
    /// A small file, read whole at open: a few hundred KiB cost less to
    /// read than a mapping costs to set up, fault in and tear down.
    Owned(Box<[u8]>),
    /// The mapping, and how its pages are read until it serves them.
    Mapped(Mmap, Cold),
}

/// Files up to this size are read whole at open rather than mapped.
const SMALL: u64 = 256 << 10;

impl Image {
    /// Opens `path` (`what` names it in messages: "kernel" or "core").
    ///
    /// The file is opened without blocking (a FIFO or a terminal would
    /// block a plain open) and refused unless it is a regular file.
    /// (`O_NONBLOCK` stays set: it does not change reads of regular files.)
    pub fn open(path: &Path, what: &'static str, mode: ReadMode) -> Result<Self> {
        let io = |source| Error::Io {
            what,
            path: path.to_owned(),
            source,
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path)
            .map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(Error::NotAFile {
                what,
                path: path.to_owned(),
                kind: file_kind(&meta.file_type()),
            });
        }
        let len = meta.len();
        let mut image = Image {
            file,
            path: path.to_owned(),
            what,
            len,
            bytes: Bytes::Unmapped,
        };
        if len == 0 {
            // A special file (procfs, sysfs) reports size 0 yet has contents.
            let mut b = [0u8; 1];
            return match image.file.read_at(&mut b, 0) {
                Ok(0) => Err(Error::EmptyFile {
                    what,
                    path: path.to_owned(),
                }),
                _ => Err(Error::NotAFile {
                    what,
                    path: path.to_owned(),
                    kind: "special file whose size is unknown (as in /proc or /sys)",
                }),
            };
        }
        if mode == ReadMode::Map {
            image.map();
        }
        Ok(image)
    }

    /// Brings the file into memory: read whole when small, else mapped
    /// (with pread left where it cannot be). An image opened with
    /// [`ReadMode::Pread`] can be mapped later: open reads a core's
    /// headers and tables once with pread, and maps it for the reads that
    /// follow, so that it takes no page faults for pages it reads once.
    pub fn map(&mut self) {
        let len = self.len;
        if len <= SMALL {
            let mut owned = vec![0u8; len as usize];
            if self.read_exact_at(0, &mut owned) {
                self.bytes = Bytes::Owned(owned.into_boxed_slice());
            }
        } else if let Some((map, cold)) =
            Cold::new(len).and_then(|c| Some((map(&self.file, len)?, c)))
        {
            self.bytes = Bytes::Mapped(map, cold);
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// File length in bytes, as it was at open.
    #[inline]
    pub fn len(&self) -> u64 {
        self.len
    }

    /// The whole file, when it is in memory (mapped, or read whole).
    #[inline]
    pub fn mapped(&self) -> Option<&[u8]> {
        match &self.bytes {
            Bytes::Unmapped => None,
            Bytes::Owned(b) => Some(b),
            Bytes::Mapped(m, _) => Some(m),
        }
    }

    /// The file as `Read + Seek`, for parsers that take a stream (object's
    /// `ReadCache`): each read is one `pread`, and seeking costs nothing.
    pub fn reader(&self) -> Reader<'_> {
        Reader {
            image: self,
            pos: 0,
        }
    }

    /// Copies the bytes at `off` into `buf`; returns how many there were
    /// (fewer than `buf.len()` only at the end of the file). The data path
    /// of reads.
    ///
    /// A mapped file's pages are read through the mapping once they have
    /// been read a few times, before that with `pread` or from a small
    /// cache: see [`crate::cold`].
    #[inline]
    pub fn read_at(&self, off: u64, buf: &mut [u8]) -> Result<usize> {
        let data = match &self.bytes {
            Bytes::Unmapped => return self.pread(off, buf),
            Bytes::Owned(b) => &b[..],
            Bytes::Mapped(m, _) => &m[..],
        };
        let start = usize::try_from(off).unwrap_or(usize::MAX).min(data.len());
        let n = buf.len().min(data.len() - start);
        match &self.bytes {
            Bytes::Mapped(_, cold) if n > 0 => {
                cold.read(data, start, &mut buf[..n], |o, b| self.pread(o, b))
            }
            _ => {
                buf[..n].copy_from_slice(&data[start..start + n]);
                Ok(n)
            }
        }
    }

    /// The first bytes of the file, up to `buf.len()`; how many there were.
    pub fn read_prefix(&self, buf: &mut [u8]) -> Result<usize> {
        self.pread(0, buf)
    }

    /// `pread` until `buf` is full or the file ends.
    #[cold]
    fn pread(&self, off: u64, buf: &mut [u8]) -> Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            // An offset past what off_t holds lies past the end of any
            // file: end of file, as in the mapped case, not EINVAL.
            let Some(at) = off
                .checked_add(done as u64)
                .filter(|&a| i64::try_from(a).is_ok())
            else {
                break;
            };
            match self.file.read_at(&mut buf[done..], at) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(Error::Io {
                        what: self.what,
                        path: self.path.clone(),
                        source,
                    })
                }
            }
        }
        Ok(done)
    }

    /// Fills `buf` from `off` with `pread`, mapped or not; false if the
    /// file does not hold all of it. For what open reads once (headers,
    /// the minidump bitmap): a page fault on a mapping costs more than a
    /// `pread`, and these pages are not read again.
    pub fn read_exact_at(&self, off: u64, buf: &mut [u8]) -> bool {
        matches!(self.pread(off, buf), Ok(n) if n == buf.len())
    }

    /// The `N` bytes at `off` (read once: see [`Image::read_exact_at`]).
    pub fn header<const N: usize>(&self, off: u64) -> Option<[u8; N]> {
        let mut b = [0u8; N];
        self.read_exact_at(off, &mut b).then_some(b)
    }

    /// The `N` bytes at `off`, if the file holds them: page-table entries,
    /// read through the mapping when there is one.
    #[inline(always)]
    pub fn array<const N: usize>(&self, off: u64) -> Option<[u8; N]> {
        if let Some(data) = self.mapped() {
            let o = usize::try_from(off).ok()?;
            return data.get(o..o.checked_add(N)?)?.try_into().ok();
        }
        self.header(off)
    }

    /// The `buf.len()` bytes at `off`: borrowed from memory when the file
    /// is there, else read into `buf` with one `pread`; `None` if the file
    /// does not hold them all. For runs of page-table entries.
    pub fn view<'a>(&'a self, off: u64, buf: &'a mut [u8]) -> Option<&'a [u8]> {
        match self.mapped() {
            Some(data) => {
                let o = usize::try_from(off).ok()?;
                data.get(o..o.checked_add(buf.len())?)
            }
            None => self.read_exact_at(off, buf).then_some(&*buf),
        }
    }

    /// Little-endian u32 at `off`.
    #[inline]
    pub fn le32(&self, off: u64) -> Option<u32> {
        self.array(off).map(u32::from_le_bytes)
    }

    /// Little-endian u64 at `off`.
    #[inline]
    pub fn le64(&self, off: u64) -> Option<u64> {
        self.array(off).map(u64::from_le_bytes)
    }

    /// Reads `len` bytes at `off` into a new buffer; `None` if the file
    /// does not hold them all or the memory cannot be had (the caller
    /// bounds `len` by what the data needs, never by a header alone).
    pub fn read_vec(&self, off: u64, len: u64) -> Option<Vec<u8>> {
        let n = usize::try_from(len).ok()?;
        if off.checked_add(len)? > self.len {
            return None;
        }
        let mut v = Vec::new();
        v.try_reserve_exact(n).ok()?;
        v.resize(n, 0);
        self.read_exact_at(off, &mut v).then_some(v)
    }

    /// Calls `f` on `[off, off + len)` in pieces of at most `piece` bytes,
    /// in order, without holding the whole range in memory; false if the
    /// file does not hold it all. Read with `pread` (read once: see
    /// [`Image::read_exact_at`]), 64 KiB or more per call.
    pub fn for_each_piece(&self, off: u64, len: u64, piece: usize, f: impl FnMut(&[u8])) -> bool {
        pieces(
            off,
            len,
            self.len,
            piece,
            |at, b| self.read_exact_at(at, b),
            f,
        )
    }
}

/// Calls `f` on `[off, off + len)` of bytes `limit` long in pieces of
/// `piece` bytes, in order, filled 64 KiB or more at a time by `read`
/// (which fills its buffer or fails); false when the range passes `limit`
/// or a read fails.
pub fn pieces(
    off: u64,
    len: u64,
    limit: u64,
    piece: usize,
    mut read: impl FnMut(u64, &mut [u8]) -> bool,
    mut f: impl FnMut(&[u8]),
) -> bool {
    let Some(end) = off.checked_add(len).filter(|&e| e <= limit) else {
        return false;
    };
    let chunk = piece * (65536 / piece).max(1);
    let mut buf = vec![0u8; chunk.min(len as usize)];
    let mut at = off;
    while at < end {
        let n = chunk.min((end - at) as usize);
        if !read(at, &mut buf[..n]) {
            return false;
        }
        buf[..n].chunks(piece).for_each(&mut f);
        at += n as u64;
    }
    true
}

/// The unsigned integer held in `b` (at most 8 bytes), in the given byte
/// order: how dumps store their words, whatever the host's order.
#[inline(always)]
pub fn uint(b: &[u8], big_endian: bool) -> u64 {
    let mut v = [0u8; 8];
    if big_endian {
        v[8 - b.len()..].copy_from_slice(b);
        u64::from_be_bytes(v)
    } else {
        v[..b.len()].copy_from_slice(b);
        u64::from_le_bytes(v)
    }
}

/// See [`Image::reader`].
pub struct Reader<'a> {
    image: &'a Image,
    pos: u64,
}

impl io::Read for Reader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.image.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl io::Seek for Reader<'_> {
    fn seek(&mut self, to: io::SeekFrom) -> io::Result<u64> {
        let pos = match to {
            io::SeekFrom::Start(p) => Some(p),
            io::SeekFrom::End(d) => self.image.len.checked_add_signed(d),
            io::SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = pos.ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        Ok(self.pos)
    }
}

/// Maps `file`, or `None` when it cannot be mapped: the caller then reads
/// with `pread`, so a 1 TiB sparse core under an address-space limit still
/// opens.
fn map(file: &File, len: u64) -> Option<Mmap> {
    let len = usize::try_from(len).ok()?;
    // SAFETY: the mapping is shared and read-only. Another process
    // truncating the file while it is open makes reads of the lost pages
    // fault (SIGBUS); ReadMode::Pread is for files that may shrink.
    unsafe { memmap2::MmapOptions::new().len(len).map(file) }.ok()
}

/// What a non-regular file is, for messages.
fn file_kind(t: &std::fs::FileType) -> &'static str {
    if t.is_dir() {
        "directory"
    } else if t.is_fifo() {
        "FIFO (named pipe)"
    } else if t.is_char_device() {
        "character device (live kernels, /dev/mem, are not supported)"
    } else if t.is_block_device() {
        "block device (save the dump to a file with savecore first)"
    } else if t.is_socket() {
        "socket"
    } else {
        "special file"
    }
}
