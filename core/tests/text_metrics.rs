//! Metrics against scikit-learn 1.x (`precision_recall_fscore_support`, `f1_score` with
//! `labels=range(5), zero_division=0`), computed for these exact labels; tolerance 1e-12.

use rampart_core::text::metrics::{classification_report, cv_interval95, mean_sd, student_t_975};

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

#[test]
fn stratified_folds_deal_every_class_evenly() {
    use rampart_core::text::cv::stratified_folds;
    let labels: Vec<usize> = [vec![0; 23], vec![1; 9], vec![2; 3], vec![3; 1]].concat();
    let k = 5;
    let folds = stratified_folds(&labels, k, 7).unwrap();
    for c in 0..4 {
        let n = labels.iter().filter(|&&l| l == c).count();
        for f in 0..k {
            let in_fold = (0..labels.len())
                .filter(|&i| labels[i] == c && folds[i] == f)
                .count();
            assert!(
                in_fold == n / k || in_fold == n.div_ceil(k),
                "class {c} fold {f}: {in_fold}"
            );
        }
    }
    let sizes: Vec<usize> = (0..k)
        .map(|f| folds.iter().filter(|&&x| x == f).count())
        .collect();
    assert!(
        sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1,
        "{sizes:?}"
    );
    assert_eq!(folds, stratified_folds(&labels, k, 7).unwrap());
    assert_ne!(folds, stratified_folds(&labels, k, 8).unwrap());
    assert!(stratified_folds(&labels, 1, 0).is_err());
    assert!(stratified_folds(&labels[..3], 4, 0).is_err());
}

/// Student's t 97.5 % quantiles (scipy.stats.t.ppf(0.975, df)): the table and the expansion
/// beyond it, to 1e-4.
#[test]
fn student_t_quantiles() {
    for (df, t) in [
        (1, 12.7062),
        (14, 2.1448),
        (30, 2.0423),
        (31, 2.0395),
        (40, 2.0211),
        (60, 2.0003),
        (120, 1.9799),
        (1000, 1.9623),
    ] {
        let got = student_t_975(df);
        assert!((got - t).abs() < 1e-4, "df {df}: {got} vs {t}");
    }
    assert!(student_t_975(0).is_nan());
}

/// Two runs of 2-fold CV, 0.8 and 0.9: mean 0.85, sd √0.005, half-width
/// t(1) · sd · √(1/2 + 1/1) = 12.7062 · √0.0075.
#[test]
fn corrected_cv_interval() {
    let [lo, hi] = cv_interval95(&[0.8, 0.9], 2);
    let half = 12.7062 * 0.0075f64.sqrt();
    assert!((lo - (0.85 - half)).abs() < 1e-9 && (hi - (0.85 + half)).abs() < 1e-9);
    // Wider than the plain t interval, which ignores the shared training folds.
    let plain = 12.7062 * 0.005f64.sqrt() / 2f64.sqrt();
    assert!(hi - 0.85 > plain);
    assert!(cv_interval95(&[0.8], 5)[0].is_nan());
}
