//! What each profile allows and how it masks: verb allow-lists, banner masking, EHLO keywords.

use super::{BannerMask, PolicyConfig, Profile};

/// The seven verbs of PIX `mailhost` / `fixup protocol smtp` (RFC 821 minimum).
const PIX_VERBS: &[&str] = &["HELO", "MAIL", "RCPT", "DATA", "RSET", "NOOP", "QUIT"];

/// ASA `inspect esmtp` default policy map.
const ASA_VERBS: &[&str] = &[
    "AUTH", "DATA", "EHLO", "ETRN", "HELO", "HELP", "MAIL", "NOOP", "QUIT", "RCPT", "RSET", "SAML",
    "SEND", "SOML", "VRFY",
];

/// Ours, before the operator's additions.
const STRICT_VERBS: &[&str] = &[
    "EHLO", "HELO", "MAIL", "RCPT", "DATA", "BDAT", "RSET", "NOOP", "QUIT", "STARTTLS", "AUTH",
];

/// EHLO keywords the ASA leaves readable (all others are X-ed, STARTTLS becomes XXXXXXXA).
const ASA_EHLO_KEEP: &[&str] = &[
    "8BITMIME",
    "AUTH",
    "BINARYMIME",
    "CHECKPOINT",
    "DSN",
    "ENHANCEDSTATUSCODES",
    "ETRN",
    "PIPELINING",
    "SIZE",
    "VRFY",
];

/// EHLO keywords strict keeps (before the operator's verbs); every other line is removed.
/// SMTPUTF8 is a MAIL parameter only, which strict does not filter, so it stays.
const STRICT_EHLO_KEEP: &[&str] = &[
    "SIZE",
    "PIPELINING",
    "DSN",
    "ENHANCEDSTATUSCODES",
    "8BITMIME",
    "BINARYMIME",
    "CHUNKING",
    "AUTH",
    "STARTTLS",
    "SMTPUTF8",
];

/// The entries of a verb table by first byte: bit `i` of `[c]` is set when entry `i` starts
/// with byte `c` (at most 32 entries, checked when the tables are built).
type FirstBytes = [u32; 256];

/// [`FirstBytes`] of `table`, built at compile time.
const fn first_bytes(table: &[&str]) -> FirstBytes {
    let mut m = [0u32; 256];
    let mut i = 0;
    assert!(table.len() <= 32, "a verb table has at most 32 entries");
    while i < table.len() {
        let b = table[i].as_bytes();
        if !b.is_empty() {
            m[b[0] as usize] |= 1 << i;
        }
        i += 1;
    }
    m
}

static PIX_FIRST: FirstBytes = first_bytes(PIX_VERBS);
static ASA_FIRST: FirstBytes = first_bytes(ASA_VERBS);
static STRICT_FIRST: FirstBytes = first_bytes(STRICT_VERBS);
static NONE_FIRST: FirstBytes = [0; 256];

/// Longest verb accepted in the operator's allow-list (longer entries are ignored).
pub(crate) const MAX_VERB: usize = 64;

/// A profile compiled for fast lookups. Built per connection without allocating, unless
/// the operator added verbs. Kept small (it is part of every connection's state): the
/// profile's verb and keyword tables are looked up from the profile when used.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    pub profile: Profile,
    pub kb: bool,
    /// strict: the operator's verbs, upper case (allowed, and kept in EHLO replies).
    extra: Box<[Vec<u8>]>,
}

impl Policy {
    /// Heap bytes owned: the operator's verbs (a constant of the configuration, computed
    /// once per session by [`super::Session`]).
    pub fn heap_bytes(&self) -> usize {
        self.extra.len() * std::mem::size_of::<Vec<u8>>()
            + self.extra.iter().map(Vec::capacity).sum::<usize>()
    }

    /// Compiles a configuration. The operator's allow-list only applies to `strict`.
    pub fn new(cfg: &PolicyConfig) -> Policy {
        let mut extra: Vec<Vec<u8>> = Vec::new();
        if cfg.profile == Profile::Strict {
            for v in &cfg.allow_verbs {
                let up = v.trim().to_ascii_uppercase().into_bytes();
                let ok = !up.is_empty()
                    && up.len() <= MAX_VERB
                    && up.iter().all(|b| b.is_ascii_graphic());
                if ok && !extra.contains(&up) {
                    extra.push(up);
                }
            }
        }
        Policy {
            profile: cfg.profile,
            kb: cfg.banner_mask == BannerMask::Kb,
            extra: extra.into_boxed_slice(),
        }
    }

