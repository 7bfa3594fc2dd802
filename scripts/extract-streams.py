#!/usr/bin/env python3
"""Extract the client and server byte streams of every SMTP connection in the real captures
into small text fixtures for tests/smtp_fixtures.rs.

Usage: scripts/extract-streams.py [PCAP_DIR] [OUT_DIR]
       (defaults: ../shared/pcaps/real relative to the repo's parent, tests/fixtures/streams)

Uses `tshark -q -z follow,tcp,raw,N` (in-order reassembly, one line per segment run, the
server's lines indented by a tab). The server is the node on port 25/465/587/2525.

Fixture format, one chunk per line, in capture order (direction interleaving kept):
    # comment lines (source, stream, endpoints, truncation)
    C <hex>      bytes the client sent
    S <hex>      bytes the server sent
To keep fixtures small, a run of consecutive same-direction chunks longer than RUN_MAX bytes
keeps only its first and last RUN_KEEP bytes (a run is one direction, so interleaving is
unchanged; the cut lands inside a message body or a TLS stream in practice).
"""
import os
import subprocess
import sys

PORTS = {25, 465, 587, 2525}
RUN_MAX = 8192
RUN_KEEP = 2048


def tshark(*args):
    return subprocess.run(["tshark", *args], capture_output=True, text=True, check=False).stdout


def smtp_streams(pcap):
    out = tshark("-r", pcap, "-Y", "tcp.port in {25,465,587,2525}",
                 "-T", "fields", "-e", "tcp.stream")
    seen = []
    for line in out.split():
        n = int(line)
        if n not in seen:
            seen.append(n)
    return seen


def follow(pcap, n):
    """Returns (node0, node1, [(node, bytes)]) for TCP stream n."""
    out = tshark("-r", pcap, "-q", "-z", f"follow,tcp,raw,{n}")
    nodes = {}
    chunks = []
    for line in out.splitlines():
        if line.startswith("Node 0:"):
            nodes[0] = line.split(": ", 1)[1]
        elif line.startswith("Node 1:"):
            nodes[1] = line.split(": ", 1)[1]
        elif line.startswith("\t") and nodes:
            chunks.append((1, bytes.fromhex(line.strip())))
        elif line and all(c in "0123456789abcdef" for c in line) and nodes:
            chunks.append((0, bytes.fromhex(line)))
    return nodes.get(0, "?"), nodes.get(1, "?"), chunks


def port(endpoint):
    try:
        return int(endpoint.rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return -1


def merge_runs(chunks):
    """Groups consecutive chunks of one direction into runs (keeping chunk boundaries)."""
    runs = []
    for d, b in chunks:
        if runs and runs[-1][0] == d:
            runs[-1][1].append(b)
        else:
            runs.append((d, [b]))
    return runs


def truncate(run):
    total = sum(len(b) for b in run)
    if total <= RUN_MAX:
        return run, 0
    data = b"".join(run)
    head, tail = data[:RUN_KEEP], data[-RUN_KEEP:]
    return [head, tail], total - 2 * RUN_KEEP


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(here)
    src = sys.argv[1] if len(sys.argv) > 1 else "/work/shared/pcaps/real"
    dst = sys.argv[2] if len(sys.argv) > 2 else os.path.join(repo, "tests/fixtures/streams")
    os.makedirs(dst, exist_ok=True)
    for name in sorted(os.listdir(src)):
        if not name.endswith(".pcap"):
            continue
        pcap = os.path.join(src, name)
        for n in smtp_streams(pcap):
            node0, node1, chunks = follow(pcap, n)
            if not chunks:
                continue
            server = 1 if port(node1) in PORTS else 0
            lines = [f"# source: {name} tcp.stream {n}",
                     f"# client: {node1 if server == 0 else node0}",
                     f"# server: {node0 if server == 0 else node1}"]
            cut = 0
            for d, run in merge_runs(chunks):
                run, removed = truncate(run)
                cut += removed
                tag = "S" if d == server else "C"
                lines.extend(f"{tag} {b.hex()}" for b in run if b)
            if cut:
                lines.insert(3, f"# truncated: {cut} bytes removed from the middle of long runs")
            out = os.path.join(dst, f"{name[:-5]}__s{n}.stream")
            with open(out, "w") as f:
                f.write("\n".join(lines) + "\n")
            print(out)


if __name__ == "__main__":
    main()
