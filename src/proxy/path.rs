//! Request path normalisation before routing (RFC 3986 §6.2.2, §5.2.4).
//!
//! Routes match path prefixes, so the path a route sees must be the path the
//! backend will act on: `/pub/../secret` and `/pub/%2e%2e/secret` are
//! `/secret`, and that is what is routed and forwarded. Percent-encoded
//! unreserved characters are decoded (`%2e` is `.`, `%61` is `a`; RFC 3986
//! §6.2.2.2 says they are equivalent), a run of `/` becomes one (`//admin`
//! is `/admin`, as nginx, Tomcat and Traefik read it), then dot segments
//! are removed. An encoded `/` or `\` (`%2f`, `%5c`), an encoded NUL
//! (`%00`), a raw `\`, a `%` not followed by two hex digits, or a dot
//! segment with parameters (`..;x`) is refused: a backend that decodes them
//! would see segments, or an end, the router never saw. The common path
//! needs no change and is not copied.

use std::borrow::Cow;

/// Why a request path is refused (the client gets a 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("encoded '/' or '\\' in the path")]
    EncodedSeparator,
    #[error("'\\' in the path")]
    Backslash,
    #[error("'%' not followed by two hex digits")]
    BadPercent,
    /// `..;x` or `.;x`: Tomcat and Jetty drop the parameters and resolve
    /// the dot segment, so a backend would climb where routing did not.
    #[error("dot segment with parameters")]
    DotSegmentParams,
    /// `%00`: a backend decoding the path into a C string, or handing it
    /// to the filesystem, stops at the NUL (`/x.php%00.png` is its
    /// `/x.php`); nginx refuses it too.
    #[error("encoded NUL in the path")]
    EncodedNul,
    /// An HTTP/2 `:path` such as `?x` or `x` (RFC 9113 §8.3.1: `/`
    /// first, or `*` alone): no path a route or an upstream can read.
    #[error("the path does not start with '/'")]
    NoLeadingSlash,
}

/// The normalised form of `path` (the path part only, no query): borrowed
/// when nothing changes. A path not starting with `/` (`*` of `OPTIONS *`)
/// is returned as is, after the same checks.
pub fn normalise(path: &str) -> Result<Cow<'_, str>, PathError> {
    let bytes = path.as_bytes();
    let mut decode = false;
    let mut dot = false;
    let mut slashes = false;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'.' => dot = true,
            b'/' if i > 0 && bytes[i - 1] == b'/' => slashes = true,
            b'\\' => return Err(PathError::Backslash),
            b'%' => {
                let (Some(&h), Some(&l)) = (bytes.get(i + 1), bytes.get(i + 2)) else {
                    return Err(PathError::BadPercent);
                };
                let byte = match (hex(h), hex(l)) {
                    (Some(h), Some(l)) => h << 4 | l,
                    _ => return Err(PathError::BadPercent),
                };
                match byte {
                    b'/' | b'\\' => return Err(PathError::EncodedSeparator),
                    0 => return Err(PathError::EncodedNul),
                    _ if is_unreserved(byte) => decode = true,
                    _ => {}
                }
            }
            _ => {}
        }
    }
    // Dot segments (also `.;x`) need a dot, and `%2e` sets `decode`: the
    // common path ends here, without the segment scans below.
    if !decode && !dot && !slashes {
        return Ok(Cow::Borrowed(path));
    }
    let mut decoded: Cow<'_, str> = if decode {
        Cow::Owned(decode_unreserved(path))
    } else {
        Cow::Borrowed(path)
    };
    // Before the dot segments, as nginx and Tomcat do: `/pub//../x` is
    // `/x` to them and so here (RFC 3986 alone makes it `/pub/x`; either
    // way the backend gets the path routed on). Decoding cannot make a new
    // `/`: `%2f` was refused.
    if slashes && decoded.starts_with('/') {
        decoded = Cow::Owned(merge_slashes(&decoded));
    }
    if decoded
        .split('/')
        .any(|seg| matches!(seg.split_once(';'), Some(("." | "..", _))))
    {
        return Err(PathError::DotSegmentParams);
    }
    if !decoded.starts_with('/') || !has_dot_segment(&decoded) {
        return Ok(decoded);
    }
    Ok(Cow::Owned(remove_dot_segments(&decoded)))
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 §2.3.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Decode `%XX` of unreserved characters; keep every other `%XX` as sent.
/// The input was checked: every `%` starts a valid triplet, so decoding can
/// never join a `%` with decoded digits into a new triplet.
fn decode_unreserved(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) else {
                unreachable!("checked by normalise")
            };
            let byte = h << 4 | l;
            if is_unreserved(byte) {
                out.push(byte as char);
            } else {
                out.push_str(&path[i..i + 3]);
            }
            i += 3;
        } else {
            // Copy up to the next '%' in one go (keeps multi-byte UTF-8 whole).
            let end = path[i..].find('%').map_or(bytes.len(), |n| i + n);
            out.push_str(&path[i..end]);
            i = end;
        }
    }
    out
}

