//! Focused rule tests: limits, unsolicited replies, FIN handling, AUTH continuations and the
//! op accounting contract the engine relies on.

use std::sync::Arc;

use mailguard::smtp::{
    transform, Dir, Event, Op, Output, PolicyConfig, Profile, ResetReason, Session, Transcript,
    MAX_HELD,
};

const C: Dir = Dir::ClientToServer;
const S: Dir = Dir::ServerToClient;
const GREET: &[u8] = b"220 mx ESMTP\r\n";

fn run(p: Profile, script: &[(Dir, &[u8])]) -> Transcript {
    transform(
        Arc::new(PolicyConfig {
            profile: p,
            ..Default::default()
        }),
        script,
    )
}

fn s(b: &[u8]) -> String {
    b.escape_ascii().to_string()
}

#[test]
fn unsolicited_354_does_not_start_data() {
    for p in [Profile::Pix51, Profile::Asa, Profile::Strict] {
        let t = run(
            p,
            &[
                (S, GREET),
                (C, b"MAIL FROM:<a@x>\r\n"),
                (S, b"354 go ahead\r\n"),
                (C, b"EXPN staff\r\n"),
            ],
        );
        assert_eq!(
            s(&t.to_server),
            s(b"MAIL FROM:<a@x>\r\nXXXXXXXXXX\r\n"),
            "{p}"
        );
        assert!(!t.events.contains(&Event::DataStarted));
    }
}

fn data_session(body: &[u8]) -> Vec<(Dir, Vec<u8>)> {
    vec![
        (S, GREET.to_vec()),
        (C, b"MAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n".to_vec()),
        (S, b"250 ok\r\n250 ok\r\n354 go\r\n".to_vec()),
        (C, body.to_vec()),
    ]
}

fn run_owned(p: Profile, v: &[(Dir, Vec<u8>)]) -> Transcript {
    let script: Vec<(Dir, &[u8])> = v.iter().map(|(d, b)| (*d, &b[..])).collect();
    run(p, &script)
}

#[test]
fn asa_header_line_limit_resets_body_line_limit_logs() {
    let mut header = b"Subject: ".to_vec();
    header.resize(998, b'h');
    header.extend_from_slice(b"\r\n\r\n");
    // Exactly 998 bytes before CRLF: allowed.
    let t = run_owned(Profile::Asa, &data_session(&header));
    assert_eq!(t.reset, None);
    let mut long = b"Subject: ".to_vec();
    long.resize(999, b'h');
    long.extend_from_slice(b"\r\n");
    let t = run_owned(Profile::Asa, &data_session(&long));
    assert_eq!(t.reset, Some(ResetReason::HeaderLineTooLong));
    // The same line in the body is only logged.
    let mut body = b"Subject: s\r\n\r\n".to_vec();
    body.extend_from_slice(&long);
    body.extend_from_slice(b".\r\n");
    let t = run_owned(Profile::Asa, &data_session(&body));
    assert_eq!(t.reset, None);
    assert_eq!(
        t.events
            .iter()
            .filter(|e| **e == Event::LongBodyLine)
            .count(),
        1
    );
    assert!(t.events.contains(&Event::DataEnded));
    // Other profiles do not care.
    for p in [Profile::Pix51, Profile::Strict] {
        assert_eq!(run_owned(p, &data_session(&long)).reset, None, "{p}");
    }
}

