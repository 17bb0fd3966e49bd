//! A GDB Remote Serial Protocol server over a stopped, read-only target.
//!
//! [`serve`] answers one gdb connection (`target remote | vmcore gdbserver
//! ...` or a TCP socket) for a kernel crash dump: gdb reads the target
//! description, the threads, their registers and memory. The dump is stopped
//! for good and cannot change, so requests to write, to set breakpoints or
//! to resume are refused in the way gdb reports best.
//!
//! Section names in the comments are those of the gdb manual's appendix
//! "Remote Serial Protocol" ("Overview", "Packets", "Stop Reply Packets",
//! "General Query Packets", "Packet Acknowledgment", ...).
//!
//! What cannot be done is refused so that gdb says so and carries on
//! (checked with gdb 13): writes get an `E` reply; breakpoints and
//! watchpoints (`Z`) the empty reply, so gdb tries a memory write, which
//! fails: "Cannot insert breakpoint"; a resume (`c`, `s`, `vCont`, ...) gets
//! an `O` message and a stop reply at once (see [`serve`]). `vCont?` gets the
//! empty reply, so gdb resumes with `Hc` and `c`/`s`; `k` ends the session,
//! `D` too after its `OK`.
//!
//! Input is bounded: a packet longer than [`PACKET_SIZE`] is discarded as it
//! is read (gdb never sends one, since `qSupported` advertises that size),
//! bytes between packets are skipped, and no input makes the server panic.

use std::io::{self, BufRead, BufReader, Read, Write};

/// The largest packet gdb may send, and the largest reply payload we send:
/// advertised as `PacketSize` in `qSupported` (16 KiB, so an `m` reply
/// carries 8 KiB of memory; gdb sizes its `m` and `X` requests from it).
pub const PACKET_SIZE: usize = 0x4000;

/// How many times one reply is sent again after gdb's `-` before giving up.
const MAX_RESENDS: usize = 8;

/// The longest error text sent in an `E.errtext` reply.
const MAX_ERROR_TEXT: usize = 200;

// Error replies, "E NN" with an errno-like number ("Standard Replies": gdb
// mostly ignores the number). `E.errtext` is used where gdb shows the text.
/// A malformed request or arguments (and an oversized or corrupt packet).
const E_MALFORMED: &[u8] = b"E01";
/// No such thread (ESRCH).
const E_NO_THREAD: &[u8] = b"E03";
/// Memory cannot be read (EFAULT).
const E_MEMORY: &[u8] = b"E0e";
/// No such register (EINVAL).
const E_NO_REGISTER: &[u8] = b"E16";
/// A write to the read-only dump (EROFS).
const E_READ_ONLY: &[u8] = b"E1e";
/// A `qXfer` read of an annex that does not exist.
const E_NO_ANNEX: &[u8] = b"E00";

/// What gdb prints, through an `O` packet, when asked to resume.
const CANNOT_RESUME: &str =
    "vmcore: a crash dump cannot run; its threads stay where they stopped\n";

/// One thread as gdb sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadInfo {
    /// The gdb thread id, at least 1 (0 and -1 mean "any" and "all" on the wire).
    pub id: u64,
    /// The thread's name, as `info threads` shows it (`Thread 1 "name"`).
    pub name: String,
    /// The CPU the thread last ran on, if known.
    pub core: Option<u32>,
}

/// One register's value in target byte order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Register {
    /// The register's size in bytes, as the target description gives it.
    pub size: usize,
    /// The value, `size` bytes; `None` when unknown (sent as `xx` per byte,
    /// which gdb shows as `<unavailable>`). Bytes missing from a shorter
    /// value are sent as unknown, extra ones are dropped.
    pub value: Option<Vec<u8>>,
}

/// The stopped machine gdb debugs.
pub trait Target {
    /// The complete target description XML (served as annex `target.xml`
    /// via `qXfer:features:read`).
    fn target_xml(&self) -> &str;
    /// Threads in order.
    fn threads(&self) -> &[ThreadInfo];
    /// The thread selected at the stop (reported by `?`), one of `threads()`.
    fn stopped_thread(&self) -> u64;
    /// The thread's registers in target-description order (regnum 0, 1,
    /// ...). `Err(text)` if the thread's registers cannot be read: gdb
    /// shows "Could not read registers; remote failure reply 'E.text'" and
    /// that error stops commands such as `info threads` at the thread, so a
    /// thread with no saved registers reads better as `Ok` with every value
    /// `None`.
    fn registers(&self, thread: u64) -> Result<Vec<Register>, String>;
    /// Reads memory at `addr` into `buf`: `Ok(n)` bytes read from the start
    /// (`0 < n <= buf.len()`), `Err(text)` if nothing can be read.
    fn read_memory(&self, addr: u64, buf: &mut [u8]) -> Result<usize, String>;
    /// The kernel's load displacement for `qOffsets`, if known (`None`:
    /// `qOffsets` gets an empty reply).
    fn offsets(&self) -> Option<i64>;
}

/// Serves one connection until `k`, `D`, or EOF on input. Returns `Ok(())`
/// on a clean end; `Err` when reading or writing fails, or when gdb keeps
/// rejecting a reply's checksum.
pub fn serve(target: &dyn Target, input: impl Read, output: impl Write) -> io::Result<()> {
    let mut link = Link {
        input: BufReader::new(input),
        output,
        acks: true,
    };
    let mut session = Session::new(target);
    let mut packet = Vec::with_capacity(PACKET_SIZE);
    loop {
        let action = match link.read_packet(&mut packet)? {
            Incoming::Eof => return Ok(()),
            Incoming::Rejected => Action::Reply(E_MALFORMED.to_vec()),
            Incoming::Packet => {
                unescape(&mut packet);
                session.handle(&packet)
            }
        };
        match action {
            Action::Reply(reply) => link.send(&reply)?,
            Action::StartNoAck => {
                // "Packet Acknowledgment": gdb acknowledges this OK, then
                // neither side sends acknowledgments any more.
                link.send(b"OK")?;
                link.acks = false;
            }
            Action::Resume(thread) => {
                // Resuming cannot work, and a stop reply must answer it:
                // gdb waits for one. An `E` reply also ends the wait (gdb
                // warns "Remote failure reply" and reports the thread
                // stopped with signal 0), but says nothing about why. An
                // `O` console-output packet first ("Stop Reply Packets")
                // gets gdb to print our reason, then a stop reply with
                // signal 0 on the same thread ends the wait: gdb shows the
                // thread still stopped where it was (`Thread 2 "name"
                // stopped.`), and `step` or `next` stop at once rather than
                // stepping again (with a SIGTRAP reply at an unchanged pc,
                // gdb 13's `step` steps again forever).
                let mut console = b"O".to_vec();
                push_hex(&mut console, CANNOT_RESUME.as_bytes());
                link.send(&console)?;
                link.send(&stop_reply(0, thread))?;
            }
            Action::Detach => {
                link.send(b"OK")?;
                return Ok(());
            }
            Action::Kill => return Ok(()),
        }
    }
}

/// Escapes `s` for XML text and attribute values; control characters that
/// XML 1.0 cannot carry (even as references) become `?`.
pub fn escape_xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if c.is_control() => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

/// What [`Link::read_packet`] got.
enum Incoming {
    /// A packet with a good checksum, its raw (still escaped) data in the buffer.
    Packet,
    /// A packet that cannot be served: longer than [`PACKET_SIZE`], or with
    /// a bad checksum after acknowledgments were turned off.
    Rejected,
    /// The input ended.
    Eof,
}

/// What one request needs done on the connection.
enum Action {
    /// Send this reply.
    Reply(Vec<u8>),
    /// Reply `OK` to `QStartNoAckMode`, then stop acknowledging.
    StartNoAck,
    /// Refuse a resume of this thread: console output and a stop reply.
    Resume(u64),
    /// Reply `OK` to `D`, then end.
    Detach,
    /// End at once: `k` gets no reply.
    Kill,
}

