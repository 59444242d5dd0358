//! How many problems one report lists: the rest are counted, not printed.

use std::path::Path;

/// The most problem lines printed or logged for one file: a small file can
/// hold thousands of mistakes (a list written by a script, nested aliases),
/// and the first ones are what to fix first.
pub const MAX_LISTED: usize = 100;

/// The first `MAX_LISTED` of `lines` (each `FILE: LOCATION: MESSAGE`),
/// then one saying how many more there are.
pub fn listed(file: &Path, mut lines: Vec<String>) -> Vec<String> {
    let more = lines.len().saturating_sub(MAX_LISTED);
    if more > 0 {
        lines.truncate(MAX_LISTED);
        lines.push(format!(
            "{}: … and {more} more problem(s), not listed",
            crate::material::shown_path(file)
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{messages, parse_str};
    use crate::config::tree::tests::alias_bomb;

    /// A bomb in the configuration file is one problem naming the file.
    #[test]
    fn an_alias_bomb_is_one_problem_naming_the_file() {
        let e = parse_str(&alias_bomb()).unwrap_err();
        assert_eq!(e.problems.len(), 1, "{}", messages(&e));
        let m = messages(&e);
        assert!(m.starts_with("/etc/hotproxy/config.yaml: line "), "{m}");
        assert!(m.contains("aliases expand to more than"), "{m}");
    }

    /// Hundreds of problems: the first hundred are listed, then how many
    /// more there are.
    #[test]
    fn at_most_a_hundred_problems_are_listed() {
        let text: String = (0..300).map(|i| format!("unknown{i}: 1\n")).collect();
        let e = parse_str(&text).unwrap_err();
        assert_eq!(e.problems.len(), 300);
        let m = messages(&e);
        let lines: Vec<&str> = m.lines().collect();
        assert_eq!(lines.len(), 101, "{m}");
        assert!(lines[99].contains("unknown99"), "{m}");
        assert_eq!(
            lines[100],
            "/etc/hotproxy/config.yaml: … and 200 more problem(s), not listed"
        );
    }
}
