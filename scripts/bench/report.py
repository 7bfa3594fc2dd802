#!/usr/bin/env python3
"""Writes BENCHMARKS.md and benches/throughput.png from a scripts/bench.sh run.

Inputs: the results file (key TAB value TAB note, one per line), the machine description,
criterion's output directory (engine alone), the scratch directory (replay summaries, bridge
log) and scripts/bench/notes.md (the hand-written profile analysis, included verbatim).
Missing parts are reported as not measured, never invented.
"""

import argparse
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def load_results(path):
    res = {}
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 2:
                res[parts[0]] = parts[1]
    return res


def num(res, key):
    try:
        return float(res[key])
    except (KeyError, ValueError):
        return None


def fmt(x, digits=2, unit=""):
    if x is None:
        return "n/a"
    return f"{x:.{digits}f}{unit}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def criterion_results(root):
    """{(mix, profile): median ns per iteration} from criterion's output under `root`."""
    found = []
    if not os.path.isdir(root):
        return {}
    for group in sorted(os.listdir(root)):
        if not group.startswith("engine_"):
            continue
        gdir = os.path.join(root, group)
        for bench in sorted(os.listdir(gdir)):
            new = os.path.join(gdir, bench, "new")
            try:
                meta = json.load(open(os.path.join(new, "benchmark.json")))
                est = json.load(open(os.path.join(new, "estimates.json")))
            except (OSError, ValueError):
                continue
            mix = meta["group_id"].split("/", 1)[-1]
            profile, _, unit = meta["function_id"].partition("/")
            found.append((unit, mix, profile, est["median"]["point_estimate"]))
    # An older layout timed each pair twice ("strict/bytes", "strict/frames"); its byte
    # timing is used only where the current layout ("strict") has none.
    out = {}
    for unit in ("bytes", ""):
        for u, mix, profile, ns in found:
            if u == unit:
                out[(mix, profile)] = ns
    return out


def criterion_mixes(root):
    """{mix: (frames, bytes)} as `benches/engine.rs` wrote them (engine-mixes.tsv)."""
    out = {}
    try:
        with open(os.path.join(root, "engine-mixes.tsv")) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                    out[parts[0]] = (int(parts[1]), int(parts[2]))
    except OSError:
        pass
    return out


def latency_fields(s):
    if not s or s == "failed":
        return {}
    return {k: float(v) for k, v in re.findall(r"(\w+)=([0-9.]+)", s)}