/// The byte stream to and from gdb: framing, checksums and acknowledgments
/// ("Overview", "Packet Acknowledgment").
struct Link<R: Read, W: Write> {
    input: BufReader<R>,
    output: W,
    /// Whether packets are acknowledged (`+`/`-`): until `QStartNoAckMode`.
    acks: bool,
}

impl<R: Read, W: Write> Link<R, W> {
    /// The next input byte, without taking it; `None` at EOF.
    fn peek(&mut self) -> io::Result<Option<u8>> {
        loop {
            match self.input.fill_buf() {
                Ok(buf) => return Ok(buf.first().copied()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Takes the next input byte; `None` at EOF.
    fn next_byte(&mut self) -> io::Result<Option<u8>> {
        let byte = self.peek()?;
        if byte.is_some() {
            self.input.consume(1);
        }
        Ok(byte)
    }

    /// Writes and flushes: gdb waits for every byte we send.
    fn write_flush(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.output.write_all(bytes)?;
        self.output.flush()
    }

    /// Reads the next packet's data (between `$` and `#`) into `packet`,
    /// acknowledging it. Skips anything before a `$`: acknowledgments,
    /// interrupt bytes (0x03: we are always stopped and answer every resume
    /// at once, so there is never a running target to interrupt, and an
    /// unasked-for stop reply would be taken as the answer to gdb's next
    /// request) and noise. A `$` inside a packet starts it afresh, as in
    /// gdb. Bytes past [`PACKET_SIZE`] are counted for the checksum but not
    /// kept.
    fn read_packet(&mut self, packet: &mut Vec<u8>) -> io::Result<Incoming> {
        loop {
            loop {
                match self.next_byte()? {
                    None => return Ok(Incoming::Eof),
                    Some(b'$') => break,
                    Some(_) => {}
                }
            }
            packet.clear();
            let mut sum = 0u8;
            let mut len = 0usize;
            loop {
                match self.next_byte()? {
                    None => return Ok(Incoming::Eof),
                    Some(b'#') => break,
                    Some(b'$') => {
                        packet.clear();
                        sum = 0;
                        len = 0;
                    }
                    Some(byte) => {
                        sum = sum.wrapping_add(byte);
                        len = len.saturating_add(1);
                        if len <= PACKET_SIZE {
                            packet.push(byte);
                        }
                    }
                }
            }
            let Some(high) = self.next_byte()? else {
                return Ok(Incoming::Eof);
            };
            let Some(low) = self.next_byte()? else {
                return Ok(Incoming::Eof);
            };
            let good = hex_value(high)
                .zip(hex_value(low))
                .is_some_and(|(h, l)| (h << 4 | l) == sum);
            if self.acks {
                if !good {
                    // Ask for it again.
                    self.write_flush(b"-")?;
                    continue;
                }
                self.write_flush(b"+")?;
            } else if !good {
                // No way to ask for it again: fail the request rather
                // than act on corrupt data.
                return Ok(Incoming::Rejected);
            }
            return Ok(if len > PACKET_SIZE {
                Incoming::Rejected
            } else {
                Incoming::Packet
            });
        }
    }

    /// Sends one packet; with acknowledgments on, waits for gdb's `+` and
    /// sends again on `-` (at most [`MAX_RESENDS`] times). A `$` (gdb's
    /// next packet) or EOF is taken as an acknowledgment, other bytes are
    /// skipped.
    fn send(&mut self, payload: &[u8]) -> io::Result<()> {
        debug_assert!(!payload.iter().any(|b| matches!(b, b'$' | b'#' | b'*')));
        let mut frame = Vec::with_capacity(payload.len() + 4);
        frame.push(b'$');
        frame.extend_from_slice(payload);
        frame.push(b'#');
        let sum = payload.iter().fold(0u8, |sum, &b| sum.wrapping_add(b));
        push_hex(&mut frame, &[sum]);
        self.write_flush(&frame)?;
        if !self.acks {
            return Ok(());
        }
        let mut resends = 0;
        loop {
            match self.peek()? {
                None | Some(b'$') => return Ok(()),
                Some(b'+') => {
                    self.input.consume(1);
                    return Ok(());
                }
                Some(b'-') => {
                    self.input.consume(1);
                    resends += 1;
                    if resends > MAX_RESENDS {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("gdb rejected a reply {resends} times"),
                        ));
                    }
                    self.write_flush(&frame)?;
                }
                Some(_) => self.input.consume(1),
            }
        }
    }
}

/// Undoes the `}` escapes of binary data ("Overview": the escaped byte
/// XOR 0x20) in place. A `}` ending the packet is dropped.
fn unescape(data: &mut Vec<u8>) {
    let mut read = 0;
    let mut write = 0;
    while let Some(&byte) = data.get(read) {
        read += 1;
        let byte = if byte == b'}' {
            let Some(&escaped) = data.get(read) else {
                break;
            };
            read += 1;
            escaped ^ 0x20
        } else {
            byte
        };
        data[write] = byte;
        write += 1;
    }
    data.truncate(write);
}

/// Appends `data` to `out` escaped as binary data ("Overview": `#`, `$`,
/// `}` and `*`, the last so gdb cannot take it for run-length encoding),
/// stopping before `out` would grow past `limit` bytes. Returns how many
/// bytes of `data` went in.
fn push_escaped(out: &mut Vec<u8>, data: &[u8], limit: usize) -> usize {
    for (i, &byte) in data.iter().enumerate() {
        let special = matches!(byte, b'#' | b'$' | b'}' | b'*');
        if out.len() + 1 + usize::from(special) > limit {
            return i;
        }
        if special {
            out.extend_from_slice(&[b'}', byte ^ 0x20]);
        } else {
            out.push(byte);
        }
    }
    data.len()
}

/// Appends `bytes` as lowercase hex digit pairs.
fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for &byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)]);
        out.push(DIGITS[usize::from(byte & 0xf)]);
    }
}

/// The value of one hex digit.
fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|v| u8::try_from(v).ok())
}

/// Parses a nonempty hex number (no sign, no prefix).
fn parse_hex(text: &[u8]) -> Option<u64> {
    if text.is_empty() || !text.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    // All ASCII hex digits: valid UTF-8, and only overflow can fail.
    u64::from_str_radix(std::str::from_utf8(text).ok()?, 16).ok()
}

/// Parses `A,B` as two hex numbers.
fn parse_pair(text: &[u8]) -> Option<(u64, u64)> {
    let comma = text.iter().position(|&b| b == b',')?;
    Some((parse_hex(&text[..comma])?, parse_hex(&text[comma + 1..])?))
}

/// A thread as a packet names it ("Packets", thread-id syntax).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ThreadSel {
    /// `0`: any thread.
    Any,
    /// `-1`: all threads.
    All,
    /// One thread.
    Id(u64),
}

/// Parses a thread id: hex, `0`, `-1`, or leniently the multiprocess
/// `pPID.TID` and `pPID` forms (we do not advertise multiprocess).
fn parse_thread(text: &[u8]) -> Option<ThreadSel> {
    let tid = match text.strip_prefix(b"p") {
        Some(rest) => match rest.iter().position(|&b| b == b'.') {
            Some(dot) => &rest[dot + 1..],
            None => {
                return (rest == b"-1" || parse_hex(rest).is_some()).then_some(ThreadSel::Any);
            }
        },
        None => text,
    };
    if tid == b"-1" {
        return Some(ThreadSel::All);
    }
    Some(match parse_hex(tid)? {
        0 => ThreadSel::Any,
        id => ThreadSel::Id(id),
    })
}

/// A stop reply for `thread` with `signal` ("Stop Reply Packets").
fn stop_reply(signal: u8, thread: u64) -> Vec<u8> {
    format!("T{signal:02x}thread:{thread:x};").into_bytes()
}

/// An `E.errtext` reply: printable ASCII, without the framing characters.
fn error_text(text: &str) -> Vec<u8> {
    let mut reply = b"E.".to_vec();
    reply.extend(text.chars().take(MAX_ERROR_TEXT).map(|c| match c {
        '$' | '#' | '*' | '}' => b'?',
        ' '..='~' => c as u8,
        _ => b'?',
    }));
    reply
}

