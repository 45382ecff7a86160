//! stderr for people: colour only on a terminal and never with `NO_COLOR` set, and log
//! lines that never tear a progress bar (each line is written while the bars are
//! cleared, then the bars are drawn again below it).

use std::io::{IsTerminal, Write};

use indicatif::{MultiProgress, ProgressDrawTarget};
use tracing_subscriber::fmt::MakeWriter;

/// What stderr is, decided once at start.
#[derive(Clone)]
pub struct Terminal {
    colour: bool,
    /// Present when stderr is a terminal: every progress bar is drawn through it.
    bars: Option<MultiProgress>,
}

impl std::fmt::Debug for Terminal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Terminal")
            .field("colour", &self.colour)
            .field("bars", &self.bars.is_some())
            .finish()
    }
}

impl Terminal {
    /// Looks at stderr and `NO_COLOR` (<https://no-color.org>: set and not empty).
    pub fn detect() -> Self {
        let tty = std::io::stderr().is_terminal();
        let no_colour = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Self {
            colour: tty && !no_colour,
            bars: tty.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
        }
    }

    /// Whether log lines may carry ANSI colour.
    pub fn colour(&self) -> bool {
        self.colour
    }

    /// Where progress bars go, when stderr is a terminal.
    pub fn bars(&self) -> Option<&MultiProgress> {
        self.bars.as_ref()
    }

    /// The writer `tracing` formats each event into.
    pub fn log_writer(&self) -> LogWriter {
        LogWriter {
            bars: self.bars.clone(),
        }
    }
}

/// Makes one [`LineWriter`] per log event.
#[derive(Clone)]
pub struct LogWriter {
    bars: Option<MultiProgress>,
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            bars: self.bars.clone(),
            buffer: Vec::with_capacity(256),
        }
    }
}

/// Collects one formatted event and writes it to stderr in one piece when dropped, with
/// the progress bars suspended around it.
pub struct LineWriter {
    bars: Option<MultiProgress>,
    buffer: Vec<u8>,
}

impl Write for LineWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        let buffer = std::mem::take(&mut self.buffer);
        // A log line that cannot be written has nowhere else to go.
        let write = move || drop(std::io::stderr().lock().write_all(&buffer));
        match &self.bars {
            Some(bars) => bars.suspend(write),
            None => write(),
        }
    }
}
