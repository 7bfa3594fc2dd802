//! The evasion suite of issue 7: a blocked verb delivered by every technique from the
//! IDS-evasion literature and the PIX advisories must never reach the server as a command it
//! would execute, under every filtering profile.
//!
//! Each case runs the engine between a scripted client and a lenient, vulnerable SMTP server
//! model (see `common/evasion.rs`), then asserts:
//! - exactly what the server's application read, per DESIGN.md §2 (see [`cmd`] for how a
//!   command line is transformed; where the design leaves the engine a choice, such as dropping
//!   IP fragments or reassembling them, every allowed outcome is listed and one must match);
//! - that the server model never executed a verb the profile blocks;
//! - the wire invariants: every emitted frame has valid checksums and no byte position of
//!   either stream was ever emitted with two different values (DESIGN.md §3.2, §3.3).
//!
//! Choices made where DESIGN.md is silent (documented in SECURITY.md too):
//! - Masking turns every byte of a blocked line into `X` except its terminator (`\r\n`, or a
//!   bare `\n`); a CR or NUL inside the line is masked like any other byte. A line cut short by
//!   FIN is masked whole.
//! - The SMTP smuggling cases with a bare CR (`\r.\r\n`) are required of `strict` only; PIX and
//!   ASA never normalised line endings.
//!
//! The cases need the real engine and policy; against the skeleton's stubs (which forward
//! everything) they failed; they run now that both are merged. The `lab_*` tests
//! check the lab itself and always run.

#[path = "common/evasion.rs"]
mod evasion;

use evasion::*;
use mailguard::engine::Side;
use mailguard::smtp::Profile;

// The expected transform (DESIGN.md §2), shared with the live suite: `cmd`, `cmds`,
// `blocked_lines`, `line`, `noop_like`, `cat`, `PROFILES`, `VERBS`.
#[path = "common/evexpect.rs"]
mod evexpect;

use evexpect::*;

/// Lets `secs` seconds of simulated time pass (rounded down to whole steps) in steps of
/// `step` seconds, running the engine's due timers after each step.
fn idle(lab: &mut Lab, secs: u64, step: u64) {
    for _ in 0..secs / step {
        lab.now = lab.now.after(std::time::Duration::from_secs(step));
        lab.drain_timers();
    }
}

// ---------------------------------------------------------------------------------------------
// Common assertions.

/// The invariants every case must meet, whatever the server received.
fn check_common(lab: &Lab, p: Profile, label: &str) {
    assert!(
        lab.bad_emitted.is_empty(),
        "{p} {label}: emitted frames with bad checksums: {:?}",
        lab.bad_emitted
    );
    assert_eq!(
        lab.server.conflicts, 0,
        "{p} {label}: a byte position towards the server was emitted with two values"
    );
    assert_eq!(
        lab.client.conflicts, 0,
        "{p} {label}: a byte position towards the client was emitted with two values"
    );
    for v in VERBS {
        if !allowed_verbs(p).contains(&v) {
            assert!(
                !lab.smtp.ran(v),
                "{p} {label}: the server executed {v}; it received {}",
                show(&lab.server_stream())
            );
        }
    }
}

/// The server read exactly `HELO` + `after`.
fn expect_server(lab: &Lab, p: Profile, label: &str, after: &[u8]) {
    expect_server_one_of(lab, p, label, &[after.to_vec()]);
}

/// The server read exactly `HELO` + one of `alternatives`.
fn expect_server_one_of(lab: &Lab, p: Profile, label: &str, alternatives: &[Vec<u8>]) {
    check_common(lab, p, label);
    let got = lab.server_stream();
    let wanted: Vec<Vec<u8>> = alternatives
        .iter()
        .map(|a| cat(&[HELO, a.as_slice()]))
        .collect();
    assert!(
        wanted.contains(&got),
        "{p} {label}: the server received\n  {}\nexpected one of\n  {}",
        show(&got),
        wanted
            .iter()
            .map(|w| show(w))
            .collect::<Vec<_>>()
            .join("\n  ")
    );
}

/// pix40 answers each removed line with `250 OK\r\n` itself.
fn expect_injected(lab: &Lab, p: Profile, label: &str, n: usize) {
    if p != Profile::Pix40 {
        return;
    }
    let got = lab.client_stream();
    let count = got.windows(8).filter(|w| *w == b"250 OK\r\n").count();
    assert_eq!(
        count,
        n,
        "{p} {label}: the client should get {n} injected `250 OK`; it received {}",
        show(&got)
    );
}

/// A connected lab; returns it and the client's next stream offset.
fn connected(p: Profile) -> (Lab, usize) {
    let mut lab = Lab::new(p, false);
    let base = lab.connect();
    (lab, base)
}

/// A connected lab in the DATA phase (the server answered 354); returns the next offset and
/// what the server must have read after HELO.
fn lab_in_data(p: Profile) -> (Lab, usize, Vec<u8>) {
    let (mut lab, mut off) = connected(p);
    let mut seen = Vec::new();
    for l in [
        &b"MAIL FROM:<a@example.org>\r\n"[..],
        b"RCPT TO:<b@example.org>\r\n",
        b"DATA\r\n",
    ] {
        lab.send(off, l);
        off += l.len();
        seen.extend(cmd(p, l));
    }
    (lab, off, seen)
}

// ---------------------------------------------------------------------------------------------
// The cases.

