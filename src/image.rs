//! A read-only file mapped into memory, with bounds-checked accessors.
//!
//! Every byte the library reads from a kernel or core file goes through
//! [`Image`], so no header field can make it read outside the file.

use crate::error::{Error, Result};
use byteorder::{ByteOrder, LittleEndian};
use memmap2::Mmap;
use std::fs::File;
use std::path::Path;

/// A file mapped read-only (empty files are represented without a mapping).
pub struct Image {
    map: Option<Mmap>,
}

impl Image {
    /// Maps `path` read-only.
    pub fn open(path: &Path) -> Result<Self> {
        let io = |source| Error::Io {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(Error::Io {
                path: path.to_owned(),
                source: std::io::Error::other(
                    "not a regular file (live kernels are not supported)",
                ),
            });
        }
        if meta.len() == 0 {
            return Ok(Image { map: None });
        }
        // SAFETY: the mapping is private and read-only. Like every mmap
        // reader, we assume the file is not truncated while it is open.
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        Ok(Image { map: Some(map) })
    }

    /// The whole file.
    #[inline]
    pub fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }

    /// File length in bytes.
    #[inline]
    pub fn len(&self) -> u64 {
        self.bytes().len() as u64
    }

    /// True for an empty file.
    pub fn is_empty(&self) -> bool {
        self.bytes().is_empty()
    }

    /// `len` bytes at `off`, or `None` if any of them lies outside the file.
    #[inline]
    pub fn get(&self, off: u64, len: u64) -> Option<&[u8]> {
        let end = off.checked_add(len)?;
        self.bytes()
            .get(usize::try_from(off).ok()?..usize::try_from(end).ok()?)
    }

    /// Little-endian u64 at `off`.
    #[inline]
    pub fn le64(&self, off: u64) -> Option<u64> {
        self.get(off, 8).map(LittleEndian::read_u64)
    }
}
