//! A ca-bundle's `crl_files`: how many there may be, and each one once.

use std::path::PathBuf;

use super::tree::shown_written;

/// The most CRL files one ca-bundle lists. A CA hierarchy publishes a CRL
/// per issuing CA, a handful at most; every re-read of the entry opens
/// each file (twice: two reads must agree), so a list of thousands held
/// the reloader (or the API's blocking pool) for as long as it took.
pub const MAX_CRL_FILES: usize = 64;

/// Why `crl_files` is refused, if it is: more than [`MAX_CRL_FILES`], or a
/// path listed twice (read twice, counted twice, to no end).
pub fn crl_files_problem(crl_files: &[PathBuf]) -> Option<String> {
    if crl_files.len() > MAX_CRL_FILES {
        return Some(format!(
            "{} files listed; at most {MAX_CRL_FILES}",
            crl_files.len()
        ));
    }
    let mut seen = std::collections::HashSet::new();
    crl_files.iter().find(|p| !seen.insert(*p)).map(|p| {
        format!(
            "{} is listed twice",
            shown_written(&p.display().to_string())
        )
    })
}