#[test]
fn split_at_every_byte_position() {
    for p in PROFILES {
        for v in VERBS {
            for text in [line(v), cat(&[b"NOOP\r\n", &line(v), b"RSET\r\n"])] {
                for k in 1..text.len() {
                    let label = format!("{v} split at {k} of {}", show(&text));
                    let (mut lab, base) = connected(p);
                    lab.send(base, &text[..k]);
                    lab.send(base + k, &text[k..]);
                    lab.drain_timers();
                    expect_server(&lab, p, &label, &cmds(p, &text));
                    expect_injected(&lab, p, &label, blocked_lines(p, &text));
                }
            }
        }
    }
}

#[test]
fn one_byte_per_segment() {
    for p in PROFILES {
        for v in VERBS {
            let text = cat(&[b"noop\r\n", &line(v), b"QUIT\r\n"]);
            let (mut lab, base) = connected(p);
            for (i, b) in text.iter().enumerate() {
                lab.send(base + i, &[*b]);
            }
            lab.drain_timers();
            expect_server(&lab, p, "one byte per segment", &cmds(p, &text));
            expect_injected(&lab, p, "one byte per segment", blocked_lines(p, &text));
        }
    }
}

#[test]
fn out_of_order_delivery() {
    for p in PROFILES {
        for v in VERBS {
            let text = cat(&[b"NOOP\r\n", &line(v), b"RSET\r\n"]);
            let cuts = [0, 3, 8, 12, text.len()];
            let orders: [&[usize]; 3] = [&[3, 2, 1, 0], &[1, 3, 0, 2], &[2, 0, 3, 1]];
            for order in orders {
                let label = format!("{v} pieces in order {order:?}");
                let (mut lab, base) = connected(p);
                for &i in order {
                    let seg = lab.client_seg(base + cuts[i], &text[cuts[i]..cuts[i + 1]]);
                    lab.push_client(&seg);
                }
                lab.settle();
                lab.drain_timers();
                expect_server(&lab, p, &label, &cmds(p, &text));
            }
        }
    }
}

#[test]
fn overlapping_retransmissions_first_accepted_bytes_win() {
    for p in PROFILES {
        for v in VERBS {
            let bad = line(v);
            let good = noop_like(v);
            // In order: the first copy reached the receiver; the retransmission must not.
            for (first, second) in [(&good, &bad), (&bad, &good)] {
                let label = format!("{} then {}", show(first), show(second));
                let (mut lab, base) = connected(p);
                lab.send(base, first);
                lab.send(base, second);
                lab.drain_timers();
                expect_server(&lab, p, &label, &cmd(p, first));
            }
            // Out of order, overlapping: the tail arrives first, then a segment covering all.
            let label = format!("tail of {} then all of {}", show(&bad), show(&good));
            let (mut lab, base) = connected(p);
            let tail = lab.client_seg(base + 2, &bad[2..]);
            lab.push_client(&tail);
            lab.send(base, &good);
            lab.drain_timers();
            let mixed = cat(&[&good[..2], &bad[2..]]);
            expect_server(&lab, p, &label, &cmd(p, &mixed));
            // Retransmission that extends past the original with different bytes.
            let label = format!("{} then {}+more", show(&good), show(&bad));
            let (mut lab, base) = connected(p);
            lab.send(base, &good);
            let longer = cat(&[&bad, &bad]);
            lab.send(base, &longer);
            lab.drain_timers();
            expect_server(&lab, p, &label, &cat(&[&cmd(p, &good), &cmd(p, &bad)]));
        }
    }
}

/// Fragments of one segment carrying `text`, delivered in `order`, then the same segment
/// retransmitted whole (a real client would, without an ACK).
fn fragmented(p: Profile, v6: bool, verb: &str) {
    let text = line(verb);
    for order in [[0usize, 1, 2], [2, 1, 0], [1, 2, 0]] {
        let label = format!(
            "{verb} in IPv{} fragments {order:?}",
            if v6 { 6 } else { 4 }
        );
        let mut lab = Lab::new(p, v6);
        let base = lab.connect();
        let frame = build(lab.flow, &lab.client_seg(base, &text));
        // TCP header (20) + payload; cut inside the verb and inside the argument.
        let len = 20 + text.len();
        let frags = fragment(&frame, &[(0, 8), (8, 24), (24, len)], 0x4d47);
        for &i in &order {
            lab.inject(Side::Outside, &frags[i]);
        }
        lab.settle();
        lab.send(base, &text);
        lab.drain_timers();
        expect_server(&lab, p, &label, &cmd(p, &text));
    }
}

