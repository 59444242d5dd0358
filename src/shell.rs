//! A word quoted for a POSIX shell, as Python's `shlex.quote` does: the paths and hosts of the commands hotproxy prints for an operator to paste.
//!
//! A command printed with a path as it is (`curl --cacert /home/me/my
//! pki/ca.crt`) is other words once pasted, and a name holding `$(...)`
//! or a backtick runs something else. [`shell_word`] gives the text a
//! shell reads back as that one word.

use std::borrow::Cow;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::os::unix::ffi::OsStrExt;

/// `word` as a shell reads it back as one word, as `shlex.quote` writes
/// it: as it is when it is made only of ASCII letters, digits and
/// `@%+=:,./-_`; `''` when empty; else in single quotes, each `'` in it
/// written `'"'"'`.
///
/// A word that is not UTF-8 or holds a character a terminal would act on
/// or hide (an ESC, a line break, any control character; what
/// `escape_debug` escapes) is written `$'...'` instead, those bytes as
/// three octal digits (`\NNN`) and `\` and `'` escaped: bash, zsh, ksh93
/// and a POSIX.1-2024 `sh` read it back byte for byte, and no raw control
/// byte reaches the operator's terminal. (A plain POSIX `sh` has no way to
/// write such a byte but raw.) Not `\xHH`: ksh93 reads every hex digit
/// after `\x` (`$'line\x0Abreak'` is `line`, U+0AB, `reak`) and POSIX
/// leaves more than two unspecified, while an octal escape is three digits
/// at most, and written with all three no digit after it is taken in.
pub fn shell_word<S: AsRef<OsStr> + ?Sized>(word: &S) -> Cow<'_, str> {
    let bytes = word.as_ref().as_bytes();
    if bytes.is_empty() {
        return Cow::Borrowed("''");
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(text) if text.chars().all(shown_as_is) => text,
        _ => return Cow::Owned(ansi_c(bytes)),
    };
    if text.bytes().all(safe) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(format!("'{}'", text.replace('\'', r#"'"'"'"#)))
}

/// The bytes `shlex.quote` leaves unquoted (its `[\w@%+=:,./-]`, ASCII).
fn safe(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"@%+=:,./-_".contains(&b)
}

/// A character written as it is, inside quotes: one `escape_debug` leaves
/// alone (the quotes and backslash, which it escapes, are plain text here).
fn shown_as_is(c: char) -> bool {
    matches!(c, '\'' | '"' | '\\') || c.escape_debug().len() == 1
}

/// `$'...'`: every byte of a character not [`shown_as_is`], and every byte
/// that is not UTF-8, as `\NNN` (three octal digits, always); `\` and `'`
/// escaped.
fn ansi_c(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 8);
    out.push_str("$'");
    let octal = |out: &mut String, raw: &[u8]| {
        for b in raw {
            let _ = write!(out, "\\{b:03o}");
        }
    };
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str(r"\\"),
                '\'' => out.push_str(r"\'"),
                c if shown_as_is(c) => out.push(c),
                c => octal(&mut out, c.encode_utf8(&mut [0; 4]).as_bytes()),
            }
        }
        octal(&mut out, chunk.invalid());
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn plain_words_are_left_as_they_are() {
        assert_eq!(shell_word("/etc/hotproxy/ca.crt"), "/etc/hotproxy/ca.crt");
        assert_eq!(
            shell_word("https://localhost:8443/hello"),
            "https://localhost:8443/hello"
        );
        assert_eq!(shell_word("a@b%c+d=e,f_g-h"), "a@b%c+d=e,f_g-h");
        assert!(matches!(shell_word("plain"), Cow::Borrowed(_)));
    }

    /// What `shlex.quote` gives for the same words.
    #[test]
    fn words_a_shell_would_split_or_expand_are_single_quoted() {
        assert_eq!(shell_word(""), "''");
        assert_eq!(shell_word("my pki"), "'my pki'");
        assert_eq!(shell_word("it's"), r#"'it'"'"'s'"#);
        assert_eq!(shell_word("'"), r#"''"'"''"#);
        assert_eq!(shell_word("$HOME"), "'$HOME'");
        assert_eq!(shell_word("`id`"), "'`id`'");
        assert_eq!(shell_word("$(id)"), "'$(id)'");
        assert_eq!(shell_word(r#"a"b\c"#), r#"'a"b\c'"#);
        assert_eq!(shell_word("*.crt"), "'*.crt'");
        assert_eq!(shell_word("~/pki"), "'~/pki'");
        assert_eq!(shell_word("http://[::1]:9901/m"), "'http://[::1]:9901/m'");
        assert_eq!(shell_word("josé"), "'josé'");
    }

    #[test]
    fn control_bytes_are_escaped_never_written() {
        assert_eq!(shell_word("a\x1b[31mb"), r"$'a\033[31mb'");
        assert_eq!(shell_word("line\nbreak"), r"$'line\012break'");
        assert_eq!(shell_word("tab\there"), r"$'tab\011here'");
        assert_eq!(shell_word("nul\0"), r"$'nul\000'");
        assert_eq!(shell_word("del\x7f"), r"$'del\177'");
        // A digit after an escaped byte stays a digit: always three.
        assert_eq!(shell_word("\x01\x07"), r"$'\001\007'");
        assert_eq!(shell_word("v\x0712"), r"$'v\00712'");
        // A C1 control, as its UTF-8 bytes; quotes and `\` beside it escaped.
        assert_eq!(shell_word("it's\\\u{85}"), r"$'it\'s\\\302\205'");
        let shown = shell_word("\x01\x02\x03\x1b\x7f\u{9b}");
        assert!(shown.chars().all(|c| !c.is_control()), "{shown}");
    }

    #[test]
    fn bytes_that_are_not_utf8_are_escaped() {
        use std::os::unix::ffi::OsStrExt;
        let p = Path::new(OsStr::from_bytes(b"/srv/pki-\xff/ca.crt"));
        assert_eq!(shell_word(p), r"$'/srv/pki-\377/ca.crt'");
        let p = Path::new(OsStr::from_bytes(b"my \xe9t\xc3\xa9"));
        assert_eq!(shell_word(p), r"$'my \351té'");
    }

    /// A control byte or one that is not UTF-8, then hex and octal digits:
    /// `$'line\x0Abreak'` was `line`, U+0AB and `reak` to ksh93. Each
    /// word `bash -c` (and `ksh`, when there) is given comes back byte for
    /// byte.
    #[test]
    fn bash_and_ksh_read_escaped_bytes_back() {
        use std::os::unix::ffi::OsStrExt;
        let words: [&[u8]; 7] = [
            b"line\nbreak",
            b"\x1bAB",
            b"\x01\x0234567",
            b"tab\t7f",
            b"pki-\xffee/ca.crt",
            b"it's\\\xc2\x85Cafe",
            b"\xe9t\xc3\xa9 \x7f0",
        ];
        let script = words
            .iter()
            .map(|w| shell_word(OsStr::from_bytes(w)).into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        let mut read = 0;
        for sh in ["bash", "ksh"] {
            let out = match std::process::Command::new(sh)
                .arg("-c")
                .arg(format!("printf '%s\\0' {script}"))
                .env("LC_ALL", "C.UTF-8")
                .output()
            {
                Ok(out) => out,
                // Not installed (ksh seldom is); bash is, here and in CI.
                Err(e) if sh != "bash" => {
                    println!("{sh}: {e}");
                    continue;
                }
                Err(e) => panic!("{sh}: {e}"),
            };
            assert!(out.status.success(), "{sh}: {out:?}");
            let stdout = out.stdout.strip_suffix(b"\0").unwrap_or(&out.stdout);
            let back: Vec<&[u8]> = stdout.split(|&b| b == 0).collect();
            assert_eq!(back, words, "{sh}: {script}");
            read += 1;
        }
        assert!(read > 0);
    }

    /// Each quoted word given to `sh` comes back as the same word.
    #[test]
    fn sh_reads_each_word_back() {
        let words = [
            "",
            "plain",
            "my pki",
            "it's",
            "''",
            "$HOME",
            "`id`",
            "$(id)",
            "a\"b\\c",
            "*",
            "~",
            "josé",
            "a;b|c&d>e",
        ];
        let script: Vec<String> = words.iter().map(|w| shell_word(w).into_owned()).collect();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf '%s\\n' {}", script.join(" ")))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let back: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
        assert_eq!(back, words);
    }
}