#[test]
fn asa_sender_and_recipient_limits() {
    let mut mail = b"MAIL FROM:<".to_vec();
    mail.resize(11 + 321, b'a');
    mail.extend_from_slice(b">\r\n");
    let t = run(Profile::Asa, &[(S, GREET), (C, &mail)]);
    assert_eq!(t.reset, Some(ResetReason::SenderAddressTooLong));
    // The line streams: everything up to the address's 320th byte is sent, the 321st resets
    // (the server holds an unterminated line it never executes).
    assert_eq!(t.to_server, mail[..11 + 320]);
    assert!(t.max_held <= 8, "held {}", t.max_held);
    mail.truncate(11 + 320);
    mail.extend_from_slice(b">\r\n");
    assert_eq!(run(Profile::Asa, &[(S, GREET), (C, &mail)]).reset, None);

    let rcpts: Vec<u8> = (0..100)
        .flat_map(|i| format!("RCPT TO:<u{i}@x>\r\n").into_bytes())
        .collect();
    // 100 in one transaction, a new MAIL, 100 more: fine.
    let t = run(
        Profile::Asa,
        &[
            (S, GREET),
            (C, b"MAIL FROM:<a@x>\r\n"),
            (C, &rcpts),
            (C, b"MAIL FROM:<a@x>\r\n"),
            (C, &rcpts),
        ],
    );
    assert_eq!(t.reset, None);
    // The 101st in one transaction resets.
    let t = run(
        Profile::Asa,
        &[
            (S, GREET),
            (C, b"MAIL FROM:<a@x>\r\n"),
            (C, &rcpts),
            (C, b"RCPT TO:<z@x>\r\n"),
        ],
    );
    assert_eq!(t.reset, Some(ResetReason::TooManyRecipients));
    assert!(t
        .events
        .contains(&Event::Reset(ResetReason::TooManyRecipients)));
}

#[test]
fn strict_command_line_limit_is_512_with_crlf() {
    let mut ok = b"NOOP ".to_vec();
    ok.resize(510, b'a');
    ok.extend_from_slice(b"\r\n");
    assert_eq!(ok.len(), 512);
    let t = run(Profile::Strict, &[(S, GREET), (C, &ok)]);
    assert_eq!(t.reset, None);
    assert_eq!(t.to_server, ok);
    let mut long = ok.clone();
    long.insert(5, b'a');
    let t = run(Profile::Strict, &[(S, GREET), (C, &long)]);
    assert_eq!(t.reset, Some(ResetReason::CommandLineTooLong));
    // The line streams: its first 512 bytes are sent (no LF among them), byte 513 resets.
    assert_eq!(t.to_server, long[..512]);
    assert!(t.max_held <= 8, "held {}", t.max_held);
}

#[test]
fn strict_ehlo_reply_all_extensions_removed() {
    let t = run(
        Profile::Strict,
        &[
            (S, GREET),
            (C, b"EHLO c\r\n"),
            (S, b"250-mx\r\n250-VRFY\r\n250-XCLIENT NAME\r\n250 ETRN\r\n"),
        ],
    );
    assert_eq!(s(&t.to_client), s(b"220 ********\r\n250 mx\r\n"));
    assert!(t.events.contains(&Event::EhloReplyRewritten));
}

#[test]
fn strict_ehlo_reply_past_the_bound_is_decided_line_by_line() {
    let mut reply = b"250-mx\r\n250-VRFY\r\n".to_vec();
    let mut expected = b"250-mx\r\n".to_vec();
    while reply.len() <= MAX_HELD + 100 {
        reply.extend_from_slice(b"250-SIZE 1\r\n");
        expected.extend_from_slice(b"250-SIZE 1\r\n");
        reply.extend_from_slice(b"250-XEXCH50\r\n");
    }
    reply.extend_from_slice(b"250 ETRN\r\n");
    expected.extend_from_slice(b"250 XXXX\r\n");
    let whole = run(
        Profile::Strict,
        &[(S, GREET), (C, b"EHLO c\r\n"), (S, &reply)],
    );
    assert_eq!(whole.reset, None);
    assert!(whole.max_held <= MAX_HELD);
    assert_eq!(
        s(&whole.to_client),
        s(&[b"220 ********\r\n", &expected[..]].concat())
    );
    assert!(whole.events.contains(&Event::EhloReplyRewritten));
    // Any segmentation gives the same, wherever the bound falls inside a line.
    for size in [1usize, 3, 7, 100, 1000] {
        let mut script: Vec<(Dir, &[u8])> = vec![(S, GREET), (C, b"EHLO c\r\n")];
        script.extend(reply.chunks(size).map(|c| (S, c)));
        let t = run(Profile::Strict, &script);
        assert_eq!(s(&t.to_client), s(&whole.to_client), "chunks of {size}");
    }
    // A final line that is kept ends the reply as it is.
    let mut reply2 = reply.clone();
    reply2.truncate(reply.len() - b"250 ETRN\r\n".len());
    reply2.extend_from_slice(b"250 8BITMIME\r\n");
    let t = run(
        Profile::Strict,
        &[(S, GREET), (C, b"EHLO c\r\n"), (S, &reply2)],
    );
    assert!(t.to_client.ends_with(b"250-SIZE 1\r\n250 8BITMIME\r\n"));
}

