//! Everything a plugin prints or logs during one call: guest stdout, guest stderr and
//! `log` lines all land in one bounded tail kept with the attempt; stderr and `log` lines
//! also go to the host log, together capped at [`LOG_LINES_PER_SECOND`] (the log says how
//! many were dropped), one line at most [`MAX_LOG_LINE`] characters. Secret values are
//! masked in both.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

use crate::plan::Redactor;

/// How many bytes of an attempt's output are kept (the latest ones).
pub const LOG_TAIL_BYTES: usize = 16 * 1024;
/// Lines (stderr and `log` together) a plugin may send to the host log per second; the
/// rest are dropped from the host log (they still reach the tail).
pub const LOG_LINES_PER_SECOND: u32 = 100;
/// Longest line sent to the host log; longer ones are cut, saying so.
pub const MAX_LOG_LINE: usize = 4096;

/// Severity of a plugin's log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestLevel {
    /// Trace.
    Trace,
    /// Debug.
    Debug,
    /// Info.
    Info,
    /// Warn.
    Warn,
    /// Error.
    Error,
}

impl GuestLevel {
    fn label(self) -> &'static str {
        match self {
            Self::Trace => "trace",
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }
}

#[derive(Debug, Default)]
struct Tail {
    bytes: VecDeque<u8>,
    dropped: u64,
}

impl Tail {
    /// Appends bytes, dropping the oldest past [`LOG_TAIL_BYTES`].
    fn append(&mut self, data: &[u8]) {
        let data = if data.len() > LOG_TAIL_BYTES {
            self.dropped += (data.len() - LOG_TAIL_BYTES) as u64;
            &data[data.len() - LOG_TAIL_BYTES..]
        } else {
            data
        };
        let overflow = (self.bytes.len() + data.len()).saturating_sub(LOG_TAIL_BYTES);
        self.bytes.drain(..overflow);
        self.dropped += overflow as u64;
        self.bytes.extend(data);
    }
}

/// Counts host-log lines in one-second windows.
#[derive(Debug)]
struct LogRate {
    window_start: Instant,
    in_window: u32,
    dropped_in_window: u64,
    dropped_total: u64,
}

impl LogRate {
    fn new(now: Instant) -> Self {
        Self {
            window_start: now,
            in_window: 0,
            dropped_in_window: 0,
            dropped_total: 0,
        }
    }

    /// Whether one more line may go to the host log at `now`; says how many were dropped
    /// in a window when the next one begins.
    fn admit(&mut self, now: Instant) -> bool {
        if now.duration_since(self.window_start) >= Duration::from_secs(1) {
            self.report_dropped();
            self.window_start = now;
            self.in_window = 0;
        }
        self.in_window += 1;
        if self.in_window > LOG_LINES_PER_SECOND {
            self.dropped_in_window += 1;
            self.dropped_total += 1;
            false
        } else {
            true
        }
    }

    fn report_dropped(&mut self) {
        if self.dropped_in_window > 0 {
            tracing::warn!(
                target: "planrt::plugin",
                dropped = self.dropped_in_window,
                "plugin wrote more than {LOG_LINES_PER_SECOND} lines/s: {} line(s) dropped from the host log (the attempt's log tail keeps the latest {} KiB)",
                self.dropped_in_window,
                LOG_TAIL_BYTES / 1024
            );
            self.dropped_in_window = 0;
        }
    }
}

/// A piece of stderr on its way to the host log.
enum Piece {
    /// A whole line.
    Line(Vec<u8>),
    /// The first [`MAX_LOG_LINE`] bytes of a longer line.
    Cut(Vec<u8>),
}

/// Splits the guest's stderr into lines for the host log.
#[derive(Debug, Default)]
struct StderrLines {
    /// Bytes after the last newline, waiting for the rest of their line.
    pending: Vec<u8>,
    /// The current line was too long: its start went out, the rest is skipped.
    skipping: bool,
}