/// One connection's state and its request handlers ("Packets", "General
/// Query Packets").
struct Session<'a> {
    target: &'a dyn Target,
    /// The thread `g` and `p` read (`Hg`), and a resume stops on.
    general: u64,
    /// The thread `Hc` named, `None` for any or all.
    resumed: Option<u64>,
    /// The index of the next thread `qsThreadInfo` lists.
    thread_cursor: usize,
    /// Whether gdb announced `binary-upload` (GDB 16's `x` packet).
    binary_upload: bool,
    /// The `qXfer:threads:read` document, built on first use.
    threads_xml: Option<String>,
    /// Each thread's index in `target.threads()`, by id (gdb names a
    /// thread per `Hg`: a scan would make `info threads` quadratic).
    index: std::collections::HashMap<u64, usize>,
}

impl<'a> Session<'a> {
    /// A session starting on the stopped thread.
    fn new(target: &'a dyn Target) -> Self {
        Session {
            target,
            general: target.stopped_thread(),
            resumed: None,
            thread_cursor: 0,
            binary_upload: false,
            threads_xml: None,
            index: target
                .threads()
                .iter()
                .enumerate()
                .map(|(i, t)| (t.id, i))
                .collect(),
        }
    }

    /// Answers one packet (its data unescaped).
    fn handle(&mut self, packet: &[u8]) -> Action {
        let Some((&kind, args)) = packet.split_first() else {
            return Action::Reply(Vec::new());
        };
        let reply = match kind {
            b'?' => {
                self.general = self.target.stopped_thread();
                self.resumed = None;
                stop_reply(5, self.general)
            }
            b'g' if args.is_empty() => self.read_registers(),
            b'p' => self.read_register(args),
            b'm' => self.read_memory(args, false),
            b'x' => self.read_memory(args, true),
            b'G' | b'P' | b'M' => E_READ_ONLY.to_vec(),
            b'X' => write_binary(args),
            b'H' => self.set_thread(args),
            b'T' => match parse_thread(args) {
                Some(ThreadSel::Id(id)) if self.known(id) => b"OK".to_vec(),
                Some(_) => E_NO_THREAD.to_vec(),
                None => E_MALFORMED.to_vec(),
            },
            b'c' | b'C' | b's' | b'S' => {
                return Action::Resume(self.resumed.unwrap_or(self.general));
            }
            b'k' => return Action::Kill,
            b'D' => return Action::Detach,
            b'q' => self.query(packet),
            b'Q' if args == b"StartNoAckMode" => return Action::StartNoAck,
            b'v' => {
                if let Some(actions) = packet.strip_prefix(b"vCont;") {
                    return Action::Resume(self.vcont_thread(actions));
                }
                // vCont? included: with no vCont actions, gdb resumes with
                // `c` and `s` (after `Hc`), which get the same refusal.
                Vec::new()
            }
            // Breakpoints and watchpoints (`Z`, `z`) are unsupported: gdb
            // then tries a memory breakpoint, whose write fails, and
            // reports that it cannot insert the breakpoint. Everything
            // else unknown gets the empty reply too.
            _ => Vec::new(),
        };
        Action::Reply(reply)
    }

    /// Whether `id` is one of the target's threads.
    fn known(&self, id: u64) -> bool {
        self.index.contains_key(&id)
    }

    /// `Hg` selects the thread `g` and `p` read; `Hc` the one a resume is
    /// for. `0` (any) means the stopped thread.
    fn set_thread(&mut self, args: &[u8]) -> Vec<u8> {
        let Some((&op, id)) = args.split_first() else {
            return E_MALFORMED.to_vec();
        };
        if op != b'g' && op != b'c' {
            return Vec::new();
        }
        let thread = match parse_thread(id) {
            None => return E_MALFORMED.to_vec(),
            Some(ThreadSel::Id(id)) if !self.known(id) => return E_NO_THREAD.to_vec(),
            Some(ThreadSel::Id(id)) => Some(id),
            Some(ThreadSel::Any) => Some(self.target.stopped_thread()).filter(|_| op == b'g'),
            Some(ThreadSel::All) => None,
        };
        if op == b'g' {
            if let Some(id) = thread {
                self.general = id;
            }
        } else {
            self.resumed = thread;
        }
        b"OK".to_vec()
    }

    /// The thread a `vCont` resume stops on: the first action's thread if
    /// it names a known one, else as for `c`.
    fn vcont_thread(&self, actions: &[u8]) -> u64 {
        let first = actions.split(|&b| b == b';').next().unwrap_or_default();
        let named = first
            .iter()
            .position(|&b| b == b':')
            .and_then(|colon| parse_thread(&first[colon + 1..]));
        match named {
            Some(ThreadSel::Id(id)) if self.known(id) => id,
            _ => self.resumed.unwrap_or(self.general),
        }
    }

    /// `g`: all registers of the `Hg` thread, in hex, `xx` for unknown bytes.
    fn read_registers(&self) -> Vec<u8> {
        match self.target.registers(self.general) {
            Ok(registers) => {
                let mut reply = Vec::new();
                for register in &registers {
                    push_register(&mut reply, register);
                }
                reply
            }
            Err(text) => error_text(&text),
        }
    }

    /// `p n`: register `n` (hex) of the `Hg` thread.
    fn read_register(&self, args: &[u8]) -> Vec<u8> {
        let Some(regnum) = parse_hex(args) else {
            return E_MALFORMED.to_vec();
        };
        match self.target.registers(self.general) {
            Ok(registers) => {
                let register = usize::try_from(regnum).ok().and_then(|n| registers.get(n));
                match register {
                    Some(register) => {
                        let mut reply = Vec::new();
                        push_register(&mut reply, register);
                        reply
                    }
                    None => E_NO_REGISTER.to_vec(),
                }
            }
            Err(text) => error_text(&text),
        }
    }

    /// `m addr,len` (hex reply) or `x addr,len` (`b` and binary data).
    /// Reads at most what fits in one reply, and not past the end of the
    /// address space; a partial read returns the bytes read, which gdb
    /// accepts ("Packets": "The reply may contain fewer addressable memory
    /// units than requested").
    fn read_memory(&self, args: &[u8], binary: bool) -> Vec<u8> {
        let Some((addr, len)) = parse_pair(args) else {
            return E_MALFORMED.to_vec();
        };
        // Hex takes two characters a byte; binary one, `b` aside, or two
        // when escaped (trimmed below).
        let room = if binary {
            PACKET_SIZE - 1
        } else {
            PACKET_SIZE / 2
        };
        let to_end = (u64::MAX - addr).saturating_add(1);
        let len = len.min(to_end).min(room as u64) as usize;
        let mut reply = Vec::new();
        if binary {
            reply.push(b'b');
        }
        if len == 0 {
            return reply;
        }
        let mut buf = vec![0; len];
        let read = match self.target.read_memory(addr, &mut buf) {
            Ok(n) if n > 0 => n.min(len),
            _ => return E_MEMORY.to_vec(),
        };
        if binary {
            push_escaped(&mut reply, &buf[..read], PACKET_SIZE);
        } else {
            push_hex(&mut reply, &buf[..read]);
        }
        reply
    }

