//! Every capture of the real corpus through the engine: bit-exact under `off`; under every
//! other profile and under test policies that change lengths, no panic, every emitted frame
//! a valid TCP segment (checksums), and no emitted ACK acknowledging more than the receiving
//! endpoint has sent.

use mailguard::engine::{
    Edit, Engine, EngineConfig, FrameSink, Identity, PolicyFactory, Scripted, Side, Time, Verdict,
};
use mailguard::smtp::{Dir, PolicyConfig, Profile};
use mailguard::wire::{classify, verify_checksums, Classified, TcpFlags};
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const CORPUS: &str = "/work/shared/pcaps/real";
const PORTS: [u16; 4] = [25, 465, 587, 2525];

struct Capture {
    name: String,
    frames: Vec<(Time, Vec<u8>)>,
}

fn corpus() -> Option<Vec<Capture>> {
    let dir = Path::new(CORPUS);
    if !dir.is_dir() {
        eprintln!("SKIP: {CORPUS} not present");
        return None;
    }
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("corpus readable")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pcap"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no captures in {CORPUS}");
    let mut out = Vec::new();
    for p in paths {
        let f = std::fs::File::open(&p).expect("open capture");
        let mut r = pcap_file::pcap::PcapReader::new(f).expect("pcap header");
        let mut frames = Vec::new();
        let nanos = r.header().ts_resolution == pcap_file::TsResolution::NanoSecond;
        // Raw records: some captures have orig_len > snaplen, which the checked reader rejects.
        while let Some(pkt) = r.next_raw_packet() {
            let pkt = pkt.expect("pcap record");
            let sub = u64::from(pkt.ts_frac) * if nanos { 1 } else { 1000 };
            let t = u64::from(pkt.ts_sec) * 1_000_000_000 + sub;
            frames.push((Time(t), pkt.data.into_owned()));
        }
        out.push(Capture {
            name: p.file_name().unwrap().to_string_lossy().into_owned(),
            frames,
        });
    }
    Some(out)
}

/// Which interface a recorded frame arrived on: client-to-server frames from outside.
fn side_of(frame: &[u8]) -> Side {
    match classify(frame) {
        Classified::Tcp(t) if PORTS.contains(&t.seg.src_port) => Side::Inside,
        _ => Side::Outside,
    }
}

fn config(profile: Profile) -> EngineConfig {
    EngineConfig {
        ports: PORTS.to_vec(),
        policy: Arc::new(PolicyConfig {
            profile,
            ..PolicyConfig::default()
        }),
        ..EngineConfig::default()
    }
}

type Flow = (IpAddr, u16, IpAddr, u16);

/// Replays a capture; returns the output frames (as the replay tool would write them).
fn replay<F: PolicyFactory>(engine: &mut Engine<F>, cap: &Capture) -> Vec<(Side, Vec<u8>)> {
    let mut out = Vec::new();
    let mut sink = FrameSink::default();
    // Highest sequence number (end of data, SYN and FIN counted) each endpoint has sent.
    let mut sent_end: HashMap<Flow, u32> = HashMap::new();
    for (now, frame) in &cap.frames {
        while let Some(t) = engine.poll_timeout() {
            if t > *now {
                break;
            }
            sink.clear();
            engine.handle_timeout(t, &mut sink);
            check_emitted(&cap.name, &sink, &sent_end);
            out.extend(sink.iter().map(|(s, f)| (s, f.to_vec())));
        }
        if let Classified::Tcp(t) = classify(frame) {
            let len = t.payload_len() as u32
                + u32::from(t.seg.flags.has(TcpFlags::SYN))
                + u32::from(t.seg.flags.has(TcpFlags::FIN));
            let end = t.seg.seq.wrapping_add(len);
            let e = sent_end
                .entry((t.src, t.seg.src_port, t.dst, t.seg.dst_port))
                .or_insert(end);
            if (end.wrapping_sub(*e) as i32) > 0 {
                *e = end;
            }
        }
        let side = side_of(frame);
        sink.clear();
        let v = engine.handle_frame(*now, side, frame, &mut sink);
        if let Verdict::Forward(_) = v {
            out.push((side.other(), frame.clone()));
        }
        check_emitted(&cap.name, &sink, &sent_end);
        out.extend(sink.iter().map(|(s, f)| (s, f.to_vec())));
    }
    out
}

