//! What a server must receive for a client's command lines under each profile, by the literal
//! verb rule of DESIGN.md §2, computed without the crate's policy code (so a bug there cannot
//! hide a bug in the filter).
//!
//! Used by both evasion suites (`tests/evasion.rs` in-process, `tests/live_evasion.rs`
//! through the real bridge). The verb is the text up to the first SP or the line end,
//! compared case-insensitively, and anything else in it (TAB, NUL, CR, a leading space) makes
//! it no verb; a blocked line is removed by `pix40` and turned into `X`s of the same length,
//! terminator kept, by every other filtering profile.

#![allow(dead_code)]

use mailguard::smtp::Profile;

/// The filtering profiles.
pub const PROFILES: [Profile; 5] = [
    Profile::Pix40,
    Profile::Pix44,
    Profile::Pix51,
    Profile::Asa,
    Profile::Strict,
];

/// Verbs to smuggle. `VRFY` is allowed by `asa` (a positive control there).
pub const VERBS: [&str; 4] = ["EXPN", "VRFY", "WIZ", "DEBUG"];

/// Client verbs each profile allows (DESIGN.md §2).
pub fn allowed_verbs(p: Profile) -> &'static [&'static str] {
    match p {
        Profile::Off => &[],
        Profile::Pix40 | Profile::Pix44 | Profile::Pix51 => {
            &["HELO", "MAIL", "RCPT", "DATA", "RSET", "NOOP", "QUIT"]
        }
        Profile::Asa => &[
            "AUTH", "DATA", "EHLO", "ETRN", "HELO", "HELP", "MAIL", "NOOP", "QUIT", "RCPT", "RSET",
            "SAML", "SEND", "SOML", "VRFY",
        ],
        Profile::Strict => &[
            "EHLO", "HELO", "MAIL", "RCPT", "DATA", "BDAT", "RSET", "NOOP", "QUIT", "STARTTLS",
            "AUTH",
        ],
    }
}

/// True if `p` blocks `verb` (every verb is allowed under `off`).
pub fn blocks(p: Profile, verb: &str) -> bool {
    p != Profile::Off && !allowed_verbs(p).contains(&verb)
}

/// Splits a line into its text and its terminator (`\r\n`, `\n` or none).
pub fn strip_terminator(line: &[u8]) -> (&[u8], &[u8]) {
    if let Some(t) = line.strip_suffix(b"\r\n") {
        (t, line.get(t.len()..).unwrap_or_default())
    } else if let Some(t) = line.strip_suffix(b"\n") {
        (t, line.get(t.len()..).unwrap_or_default())
    } else {
        (line, &[])
    }
}

/// The literal verb rule.
pub fn is_allowed(p: Profile, line: &[u8]) -> bool {
    let body = strip_terminator(line).0;
    let verb = body.split(|&b| b == b' ').next().unwrap_or(&[]);
    p == Profile::Off
        || allowed_verbs(p)
            .iter()
            .any(|v| v.as_bytes().eq_ignore_ascii_case(verb))
}

/// What the server must receive for one client command line under `p`.
pub fn cmd(p: Profile, line: &[u8]) -> Vec<u8> {
    if is_allowed(p, line) {
        return line.to_vec();
    }
    if p == Profile::Pix40 {
        return Vec::new();
    }
    let (text, term) = strip_terminator(line);
    let mut out = vec![b'X'; text.len()];
    out.extend_from_slice(term);
    out
}

/// [`cmd`] over every LF-terminated line of `text` (all in command state).
pub fn cmds(p: Profile, text: &[u8]) -> Vec<u8> {
    text.split_inclusive(|&b| b == b'\n')
        .flat_map(|l| cmd(p, l))
        .collect()
}

/// Number of lines of `text` that `p` blocks (pix40 answers each with its own `250 OK`).
pub fn blocked_lines(p: Profile, text: &[u8]) -> usize {
    text.split_inclusive(|&b| b == b'\n')
        .filter(|l| !is_allowed(p, l))
        .count()
}

/// `VERB root\r\n`.
pub fn line(verb: &str) -> Vec<u8> {
    format!("{verb} root\r\n").into_bytes()
}

/// An allowed line as long as [`line`]`(verb)`: `NOOP rrr…\r\n`.
pub fn noop_like(verb: &str) -> Vec<u8> {
    let n = line(verb).len();
    let mut l = b"NOOP ".to_vec();
    l.resize(n - 2, b'r');
    l.extend_from_slice(b"\r\n");
    l
}

/// `verb root` after a space, after a TAB, in alternating case and in lower case.
pub fn spacing_and_case_variants(verb: &str) -> Vec<Vec<u8>> {
    let mixed: String = verb
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i % 2 == 0 {
                c.to_ascii_lowercase()
            } else {
                c
            }
        })
        .collect();
    vec![
        format!(" {verb} root\r\n").into_bytes(),
        format!("\t{verb} root\r\n").into_bytes(),
        format!("{mixed} root\r\n").into_bytes(),
        format!("{} root\r\n", verb.to_ascii_lowercase()).into_bytes(),
    ]
}

/// Concatenation.
pub fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}
