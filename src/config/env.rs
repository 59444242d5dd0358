//! `${NAME}` in config strings: replaced by the environment variable NAME.

/// Replace `${NAME}` with the environment variable NAME.
pub(super) fn expand_env(s: &str) -> Result<String, String> {
    if !s.contains("${") {
        return Ok(s.to_owned());
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unterminated ${{ in {s:?}"))?;
        let name = &after[..end];
        out.push_str(&var(name)?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The environment variable `name`, or why not, naming it and never its
/// value: unset, or set to bytes that are not UTF-8 (which "is not set"
/// misnamed, sending the operator to look for a missing variable). An
/// unset `name` that [`looks_like_a_token`] is not repeated.
pub(crate) fn var(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|e| match e {
        std::env::VarError::NotPresent if looks_like_a_token(name) => {
            "no environment variable is set by the name written here, which looks like \
             a token, not a variable's name (did you paste the token itself?); the name \
             is withheld"
                .to_owned()
        }
        std::env::VarError::NotPresent => format!("environment variable {name} is not set"),
        std::env::VarError::NotUnicode(_) => {
            format!("environment variable {name} is set but not valid UTF-8")
        }
    })
}

/// Whether `name`, written where a variable's or file's name goes, looks
/// like a token pasted in its place: it is not a variable's name
/// (`[A-Za-z_][A-Za-z0-9_]*`, a `.` or `-` allowed for a file name), or a
/// part of it between `_`, `-` and `.` is a run of [`TOKEN_RUN`] or more
/// characters mixing letters and digits (`hp_9f8e7d6c5b4a3921...`, not
/// `ADMIN_TOKEN_2` nor `K8S2PROD`).
pub(crate) fn looks_like_a_token(name: &str) -> bool {
    let shaped = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && !name.starts_with(|c: char| c.is_ascii_digit());
    let mixed = name.split(['_', '-', '.']).any(|part| {
        part.len() >= TOKEN_RUN
            && part.bytes().any(|b| b.is_ascii_digit())
            && part.bytes().any(|b| b.is_ascii_alphabetic())
    });
    !shaped || mixed
}

/// The shortest run of letters and digits taken for a token: a token is
/// 16 characters or more (`openssl rand -hex 16` is 32), while names hold
/// shorter words that mix them (`K8S2PROD`, `SHA256SUM`, a temporary
/// directory's `.tmpAbC123`).
const TOKEN_RUN: usize = 16;

/// Whether a file's path has a part (a directory's name or the file's)
/// that [`looks_like_a_token`]: a token pasted as, or into, the path.
/// A part that is not UTF-8 is no token.
pub(crate) fn path_looks_like_a_token(path: &std::path::Path) -> bool {
    path.components().any(|c| match c {
        std::path::Component::Normal(part) => part.to_str().is_some_and(looks_like_a_token),
        _ => false,
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

    /// Variable names are named, a word of 8 to 15 letters and digits in
    /// one too (`K8S2PROD`, `SHA256SUM`); a token pasted as one is not: a
    /// run of 16 or more mixing letters and digits, or not a name's shape.
    #[test]
    fn a_token_is_not_a_variable_name() {
        for name in [
            "ADMIN_TOKEN",
            "HOTPROXY_CHECK_INPUTS_TOKEN",
            "token_v2",
            "SHA256",
            "K8S2PROD_TOKEN",
            "SHA256SUM",
            "admin-k8s2prod.token",
            "ABCDEFGH1234567",
        ] {
            assert!(!super::looks_like_a_token(name), "{name}");
        }
        for token in [
            "hp_9f8e7d6c5b4a3921",
            "ABCDEFGH12345678",
            "0f1e2d3c",
            "a+b/c=",
            "ghp_AbCdEf1234567890AbCdEf1234567890AbCd",
        ] {
            assert!(super::looks_like_a_token(token), "{token}");
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