impl StderrLines {
    fn push(&mut self, mut data: &[u8]) -> Vec<Piece> {
        let mut pieces = Vec::new();
        while let Some(end) = data.iter().position(|b| *b == b'\n') {
            if self.skipping {
                self.skipping = false;
            } else {
                self.pending.extend_from_slice(&data[..end]);
                pieces.push(Piece::Line(std::mem::take(&mut self.pending)));
            }
            data = &data[end + 1..];
        }
        if !self.skipping {
            self.pending.extend_from_slice(data);
            if self.pending.len() > MAX_LOG_LINE {
                let mut start = std::mem::take(&mut self.pending);
                start.truncate(MAX_LOG_LINE);
                pieces.push(Piece::Cut(start));
                self.skipping = true;
            }
        }
        pieces
    }

    /// The last line, if it had no newline.
    fn finish(&mut self) -> Option<Vec<u8>> {
        let rest = std::mem::take(&mut self.pending);
        (!self.skipping && !rest.is_empty()).then_some(rest)
    }
}

#[derive(Debug)]
struct Shared {
    tail: Mutex<Tail>,
    rate: Mutex<LogRate>,
    stderr_lines: Mutex<StderrLines>,
    redactor: Redactor,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// One call's output: cheap to clone, shared by its streams and host imports.
#[derive(Debug, Clone)]
pub struct GuestLog {
    shared: Arc<Shared>,
}

impl Default for GuestLog {
    fn default() -> Self {
        Self::new(Redactor::default())
    }
}

impl GuestLog {
    /// An empty log whose host-log lines and tail are masked with `redactor`.
    pub fn new(redactor: Redactor) -> Self {
        Self {
            shared: Arc::new(Shared {
                tail: Mutex::default(),
                rate: Mutex::new(LogRate::new(Instant::now())),
                stderr_lines: Mutex::default(),
                redactor,
            }),
        }
    }

    /// The guest's stdout: into the tail only.
    pub fn stdout(&self) -> GuestStream {
        GuestStream {
            log: self.clone(),
            stderr: false,
        }
    }

    /// The guest's stderr: into the tail, and line by line to the host log.
    pub fn stderr(&self) -> GuestStream {
        GuestStream {
            log: self.clone(),
            stderr: true,
        }
    }

    /// A `log` line from the guest.
    pub fn log(&self, level: GuestLevel, message: &str) {
        let mut line = Vec::with_capacity(message.len() + 10);
        line.extend_from_slice(format!("[{}] ", level.label()).as_bytes());
        line.extend_from_slice(message.as_bytes());
        line.push(b'\n');
        lock(&self.shared.tail).append(&line);
        self.to_host_log(level, message, false);
    }

    /// Masks, cuts and rate-caps one line on its way to `tracing` (inside the caller's
    /// span, so plan/task/attempt fields come along). `cut`: the line was already cut
    /// short, so its end may be the start of a secret.
    fn to_host_log(&self, level: GuestLevel, line: &str, cut: bool) {
        if !lock(&self.shared.rate).admit(Instant::now()) {
            return;
        }
        let redactor = &self.shared.redactor;
        let mut line = redactor.redact(line);
        let cut_at = line.char_indices().nth(MAX_LOG_LINE).map(|(at, _)| at);
        if let Some(at) = cut_at {
            line.to_mut().truncate(at);
        }
        let line = if cut || cut_at.is_some() {
            format!(
                "{}… [line cut at {MAX_LOG_LINE} characters]",
                redactor.redact_cut_end(&line)
            )
        } else {
            line.into_owned()
        };
        match level {
            GuestLevel::Trace => tracing::trace!(target: "planrt::plugin", "{line}"),
            GuestLevel::Debug => tracing::debug!(target: "planrt::plugin", "{line}"),
            GuestLevel::Info => tracing::info!(target: "planrt::plugin", "{line}"),
            GuestLevel::Warn => tracing::warn!(target: "planrt::plugin", "{line}"),
            GuestLevel::Error => tracing::error!(target: "planrt::plugin", "{line}"),
        }
    }

    fn write(&self, data: &[u8], stderr: bool) {
        lock(&self.shared.tail).append(data);
        if !stderr {
            return;
        }
        let pieces = lock(&self.shared.stderr_lines).push(data);
        for piece in pieces {
            self.stderr_to_host_log(piece);
        }
    }

