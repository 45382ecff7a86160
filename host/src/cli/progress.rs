//! Plugin progress for people: an `indicatif` bar per running attempt on a terminal,
//! throttled plain lines on stderr otherwise, never on stdout. Both show the same kind of
//! figures ([`figures`]): done of total (bytes in KiB, MiB…, other counts in short
//! numbers), the share done, the rate, and the time left, as cargo and curl show a
//! download. A bar computes them when it is drawn,
//! from indicatif's own rate estimate; lines from a [`Meter`] smoothed over windows. Both
//! show a rate only once [`RATE_WINDOW`] has passed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressState, ProgressStyle};

use super::terminal::Terminal;
use crate::plan::ProgressUnit;
use crate::plan::Task;
use crate::runtime::ProgressSink;

/// How often plain progress lines may be written per attempt.
const PLAIN_LINE_INTERVAL: Duration = Duration::from_secs(1);
/// The shortest span a rate is measured over: shorter ones are noise.
const RATE_WINDOW: Duration = Duration::from_millis(250);
/// Weight of the newest window in the smoothed rate.
const RATE_SMOOTHING: f64 = 0.3;
/// A time left past this is not worth showing.
const MAX_ETA: Duration = Duration::from_secs(100 * 3600);

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
                state: Mutex::new(LineState::default()),
            }),
        }
    }
}

/// The rate of one attempt's progress, smoothed over windows of at least
/// [`RATE_WINDOW`], from the reports it has made.
#[derive(Debug, Default)]
struct Meter {
    /// The start of the current window: when, and how much was done then.
    window: Option<(Instant, u64)>,
    /// Units per second, once a window has closed.
    rate: Option<f64>,
}

impl Meter {
    /// Takes a report of `done` at `now`; returns the rate known so far.
    fn observe(&mut self, now: Instant, done: u64) -> Option<f64> {
        match self.window {
            None => self.window = Some((now, done)),
            Some((since, done_then)) => {
                let span = now.saturating_duration_since(since);
                if done < done_then {
                    // The plugin started over (a new phase): so does the rate.
                    self.window = Some((now, done));
                    self.rate = None;
                } else if span >= RATE_WINDOW {
                    let latest = (done - done_then) as f64 / span.as_secs_f64();
                    self.rate = Some(match self.rate {
                        // A first window without progress is no basis to smooth from.
                        Some(rate) if rate > 0.0 => rate + RATE_SMOOTHING * (latest - rate),
                        _ => latest,
                    });
                    self.window = Some((now, done));
                }
            }
        }
        self.rate
    }
}

/// The figures of a report: `done/total pct% rate/s ETA t`, as much as is known (a time
/// left over 100 hours is not shown).
pub(super) fn figures(
    done: u64,
    total: Option<u64>,
    unit: ProgressUnit,
    rate: Option<f64>,
) -> String {
    let mut text = match total {
        Some(total) => {
            let share = if total == 0 {
                100
            } else {
                (u128::from(done.min(total)) * 100 / u128::from(total)) as u64
            };
            format!(
                "{}/{} {share}%",
                quantity(done, unit),
                quantity(total, unit)
            )
        }
        None => quantity(done, unit),
    };
    if let Some(rate) = rate.filter(|r| r.is_finite() && *r > 0.0) {
        let shown = match unit {
            ProgressUnit::Items => short_rate(rate),
            ProgressUnit::Bytes => HumanBytes(rate.round() as u64).to_string(),
        };
        text += &format!(" {shown}/s");
        if let Some(total) = total.filter(|t| *t > done) {
            let left = (total - done) as f64 / rate;
            if left < MAX_ETA.as_secs_f64() {
                let left = jiff::SignedDuration::try_from(Duration::from_secs_f64(left))
                    .unwrap_or(jiff::SignedDuration::MAX);
                text += &format!(" ETA {}", super::render::duration(left));
            }
        }
    }
    text
}

