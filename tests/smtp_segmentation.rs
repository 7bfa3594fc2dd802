//! Property: for random sessions and random chunkings of both directions (down to one byte
//! per chunk), every profile gives exactly the output, events and reset of feeding each unit
//! whole. Units (a run of bytes from one side) keep their order, so the interleaving between
//! directions is the same; only the segmentation inside a unit changes.

use std::sync::Arc;

use mailguard::smtp::{transform, BannerMask, Dir, PolicyConfig, Profile, MAX_HELD};
use proptest::prelude::*;

const CLIENT: &[&[u8]] = &[
    b"EHLO a.example\r\n",
    b"HELO a\r\n",
    b"MAIL FROM:<a|b@x>\r\n",
    b"RCPT TO:<c@x>\r\n",
    b"DATA\r\n",
    b"BDAT 7 LAST\r\n",
    b"STARTTLS\r\n",
    b"AUTH LOGIN\r\n",
    b"dXNlcg==\r\n",
    b"VRFY root\r\n",
    b"EXPN\troot\r\n",
    b"NOOP\rEXPN\r\n",
    b" HELO x\n",
    b"goodmorning\r\n",
    b"X-LINK2STATE LAST\r\n",
    b"Subject: hi\r\n\r\nbody\n",
    b"line\rbare cr\r\n",
    b".\r\n",
    b"\r\n.\r",
    b"\n",
    b"..stuffed\r\n",
    b"QUIT\r\n",
    b"\x16\x03\x01\x00\x05\x80\xff",
];

const SERVER: &[&[u8]] = &[
    b"220 mail20 ESMTP ready\r\n",
    b"220-first 2002\r\n220 second\r\n",
    b"250-mx Hello\r\n250-PIPELINING\r\n250-STARTTLS\r\n250-VRFY\r\n250 X-LINK2STATE\r\n",
    b"250-mx\r\n250 CHUNKING\r\n",
    b"250 ok\r\n",
    b"354 go ahead\r\n",
    b"334 VXNlcm5hbWU6\r\n",
    b"500 unrecognized\r\n",
    b"554 no\r\n",
    b"220 2.0.0 ready\r\n",
    b"junk without code\n",
    b"25",
    b"0 ok\r\n",
];

/// One unit of a session: a side and its bytes (from the vocabularies, random bytes, or a
/// long line).
fn unit() -> impl Strategy<Value = (Dir, Vec<u8>)> {
    prop_oneof![
        6 => prop::sample::select(CLIENT).prop_map(|b| (Dir::ClientToServer, b.to_vec())),
        5 => prop::sample::select(SERVER).prop_map(|b| (Dir::ServerToClient, b.to_vec())),
        1 => prop::collection::vec(any::<u8>(), 0..40).prop_map(|b| (Dir::ClientToServer, b)),
        1 => prop::collection::vec(any::<u8>(), 0..40).prop_map(|b| (Dir::ServerToClient, b)),
        1 => (1usize..1400).prop_map(|n| {
            let mut v = b"NOOP ".to_vec();
            v.resize(n, b'a');
            v.extend_from_slice(b"\r\n");
            (Dir::ClientToServer, v)
        }),
    ]
}

fn config() -> impl Strategy<Value = PolicyConfig> {
    (
        prop::sample::select(&Profile::ALL[..]),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(profile, kb, allow)| PolicyConfig {
            profile,
            banner_mask: if kb {
                BannerMask::Kb
            } else {
                BannerMask::Standard
            },
            allow_verbs: if allow {
                vec!["X-LINK2STATE".into()]
            } else {
                vec![]
            },
        })
}

/// Splits `bytes` at the cut points in `cuts` (each taken modulo the length).
fn split(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    if bytes.is_empty() {
        return vec![];
    }
    let mut points: Vec<usize> = cuts.iter().map(|c| c % bytes.len()).collect();
    points.push(0);
    points.push(bytes.len());
    points.sort_unstable();
    points.dedup();
    points
        .windows(2)
        .map(|w| bytes[w[0]..w[1]].to_vec())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn chunking_does_not_change_the_output(
        cfg in config(),
        units in prop::collection::vec(unit(), 1..30),
        cuts in prop::collection::vec(prop::collection::vec(any::<usize>(), 0..12), 30),
        one_byte in any::<bool>(),
    ) {
        let cfg = Arc::new(cfg);
        let whole: Vec<(Dir, &[u8])> = units.iter().map(|(d, b)| (*d, &b[..])).collect();
        let mut pieces: Vec<(Dir, Vec<u8>)> = Vec::new();
        for (i, (d, b)) in units.iter().enumerate() {
            if one_byte {
                pieces.extend(b.iter().map(|x| (*d, vec![*x])));
            } else {
                let c = cuts.get(i).map(|c| &c[..]).unwrap_or(&[]);
                pieces.extend(split(b, c).into_iter().map(|p| (*d, p)));
            }
        }
        let chunked: Vec<(Dir, &[u8])> = pieces.iter().map(|(d, b)| (*d, &b[..])).collect();
        let a = transform(cfg.clone(), &whole);
        let b = transform(cfg, &chunked);
        prop_assert_eq!(&a.to_server, &b.to_server);
        prop_assert_eq!(&a.to_client, &b.to_client);
        prop_assert_eq!(&a.events, &b.events);
        prop_assert_eq!(a.reset, b.reset);
        prop_assert!(a.max_held <= MAX_HELD && b.max_held <= MAX_HELD);
    }
}