    /// General queries ("General Query Packets").
    fn query(&mut self, packet: &[u8]) -> Vec<u8> {
        if let Some(rest) = packet.strip_prefix(b"qSupported") {
            return match rest {
                [] => self.supported(&[]),
                [b':', features @ ..] => self.supported(features),
                _ => Vec::new(),
            };
        }
        if let Some(rest) = packet.strip_prefix(b"qXfer:") {
            return self.xfer(rest);
        }
        if let Some(id) = packet.strip_prefix(b"qThreadExtraInfo,") {
            return match parse_thread(id) {
                Some(ThreadSel::Id(id)) => match self.thread(id) {
                    Some(thread) => {
                        let mut reply = Vec::new();
                        push_hex(&mut reply, thread.name.as_bytes());
                        reply
                    }
                    None => E_NO_THREAD.to_vec(),
                },
                Some(_) => E_NO_THREAD.to_vec(),
                None => E_MALFORMED.to_vec(),
            };
        }
        match packet {
            b"qfThreadInfo" => {
                self.thread_cursor = 0;
                self.thread_list()
            }
            b"qsThreadInfo" => self.thread_list(),
            b"qC" => format!("QC{:x}", self.target.stopped_thread()).into_bytes(),
            // A dump is a process we attached to: quitting gdb detaches.
            b"qAttached" => b"1".to_vec(),
            _ if packet.starts_with(b"qAttached:") => b"1".to_vec(),
            b"qOffsets" => match self.target.offsets() {
                // Two's complement: gdb adds modulo 2^64.
                Some(delta) => {
                    format!("Text={0:x};Data={0:x};Bss={0:x}", delta as u64).into_bytes()
                }
                None => Vec::new(),
            },
            // No symbols wanted.
            _ if packet.starts_with(b"qSymbol:") => b"OK".to_vec(),
            // qTStatus and the rest: not supported (no tracing).
            _ => Vec::new(),
        }
    }

    /// `qSupported`: what we support. gdb's `binary-upload+` (GDB 16)
    /// turns on the `x` packet, announced back.
    fn supported(&mut self, features: &[u8]) -> Vec<u8> {
        self.binary_upload = features
            .split(|&b| b == b';')
            .any(|feature| feature == b"binary-upload+");
        let mut reply = format!(
            "PacketSize={PACKET_SIZE:x};QStartNoAckMode+;qXfer:features:read+;qXfer:threads:read+"
        );
        if self.binary_upload {
            reply.push_str(";binary-upload+");
        }
        reply.into_bytes()
    }

    /// The target's thread `id`.
    fn thread(&self, id: u64) -> Option<&ThreadInfo> {
        self.target.threads().get(*self.index.get(&id)?)
    }

    /// `qfThreadInfo`/`qsThreadInfo`: `m` and ids, as many as fit, then `l`.
    fn thread_list(&mut self) -> Vec<u8> {
        let threads = self.target.threads();
        let Some(rest) = threads.get(self.thread_cursor..).filter(|r| !r.is_empty()) else {
            return b"l".to_vec();
        };
        let mut reply = b"m".to_vec();
        for thread in rest {
            let id = format!("{:x}", thread.id);
            let comma = usize::from(reply.len() > 1);
            if reply.len() + comma + id.len() > PACKET_SIZE {
                break;
            }
            if comma == 1 {
                reply.push(b',');
            }
            reply.extend_from_slice(id.as_bytes());
            self.thread_cursor += 1;
        }
        reply
    }

    /// `qXfer:OBJECT:read:ANNEX:OFFSET,LENGTH` for `features` (annex
    /// `target.xml`) and `threads` (empty annex).
    fn xfer(&mut self, rest: &[u8]) -> Vec<u8> {
        let mut fields = rest.splitn(4, |&b| b == b':');
        let (Some(object), Some(b"read"), Some(annex), Some(range)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Vec::new();
        };
        let Some((offset, length)) = parse_pair(range) else {
            return E_MALFORMED.to_vec();
        };
        match object {
            b"features" if annex == b"target.xml" => {
                xfer_chunk(self.target.target_xml().as_bytes(), offset, length)
            }
            b"features" => E_NO_ANNEX.to_vec(),
            b"threads" if annex.is_empty() => {
                let target = self.target;
                let xml = self.threads_xml.get_or_insert_with(|| threads_xml(target));
                xfer_chunk(xml.as_bytes(), offset, length)
            }
            b"threads" => E_NO_ANNEX.to_vec(),
            _ => Vec::new(),
        }
    }
}

/// A register's bytes in hex, `xx` for unknown ones ("Packets", `g`);
/// exactly `size` bytes whatever the value's length.
fn push_register(out: &mut Vec<u8>, register: &Register) {
    let value = register.value.as_deref().unwrap_or_default();
    let known = value.len().min(register.size);
    push_hex(out, &value[..known]);
    for _ in known..register.size {
        out.extend_from_slice(b"xx");
    }
}

/// `X addr,len:data`: well-formed writes fail (the dump is read-only),
/// malformed ones are reported as such.
fn write_binary(args: &[u8]) -> Vec<u8> {
    let well_formed = args
        .iter()
        .position(|&b| b == b':')
        .and_then(|colon| {
            let (_, len) = parse_pair(&args[..colon])?;
            Some(len == (args.len() - colon - 1) as u64)
        })
        .unwrap_or(false);
    if well_formed {
        E_READ_ONLY.to_vec()
    } else {
        E_MALFORMED.to_vec()
    }
}

/// One `qXfer` read reply: `m` and a chunk with more to come, or `l` and
/// the last chunk, escaped and within [`PACKET_SIZE`].
fn xfer_chunk(data: &[u8], offset: u64, length: u64) -> Vec<u8> {
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(data.len());
    let length = usize::try_from(length).unwrap_or(usize::MAX);
    let end = start.saturating_add(length).min(data.len());
    let mut reply = vec![b'l'];
    let taken = push_escaped(&mut reply, &data[start..end], PACKET_SIZE);
    if start + taken < data.len() {
        reply[0] = b'm';
    }
    reply
}

