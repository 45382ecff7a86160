//! The bounded tail of what a plugin printed or logged during one attempt.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// How many bytes of an attempt's output are kept (the latest ones).
pub const LOG_TAIL_BYTES: usize = 16 * 1024;

#[derive(Debug, Default)]
struct Tail {
    bytes: VecDeque<u8>,
    dropped: u64,
}

/// Shared, bounded buffer: guest stdout, stderr and `log` lines all append here. Writes
/// never fail (a guest whose stderr write failed would panic); old bytes are dropped.
#[derive(Debug, Clone, Default)]
pub struct LogTail {
    inner: Arc<Mutex<Tail>>,
    /// When set, complete lines written through this handle also go to `tracing`
    /// (the pending partial line is kept here).
    echo: Option<Arc<Mutex<Vec<u8>>>>,
}

/// Longest partial line kept for echoing before it is cut.
const MAX_ECHO_LINE: usize = 4096;

impl LogTail {
    /// A handle on the same tail whose writes are also logged, line by line (for the
    /// guest's stderr).
    pub fn echoing(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            echo: Some(Arc::default()),
        }
    }

    fn write_stream(&self, data: &[u8]) {
        self.append(data);
        let Some(pending) = &self.echo else { return };
        let mut pending = pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.extend_from_slice(data);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line[..line.len() - 1]);
            if !line.trim().is_empty() {
                tracing::info!(target: "planrt::plugin::stderr", "{}", line.trim_end());
            }
        }
        if pending.len() > MAX_ECHO_LINE {
            tracing::info!(target: "planrt::plugin::stderr", "{}…", String::from_utf8_lossy(&pending));
            pending.clear();
        }
    }

    /// Appends bytes, dropping the oldest past [`LOG_TAIL_BYTES`].
    pub fn append(&self, data: &[u8]) {
        let mut tail = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let data = if data.len() > LOG_TAIL_BYTES {
            tail.dropped += (data.len() - LOG_TAIL_BYTES) as u64;
            &data[data.len() - LOG_TAIL_BYTES..]
        } else {
            data
        };
        let overflow = (tail.bytes.len() + data.len()).saturating_sub(LOG_TAIL_BYTES);
        tail.bytes.drain(..overflow);
        tail.dropped += overflow as u64;
        tail.bytes.extend(data);
    }

    /// Appends one line (a newline is added).
    pub fn append_line(&self, line: &str) {
        let mut data = Vec::with_capacity(line.len() + 1);
        data.extend_from_slice(line.as_bytes());
        data.push(b'\n');
        self.append(&data);
    }

    /// The tail as text (lossy UTF-8), saying how much was dropped; `None` if empty.
    pub fn snapshot(&self) -> Option<String> {
        let tail = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if tail.bytes.is_empty() {
            return None;
        }
        let (front, back) = tail.bytes.as_slices();
        let mut bytes = Vec::with_capacity(front.len() + back.len());
        bytes.extend_from_slice(front);
        bytes.extend_from_slice(back);
        let text = String::from_utf8_lossy(&bytes);
        Some(if tail.dropped > 0 {
            format!("[{} earlier bytes dropped]\n{text}", tail.dropped)
        } else {
            text.into_owned()
        })
    }
}

impl IsTerminal for LogTail {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogTail {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for LogTail {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.write_stream(&bytes);
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
impl Pollable for LogTail {
    async fn ready(&mut self) {}
}

impl AsyncWrite for LogTail {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.write_stream(buf);
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

    #[test]
    fn keeps_the_latest_bytes_and_counts_the_rest() {
        let tail = LogTail::default();
        assert_eq!(tail.snapshot(), None);
        tail.append_line("first");
        assert_eq!(tail.snapshot().unwrap(), "first\n");
        let filler = "x".repeat(LOG_TAIL_BYTES);
        tail.append(filler.as_bytes());
        tail.append_line("last");
        let snapshot = tail.snapshot().unwrap();
        assert!(
            snapshot.starts_with("[11 earlier bytes dropped]\n"),
            "{}",
            &snapshot[..40]
        );
        assert!(snapshot.ends_with("xxlast\n"));
        assert!(!snapshot.contains("first"));
    }

    #[test]
    fn a_single_huge_write_keeps_its_end() {
        let tail = LogTail::default();
        let mut data = vec![b'a'; LOG_TAIL_BYTES * 2];
        data.extend_from_slice(b"END");
        tail.append(&data);
        let snapshot = tail.snapshot().unwrap();
        assert!(snapshot.ends_with("END"));
        assert!(snapshot.starts_with(&format!("[{} earlier bytes dropped]", LOG_TAIL_BYTES + 3)));
    }
}