/// Overlapping fragments: the last fragment is sent twice, once from a segment carrying an
/// allowed line and once from one carrying the blocked line (each with its own TCP checksum,
/// which lies in the overlap), and the first fragment comes last so that a receiver holds both
/// before it can reassemble. A first-wins and a last-wins receiver would see different lines;
/// the engine must make the server see one consistent choice.
fn overlapping_fragments(p: Profile, v6: bool, verb: &str) {
    let bad = line(verb);
    let good = noop_like(verb);
    for (first, second, retrans) in [
        (&good, &bad, &good),
        (&bad, &good, &good),
        (&good, &bad, &bad),
    ] {
        let label = format!(
            "IPv{} overlapping fragments {} / {}, then {}",
            if v6 { 6 } else { 4 },
            show(first),
            show(second),
            show(retrans)
        );
        let mut lab = Lab::new(p, v6);
        let base = lab.connect();
        let fa = build(lab.flow, &lab.client_seg(base, first));
        let fb = build(lab.flow, &lab.client_seg(base, second));
        let len = 20 + first.len();
        let a = fragment(&fa, &[(0, 16), (16, len)], 0x4d48);
        let b = fragment(&fb, &[(16, len)], 0x4d48);
        lab.inject(Side::Outside, &a[1]);
        lab.inject(Side::Outside, &b[0]);
        lab.inject(Side::Outside, &a[0]);
        lab.settle();
        lab.send(base, retrans);
        lab.drain_timers();
        expect_server_one_of(&lab, p, &label, &[cmd(p, &good), cmd(p, &bad)]);
    }
}

/// A "fragment" that is the whole datagram: IPv6 atomic fragment (offset 0, M=0, RFC 6946) or
/// an IPv4 packet with offset 0 and MF clear but a fragment identification. Receivers process
/// it as a complete packet, so the filter must too.
fn atomic_fragment(p: Profile, v6: bool, verb: &str) {
    let text = line(verb);
    let label = format!("{verb} in an IPv{} atomic fragment", if v6 { 6 } else { 4 });
    let mut lab = Lab::new(p, v6);
    let base = lab.connect();
    let frame = build(lab.flow, &lab.client_seg(base, &text));
    let len = 20 + text.len();
    let frags = fragment(&frame, &[(0, len)], 0x4d49);
    lab.inject(Side::Outside, &frags[0]);
    lab.settle();
    lab.send(base, &text);
    lab.drain_timers();
    expect_server(&lab, p, &label, &cmd(p, &text));
}

#[test]
fn ipv4_fragments() {
    for p in PROFILES {
        for v in VERBS {
            fragmented(p, false, v);
            overlapping_fragments(p, false, v);
            atomic_fragment(p, false, v);
        }
    }
}

#[test]
fn ipv6_fragments() {
    for p in PROFILES {
        for v in VERBS {
            fragmented(p, true, v);
            overlapping_fragments(p, true, v);
            atomic_fragment(p, true, v);
        }
    }
}

#[test]
fn urgent_pointer_in_body() {
    for p in PROFILES {
        for v in VERBS {
            // A receiver that takes the urgent byte out of band reads `hello\r\n.\r\n`: the end
            // of the message, then the verb as a command. The filter must make the server read
            // what the filter judged.
            let (mut lab, mut off, seen) = lab_in_data(p);
            let body = cat(&[b"hello\r\nx.\r\n", &line(v)]);
            let mut seg = lab.client_seg(off, &body);
            seg.urg = Some(8); // the byte at seq + 7: the `x`
            lab.push_client(&seg);
            lab.settle();
            off += body.len();
            let rest = b"more\r\n.\r\nQUIT\r\n";
            lab.send(off, rest);
            lab.drain_timers();
            let inline = cat(&[&seen, &body, b"more\r\n.\r\n", &cmd(p, b"QUIT\r\n")]);
            let out_of_band = cat(&[&seen, b"hello\r\n.\r\n", &cmd(p, &line(v)), &cmds(p, rest)]);
            expect_server_one_of(&lab, p, &format!("urgent {v}"), &[inline, out_of_band]);
        }
    }
}

#[test]
fn syn_with_data() {
    for p in PROFILES {
        for v in VERBS {
            let text = line(v);
            let mut lab = Lab::new(p, false);
            let syn = Seg {
                from_client: true,
                seq: CLIENT_ISN,
                syn: true,
                window: 65_535,
                payload: text.clone(),
                ..Seg::default()
            };
            let f = build(lab.flow, &syn);
            lab.inject(Side::Outside, &f);
            lab.settle();
            if lab.server.isn.is_none() {
                // The engine dropped the SYN: the client retries without data (TFO fallback).
                let plain = Seg {
                    payload: Vec::new(),
                    ..syn
                };
                let f = build(lab.flow, &plain);
                lab.inject(Side::Outside, &f);
                lab.settle();
            }
            // The SYN-ACK did not cover the data (or did): the client sends it again, then HELO.
            lab.send(0, &text);
            lab.send(text.len(), HELO);
            lab.drain_timers();
            check_common(&lab, p, "SYN with data");
            let got = lab.server_stream();
            let want = cat(&[&cmd(p, &text), HELO]);
            assert_eq!(
                show(&got),
                show(&want),
                "{p} {v}: SYN with data: server stream"
            );
        }
    }
}

#[test]
fn segments_outside_the_window() {
    for p in PROFILES {
        for v in VERBS {
            let bad = line(v);
            let good = noop_like(v);
            let (mut lab, base) = connected(p);
            // Far beyond the server's window (8192): a receiver that accepted it would read it
            // once the gap is filled.
            let fill_line = {
                let mut l = b"NOOP ".to_vec();
                l.resize(88, b'a');
                l.extend_from_slice(b"\r\n");
                l
            };
            let fill: Vec<u8> = fill_line.repeat(100);
            let far = lab.client_seg(base + fill.len(), &bad);
            lab.push_client(&far);
            lab.settle();
            for (i, chunk) in fill.chunks(900).enumerate() {
                lab.send(base + i * 900, chunk);
            }
            lab.send(base + fill.len(), &good);
            lab.drain_timers();
            let fill_out = cmds(p, &fill);
            expect_server_one_of(
                &lab,
                p,
                &format!("{v} beyond the window"),
                &[
                    cat(&[&fill_out, &cmd(p, &good)]),
                    cat(&[&fill_out, &cmd(p, &bad)]),
                ],
            );
        }
    }
}