/// `path` with every `%XX` decoded, as bytes: what a route's prefix is
/// compared in. Backends decode the whole path (nginx matches locations
/// on it, so do Tomcat, Spring and Go's ServeMux), so `/%40admin/` is
/// their `/@admin/`, and `/caf%c3%a9/` their `/café/`: compared as sent,
/// either would slip past a prefix route's rules. Borrowed when there is
/// no `%`. A `%` not starting a valid triplet is kept as it is (the
/// request path was checked by [`normalise`]; a prefix was too).
pub fn decoded(path: &str) -> Cow<'_, [u8]> {
    let bytes = path.as_bytes();
    if !bytes.contains(&b'%') {
        return Cow::Borrowed(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let triplet = (bytes[i] == b'%')
            .then(|| Some((hex(*bytes.get(i + 1)?)?, hex(*bytes.get(i + 2)?)?)))
            .flatten();
        match triplet {
            Some((h, l)) => {
                out.push(h << 4 | l);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    Cow::Owned(out)
}

/// `path` as Tomcat and Jetty read it: each segment's `;` parameters
/// dropped (`/admin;x/secret` is `/admin/secret`), runs of `/` left by an
/// empty segment merged; borrowed when there is no `;`.
pub fn without_params(path: &str) -> Cow<'_, str> {
    if !path.contains(';') {
        return Cow::Borrowed(path);
    }
    let stripped: Vec<&str> = path
        .split('/')
        .map(|seg| seg.split_once(';').map_or(seg, |(name, _)| name))
        .collect();
    Cow::Owned(merge_slashes(&stripped.join("/")))
}

/// `path` with every run of `/` made one.
fn merge_slashes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if !(c == '/' && out.ends_with('/')) {
            out.push(c);
        }
    }
    out
}

fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|s| s == "." || s == "..")
}

