//! The message for an unknown key: the keys allowed there, and the one it was likely meant to be.

/// "unknown key `pol_interval` (did you mean `poll_interval`?; allowed here: ...)",
/// the key as [`super::shown_key`] shows it.
pub(super) fn unknown_key(key: &str, fields: &[&str]) -> String {
    let near = fields
        .iter()
        .map(|f| (distance(key, f), *f))
        .filter(|(d, f)| *d <= 2.max(f.len() / 4))
        .min();
    let allowed = fields.join(", ");
    let key = super::shown_key(key);
    match near {
        Some((_, f)) => {
            format!("unknown key `{key}` (did you mean `{f}`? allowed here: {allowed})")
        }
        None => format!("unknown key `{key}` (allowed here: {allowed})"),
    }
}

/// Levenshtein distance, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}
