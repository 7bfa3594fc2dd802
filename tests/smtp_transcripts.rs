//! Transcript tests: for each session and each profile, the exact bytes each side receives.
//! Expected bytes are written by hand from DESIGN.md §2 (and the module docs of `smtp` where
//! the spec is silent). Every case is also replayed one byte per chunk (interleaving between
//! directions kept) and must give the same bytes.

use std::sync::Arc;

use mailguard::smtp::{
    transform, BannerMask, Dir, Event, PolicyConfig, Profile, ResetReason, Transcript,
};

const C: Dir = Dir::ClientToServer;
const S: Dir = Dir::ServerToClient;

/// "220 mail20 ESMTP\r\n" (18 bytes) and its masked forms.
const GREET: &[u8] = b"220 mail20 ESMTP\r\n";
/// pix40: shorter than the 20-byte minimum, so it grows.
const G40: &[u8] = b"220 SMTP/cmap read\r\n";
const G44: &[u8] = b"220 ************\r\n";
const G51: &[u8] = b"220 ****20******\r\n";

fn cfg(p: Profile) -> PolicyConfig {
    PolicyConfig {
        profile: p,
        ..Default::default()
    }
}

fn show(b: &[u8]) -> String {
    b.escape_ascii().to_string()
}

/// Runs `script` whole and one byte per chunk; both must give the expected bytes.
fn check(
    name: &str,
    config: PolicyConfig,
    script: &[(Dir, &[u8])],
    to_server: &[u8],
    to_client: &[u8],
) -> Transcript {
    let config = Arc::new(config);
    let t = transform(config.clone(), script);
    let label = format!("{name} [{}]", config.profile);
    assert_eq!(
        show(&t.to_server),
        show(to_server),
        "{label}: bytes the server receives"
    );
    assert_eq!(
        show(&t.to_client),
        show(to_client),
        "{label}: bytes the client receives"
    );
    let bytes: Vec<(Dir, Vec<u8>)> = script
        .iter()
        .flat_map(|(d, c)| c.iter().map(move |b| (*d, vec![*b])))
        .collect();
    let split: Vec<(Dir, &[u8])> = bytes.iter().map(|(d, c)| (*d, &c[..])).collect();
    let t1 = transform(config, &split);
    assert_eq!(
        show(&t1.to_server),
        show(&t.to_server),
        "{label}: 1-byte chunks, server"
    );
    assert_eq!(
        show(&t1.to_client),
        show(&t.to_client),
        "{label}: 1-byte chunks, client"
    );
    assert_eq!(t1.events, t.events, "{label}: 1-byte chunks, events");
    assert_eq!(t1.reset, t.reset, "{label}: 1-byte chunks, reset");
    t
}