/// RFC 3986 §5.2.4, for a path starting with `/`.
fn remove_dot_segments(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut input = path;
    while !input.is_empty() {
        if let Some(rest) = input.strip_prefix("../") {
            input = rest;
        } else if let Some(rest) = input.strip_prefix("./") {
            input = rest;
        } else if input.starts_with("/./") {
            input = &input[2..];
        } else if input == "/." {
            input = "/";
        } else if input.starts_with("/../") {
            input = &input[3..];
            pop_segment(&mut out);
        } else if input == "/.." {
            input = "/";
            pop_segment(&mut out);
        } else if input == "." || input == ".." {
            input = "";
        } else {
            let skip = usize::from(input.starts_with('/'));
            let end = input[skip..].find('/').map_or(input.len(), |n| n + skip);
            out.push_str(&input[..end]);
            input = &input[end..];
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// Remove the last segment and its preceding `/` from `out`.
fn pop_segment(out: &mut String) {
    let at = out.rfind('/').unwrap_or(0);
    out.truncate(at);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn examples() {
        let ok = |p: &str| normalise(p).unwrap().into_owned();
        assert_eq!(ok("/a/b"), "/a/b");
        assert!(matches!(normalise("/a/b").unwrap(), Cow::Borrowed(_)));
        assert_eq!(ok("/pub/../secret"), "/secret");
        assert_eq!(ok("/pub/%2e%2e/secret"), "/secret");
        assert_eq!(ok("/pub/%2E%2e/secret"), "/secret");
        assert_eq!(ok("/pub/.%2e/secret"), "/secret");
        assert_eq!(ok("/../../etc"), "/etc");
        assert_eq!(ok("/a/./b/."), "/a/b/");
        assert_eq!(ok("/a/.."), "/");
        assert_eq!(ok("/.."), "/");
        assert_eq!(ok("/a/..b/c"), "/a/..b/c");
        assert_eq!(ok("/%61pi/x"), "/api/x");
        assert_eq!(ok("/a%20b/%7e"), "/a%20b/~");
        assert_eq!(ok("/caf%C3%A9"), "/caf%C3%A9");
        assert_eq!(ok("*"), "*");
        // Runs of `/` are one, before the dot segments (nginx, Tomcat).
        assert_eq!(ok("/a//../b"), "/b");
        assert_eq!(ok("//admin/secret"), "/admin/secret");
        assert_eq!(ok("/admin///secret//"), "/admin/secret/");
        assert_eq!(ok("/pub//../secret"), "/secret");
        assert_eq!(ok("/%2e//x"), "/x");
        assert_eq!(
            normalise("/pub/..%2fsecret"),
            Err(PathError::EncodedSeparator)
        );
        assert_eq!(
            normalise("/pub%2F..%2Fsecret"),
            Err(PathError::EncodedSeparator)
        );
        assert_eq!(
            normalise("/pub/..%5csecret"),
            Err(PathError::EncodedSeparator)
        );
        assert_eq!(normalise("/%00"), Err(PathError::EncodedNul));
        assert_eq!(normalise("/x.php%00.png"), Err(PathError::EncodedNul));
        assert_eq!(normalise("/pub\\..\\secret"), Err(PathError::Backslash));
        assert_eq!(normalise("/a%2"), Err(PathError::BadPercent));
        assert_eq!(normalise("/a%zz"), Err(PathError::BadPercent));
        // A '%' before encoded digits cannot form a new triplet after decoding.
        assert_eq!(normalise("/%%32e"), Err(PathError::BadPercent));
        assert_eq!(
            normalise("/pub/..;/secret"),
            Err(PathError::DotSegmentParams)
        );
        assert_eq!(
            normalise("/pub/%2e%2e;x/secret"),
            Err(PathError::DotSegmentParams)
        );
        assert_eq!(ok("/pub/a;v=1/..x;y"), "/pub/a;v=1/..x;y");
    }

    #[test]
    fn path_parameters_as_tomcat_drops_them() {
        assert!(matches!(without_params("/a/b"), Cow::Borrowed("/a/b")));
        assert_eq!(without_params("/admin;x/secret"), "/admin/secret");
        assert_eq!(without_params("/a;b;c/d;e"), "/a/d");
        assert_eq!(without_params("/admin/;x/secret"), "/admin/secret");
        assert_eq!(without_params("/app/page;jsessionid=1"), "/app/page");
    }

    /// Paths made of the pieces that matter to normalisation.
    fn hostile_path() -> impl Strategy<Value = String> {
        let piece = prop::sample::select(vec![
            "/", ".", "..", "%2e", "%2E", "%2e%2e", "%2f", "%2F", "%5c", "\\", "%", "%25", "%41",
            "%7e", "%c3%a9", "a", "pub", "public", "é", ";", "?", "#", "~",
        ]);
        prop::collection::vec(piece, 0..16).prop_map(|p| p.concat())
    }

    proptest! {
        #[test]
        fn never_panics(p in any::<String>()) {
            let _ = normalise(&p);
        }

        #[test]
        fn idempotent(p in hostile_path()) {
            if let Ok(once) = normalise(&p) {
                let twice = normalise(&once).expect("a normalised path is accepted");
                prop_assert_eq!(once.as_ref(), twice.as_ref());
            }
        }

        /// Whatever follows `/pub/`, the normalised path is still under
        /// `/pub/` (or `/pub`), or it no longer starts with `/pub` at all,
        /// and it has no dot segment or run of `/` left for a backend to
        /// resolve.
        #[test]
        fn never_escapes_a_prefix(rest in hostile_path()) {
            let raw = format!("/pub/{rest}");
            if let Ok(n) = normalise(&raw) {
                prop_assert!(!has_dot_segment(&n), "{raw} -> {n}");
                prop_assert!(!n.contains("//"), "{raw} -> {n}");
                prop_assert!(!n.contains("%2e") && !n.contains("%2E"), "{raw} -> {n}");
                if n.starts_with("/pub") && !n.starts_with("/pub/") && n != "/pub" {
                    // Only a sibling like /public can start with "/pub" here,
                    // and only if the raw path climbed out with "..".
                    prop_assert!(raw.contains("..") || raw.contains("%2e") || raw.contains("%2E"), "{raw} -> {n}");
                }
            }
        }
    }
}