fn check_emitted(name: &str, sink: &FrameSink, sent_end: &HashMap<Flow, u32>) {
    for (_, f) in sink.iter() {
        let Classified::Tcp(t) = classify(f) else {
            panic!("{name}: emitted a frame that is not TCP: {f:02x?}");
        };
        assert!(
            verify_checksums(f, &t),
            "{name}: bad checksum on emitted frame"
        );
        if t.seg.flags.has(TcpFlags::ACK) {
            // The receiver of this frame is its destination: it must have sent what is acked.
            if let Some(&end) = sent_end.get(&(t.dst, t.seg.dst_port, t.src, t.seg.src_port)) {
                let over = t.seg.ack.wrapping_sub(end) as i32;
                assert!(
                    over <= 0,
                    "{name}: emitted ACK {} beyond what the peer sent ({end})",
                    t.seg.ack
                );
            }
        }
    }
}

#[test]
fn off_is_bit_exact() {
    let Some(caps) = corpus() else { return };
    for cap in &caps {
        let mut e = Engine::new(config(Profile::Off));
        let out = replay(&mut e, cap);
        assert_eq!(out.len(), cap.frames.len(), "{}: frame count", cap.name);
        for (i, ((_, got), (_, want))) in out.iter().zip(&cap.frames).enumerate() {
            assert_eq!(got, want, "{}: frame {} differs", cap.name, i + 1);
        }
        assert_eq!(e.stats().frames_in as usize, cap.frames.len());
        assert_eq!(e.stats().forwarded_total() as usize, cap.frames.len());
    }
}

#[test]
fn every_profile_keeps_tcp_valid() {
    let Some(caps) = corpus() else { return };
    for profile in Profile::ALL.into_iter().filter(|p| *p != Profile::Off) {
        for cap in &caps {
            let mut e = Engine::new(config(profile));
            let out = replay(&mut e, cap);
            let s = e.stats();
            // Every frame out is a forwarded input, a replacement of a rewritten input, or
            // one the engine sent of its own accord.
            assert_eq!(
                s.forwarded_total() + s.replacements + s.originated,
                out.len() as u64,
                "{}: frames out",
                cap.name
            );
            // Every frame gets exactly one verdict (some captures have bad checksums
            // throughout, e.g. anonymised ones: those frames are dropped, and counted).
            assert_eq!(
                s.forwarded_total() + s.rewritten + s.dropped_total(),
                s.frames_in,
                "{}",
                cap.name
            );
        }
    }
}

#[test]
fn identity_policy_mostly_forwards_unchanged() {
    let Some(caps) = corpus() else { return };
    let (mut total, mut forwarded) = (0u64, 0u64);
    for cap in &caps {
        let mut e = Engine::with_policy(config(Profile::Strict), Identity);
        replay(&mut e, cap);
        total += e.stats().frames_in;
        forwarded += e.stats().forwarded_total();
    }
    // Identity changes nothing: the engine passes the vast majority of frames as they are.
    assert!(
        forwarded * 10 >= total * 9,
        "forwarded {forwarded} of {total}"
    );
}

#[test]
fn length_changing_policies_keep_tcp_valid() {
    let Some(caps) = corpus() else { return };
    let scripts = [
        vec![(Dir::ClientToServer, 0, Edit::Delete(4))],
        vec![(
            Dir::ServerToClient,
            0,
            Edit::Insert(b"220-injected\r\n".to_vec()),
        )],
        vec![
            (Dir::ClientToServer, 2, Edit::Delete(3)),
            (
                Dir::ClientToServer,
                10,
                Edit::InsertOther(b"250 OK\r\n".to_vec()),
            ),
            (Dir::ServerToClient, 100, Edit::Delete(50)),
            (Dir::ClientToServer, 3000, Edit::Insert(vec![b'x'; 3000])),
        ],
        vec![(Dir::ClientToServer, 20, Edit::Reset)],
    ];
    for script in scripts {
        for cap in &caps {
            let mut e = Engine::with_policy(config(Profile::Strict), Scripted::new(script.clone()));
            replay(&mut e, cap);
        }
    }
}

#[test]
fn replay_is_deterministic() {
    let Some(caps) = corpus() else { return };
    let script = vec![
        (Dir::ClientToServer, 2, Edit::Delete(3)),
        (
            Dir::ClientToServer,
            10,
            Edit::InsertOther(b"250 OK\r\n".to_vec()),
        ),
    ];
    for cap in &caps {
        let run = || {
            let mut e = Engine::with_policy(config(Profile::Strict), Scripted::new(script.clone()));
            replay(&mut e, cap)
        };
        assert_eq!(run(), run(), "{}: two runs differ", cap.name);
    }
}