    /// The profile's allowed verbs and kept EHLO keywords.
    fn tables(&self) -> (&'static [&'static str], &'static [&'static str]) {
        match self.profile {
            Profile::Off => (&[], &[]),
            Profile::Pix40 | Profile::Pix44 | Profile::Pix51 => (PIX_VERBS, &[]),
            Profile::Asa => (ASA_VERBS, ASA_EHLO_KEEP),
            Profile::Strict => (STRICT_VERBS, STRICT_EHLO_KEEP),
        }
    }

    /// The profile's allowed verbs, with their index by first byte.
    fn verb_table(&self) -> (&'static [&'static str], &'static FirstBytes) {
        match self.profile {
            Profile::Off => (&[], &NONE_FIRST),
            Profile::Pix40 | Profile::Pix44 | Profile::Pix51 => (PIX_VERBS, &PIX_FIRST),
            Profile::Asa => (ASA_VERBS, &ASA_FIRST),
            Profile::Strict => (STRICT_VERBS, &STRICT_FIRST),
        }
    }

    /// True if some allowed verb (the profile's table, then the operator's additions)
    /// satisfies `f`, a case-insensitive comparison with `q`: only entries whose first byte
    /// is `q`'s in upper case are tried (every entry is upper case; when `q` is empty,
    /// all). This runs once per verb byte, hence the index.
    fn any_verb(&self, q: &[u8], f: impl Fn(&[u8]) -> bool) -> bool {
        let (table, first) = self.verb_table();
        let in_table = match q.first() {
            Some(&c) => {
                let mut bits = first[usize::from(c.to_ascii_uppercase())];
                let mut hit = false;
                while bits != 0 && !hit {
                    let i = bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    hit = table.get(i).is_some_and(|v| f(v.as_bytes()));
                }
                hit
            }
            None => table.iter().any(|v| f(v.as_bytes())),
        };
        in_table || self.extra.iter().any(|v| first_may_match(v, q) && f(v))
    }

    /// True if `verb` (exactly, case-insensitively) is allowed.
    pub fn verb_allowed(&self, verb: &[u8]) -> bool {
        self.any_verb(verb, |v| {
            v.len() == verb.len() && v.eq_ignore_ascii_case(verb)
        })
    }

    /// True if some allowed verb starts with `prefix` (case-insensitively).
    pub fn verb_prefix_possible(&self, prefix: &[u8]) -> bool {
        self.any_verb(prefix, |v| {
            v.get(..prefix.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
        })
    }

    /// asa and strict limit a command line to 512 bytes (CRLF included) and reset past it.
    pub fn limits_command_lines(&self) -> bool {
        matches!(self.profile, Profile::Asa | Profile::Strict)
    }

    /// pix40 removes a blocked line and answers itself; the others X it.
    pub fn deletes_blocked(&self) -> bool {
        self.profile == Profile::Pix40
    }

    /// The masked value of byte `b` at position `pos` of a greeting line (pix44, pix51, asa,
    /// strict).
    pub fn banner_byte(&self, pos: usize, b: u8) -> u8 {
        if pos < 3 || b == b'\r' || b == b'\n' {
            return b;
        }
        if pos == 3 {
            return if self.kb { b'*' } else { b };
        }
        match self.profile {
            Profile::Pix44 => b'*',
            _ if b == b'2' || b == b'0' => b,
            _ => b'*',
        }
    }

    /// True if an EHLO keyword stays as it is (asa: readable, strict: line kept).
    pub fn ehlo_keyword_kept(&self, kw: &[u8]) -> bool {
        self.tables()
            .1
            .iter()
            .map(|k| k.as_bytes())
            .chain(self.extra.iter().map(Vec::as_slice))
            .any(|k| k.eq_ignore_ascii_case(kw))
    }
}

/// False when the first bytes of `upper` (a verb in upper case, as every table and the
/// operator's verbs are) and `q` differ case-insensitively: most verbs are ruled out by one
/// compare. True when either is empty.
fn first_may_match(upper: &[u8], q: &[u8]) -> bool {
    match (upper.first(), q.first()) {
        (Some(&u), Some(&c)) => u == c.to_ascii_uppercase(),
        _ => true,
    }
}