    fn stderr_to_host_log(&self, piece: Piece) {
        let (bytes, cut) = match piece {
            Piece::Line(bytes) => (bytes, false),
            Piece::Cut(bytes) => (bytes, true),
        };
        let line = String::from_utf8_lossy(&bytes);
        if !line.trim().is_empty() {
            self.to_host_log(GuestLevel::Info, line.trim_end(), cut);
        }
    }

    /// Ends the call: a partial last stderr line goes to the host log, and lines dropped
    /// since the last report are reported.
    pub fn finish(&self) {
        let rest = lock(&self.shared.stderr_lines).finish();
        if let Some(rest) = rest {
            self.stderr_to_host_log(Piece::Line(rest));
        }
        lock(&self.shared.rate).report_dropped();
    }

    /// The secrets this log masks.
    pub fn redactor(&self) -> &Redactor {
        &self.shared.redactor
    }

    /// Lines dropped from the host log so far.
    pub fn dropped_lines(&self) -> u64 {
        lock(&self.shared.rate).dropped_total
    }

    /// The tail as text (lossy UTF-8), secrets masked, saying how much was dropped;
    /// `None` if nothing was written.
    pub fn tail(&self) -> Option<String> {
        let tail = lock(&self.shared.tail);
        if tail.bytes.is_empty() {
            return None;
        }
        let (front, back) = tail.bytes.as_slices();
        let mut bytes = Vec::with_capacity(front.len() + back.len());
        bytes.extend_from_slice(front);
        bytes.extend_from_slice(back);
        // A cut inside a UTF-8 character starts at its next one (not at U+FFFD, which
        // would hide a cut-off secret from the masking).
        let start = if tail.dropped > 0 {
            bytes
                .iter()
                .take(3)
                .take_while(|b| (**b & 0b1100_0000) == 0b1000_0000)
                .count()
        } else {
            0
        };
        let text = String::from_utf8_lossy(&bytes[start..]);
        Some(if tail.dropped > 0 {
            let text = self.shared.redactor.redact_cut(&text);
            format!("[{} earlier bytes dropped]\n{text}", tail.dropped)
        } else {
            self.shared.redactor.redact(&text).into_owned()
        })
    }
}

/// Guest stdout or stderr, as wasmtime-wasi wants it. Writes never fail (a guest whose
/// stderr write failed would panic).
#[derive(Debug, Clone)]
pub struct GuestStream {
    log: GuestLog,
    stderr: bool,
}

impl IsTerminal for GuestStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for GuestStream {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.log.write(&bytes, self.stderr);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }
    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(LOG_TAIL_BYTES)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestStream {
    async fn ready(&mut self) {}
}

impl AsyncWrite for GuestStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.log.write(buf, self.stderr);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stdout(log: &GuestLog, data: &[u8]) {
        log.write(data, false);
    }

    #[test]
    fn keeps_the_latest_bytes_and_counts_the_rest() {
        let log = GuestLog::default();
        assert_eq!(log.tail(), None);
        log.log(GuestLevel::Info, "first");
        assert_eq!(log.tail().unwrap(), "[info] first\n");
        let filler = "x".repeat(LOG_TAIL_BYTES);
        stdout(&log, filler.as_bytes());
        stdout(&log, b"last\n");
        let tail = log.tail().unwrap();
        assert!(
            tail.starts_with("[18 earlier bytes dropped]\n"),
            "{}",
            &tail[..40]
        );
        assert!(tail.ends_with("xxlast\n"));
        assert!(!tail.contains("first"));
    }

    #[test]
    fn a_single_huge_write_keeps_its_end() {
        let log = GuestLog::default();
        let mut data = vec![b'a'; LOG_TAIL_BYTES * 2];
        data.extend_from_slice(b"END");
        stdout(&log, &data);
        let tail = log.tail().unwrap();
        assert!(tail.ends_with("END"));
        assert!(tail.starts_with(&format!("[{} earlier bytes dropped]", LOG_TAIL_BYTES + 3)));
    }

