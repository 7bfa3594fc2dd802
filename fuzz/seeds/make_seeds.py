#!/usr/bin/env python3
"""Writes the corpus seeds of the fuzz targets (fuzz/seeds/<target>/), one realistic input
per file, in the encodings of fuzz/src/harness.rs. Re-run after changing an encoding."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def tcp(src, dst, sport, dport, seq, ack, flags, payload, v6=False):
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0)
    seg = hdr + payload
    if v6:
        pseudo = src + dst + struct.pack("!IxxxB", len(seg), 6)
    else:
        pseudo = src + dst + struct.pack("!xBH", 6, len(seg))
    c = csum(pseudo + seg)
    seg = seg[:16] + struct.pack("!H", c) + seg[18:]
    eth = b"\x02\0\0\0\0\x02" + b"\x02\0\0\0\0\x01"
    if v6:
        ip = struct.pack("!IHBB", 6 << 28, len(seg), 6, 64) + src + dst
        return eth + b"\x86\xdd" + ip + seg
    ip = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(seg), 1, 0x4000, 64, 6, 0) + src + dst
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    return eth + b"\x08\x00" + ip + seg


C4, S4 = bytes([198, 18, 0, 1]), bytes([198, 18, 0, 2])
C6 = bytes([0x20, 0x01, 0, 2] + [0] * 11 + [1])
S6 = bytes([0x20, 0x01, 0, 2] + [0] * 11 + [2])


def write(target, name, data):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# frame: selector byte (profile = byte % 6, bit 6: side, bit 7: fail-closed) + one frame.
write("frame", "syn-v4", bytes([2]) + tcp(C4, S4, 40000, 25, 1000, 0, 0x02, b""))
write("frame", "data-v4", bytes([5]) + tcp(C4, S4, 40000, 25, 1001, 77, 0x18, b"EXPN root\r\n"))
write("frame", "data-v6", bytes([3 | 0x80]) + tcp(C6, S6, 40000, 25, 1001, 77, 0x18, b"VRFY x\r\n", v6=True))
write("frame", "reply-v4", bytes([4 | 0x40]) + tcp(S4, C4, 25, 40000, 77, 1001, 0x18, b"220 mx ESMTP\r\n"))
write("frame", "arp", bytes([1]) + b"\xff" * 6 + b"\x02\0\0\0\0\x01" + b"\x08\x06" + bytes(28))

# policy: steps of (header, chunk); header = ((len - 1) << 1) | dir, dir 0 = client.
def steps(*items):
    out = b""
    for d, chunk in items:
        while chunk:
            part, chunk = chunk[:120], chunk[120:]
            out += bytes([((len(part) - 1) << 1) | d]) + part
    return out


S, C = 1, 0
write("policy", "session", steps(
    (S, b"220 mx.example.org ESMTP Postfix\r\n"),
    (C, b"EHLO client.example\r\n"),
    (S, b"250-mx.example.org\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-VRFY\r\n250-STARTTLS\r\n250 8BITMIME\r\n"),
    (C, b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"),
    (S, b"250 ok\r\n250 ok\r\n354 go ahead\r\n"),
    (C, b"Subject: x\r\n\r\nbody\n.\r\nEXPN root\r\n"),
    (S, b"250 queued\r\n500 no\r\n"),
    (C, b"QUIT\r\n"),
    (S, b"221 bye\r\n"),
))
write("policy", "starttls", steps(
    (S, b"220 mx ready\r\n"),
    (C, b"EHLO x\r\n"),
    (S, b"250-mx\r\n250 STARTTLS\r\n"),
    (C, b"STARTTLS\r\nEXPN root\r\n"),
    (S, b"220 go ahead\r\n"),
    (C, b"\x16\x03\x01\x00\x05hello"),
) + bytes([0xfe]))
write("policy", "data-503", steps(
    (S, b"220 mx ready\r\n"),
    (C, b"HELO x\r\nDATA\r\nWIZ\r\n"),
    (S, b"250 ok\r\n503 need RCPT\r\n"),
    (C, b" DEBUG\r\nnOoP\r\nVRFY\0x\r\n" + b"NOOP " + b"a" * 600 + b"\r\n"),
))

# engine: byte 0 = profile (% 6, bit 7: IPv6); steps: op byte (% 9) then its fields.
def cseg(payload, delta=0, flags=0, extra=b""):
    return bytes([0]) + struct.pack("!h", delta) + bytes([len(payload), flags]) + payload + extra


SETTLE = bytes([3])
write("engine", "pipelined", bytes([2]) + cseg(b"NOOP\r\nEXPN root\r\n") + SETTLE
      + cseg(b"RSET\r\n") + SETTLE)
write("engine", "split-and-retransmit", bytes([5]) + cseg(b"EX") + cseg(b"PN root\r\n") + SETTLE
      + cseg(b"NOOP root\r\n", delta=-11) + SETTLE)
write("engine", "fragments-v6", bytes([4 | 0x80]) + bytes([4]) + struct.pack("!h", 0)
      + bytes([11, 0]) + b"VRFY root\r\n" + bytes([2, 1]) + struct.pack("!H", 7) + bytes([1]) + SETTLE)
write("engine", "fin-and-timers", bytes([1]) + cseg(b"EXPN root", flags=1) + SETTLE + bytes([6, 30]))
