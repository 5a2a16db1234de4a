//! The OSHA report loader: both key spellings, augmented rows, whitespace, and one typed error
//! naming the record for each kind of bad row. The real files are read when the shared data
//! folder is present (it is in CI and on a fresh machine after `scripts/fetch-data.sh`).

use rampart_core::Error;
use rampart_core::data::resolve_data_dir;
use rampart_core::text::data::{OSHA_CLASSES, load_osha, parse_osha};

#[test]
fn reads_both_key_spellings_augmented_rows_and_collapses_whitespace() {
    let json = r#"[
        {"id": 4249, "title": "Worker  Falls ", "summary": " From a   ladder. ", "gold": "FALLS,SLIPS,TRIPS"},
        {"idx": "17", "title": "FIRE IN SHOP", "summary": "", "gold": "FIRES AND EXPLOSIONS"},
        {"id": "355-aug-5", "title": "A synthetic report", "summary": "", "gold": "TRANSPORTATION INCIDENTS"}
    ]"#;
    let d = parse_osha(json.as_bytes(), "test.json").unwrap();
    assert_eq!(d.len(), 3);
    assert_eq!(d.class_names.len(), 7);
    assert_eq!(d.records[0].id, "4249");
    assert_eq!(d.records[0].text, "Worker Falls From a ladder.");
    assert_eq!(d.records[0].label, 0);
    assert_eq!(d.records[1].id, "17");
    assert_eq!(d.records[1].text, "FIRE IN SHOP");
    assert_eq!(d.records[1].label, 4);
    assert_eq!(d.records[2].sources, vec!["355".to_string()]);
    assert!(d.records[0].sources.is_empty());
    assert_eq!(d.class_counts(), vec![1, 0, 0, 1, 1, 0, 0]);
}

#[test]
fn each_bad_row_is_a_typed_error_naming_the_record() {
    let cases = [
        (
            r#"[{"id": 1, "title": "x", "summary": "y", "gold": "EARTHQUAKES"}]"#,
            "record #0 (id 1): unknown class \"EARTHQUAKES\"",
        ),
        (
            r#"[{"id": 1, "title": "a", "gold": "FIRES AND EXPLOSIONS"}, {"id": 2, "title": "  ", "summary": " ", "gold": "FIRES AND EXPLOSIONS"}]"#,
            "record #1 (id 2): has an empty title and summary",
        ),
        (
            r#"[{"title": "x", "summary": "y", "gold": "FIRES AND EXPLOSIONS"}]"#,
            "record #0: has no \"id\" or \"idx\"",
        ),
        (
            r#"[{"id": 3, "summary": "y", "gold": "FIRES AND EXPLOSIONS"}]"#,
            "record #0 (id 3): has no \"title\"",
        ),
        (
            r#"[{"id": 3, "title": "x", "summary": "y"}]"#,
            "record #0 (id 3): has no \"gold\"",
        ),
        (
            r#"[{"id": 3, "title": 5, "summary": "y", "gold": "FIRES AND EXPLOSIONS"}]"#,
            "\"title\" is not a string",
        ),
        (r#"[7]"#, "record #0: is not a JSON object"),
    ];
    for (json, needle) in cases {
        let err = parse_osha(json.as_bytes(), "bad.json").unwrap_err();
        assert!(matches!(err, Error::BadRecord { .. }), "{json}: {err:?}");
        let msg = err.to_string();
        assert!(
            msg.starts_with("bad.json: ") && msg.contains(needle),
            "{json}: {msg}"
        );
    }
    for (json, needle) in [
        ("{\"id\": 1}", "expected a JSON array"),
        ("[{\"id\": 1,", "not valid JSON"),
        ("[]", "holds no reports"),
    ] {
        let err = parse_osha(json.as_bytes(), "bad.json").unwrap_err();
        assert!(err.to_string().contains(needle), "{json}: {err}");
    }
    let err = load_osha(std::path::Path::new("/nonexistent/train.json")).unwrap_err();
    assert!(matches!(err, Error::MissingFile { .. }), "{err:?}");
}

#[test]
fn the_released_files_load_with_their_documented_counts() {
    let dir = resolve_data_dir(None).join("osha");
    if !dir.join("train.json").exists() {
        eprintln!("skipped: no OSHA data under {}", dir.display());
        return;
    }
    let train = load_osha(&dir.join("train.json")).unwrap();
    assert_eq!(
        train.class_counts(),
        vec![1252, 1164, 744, 191, 178, 37, 10]
    );
    let val = load_osha(&dir.join("val.json")).unwrap();
    assert_eq!(val.len(), 447);
    let abex = load_osha(&dir.join("train_abex.json")).unwrap();
    assert_eq!(abex.len(), 2785);
    assert!(abex.records.iter().all(|r| r.sources.len() == 1));
    // Augmentation targets the four minority classes only.
    let counts = abex.class_counts();
    assert_eq!(counts[..3], [0, 0, 0], "{counts:?}");
    assert_eq!(OSHA_CLASSES.len(), train.num_classes());
}
