//! Where output goes. Stdout carries only results (plans, JSON); messages go
//! to stderr and disappear under `--quiet`. Colour only on a terminal, never
//! with `--no-color` or a non-empty `NO_COLOR`.

use std::io::{IsTerminal, Write};

pub struct Printer {
    pub color: bool,
    pub quiet: bool,
}

impl Printer {
    pub fn new(no_color_flag: bool, no_color_env: bool, quiet: bool) -> Self {
        Printer {
            color: !no_color_flag && !no_color_env && std::io::stdout().is_terminal(),
            quiet,
        }
    }

    /// A result: always printed, on stdout.
    pub fn result(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        // A closed pipe (`backupctl plan | head`) is not an error worth a panic.
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }

    /// A message about the run: stderr, unless `--quiet`.
    pub fn note(&self, text: &str) {
        if !self.quiet {
            eprintln!("{text}");
        }
    }
}
