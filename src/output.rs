//! Where output goes. Stdout carries only results (plans, JSON, state);
//! messages and progress go to stderr. Progress bars are drawn only on a
//! terminal and never under `--quiet` or `--format json`; colour only when
//! stdout is a terminal, never with `--no-color` or a non-empty `NO_COLOR`.
//! This is the only module that knows indicatif.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct Printer {
    pub color: bool,
    pub quiet: bool,
    /// Progress may be drawn (stderr is a terminal and not `--quiet`).
    pub progress: bool,
    /// The first failure to write a result: a full disk must not leave an
    /// empty plan file behind a successful exit.
    failed: Mutex<Option<std::io::Error>>,
}

impl Printer {
    pub fn new(no_color_flag: bool, no_color_env: bool, quiet: bool) -> Self {
        Printer {
            color: !no_color_flag && !no_color_env && std::io::stdout().is_terminal(),
            quiet,
            progress: !quiet && std::io::stderr().is_terminal(),
            failed: Mutex::new(None),
        }
    }

    /// A result: always printed, on stdout. A failure is kept for
    /// [`Printer::write_failure`]; a reader that went away (`backupctl plan
    /// | head`) is not one.
    pub fn result(&self, text: &str) {
        self.result_with(|out| out.write_all(text.as_bytes()));
    }

    /// A result written piece by piece, as [`Printer::result`]: a large
    /// JSON plan is never held as one string.
    pub fn result_with(&self, write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) {
        let mut out = std::io::stdout().lock();
        let written = write(&mut out).and_then(|()| out.flush());
        if let Err(e) = written {
            let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
            if e.kind() != std::io::ErrorKind::BrokenPipe && failed.is_none() {
                *failed = Some(e);
            }
        }
    }

    /// The first result that could not be written, if any.
    pub fn write_failure(&self) -> Option<std::io::Error> {
        self.failed.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// A message about the run: stderr, unless `--quiet`.
    pub fn note(&self, text: &str) {
        if !self.quiet {
            eprintln!("{text}");
        }
    }

    /// Apply's progress: bars as [`Printer::progress`], and each change's
    /// outcome line on stdout as it becomes known when `lines` (text
    /// output; a JSON report keeps stdout to itself).
    pub fn apply_progress(&self, lines: bool) -> Arc<dyn Progress> {
        Arc::new(ApplyProgress {
            bars: self.progress.then(Bars::new),
            lines,
        })
    }

    /// Progress lines per region, or nothing when they must stay hidden.
    pub fn progress(&self, allowed: bool) -> Arc<dyn Progress> {
        if self.progress && allowed {
            Arc::new(Bars::new())
        } else {
            Arc::new(NoProgress)
        }
    }
}

/// Events of long work, one line per key (a region). Core code reports
/// through this; it never draws.
pub trait Progress: Send + Sync {
    /// Starts a line; `total` 0 means "unknown" (a spinner).
    fn start(&self, key: &str, total: u64, message: &str);
    fn advance(&self, key: &str);
    fn finish(&self, key: &str, message: &str);
    /// One change's outcome, as it becomes known.
    fn outcome(&self, _line: &str) {}
}

pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: &str, _: u64, _: &str) {}
    fn advance(&self, _: &str) {}
    fn finish(&self, _: &str, _: &str) {}
}

struct ApplyProgress {
    bars: Option<Bars>,
    lines: bool,
}

impl Progress for ApplyProgress {
    fn start(&self, key: &str, total: u64, message: &str) {
        if let Some(b) = &self.bars {
            b.start(key, total, message);
        }
    }

    fn advance(&self, key: &str) {
        if let Some(b) = &self.bars {
            b.advance(key);
        }
    }

    fn finish(&self, key: &str, message: &str) {
        if let Some(b) = &self.bars {
            b.finish(key, message);
        }
    }

    fn outcome(&self, line: &str) {
        if !self.lines {
            return;
        }
        // A reader that went away is not an error of the apply.
        let print = || {
            let _ = writeln!(std::io::stdout().lock(), "{line}");
        };
        match &self.bars {
            Some(b) => b.multi.suspend(print),
            None => print(),
        }
    }
}

/// indicatif bars on stderr.
pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Bars {
    fn new() -> Self {
        Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: Mutex::new(HashMap::new()),
        }
    }

    fn bar(&self, key: &str) -> Option<ProgressBar> {
        self.bars.lock().ok()?.get(key).cloned()
    }
}

impl Progress for Bars {
    fn start(&self, key: &str, total: u64, message: &str) {
        let bar = if total == 0 {
            let b = ProgressBar::new_spinner();
            b.set_style(
                ProgressStyle::with_template("{spinner} {prefix:<16} {msg}")
                    .expect("valid template"),
            );
            b.enable_steady_tick(Duration::from_millis(120));
            b
        } else {
            let b = ProgressBar::new(total);
            b.set_style(
                ProgressStyle::with_template("{prefix:<16} [{bar:30}] {pos}/{len} {msg}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            b
        };
        let bar = self.multi.add(bar);
        bar.set_prefix(key.to_string());
        bar.set_message(message.to_string());
        if let Ok(mut bars) = self.bars.lock() {
            bars.insert(key.to_string(), bar);
        }
    }

    fn advance(&self, key: &str) {
        if let Some(b) = self.bar(key) {
            b.inc(1);
        }
    }

    fn finish(&self, key: &str, message: &str) {
        if let Some(b) = self.bar(key) {
            b.finish_with_message(message.to_string());
        }
    }
}

/// The progress of one account among several: its lines are named
/// `account / region`, so two accounts' `us-east-1` stay apart.
pub struct InAccount {
    pub inner: Arc<dyn Progress>,
    pub name: String,
}

impl InAccount {
    fn key(&self, key: &str) -> String {
        format!("{} / {key}", self.name)
    }
}

impl Progress for InAccount {
    fn start(&self, key: &str, total: u64, message: &str) {
        self.inner.start(&self.key(key), total, message);
    }

    fn advance(&self, key: &str) {
        self.inner.advance(&self.key(key));
    }

    fn finish(&self, key: &str, message: &str) {
        self.inner.finish(&self.key(key), message);
    }

    fn outcome(&self, line: &str) {
        self.inner.outcome(line);
    }
}