    #[test]
    fn the_tail_masks_secrets_even_where_it_was_cut() {
        let log = GuestLog::new(Redactor::new(["topsecret-value".to_owned()]));
        stdout(&log, b"token=topsecret-value\n");
        assert_eq!(log.tail().unwrap(), "token=***\n");
        let mut data = b"topsecret-value".to_vec();
        data.extend(std::iter::repeat_n(b'.', LOG_TAIL_BYTES - 6));
        stdout(&log, &data);
        let tail = log.tail().unwrap();
        let kept = tail.split_once('\n').unwrap().1;
        assert!(kept.starts_with("***..."), "{}", &kept[..20]);
        assert!(!tail.contains("-value"));
    }

    #[test]
    fn the_rate_caps_a_burst_per_window_and_counts_what_it_dropped() {
        let start = Instant::now();
        let mut rate = LogRate::new(start);
        let admitted = (0..500).filter(|_| rate.admit(start)).count();
        assert_eq!(admitted, LOG_LINES_PER_SECOND as usize);
        assert_eq!(rate.dropped_total, 400);
        let next_window = start + Duration::from_millis(1001);
        assert!(rate.admit(next_window), "a new window admits again");
        assert_eq!(rate.dropped_in_window, 0, "reported at the window's end");
        assert_eq!(rate.dropped_total, 400);
    }

    #[test]
    fn stderr_and_log_lines_share_one_cap() {
        let log = GuestLog::default();
        for i in 0..150 {
            log.write(format!("stderr {i}\n").as_bytes(), true);
            log.log(GuestLevel::Info, "log line");
        }
        // 300 lines within a second: 100 reach the host log, 200 are dropped.
        assert_eq!(log.dropped_lines(), 200);
        // stdout never reaches the host log, so it is never dropped.
        for _ in 0..1000 {
            stdout(&log, b"stdout\n");
        }
        assert_eq!(log.dropped_lines(), 200);
    }

    #[test]
    fn an_endless_stderr_line_goes_out_cut_with_no_part_of_a_secret() {
        let secret = "topsecret-value";
        let log = GuestLog::new(Redactor::new([secret.to_owned()]));
        // The cut at MAX_LOG_LINE falls inside the secret.
        let mut line = "x".repeat(MAX_LOG_LINE - 6);
        line.push_str(secret);
        line.push_str(&"y".repeat(3 * MAX_LOG_LINE));
        let pieces = lock(&log.shared.stderr_lines).push(line.as_bytes());
        assert_eq!(pieces.len(), 1, "the rest of the line is skipped");
        let Piece::Cut(cut) = &pieces[0] else {
            panic!("a cut piece")
        };
        assert!(String::from_utf8_lossy(cut).ends_with("topsec"));
        assert_eq!(
            log.shared
                .redactor
                .redact_cut_end(&String::from_utf8_lossy(cut)),
            format!("{}***", "x".repeat(MAX_LOG_LINE - 6))
        );
        let after = lock(&log.shared.stderr_lines).push(b"yyy\nnext line\n");
        assert!(matches!(&after[..], [Piece::Line(l)] if l == b"next line"));
    }

    #[test]
    fn a_tail_cut_inside_a_character_starts_at_the_next_one() {
        let log = GuestLog::new(Redactor::new(["ünïcödé-secret".to_owned()]));
        let mut data = "ünïcödé-secret".as_bytes().to_vec();
        data.extend(std::iter::repeat_n(b'.', LOG_TAIL_BYTES - 8));
        stdout(&log, &data);
        // 10 bytes dropped: the cut lands inside "é" (bytes 9 and 10).
        let tail = log.tail().unwrap();
        let kept = tail.split_once('\n').unwrap().1;
        assert!(kept.starts_with("***."), "{}", &kept[..10]);
        assert!(!tail.contains('\u{fffd}'));
    }

    #[test]
    fn stderr_is_split_into_lines_across_writes() {
        let log = GuestLog::default();
        log.write(b"par", true);
        log.write(b"tial\nwhole\n", true);
        log.write(b"no newline", true);
        log.finish();
        // Three lines went to the host log (and none were dropped).
        assert_eq!(lock(&log.shared.rate).in_window, 3);
        assert_eq!(log.tail().unwrap(), "partial\nwhole\nno newline");
    }
}
