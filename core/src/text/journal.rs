//! The files of an augmentation run: the output (JSON lines, one accepted report each,
//! appended as it is accepted) and beside it `<out>.calls`, a journal of every generator
//! call's answer. An interrupted run resumed from them replays the journal's answers instead
//! of calling again, checks that the reports it accepts are the ones already written, and
//! appends the rest: no report twice, none missing. The journal is removed once the run ends.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};

use super::augment::{Generated, Journal};
use crate::error::{Error, Result};

/// How to treat files an earlier run left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Refuse to touch an existing output or journal.
    Fresh,
    /// Continue the run they belong to (a fresh start if there are none).
    Resume,
    /// Replace them.
    Overwrite,
}

/// The journal's first line: what the run is, so that a resume of another run is refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunIdentity {
    /// SHA-256 of the training reports.
    pub data: String,
    pub generator: String,
    pub prompt_version: String,
    /// The augmentation settings, as JSON.
    pub config: serde_json::Value,
}

#[derive(Serialize, Deserialize)]
struct Call {
    key: String,
    answer: String,
}

/// A file-backed [`Journal`].
pub struct AugmentJournal {
    out_path: PathBuf,
    calls_path: PathBuf,
    out: Mutex<File>,
    calls: Mutex<File>,
    cache: HashMap<String, String>,
    /// Reports an earlier run wrote; a resumed run must accept exactly these first.
    written: Vec<Generated>,
    /// Whether the files were made by this run.
    created: bool,
    /// Answers and reports this run added.
    added: AtomicUsize,
}

/// `<out>.calls`.
pub fn calls_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".calls");
    out.with_file_name(name)
}

/// The complete lines of `bytes` (a line cut short by a kill has no newline yet) and the
/// length they take.
fn complete_lines(bytes: &[u8]) -> (Vec<&[u8]>, usize) {
    let end = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let lines = bytes[..end]
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    (lines, end)
}

impl AugmentJournal {
    pub fn open(out: &Path, identity: &RunIdentity, mode: OpenMode) -> Result<Self> {
        let calls_path = calls_path(out);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        let exists = out.exists() || calls_path.exists();
        let resume = match mode {
            OpenMode::Fresh if exists => {
                return Err(Error::invalid(
                    "augment",
                    format!(
                        "{} exists: pass --resume to continue its run, or --overwrite to replace it",
                        if out.exists() { out } else { &calls_path }.display()
                    ),
                ));
            }
            OpenMode::Resume if out.exists() && !calls_path.exists() => {
                return Err(Error::invalid(
                    "augment",
                    format!(
                        "{} has no journal ({}): its run finished or was not started by this version; \
                         pass --overwrite to replace it",
                        out.display(),
                        calls_path.display()
                    ),
                ));
            }
            OpenMode::Resume => exists,
            _ => false,
        };
        if let Some(dir) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        let mut cache = HashMap::new();
        let mut written = Vec::new();
        if resume {
            let bytes = crate::read_file(&calls_path)?;
            let (lines, end) = complete_lines(&bytes);
            let bad = |what: String| {
                Error::invalid(
                    "augment journal",
                    format!("{}: {what}", calls_path.display()),
                )
            };
            let first = lines.first().ok_or_else(|| bad("empty".into()))?;
            let found: RunIdentity = serde_json::from_slice(first)
                .map_err(|e| bad(format!("unreadable first line: {e}")))?;
            if &found != identity {
                let differs = crate::train::checkpoint::differing_fields(&found, identity);
                return Err(bad(format!(
                    "written by another run; it differs in: {}",
                    differs.join(", ")
                )));
            }
            for (i, line) in lines.iter().enumerate().skip(1) {
                let c: Call = serde_json::from_slice(line)
                    .map_err(|e| bad(format!("line {}: {e}", i + 1)))?;
                cache.insert(c.key, c.answer);
            }
            truncate(&calls_path, end)?;
            if out.exists() {
                let bytes = crate::read_file(out)?;
                let (lines, end) = complete_lines(&bytes);
                for (i, line) in lines.iter().enumerate() {
                    written.push(serde_json::from_slice(line).map_err(|e| {
                        Error::invalid("augment", format!("{} line {}: {e}", out.display(), i + 1))
                    })?);
                }
                truncate(out, end)?;
            }
        } else {
            let mut first = serde_json::to_vec(identity)
                .map_err(|e| Error::invalid("augment journal", e.to_string()))?;
            first.push(b'\n');
            crate::write_atomically(&calls_path, &first)?;
            crate::write_atomically(out, b"")?;
        }
        let append = |path: &Path| OpenOptions::new().append(true).open(path).map_err(io(path));
        Ok(Self {
            out: Mutex::new(append(out)?),
            calls: Mutex::new(append(&calls_path)?),
            out_path: out.to_path_buf(),
            calls_path,
            cache,
            written,
            created: !resume,
            added: AtomicUsize::new(0),
        })
    }