#[test]
fn bad_checksums_never_enter_the_stream() {
    for p in PROFILES {
        for v in VERBS {
            let bad = line(v);
            let good = noop_like(v);
            for ip_layer in [false, true] {
                for (corrupted, valid) in [(&bad, &good), (&good, &bad)] {
                    let label = format!(
                        "bad {} checksum on {}, then {}",
                        if ip_layer { "IPv4" } else { "TCP" },
                        show(corrupted),
                        show(valid)
                    );
                    let (mut lab, base) = connected(p);
                    let mut f = build(lab.flow, &lab.client_seg(base, corrupted));
                    if ip_layer {
                        corrupt_ip_checksum(&mut f);
                    } else {
                        corrupt_tcp_checksum(&mut f);
                    }
                    lab.inject(Side::Outside, &f);
                    lab.settle();
                    lab.send(base, valid);
                    lab.drain_timers();
                    expect_server(&lab, p, &label, &cmd(p, valid));
                }
            }
        }
    }
}

#[test]
fn pipelined_in_one_segment() {
    for p in PROFILES {
        for v in VERBS {
            let text = cat(&[
                b"NOOP\r\n",
                &line(v),
                b"RSET\r\nMAIL FROM:<a@example.org>\r\n",
                &line(v),
                b"NOOP\r\n",
            ]);
            let (mut lab, base) = connected(p);
            lab.send(base, &text);
            lab.drain_timers();
            expect_server(&lab, p, "pipelined", &cmds(p, &text));
            expect_injected(&lab, p, "pipelined", blocked_lines(p, &text));
        }
    }
}

#[test]
fn data_answered_503_then_commands_cve_2000_1022() {
    for p in PROFILES {
        for v in VERBS {
            // No RCPT: the server answers DATA with 503, so what follows are commands.
            let (mut lab, base) = connected(p);
            lab.send(base, b"DATA\r\n");
            lab.send(base + 6, &line(v));
            lab.drain_timers();
            let want = cat(&[&cmd(p, b"DATA\r\n"), &cmd(p, &line(v))]);
            expect_server(&lab, p, "DATA 503, then the verb", &want);
            // The same pipelined in one segment, with a fake end of message.
            let text = cat(&[b"DATA\r\n", &line(v), b".\r\n", &line(v)]);
            let (mut lab, base) = connected(p);
            lab.send(base, &text);
            lab.drain_timers();
            expect_server(&lab, p, "DATA 503 pipelined", &cmds(p, &text));
        }
    }
}

#[test]
fn commands_pipelined_after_starttls_cve_2011_0411() {
    for p in PROFILES {
        for v in VERBS {
            let tls = b"STARTTLS\r\n";
            // strict allows STARTTLS and drops what the client sent before the server's 220;
            // every other profile blocks STARTTLS, so the next line is a command like any other.
            let after = |p: Profile| -> Vec<u8> {
                if p == Profile::Strict {
                    tls.to_vec()
                } else {
                    cat(&[&cmd(p, tls), &cmd(p, &line(v))])
                }
            };
            // In one segment.
            let (mut lab, base) = connected(p);
            lab.send(base, &cat(&[tls, &line(v)]));
            lab.drain_timers();
            expect_server(&lab, p, "STARTTLS+verb in one segment", &after(p));
            // In two segments, both before the server's answer.
            let (mut lab, base) = connected(p);
            let s1 = lab.client_seg(base, tls);
            let s2 = lab.client_seg(base + tls.len(), &line(v));
            lab.push_client(&s1);
            lab.push_client(&s2);
            lab.settle();
            lab.drain_timers();
            expect_server(&lab, p, "STARTTLS, verb before the 220", &after(p));
        }
    }
}

#[test]
fn bare_lf_bare_cr_and_nul_in_command_lines() {
    for p in PROFILES {
        for v in VERBS {
            let texts: Vec<Vec<u8>> = vec![
                format!("{v} root\n").into_bytes(),
                format!("NOOP\r{v} root\r\n").into_bytes(),
                format!("NOOP\n{v} root\r\n").into_bytes(),
                format!("{v}\0root\r\n").into_bytes(),
                format!("NOOP\0{v} root\r\n").into_bytes(),
                format!("{v}\troot\r\n").into_bytes(),
                format!("{v} root\r\rNOOP\r\n").into_bytes(),
                format!("{v}\r\n").into_bytes(),
            ];
            for text in texts {
                let label = show(&text);
                let (mut lab, base) = connected(p);
                lab.send(base, &text);
                lab.drain_timers();
                expect_server(&lab, p, &label, &cmds(p, &text));
            }
        }
    }
}

#[test]
fn leading_spaces_and_mixed_case() {
    for p in PROFILES {
        for v in VERBS {
            let mut texts = spacing_and_case_variants(v);
            texts.push(b"  NOOP\r\n".to_vec());
            texts.push(b"nOoP\r\n".to_vec());
            for text in texts {
                let label = show(&text);
                let (mut lab, base) = connected(p);
                lab.send(base, &text);
                lab.drain_timers();
                expect_server(&lab, p, &label, &cmds(p, &text));
            }
        }
    }
}