/// The `qXfer:threads:read` document ("Thread List Format"): each thread's
/// id, core and name.
fn threads_xml(target: &dyn Target) -> String {
    let mut xml = String::from("<?xml version=\"1.0\"?>\n<threads>\n");
    for thread in target.threads() {
        xml.push_str(&format!("<thread id=\"{:x}\"", thread.id));
        if let Some(core) = thread.core {
            xml.push_str(&format!(" core=\"{core}\""));
        }
        xml.push_str(&format!(" name=\"{}\"/>\n", escape_xml(&thread.name)));
    }
    xml.push_str("</threads>\n");
    xml
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// Three threads, registers known and unknown, memory with a hole and
    /// a failing region.
    struct Mock {
        xml: String,
        threads: Vec<ThreadInfo>,
        offsets: Option<i64>,
        /// The largest buffer `read_memory` was given.
        max_read: Cell<usize>,
    }

    /// Memory at 0x1000..0x1010 (with the bytes binary data escapes),
    /// a hole to 0x2000, 0x2000..0x3000 (each byte its address's low
    /// byte), 0x3000..0x10000 all `}`, the top page of the address space;
    /// 0x20000..0x21000 fails with an error.
    const LOW: [u8; 16] = [
        0x00, 0x01, b'#', b'$', b'}', b'*', 0x7f, 0x80, 0xff, b'a', 0x03, 0x20, 0x5d, 0x7d, 0x0e,
        0x0f,
    ];
    const TOP: u64 = 0xffff_ffff_ffff_f000;

    impl Mock {
        fn new() -> Self {
            Mock {
                xml: "<?xml version=\"1.0\"?><target><!-- #$}* --><architecture>i386:x86-64</architecture></target>".into(),
                threads: vec![
                    ThreadInfo { id: 1, name: "swapper/0".into(), core: Some(0) },
                    ThreadInfo { id: 2, name: "bash <&>\"'".into(), core: Some(3) },
                    ThreadInfo { id: 0x1a, name: "kworker/u8:2".into(), core: None },
                ],
                offsets: None,
                max_read: Cell::new(0),
            }
        }
    }

    impl Target for Mock {
        fn target_xml(&self) -> &str {
            &self.xml
        }
        fn threads(&self) -> &[ThreadInfo] {
            &self.threads
        }
        fn stopped_thread(&self) -> u64 {
            2
        }
        fn registers(&self, thread: u64) -> Result<Vec<Register>, String> {
            let first = match thread {
                1 => 0x1122_3344_5566_7788u64,
                2 => 0x0102_0304_0506_0708,
                _ => return Err("no saved registers for #26 ($x*})\u{e9}".into()),
            };
            Ok(vec![
                Register {
                    size: 8,
                    value: Some(first.to_le_bytes().to_vec()),
                },
                Register {
                    size: 4,
                    value: None,
                },
                Register {
                    size: 2,
                    value: Some(vec![0xab, 0xcd]),
                },
                // Shorter than its size: the rest is unknown.
                Register {
                    size: 3,
                    value: Some(vec![0xee]),
                },
            ])
        }
        fn read_memory(&self, addr: u64, buf: &mut [u8]) -> Result<usize, String> {
            self.max_read.set(self.max_read.get().max(buf.len()));
            let (start, end): (u64, u64) = match addr {
                0x1000..0x1010 => (0x1000, 0x1010),
                0x2000..0x10000 => (0x2000, 0x10000),
                0x2_0000..0x2_1000 => return Err("read error".into()),
                TOP.. => (TOP, u64::MAX),
                _ => return Err("not in the dump".into()),
            };
            // Up to the region's end (u64::MAX itself included for the top).
            let room = usize::try_from(end - addr)
                .unwrap()
                .saturating_add(usize::from(end == u64::MAX));
            let n = buf.len().min(room);
            for (i, byte) in buf[..n].iter_mut().enumerate() {
                let at = addr + i as u64;
                *byte = match start {
                    0x1000 => LOW[(at - 0x1000) as usize],
                    0x2000 if at >= 0x3000 => b'}',
                    _ => at as u8,
                };
            }
            Ok(n)
        }
        fn offsets(&self) -> Option<i64> {
            self.offsets
        }
    }

    /// One thing the server wrote.
    #[derive(Debug, PartialEq, Eq)]
    enum Out {
        Ack,
        Nak,
        Packet(Vec<u8>),
    }

    fn checksum(data: &[u8]) -> u8 {
        data.iter().fold(0u8, |sum, &b| sum.wrapping_add(b))
    }

    fn frame(data: &[u8]) -> Vec<u8> {
        let mut framed = vec![b'$'];
        framed.extend_from_slice(data);
        framed.extend_from_slice(format!("#{:02x}", checksum(data)).as_bytes());
        framed
    }

    /// Splits the output into acks and packets, checking every packet's
    /// framing and checksum.
    fn parse_output(out: &[u8]) -> Vec<Out> {
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < out.len() {
            match out[i] {
                b'+' => tokens.push(Out::Ack),
                b'-' => tokens.push(Out::Nak),
                b'$' => {
                    let len = out[i + 1..].iter().position(|&b| b == b'#').expect("no #");
                    let payload = &out[i + 1..i + 1 + len];
                    let sum = &out[i + 2 + len..i + 4 + len];
                    assert_eq!(sum, format!("{:02x}", checksum(payload)).as_bytes());
                    assert!(!payload.iter().any(|b| matches!(b, b'$' | b'*')));
                    assert!(
                        payload.len() <= PACKET_SIZE,
                        "reply of {} bytes",
                        payload.len()
                    );
                    tokens.push(Out::Packet(payload.to_vec()));
                    i += len + 3;
                }
                other => panic!("unexpected output byte {other:#x}"),
            }
            i += 1;
        }
        tokens
    }

    fn run(target: &dyn Target, input: &[u8]) -> (io::Result<()>, Vec<Out>) {
        let mut out = Vec::new();
        let result = serve(target, input, &mut out);
        (result, parse_output(&out))
    }

    /// Sends each packet (acknowledging every reply) in one session and
    /// returns the reply packets.
    fn session(target: &dyn Target, packets: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut input = Vec::new();
        for packet in packets {
            input.extend(frame(packet));
            input.push(b'+');
        }
        let (result, tokens) = run(target, &input);
        result.unwrap();
        let acks = tokens.iter().filter(|t| **t == Out::Ack).count();
        assert_eq!(acks, packets.len(), "{tokens:?}");
        tokens
            .into_iter()
            .filter_map(|t| match t {
                Out::Packet(p) => Some(p),
                _ => None,
            })
            .collect()
    }

    /// The one reply to one packet.
    fn ask(target: &dyn Target, packet: &[u8]) -> Vec<u8> {
        let mut replies = session(target, &[packet]);
        assert_eq!(replies.len(), 1, "{replies:?}");
        replies.pop().unwrap()
    }

    fn ask_str(target: &dyn Target, packet: &str) -> String {
        String::from_utf8(ask(target, packet.as_bytes())).unwrap()
    }

    fn hex(bytes: &[u8]) -> String {
        let mut out = Vec::new();
        push_hex(&mut out, bytes);
        String::from_utf8(out).unwrap()
    }

    fn unescaped(mut data: Vec<u8>) -> Vec<u8> {
        unescape(&mut data);
        data
    }

    const REFUSAL: &str = "O766d636f72653a20612063726173682064756d702063616e6e6f742072756e3b20\
                           6974732074687265616473207374617920776865726520746865792073746f707065640a";

    #[test]
    fn refusal_text_is_the_hex_of_the_message() {
        assert_eq!(REFUSAL[1..], hex(CANNOT_RESUME.as_bytes()));
    }

    #[test]
    fn q_supported() {
        let mock = Mock::new();
        let base = "PacketSize=4000;QStartNoAckMode+;qXfer:features:read+;qXfer:threads:read+";
        assert_eq!(ask_str(&mock, "qSupported"), base);
        assert_eq!(
            ask_str(&mock, "qSupported:multiprocess+;swbreak+;vContSupported+"),
            base
        );
        assert_eq!(
            ask_str(
                &mock,
                "qSupported:multiprocess+;binary-upload+;error-message+"
            ),
            format!("{base};binary-upload+")
        );
        assert_eq!(ask_str(&mock, "qSupportedX"), "");
    }

    #[test]
    fn target_xml_in_chunks() {
        let mock = Mock::new();
        let xml = mock.xml.as_bytes();
        let mut got = Vec::new();
        let mut offset = 0;
        loop {
            let reply = ask(
                &mock,
                format!("qXfer:features:read:target.xml:{offset:x},20").as_bytes(),
            );
            let data = unescaped(reply[1..].to_vec());
            assert!(data.len() <= 0x20);
            offset += data.len();
            got.extend(data);
            match reply[0] {
                b'm' => {}
                b'l' => break,
                other => panic!("reply kind {other}"),
            }
        }
        assert_eq!(got, xml);
        // The comment's `#$}*` go escaped.
        let reply = ask(&mock, b"qXfer:features:read:target.xml:0,1000");
        assert!(reply.windows(8).any(|w| w == b"}\x03}\x04}]}\x0a"));
        assert_eq!(unescaped(reply[1..].to_vec()), xml);
        assert_eq!(reply[0], b'l');
        // Past the end, and an offset beyond any size.
        assert_eq!(
            ask_str(
                &mock,
                &format!("qXfer:features:read:target.xml:{:x},10", xml.len())
            ),
            "l"
        );
        assert_eq!(
            ask_str(
                &mock,
                "qXfer:features:read:target.xml:ffffffffffffffff,ffffffffffffffff"
            ),
            "l"
        );
        assert_eq!(ask_str(&mock, "qXfer:features:read:other.xml:0,10"), "E00");
        assert_eq!(ask_str(&mock, "qXfer:features:read:target.xml:0"), "E01");
        assert_eq!(
            ask_str(&mock, "qXfer:features:read:target.xml:zz,10"),
            "E01"
        );
        assert_eq!(ask_str(&mock, "qXfer:features:write:target.xml:0:abc"), "");
        assert_eq!(ask_str(&mock, "qXfer:libraries:read::0,10"), "");
    }

    #[test]
    fn big_target_xml_fits_the_packet_size() {
        let mut mock = Mock::new();
        mock.xml = "<!-- ".to_string() + &"}*".repeat(PACKET_SIZE) + " -->";
        let reply = ask(&mock, b"qXfer:features:read:target.xml:0,ffffff");
        assert_eq!(reply[0], b'm');
        let data = unescaped(reply[1..].to_vec());
        assert_eq!(data, mock.xml.as_bytes()[..data.len()]);
        // `parse_output` checked the size; most of the room is used.
        assert!(reply.len() > PACKET_SIZE - 2);
    }

    #[test]
    fn threads_xml_lists_every_thread() {
        let mock = Mock::new();
        let reply = ask(&mock, b"qXfer:threads:read::0,1000");
        assert_eq!(
            String::from_utf8(unescaped(reply)).unwrap(),
            "l<?xml version=\"1.0\"?>\n<threads>\n\
             <thread id=\"1\" core=\"0\" name=\"swapper/0\"/>\n\
             <thread id=\"2\" core=\"3\" name=\"bash &lt;&amp;&gt;&quot;&apos;\"/>\n\
             <thread id=\"1a\" name=\"kworker/u8:2\"/>\n\
             </threads>\n"
        );
        let replies = session(
            &mock,
            &[b"qXfer:threads:read::0,10", b"qXfer:threads:read::10,1000"],
        );
        assert_eq!(replies[0], b"m<?xml version=\"1");
        assert_eq!(replies[1][0], b'l');
        assert_eq!(ask_str(&mock, "qXfer:threads:read:x:0,10"), "E00");
    }

    #[test]
    fn thread_info_lists() {
        let mock = Mock::new();
        let replies = session(
            &mock,
            &[
                b"qfThreadInfo",
                b"qsThreadInfo",
                b"qsThreadInfo",
                b"qfThreadInfo",
            ],
        );
        assert_eq!(replies, [&b"m1,2,1a"[..], b"l", b"l", b"m1,2,1a"]);
    }

    #[test]
    fn long_thread_lists_come_in_chunks() {
        let mut mock = Mock::new();
        mock.threads = (1..=10_000)
            .map(|id| ThreadInfo {
                id: id << 32,
                name: String::new(),
                core: None,
            })
            .collect();
        let mut packets: Vec<&[u8]> = vec![b"qfThreadInfo"];
        packets.extend([&b"qsThreadInfo"[..]; 20]);
        let replies = session(&mock, &packets);
        let mut ids = Vec::new();
        for reply in &replies {
            if reply == b"l" {
                break;
            }
            assert_eq!(reply[0], b'm');
            for id in reply[1..].split(|&b| b == b',') {
                ids.push(parse_hex(id).unwrap());
            }
        }
        let expected: Vec<u64> = mock.threads.iter().map(|t| t.id).collect();
        assert_eq!(ids, expected);
        assert!(replies.iter().filter(|r| r[0] == b'm').count() > 1);
    }

    #[test]
    fn small_queries() {
        let mut mock = Mock::new();
        assert_eq!(ask_str(&mock, "qC"), "QC2");
        assert_eq!(ask_str(&mock, "qAttached"), "1");
        assert_eq!(ask_str(&mock, "qAttached:1"), "1");
        assert_eq!(ask_str(&mock, "qThreadExtraInfo,1a"), hex(b"kworker/u8:2"));
        assert_eq!(ask_str(&mock, "qThreadExtraInfo,p1.1"), hex(b"swapper/0"));
        assert_eq!(ask_str(&mock, "qThreadExtraInfo,5"), "E03");
        assert_eq!(ask_str(&mock, "qThreadExtraInfo,-1"), "E03");
        assert_eq!(ask_str(&mock, "qThreadExtraInfo,"), "E01");
        assert_eq!(ask_str(&mock, "qOffsets"), "");
        mock.offsets = Some(0x1000);
        assert_eq!(ask_str(&mock, "qOffsets"), "Text=1000;Data=1000;Bss=1000");
        mock.offsets = Some(-0x20_0000);
        assert_eq!(
            ask_str(&mock, "qOffsets"),
            "Text=ffffffffffe00000;Data=ffffffffffe00000;Bss=ffffffffffe00000"
        );
        assert_eq!(ask_str(&mock, "qSymbol::"), "OK");
        assert_eq!(ask_str(&mock, "qTStatus"), "");
        assert_eq!(ask_str(&mock, "qRcmd,6c73"), "");
        assert_eq!(ask_str(&mock, "vMustReplyEmpty"), "");
        assert_eq!(ask_str(&mock, "vCont?"), "");
        assert_eq!(ask_str(&mock, "vKill;1"), "");
        assert_eq!(ask_str(&mock, "QPassSignals:e;10"), "");
        assert_eq!(ask_str(&mock, "QNonStop:1"), "");
        assert_eq!(ask_str(&mock, "!"), "");
        assert_eq!(ask_str(&mock, ""), "");
    }

    #[test]
    fn stop_reply_and_thread_selection() {
        let mock = Mock::new();
        assert_eq!(ask_str(&mock, "?"), "T05thread:2;");
        let thread1 = "8877665544332211xxxxxxxxabcdeexxxx";
        let thread2 = "0807060504030201xxxxxxxxabcdeexxxx";
        let replies = session(
            &mock,
            &[
                b"g", b"Hg1", b"g", b"?", b"g", b"Hgp1.1", b"g", b"Hg0", b"g", b"Hg1", b"Hg-1",
                b"g",
            ],
        );
        let replies: Vec<String> = replies
            .into_iter()
            .map(|r| String::from_utf8(r).unwrap())
            .collect();
        assert_eq!(
            replies,
            [
                thread2,
                "OK",
                thread1,
                "T05thread:2;",
                thread2,
                "OK",
                thread1,
                "OK",
                thread2,
                "OK",
                "OK",
                thread1
            ]
        );
        assert_eq!(ask_str(&mock, "Hg5"), "E03");
        assert_eq!(ask_str(&mock, "Hgzz"), "E01");
        assert_eq!(ask_str(&mock, "Hg"), "E01");
        assert_eq!(ask_str(&mock, "Hc-1"), "OK");
        assert_eq!(ask_str(&mock, "Hc0"), "OK");
        assert_eq!(ask_str(&mock, "Hc1a"), "OK");
        assert_eq!(ask_str(&mock, "Hc7"), "E03");
        assert_eq!(ask_str(&mock, "Hm1"), "");
        assert_eq!(ask_str(&mock, "H"), "E01");
    }

    #[test]
    fn thread_alive() {
        let mock = Mock::new();
        assert_eq!(ask_str(&mock, "T1"), "OK");
        assert_eq!(ask_str(&mock, "T1a"), "OK");
        assert_eq!(ask_str(&mock, "Tp1.2"), "OK");
        assert_eq!(ask_str(&mock, "T3"), "E03");
        assert_eq!(ask_str(&mock, "T0"), "E03");
        assert_eq!(ask_str(&mock, "T-1"), "E03");
        assert_eq!(ask_str(&mock, "Tx"), "E01");
        assert_eq!(ask_str(&mock, "T10000000000000000"), "E01");
    }

    #[test]
    fn registers() {
        let mock = Mock::new();
        assert_eq!(ask_str(&mock, "p0"), "0807060504030201");
        assert_eq!(ask_str(&mock, "p1"), "xxxxxxxx");
        assert_eq!(ask_str(&mock, "p2"), "abcd");
        assert_eq!(ask_str(&mock, "p3"), "eexxxx");
        assert_eq!(ask_str(&mock, "p4"), "E16");
        assert_eq!(ask_str(&mock, "pffffffffffffffff"), "E16");
        assert_eq!(ask_str(&mock, "p"), "E01");
        assert_eq!(ask_str(&mock, "p-1"), "E01");
        assert_eq!(ask_str(&mock, "gx"), "");
        // A thread whose registers cannot be read: the text, made safe.
        let replies = session(&mock, &[b"Hg1a", b"g", b"p0"]);
        let text = b"E.no saved registers for ?26 (?x??)?".to_vec();
        assert_eq!(replies, [b"OK".to_vec(), text.clone(), text]);
    }

    #[test]
    fn hex_memory_reads() {
        let mock = Mock::new();
        assert_eq!(ask_str(&mock, "m1000,10"), hex(&LOW));
        assert_eq!(ask_str(&mock, "m1002,3"), "23247d");
        // Up to the hole.
        assert_eq!(ask_str(&mock, "m100e,8"), "0e0f");
        assert_eq!(ask_str(&mock, "m1010,4"), "E0e");
        assert_eq!(ask_str(&mock, "m20000,4"), "E0e");
        assert_eq!(ask_str(&mock, "m1000,0"), "");
        assert_eq!(ask_str(&mock, "m1000"), "E01");
        assert_eq!(ask_str(&mock, "m,4"), "E01");
        assert_eq!(ask_str(&mock, "mzz,4"), "E01");
        assert_eq!(ask_str(&mock, "m1000,4,"), "E01");
        assert_eq!(ask_str(&mock, "m10000000000000000,1"), "E01");
        // Not past the end of the address space.
        assert_eq!(ask_str(&mock, "mffffffffffffffff,100"), "ff");
        assert_eq!(ask_str(&mock, "mfffffffffffffffe,ffffffffffffffff"), "feff");
    }

    #[test]
    fn huge_reads_are_bounded() {
        let mock = Mock::new();
        let reply = ask(&mock, b"m2000,ffffffffffffffff");
        assert_eq!(reply.len(), PACKET_SIZE);
        assert_eq!(mock.max_read.get(), PACKET_SIZE / 2);
        assert_eq!(&reply[..8], b"00010203");
        let reply = ask(&mock, b"x2000,ffffffff");
        assert_eq!(mock.max_read.get(), PACKET_SIZE - 1);
        assert_eq!(reply[0], b'b');
        // 0x2000..0x3000 as is but for 64 escaped bytes, then `}` escaped.
        let data = unescaped(reply[1..].to_vec());
        assert_eq!(data.len(), 0x1000 + (PACKET_SIZE - 1 - 0x1000 - 64) / 2);
        assert!(data[..0x1000]
            .iter()
            .enumerate()
            .all(|(i, &b)| b == i as u8));
        assert!(data[0x1000..].iter().all(|&b| b == b'}'));
        // All bytes escaped: half as many fit.
        let reply = ask(&mock, b"x3000,ffff");
        assert_eq!(reply.len(), PACKET_SIZE - 1);
        assert_eq!(
            unescaped(reply[1..].to_vec()),
            vec![b'}'; (PACKET_SIZE - 1) / 2]
        );
    }

    #[test]
    fn binary_memory_reads() {
        let mock = Mock::new();
        let reply = ask(&mock, b"x1000,10");
        assert_eq!(
            reply,
            b"b\x00\x01}\x03}\x04}]}\x0a\x7f\x80\xffa\x03\x20\x5d}]\x0e\x0f"
        );
        assert_eq!(unescaped(reply[1..].to_vec()), LOW);
        assert_eq!(ask(&mock, b"x100e,8"), b"b\x0e\x0f");
        assert_eq!(ask_str(&mock, "x1000,0"), "b");
        assert_eq!(ask_str(&mock, "x1010,1"), "E0e");
        assert_eq!(ask_str(&mock, "x20000,1"), "E0e");
        assert_eq!(ask_str(&mock, "x1000"), "E01");
    }

    #[test]
    fn writes_fail() {
        let mock = Mock::new();
        assert_eq!(ask_str(&mock, "G0011"), "E1e");
        assert_eq!(ask_str(&mock, "P0=1122334455667788"), "E1e");
        assert_eq!(ask_str(&mock, "M1000,2:abcd"), "E1e");
        // gdb's probe for X.
        assert_eq!(ask_str(&mock, "X1000,0:"), "E1e");
        // Escaped `#`, `$`, `}` count one byte each once decoded.
        assert_eq!(ask(&mock, b"X1000,3:}\x03}\x04}]"), b"E1e");
        assert_eq!(ask(&mock, b"X1000,6:}\x03}\x04}]"), b"E01");
        assert_eq!(ask(&mock, b"X1000,1:}"), b"E01");
        assert_eq!(ask_str(&mock, "X1000,1"), "E01");
        assert_eq!(ask_str(&mock, "Xzz,1:a"), "E01");
        // Breakpoints and watchpoints: unsupported.
        assert_eq!(ask_str(&mock, "Z0,1000,1"), "");
        assert_eq!(ask_str(&mock, "z0,1000,1"), "");
        assert_eq!(ask_str(&mock, "Z2,1000,8"), "");
    }

    #[test]
    fn resuming_is_refused_with_a_stop() {
        let mock = Mock::new();
        let on = |thread: &str| {
            vec![
                REFUSAL.as_bytes().to_vec(),
                format!("T00thread:{thread};").into_bytes(),
            ]
        };
        for packet in ["c", "s", "C05", "S0b", "c1000", "vCont;c", "vCont;s:1a;c"] {
            assert_eq!(
                session(&mock, &[packet.as_bytes()]),
                on(if packet == "vCont;s:1a;c" { "1a" } else { "2" })
            );
        }
        // The thread Hc names, else the Hg one.
        let replies = session(&mock, &[b"Hc1", b"c"]);
        assert_eq!(replies[1..], on("1"));
        let replies = session(&mock, &[b"Hg1a", b"Hc-1", b"s"]);
        assert_eq!(replies[2..], on("1a"));
        let replies = session(&mock, &[b"Hg1", b"vCont;s:9"]);
        assert_eq!(replies[1..], on("1"));
    }

    #[test]
    fn kill_ends_without_a_reply() {
        let mock = Mock::new();
        let mut input = frame(b"k");
        input.extend(frame(b"?"));
        let (result, tokens) = run(&mock, &input);
        result.unwrap();
        assert_eq!(tokens, [Out::Ack]);
    }

    #[test]
    fn detach_replies_then_ends() {
        let mock = Mock::new();
        for detach in [&b"D"[..], b"D;1"] {
            let mut input = frame(detach);
            input.push(b'+');
            input.extend(frame(b"?"));
            let (result, tokens) = run(&mock, &input);
            result.unwrap();
            assert_eq!(tokens, [Out::Ack, Out::Packet(b"OK".to_vec())]);
        }
    }

    #[test]
    fn bad_checksum_asks_again() {
        let mock = Mock::new();
        let mut input = b"$qC#00".to_vec();
        input.extend(b"$qC#zz");
        input.extend(frame(b"qC"));
        let (result, tokens) = run(&mock, &input);
        result.unwrap();
        assert_eq!(
            tokens,
            [Out::Nak, Out::Nak, Out::Ack, Out::Packet(b"QC2".to_vec())]
        );
    }

    #[test]
    fn a_rejected_reply_is_sent_again() {
        let mock = Mock::new();
        let mut input = frame(b"qC");
        input.extend(b"-x-+");
        input.extend(frame(b"T1"));
        let (result, tokens) = run(&mock, &input);
        result.unwrap();
        let qc = || Out::Packet(b"QC2".to_vec());
        assert_eq!(
            tokens,
            [
                Out::Ack,
                qc(),
                qc(),
                qc(),
                Out::Ack,
                Out::Packet(b"OK".to_vec())
            ]
        );
    }

    #[test]
    fn resends_are_capped() {
        let mock = Mock::new();
        let mut input = frame(b"qC");
        input.extend([b'-'; 20]);
        let (result, tokens) = run(&mock, &input);
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::InvalidData);
        assert_eq!(tokens.len(), 1 + 1 + MAX_RESENDS);
    }

    #[test]
    fn no_ack_mode() {
        let mock = Mock::new();
        let mut input = frame(b"QStartNoAckMode");
        input.push(b'+');
        input.extend(frame(b"qC"));
        // Acks are noise now, and a bad checksum fails the request.
        input.extend(b"-+");
        input.extend(b"$qC#00");
        input.extend(frame(b"QStartNoAckMode"));
        let (result, tokens) = run(&mock, &input);
        result.unwrap();
        let packet = |p: &[u8]| Out::Packet(p.to_vec());
        assert_eq!(
            tokens,
            [
                Out::Ack,
                packet(b"OK"),
                packet(b"QC2"),
                packet(b"E01"),
                packet(b"OK")
            ]
        );
    }

    #[test]
    fn noise_between_packets_is_skipped() {
        let mock = Mock::new();
        let mut input = b"\x03+-garbage#00\xff\x00".to_vec();
        input.extend(frame(b"qC"));
        input.extend(b"\x03");
        let (result, tokens) = run(&mock, &input);
        result.unwrap();
        assert_eq!(tokens, [Out::Ack, Out::Packet(b"QC2".to_vec())]);
        // A lone interrupt gets nothing.
        assert!(run(&mock, b"\x03").1.is_empty());
    }

    #[test]
    fn a_dollar_restarts_the_packet() {
        let mock = Mock::new();
        let mut input = b"$qSupp".to_vec();
        input.extend(frame(b"qC"));
        let (result, tokens) = run(&mock, &input);
        result.unwrap();
        assert_eq!(tokens, [Out::Ack, Out::Packet(b"QC2".to_vec())]);
    }

    #[test]
    fn a_new_packet_acknowledges_the_reply() {
        let mock = Mock::new();
        let mut input = frame(b"qC");
        input.extend(frame(b"T1"));
        let (result, tokens) = run(&mock, &input);
        result.unwrap();
        assert_eq!(
            tokens,
            [
                Out::Ack,
                Out::Packet(b"QC2".to_vec()),
                Out::Ack,
                Out::Packet(b"OK".to_vec())
            ]
        );
    }

    #[test]
    fn eof_ends_cleanly() {
        let mock = Mock::new();
        for input in [
            &b""[..],
            b"$",
            b"$qSupported:multi",
            b"$qC#",
            b"$qC#6",
            b"+",
        ] {
            let (result, tokens) = run(&mock, input);
            result.unwrap();
            assert!(tokens.is_empty(), "{input:?}: {tokens:?}");
        }
        // After a reply, while waiting for its ack.
        let (result, tokens) = run(&mock, &frame(b"qC"));
        result.unwrap();
        assert_eq!(tokens, [Out::Ack, Out::Packet(b"QC2".to_vec())]);
    }

    #[test]
    fn oversized_packets_are_rejected() {
        let mock = Mock::new();
        let big = vec![b'm'; PACKET_SIZE + 1];
        let mut input = frame(&big);
        input.push(b'+');
        input.extend(frame(&vec![b'm'; PACKET_SIZE]));
        let (result, tokens) = run(&mock, &input);
        result.unwrap();
        // The largest allowed packet is served (as a malformed `m`).
        let e01 = || Out::Packet(b"E01".to_vec());
        assert_eq!(tokens, [Out::Ack, e01(), Out::Ack, e01()]);
    }

    #[test]
    fn endless_packets_take_bounded_memory() {
        let mock = Mock::new();
        let input = (&b"$"[..]).chain(io::repeat(b'a').take(4 << 20));
        let mut out = Vec::new();
        serve(&mock, input, &mut out).unwrap();
        assert!(out.is_empty());
        let mut link = Link {
            input: BufReader::new(
                (&b"$"[..])
                    .chain(io::repeat(b'q').take(1 << 20))
                    .chain(&b"#00"[..]),
            ),
            output: Vec::new(),
            acks: true,
        };
        let mut packet = Vec::new();
        assert!(matches!(
            link.read_packet(&mut packet).unwrap(),
            Incoming::Rejected
        ));
        assert_eq!(packet.len(), PACKET_SIZE);
        assert_eq!(link.output, b"+");
    }

    #[test]
    fn interrupted_reads_are_retried() {
        struct Flaky(bool, io::Cursor<Vec<u8>>);
        impl Read for Flaky {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.0 = !self.0;
                if self.0 {
                    return Err(io::ErrorKind::Interrupted.into());
                }
                self.1.read(&mut buf[..1])
            }
        }
        let mock = Mock::new();
        let mut out = Vec::new();
        serve(&mock, Flaky(false, io::Cursor::new(frame(b"qC"))), &mut out).unwrap();
        assert_eq!(parse_output(&out), [Out::Ack, Out::Packet(b"QC2".to_vec())]);
    }

    #[test]
    fn write_errors_end_the_session() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let err = serve(&Mock::new(), &frame(b"qC")[..], Broken).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn helpers() {
        assert_eq!(
            escape_xml("a<b>&\"c'\u{1}\t\u{e9}"),
            "a&lt;b&gt;&amp;&quot;c&apos;?\t\u{e9}"
        );
        assert_eq!(unescaped(b"a}]b}".to_vec()), b"a}b");
        assert_eq!(unescaped(b"}\x03}\x04".to_vec()), b"#$");
        assert_eq!(parse_thread(b"1a"), Some(ThreadSel::Id(0x1a)));
        assert_eq!(parse_thread(b"0"), Some(ThreadSel::Any));
        assert_eq!(parse_thread(b"-1"), Some(ThreadSel::All));
        assert_eq!(parse_thread(b"p1.-1"), Some(ThreadSel::All));
        assert_eq!(parse_thread(b"p1.5"), Some(ThreadSel::Id(5)));
        assert_eq!(parse_thread(b"p1"), Some(ThreadSel::Any));
        assert_eq!(parse_thread(b"p-1"), Some(ThreadSel::Any));
        assert_eq!(parse_thread(b"p"), None);
        assert_eq!(parse_thread(b"-2"), None);
        assert_eq!(parse_thread(b"+1"), None);
        assert_eq!(parse_hex(b"ffffffffffffffff"), Some(u64::MAX));
        assert_eq!(parse_hex(b"00000000000000000001"), Some(1));
        assert_eq!(parse_hex(b"10000000000000000"), None);
        let mut out = Vec::new();
        assert_eq!(push_escaped(&mut out, b"a#b", 3), 2);
        assert_eq!(out, b"a}\x03");
    }

    /// A small deterministic generator (a 64-bit LCG).
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> u32 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) as u32
        }
        fn below(&mut self, n: usize) -> usize {
            self.next() as usize % n
        }
    }

    #[test]
    fn random_input_never_panics() {
        const PREFIXES: &[&str] = &[
            "m",
            "x",
            "p",
            "g",
            "G",
            "M",
            "X",
            "P",
            "Hg",
            "Hc",
            "T",
            "?",
            "c",
            "s",
            "C",
            "vCont;",
            "vCont?",
            "qXfer:features:read:target.xml:",
            "qXfer:threads:read::",
            "qXfer:",
            "qThreadExtraInfo,",
            "qfThreadInfo",
            "qsThreadInfo",
            "qSupported:",
            "qC",
            "qOffsets",
            "QStartNoAckMode",
            "Z0,",
            "D",
            "k",
            "qAttached:",
            "",
        ];
        const TAILS: &[u8] = b"0123456789abcdefABCDEF,:;-p.x}#$*+ \x00\x03\xff";
        let mut mock = Mock::new();
        mock.offsets = Some(-1);
        let mut rng = Lcg(0x5eed);
        for round in 0..4000 {
            let mut input = Vec::new();
            for _ in 0..rng.below(8) {
                match rng.below(4) {
                    // Raw noise.
                    0 => {
                        for _ in 0..rng.below(40) {
                            input.push(rng.next() as u8);
                        }
                    }
                    // Noise from the protocol's own bytes.
                    1 => {
                        for _ in 0..rng.below(40) {
                            input.push(TAILS[rng.below(TAILS.len())]);
                        }
                    }
                    // Well-framed packets with random arguments, acked.
                    _ => {
                        let mut packet = PREFIXES[rng.below(PREFIXES.len())].as_bytes().to_vec();
                        for _ in 0..rng.below(24) {
                            packet.push(TAILS[rng.below(TAILS.len())]);
                        }
                        let framed = frame(&packet);
                        let cut = if rng.below(10) == 0 {
                            rng.below(framed.len())
                        } else {
                            framed.len()
                        };
                        input.extend(&framed[..cut]);
                        if rng.below(2) == 0 {
                            input.push(b'+');
                        }
                    }
                }
            }
            let mut out = Vec::new();
            if let Err(e) = serve(&mock, &input[..], &mut out) {
                assert_eq!(e.kind(), io::ErrorKind::InvalidData, "round {round}");
            }
            // Every reply well framed, checksummed and within size.
            parse_output(&out);
        }
    }
}
