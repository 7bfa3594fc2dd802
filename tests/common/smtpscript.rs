//! Scripted SMTP endpoints for the simulated network: a client that sends command groups and
//! counts replies, and a server that answers each received line like a small MTA.
//!
//! Both record every byte they receive, and both append what they *write* to a shared
//! [`Dialogue`] at the moment they write it. That log is a causal interleaving of the two
//! streams (a reply is always written after the command it answers), which is what
//! `transform` needs to compute the expected streams whatever the policy did.
//!
//! The endpoints talk through a [`Pipe`]: a smoltcp socket in the simulated network, or
//! [`PolicyPipe`] (the policy alone, no TCP) to check the scripts and expectations against
//! the policy itself.
#![allow(dead_code)]

use mailguard::smtp::{Dir, Op, Output, PolicyConfig, Session};
use smoltcp::socket::tcp;

/// Everything both endpoints wrote, in the order they wrote it.
pub type Dialogue = Vec<(Dir, Vec<u8>)>;

/// The server's greeting.
pub const GREETING: &[u8] = b"220 mx.simnet.example ESMTP simnet ready for mail\r\n";

/// The server's reply to EHLO: several extensions, some of which filters must hide.
pub const EHLO_REPLY: &[u8] = b"250-mx.simnet.example greets you\r\n\
250-PIPELINING\r\n\
250-SIZE 10240000\r\n\
250-VRFY\r\n\
250-ETRN\r\n\
250-STARTTLS\r\n\
250-X-LINK2STATE\r\n\
250-8BITMIME\r\n\
250 ENHANCEDSTATUSCODES\r\n";

/// One step of the client: bytes to write, then how many replies to wait for.
#[derive(Clone, Debug)]
pub struct Group {
    /// Command lines, written at once (pipelined when several).
    pub bytes: Vec<u8>,
    /// Replies this group gets.
    pub replies: usize,
    /// Sent if the group's last reply is `354`, followed by one more reply.
    pub body: Option<Vec<u8>>,
}

/// Client script variants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// One command, one reply.
    LockStep,
    /// The envelope and DATA in one write (RFC 2920), NOOP+QUIT in another.
    Pipelined,
    /// Lock-step, each command typed one byte at a time (telnet in character mode); the
    /// body is written at once.
    Typed,
}

fn group(lines: &[&str], body: Option<Vec<u8>>) -> Group {
    Group {
        bytes: lines.concat().into_bytes(),
        replies: lines.len(),
        body,
    }
}

/// A message body of about `size` bytes (with headers, a dot-stuffed line, lines that look
/// like commands and a line over 200 bytes), terminated by `.` CRLF.
pub fn body(size: usize, salt: u64) -> Vec<u8> {
    let mut b = Vec::with_capacity(size + 200);
    b.extend_from_slice(b"From: <alice@outside.example>\r\nTo: <bob@inside.example>\r\n");
    b.extend_from_slice(format!("Subject: simnet {salt}\r\n\r\n").as_bytes());
    b.extend_from_slice(b"VRFY root is just text inside a body\r\n");
    b.extend_from_slice(b"..a dot-stuffed line\r\n");
    let mut line = 0u64;
    while b.len() < size {
        line += 1;
        let width = 20 + ((line * 37 + salt) % 230) as usize;
        let fill = b'a' + ((line + salt) % 26) as u8;
        b.extend_from_slice(format!("{line:05} ").as_bytes());
        b.extend(std::iter::repeat_n(fill, width));
        b.extend_from_slice(b"\r\n");
    }
    b.extend_from_slice(b"EXPN staff also just text\r\n.\r\n");
    b
}