#[test]
fn over_long_lines() {
    for p in PROFILES {
        for v in VERBS {
            let mut long_noop = b"NOOP ".to_vec();
            long_noop.resize(600, b'a');
            long_noop.extend_from_slice(b"\r\n");
            let mut long_bad = format!("{v} ").into_bytes();
            long_bad.resize(5000, b'a');
            long_bad.extend_from_slice(b"\r\n");
            for text in [
                cat(&[&long_noop, &line(v)]),
                cat(&[&long_bad, b"NOOP\r\n", &line(v)]),
            ] {
                let label = format!("over-long line then {v}");
                let (mut lab, base) = connected(p);
                for (i, chunk) in text.chunks(700).enumerate() {
                    lab.send(base + i * 700, chunk);
                }
                lab.drain_timers();
                if matches!(p, Profile::Asa | Profile::Strict) {
                    // A command line over 512 bytes resets the connection; whatever reached the
                    // server before is a prefix of the first line's allowed form.
                    check_common(&lab, p, &label);
                    assert!(lab.server.rst, "{p} {label}: the server was not reset");
                    assert!(lab.client.rst, "{p} {label}: the client was not reset");
                    let got = lab.server_stream();
                    let first = text.split_inclusive(|&b| b == b'\n').next().unwrap_or(&[]);
                    let limit = cat(&[HELO, &cmd(p, first)]);
                    assert!(
                        limit.starts_with(&got) && got.starts_with(HELO),
                        "{p} {label}: the server received {}",
                        show(&got)
                    );
                } else {
                    expect_server(&lab, p, &label, &cmds(p, &text));
                }
            }
        }
    }
}

#[test]
fn smuggling_end_of_data_all_profiles() {
    // `\n.\r\n` and `.\n`: a line ends at LF in every profile, so the filter and the server
    // agree that the message ended, and what follows is filtered as commands.
    for p in PROFILES {
        for v in VERBS {
            for (body, normalised) in [
                (&b"hello\n.\r\n"[..], &b"hello\r\n.\r\n"[..]),
                (b"hello\r\n.\n", b"hello\r\n.\r\n"),
            ] {
                let (mut lab, off, seen) = lab_in_data(p);
                let text = cat(&[body, &line(v)]);
                lab.send(off, &text);
                lab.drain_timers();
                let label = format!("smuggling {}", show(&text));
                let mut alts = vec![cat(&[&seen, body, &cmd(p, &line(v))])];
                if p == Profile::Strict {
                    // strict normalises bare LF in DATA; the terminating line may keep its own.
                    alts = vec![
                        cat(&[&seen, normalised, &cmd(p, &line(v))]),
                        cat(&[&seen, b"hello\r\n.\n", &cmd(p, &line(v))]),
                    ];
                }
                expect_server_one_of(&lab, p, &label, &alts);
            }
        }
    }
}

#[test]
fn smuggling_bare_cr_under_strict() {
    let p = Profile::Strict;
    for v in VERBS {
        for body in [&b"hello\r.\r\n"[..], b"hello\r\n.\r", b"hello\r.\r"] {
            let (mut lab, off, seen) = lab_in_data(p);
            let text = cat(&[body, &line(v)]);
            lab.send(off, &text);
            lab.drain_timers();
            let label = format!("smuggling {}", show(&text));
            expect_server(
                &lab,
                p,
                &label,
                &cat(&[&seen, b"hello\r\n.\r\n", &cmd(p, &line(v))]),
            );
        }
    }
}

#[test]
fn rst_or_fin_carrying_data() {
    for p in PROFILES {
        for v in VERBS {
            let text = line(v);
            // RST with data: real stacks discard it; if the engine passes it on, filtered.
            let (mut lab, base) = connected(p);
            let mut seg = lab.client_seg(base, &text);
            seg.rst = true;
            lab.push_client(&seg);
            lab.settle();
            lab.drain_timers();
            expect_server_one_of(&lab, p, "RST with data", &[Vec::new(), cmd(p, &text)]);
            // FIN with a whole line, and FIN with a line cut short (no terminator).
            for data in [text.clone(), format!("{v} root").into_bytes()] {
                let (mut lab, base) = connected(p);
                let mut seg = lab.client_seg(base, &data);
                seg.fin = true;
                lab.push_client(&seg);
                lab.settle();
                lab.drain_timers();
                expect_server(
                    &lab,
                    p,
                    &format!("FIN with {}", show(&data)),
                    &cmd(p, &data),
                );
            }
        }
    }
}