/// [`check`] under pix44 and under pix51, which treat the session alike but for the masked
/// greeting: the server receives `to_server`, the client [`G44`] or [`G51`] then `replies`.
/// Returns pix51's transcript.
fn check_pix44_pix51(
    name: &str,
    script: &[(Dir, &[u8])],
    to_server: &[u8],
    replies: &[u8],
) -> Transcript {
    check(
        name,
        cfg(Profile::Pix44),
        script,
        to_server,
        &cat(&[G44, replies]),
    );
    check(
        name,
        cfg(Profile::Pix51),
        script,
        to_server,
        &cat(&[G51, replies]),
    )
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn blocked(t: &Transcript, verb: &str) -> bool {
    t.events
        .iter()
        .any(|e| matches!(e, Event::VerbBlocked(v) if v.as_str() == verb))
}

fn injected(t: &Transcript) -> usize {
    t.events
        .iter()
        .filter(|e| **e == Event::ReplyInjected)
        .count()
}

// ---------------------------------------------------------------------------------------
// 1. KB 320027: "goodmorning" (not a verb).

#[test]
fn s01_goodmorning() {
    let full: &[(Dir, &[u8])] = &[
        (S, GREET),
        (C, b"goodmorning\r\n"),
        (S, b"500 5.5.2 what?\r\n"),
        (C, b"QUIT\r\n"),
        (S, b"221 bye\r\n"),
    ];
    let client_sees = |g: &[u8]| cat(&[g, b"500 5.5.2 what?\r\n221 bye\r\n"]);
    check(
        "goodmorning",
        cfg(Profile::Off),
        full,
        b"goodmorning\r\nQUIT\r\n",
        &client_sees(GREET),
    );
    // pix40: the line never reaches the server; the filter answers 250 OK itself.
    let t = check(
        "goodmorning",
        cfg(Profile::Pix40),
        &[
            (S, GREET),
            (C, b"goodmorning\r\n"),
            (C, b"QUIT\r\n"),
            (S, b"221 bye\r\n"),
        ],
        b"QUIT\r\n",
        &cat(&[G40, b"250 OK\r\n221 bye\r\n"]),
    );
    assert!(blocked(&t, "GOODMORNING"));
    assert_eq!(injected(&t), 1);
    check(
        "goodmorning",
        cfg(Profile::Pix44),
        full,
        b"XXXXXXXXXXX\r\nQUIT\r\n",
        &client_sees(G44),
    );
    let t = check(
        "goodmorning",
        cfg(Profile::Pix51),
        full,
        b"XXXXXXXXXXX\r\nQUIT\r\n",
        &client_sees(G51),
    );
    assert!(blocked(&t, "GOODMORNING"));
    assert!(t.events.contains(&Event::BannerMasked));
    for p in [Profile::Asa, Profile::Strict] {
        check(
            "goodmorning",
            cfg(p),
            full,
            b"XXXXXXXXXXX\r\nQUIT\r\n",
            &client_sees(G51),
        );
    }
}

// ---------------------------------------------------------------------------------------
// 2. KB 320027: EHLO refused, the client falls back to HELO.

#[test]
fn s02_ehlo_refused_helo_fallback() {
    let full: &[(Dir, &[u8])] = &[
        (S, GREET),
        (C, b"EHLO client.example.org\r\n"),
        (S, b"500 Command unrecognized\r\n"),
        (C, b"HELO client.example.org\r\n"),
        (S, b"250 mail20 Hello\r\n"),
        (C, b"QUIT\r\n"),
        (S, b"221 bye\r\n"),
    ];
    let replies: &[u8] = b"500 Command unrecognized\r\n250 mail20 Hello\r\n221 bye\r\n";
    let sent: &[u8] = b"EHLO client.example.org\r\nHELO client.example.org\r\nQUIT\r\n";
    check(
        "ehlo-fallback",
        cfg(Profile::Off),
        full,
        sent,
        &cat(&[GREET, replies]),
    );
    // pix40 blocks EHLO like any verb: the client gets the filter's 250 OK.
    check(
        "ehlo-fallback",
        cfg(Profile::Pix40),
        &[
            (S, GREET),
            (C, b"EHLO client.example.org\r\n"),
            (C, b"HELO client.example.org\r\n"),
            (S, b"250 mail20 Hello\r\n"),
            (C, b"QUIT\r\n"),
            (S, b"221 bye\r\n"),
        ],
        b"HELO client.example.org\r\nQUIT\r\n",
        &cat(&[G40, b"250 OK\r\n250 mail20 Hello\r\n221 bye\r\n"]),
    );
    let masked: &[u8] = b"XXXXXXXXXXXXXXXXXXXXXXX\r\nHELO client.example.org\r\nQUIT\r\n";
    let t = check_pix44_pix51("ehlo-fallback", full, masked, replies);
    assert!(blocked(&t, "EHLO"));
    // asa and strict allow EHLO; this old server refuses it anyway (no EHLO reply rewrite).
    for p in [Profile::Asa, Profile::Strict] {
        let t = check("ehlo-fallback", cfg(p), full, sent, &cat(&[G51, replies]));
        assert!(!t.events.contains(&Event::EhloReplyRewritten));
    }
}

// ---------------------------------------------------------------------------------------
// 3. KB 320027: AUTH LOGIN (stripped by PIX, passed by asa/strict with its continuations).

#[test]
fn s03_auth_login() {
    let esmtp: &[(Dir, &[u8])] = &[
        (S, GREET),
        (C, b"EHLO c\r\n"),
        (
            S,
            b"250-mail20\r\n250-AUTH LOGIN PLAIN\r\n250 SIZE 1000000\r\n",
        ),
        (C, b"AUTH LOGIN\r\n"),
        (S, b"334 VXNlcm5hbWU6\r\n"),
        (C, b"dXNlcg==\r\n"),
        (S, b"334 UGFzc3dvcmQ6\r\n"),
        (C, b"cGFzcw==\r\n"),
        (S, b"235 2.7.0 ok\r\n"),
        (C, b"QUIT\r\n"),
        (S, b"221 bye\r\n"),
    ];
    let sent: &[u8] = b"EHLO c\r\nAUTH LOGIN\r\ndXNlcg==\r\ncGFzcw==\r\nQUIT\r\n";
    let replies: &[u8] = b"250-mail20\r\n250-AUTH LOGIN PLAIN\r\n250 SIZE 1000000\r\n\
334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n235 2.7.0 ok\r\n221 bye\r\n";
    check(
        "auth-login",
        cfg(Profile::Off),
        esmtp,
        sent,
        &cat(&[GREET, replies]),
    );
    for p in [Profile::Asa, Profile::Strict] {
        let t = check("auth-login", cfg(p), esmtp, sent, &cat(&[G51, replies]));
        // The continuation lines are not commands: nothing blocked.
        assert!(!t.events.iter().any(|e| matches!(e, Event::VerbBlocked(_))));
    }
    // PIX: EHLO and AUTH are blocked; a client that sends its base64 anyway has it treated
    // as a command line (AUTH is not allowed, so there is no continuation).
    let pix: &[(Dir, &[u8])] = &[
        (S, GREET),
        (C, b"EHLO c\r\n"),
        (S, b"500 unrecognized\r\n"),
        (C, b"HELO c\r\n"),
        (S, b"250 mail20\r\n"),
        (C, b"AUTH LOGIN\r\n"),
        (S, b"500 unrecognized\r\n"),
        (C, b"dXNlcg==\r\n"),
        (S, b"500 unrecognized\r\n"),
        (C, b"QUIT\r\n"),
        (S, b"221 bye\r\n"),
    ];
    let pix_sent: &[u8] = b"XXXXXX\r\nHELO c\r\nXXXXXXXXXX\r\nXXXXXXXX\r\nQUIT\r\n";
    let pix_replies: &[u8] =
        b"500 unrecognized\r\n250 mail20\r\n500 unrecognized\r\n500 unrecognized\r\n221 bye\r\n";
    let t = check_pix44_pix51("auth-login", pix, pix_sent, pix_replies);
    assert!(blocked(&t, "AUTH"));
    assert!(blocked(&t, "DXNLCG=="));
    let t = check(
        "auth-login",
        cfg(Profile::Pix40),
        &[
            (S, GREET),
            (C, b"EHLO c\r\n"),
            (C, b"AUTH LOGIN\r\n"),
            (C, b"dXNlcg==\r\n"),
            (C, b"QUIT\r\n"),
            (S, b"221 bye\r\n"),
        ],
        b"QUIT\r\n",
        &cat(&[G40, b"250 OK\r\n250 OK\r\n250 OK\r\n221 bye\r\n"]),
    );
    assert_eq!(injected(&t), 3);
}

// ---------------------------------------------------------------------------------------
// 4. KB 320027: X-LINK2STATE between Exchange servers; EHLO reply rewriting.

const EXCH_EHLO: &[u8] = b"250-exch Hello\r\n250-PIPELINING\r\n250-XEXCH50\r\n250-STARTTLS\r\n\
250-VRFY\r\n250 X-LINK2STATE\r\n";
const XL2S: &[u8] = b"X-LINK2STATE LAST CHUNK=abc\r\n";
const XL2S_X: &[u8] = b"XXXXXXXXXXXXXXXXXXXXXXXXXXX\r\n";

fn xl2s_script(ok: &'static [u8]) -> Vec<(Dir, &'static [u8])> {
    vec![
        (S, GREET),
        (C, b"EHLO exch\r\n"),
        (S, EXCH_EHLO),
        (C, XL2S),
        (S, ok),
        (C, b"QUIT\r\n"),
        (S, b"221 bye\r\n"),
    ]
}

#[test]
fn s04_x_link2state() {
    let ok = xl2s_script(b"250 ok\r\n");
    let refused = xl2s_script(b"500 unrecognized\r\n");
    check(
        "x-link2state",
        cfg(Profile::Off),
        &ok,
        &cat(&[b"EHLO exch\r\n", XL2S, b"QUIT\r\n"]),
        &cat(&[GREET, EXCH_EHLO, b"250 ok\r\n221 bye\r\n"]),
    );
    // asa: XEXCH50 and X-LINK2STATE keywords X-ed, STARTTLS -> XXXXXXXA; the verb is X-ed.
    let t = check(
        "x-link2state",
        cfg(Profile::Asa),
        &refused,
        &cat(&[b"EHLO exch\r\n", XL2S_X, b"QUIT\r\n"]),
        &cat(&[
            G51,
            b"250-exch Hello\r\n250-PIPELINING\r\n250-XXXXXXX\r\n250-XXXXXXXA\r\n\
250-VRFY\r\n250 XXXXXXXXXXXX\r\n",
            b"500 unrecognized\r\n221 bye\r\n",
        ]),
    );
    assert!(t.events.contains(&Event::EhloReplyRewritten));
    assert!(blocked(&t, "X-LINK2STATE"));
    // strict: lines of blocked extensions removed, the last kept line ends the reply.
    check(
        "x-link2state",
        cfg(Profile::Strict),
        &refused,
        &cat(&[b"EHLO exch\r\n", XL2S_X, b"QUIT\r\n"]),
        &cat(&[
            G51,
            b"250-exch Hello\r\n250-PIPELINING\r\n250 STARTTLS\r\n",
            b"500 unrecognized\r\n221 bye\r\n",
        ]),
    );
    // strict with the operator's allow-list for Exchange.
    let t = check(
        "x-link2state",
        PolicyConfig {
            profile: Profile::Strict,
            allow_verbs: vec!["X-LINK2STATE".into(), "xexch50".into()],
            ..Default::default()
        },
        &ok,
        &cat(&[b"EHLO exch\r\n", XL2S, b"QUIT\r\n"]),
        &cat(&[
            G51,
            b"250-exch Hello\r\n250-PIPELINING\r\n250-XEXCH50\r\n250-STARTTLS\r\n\
250 X-LINK2STATE\r\n",
            b"250 ok\r\n221 bye\r\n",
        ]),
    );
    assert!(t
        .events
        .iter()
        .any(|e| matches!(e, Event::CommandAllowed(v) if v.as_str() == "X-LINK2STATE")));
    // PIX: EHLO and X-LINK2STATE blocked.
    let pix: &[(Dir, &[u8])] = &[
        (S, GREET),
        (C, b"EHLO exch\r\n"),
        (S, b"500 unrecognized\r\n"),
        (C, XL2S),
        (S, b"500 unrecognized\r\n"),
        (C, b"QUIT\r\n"),
        (S, b"221 bye\r\n"),
    ];
    let pix_sent = cat(&[b"XXXXXXXXX\r\n", XL2S_X, b"QUIT\r\n"]);
    let pix_replies: &[u8] = b"500 unrecognized\r\n500 unrecognized\r\n221 bye\r\n";
    check_pix44_pix51("x-link2state", pix, &pix_sent, pix_replies);
    check(
        "x-link2state",
        cfg(Profile::Pix40),
        &[
            (S, GREET),
            (C, b"EHLO exch\r\n"),
            (C, XL2S),
            (C, b"QUIT\r\n"),
            (S, b"221 bye\r\n"),
        ],
        b"QUIT\r\n",
        &cat(&[G40, b"250 OK\r\n250 OK\r\n221 bye\r\n"]),
    );
}

// ---------------------------------------------------------------------------------------
// 5. KB 320027: the banner example, bit-exact under pix51 + banner-mask kb.

const KB_BANNER: &[u8] = b"220 exchangehost Microsoft ESMTP MAIL Service, Version: 5.0.2195.4905 \
ready at  Tue, 9 Apr 2002 11:34:29 -0700\r\n";
const KB_MASKED: &[u8] = b"220*******************************************************0*2******0*\
**********************2002*******2***0*00\r\n";

#[test]
fn s05_kb_banner() {
    assert_eq!(KB_BANNER.len(), 112);
    let script: &[(Dir, &[u8])] = &[(S, KB_BANNER), (C, b"QUIT\r\n"), (S, b"221 closing\r\n")];
    let kb = |p| PolicyConfig {
        profile: p,
        banner_mask: BannerMask::Kb,
        ..Default::default()
    };
    let t = check(
        "kb-banner",
        kb(Profile::Pix51),
        script,
        b"QUIT\r\n",
        &cat(&[KB_MASKED, b"221 closing\r\n"]),
    );
    assert!(t.events.contains(&Event::BannerMasked));
    // Without kb the separator stays a space.
    let mut std_mask = KB_MASKED.to_vec();
    std_mask[3] = b' ';
    for p in [Profile::Pix51, Profile::Asa, Profile::Strict] {
        check(
            "kb-banner",
            cfg(p),
            script,
            b"QUIT\r\n",
            &cat(&[&std_mask, b"221 closing\r\n"]),
        );
    }
    check(
        "kb-banner",
        kb(Profile::Asa),
        script,
        b"QUIT\r\n",
        &cat(&[KB_MASKED, b"221 closing\r\n"]),
    );
    let pix44 = cat(&[b"220 ", &[b'*'; 106], b"\r\n221 closing\r\n"]);
    check(
        "kb-banner",
        cfg(Profile::Pix44),
        script,
        b"QUIT\r\n",
        &pix44,
    );
    // pix40: same length as the original (112 bytes): 92 underscores.
    let pix40 = cat(&[b"220 SMTP/cmap", &[b'_'; 92], b" read\r\n221 closing\r\n"]);
    check(
        "kb-banner",
        cfg(Profile::Pix40),
        script,
        b"QUIT\r\n",
        &pix40,
    );
    check(
        "kb-banner",
        cfg(Profile::Off),
        script,
        b"QUIT\r\n",
        &cat(&[KB_BANNER, b"221 closing\r\n"]),
    );
}

// ---------------------------------------------------------------------------------------
// 6. A multi-line Exchange greeting, masked line by line (replaced whole by pix40).

const ML_GREET: &[u8] = b"220-exch20 Microsoft ESMTP MAIL Service\r\n220 Version: 5.0 ready\r\n";

#[test]
fn s06_multiline_greeting() {
    let script: &[(Dir, &[u8])] = &[
        (S, ML_GREET),
        (C, b"HELO x\r\n"),
        (S, b"250 ok\r\n"),
        (C, b"QUIT\r\n"),
        (S, b"221 bye\r\n"),
    ];
    let rest: &[u8] = b"250 ok\r\n221 bye\r\n";
    let sent: &[u8] = b"HELO x\r\nQUIT\r\n";
    check(
        "ml-greeting",
        cfg(Profile::Off),
        script,
        sent,
        &cat(&[ML_GREET, rest]),
    );
    let m44 = cat(&[b"220-", &[b'*'; 35], b"\r\n220 ", &[b'*'; 18], b"\r\n"]);
    check(
        "ml-greeting",
        cfg(Profile::Pix44),
        script,
        sent,
        &cat(&[&m44, rest]),
    );
    let m51 = cat(&[
        b"220-****20",
        &[b'*'; 29],
        b"\r\n220 ",
        &[b'*'; 11],
        b"0******\r\n",
    ]);
    for p in [Profile::Pix51, Profile::Asa, Profile::Strict] {
        check("ml-greeting", cfg(p), script, sent, &cat(&[&m51, rest]));
    }
    // 65 bytes of greeting -> one line of 65 bytes.
    let m40 = cat(&[b"220 SMTP/cmap", &[b'_'; 45], b" read\r\n"]);
    check(
        "ml-greeting",
        cfg(Profile::Pix40),
        script,
        sent,
        &cat(&[&m40, rest]),
    );
}

// ---------------------------------------------------------------------------------------
// 7. Pipelined MAIL/RCPT/VRFY/RCPT/DATA with the blocked VRFY in the middle.

const PIPE_CMDS: &[u8] =
    b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nVRFY b\r\nRCPT TO:<c@example.org>\r\nDATA\r\n";
const BODY: &[u8] = b"Subject: t\r\n\r\nbody\r\n.\r\n";

fn pipe_script(middle: &'static [u8]) -> Vec<(Dir, &'static [u8])> {
    vec![
        (S, GREET),
        (C, b"HELO c\r\n"),
        (S, b"250 ok\r\n"),
        (C, PIPE_CMDS),
        (S, b"250 2.1.0 ok\r\n"),
        (S, middle),
        (C, BODY),
        (S, b"250 queued\r\n"),
        (C, b"QUIT\r\n"),
        (S, b"221 bye\r\n"),
    ]
}

#[test]
fn s07_pipelined_blocked_middle() {
    // pix40: the server never sees VRFY, so it owes MAIL, RCPT, RCPT, DATA replies; the
    // filter's 250 OK is slotted after the first RCPT's reply, inside a server segment.
    let t = check(
        "pipelined",
        cfg(Profile::Pix40),
        &pipe_script(b"250 2.1.5 ok\r\n250 2.1.5 ok\r\n354 go\r\n"),
        &cat(&[
            b"HELO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n\
RCPT TO:<c@example.org>\r\nDATA\r\n",
            BODY,
            b"QUIT\r\n",
        ]),
        &cat(&[
            G40,
            b"250 ok\r\n250 2.1.0 ok\r\n250 2.1.5 ok\r\n250 OK\r\n250 2.1.5 ok\r\n354 go\r\n\
250 queued\r\n221 bye\r\n",
        ]),
    );
    assert!(blocked(&t, "VRFY"));
    assert_eq!(injected(&t), 1);
    assert!(t.events.contains(&Event::DataEnded));
    let masked_middle: &'static [u8] =
        b"250 2.1.5 ok\r\n500 unrecognized\r\n250 2.1.5 ok\r\n354 go\r\n";
    let masked_sent = cat(&[
        b"HELO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nXXXXXX\r\n\
RCPT TO:<c@example.org>\r\nDATA\r\n",
        BODY,
        b"QUIT\r\n",
    ]);
    let replies = |g: &[u8], m: &[u8]| {
        cat(&[
            g,
            b"250 ok\r\n250 2.1.0 ok\r\n",
            m,
            b"250 queued\r\n221 bye\r\n",
        ])
    };
    let s = pipe_script(masked_middle);
    check(
        "pipelined",
        cfg(Profile::Pix44),
        &s,
        &masked_sent,
        &replies(G44, masked_middle),
    );
    check(
        "pipelined",
        cfg(Profile::Pix51),
        &s,
        &masked_sent,
        &replies(G51, masked_middle),
    );
    check(
        "pipelined",
        cfg(Profile::Strict),
        &s,
        &masked_sent,
        &replies(G51, masked_middle),
    );
    // asa allows VRFY.
    let vrfy_middle: &'static [u8] = b"250 2.1.5 ok\r\n252 maybe\r\n250 2.1.5 ok\r\n354 go\r\n";
    let s = pipe_script(vrfy_middle);
    let sent = cat(&[b"HELO c\r\n", PIPE_CMDS, BODY, b"QUIT\r\n"]);
    check(
        "pipelined",
        cfg(Profile::Asa),
        &s,
        &sent,
        &replies(G51, vrfy_middle),
    );
    check(
        "pipelined",
        cfg(Profile::Off),
        &s,
        &sent,
        &replies(GREET, vrfy_middle),
    );
}

// ---------------------------------------------------------------------------------------
// 8. A rejected DATA leaves command mode; an accepted one passes the body untouched, the
//    terminator split over three segments.

#[test]
fn s08_data_rejected_then_accepted() {
    let script = |expn_reply: Option<&'static [u8]>| {
        let mut v: Vec<(Dir, &[u8])> = vec![
            (S, GREET),
            (C, b"HELO c\r\n"),
            (S, b"250 ok\r\n"),
            (C, b"MAIL FROM:<a@x>\r\n"),
            (S, b"250 ok\r\n"),
            (C, b"DATA\r\n"),
            (S, b"554 no valid recipients\r\n"),
            (C, b"EXPN staff\r\n"),
        ];
        if let Some(r) = expn_reply {
            v.push((S, r));
        }
        v.extend_from_slice(&[
            (C, &b"RCPT TO:<b@x>\r\n"[..]),
            (S, b"250 ok\r\n"),
            (C, b"DATA\r\n"),
            (S, b"354 go\r\n"),
            (C, b"EXPN body\r\n..leading dot\r\n"),
            (C, b"\r\n."),
            (C, b"\r"),
            (C, b"\n"),
            (S, b"250 queued\r\n"),
            (C, b"QUIT\r\n"),
            (S, b"221 bye\r\n"),
        ]);
        v
    };
    let sent = |expn: &[u8]| {
        cat(&[
            b"HELO c\r\nMAIL FROM:<a@x>\r\nDATA\r\n",
            expn,
            b"RCPT TO:<b@x>\r\nDATA\r\nEXPN body\r\n..leading dot\r\n\r\n.\r\nQUIT\r\n",
        ])
    };
    let got = |g: &[u8], expn_reply: &[u8]| {
        cat(&[
            g,
            b"250 ok\r\n250 ok\r\n554 no valid recipients\r\n",
            expn_reply,
            b"250 ok\r\n354 go\r\n250 queued\r\n221 bye\r\n",
        ])
    };
    check(
        "data-rejected",
        cfg(Profile::Off),
        &script(Some(b"502 no\r\n")),
        &sent(b"EXPN staff\r\n"),
        &got(GREET, b"502 no\r\n"),
    );
    let t = check(
        "data-rejected",
        cfg(Profile::Pix40),
        &script(None),
        &sent(b""),
        &got(G40, b"250 OK\r\n"),
    );
    assert!(blocked(&t, "EXPN"));
    for (p, g) in [
        (Profile::Pix44, G44),
        (Profile::Pix51, G51),
        (Profile::Asa, G51),
        (Profile::Strict, G51),
    ] {
        let t = check(
            "data-rejected",
            cfg(p),
            &script(Some(b"500 unrecognized\r\n")),
            &sent(b"XXXXXXXXXX\r\n"),
            &got(g, b"500 unrecognized\r\n"),
        );
        // Exactly one EXPN blocked: the one in the body passed.
        let n = t
            .events
            .iter()
            .filter(|e| matches!(e, Event::VerbBlocked(_)))
            .count();
        assert_eq!(n, 1, "{p}");
        assert_eq!(
            t.events
                .iter()
                .filter(|e| **e == Event::DataStarted)
                .count(),
            1
        );
    }
}