#[test]
fn auth_continuation_is_not_a_command_where_auth_is_allowed() {
    for p in [Profile::Asa, Profile::Strict] {
        let t = run(
            p,
            &[
                (S, GREET),
                (C, b"AUTH LOGIN\r\n"),
                (S, b"334 VXNlcm5hbWU6\r\n"),
                (C, b"EXPN\r\n"),
                (S, b"535 no\r\n"),
                (C, b"EXPN\r\n"),
            ],
        );
        assert_eq!(s(&t.to_server), s(b"AUTH LOGIN\r\nEXPN\r\nXXXX\r\n"), "{p}");
    }
}

#[test]
fn pix40_injection_waits_for_the_greeting_and_owed_replies() {
    // Client talks first: the OK comes after the greeting.
    let t = run(Profile::Pix40, &[(C, b"VRFY x\r\n"), (S, GREET)]);
    assert_eq!(s(&t.to_client), s(b"220 SMTP/cmap read\r\n250 OK\r\n"));
    // Two blocked commands behind MAIL: both after MAIL's reply, in order.
    let t = run(
        Profile::Pix40,
        &[
            (S, GREET),
            (C, b"MAIL FROM:<a@x>\r\nVRFY x\r\nEXPN y\r\nNOOP\r\n"),
            (S, b"250-multi\r\n250 ok\r\n"),
            (S, b"250 noop\r\n"),
        ],
    );
    assert_eq!(
        s(&t.to_client),
        s(b"220 SMTP/cmap read\r\n250-multi\r\n250 ok\r\n250 OK\r\n250 OK\r\n250 noop\r\n")
    );
    assert_eq!(s(&t.to_server), s(b"MAIL FROM:<a@x>\r\nNOOP\r\n"));
    // The server closes without answering MAIL: the OK behind it is never sent.
    let t = run(
        Profile::Pix40,
        &[(S, GREET), (C, b"MAIL FROM:<a@x>\r\nVRFY x\r\n")],
    );
    assert_eq!(s(&t.to_client), s(b"220 SMTP/cmap read\r\n"));
}

#[test]
fn unterminated_lines_at_fin() {
    let t = run(Profile::Pix51, &[(S, GREET), (C, b"EXPN ro")]);
    assert_eq!(s(&t.to_server), s(b"XXXXXXX"));
    let t = run(Profile::Strict, &[(S, GREET), (C, b"HELO x")]);
    assert_eq!(s(&t.to_server), s(b"HELO x"));
    let t = run(Profile::Pix40, &[(S, GREET), (C, b"EXPN ro")]);
    assert_eq!(s(&t.to_server), s(b""));
    assert_eq!(s(&t.to_client), s(b"220 SMTP/cmap read\r\n"));
    // A server cut in the middle of its greeting: what came is masked.
    let t = run(Profile::Pix51, &[(S, b"220 mx20 ES")]);
    assert_eq!(s(&t.to_client), s(b"220 **20***"));
}

#[test]
fn non_220_first_reply_is_not_masked() {
    let t = run(
        Profile::Pix51,
        &[(S, b"554 mx no service\r\n"), (C, b"QUIT\r\n")],
    );
    assert_eq!(s(&t.to_client), s(b"554 mx no service\r\n"));
    let t = run(Profile::Pix51, &[(S, b"SSH-2.0-OpenSSH\r\n")]);
    assert_eq!(s(&t.to_client), s(b"SSH-2.0-OpenSSH\r\n"));
    assert!(t.events.contains(&Event::NotSmtp));
}

