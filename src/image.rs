//! A kernel or core file, read-only, with bounds-checked accessors.
//!
//! Every byte the library reads from a kernel or core file goes through
//! [`Image`], so no header field can make it read outside the file. A file
//! is normally mapped: a read is then a bounds check and a copy, with no
//! system call. It is read with `pread(2)` instead when the caller asks
//! for it ([`ReadMode::Pread`]: a core that another process may truncate
//! while it is open then gives short reads, not `SIGBUS`) or when the file
//! cannot be mapped (a sparse core larger than the address space allows).

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
    map: Option<Mmap>,
}

impl Image {
    /// Opens `path` (`what` names it in messages: "kernel" or "core").
    ///
    /// The file is opened without blocking (a FIFO or a terminal would
    /// block a plain open) and refused unless it is a regular file.
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
        clear_nonblock(&file).map_err(io)?;
        let len = meta.len();
        let mut image = Image {
            file,
            path: path.to_owned(),
            what,
            len,
            map: None,
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
            image.map = map(&image.file);
        }
        Ok(image)
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

    /// The whole file, when it is mapped.
    #[inline]
    pub fn mapped(&self) -> Option<&[u8]> {
        self.map.as_deref()
    }

    /// The file, for readers that take `Read + Seek` (only at open).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Copies the bytes at `off` into `buf`; returns how many there were
    /// (fewer than `buf.len()` only at the end of the file). The data path
    /// of reads: a copy from the mapping, else `pread`.
    #[inline]
    pub fn read_at(&self, off: u64, buf: &mut [u8]) -> Result<usize> {
        if let Some(data) = self.mapped() {
            let start = usize::try_from(off).unwrap_or(usize::MAX).min(data.len());
            let n = buf.len().min(data.len() - start);
            buf[..n].copy_from_slice(&data[start..start + n]);
            return Ok(n);
        }
        self.pread(off, buf)
    }

    /// `pread` until `buf` is full or the file ends.
    #[cold]
    fn pread(&self, off: u64, buf: &mut [u8]) -> Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            let Some(at) = off.checked_add(done as u64) else {
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

    /// Fills `buf` from `off`; false if the file does not hold all of it.
    #[inline]
    pub fn read_exact_at(&self, off: u64, buf: &mut [u8]) -> bool {
        if let Some(data) = self.mapped() {
            let Some(src) = usize::try_from(off)
                .ok()
                .and_then(|o| data.get(o..o.checked_add(buf.len())?))
            else {
                return false;
            };
            buf.copy_from_slice(src);
            return true;
        }
        matches!(self.pread(off, buf), Ok(n) if n == buf.len())
    }

    /// The `N` bytes at `off`, if the file holds them.
    #[inline(always)]
    pub fn array<const N: usize>(&self, off: u64) -> Option<[u8; N]> {
        if let Some(data) = self.mapped() {
            let o = usize::try_from(off).ok()?;
            return data.get(o..o.checked_add(N)?)?.try_into().ok();
        }
        let mut b = [0u8; N];
        self.read_exact_at(off, &mut b).then_some(b)
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
    /// file does not hold it all.
    pub fn for_each_piece(
        &self,
        off: u64,
        len: u64,
        piece: usize,
        mut f: impl FnMut(&[u8]),
    ) -> bool {
        let Some(end) = off.checked_add(len).filter(|&e| e <= self.len) else {
            return false;
        };
        if let Some(data) = self.mapped() {
            data[off as usize..end as usize].chunks(piece).for_each(f);
            return true;
        }
        // Read whole multiples of `piece` at once: one system call per
        // 64 KiB or more, however small the pieces.
        let chunk = piece * (65536 / piece).max(1);
        let mut buf = vec![0u8; chunk.min(len as usize)];
        let mut at = off;
        while at < end {
            let n = chunk.min((end - at) as usize);
            if !self.read_exact_at(at, &mut buf[..n]) {
                return false;
            }
            buf[..n].chunks(piece).for_each(&mut f);
            at += n as u64;
        }
        true
    }
}

/// Maps `file`, or `None` when it cannot be mapped: the caller then reads
/// with `pread`, so a 1 TiB sparse core under an address-space limit still
/// opens.
///
/// Mapped reads are the faster path cold as well as warm: a first touch
/// costs one page fault (which also maps the neighbouring cached pages),
/// less than the `pread` a libkvm-style reader makes for every read.
fn map(file: &File) -> Option<Mmap> {
    // SAFETY: the mapping is shared and read-only. Another process
    // truncating the file while it is open makes reads of the lost pages
    // fault (SIGBUS); ReadMode::Pread is for files that may shrink.
    unsafe { Mmap::map(file) }.ok()
}

/// Clears `O_NONBLOCK` (set only so that opening a FIFO cannot block).
fn clear_nonblock(file: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
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
