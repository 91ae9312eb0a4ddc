//! What the command line prints: tables for people, JSON lines for scripts, progress
//! bars on a terminal.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

/// Where the output goes and in which form.
#[derive(Clone, Copy, Debug)]
pub(super) struct Output {
    pub json: bool,
}

impl Output {
    /// One JSON document on one line (only printed with `--json`).
    pub fn json(&self, value: &impl Serialize) {
        if !self.json {
            return;
        }
        let line =
            serde_json::to_string(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }

    /// A line for people (not printed with `--json`).
    pub fn line(&self, text: impl AsRef<str>) {
        if !self.json {
            println!("{}", text.as_ref());
        }
    }

    /// A table for people: a header row and aligned columns (not printed with `--json`).
    pub fn table(&self, headers: &[&str], rows: &[Vec<String>]) {
        if self.json {
            return;
        }
        let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
        for row in rows {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let render = |cells: Vec<&str>| {
            cells
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_owned()
        };
        println!("{}", render(headers.to_vec()));
        for row in rows {
            println!("{}", render(row.iter().map(String::as_str).collect()));
        }
    }

    /// A progress bar on stderr, hidden with `--json` or when stderr is not a terminal.
    pub fn progress(&self, what: &str) -> ProgressBar {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        if self.json || !std::io::stderr().is_terminal() {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        bar.set_style(
            ProgressStyle::with_template(
                "{msg} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta}) {prefix}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_message(what.to_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }
}
