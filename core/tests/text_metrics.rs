//! Metrics against scikit-learn 1.x (`precision_recall_fscore_support`, `f1_score` with
//! `labels=range(5), zero_division=0`), computed for these exact labels; tolerance 1e-12.

use rampart_core::text::metrics::{classification_report, mean_sd};

#[test]
fn matches_scikit_learn() {
    let truth = [0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 0, 1, 2, 3, 3];
    let predicted = [0, 1, 0, 1, 2, 2, 2, 0, 2, 3, 0, 1, 1, 0, 3];
    let names: Vec<String> = (0..5).map(|c| format!("c{c}")).collect();
    let r = classification_report(&truth, &predicted, &names).unwrap();
    let close = |a: f64, b: f64| assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    close(r.accuracy, 0.6666666666666666);
    close(r.macro_f1, 0.540952380952381);
    close(r.weighted_f1, 0.6742857142857143);
    let precision = [0.6, 0.5, 0.75, 1.0, 0.0];
    let recall = [0.75, 0.6666666666666666, 0.6, 0.6666666666666666, 0.0];
    let f1 = [
        0.6666666666666666,
        0.5714285714285714,
        0.6666666666666666,
        0.8,
        0.0,
    ];
    let support = [4, 3, 5, 3, 0];
    for c in 0..5 {
        close(r.per_class[c].precision, precision[c]);
        close(r.per_class[c].recall, recall[c]);
        close(r.per_class[c].f1, f1[c]);
        assert_eq!(r.per_class[c].support, support[c]);
    }
    assert_eq!(r.confusion[2], vec![1, 1, 3, 0, 0]);
}

#[test]
fn bad_inputs_are_errors() {
    let names: Vec<String> = vec!["a".into(), "b".into()];
    assert!(classification_report(&[0, 1], &[0], &names).is_err());
    assert!(classification_report(&[], &[], &names).is_err());
    assert!(classification_report(&[0, 2], &[0, 1], &names).is_err());
    let (m, sd) = mean_sd(&[1.0, 2.0, 3.0, 4.0]);
    assert!((m - 2.5).abs() < 1e-12 && (sd - 1.2909944487358056).abs() < 1e-12);
}