class Report:
    def __init__(self, args):
        self.args = args
        self.res = load_results(args.results)
        self.lines = []
        self.targets = []
        # Panel key -> {group: {peer: Gbit/s}}; one live panel per lab.
        self.plot = {"replay": {}, "engine": {}}

    def w(self, s=""):
        self.lines.append(s)

    # ---------------------------------------------------------------- header
    def header(self):
        r = self.res
        self.w("# mailguard benchmarks")
        self.w()
        self.w("Written by `scripts/bench.sh` (do not edit by hand: edit `scripts/bench/notes.md` "
               "or the script, and rerun). Every ratio compares tools measured in the same run "
               "on the same input; absolute numbers depend on the machine.")
        self.w()
        self.w(f"Command: `{r.get('cmd.bench_sh', 'scripts/bench.sh').strip()}`")
        self.w()
        self.w("## Machine")
        self.w()
        self.w("```")
        try:
            self.w(open(self.args.machine).read().rstrip())
        except OSError:
            self.w("(not recorded)")
        self.w("```")
        self.w()

    # ---------------------------------------------------------------- replay
    def replay(self):
        r = self.res
        self.w("## Replay: `mailguard replay` vs `tcpdump -r IN -w OUT` vs `cat IN > /dev/null`")
        self.w()
        if "replay.bulk.file_bytes" not in r:
            self.w("Not measured in this run.")
            self.w()
            return
        self.w("Captures made by `mailguard gen` (run from the scratch directory):")
        self.w()
        self.w(f"- bulk: `{r.get('cmd.gen_bulk', '?')}`")
        self.w(f"- commands: `{r.get('cmd.gen_cmds', '?')}`")
        self.w()
        self.w("Each command run by `hyperfine -N` (one warm-up run for the fast ones), input in "
               "the page cache, output to the scratch directory; the figure is the median wall "
               "time. `cat` and `tcpdump` are single-threaded; `mailguard replay` hands its "
               "output writes to a second thread, so its wall time can be below its CPU time: "
               "the CPU s column (user + system, all threads) is the per-core comparison, and "
               "the targets table gives both. Commands: "
               "`cat IN > /dev/null`; `tcpdump -r IN -w OUT`; "
               "`mailguard replay IN -o OUT --profile P`.")
        self.w()
        for cap in ("bulk", "commands"):
            size = num(r, f"replay.{cap}.file_bytes")
            frames = num(r, f"replay.{cap}.frames")
            if size is None:
                continue
            self.w(f"### {cap} capture: {size / 1e6:.0f} MB, "
                   f"{int(frames) if frames else '?'} frames")
            self.w()
            self.w("| tool | median s | MB/s | Gbit/s | kframes/s | CPU s (user+sys) | "
                   "vs tcpdump | vs cat |")
            self.w("|---|---:|---:|---:|---:|---:|---:|---:|")
            t_tcp = num(r, f"replay.{cap}.tcpdump.median_s")
            t_cat = num(r, f"replay.{cap}.cat.median_s")
            for tool in ("cat", "tcpdump", "off", "pix51", "strict"):
                t = num(r, f"replay.{cap}.{tool}.median_s")
                if t is None:
                    continue
                cpu = (num(r, f"replay.{cap}.{tool}.user_s") or 0) + \
                      (num(r, f"replay.{cap}.{tool}.sys_s") or 0)
                label = tool if tool in ("cat", "tcpdump") else f"mailguard {tool}"
                gbps = size * 8 / t / 1e9
                self.plot["replay"].setdefault(cap, {})[label] = gbps
                self.w(f"| {label} | {t:.3f} | {size / t / 1e6:.0f} | {gbps:.2f} | "
                       f"{(frames or 0) / t / 1e3:.0f} | {cpu:.2f} | "
                       f"{fmt(ratio(t_tcp, t), 2, '×')} | {fmt(ratio(t_cat, t), 2, '×')} |")
            self.w()
            self.w("(ratios are speed ratios: above 1× means faster than the peer.)")
            self.w()
            summary = os.path.join(self.args.scratch, f"replay-{cap}-strict.txt")
            if os.path.exists(summary):
                self.w(f"<details><summary>What strict did to the {cap} capture</summary>")
                self.w()
                self.w("```")
                self.w(open(summary).read().rstrip())
                self.w("```")
                self.w("</details>")
                self.w()
        t_tcp = num(r, "replay.bulk.tcpdump.median_s")
        t_strict = num(r, "replay.bulk.strict.median_s")
        q = ratio(t_tcp, t_strict)
        self.targets.append((
            "replay under strict at least as fast as `tcpdump -r -w` (bulk capture, wall)",
            f"{fmt(q, 2, '×')} tcpdump's speed",
            q is not None and q >= 1.0,
            None if q is None or q >= 1.0 else f"{(1 - q) * 100:.0f}% slower"))
        cpu = {tool: (num(r, f"replay.bulk.{tool}.user_s") or 0) +
               (num(r, f"replay.bulk.{tool}.sys_s") or 0) for tool in ("tcpdump", "strict")}
        qc = ratio(cpu["tcpdump"] or None, cpu["strict"] or None)
        self.targets.append((
            "the same per core: CPU seconds (user + system, all threads)",
            f"{fmt(qc, 2, '×')} tcpdump's (strict {cpu['strict']:.2f} s, "
            f"tcpdump {cpu['tcpdump']:.2f} s)",
            qc is not None and qc >= 1.0,
            None if qc is None or qc >= 1.0 else f"{(1 - qc) * 100:.0f}% more CPU"))

    # ---------------------------------------------------------------- scale
    def scale(self):
        r = self.res
        self.w("## Scale: state per connection")
        self.w()
        if "scale.base.peak_rss_kb" not in r:
            self.w("Not measured in this run.")
            self.w()
            return
        self.w("Captures of N SMTP sessions all opened (handshake, greeting) before any goes "
               "further: `mailguard gen --sessions N --concurrent N --mails-per-session 0`, "
               "replayed with `/usr/bin/time -v mailguard replay IN -o /dev/null --profile "
               "strict` (peak RSS). The bytes of state per idle connection are the slope of "
               "peak RSS between the two smaller captures (both within the engine's "
               "connection limit), which cancels the fixed cost of the process.")
        self.w()
        self.w(f"Full-size capture: `{r.get('cmd.gen_scale', '?')}`")
        self.w()
        self.w("| capture | sessions | file MB | connections tracked | SYNs dropped over limit "
               "| peak RSS MB | wall time |")
        self.w("|---|---:|---:|---:|---:|---:|---|")
        base = num(r, "scale.base.peak_rss_kb")
        self.w(f"| 1 session (baseline) | 1 | – | 1 | 0 | {fmt(base / 1024 if base else None, 1)} | – |")
        for label in ("a", "b", "full"):
            n = num(r, f"scale.{label}.sessions")
            if n is None:
                continue
            size = num(r, f"scale.{label}.file_bytes") or 0
            if f"scale.{label}.timeout_s" in r:
                self.w(f"| {label} | {int(n)} | {size / 1e6:.0f} | – | – | – | did not finish in "
                       f"{r[f'scale.{label}.timeout_s']} s |")
                continue
            rss = num(r, f"scale.{label}.peak_rss_kb")
            self.w(f"| {label} | {int(n)} | {size / 1e6:.0f} | "
                   f"{r.get(f'scale.{label}.connections', '?')} | "
                   f"{r.get(f'scale.{label}.over_limit', '?')} | "
                   f"{fmt(rss / 1024 if rss else None, 1)} | {r.get(f'scale.{label}.elapsed', '?')} |")
        self.w()
        na, nb = num(r, "scale.a.sessions"), num(r, "scale.b.sessions")
        ra, rb = num(r, "scale.a.peak_rss_kb"), num(r, "scale.b.peak_rss_kb")
        per = None
        if None not in (na, nb, ra, rb) and nb != na:
            per = (rb - ra) * 1024 / (nb - na)
            self.w(f"**State per idle connection: {per:.0f} bytes** "
                   f"(({rb:.0f} − {ra:.0f}) KiB / ({int(nb)} − {int(na)}) connections).")
            self.w()
        self.targets.append((
            "state per idle connection under 1 KiB",
            f"{fmt(per, 0, ' B')}",
            per is not None and per < 1024,
            None if per is None or per < 1024 else f"{per / 1024:.1f}× the target"))

    # ---------------------------------------------------------------- live
    def live(self):
        """One section per lab the run measured (plain first, then with steering)."""
        r = self.res
        labs = ["live"] + sorted({k.split(".", 1)[0] for k in r
                                  if re.fullmatch(r"live_rps[12]\.rps", k)})
        labs = [lk for lk in labs if f"{lk}.kernel.single.bps" in r]
        if "live.skipped" in r or not labs:
            self.w("## Live: forwarding between one veth pair")
            self.w()
            self.w("Not measured in this run.")
            self.w()
            return
        for lk in labs:
            self.live_lab(lk, len(labs) > 1)

    def live_lab_description(self):
        r = self.res
        self.w("Lab: namespaces client `198.19.6.1` — veth — forwarder namespace — veth — "
               "server `198.19.6.2`; offloads (tx checksum, TSO, GSO, GRO) off on all four ends, "
               "so frames are MTU-sized with full checksums; static neighbour entries (no ARP). "
               "Forwarders: the Linux kernel bridge; `netsniff-ng --in A --out B -s -t others` "
               "(one process per direction, both pinned to the forwarder CPU, with the "
               "system socket memory it asks for: `net.core.{r,w}mem_max` 100 MiB and "
               "`_default` 4 MiB, which it cannot set itself inside a namespace); `mailguard "
               "bridge` (AF_PACKET) with 1 worker pinned to the forwarder CPU, then 2 workers "
               "on both CPUs. The load generators are pinned to the other CPU. Loads: "
               f"`{r.get('cmd.iperf', 'iperf3')}` (bulk single stream, 4 streams, small "
               "segments with MSS 88); real SMTP: "
               f"`{r.get('cmd.smtp', 'smtp-source')}` to `smtp-sink` (throughput = frame "
               "bytes the server's interface received per second); latency: "
               f"`{r.get('cmd.latency', 'smtp-pingpong')}`. The run measures the labs that "
               "`BENCH_RPS` lists (default both: the plain lab, then the steered one).")
        self.w()

    def live_lab(self, pre, several):
        """The tables and targets of one lab; `pre` is its key prefix in the results."""
        r = self.res
        rps = r.get(f"{pre}.rps", "0")
        lab = "plain lab" if rps == "0" else f"steered lab, BENCH_RPS={rps}"
        self.w(f"## Live: forwarding between one veth pair ({lab})")
        self.w()
        if pre == "live" or not several:
            self.live_lab_description()
        else:
            self.w("The same namespaces, forwarders and loads as the plain lab above, with one "
                   "change:")
            self.w()
        if rps in ("1", "2"):
            self.w(f"Receive Packet Steering (`BENCH_RPS={rps}`): the hosts' veth ends "
                   "steer received frames to the load generators' CPU (`rps_cpus`), "
                   "so each host's receive (IP, TCP, ACKs, wake-ups) runs on the hosts' CPU, "
                   "as on a real wire, and not on the core of whoever transmitted into the "
                   "veth (the forwarder's for netsniff-ng and mailguard)"
                   + ("; the forwarder's own veth ends steer to the forwarder's CPU"
                      if rps == "2" else "")
                   + f". `net.core.netdev_max_backlog` {r.get(f'{pre}.backlog', '?')} during "
                   "this lab (a host's backlog takes the forwarder's bursts, as a NIC "
                   "ring would).")
        else:
            self.w("No Receive Packet Steering (`BENCH_RPS=0`): each host's receive "
                   "processing runs on the core of whoever transmitted into its veth: the "
                   "forwarder's pinned core for netsniff-ng and mailguard, the client's for "
                   "the kernel bridge. On a real wire the receiving host's stack runs on the "
                   "receiving host's CPUs: this lab charges it to the forwarder.")
        self.w()
        self.w("iperf3's stream is not SMTP: under pix51 or strict its first line is X-ed "
               "(or the connection reset), as a PIX would do, so iperf3 measures the bridge "
               "under `off` (frames classified and forwarded) and SMTP traffic measures it "
               "under `strict` (every frame through the policy and the TCP engine).")
        self.w()
        self.w("Frames/s count the frames delivered to both hosts (interface counters). CPU s "
               "per Gbit: CPU seconds per gigabit carried (the same number as cores busy per "
               "Gbit/s), of the forwarder processes (none for "
               "the kernel bridge, which runs in softirq context) and of the whole machine "
               "(forwarder, both TCP stacks and iperf3).")
        self.w()
        fwds = [("kernel", "kernel bridge"), ("netsniff", "netsniff-ng"),
                ("mg1-off", "mailguard off, 1 worker"),
                ("mg1-off-bypass", "mailguard off, 1 worker, --qdisc-bypass"),
                ("mg1-off-txring", "mailguard off, 1 worker, --tx-ring --qdisc-bypass"),
                ("mg1-strict", "mailguard strict, 1 worker"),
                ("mg2-strict", "mailguard strict, 2 workers")]
        loads = [("single", "iperf3, 1 stream"), ("parallel4", "iperf3, 4 streams"),
                 ("small", "iperf3, MSS 88"), ("smtp", "SMTP, 1 MB mails")]
        self.w("| forwarder | load | Gbit/s | kframes/s | forwarder CPU s/Gbit | "
               "machine CPU s/Gbit | vs kernel | vs netsniff-ng |")
        self.w("|---|---|---:|---:|---:|---:|---:|---:|")
        for fk, fname in fwds:
            if f"{pre}.{fk}.failed" in r:
                self.w(f"| {fname} | – | did not forward | | | | | |")
                continue
            for lk, lname in loads:
                bps = num(r, f"{pre}.{fk}.{lk}.bps")
                if bps is None:
                    continue
                secs = num(r, f"{pre}.{fk}.{lk}.secs") or 1
                frames = num(r, f"{pre}.{fk}.{lk}.frames")
                gbit = bps * secs / 1e9
                fcpu = num(r, f"{pre}.{fk}.{lk}.fwd_cpu_s")
                mcpu = num(r, f"{pre}.{fk}.{lk}.machine_cpu_s")
                per_f = ratio(fcpu, gbit) if fk != "kernel" else None
                per_m = ratio(mcpu, gbit)
                self.plot.setdefault(f"live {lab}", {}).setdefault(lname, {})[fname] = bps / 1e9
                self.w(f"| {fname} | {lname} | {bps / 1e9:.2f} | "
                       f"{fmt(frames / secs / 1e3 if frames else None, 0)} | "
                       f"{fmt(per_f, 2) if fk != 'kernel' else '–'} | {fmt(per_m, 2)} | "
                       f"{fmt(ratio(bps, num(r, f'{pre}.kernel.{lk}.bps')), 2, '×')} | "
                       f"{fmt(ratio(bps, num(r, f'{pre}.netsniff.{lk}.bps')), 2, '×')} |")
        self.w()
        self.w("### Latency of an SMTP request/response (NOOP → 250), light load")
        self.w()
        self.w("| forwarder | p50 µs | p90 µs | p99 µs | max µs | added p50 | added p99 |")
        self.w("|---|---:|---:|---:|---:|---:|---:|")
        kern = latency_fields(r.get(f"{pre}.kernel.latency"))
        # Busy-poll rows (latency only; the other mailguard rows run the default, 50 µs).
        busy = [("mg1-off-bp0", "mailguard off, 1 worker, --busy-poll-us 0"),
                ("mg1-off-bp200", "mailguard off, 1 worker, --busy-poll-us 200")]
        for fk, fname in fwds + busy:
            lat = latency_fields(r.get(f"{pre}.{fk}.latency"))
            if not lat:
                if f"{pre}.{fk}.latency" in r or f"{pre}.{fk}.failed" in r:
                    self.w(f"| {fname} | failed | | | | | |")
                continue
            add50 = lat["p50_us"] - kern["p50_us"] if kern else None
            add99 = lat["p99_us"] - kern["p99_us"] if kern else None
            self.w(f"| {fname} | {lat['p50_us']:.0f} | {lat['p90_us']:.0f} | {lat['p99_us']:.0f} "
                   f"| {lat['max_us']:.0f} | {fmt(add50, 0)} | {fmt(add99, 0)} |")
        self.w()
        if f"{pre}.mailguard_missing" in r:
            self.w("The mailguard binary measured had no live bridge: its rows are missing.")
            self.w()
        # Targets: one pinned worker, MTU frames.
        for fk, lk, what in (("mg1-off", "single", "off, iperf3 1 stream"),
                             ("mg1-strict", "smtp", "strict, SMTP 1 MB mails")):
            mg = num(r, f"{pre}.{fk}.{lk}.bps")
            ns = num(r, f"{pre}.netsniff.{lk}.bps")
            kb = num(r, f"{pre}.kernel.{lk}.bps")
            q1, q2 = ratio(mg, ns), ratio(mg, kb)
            # netsniff-ng's streams can stall for good (seen with RPS, notes.md): a ratio to
            # a stalled peer says nothing.
            stalled = (f"{pre}.netsniff.{lk}.server_killed" in r
                       or (ns is not None and kb and ns < 0.02 * kb))
            self.targets.append((
                f"live ({lab}), 1 pinned worker ({what}): ≥ netsniff-ng",
                ("n/a: netsniff-ng stalled in this run" if stalled
                 else f"{fmt(q1, 2, '×')} netsniff-ng"),
                not stalled and q1 is not None and q1 >= 1.0,
                None if stalled or q1 is None or q1 >= 1.0 else f"{(1 - q1) * 100:.0f}% below"))
            self.targets.append((
                f"live ({lab}), 1 pinned worker ({what}): ≥ ½ kernel bridge",
                f"{fmt(q2, 2, '×')} kernel bridge",
                q2 is not None and q2 >= 0.5,
                None if q2 is None or q2 >= 0.5 else f"{(0.5 - q2) / 0.5 * 100:.1f}% below half"))
        lat = latency_fields(r.get(f"{pre}.mg1-strict.latency"))
        add99 = lat["p99_us"] - kern["p99_us"] if lat and kern else None
        self.targets.append((
            f"added p99 latency over the kernel bridge under 100 µs ({lab}, 1 worker, strict)",
            f"{fmt(add99, 0, ' µs')}",
            add99 is not None and add99 < 100,
            None if add99 is None or add99 < 100 else f"{add99 - 100:.0f} µs over"))
        tail = os.path.join(self.args.scratch, f"bridge-tail-{pre}.txt")
        if not os.path.exists(tail):
            tail = os.path.join(self.args.scratch, "bridge-tail.txt")
        if os.path.exists(tail) and os.path.getsize(tail) > 0:
            self.w("<details><summary>End of the bridge's log</summary>")
            self.w()
            self.w("```")
            self.w(open(tail).read().rstrip())
            self.w("```")
            self.w("</details>")
            self.w()

    # ---------------------------------------------------------------- engine
    def engine(self):
        self.w("## Engine alone (criterion, `cargo bench --bench engine`)")
        self.w()
        crit = criterion_results(self.args.criterion)
        if not crit:
            self.w("No criterion results found (run `scripts/bench.sh --criterion` or "
                   "`cargo bench --bench engine`).")
            self.w()
            return
        self.w("One core, frames generated in memory by `mailguard::io::synth` before timing; "
               "one iteration is a fresh engine fed every frame of the mix (see "
               "`benches/engine.rs`). Median of criterion's samples. Input bytes and frames "
               "per second, both from the same timing (the mix's size is in "
               "`target/criterion/engine-mixes.tsv`). These are the results found in `target/criterion` when the report "
               "was written (from this run if it was given `--criterion`).")
        self.w()
        self.w("| mix | profile | Gbit/s | Mframes/s | bytes/frame |")
        self.w("|---|---|---:|---:|---:|")
        mixes = criterion_mixes(self.args.criterion)
        for mix in ("bulk", "commands", "passthrough"):
            frames, size_bytes = mixes.get(mix, (None, None))
            for prof in ("off", "pix51", "strict"):
                ns = crit.get((mix, prof))
                if not ns or not size_bytes:
                    continue
                gbps = size_bytes * 8 / ns  # bytes*8 / ns = Gbit/s
                mfps = frames / ns * 1e3
                self.plot["engine"].setdefault(mix, {})[f"mailguard {prof}"] = gbps
                self.w(f"| {mix} | {prof} | {fmt(gbps, 2)} | {fmt(mfps, 2)} | "
                       f"{fmt(size_bytes / frames if frames else None, 0)} |")
        self.w()

    # ---------------------------------------------------------------- targets, notes
    def summary(self):
        out = ["## Targets (ratios measured in this run)", "",
               "| target | measured | met? | by how much |", "|---|---|---|---|"]
        for name, measured, ok, miss in self.targets:
            state = "yes" if ok else ("not measured" if measured.startswith("n/a") else "**no**")
            out.append(f"| {name} | {measured} | {state} | {miss or ''} |")
        out.append("")
        out.append("Where a target is missed, the profile section below says what limits it.")
        out.append("")
        return out

    def notes(self):
        path = os.path.join(HERE, "notes.md")
        if os.path.exists(path):
            self.w(open(path).read().rstrip())
            self.w()

    def render(self):
        self.header()
        body_start = len(self.lines)
        self.replay()
        self.live()
        self.scale()
        self.engine()
        self.lines[body_start:body_start] = self.summary() + [
            f"![throughput per core by mix and peer](benches/throughput.png)", ""]
        self.notes()
        with open(self.args.out, "w") as f:
            f.write("\n".join(self.lines).rstrip() + "\n")

    # ---------------------------------------------------------------- plot
    def draw(self):
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("report: no matplotlib, no plot", file=sys.stderr)
            return
        panels = [("replay", "Replay (one core): capture Gbit/s")]
        panels += [(k, f"Live, {k[len('live '):]} (forwarder pinned to one core where it can "
                       "be): Gbit/s") for k in self.plot if k.startswith("live ")]
        panels.append(("engine", "Engine alone (one core, from memory): Gbit/s"))
        panels = [(k, t) for k, t in panels if self.plot.get(k)]
        if not panels:
            return
        fig, axes = plt.subplots(len(panels), 1, figsize=(10, 3.6 * len(panels)))
        if len(panels) == 1:
            axes = [axes]
        for ax, (key, title) in zip(axes, panels):
            data = self.plot[key]
            groups = list(data.keys())
            peers = []
            for g in groups:
                for p in data[g]:
                    if p not in peers:
                        peers.append(p)
            width = 0.8 / max(len(peers), 1)
            for i, p in enumerate(peers):
                xs = [gi + i * width for gi in range(len(groups))]
                ys = [data[g].get(p, 0) for g in groups]
                bars = ax.bar(xs, ys, width, label=p)
                ax.bar_label(bars, fmt="%.2f", fontsize=7)
            ax.set_xticks([gi + width * (len(peers) - 1) / 2 for gi in range(len(groups))])
            ax.set_xticklabels(groups)
            ax.set_ylabel("Gbit/s")
            ax.set_yscale("log")
            top = max((v for g in groups for v in data[g].values()), default=1)
            ax.set_ylim(top=top * 12)  # headroom for the legend above the bars
            ax.set_title(title)
            ax.legend(fontsize=7, ncol=4, loc="upper center")
        fig.tight_layout()
        fig.savefig(self.args.plot, dpi=110)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", required=True)
    ap.add_argument("--machine", required=True)
    ap.add_argument("--criterion", required=True)
    ap.add_argument("--scratch", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--plot", required=True)
    args = ap.parse_args()
    rep = Report(args)
    rep.render()
    rep.draw()


if __name__ == "__main__":
    main()