/// The contract with the engine: after every feed, the ops of a direction consume exactly
/// what was fed minus what is held, and nothing is held past MAX_HELD.
#[test]
fn ops_account_for_every_fed_byte() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/streams");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).expect("fixtures") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read");
        let chunks: Vec<(Dir, Vec<u8>)> = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| l.split_once(' '))
            .map(|(t, h)| {
                let d = if t == "C" { C } else { S };
                let b = (0..h.len() / 2)
                    .filter_map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).ok())
                    .collect();
                (d, b)
            })
            .collect();
        for p in Profile::ALL {
            let mut session = Session::new(Arc::new(PolicyConfig {
                profile: p,
                ..Default::default()
            }));
            let mut fed = [0usize; 2];
            let mut consumed = [0usize; 2];
            let mut out = Output::default();
            for (d, b) in &chunks {
                for piece in b.chunks(5) {
                    session.feed(*d, piece, &mut out);
                    let i = usize::from(*d == S);
                    fed[i] += piece.len();
                    consumed[0] += out.to_server.iter().map(Op::consumed).sum::<usize>();
                    consumed[1] += out.to_client.iter().map(Op::consumed).sum::<usize>();
                    let reset = out.reset.is_some();
                    out.clear();
                    if reset || session.reset_reason().is_some() {
                        break;
                    }
                    for (j, dd) in [C, S].into_iter().enumerate() {
                        assert!(session.held(dd) <= MAX_HELD);
                        assert_eq!(
                            consumed[j] + session.held(dd),
                            fed[j],
                            "{} {p} {dd:?}",
                            path.display()
                        );
                    }
                }
            }
            checked += 1;
        }
    }
    assert!(checked > 200);
}

#[test]
fn client_talking_first_is_reported_once_and_filtered() {
    let t = run(
        Profile::Pix51,
        &[
            (C, b"HELO x\r\nEXPN y\r\n"),
            (S, GREET),
            (S, b"250 ok\r\n500 no\r\n"),
        ],
    );
    assert_eq!(t.events.iter().filter(|e| **e == Event::NotSmtp).count(), 1);
    assert_eq!(s(&t.to_server), s(b"HELO x\r\nXXXXXX\r\n"));
    // A compliant client is not reported.
    let t = run(Profile::Pix51, &[(S, GREET), (C, b"HELO x\r\n")]);
    assert!(!t.events.contains(&Event::NotSmtp));
}

#[test]
fn nothing_is_injected_after_the_server_closed() {
    let config = Arc::new(PolicyConfig {
        profile: Profile::Pix40,
        ..Default::default()
    });
    let mut session = Session::new(config);
    let mut out = Output::default();
    session.feed(S, GREET, &mut out);
    session.finish(S, &mut out);
    out.clear();
    session.feed(C, b"VRFY x\r\nQUIT\r\n", &mut out);
    assert!(out.to_client.is_empty());
    assert_eq!(out.to_server, vec![Op::Delete(8), Op::Copy(6)]);
}

#[test]
fn pix40_insert_op_sits_between_the_owed_replies() {
    let config = Arc::new(PolicyConfig {
        profile: Profile::Pix40,
        ..Default::default()
    });
    let mut session = Session::new(config);
    let mut out = Output::default();
    session.feed(S, b"220 SMTP/cmap read\r\n", &mut out);
    out.clear();
    session.feed(C, b"MAIL FROM:<a@x>\r\nVRFY x\r\nNOOP\r\n", &mut out);
    assert_eq!(
        out.to_server,
        vec![Op::Copy(17), Op::Delete(8), Op::Copy(6)]
    );
    assert!(out.to_client.is_empty(), "MAIL's reply is still owed");
    out.clear();
    session.feed(S, b"250 a\r\n250 b\r\n", &mut out);
    assert_eq!(
        out.to_client,
        vec![Op::Copy(7), Op::Insert(b"250 OK\r\n".to_vec()), Op::Copy(7)]
    );
    assert_eq!(session.held(S), 0);
}