// ---------------------------------------------------------------------------------------
// 9. BDAT: passed by length under strict, X-ed elsewhere (its chunk is then command lines).

#[test]
fn s09_bdat() {
    let ehlo: &[u8] = b"250-mail20\r\n250-CHUNKING\r\n250 PIPELINING\r\n";
    let esmtp =
        |ehlo_reply: &'static [u8], bdat_reply: &'static [u8]| -> Vec<(Dir, &'static [u8])> {
            vec![
                (S, GREET),
                (C, b"EHLO c\r\n"),
                (S, ehlo_reply),
                (C, b"MAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\n"),
                (S, b"250 ok\r\n250 ok\r\n"),
                (C, b"BDAT 13 LAST\r\nEXPN x\r\nabc\r\n"),
                (S, bdat_reply),
                (C, b"QUIT\r\n"),
                (S, b"221 bye\r\n"),
            ]
        };
    let all_sent: &[u8] =
        b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nBDAT 13 LAST\r\nEXPN x\r\nabc\r\nQUIT\r\n";
    let s = esmtp(ehlo, b"250 queued\r\n");
    let replies = cat(&[ehlo, b"250 ok\r\n250 ok\r\n250 queued\r\n221 bye\r\n"]);
    check(
        "bdat",
        cfg(Profile::Off),
        &s,
        all_sent,
        &cat(&[GREET, &replies]),
    );
    let t = check(
        "bdat",
        cfg(Profile::Strict),
        &s,
        all_sent,
        &cat(&[G51, &replies]),
    );
    assert!(t.events.contains(&Event::BdatChunk(13)));
    assert!(!blocked(&t, "EXPN"));
    // asa: CHUNKING masked in the EHLO reply, BDAT and the chunk's lines X-ed.
    let three500: &'static [u8] = b"500 unrecognized\r\n500 unrecognized\r\n500 unrecognized\r\n";
    let s = esmtp(ehlo, three500);
    check(
        "bdat",
        cfg(Profile::Asa),
        &s,
        b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nXXXXXXXXXXXX\r\nXXXXXX\r\nXXX\r\nQUIT\r\n",
        &cat(&[
            G51,
            b"250-mail20\r\n250-XXXXXXXX\r\n250 PIPELINING\r\n250 ok\r\n250 ok\r\n",
            three500,
            b"221 bye\r\n",
        ]),
    );
    let pix = |bdat_reply: &'static [u8]| -> Vec<(Dir, &'static [u8])> {
        vec![
            (S, GREET),
            (C, b"HELO c\r\n"),
            (S, b"250 ok\r\n"),
            (C, b"MAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\n"),
            (S, b"250 ok\r\n250 ok\r\n"),
            (C, b"BDAT 13 LAST\r\nEXPN x\r\nabc\r\n"),
            (S, bdat_reply),
            (C, b"QUIT\r\n"),
            (S, b"221 bye\r\n"),
        ]
    };
    let pix_sent: &[u8] =
        b"HELO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nXXXXXXXXXXXX\r\nXXXXXX\r\nXXX\r\nQUIT\r\n";
    let pix_replies =
        |g: &[u8], r: &[u8]| cat(&[g, b"250 ok\r\n250 ok\r\n250 ok\r\n", r, b"221 bye\r\n"]);
    check(
        "bdat",
        cfg(Profile::Pix44),
        &pix(three500),
        pix_sent,
        &pix_replies(G44, three500),
    );
    check(
        "bdat",
        cfg(Profile::Pix51),
        &pix(three500),
        pix_sent,
        &pix_replies(G51, three500),
    );
    check(
        "bdat",
        cfg(Profile::Pix40),
        &pix(b""),
        b"HELO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nQUIT\r\n",
        &pix_replies(G40, b"250 OK\r\n250 OK\r\n250 OK\r\n"),
    );
}