/// `off` is the identity, whatever the input.
#[test]
fn off_is_identity() {
    let script: Vec<(Dir, &[u8])> = CLIENT
        .iter()
        .map(|b| (Dir::ClientToServer, *b))
        .chain(SERVER.iter().map(|b| (Dir::ServerToClient, *b)))
        .collect();
    let t = transform(
        Arc::new(PolicyConfig {
            profile: Profile::Off,
            ..Default::default()
        }),
        &script,
    );
    assert_eq!(t.to_server, CLIENT.concat());
    assert_eq!(t.to_client, SERVER.concat());
    assert!(t.events.is_empty());
}

/// Drives a Session step by step and checks the engine contract after every step: ops
/// consume exactly what was fed minus what is held, held ≤ MAX_HELD, nothing after a reset.
/// Returns the bytes each side receives.
fn drive(cfg: &Arc<PolicyConfig>, steps: &[(Dir, Vec<u8>)]) -> (Vec<u8>, Vec<u8>) {
    use mailguard::smtp::{apply_ops, Op, Output, Session};
    let mut session = Session::new(cfg.clone());
    let mut out = Output::default();
    let mut input = [Vec::new(), Vec::new()];
    let mut ops: [Vec<Op>; 2] = [Vec::new(), Vec::new()];
    let mut reset = false;
    let idx = |d: Dir| usize::from(d == Dir::ServerToClient);
    for (d, b) in steps {
        session.feed(*d, b, &mut out);
        input[idx(*d)].extend_from_slice(b);
        if reset {
            assert!(
                out.to_server.is_empty() && out.to_client.is_empty(),
                "op after reset"
            );
        }
        reset |= out.reset.is_some();
        ops[0].append(&mut out.to_server);
        ops[1].append(&mut out.to_client);
        out.clear();
        if reset {
            continue;
        }
        for d in [Dir::ClientToServer, Dir::ServerToClient] {
            let consumed: usize = ops[idx(d)].iter().map(Op::consumed).sum();
            assert!(session.held(d) <= MAX_HELD);
            assert_eq!(consumed + session.held(d), input[idx(d)].len());
        }
    }
    for d in [Dir::ClientToServer, Dir::ServerToClient] {
        session.finish(d, &mut out);
        ops[0].append(&mut out.to_server);
        ops[1].append(&mut out.to_client);
        out.clear();
    }
    let mut a = Vec::new();
    let mut b = Vec::new();
    apply_ops(&input[0], &ops[0], &mut a);
    apply_ops(&input[1], &ops[1], &mut b);
    (a, b)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    /// Arbitrary bytes (biased towards SMTP-ish ones) in arbitrary steps.
    #[test]
    fn arbitrary_steps_keep_the_contract(
        cfg in config(),
        steps in prop::collection::vec(
            (any::<bool>(), prop::collection::vec(
                prop_oneof![
                    3 => prop::sample::select(&b"\r\n. -:<>|0123456789ADEHILMNOPQRSTVX"[..]),
                    1 => any::<u8>(),
                ],
                0..60,
            )),
            0..40,
        ),
    ) {
        let cfg = Arc::new(cfg);
        let steps: Vec<(Dir, Vec<u8>)> = steps
            .into_iter()
            .map(|(c, b)| (if c { Dir::ClientToServer } else { Dir::ServerToClient }, b))
            .collect();
        let whole = drive(&cfg, &steps);
        let bytes: Vec<(Dir, Vec<u8>)> = steps
            .iter()
            .flat_map(|(d, b)| b.iter().map(move |x| (*d, vec![*x])))
            .collect();
        let split = drive(&cfg, &bytes);
        prop_assert_eq!(whole, split);
    }
}
