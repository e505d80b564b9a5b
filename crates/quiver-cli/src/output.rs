//! Output helpers and the CLI's error type.

use std::io::{IsTerminal, Write};

/// Why a command failed, which decides the exit code.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Bad input or usage: exit 2.
    Input(String),
    /// Anything else: exit 1.
    Internal(String),
    /// Another process held the store's writer lock past the wait: exit
    /// [`EXIT_BUSY`]. Nothing was written; retrying may succeed.
    Busy(String),
    /// Our reader went away: exit 0, like `head` expects.
    BrokenPipe,
}

/// The exit code of a write that gave up waiting for another writer:
/// `EX_TEMPFAIL` of sysexits.h ("try again later").
pub(crate) const EXIT_BUSY: u8 = 75;

impl From<quiver::Error> for Failure {
    fn from(e: quiver::Error) -> Self {
        if e.is_busy() {
            Failure::Busy(e.to_string())
        } else if e.is_bad_input() {
            Failure::Input(e.to_string())
        } else {
            Failure::Internal(e.to_string())
        }
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            Failure::BrokenPipe
        } else {
            Failure::Internal(format!("writing output: {e}"))
        }
    }
}

pub(crate) type CliResult<T> = Result<T, Failure>;

pub(crate) fn input<T>(msg: impl Into<String>) -> CliResult<T> {
    Err(Failure::Input(msg.into()))
}

/// Buffered stdout; flush errors become [`Failure`]s.
pub(crate) struct Out {
    inner: std::io::BufWriter<std::io::StdoutLock<'static>>,
    /// Tables and prose instead of JSON: stdout is a terminal, no --json.
    pub(crate) human: bool,
    /// A write's short human line goes to stderr: a terminal, no --json.
    chatty: bool,
}

impl Out {
    pub(crate) fn new(force_json: bool) -> Out {
        let stdout = std::io::stdout();
        let human = !force_json && stdout.is_terminal();
        Out {
            inner: std::io::BufWriter::new(stdout.lock()),
            human,
            chatty: !force_json && std::io::stderr().is_terminal(),
        }
    }

    /// A write's result: one JSON line on stdout, always; on a terminal
    /// also `human()`, a short line for people, on stderr.
    pub(crate) fn result(
        &mut self,
        value: &impl serde::Serialize,
        human: impl FnOnce() -> String,
    ) -> CliResult<()> {
        self.json(value)?;
        if self.chatty {
            self.flush()?;
            eprintln!("{}", human());
        }
        Ok(())
    }

    /// One JSON value on its own line.
    pub(crate) fn json(&mut self, value: &impl serde::Serialize) -> CliResult<()> {
        serde_json::to_writer(&mut self.inner, value).map_err(|e| match e.io_error_kind() {
            Some(kind) => Failure::from(std::io::Error::from(kind)),
            None => Failure::Internal(e.to_string()),
        })?;
        self.inner.write_all(b"\n")?;
        Ok(())
    }

    pub(crate) fn line(&mut self, text: &str) -> CliResult<()> {
        self.inner.write_all(text.as_bytes())?;
        self.inner.write_all(b"\n")?;
        Ok(())
    }

    pub(crate) fn flush(&mut self) -> CliResult<()> {
        self.inner.flush()?;
        Ok(())
    }
}

/// Left-aligned table with a header row.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut width: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let fmt_row = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = width[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = fmt_row(header.iter().map(|s| s.to_string()).collect());
    for r in rows {
        out.push('\n');
        out.push_str(&fmt_row(r.clone()));
    }
    out
}

/// A progress bar on a terminal's stderr, drawn only once its work has
/// run half a second (so a replay of a few records does not flash one);
/// hidden when stderr is not a terminal.
pub(crate) struct Bar {
    bar: indicatif::ProgressBar,
    started: std::time::Instant,
    /// Not drawn yet, but on a terminal.
    waiting: std::sync::atomic::AtomicBool,
}

impl Bar {
    pub(crate) fn set_position(&self, n: u64) {
        use std::sync::atomic::Ordering;
        if self.waiting.load(Ordering::Relaxed)
            && self.started.elapsed() >= std::time::Duration::from_millis(500)
            && self.waiting.swap(false, Ordering::Relaxed)
        {
            self.bar
                .set_draw_target(indicatif::ProgressDrawTarget::stderr());
        }
        self.bar.set_position(n);
    }

    pub(crate) fn set_length(&self, n: u64) {
        self.bar.set_length(n);
    }

    pub(crate) fn finish_and_clear(&self) {
        self.bar.finish_and_clear();
    }
}

/// A [`Bar`] for `total` steps of `what`.
pub(crate) fn progress_bar(total: u64, what: &str) -> Bar {
    let terminal = std::io::stderr().is_terminal();
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(total),
        indicatif::ProgressDrawTarget::hidden(),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg:>10} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    Bar {
        bar,
        started: std::time::Instant::now(),
        waiting: std::sync::atomic::AtomicBool::new(terminal),
    }
}

/// A record as `get` prints it (and the MCP server's `get` returns it).
pub(crate) fn record_line(r: quiver::Record, vector: bool) -> serde_json::Value {
    let mut line = serde_json::json!({"id": r.id});
    if let Some(t) = r.text {
        line["text"] = t.into();
    }
    if let Some(m) = r.metadata {
        line["metadata"] = m;
    }
    if let Some(at) = r.expires_at {
        line["expires_at"] = quiver::clock::format_rfc3339(at).into();
    }
    if vector {
        line["vector"] = r.vector.into();
    }
    line
}

/// A vector as JSON that reads back to the same bits: each f32 written as
/// the f64 of the same value (what `export` and `changes` print).
pub(crate) fn exact_vector(v: &[f32]) -> serde_json::Value {
    serde_json::Value::from(v.iter().map(|x| f64::from(*x)).collect::<Vec<f64>>())
}
