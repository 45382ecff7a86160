//! Plugin progress for people: an `indicatif` bar per running attempt on a terminal,
//! throttled plain lines on stderr otherwise. Never on stdout.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::terminal::Terminal;
use crate::plan::Task;
use crate::runtime::ProgressSink;

/// How often plain progress lines may be written per attempt.
const PLAIN_LINE_INTERVAL: Duration = Duration::from_secs(1);

/// Makes the progress sink of each attempt.
#[derive(Clone)]
pub enum ProgressMode {
    /// Bars on stderr (a terminal), drawn below the log lines.
    Bars(MultiProgress),
    /// Plain lines on stderr through the log.
    Lines,
}

impl ProgressMode {
    /// Bars when stderr is a terminal, else lines.
    pub fn for_terminal(terminal: &Terminal) -> Self {
        match terminal.bars() {
            Some(bars) => Self::Bars(bars.clone()),
            None => Self::Lines,
        }
    }

    /// The sink for the attempt `task` just started.
    pub fn sink(&self, task: &Task) -> Arc<dyn ProgressSink> {
        let label = format!("task {} ({})", task.index(), task.task_type());
        match self {
            Self::Bars(bars) => Arc::new(BarSink {
                label,
                bars: bars.clone(),
                bar: Mutex::new(None),
            }),
            Self::Lines => Arc::new(LineSink {
                label,
                last: Mutex::new(None),
            }),
        }
    }
}

/// A bar drawn from the first report on (a plugin that reports nothing shows none).
struct BarSink {
    label: String,
    bars: MultiProgress,
    bar: Mutex<Option<ProgressBar>>,
}

impl ProgressSink for BarSink {
    fn progress(&self, done: u64, total: Option<u64>, note: &str) {
        let mut bar = self.bar.lock().unwrap_or_else(|e| e.into_inner());
        let bar = bar.get_or_insert_with(|| {
            let bar = self.bars.add(match total {
                Some(total) => ProgressBar::new(total),
                None => ProgressBar::no_length(),
            });
            let template = if total.is_some() {
                "{prefix} {bar:30} {pos}/{len} {wide_msg}"
            } else {
                "{prefix} {spinner} {pos} {wide_msg}"
            };
            bar.set_style(
                ProgressStyle::with_template(template)
                    .expect("a valid template")
                    .progress_chars("=> "),
            );
            bar.set_prefix(self.label.clone());
            bar
        });
        if let Some(total) = total {
            bar.set_length(total);
        }
        bar.set_position(done);
        bar.set_message(note.to_owned());
        if total.is_some_and(|t| done >= t) {
            bar.finish_and_clear();
        }
    }
}

impl Drop for BarSink {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.get_mut().unwrap_or_else(|e| e.into_inner()) {
            bar.finish_and_clear();
            self.bars.remove(bar);
        }
    }
}

struct LineSink {
    label: String,
    last: Mutex<Option<Instant>>,
}

impl ProgressSink for LineSink {
    fn progress(&self, done: u64, total: Option<u64>, note: &str) {
        let finished = total.is_some_and(|t| done >= t);
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if !finished && last.is_some_and(|at| at.elapsed() < PLAIN_LINE_INTERVAL) {
            return;
        }
        *last = Some(Instant::now());
        match total {
            Some(total) => tracing::info!("{}: {done}/{total} {note}", self.label),
            None => tracing::info!("{}: {done} {note}", self.label),
        }
    }
}