// ---------------------------------------------------------------------------------------
// 10. STARTTLS: pass-through after 220 (pipelined bytes dropped); blocked elsewhere.

const TLS_C: &[u8] = b"\x16\x03\x01\x00\x04EXPN";
const TLS_S: &[u8] = b"\x16\x03\x03\x00\x02\r\n";

#[test]
fn s10_starttls() {
    let tls: &[(Dir, &[u8])] = &[
        (S, GREET),
        (C, b"EHLO c\r\n"),
        (S, b"250-mail20\r\n250 STARTTLS\r\n"),
        (C, b"STARTTLS\r\nMAIL FROM:<x@y>\r\n"),
        (S, b"220 2.0.0 go ahead\r\n"),
        (C, TLS_C),
        (S, TLS_S),
        (C, b"EXPN root\r\n"),
    ];
    let replies = cat(&[
        b"250-mail20\r\n250 STARTTLS\r\n220 2.0.0 go ahead\r\n",
        TLS_S,
    ]);
    let t = check(
        "starttls",
        cfg(Profile::Strict),
        tls,
        &cat(&[b"EHLO c\r\nSTARTTLS\r\n", TLS_C, b"EXPN root\r\n"]),
        &cat(&[G51, &replies]),
    );
    assert!(t.events.contains(&Event::TlsPassthrough));
    assert!(t.events.contains(&Event::DroppedAfterStartTls(17)));
    check(
        "starttls",
        cfg(Profile::Off),
        tls,
        &cat(&[
            b"EHLO c\r\nSTARTTLS\r\nMAIL FROM:<x@y>\r\n",
            TLS_C,
            b"EXPN root\r\n",
        ]),
        &cat(&[GREET, &replies]),
    );
    // asa: STARTTLS advertised as XXXXXXXA and X-ed if sent anyway.
    check(
        "starttls",
        cfg(Profile::Asa),
        &[
            (S, GREET),
            (C, b"EHLO c\r\n"),
            (S, b"250-mail20\r\n250 STARTTLS\r\n"),
            (C, b"STARTTLS\r\nMAIL FROM:<x@y>\r\n"),
            (S, b"500 unrecognized\r\n250 ok\r\n"),
            (C, b"QUIT\r\n"),
            (S, b"221 bye\r\n"),
        ],
        b"EHLO c\r\nXXXXXXXX\r\nMAIL FROM:<x@y>\r\nQUIT\r\n",
        &cat(&[
            G51,
            b"250-mail20\r\n250 XXXXXXXA\r\n500 unrecognized\r\n250 ok\r\n221 bye\r\n",
        ]),
    );
    let pix: &[(Dir, &[u8])] = &[
        (S, GREET),
        (C, b"STARTTLS\r\nMAIL FROM:<x@y>\r\n"),
        (S, b"500 unrecognized\r\n250 ok\r\n"),
        (C, b"QUIT\r\n"),
        (S, b"221 bye\r\n"),
    ];
    let pix_sent: &[u8] = b"XXXXXXXX\r\nMAIL FROM:<x@y>\r\nQUIT\r\n";
    let r: &[u8] = b"500 unrecognized\r\n250 ok\r\n221 bye\r\n";
    check_pix44_pix51("starttls", pix, pix_sent, r);
    check(
        "starttls",
        cfg(Profile::Pix40),
        &[
            (S, GREET),
            (C, b"STARTTLS\r\nMAIL FROM:<x@y>\r\n"),
            (S, b"250 ok\r\n"),
            (C, b"QUIT\r\n"),
            (S, b"221 bye\r\n"),
        ],
        b"MAIL FROM:<x@y>\r\nQUIT\r\n",
        &cat(&[G40, b"250 OK\r\n250 ok\r\n221 bye\r\n"]),
    );
}

