//! `${NAME}` in config strings: replaced by the environment variable NAME.

use super::tree::shown_written;

/// The most bytes one string value may come to with each `${NAME}`
/// replaced: the largest file's. A few bytes of `${V}` each repeating a
/// value of kilobytes (a million of them in a 4 MiB file) asked for
/// gigabytes, and the process (on a reload, the serving proxy) aborted.
pub const MAX_EXPANDED_VALUE_BYTES: usize = super::MAX_CONFIG_BYTES as usize;

/// The most bytes the values of one file that name a variable may come to
/// together, expanded: as much as its text may read as
/// ([`super::tree::MAX_TEXT_BYTES`]).
pub const MAX_EXPANDED_BYTES: usize = super::tree::MAX_TEXT_BYTES;

/// Replace `${NAME}` with the environment variable NAME. `used`: the bytes
/// the file's values expanded before this one came to (of
/// [`MAX_EXPANDED_BYTES`]), this one's added on success. Past either limit
/// the value is refused, the message naming neither it nor a variable's
/// value.
pub(super) fn expand_env(s: &str, used: &mut usize) -> Result<String, String> {
    if !s.contains("${") {
        return Ok(s.to_owned());
    }
    let limit = MAX_EXPANDED_VALUE_BYTES.min(MAX_EXPANDED_BYTES.saturating_sub(*used));
    let too_long = || {
        if limit < MAX_EXPANDED_VALUE_BYTES {
            format!(
                "with each `${{NAME}}` replaced, this value and those before it come to more \
                 than the {MAX_EXPANDED_BYTES} bytes a file's values set from the environment \
                 may; refused (name each variable once, or fewer times)"
            )
        } else {
            format!(
                "with each `${{NAME}}` replaced, this value is more than the \
                 {MAX_EXPANDED_VALUE_BYTES} bytes a value may be; refused (name each \
                 variable once, or fewer times)"
            )
        }
    };
    let mut out = String::with_capacity(s.len().min(limit));
    let mut rest = s;
    let push = |out: &mut String, part: &str| {
        if out.len() + part.len() > limit {
            return Err(too_long());
        }
        out.push_str(part);
        Ok(())
    };
    while let Some(start) = rest.find("${") {
        push(&mut out, &rest[..start])?;
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unterminated ${{ in {}", super::found_text(s)))?;
        let name = &after[..end];
        push(&mut out, &var(name)?)?;
        rest = &after[end + 1..];
    }
    push(&mut out, rest)?;
    *used += out.len();
    Ok(out)
}

/// The environment variable `name`, or why not, naming it and never its
/// value: unset, or set to bytes that are not UTF-8 (which "is not set"
/// misnamed, sending the operator to look for a missing variable). An
/// unset `name` that [`name_looks_like_a_token`] is not repeated.
pub(crate) fn var(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|e| match e {
        std::env::VarError::NotPresent if name_looks_like_a_token(name) => {
            "no environment variable is set by the name written here, which looks like \
             a token, not a variable's name (did you paste the token itself?); the name \
             is withheld"
                .to_owned()
        }
        std::env::VarError::NotPresent => {
            format!("environment variable {} is not set", shown_written(name))
        }
        std::env::VarError::NotUnicode(_) => {
            format!(
                "environment variable {} is set but not valid UTF-8",
                shown_written(name)
            )
        }
    })
}

/// Whether `name`, written where an environment variable's name goes,
/// looks like a token pasted in its place: it is not a variable's name
/// (`[A-Za-z_][A-Za-z0-9_]*`: a UUID, `a+b/c=` are not), or a part of it
/// between `_` is a run of [`TOKEN_RUN`] or more characters mixing
/// letters and digits (`hp_9f8e7d6c`, not `ADMIN_TOKEN_2`). A name that
/// holds a short word mixing them (`K8S2PROD_TOKEN`) is withheld too: a
/// name hidden costs a less helpful message, a token shown is a leak.
pub(crate) fn name_looks_like_a_token(name: &str) -> bool {
    let shaped = name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    !shaped || name.split('_').any(mixed_run)
}

/// Whether `name`, written as the name of a token's file (the last part
/// of its path), looks like a token pasted in its place: it is not a
/// variable's name with `.` and `-` allowed, a part of it between `_`,
/// `-` and `.` is a run of [`TOKEN_RUN`] or more characters mixing
/// letters and digits, or it holds a UUID (8-4-4-4-12 hex digits, whose
/// groups may each be all letters or all digits).
pub(crate) fn file_name_looks_like_a_token(name: &str) -> bool {
    let shaped = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && !name.starts_with(|c: char| c.is_ascii_digit());
    !shaped || name.split(['_', '-', '.']).any(mixed_run) || holds_a_uuid(name)
}

/// Whether `part` is a run of [`TOKEN_RUN`] or more characters mixing
/// letters and digits.
fn mixed_run(part: &str) -> bool {
    part.len() >= TOKEN_RUN
        && part.bytes().any(|b| b.is_ascii_digit())
        && part.bytes().any(|b| b.is_ascii_alphabetic())
}

/// Whether `name` holds five groups of hex digits of 8, 4, 4, 4 and 12
/// joined by `-` (a UUID), between `_` and `.` or at its ends.
fn holds_a_uuid(name: &str) -> bool {
    const GROUPS: [usize; 5] = [8, 4, 4, 4, 12];
    name.split(['_', '.']).any(|part| {
        let groups: Vec<&str> = part.split('-').collect();
        groups.windows(GROUPS.len()).any(|w| {
            w.iter()
                .zip(GROUPS)
                .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
        })
    })
}

/// The shortest run of letters and digits taken for a token in a name
/// (a variable's or a file's): `hp_9f8e7d6c`, `0f1e2d3c`. A shorter word
/// mixing them (`K8S2PROD`, `SHA256SUM`) is taken for one too.
const TOKEN_RUN: usize = 8;

/// The shortest run of letters and digits taken for a token in a
/// directory's name: directories are named by others (a temporary
/// directory's `.tmpAbC123`, `/var/folders/7k/...`) and hold shorter
/// words mixing them, while a token is 16 characters or more (`openssl
/// rand -hex 16` is 32).
const DIR_TOKEN_RUN: usize = 16;

/// Whether a file's path, as written, has a part that looks like a token
/// pasted as, or into, it: the file's name by
/// [`file_name_looks_like_a_token`], a directory's when a run of
/// [`DIR_TOKEN_RUN`] or more ASCII letters and digits mixes both (not
/// `2024-prod`, `1password`, `josé`). A part that is not UTF-8 is no token.
pub(crate) fn path_looks_like_a_token(path: &std::path::Path) -> bool {
    fn name(c: std::path::Component<'_>) -> Option<&str> {
        match c {
            std::path::Component::Normal(part) => part.to_str(),
            _ => None,
        }
    }
    let mut parts = path.components().rev();
    parts
        .next()
        .and_then(name)
        .is_some_and(file_name_looks_like_a_token)
        || parts.filter_map(name).any(|dir| {
            dir.split(|c: char| !c.is_ascii_alphanumeric()).any(|run| {
                run.len() >= DIR_TOKEN_RUN
                    && run.bytes().any(|b| b.is_ascii_digit())
                    && run.bytes().any(|b| b.is_ascii_alphabetic())
            })
        })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::tests::{MINIMAL, messages, parse_str};

    /// `${NAME}` expands from the environment; an unset one is an error naming it.
    #[test]
    fn env_expansion() {
        // SAFETY of the test: the variable name is unique to this test.
        unsafe_free_set_var();
        let text = MINIMAL.replace("pki/server.crt", "${HOTPROXY_TEST_DIR}/server.crt");
        let c = parse_str(&text).unwrap();
        assert_eq!(
            c.entries[0].source.paths()[0],
            Path::new("/srv/pki/server.crt")
        );
        let text = MINIMAL.replace("pki/server.crt", "${HOTPROXY_UNSET_VARIABLE}/x");
        let m = messages(&parse_str(&text).unwrap_err());
        assert!(m.contains("HOTPROXY_UNSET_VARIABLE is not set"), "{m}");
    }

    /// Every string field takes `${NAME}`, not only paths and addresses:
    /// a listener's name, a route's prefix, an allow rule's CN; an unset
    /// variable there is an error naming that field.
    #[test]
    fn env_expansion_in_every_string_field() {
        assert_eq!(std::env::var("HOTPROXY_TEST_NAME").as_deref(), Ok("ops"));
        let text = MINIMAL
            .replace("name: public", "name: ${HOTPROXY_TEST_NAME}-public")
            // Route rules need clients verified.
            .replace(
                "certs: [{ ref: edge }]",
                "certs: [{ ref: edge }]\n      client_auth: { mode: require_and_verify, ca: { ref: ca } }",
            )
            .replace(
                "routes: [{ upstream: api }]",
                "routes: [{ upstream: api, path_prefix: \"/${HOTPROXY_TEST_NAME}\", allow: [{ cn: \"${HOTPROXY_TEST_NAME}\" }] }]",
            );
        let c = parse_str(&text).unwrap();
        let l = &c.listeners[0];
        assert_eq!(l.name, "ops-public");
        assert_eq!(l.routes[0].path_prefix.as_deref(), Some("/ops"));
        let allow = format!("{:?}", l.routes[0].allow);
        assert!(
            allow.contains("\"ops\"") && !allow.contains("${"),
            "{allow}"
        );
        let text = MINIMAL.replace(
            "routes: [{ upstream: api }]",
            "routes: [{ upstream: api, allow: [{ cn: \"${HOTPROXY_UNSET_VARIABLE}\" }] }]",
        );
        let m = messages(&parse_str(&text).unwrap_err());
        assert!(
            m.contains("listeners[0].routes[0].allow[0].cn")
                && m.contains("HOTPROXY_UNSET_VARIABLE is not set"),
            "{m}"
        );
    }

    /// A token pasted as a one-line block scalar that also names a
    /// variable: its label was its text as written (`<withheld: the value
    /// of hp_7c1d...${NAME}>`), since the block was not known where the
    /// variable was expanded. It is labelled as set from the environment.
    #[test]
    fn a_one_line_block_with_a_variable_is_not_the_label() {
        let text = format!(
            "{MINIMAL}runtime:\n  worker_threads: |\n    hp_7c1d9e8f2a3b${{HOTPROXY_TEST_NAME}}\n"
        );
        let m = messages(&parse_str(&text).unwrap_err());
        assert!(m.contains("runtime.worker_threads"), "{m}");
        assert!(m.contains("a value set from the environment"), "{m}");
        assert!(!m.contains("7c1d9e8f") && !m.contains("ops"), "{m}");
    }

    /// Variable names are named; a token pasted as one is not: not a
    /// name's shape (a UUID, base64), or a run of 8 or more mixing letters
    /// and digits, a short word (`K8S2PROD`) too: a name hidden costs a
    /// less helpful message, a token shown is a leak.
    #[test]
    fn a_token_is_not_a_variable_name() {
        for name in [
            "ADMIN_TOKEN",
            "HOTPROXY_CHECK_INPUTS_TOKEN",
            "token_v2",
            "SHA256",
            "ADMIN_TOKEN_20240601",
        ] {
            assert!(!super::name_looks_like_a_token(name), "{name}");
        }
        for token in [
            "hp_9f8e7d6c5b4a3921",
            "ABCDEFGH12345678",
            "0f1e2d3c",
            "a+b/c=",
            "ghp_AbCdEf1234567890AbCdEf1234567890AbCd",
            "d3f2a9c1-8b7d-4e6f-9a0b-1c2d3e4f5a6b",
            "deadbeef-1234-5678-9abc-123456789012",
            "Xq7Lm2Pz9Rk4",
            "K8S2PROD_TOKEN",
            "SHA256SUM",
            "admin.token",
        ] {
            assert!(super::name_looks_like_a_token(token), "{token}");
        }
    }

    /// A token file's name is named; one that is, or holds, a token is
    /// not: not a name's shape, a run of 8 or more mixing letters and
    /// digits, or a UUID (whose groups may each be all letters or digits).
    #[test]
    fn a_token_is_not_a_file_name() {
        for name in [
            "admin.token",
            "viewer-x509v3.token",
            "token_v2.txt",
            "ADMIN_TOKEN_20240601",
        ] {
            assert!(!super::file_name_looks_like_a_token(name), "{name}");
        }
        for token in [
            "hp_9f8e7d6c5b4a3921",
            "0f1e2d3c",
            "Xq7Lm2Pz9Rk4",
            "admin-k8s2prod.token",
            "d3f2a9c1-8b7d-4e6f-9a0b-1c2d3e4f5a6b",
            "deadbeef-1234-5678-9abc-123456789012.token",
            "admin_deadbeef-abcd-efab-cdef-abcdefabcdef",
            "a+b=",
        ] {
            assert!(super::file_name_looks_like_a_token(token), "{token}");
        }
    }

    /// A path as written: the file's name by the file name's rules, a
    /// directory's by a run of 16 mixing letters and digits only.
    #[test]
    fn a_token_in_a_path() {
        for path in [
            "/srv/2024-prod/admin.token",
            "/opt/1password/admin.token",
            "/home/josé/admin.token",
            "/var/folders/7k/abcd1234xyz_0000gn/T/admin.token",
            "k8s2prod/viewer-x509v3.token",
            "../.tmpAbC123/admin.token",
            "admin.token",
        ] {
            assert!(!super::path_looks_like_a_token(Path::new(path)), "{path}");
        }
        for path in [
            "hp_9f8e7d6c5b4a3921/viewer.token",
            "/run/secrets/0f1e2d3c4b5a69788796a5b4c3d2e1f0",
            "/run/secrets/d3f2a9c1-8b7d-4e6f-9a0b-1c2d3e4f5a6b",
            "secrets/Xq7Lm2Pz9Rk4",
        ] {
            assert!(super::path_looks_like_a_token(Path::new(path)), "{path}");
        }
    }

    fn unsafe_free_set_var() {
        // set_var is unsafe in edition 2024 and the crate forbids unsafe;
        // the variable is provided to the test binary by cargo's env instead.
        assert_eq!(
            std::env::var("HOTPROXY_TEST_DIR").as_deref(),
            Ok("/srv/pki")
        );
    }
}