#[test]
fn rst_desynchronisation() {
    // A RST the receiver ignores (not exactly at its next sequence number, RFC 5961) must not
    // make the filter forget the connection: the stream goes on and is still filtered. Sent by
    // the client, and spoofed from the outside with the server's addresses.
    for p in PROFILES {
        for v in VERBS {
            for (spoofed_server, pause) in [(false, 5), (true, 5), (false, 120), (true, 120)] {
                let label = format!(
                    "RST (spoofed server: {spoofed_server}) off by 10, {pause} s, then {v}"
                );
                let (mut lab, base) = connected(p);
                let seg = if spoofed_server {
                    let mut s = lab.server_seg(lab.server_sent() + 10, b"");
                    s.ack = None;
                    s
                } else {
                    let mut s = lab.client_seg(base + 10, b"");
                    s.ack = None;
                    s
                };
                let mut rst = seg;
                rst.rst = true;
                let f = build(lab.flow, &rst);
                lab.inject(Side::Outside, &f);
                lab.settle();
                assert!(!lab.server.rst, "{p} {label}: the server took the RST");
                idle(&mut lab, pause, 5);
                lab.send(base, &line(v));
                lab.drain_timers();
                // The filter kept filtering, or it reset both sides itself.
                expect_server_one_of(&lab, p, &label, &[cmd(p, &line(v)), Vec::new()]);
            }
        }
    }
}

#[test]
fn idle_connection_then_verb() {
    // An SMTP server waits 5 minutes for the next command (RFC 5321 §4.5.3.2.7). If the filter
    // forgets an idle connection sooner and then forwards its segments untouched, waiting is
    // a way around it: after any pause the stream must still be filtered (or reset).
    for p in PROFILES {
        for v in VERBS {
            for pause in [30u64, 120, 290] {
                let label = format!("{v} after {pause} s idle");
                let (mut lab, base) = connected(p);
                idle(&mut lab, pause, 10);
                lab.send(base, &line(v));
                lab.drain_timers();
                expect_server_one_of(&lab, p, &label, &[cmd(p, &line(v)), Vec::new()]);
            }
        }
    }
}

#[test]
fn end_of_data_split_at_every_byte_position() {
    // The terminator split across segments must still end the message for the filter (old
    // PIX releases broke here), so the verb after it is filtered as a command.
    for p in PROFILES {
        for v in ["EXPN", "WIZ"] {
            let mut texts = vec![(cat(&[b"hello\r\n.\r\n", &line(v)]), None)];
            if p == Profile::Strict {
                texts.push((
                    cat(&[b"hello\n.\r\n", &line(v)]),
                    Some(cat(&[b"hello\r\n.\r\n", &line(v)])),
                ));
            }
            for (text, normalised) in texts {
                for k in 1..text.len() {
                    let (mut lab, off, seen) = lab_in_data(p);
                    lab.send(off, &text[..k]);
                    lab.send(off + k, &text[k..]);
                    lab.drain_timers();
                    let sent = normalised.as_ref().unwrap_or(&text);
                    let body_len = sent.len() - line(v).len();
                    let want = cat(&[&seen, &sent[..body_len], &cmd(p, &line(v))]);
                    let label = format!("{} split at {k}", show(&text));
                    expect_server(&lab, p, &label, &want);
                }
            }
        }
    }
}

#[test]
fn pipelined_data_and_body_in_one_segment() {
    // The body starts only at the server's 354. RFC 2920 makes DATA the last command of a
    // group, so a filter may either hold what follows DATA until the reply (the body passes
    // intact) or judge it as commands at once (safe, the body is lost); the verb after `.`
    // must never run.
    for p in PROFILES {
        for v in VERBS {
            let (mut lab, base) = connected(p);
            let head = b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n";
            let body = cat(&[b"Subject: t\r\n\r\n", &line(v), b".\r\n"]);
            let tail = cat(&[&line(v), b"QUIT\r\n"]);
            lab.send(base, &cat(&[head, &body, &tail]));
            lab.drain_timers();
            let held = cat(&[&cmds(p, head), &body, &cmds(p, &tail)]);
            let as_commands = cmds(p, &cat(&[head, &body, &tail]));
            expect_server_one_of(
                &lab,
                p,
                "MAIL+RCPT+DATA+body+verb in one segment",
                &[held, as_commands],
            );
        }
    }
}

#[test]
fn bdat_chunks_pass_by_length() {
    // strict allows BDAT: the chunk passes untouched by its length, even when it looks like
    // commands, and what follows it is filtered again. Elsewhere BDAT is blocked and the
    // chunk's lines are commands like any other.
    for p in PROFILES {
        for v in VERBS {
            let (mut lab, off, seen) = {
                let (mut lab, base) = connected(p);
                let mut seen = Vec::new();
                let mut off = base;
                for l in [
                    &b"MAIL FROM:<a@example.org>\r\n"[..],
                    b"RCPT TO:<b@example.org>\r\n",
                ] {
                    lab.send(off, l);
                    off += l.len();
                    seen.extend(cmd(p, l));
                }
                (lab, off, seen)
            };
            let chunk = cat(&[&line(v), b"NOOP\r\n"]);
            let bdat = format!("BDAT {} LAST\r\n", chunk.len()).into_bytes();
            let text = cat(&[&bdat, &chunk, &line(v)]);
            lab.send(off, &text);
            lab.drain_timers();
            let want = if p == Profile::Strict {
                cat(&[&seen, &bdat, &chunk, &cmd(p, &line(v))])
            } else {
                cat(&[&seen, &cmds(p, &text)])
            };
            expect_server(
                &lab,
                p,
                "BDAT chunk with the verb inside, then the verb",
                &want,
            );
        }
    }
}