    /// The run failed: files this run created and left empty are removed, so that a run
    /// whose every call failed leaves nothing behind; anything else stays for `--resume`.
    pub fn abandon(self) {
        if self.created && self.added.load(Ordering::Relaxed) == 0 {
            let _ = std::fs::remove_file(&self.out_path);
            let _ = std::fs::remove_file(&self.calls_path);
        }
    }

    /// How many reports the earlier run had written.
    pub fn resumed_reports(&self) -> usize {
        self.written.len()
    }

    /// How many call answers the earlier run had recorded.
    pub fn resumed_calls(&self) -> usize {
        self.cache.len()
    }

    /// The run is over with `accepted` reports: everything is on disk and the journal goes.
    pub fn finish(self, accepted: usize) -> Result<()> {
        if accepted < self.written.len() {
            return Err(Error::invalid(
                "augment",
                format!(
                    "{} holds {} reports but this run accepted only {accepted}: it belongs to another run",
                    self.out_path.display(),
                    self.written.len()
                ),
            ));
        }
        self.sync()?;
        std::fs::remove_file(&self.calls_path).map_err(|source| Error::Io {
            path: self.calls_path.clone(),
            source,
        })
    }
}

/// Cuts `path` to its first `len` bytes (a line half-written when the run was killed).
fn truncate(path: &Path, len: usize) -> Result<()> {
    let io = |source| Error::Io {
        path: path.into(),
        source,
    };
    let file = OpenOptions::new().write(true).open(path).map_err(io)?;
    if file.metadata().map_err(io)?.len() > len as u64 {
        file.set_len(len as u64).map_err(io)?;
        file.sync_all().map_err(io)?;
    }
    Ok(())
}

fn append_line(file: &Mutex<File>, path: &Path, value: &impl Serialize) -> Result<()> {
    let mut line =
        serde_json::to_vec(value).map_err(|e| Error::invalid("augment journal", e.to_string()))?;
    line.push(b'\n');
    // One write per line: a kill leaves at most one line cut short, which a resume drops.
    file.lock()
        .map_err(|_| Error::invalid("augment journal", "a writer panicked"))?
        .write_all(&line)
        .map_err(|source| Error::Io {
            path: path.into(),
            source,
        })
}

impl Journal for AugmentJournal {
    fn cached(&self, key: &str) -> Option<String> {
        self.cache.get(key).cloned()
    }

    fn called(&self, key: &str, answer: &str) -> Result<()> {
        let call = Call {
            key: key.into(),
            answer: answer.into(),
        };
        self.added.fetch_add(1, Ordering::Relaxed);
        append_line(&self.calls, &self.calls_path, &call)
    }

    fn sync(&self) -> Result<()> {
        for (file, path) in [(&self.calls, &self.calls_path), (&self.out, &self.out_path)] {
            file.lock()
                .map_err(|_| Error::invalid("augment journal", "a writer panicked"))?
                .sync_data()
                .map_err(|source| Error::Io {
                    path: path.clone(),
                    source,
                })?;
        }
        Ok(())
    }

    fn accepted(&self, index: usize, report: &Generated) -> Result<()> {
        match self.written.get(index) {
            Some(earlier) if earlier == report => Ok(()),
            Some(earlier) => Err(Error::invalid(
                "augment",
                format!(
                    "{} line {}: the earlier run wrote report {} here, this run made {}: \
                     the output belongs to another run",
                    self.out_path.display(),
                    index + 1,
                    earlier.id,
                    report.id
                ),
            )),
            None => {
                self.added.fetch_add(1, Ordering::Relaxed);
                append_line(&self.out, &self.out_path, report)
            }
        }
    }
}

/// SHA-256 of a training set's reports (ids, labels and texts) and class names.
pub fn data_fingerprint(train: &super::data::TextDataset) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for name in &train.class_names {
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
    }
    for r in &train.records {
        for field in [r.id.as_bytes(), r.text.as_bytes()] {
            h.update((field.len() as u64).to_le_bytes());
            h.update(field);
        }
        h.update((r.label as u64).to_le_bytes());
    }
    format!("{:x}", h.finalize())
}