/// `n` of `unit` as people read it: bytes in binary units (`68.77 MiB`), other counts as
/// [`short_number`].
fn quantity(n: u64, unit: ProgressUnit) -> String {
    match unit {
        ProgressUnit::Items => short_number(n),
        ProgressUnit::Bytes => HumanBytes(n).to_string(),
    }
}

/// A count as people read it: exact below 10 000, else three digits and a suffix
/// (`72.1M`).
fn short_number(n: u64) -> String {
    if n < 10_000 {
        return n.to_string();
    }
    let mut value = n as f64;
    for suffix in ["k", "M", "G", "T", "P"] {
        value /= 1000.0;
        if value < 999.95 {
            return if value < 99.95 {
                format!("{value:.1}{suffix}")
            } else {
                format!("{value:.0}{suffix}")
            };
        }
    }
    format!("{:.1}E", value / 1000.0)
}

/// A rate: one decimal below 10 per second, else as [`short_number`].
fn short_rate(rate: f64) -> String {
    if rate < 9.95 {
        format!("{rate:.1}")
    } else {
        short_number(rate.round() as u64)
    }
}

/// A bar drawn from the first report on (a plugin that reports nothing shows none).
struct BarSink {
    label: String,
    bars: MultiProgress,
    /// The bar, and the unit its style shows.
    bar: Mutex<Option<(ProgressBar, ProgressUnit)>>,
}

impl BarSink {
    fn new_bar(&self, total: Option<u64>, unit: ProgressUnit) -> (ProgressBar, ProgressUnit) {
        let bar = self.bars.add(match total {
            Some(total) => ProgressBar::new(total),
            None => ProgressBar::no_length(),
        });
        bar.set_style(Self::style(total.is_some(), unit));
        bar.set_prefix(self.label.clone());
        (bar, unit)
    }

    fn style(total_known: bool, unit: ProgressUnit) -> ProgressStyle {
        let template = if total_known {
            "{prefix} {bar:30} {figures} {wide_msg}"
        } else {
            "{prefix} {spinner} {figures} {wide_msg}"
        };
        // Drawn from the bar's state each time: never older than the last report.
        ProgressStyle::with_template(template)
            .expect("a valid template")
            .progress_chars("=> ")
            .with_key(
                "figures",
                move |state: &ProgressState, out: &mut dyn std::fmt::Write| {
                    // indicatif estimates from the first update on: its first figures are
                    // noise, so the rate shows once a window has passed, as in lines.
                    let rate = Some(state.per_sec())
                        .filter(|_| state.pos() > 0 && state.elapsed() >= RATE_WINDOW);
                    let _ = out.write_str(&figures(state.pos(), state.len(), unit, rate));
                },
            )
    }
}

impl ProgressSink for BarSink {
    fn progress(&self, done: u64, total: Option<u64>, unit: ProgressUnit, note: &str) {
        let mut bar = self.bar.lock().unwrap_or_else(|e| e.into_inner());
        let (bar, shown) = bar.get_or_insert_with(|| self.new_bar(total, unit));
        if *shown != unit {
            // A new phase counting something else: its rate starts over too.
            bar.set_style(Self::style(total.is_some() || bar.length().is_some(), unit));
            bar.reset();
            *shown = unit;
        }
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
        if let Some((bar, _)) = self.bar.get_mut().unwrap_or_else(|e| e.into_inner()) {
            bar.finish_and_clear();
            self.bars.remove(bar);
        }
    }
}

/// Plain lines, at most one per [`PLAIN_LINE_INTERVAL`], and the first report that
/// finishes the work whenever it comes.
struct LineSink {
    label: String,
    state: Mutex<LineState>,
}

#[derive(Default)]
struct LineState {
    meter: Meter,
    /// The unit the meter measures.
    unit: ProgressUnit,
    written: Option<Instant>,
    /// Whether the report that finished the work was written (it skips the throttle
    /// once: a plugin reporting done ≥ total over and over gets no flood).
    finish_written: bool,
}