#[test]
fn auth_continuation_lines() {
    // Where AUTH is allowed (asa, strict), the line after a 334 is a SASL response and passes;
    // an AUTH the server refuses (504) leaves the next line a command, so a filter that
    // assumed a continuation would let the verb through. Elsewhere AUTH is blocked and every
    // line is a command.
    for p in PROFILES {
        for v in VERBS {
            let auth_allowed = allowed_verbs(p).contains(&"AUTH");
            // Refused mechanism, verb pipelined behind it and sent after the reply.
            for pipelined in [true, false] {
                let (mut lab, base) = connected(p);
                let auth = b"AUTH X-UNKNOWN\r\n";
                if pipelined {
                    lab.send(base, &cat(&[auth, &line(v)]));
                } else {
                    lab.send(base, auth);
                    lab.send(base + auth.len(), &line(v));
                }
                lab.drain_timers();
                let label = format!("refused AUTH then {v} (pipelined: {pipelined})");
                expect_server(&lab, p, &label, &cat(&[&cmd(p, auth), &cmd(p, &line(v))]));
            }
            // Accepted mechanism: the response line is not a command where AUTH is allowed.
            let (mut lab, base) = connected(p);
            let auth = b"AUTH PLAIN\r\n";
            lab.send(base, auth);
            lab.send(base + auth.len(), &line(v));
            lab.send(base + auth.len() + line(v).len(), &line(v));
            lab.drain_timers();
            let response = if auth_allowed {
                line(v)
            } else {
                cmd(p, &line(v))
            };
            let want = cat(&[&cmd(p, auth), &response, &cmd(p, &line(v))]);
            expect_server(&lab, p, "AUTH PLAIN, response, then the verb", &want);
        }
    }
}

#[test]
fn body_is_not_filtered_and_commands_after_it_are() {
    for p in PROFILES {
        for v in VERBS {
            let (mut lab, off, seen) = lab_in_data(p);
            let body = cat(&[b"Subject: t\r\n\r\n", &line(v), b".\r\n"]);
            let after = cat(&[&line(v), b"QUIT\r\n"]);
            lab.send(off, &body);
            lab.send(off + body.len(), &after);
            lab.drain_timers();
            expect_server(
                &lab,
                p,
                "body with the verb, then the verb",
                &cat(&[&seen, &body, &cmds(p, &after)]),
            );
        }
    }
}