/// The text pix40 sends instead of a greeting of `len` bytes: `220 SMTP/cmap`, underscores,
/// ` read\r\n`, as long as the original (or the 20-byte minimum with no underscore).
pub(crate) fn pix40_banner(len: usize) -> Vec<u8> {
    const HEAD: &[u8] = b"220 SMTP/cmap";
    const TAIL: &[u8] = b" read\r\n";
    let pad = len.saturating_sub(HEAD.len() + TAIL.len());
    let mut v = Vec::with_capacity(HEAD.len() + pad + TAIL.len());
    v.extend_from_slice(HEAD);
    v.resize(HEAD.len() + pad, b'_');
    v.extend_from_slice(TAIL);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pix40_banner_lengths() {
        assert_eq!(pix40_banner(0), b"220 SMTP/cmap read\r\n");
        assert_eq!(pix40_banner(22), b"220 SMTP/cmap__ read\r\n");
    }

    #[test]
    fn operator_verbs_only_for_strict() {
        let mut cfg = PolicyConfig {
            profile: Profile::Strict,
            allow_verbs: vec!["x-link2state".into()],
            ..Default::default()
        };
        assert!(Policy::new(&cfg).verb_allowed(b"X-LINK2STATE"));
        assert!(Policy::new(&cfg).ehlo_keyword_kept(b"x-link2state"));
        cfg.profile = Profile::Pix51;
        assert!(!Policy::new(&cfg).verb_allowed(b"X-LINK2STATE"));
    }

    #[test]
    fn verb_tables_are_upper_case() {
        for t in [PIX_VERBS, ASA_VERBS, STRICT_VERBS] {
            for v in t {
                assert_eq!(
                    v.to_ascii_uppercase(),
                    *v,
                    "the first-byte index and first_may_match need upper case"
                );
            }
        }
    }

    #[test]
    fn every_verb_in_any_case_is_allowed_and_its_prefixes_possible() {
        let cfg = PolicyConfig {
            profile: Profile::Strict,
            allow_verbs: vec!["x-link2state".into()],
            ..Default::default()
        };
        let p = Policy::new(&cfg);
        for v in STRICT_VERBS
            .iter()
            .map(|v| v.as_bytes())
            .chain([&b"X-LINK2STATE"[..]])
        {
            let lower = v.to_ascii_lowercase();
            let mixed: Vec<u8> = v
                .iter()
                .zip(&lower)
                .enumerate()
                .map(|(i, (u, l))| if i % 2 == 0 { *l } else { *u })
                .collect();
            for q in [v, &lower[..], &mixed[..]] {
                assert!(p.verb_allowed(q), "{q:?}");
                for n in 0..=q.len() {
                    assert!(p.verb_prefix_possible(&q[..n]), "{q:?} {n}");
                }
                assert!(!p.verb_allowed(&q[..q.len() - 1]));
            }
        }
        assert!(!p.verb_allowed(b"VRFY") && !p.verb_prefix_possible(b"vr"));
    }

    proptest::proptest! {
        /// The lookups with their first-byte filter answer what a plain case-insensitive
        /// search of every allowed verb answers.
        #[test]
        fn verb_lookups_equal_a_plain_search(
            q in proptest::collection::vec(proptest::sample::select(
                b"aAeEhHlLoOmMrRsStTdDqQx-2\xc3\x00 ".to_vec()), 0..10),
            profile in proptest::sample::select(vec![
                Profile::Off, Profile::Pix40, Profile::Pix51, Profile::Asa, Profile::Strict]),
        ) {
            let cfg = PolicyConfig {
                profile,
                allow_verbs: vec!["x-link2state".into(), "Xexch50".into()],
                ..Default::default()
            };
            let p = Policy::new(&cfg);
            let all: Vec<&[u8]> = p
                .tables()
                .0
                .iter()
                .map(|v| v.as_bytes())
                .chain(p.extra.iter().map(Vec::as_slice))
                .collect();
            let exact = all.iter().any(|v| v.eq_ignore_ascii_case(&q));
            let prefix = all
                .iter()
                .any(|v| v.get(..q.len()).is_some_and(|x| x.eq_ignore_ascii_case(&q)));
            proptest::prop_assert_eq!(p.verb_allowed(&q), exact);
            proptest::prop_assert_eq!(p.verb_prefix_possible(&q), prefix);
        }
    }
}
