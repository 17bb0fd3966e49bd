//! Page codecs: zlib, LZO1X, snappy and zstd, as makedumpfile and QEMU
//! compress kdump pages.

use super::*;

/// Per-thread buffers and decoder states, reused so that a warm reader
/// does not allocate.
#[derive(Default)]
pub(super) struct Scratch {
    pub(super) input: Vec<u8>,
    pub(super) out: Vec<u8>,
    #[cfg(feature = "zlib")]
    pub(super) zlib: Option<flate2::Decompress>,
    #[cfg(feature = "zstd")]
    pub(super) zstd: Option<ruzstd::decoding::FrameDecoder>,
}

thread_local! {
    pub(super) static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// The codec a descriptor's flags name, in the order readers test them
/// (makedumpfile's and crash's `if ... else if`): zlib, lzo, snappy, zstd.
pub(super) fn codec_of(flags: u32) -> Option<(u32, &'static str)> {
    [
        (DUMP_DH_COMPRESSED_ZLIB, "zlib"),
        (DUMP_DH_COMPRESSED_LZO, "lzo"),
        (DUMP_DH_COMPRESSED_SNAPPY, "snappy"),
        (DUMP_DH_COMPRESSED_ZSTD, "zstd"),
    ]
    .into_iter()
    .find(|&(bit, _)| flags & bit != 0)
}

/// Decompresses `input` (codec `codec`) into `out`, which must come out
/// exactly full; the error says why not.
pub(super) fn decompress(
    s: &mut Scratch,
    codec: u32,
    input: &[u8],
    out: &mut [u8],
) -> Result<(), String> {
    let n = out.len();
    let size = |got: usize| {
        if got == n {
            Ok(())
        } else {
            Err(format!("decompresses to {got} bytes, not a page of {n}"))
        }
    };
    match codec {
        DUMP_DH_COMPRESSED_ZLIB => {
            #[cfg(feature = "zlib")]
            {
                // makedumpfile's compress2() and QEMU's write zlib-wrapped
                // deflate streams.
                use flate2::{Decompress, FlushDecompress, Status};
                let z = s.zlib.get_or_insert_with(|| Decompress::new(true));
                z.reset(true);
                let status = z
                    .decompress(input, out, FlushDecompress::Finish)
                    .map_err(|e| format!("is corrupt ({e})"))?;
                let got = z.total_out() as usize;
                match status {
                    Status::StreamEnd => size(got),
                    _ if got == n => Err(format!("expands past a page of {n} bytes")),
                    _ => Err(format!("ends early, after {got} of a page's {n} bytes")),
                }
            }
            #[cfg(not(feature = "zlib"))]
            {
                let _ = (s, input, size);
                Err(missing_codec("zlib"))
            }
        }
        DUMP_DH_COMPRESSED_LZO => {
            #[cfg(feature = "lzo")]
            {
                let _ = s;
                let got = lzo1x_decompress(input, out).map_err(str::to_owned)?;
                size(got)
            }
            #[cfg(not(feature = "lzo"))]
            {
                let _ = (s, input, size);
                Err(missing_codec("lzo"))
            }
        }
        DUMP_DH_COMPRESSED_SNAPPY => {
            #[cfg(feature = "snappy")]
            {
                // Raw snappy: makedumpfile and QEMU call snappy_compress().
                let _ = s;
                let want =
                    snap::raw::decompress_len(input).map_err(|e| format!("is corrupt ({e})"))?;
                if want != n {
                    return Err(format!(
                        "says it decompresses to {want} bytes, not a page of {n}"
                    ));
                }
                let got = snap::raw::Decoder::new()
                    .decompress(input, out)
                    .map_err(|e| format!("is corrupt ({e})"))?;
                size(got)
            }
            #[cfg(not(feature = "snappy"))]
            {
                let _ = (s, input, size);
                Err(missing_codec("snappy"))
            }
        }
        _ => {
            #[cfg(feature = "zstd")]
            {
                use ruzstd::decoding::errors::FrameDecoderError;
                let z = s.zstd.get_or_insert_with(|| {
                    let mut d = ruzstd::decoding::FrameDecoder::new();
                    // A page's frame needs no larger window than the page;
                    // refuse the allocation a lying frame header asks for.
                    d.set_max_window_size(MAX_BLOCK.max(8 << 20));
                    d
                });
                match z.decode_all(input, out) {
                    Ok(got) => size(got),
                    Err(FrameDecoderError::TargetTooSmall) => {
                        Err(format!("expands past a page of {n} bytes"))
                    }
                    Err(e) => Err(format!("is corrupt ({e})")),
                }
            }
            #[cfg(not(feature = "zstd"))]
            {
                let _ = (s, input, size);
                Err(missing_codec("zstd"))
            }
        }
    }
}

#[allow(dead_code)]
pub(super) fn missing_codec(name: &str) -> String {
    format!("this build of the library cannot read (cargo feature `{name}` is off)")
}

/// Decompresses an LZO1X stream (what `lzo1x_1_compress` writes, and what
/// `lzo1x_decompress_safe` reads) into `out`; returns the bytes written.
/// Every read and copy is bounds-checked: corrupt input is an error.
///
/// The instruction set, from lzo1x_d.ch (and lzokay's decoder, which
/// follows it): after a first byte >= 18 (a literal run of `byte - 17`),
/// each instruction byte is
/// - `1LLDDDSS HHHHHHHH` (M2, >= 64): copy `(inst >> 5) + 1` bytes from
///   distance `(H << 3) + D + 1`, then `S` literals;
/// - `001LLLLL` (M3): copy `L + 2` bytes (L = 0: `31 + 255 * zeros + next`)
///   from distance `(LE16 >> 2) + 1`, then `LE16 & 3` literals;
/// - `0001HLLL` (M4): copy `L + 2` bytes (L = 0: `7 + 255 * zeros + next`)
///   from distance `16384 + (H << 14) + (LE16 >> 2)`; distance 16384 with
///   L = 1 ends the stream;
/// - `0000LLLL` after an instruction that copied no literals: a literal run
///   of `L + 3` (L = 0: `18 + 255 * zeros + next`);
/// - `0000DDSS HHHHHHHH` otherwise: copy 2 bytes from distance
///   `(H << 2) + D + 1` after 1-3 literals, or 3 bytes from
///   `(H << 2) + D + 2049` after a longer run; then `S` literals.
#[cfg(any(feature = "lzo", test))]
pub(super) fn lzo1x_decompress(src: &[u8], out: &mut [u8]) -> Result<usize, &'static str> {
    const OVERRUN_IN: &str = "ends early (input overrun)";
    const OVERRUN_OUT: &str = "expands past a page (output overrun)";
    let mut ip = 0usize;
    let mut op = 0usize;
    let byte = |ip: &mut usize| -> Result<usize, &'static str> {
        let b = *src.get(*ip).ok_or(OVERRUN_IN)?;
        *ip += 1;
        Ok(usize::from(b))
    };
    // A length continued by zero bytes: each adds 255, then a non-zero byte.
    let long = |ip: &mut usize, base: usize| -> Result<usize, &'static str> {
        let mut n = base;
        loop {
            let b = *src.get(*ip).ok_or(OVERRUN_IN)?;
            *ip += 1;
            if b != 0 {
                return Ok(n + usize::from(b));
            }
            n += 255;
        }
    };
    let literals = |ip: &mut usize, op: &mut usize, n: usize, out: &mut [u8]| {
        let s = src.get(*ip..*ip + n).ok_or(OVERRUN_IN)?;
        out.get_mut(*op..*op + n)
            .ok_or(OVERRUN_OUT)?
            .copy_from_slice(s);
        *ip += n;
        *op += n;
        Ok::<(), &'static str>(())
    };
    let mut state;
    let first = *src.first().ok_or(OVERRUN_IN)?;
    if first >= 22 {
        ip = 1;
        literals(&mut ip, &mut op, usize::from(first) - 17, out)?;
        state = 4;
    } else if first >= 18 {
        ip = 1;
        state = usize::from(first) - 17;
        literals(&mut ip, &mut op, state, out)?;
    } else {
        state = 0;
    }
    loop {
        let inst = byte(&mut ip)?;
        let (dist, len, next);
        if inst >= 64 {
            let h = byte(&mut ip)?;
            dist = (h << 3) + ((inst >> 2) & 7) + 1;
            len = (inst >> 5) + 1;
            next = inst & 3;
        } else if inst >= 32 {
            len = match inst & 31 {
                0 => long(&mut ip, 31)? + 2,
                l => l + 2,
            };
            let le = byte(&mut ip)? | byte(&mut ip)? << 8;
            dist = (le >> 2) + 1;
            next = le & 3;
        } else if inst >= 16 {
            len = match inst & 7 {
                0 => long(&mut ip, 7)? + 2,
                l => l + 2,
            };
            let le = byte(&mut ip)? | byte(&mut ip)? << 8;
            let d = ((inst & 8) << 11) + (le >> 2);
            if d == 0 {
                if len != 3 {
                    return Err("has a malformed end marker");
                }
                break;
            }
            dist = d + 16384;
            next = le & 3;
        } else if state == 0 {
            let n = match inst {
                0 => long(&mut ip, 15)? + 3,
                l => l + 3,
            };
            literals(&mut ip, &mut op, n, out)?;
            state = 4;
            continue;
        } else {
            let h = byte(&mut ip)?;
            if state < 4 {
                dist = (inst >> 2) + (h << 2) + 1;
                len = 2;
            } else {
                dist = (inst >> 2) + (h << 2) + 2049;
                len = 3;
            }
            next = inst & 3;
        }
        if dist > op {
            return Err("refers back before its start (lookbehind overrun)");
        }
        if op + len > out.len() {
            return Err(OVERRUN_OUT);
        }
        // Byte by byte: the source may overlap what is being written.
        for i in op..op + len {
            out[i] = out[i - dist];
        }
        op += len;
        state = next;
        literals(&mut ip, &mut op, next, out)?;
    }
    if ip != src.len() {
        return Err("has bytes after its end marker (input not consumed)");
    }
    Ok(op)
}
