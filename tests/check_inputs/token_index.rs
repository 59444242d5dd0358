//! Which `admin.tokens` entry a token's problem names: its position in the file, refused entries counted.

use super::*;

/// Entries 0 and 1 are refused by the resolver (both sources, none) and
/// left out of the resolved list; the later entries' problems named their
/// position in that list, so `check` said `admin.tokens[0].token_env:
/// environment variable ... is not set` about the file's third entry,
/// pointing the operator at an entry with no `token_env` at all. Each
/// problem and warning names the entry as the file has it: the one
/// refused by the resolver, read from the environment, from a file, by
/// `${NAME}`, and a short token's warning.
#[test]
fn a_token_problem_names_its_entry_as_the_file_has_it() {
    const UNSET: &str = "HOTPROXY_CHECK_INPUTS_INDEX_UNSET";
    const NAMED: &str = "HOTPROXY_CHECK_INPUTS_INDEX_NAMED";
    const SHORT: &str = "HOTPROXY_CHECK_INPUTS_INDEX_SHORT";
    let admin = format!(
        "admin:\n  bind: 127.0.0.1:0\n  tokens:\n\
         \x20   - {{ role: viewer, token_env: {SHORT}, token_file: both.token }}\n\
         \x20   - {{ role: editor }}\n\
         \x20   - {{ role: viewer, token_env: {UNSET} }}\n\
         \x20   - {{ role: editor, token_file: empty.token }}\n\
         \x20   - {{ role: viewer, token_env: \"${{{NAMED}}}\" }}\n\
         \x20   - {{ role: viewer, token_env: {SHORT} }}"
    );
    let (s, cfg) = scene("public", &admin);
    let empty = s.path("empty.token");
    write(&empty, "\n");
    let (code, out) = check_with(
        &cfg,
        &[
            (NAMED, OsString::from(UNSET)),
            (SHORT, OsString::from("v1ew3r-k3y")),
        ],
    );
    assert_eq!(code, 1, "{out}");
    for said in [
        "admin.tokens[0]: exactly one of token_file or token_env is needed".to_owned(),
        "admin.tokens[1]: exactly one of token_file or token_env is needed".to_owned(),
        format!("admin.tokens[2].token_env: environment variable {UNSET} is not set"),
        format!(
            "admin.tokens[3].token_file {}: the token is empty",
            empty.display()
        ),
        format!("admin.tokens[4].token_env: the value of ${{{NAMED}}} names no set variable"),
        format!("warning: admin.tokens[5].token_env {SHORT}: admin token is shorter than 16"),
    ] {
        assert!(out.contains(&said), "{said}:\n{out}");
    }
    // No entry is named by another's position: the refused ones have no
    // token to read, and none but the last has a short token.
    for wrong in [
        "admin.tokens[0].token",
        "admin.tokens[1].token",
        "admin.tokens[2].token_file",
        "admin.tokens[3].token_env",
    ] {
        assert!(!out.contains(wrong), "{wrong}:\n{out}");
    }
    assert!(!out.contains("v1ew3r-k3y"), "{out}");
}
