//! OSHA accident reports (the ABEX-RAT release): a JSON array of
//! `{ "id" | "idx", "title", "summary", "gold" }`. The training file names its key `id`, the
//! validation file `idx`; synthetic (augmented) rows have ids like `"355-aug-5"` and an empty
//! summary; class names contain commas. The text of a report is its title and its summary,
//! with runs of whitespace collapsed.

use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};

/// The seven OSHA event classes, in the order of the release's documentation (the label
/// index of a report is its class's position here).
pub const OSHA_CLASSES: [&str; 7] = [
    "FALLS,SLIPS,TRIPS",
    "CONTACT WITH OBJECTS AND EQUIPMENT",
    "EXPOSURE TO HARMFUL SUBSTANCES OR ENVIRONMENTS",
    "TRANSPORTATION INCIDENTS",
    "FIRES AND EXPLOSIONS",
    "OVEREXERTION AND BODILY REACTION",
    "VIOLENCE AND OTHER INJURIES BY PERSONS OR ANIMALS",
];

/// One labelled report.
#[derive(Debug, Clone, PartialEq)]
pub struct TextRecord {
    /// The record's id as written in the file (numbers as decimal strings).
    pub id: String,
    pub text: String,
    pub label: usize,
    /// For an augmented report, the ids of the reports it was made from (for a published
    /// augmentation `"<id>-aug-<n>"`, `<id>`); empty for an original report.
    pub sources: Vec<String>,
}

/// A labelled text dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct TextDataset {
    pub records: Vec<TextRecord>,
    pub class_names: Vec<String>,
}

impl TextDataset {
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    /// Reports per class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.num_classes()];
        for r in &self.records {
            counts[r.label] += 1;
        }
        counts
    }

    pub fn labels(&self) -> Vec<usize> {
        self.records.iter().map(|r| r.label).collect()
    }

    pub fn texts(&self) -> Vec<&str> {
        self.records.iter().map(|r| r.text.as_str()).collect()
    }

    /// This dataset followed by `other`'s records (same classes).
    pub fn concat(mut self, other: &TextDataset) -> Result<TextDataset> {
        if self.class_names != other.class_names {
            return Err(Error::invalid(
                "text datasets",
                "cannot join datasets with different classes",
            ));
        }
        self.records.extend(other.records.iter().cloned());
        Ok(self)
    }
}

/// Collapses runs of whitespace into one space and trims.
pub fn normalize_whitespace(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The text a report is classified by: title, then summary.
pub fn report_text(title: &str, summary: &str) -> String {
    normalize_whitespace(&format!("{title} {summary}"))
}

/// Parses an OSHA JSON file's bytes; `what` names the file in errors.
pub fn parse_osha(bytes: &[u8], what: &str) -> Result<TextDataset> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| Error::invalid(what, format!("not valid JSON: {e}")))?;
    let rows = value
        .as_array()
        .ok_or_else(|| Error::invalid(what, "expected a JSON array of reports"))?;
    let mut records = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        records.push(parse_record(row, i, what)?);
    }
    if records.is_empty() {
        return Err(Error::invalid(what, "holds no reports"));
    }
    Ok(TextDataset {
        records,
        class_names: OSHA_CLASSES.iter().map(|c| c.to_string()).collect(),
    })
}

fn parse_record(row: &Value, index: usize, what: &str) -> Result<TextRecord> {
    let id = row
        .get("id")
        .or_else(|| row.get("idx"))
        .and_then(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        });
    let bad = |reason: String| Error::BadRecord {
        what: what.to_string(),
        record: match &id {
            Some(id) => format!("#{index} (id {id})"),
            None => format!("#{index}"),
        },
        reason,
    };
    let obj = row
        .as_object()
        .ok_or_else(|| bad("is not a JSON object".into()))?;
    let id = id
        .clone()
        .ok_or_else(|| bad("has no \"id\" or \"idx\" (string or number)".into()))?;
    let field = |key: &str, required: bool| -> Result<String> {
        match obj.get(key) {
            Some(Value::String(s)) => Ok(s.clone()),
            None | Some(Value::Null) if !required => Ok(String::new()),
            None => Err(bad(format!("has no \"{key}\""))),
            Some(other) => Err(bad(format!("\"{key}\" is not a string: {other}"))),
        }
    };
    let title = field("title", true)?;
    let summary = field("summary", false)?;
    let gold = field("gold", true)?;
    let label = OSHA_CLASSES
        .iter()
        .position(|c| *c == gold.trim())
        .ok_or_else(|| bad(format!("unknown class \"{gold}\"")))?;
    let text = report_text(&title, &summary);
    if text.is_empty() {
        return Err(bad("has an empty title and summary".into()));
    }
    let sources = id
        .split_once("-aug-")
        .map(|(source, _)| vec![source.to_string()])
        .unwrap_or_default();
    Ok(TextRecord {
        id,
        text,
        label,
        sources,
    })
}

/// Reads an OSHA JSON file.
pub fn load_osha(path: &Path) -> Result<TextDataset> {
    parse_osha(&crate::read_file(path)?, &path.display().to_string())
}