/// The client's script: a blocked command (`VRFY root` or `EXPN staff`) in the middle.
pub fn client_script(variant: Variant, body_size: usize, salt: u64) -> Vec<Group> {
    let body = Some(body(body_size, salt));
    match variant {
        Variant::LockStep | Variant::Typed => vec![
            group(&["EHLO client.outside.example\r\n"], None),
            group(&["MAIL FROM:<alice@outside.example>\r\n"], None),
            group(&["RCPT TO:<bob@inside.example>\r\n"], None),
            group(&["VRFY root\r\n"], None),
            group(&["RCPT TO:<carol@inside.example>\r\n"], None),
            group(&["NOOP\r\n"], None),
            group(&["DATA\r\n"], body),
            group(&["QUIT\r\n"], None),
        ],
        Variant::Pipelined => vec![
            group(&["EHLO client.outside.example\r\n"], None),
            group(
                &[
                    "MAIL FROM:<alice@outside.example>\r\n",
                    "RCPT TO:<bob@inside.example>\r\n",
                    "EXPN staff\r\n",
                    "RCPT TO:<carol@inside.example>\r\n",
                    "DATA\r\n",
                ],
                body,
            ),
            group(&["NOOP\r\n", "QUIT\r\n"], None),
        ],
    }
}

/// Complete replies found in `buf` (multi-line `ddd-` replies count once), as their codes.
pub fn reply_codes(buf: &[u8]) -> Vec<u16> {
    let mut codes = Vec::new();
    for line in buf.split_inclusive(|&b| b == b'\n') {
        if line.last() != Some(&b'\n') {
            break;
        }
        let continued = line.get(3) == Some(&b'-');
        if !continued {
            let code = line
                .get(..3)
                .and_then(|c| std::str::from_utf8(c).ok())
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            codes.push(code);
        }
    }
    codes
}

/// The byte-stream end an SMTP endpoint talks through: a smoltcp socket, or
/// [`PolicyPipe`]'s ends when only the policy sits between the endpoints.
pub trait Pipe {
    /// Appends everything readable to `into`.
    fn recv_all(&mut self, into: &mut Vec<u8>);
    /// Writes a prefix of `data`; returns how many bytes were taken.
    fn send(&mut self, data: &[u8]) -> usize;
    /// True when the connection is up and this end may still write.
    fn may_send(&self) -> bool;
    /// Closes the sending half.
    fn close(&mut self);
}

impl Pipe for tcp::Socket<'_> {
    fn recv_all(&mut self, into: &mut Vec<u8>) {
        let mut buf = [0u8; 2048];
        while self.can_recv() {
            match self.recv_slice(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => into.extend_from_slice(&buf[..n]),
            }
        }
    }

    fn send(&mut self, data: &[u8]) -> usize {
        self.send_slice(data).unwrap_or(0)
    }

    fn may_send(&self) -> bool {
        tcp::Socket::may_send(self)
    }

    /// Keep-alive is switched off first: in smoltcp 0.12 a keep-alive sent after the FIN
    /// carries a garbage octet at the FIN's sequence number, which the peer takes as data.
    fn close(&mut self) {
        self.set_keep_alive(None);
        tcp::Socket::close(self);
    }
}

/// Writes as much of `pending` as the pipe takes.
fn flush(pipe: &mut dyn Pipe, pending: &mut Vec<u8>) {
    if pending.is_empty() || !pipe.may_send() {
        return;
    }
    let n = pipe.send(pending);
    pending.drain(..n.min(pending.len()));
}

/// The scripted client.
#[derive(Debug)]
pub struct Client {
    groups: Vec<Group>,
    next_group: usize,
    /// Replies that must have arrived before the next group is written.
    replies_needed: usize,
    pending: Vec<u8>,
    pending_body: Option<Vec<u8>>,
    /// Commands are typed one byte per step.
    typing: bool,
    /// Bytes at the front of `pending` still to be typed.
    to_type: usize,
    /// Every byte received.
    pub received: Vec<u8>,
    /// Set once the reply to the last group arrived and the socket was closed.
    pub closed: bool,
}

impl Client {
    /// A client that will play `groups` after the greeting.
    pub fn new(groups: Vec<Group>) -> Client {
        Client {
            groups,
            next_group: 0,
            replies_needed: 1,
            pending: Vec::new(),
            pending_body: None,
            typing: false,
            to_type: 0,
            received: Vec::new(),
            closed: false,
        }
    }

    /// The same client, typing its commands one byte per [`Client::step`].
    pub fn typing(mut self, on: bool) -> Client {
        self.typing = on;
        self
    }