#[test]
fn ipv6_split_at_every_byte_position() {
    for p in PROFILES {
        let text = line("EXPN");
        for k in 1..text.len() {
            let mut lab = Lab::new(p, true);
            let base = lab.connect();
            lab.send(base, &text[..k]);
            lab.send(base + k, &text[k..]);
            lab.drain_timers();
            expect_server(&lab, p, &format!("IPv6 split at {k}"), &cmd(p, &text));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The lab checks itself (always run): the detectors must be able to fail.

/// With profile `off` every byte passes, so the vulnerable server executes the verb: the
/// suite's bypass detector sees a bypass when there is one.
#[test]
fn lab_detects_a_bypass_under_off() {
    let (mut lab, base) = connected(Profile::Off);
    let text = cat(&[b"NOOP\r\n", &line("EXPN")]);
    lab.send(base, &text[..7]);
    lab.send(base + 7, &text[7..]);
    lab.drain_timers();
    assert_eq!(lab.server_stream(), cat(&[HELO, &text]));
    assert!(lab.smtp.ran("EXPN"), "executed: {:?}", lab.smtp.executed);
    assert!(lab.smtp.ran("HELO") && lab.smtp.ran("NOOP"));
    assert!(lab.bad_emitted.is_empty());
    let client = lab.client_stream();
    assert!(client.starts_with(GREETING), "{}", show(&client));
    assert!(
        client.ends_with(b"250 2.0.0 executed\r\n"),
        "{}",
        show(&client)
    );
}

#[test]
fn lab_receiver_reassembles_fragments_and_counts_conflicts() {
    for v6 in [false, true] {
        let mut lab = Lab::new(Profile::Off, v6);
        let base = lab.connect();
        let good = noop_like("EXPN");
        let bad = line("EXPN");
        let fa = build(lab.flow, &lab.client_seg(base, &good));
        let fb = build(lab.flow, &lab.client_seg(base, &bad));
        let len = 20 + good.len();
        let a = fragment(&fa, &[(0, 16), (16, len)], 7);
        let b = fragment(&fb, &[(16, len)], 7);
        for f in a.iter().chain(&b) {
            assert!(check_checksums(f).is_ok());
        }
        // Overlap: held until the first fragment arrives; first bytes win; conflicts counted.
        lab.inject(Side::Outside, &a[1]);
        lab.inject(Side::Outside, &b[0]);
        lab.inject(Side::Outside, &a[0]);
        lab.settle();
        assert_eq!(lab.server_stream(), cat(&[HELO, &good]), "v6={v6}");
        assert!(lab.server.conflicts > 0, "v6={v6}");
        assert!(lab.smtp.ran("NOOP") && !lab.smtp.ran("EXPN"));
    }
}

#[test]
fn lab_receiver_drops_bad_checksums() {
    let (mut lab, base) = connected(Profile::Off);
    let mut f = build(lab.flow, &lab.client_seg(base, &line("EXPN")));
    corrupt_tcp_checksum(&mut f);
    assert!(check_checksums(&f).is_err());
    lab.inject(Side::Outside, &f);
    let mut g = build(lab.flow, &lab.client_seg(base, &line("EXPN")));
    corrupt_ip_checksum(&mut g);
    assert!(check_checksums(&g).is_err());
    lab.inject(Side::Outside, &g);
    lab.settle();
    assert_eq!(lab.server.bad_checksums, 2);
    assert!(
        lab.bad_emitted.is_empty(),
        "an invalid frame forwarded untouched is not the engine's checksum error"
    );
    assert_eq!(lab.server_stream(), HELO);
}

#[test]
fn lab_receiver_takes_the_urgent_byte_out_of_band_and_first_bytes_win() {
    let (mut lab, off, _) = lab_in_data(Profile::Off);
    let body = cat(&[b"hello\r\nx.\r\n", &line("EXPN")]);
    let mut seg = lab.client_seg(off, &body);
    seg.urg = Some(8);
    lab.push_client(&seg);
    lab.settle();
    assert!(
        lab.smtp.ran("EXPN"),
        "urgent smuggling works against the model"
    );
    assert_eq!(lab.smtp.bodies, vec![b"hello\r\n".to_vec()]);
    // A retransmission with other bytes does not change what was received.
    lab.send(off, &vec![b'Z'; body.len()]);
    assert!(lab.server.conflicts > 0);
    assert!(lab.server_stream().ends_with(&line("EXPN")));
}

#[test]
fn lab_receiver_takes_only_an_exact_rst() {
    let flow = Flow { v6: false };
    let seg = |off: u32, payload: &[u8], rst: bool| {
        build(
            flow,
            &Seg {
                from_client: true,
                seq: CLIENT_ISN.wrapping_add(1).wrapping_add(off),
                ack: Some(1),
                rst,
                window: 1000,
                payload: payload.to_vec(),
                ..Seg::default()
            },
        )
    };
    let mut r = Receiver::default();
    r.on_frame(&build(
        flow,
        &Seg {
            from_client: true,
            seq: CLIENT_ISN,
            syn: true,
            ..Seg::default()
        },
    ));
    r.on_frame(&seg(0, b"NOOP\r\n", false));
    r.on_frame(&seg(7, b"", true));
    assert_eq!((r.ignored_rsts, r.rst), (1, false), "RST one past the edge");
    r.on_frame(&seg(6, b"", true));
    assert!(r.rst, "RST exactly at the edge");
    r.on_frame(&seg(6, b"EXPN root\r\n", false));
    assert_eq!(r.stream(), b"NOOP\r\n", "nothing is accepted after the RST");
}

#[test]
fn lab_server_model_is_lenient_and_vulnerable() {
    let mut s = SmtpServer::default();
    let stream =
        b"HELO x\r\n eXpN a\r\nDATA\r\nVRFY\0b\r\nMAIL\r\nRCPT\r\nDATA\r\nhi\r.\rWIZ\r\nSTARTTLS\r\nDEBUG\r\n";
    s.process(stream);
    assert_eq!(
        s.executed,
        ["HELO", "EXPN", "DATA", "VRFY", "MAIL", "RCPT", "DATA", "WIZ", "STARTTLS", "DEBUG"]
    );
    assert_eq!(s.bodies, vec![b"hi\r".to_vec()]);
    let replies = String::from_utf8_lossy(&s.pending).to_string();
    assert!(replies.contains("503"), "{replies}");
    // Bytes arriving after the 220 to STARTTLS are TLS, not commands.
    let mut more = stream.to_vec();
    more.extend_from_slice(b"EXPN late\r\n");
    s.process(&more);
    assert_eq!(s.executed.len(), 10);
}

#[test]
fn lab_server_model_reads_auth_responses_and_bdat_chunks() {
    let mut s = SmtpServer::default();
    s.process(b"AUTH PLAIN\r\nEXPN x\r\nAUTH FOO\r\nEXPN y\r\nBDAT 8 LAST\r\nVRFY z\r\nWIZ\r\n");
    assert_eq!(s.executed, ["AUTH", "AUTH", "EXPN", "BDAT", "WIZ"]);
    assert_eq!(s.bodies, vec![b"VRFY z\r\n".to_vec()]);
    let replies = String::from_utf8_lossy(&s.pending).to_string();
    assert!(
        replies.contains("334 ") && replies.contains("504 "),
        "{replies}"
    );
}

#[test]
fn lab_expected_transform_follows_design() {
    assert_eq!(cmd(Profile::Pix44, b"EXPN root\r\n"), b"XXXXXXXXX\r\n");
    assert_eq!(cmd(Profile::Pix40, b"EXPN root\r\n"), b"");
    assert_eq!(cmd(Profile::Asa, b"VRFY root\r\n"), b"VRFY root\r\n");
    assert_eq!(cmd(Profile::Strict, b"noop\n"), b"noop\n");
    assert_eq!(cmd(Profile::Strict, b" NOOP\r\n"), b"XXXXX\r\n");
    assert_eq!(cmd(Profile::Pix51, b"NOOP\rEXPN\r\n"), b"XXXXXXXXX\r\n");
    assert_eq!(cmd(Profile::Pix51, b"EXPN root"), b"XXXXXXXXX");
    assert_eq!(
        cmds(Profile::Asa, b"NOOP\nEXPN x\r\nSTARTTLS\r\n"),
        b"NOOP\nXXXXXX\r\nXXXXXXXX\r\n"
    );
    assert_eq!(
        blocked_lines(Profile::Pix40, b"NOOP\r\nWIZ\r\nDEBUG\r\n"),
        2
    );
}