// ---------------------------------------------------------------------------------------
// 11. SMTP smuggling: bare LF / bare CR in DATA (strict normalises, so it and the server
//     agree where the message ends).

#[test]
fn s11_bare_cr_lf_in_data() {
    let body: &[u8] = b"line1\nline2\rline3\r\n.\rRSET\r\n.\r\n";
    let head: &[(Dir, &[u8])] = &[
        (S, GREET),
        (C, b"HELO c\r\n"),
        (S, b"250 ok\r\n"),
        (C, b"MAIL FROM:<a@x>\r\n"),
        (S, b"250 ok\r\n"),
        (C, b"RCPT TO:<b@x>\r\n"),
        (S, b"250 ok\r\n"),
        (C, b"DATA\r\n"),
        (S, b"354 go\r\n"),
        (C, body),
    ];
    let with = |tail: &[(Dir, &'static [u8])]| {
        let mut v = head.to_vec();
        v.extend_from_slice(tail);
        v
    };
    let cmds: &[u8] = b"HELO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n";
    // strict: ".\r" + "R" is ".\r\n" + "R": the message ends there, RSET is a command and the
    // last "." line is a (blocked) command.
    let s = with(&[
        (S, b"250 queued\r\n250 reset\r\n500 unrecognized\r\n"),
        (C, b"QUIT\r\n"),
        (S, b"221 bye\r\n"),
    ]);
    let t = check(
        "smuggling",
        cfg(Profile::Strict),
        &s,
        &cat(&[
            cmds,
            b"line1\r\nline2\r\nline3\r\n.\r\nRSET\r\nX\r\nQUIT\r\n",
        ]),
        &cat(&[
            G51,
            b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n250 queued\r\n250 reset\r\n500 unrecognized\r\n221 bye\r\n",
        ]),
    );
    assert!(blocked(&t, "."));
    // The others: lines end at LF, ".\rRSET" is a body line, ".\r\n" ends the message.
    let s = with(&[
        (S, b"250 queued\r\n"),
        (C, b"QUIT\r\n"),
        (S, b"221 bye\r\n"),
    ]);
    let sent = cat(&[cmds, body, b"QUIT\r\n"]);
    let r: &[u8] = b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n250 queued\r\n221 bye\r\n";
    for (p, g) in [
        (Profile::Off, GREET),
        (Profile::Pix40, G40),
        (Profile::Pix44, G44),
        (Profile::Pix51, G51),
        (Profile::Asa, G51),
    ] {
        let t = check("smuggling", cfg(p), &s, &sent, &cat(&[g, r]));
        if p != Profile::Off {
            assert!(!t.events.iter().any(|e| matches!(e, Event::VerbBlocked(_))));
        }
    }
}

// ---------------------------------------------------------------------------------------
// 12. asa: `|` in addresses, and the command line limit (asa, strict).

#[test]
fn s12_limits_and_pipes() {
    let long: &'static [u8] = Box::leak(cat(&[b"NOOP ", &[b'a'; 600], b"\r\n"]).into_boxed_slice());
    let script: &[(Dir, &[u8])] = &[
        (S, GREET),
        (C, b"HELO c\r\n"),
        (S, b"250 ok\r\n"),
        (C, b"MAIL FROM:<a|b@x>\r\n"),
        (S, b"250 ok\r\n"),
        (C, b"RCPT TO:<c|d@x> NOTIFY=NEVER|X\r\n"),
        (S, b"250 ok\r\n"),
        (C, long),
        (S, b"250 ok\r\n"),
        (C, b"QUIT\r\n"),
        (S, b"221 bye\r\n"),
    ];
    let first: &[u8] = b"HELO c\r\nMAIL FROM:<a|b@x>\r\nRCPT TO:<c|d@x> NOTIFY=NEVER|X\r\n";
    let r3: &[u8] = b"250 ok\r\n250 ok\r\n250 ok\r\n";
    // asa and strict stream the long line too: its first 512 bytes reach the server,
    // unterminated, and byte 513 resets the connection.
    let long_512 = long.get(..512).unwrap_or_default();
    let t = check(
        "limits",
        cfg(Profile::Asa),
        script,
        &cat(&[
            b"HELO c\r\nMAIL FROM:<a b@x>\r\nRCPT TO:<c d@x> NOTIFY=NEVER|X\r\n",
            long_512,
        ]),
        &cat(&[G51, r3]),
    );
    assert_eq!(t.reset, Some(ResetReason::CommandLineTooLong));
    assert!(t.events.contains(&Event::PipeReplaced));
    assert!(t.max_held <= 8, "asa: held {}", t.max_held);
    let t = check(
        "limits",
        cfg(Profile::Strict),
        script,
        &cat(&[first, long_512]),
        &cat(&[G51, r3]),
    );
    assert_eq!(t.reset, Some(ResetReason::CommandLineTooLong));
    assert!(t.max_held <= 8, "strict: held {}", t.max_held);
    let all = cat(&[first, long, b"QUIT\r\n"]);
    let r5: &[u8] = b"250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n221 bye\r\n";
    for (p, g) in [
        (Profile::Off, GREET),
        (Profile::Pix40, G40),
        (Profile::Pix44, G44),
        (Profile::Pix51, G51),
    ] {
        let t = check("limits", cfg(p), script, &all, &cat(&[g, r5]));
        assert_eq!(t.reset, None);
        // A long allowed line streams: at most a verb's worth is ever held.
        assert!(t.max_held <= 8, "{p}: held {}", t.max_held);
    }
}

// ---------------------------------------------------------------------------------------
// 13. Telnet in character mode and the literal verb rule (tab, bare CR, leading space).

#[test]
fn s13_char_mode_and_literal_verbs() {
    let lines: &[&[u8]] = &[
        b"EXPN root\r\n",
        b"NOOP\rEXPN\r\n",
        b"HELO\tx\r\n",
        b" HELO x\r\n",
    ];
    let mut script: Vec<(Dir, &[u8])> = vec![(S, GREET)];
    let mut pix40: Vec<(Dir, &[u8])> = vec![(S, GREET)];
    for l in lines {
        for i in 0..l.len() {
            script.push((C, &l[i..i + 1]));
            pix40.push((C, &l[i..i + 1]));
        }
        script.push((S, b"500 unrecognized\r\n"));
    }
    let masked: &[u8] = b"XXXXXXXXX\r\nXXXXXXXXX\r\nXXXXXX\r\nXXXXXXX\r\n";
    let r4: &[u8] =
        b"500 unrecognized\r\n500 unrecognized\r\n500 unrecognized\r\n500 unrecognized\r\n";
    check(
        "char-mode",
        cfg(Profile::Off),
        &script,
        &lines.concat(),
        &cat(&[GREET, r4]),
    );
    check(
        "char-mode",
        cfg(Profile::Pix44),
        &script,
        masked,
        &cat(&[G44, r4]),
    );
    for p in [Profile::Pix51, Profile::Asa, Profile::Strict] {
        let t = check("char-mode", cfg(p), &script, masked, &cat(&[G51, r4]));
        let n = t
            .events
            .iter()
            .filter(|e| matches!(e, Event::VerbBlocked(_)))
            .count();
        assert_eq!(n, 4, "{p}");
    }
    let t = check(
        "char-mode",
        cfg(Profile::Pix40),
        &pix40,
        b"",
        &cat(&[G40, b"250 OK\r\n250 OK\r\n250 OK\r\n250 OK\r\n"]),
    );
    assert_eq!(injected(&t), 4);
}

// ---------------------------------------------------------------------------------------
// 14. Not SMTP: a TLS ClientHello before the banner, no line end, then FIN.

#[test]
fn s14_tls_hello_on_port_25() {
    let hello: &[u8] = b"\x16\x03\x01\x00\x2e\x01\x00\x00\x2a\x03\x03";
    let script: &[(Dir, &[u8])] = &[(C, hello), (S, GREET)];
    check("not-smtp", cfg(Profile::Off), script, hello, GREET);
    check("not-smtp", cfg(Profile::Pix40), script, b"", G40);
    for (p, g) in [
        (Profile::Pix44, G44),
        (Profile::Pix51, G51),
        (Profile::Asa, G51),
        (Profile::Strict, G51),
    ] {
        let t = check("not-smtp", cfg(p), script, b"XXXXXXXXXXX", g);
        assert!(t.events.contains(&Event::NotSmtp), "{p}");
        assert_eq!(t.reset, None);
    }
}