    /// True while a command is being typed: the caller should step again soon.
    pub fn is_typing(&self) -> bool {
        self.to_type > 0
    }

    /// Reply codes received so far.
    pub fn codes(&self) -> Vec<u16> {
        reply_codes(&self.received)
    }

    /// One step: read, write what the script allows, close when done.
    pub fn step(&mut self, sock: &mut dyn Pipe, log: &mut Dialogue) {
        sock.recv_all(&mut self.received);
        loop {
            let codes = self.codes();
            if codes.len() < self.replies_needed || self.closed {
                break;
            }
            if let Some(body) = self.pending_body.take() {
                if codes.last() == Some(&354) {
                    self.write(&body, log);
                    self.replies_needed += 1;
                    continue;
                }
            }
            match self.groups.get(self.next_group).cloned() {
                Some(g) => {
                    self.next_group += 1;
                    self.write(&g.bytes, log);
                    if self.typing {
                        self.to_type += g.bytes.len();
                    }
                    self.replies_needed += g.replies;
                    self.pending_body = g.body;
                }
                None => {
                    self.closed = true;
                    sock.close();
                }
            }
        }
        if self.to_type > 0 {
            if sock.may_send() {
                let n = sock.send(self.pending.get(..1).unwrap_or_default());
                self.pending.drain(..n.min(self.pending.len()));
                self.to_type = self.to_type.saturating_sub(n);
            }
        } else {
            flush(sock, &mut self.pending);
        }
    }

    fn write(&mut self, bytes: &[u8], log: &mut Dialogue) {
        log.push((Dir::ClientToServer, bytes.to_vec()));
        self.pending.extend_from_slice(bytes);
    }

    /// True when every byte the client wrote was handed to TCP.
    pub fn all_written(&self) -> bool {
        self.pending.is_empty()
    }
}

/// The scripted server.
#[derive(Debug, Default)]
pub struct Server {
    greeted: bool,
    in_data: bool,
    cursor: usize,
    pending: Vec<u8>,
    /// Every byte received.
    pub received: Vec<u8>,
    /// Set once QUIT was received: answer it, then close when everything is written.
    quit: bool,
    /// Set once QUIT was answered and the socket closed.
    pub closed: bool,
    /// Command verbs received (upper case), in order.
    pub verbs: Vec<String>,
}

impl Server {
    /// A server that has not greeted yet.
    pub fn new() -> Server {
        Server::default()
    }

    /// One step: greet once connected, answer every complete line, close after QUIT.
    pub fn step(&mut self, sock: &mut dyn Pipe, log: &mut Dialogue) {
        if !self.greeted && sock.may_send() {
            self.greeted = true;
            self.write(GREETING, log);
        }
        sock.recv_all(&mut self.received);
        while !self.quit {
            let rest = self.received.get(self.cursor..).unwrap_or_default();
            let Some(end) = rest.iter().position(|&b| b == b'\n') else {
                break;
            };
            let line = rest[..=end].to_vec();
            self.cursor += end + 1;
            self.answer(&line, log);
        }
        flush(sock, &mut self.pending);
        if self.quit && self.pending.is_empty() && !self.closed {
            self.closed = true;
            sock.close();
        }
    }

    fn answer(&mut self, line: &[u8], log: &mut Dialogue) {
        if self.in_data {
            if line == b".\r\n" || line == b".\n" {
                self.in_data = false;
                self.write(b"250 2.0.0 Ok: queued as SIMNET\r\n", log);
            }
            return;
        }
        let verb_end = line
            .iter()
            .position(|&b| b == b' ' || b == b'\r' || b == b'\n')
            .unwrap_or(line.len());
        let verb = String::from_utf8_lossy(&line[..verb_end]).to_ascii_uppercase();
        self.verbs.push(verb.clone());
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => EHLO_REPLY,
            "HELO" => b"250 mx.simnet.example\r\n",
            "MAIL" | "RCPT" | "NOOP" | "RSET" => b"250 2.1.0 Ok\r\n",
            "VRFY" => b"252 2.0.0 Cannot VRFY user\r\n",
            "DATA" => {
                self.in_data = true;
                b"354 End data with <CR><LF>.<CR><LF>\r\n"
            }
            "QUIT" => {
                self.quit = true;
                b"221 2.0.0 Bye\r\n"
            }
            _ => b"500 5.5.2 Error: command not recognized\r\n",
        };
        self.write(reply, log);
    }

    fn write(&mut self, bytes: &[u8], log: &mut Dialogue) {
        log.push((Dir::ServerToClient, bytes.to_vec()));
        self.pending.extend_from_slice(bytes);
    }

    /// True when every byte the server wrote was handed to TCP.
    pub fn all_written(&self) -> bool {
        self.pending.is_empty()
    }
}