impl ProgressSink for LineSink {
    fn progress(&self, done: u64, total: Option<u64>, unit: ProgressUnit, note: &str) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if state.unit != unit {
            // A new phase counting something else: its rate starts over.
            state.meter = Meter::default();
            state.unit = unit;
        }
        let rate = state.meter.observe(now, done);
        let first_finish = total.is_some_and(|t| done >= t) && !state.finish_written;
        if !first_finish
            && state
                .written
                .is_some_and(|at| now.duration_since(at) < PLAIN_LINE_INTERVAL)
        {
            return;
        }
        state.written = Some(now);
        state.finish_written |= first_finish;
        tracing::info!(
            "{}: {} {note}",
            self.label,
            figures(done, total, unit, rate)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_short_and_exact_while_small() {
        assert_eq!(short_number(0), "0");
        assert_eq!(short_number(9_999), "9999");
        assert_eq!(short_number(10_000), "10.0k");
        assert_eq!(short_number(72_105_984), "72.1M");
        assert_eq!(short_number(134_577_435), "135M");
        assert_eq!(short_number(999_960_000), "1.0G");
        assert_eq!(short_number(u64::MAX), "18.4E");
    }

    #[test]
    fn the_rate_needs_a_window_and_is_smoothed() {
        let start = Instant::now();
        let mut meter = Meter::default();
        assert_eq!(meter.observe(start, 0), None);
        assert_eq!(
            meter.observe(start + Duration::from_millis(100), 50),
            None,
            "a window shorter than {RATE_WINDOW:?} gives no rate"
        );
        let first = meter
            .observe(start + Duration::from_secs(1), 1_000)
            .unwrap();
        assert!((first - 1_000.0).abs() < 1e-9, "{first}");
        // The next second goes at 2 000/s: the smoothed rate moves part of the way.
        let second = meter
            .observe(start + Duration::from_secs(2), 3_000)
            .unwrap();
        assert!((second - 1_300.0).abs() < 1e-9, "{second}");
        // Going back (a new phase) forgets the rate.
        assert_eq!(meter.observe(start + Duration::from_secs(3), 10), None);
    }

    use ProgressUnit::{Bytes, Items};

    #[test]
    fn bytes_are_shown_in_binary_units() {
        assert_eq!(
            figures(72_105_984, Some(134_577_435), Bytes, Some(12_582_912.0)),
            "68.77 MiB/128.34 MiB 53% 12.00 MiB/s ETA 5.0s"
        );
        assert_eq!(figures(512, None, Bytes, None), "512 B");
        assert_eq!(
            figures(1 << 30, Some(1 << 30), Bytes, None),
            "1.00 GiB/1.00 GiB 100%"
        );
    }

    #[test]
    fn figures_say_what_is_known() {
        assert_eq!(figures(1, Some(1), Items, None), "1/1 100%");
        assert_eq!(figures(0, Some(2), Items, None), "0/2 0%");
        assert_eq!(figures(7, None, Items, None), "7");
        assert_eq!(figures(0, Some(0), Items, None), "0/0 100%");
        assert_eq!(
            figures(72_105_984, Some(134_577_435), Items, Some(12_300_000.0)),
            "72.1M/135M 53% 12.3M/s ETA 5.1s"
        );
        assert_eq!(
            figures(3, Some(10), Items, Some(2.5)),
            "3/10 30% 2.5/s ETA 2.8s"
        );
        assert_eq!(
            figures(5, None, Items, Some(2.0)),
            "5 2.0/s",
            "no total, no ETA"
        );
        assert_eq!(figures(10, Some(10), Items, Some(2.0)), "10/10 100% 2.0/s");
        assert_eq!(
            figures(9, Some(10), Items, Some(9.96)),
            "9/10 90% 10/s ETA 100ms"
        );
        assert_eq!(
            figures(0, Some(u64::MAX), Items, Some(1.0)),
            "0/18.4E 0% 1.0/s",
            "a time left past 100 hours is not shown"
        );
    }
}