/// Client and server connected through a policy [`Session`] and nothing else: bytes written
/// at one end are fed to the policy at once, and the other end reads what the ops emit.
pub struct PolicyPipe {
    session: Session,
    out: Output,
    /// Per direction (client→server, server→client): input fed but not yet consumed by ops.
    held: [Vec<u8>; 2],
    /// Per direction: bytes emitted, not yet read by the receiver.
    readable: [Vec<u8>; 2],
    /// Per direction: the sender closed.
    closed: [bool; 2],
    /// The policy reset the connection.
    pub reset: bool,
}

fn dir_index(dir: Dir) -> usize {
    match dir {
        Dir::ClientToServer => 0,
        Dir::ServerToClient => 1,
    }
}

impl PolicyPipe {
    /// A fresh connection under `config`.
    pub fn new(config: std::sync::Arc<PolicyConfig>) -> PolicyPipe {
        PolicyPipe {
            session: Session::new(config),
            out: Output::default(),
            held: [Vec::new(), Vec::new()],
            readable: [Vec::new(), Vec::new()],
            closed: [false; 2],
            reset: false,
        }
    }

    /// The end of the pipe used by the sender of `dir`.
    pub fn end(&mut self, dir: Dir) -> PipeEnd<'_> {
        PipeEnd { pipe: self, dir }
    }

    /// True once the sender of `dir` closed.
    pub fn is_closed(&self, dir: Dir) -> bool {
        self.closed[dir_index(dir)]
    }

    fn write(&mut self, dir: Dir, data: &[u8]) {
        if self.reset {
            return;
        }
        self.held[dir_index(dir)].extend_from_slice(data);
        self.session.feed(dir, data, &mut self.out);
        self.apply();
    }

    fn finish(&mut self, dir: Dir) {
        self.closed[dir_index(dir)] = true;
        if !self.reset {
            self.session.finish(dir, &mut self.out);
            self.apply();
        }
    }

    /// Applies the ops produced so far to the held input of each direction.
    fn apply(&mut self) {
        for dir in [Dir::ClientToServer, Dir::ServerToClient] {
            let i = dir_index(dir);
            let ops = std::mem::take(self.out.ops_mut(dir));
            let mut consumed = 0usize;
            let mut emitted = Vec::new();
            for op in &ops {
                let take = op.consumed().min(self.held[i].len() - consumed);
                let input = &self.held[i][consumed..consumed + take];
                match op {
                    Op::Copy(_) => emitted.extend_from_slice(input),
                    Op::Delete(_) => {}
                    Op::Replace(b) | Op::Insert(b) => emitted.extend_from_slice(b),
                }
                consumed += take;
            }
            self.held[i].drain(..consumed);
            self.readable[i].extend_from_slice(&emitted);
        }
        self.reset |= self.out.reset.is_some();
        self.out.clear();
    }
}

/// One end of a [`PolicyPipe`].
pub struct PipeEnd<'a> {
    pipe: &'a mut PolicyPipe,
    dir: Dir,
}

impl Pipe for PipeEnd<'_> {
    fn recv_all(&mut self, into: &mut Vec<u8>) {
        into.append(&mut self.pipe.readable[dir_index(self.dir.reverse())]);
    }

    fn send(&mut self, data: &[u8]) -> usize {
        self.pipe.write(self.dir, data);
        data.len()
    }

    fn may_send(&self) -> bool {
        !self.pipe.is_closed(self.dir) && !self.pipe.reset
    }

    fn close(&mut self) {
        self.pipe.finish(self.dir);
    }
}
