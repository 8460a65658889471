#!/usr/bin/env python3
"""`make wasm-profile`: the filter's wasm-side cost, per function.

Runs the filter's .wasm in Node.js (V8, TurboFan only: `--no-liftoff`, as
Envoy's V8 runs it) under a stub proxy-wasm host (bench/wasm_host.mjs) whose
host calls cost next to nothing, so what is timed is the filter's own code:
the SDK's dispatch, our glue, the decision, allocations, formatting. Where
`make profile` (in Envoy) says how many µs a phase takes, this says which
functions take them.

1. Timing: interleaved rounds over the configurations of `make bench` (okta,
   auth0, okta-unmatched, custom-1000) for each .wasm: the release build, the
   no-op filter (bench/probe-filter: the SDK's own per-request work), and
   WASM_PROFILE_BASELINE when set (an earlier build, for before/after in the
   same run). ns per request, median over rounds, and the release build's
   ratio to the no-op.
2. Profile: one `node --cpu-prof` run per configuration on a build that keeps
   its function names (target/wasm-profile: the release profile unstripped,
   then the same wasm-opt pass as `make build`), printing the functions with
   the most self time (wasm and the stub's JS apart) and the inclusive share
   of the crate's own functions.

The report goes to stdout and, as its own section (label WASM_PROFILE_LABEL,
default "wasm side, git <rev>"; `make bench` keeps it), to bench/RESULTS.md
(BENCH_OUT); WASM_PROFILE_WRITE=0 skips the file.
Knobs: WASM_PROFILE_REQUESTS (100000 per round), WASM_PROFILE_ROUNDS (5),
WASM_PROFILE_TOP (25), WASM_PROFILE_CONFIGS (comma-separated).
A benchmark, not a test: it asserts nothing about time.
"""

import collections
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
WORK = BENCH / "work" / "wasm-profile"
HOST = BENCH / "wasm_host.mjs"
RELEASE = ROOT / "target" / "wasm32-wasip1" / "release" / "idp_ratelimit.wasm"
NAMED_TARGET = ROOT / "target" / "wasm-profile"
NAMED = NAMED_TARGET / "wasm32-wasip1" / "release" / "idp_ratelimit.wasm"

sys.path.insert(0, str(BENCH))
import run as envoy_bench  # noqa: E402  (the configurations of `make bench`)

REQUESTS = int(os.environ.get("WASM_PROFILE_REQUESTS", "100000"))
ROUNDS = int(os.environ.get("WASM_PROFILE_ROUNDS", "5"))
TOP = int(os.environ.get("WASM_PROFILE_TOP", "25"))
BASELINE = os.environ.get("WASM_PROFILE_BASELINE")

CONFIGS = {
    "okta": (envoy_bench.OKTA, "GET", "/api/v1/users"),
    "auth0": (envoy_bench.AUTH0, "GET", "/api/v2/users"),
    "okta-unmatched": (envoy_bench.OKTA, "GET", "/bench/unmatched"),
    "custom-1000": (envoy_bench.CUSTOM_1000, "GET",
                    f"/c{envoy_bench.CUSTOM_HIT}/items/abc123"),
}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def die(msg):
    log(f"wasm-profile: {msg}")
    sys.exit(1)


def node():
    path = shutil.which("node") or shutil.which("nodejs")
    if not path:
        die("needs Node.js (Debian: apt-get install nodejs)")
    return path


def build_named():
    log("wasm-profile: building the filter with its function names (target/wasm-profile)")
    env = dict(os.environ, CARGO_PROFILE_RELEASE_STRIP="false",
               CARGO_TARGET_DIR=str(NAMED_TARGET))
    out = subprocess.run(
        ["cargo", "build", "--release", "--quiet", "--target", "wasm32-wasip1",
         "-p", "idp-ratelimit", "--lib"], cwd=ROOT, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        die(f"cargo build failed:\n{out.stderr}")
    opt = NAMED.with_suffix(".opt.wasm")
    wasm_opt = os.environ.get("WASM_OPT", "wasm-opt")
    out = subprocess.run([wasm_opt, "-O3", "--zero-filled-memory", "--low-memory-unused",
                          "--strip-producers", "--debuginfo",
                          "--strip-dwarf", str(NAMED), "-o", str(opt)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        die(f"wasm-opt failed:\n{out.stderr}")
    return opt


def drive(wasm, config_path, method, path, n, profile_out=None):
    cmd = [node(), "--no-liftoff", "--no-warnings", str(HOST), str(wasm),
           str(config_path), method, path, str(n)] + ([str(profile_out)] if profile_out else [])
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        die(f"{' '.join(cmd)}:\n{out.stdout}\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def clean(name):
    name = re.sub(r"::h[0-9a-f]{16}$", "", name)
    return re.sub(r"17h[0-9a-f]{16}E$", "", name)


def wasm_share(profile_path):
    """The share of a profile's samples taken in wasm functions."""
    p = json.loads(profile_path.read_text())
    urls = {n["id"]: n["callFrame"]["url"] for n in p["nodes"]}
    samples = p["samples"]
    return sum(urls[s].startswith("wasm") for s in samples) / max(len(samples), 1)


def summarise(profile_path, top):
    p = json.loads(profile_path.read_text())
    nodes = {n["id"]: n for n in p["nodes"]}
    parent = {c: n["id"] for n in p["nodes"] for c in n.get("children", [])}
    samples = collections.Counter(p["samples"])
    total = sum(samples.values()) or 1
    own, incl, kinds = collections.Counter(), collections.Counter(), collections.Counter()
    for nid, count in samples.items():
        frame = nodes[nid]["callFrame"]
        kind = "wasm" if frame["url"].startswith("wasm") else "js" if frame["url"] else "V8"
        kinds[kind] += count
        own[(kind, clean(frame["functionName"]) or "(anonymous)")] += count
        seen, x = set(), nid
        while x is not None:
            name = clean(nodes[x]["callFrame"]["functionName"])
            if name not in seen:
                incl[name] += count
                seen.add(name)
            x = parent.get(x)
    pct = lambda c: f"{100 * c / total:.1f} %"  # noqa: E731
    lines = ["| where | share |", "|---|---:|"]
    lines += [f"| {k} (self) | {pct(c)} |" for k, c in kinds.most_common()]
    lines += ["", "| self | kind | function |", "|---:|---|---|"]
    lines += [f"| {pct(c)} | {k} | `{name[:110]}` |" for (k, name), c in own.most_common(top)]
    ours = [(n, c) for n, c in incl.most_common() if "idp_ratelimit" in n][:top]
    lines += ["", "| inclusive | the crate's function |", "|---:|---|"]
    lines += [f"| {pct(c)} | `{name[:110]}` |" for name, c in ours]
    return "\n".join(lines)


def main():
    report = []

    def emit(text=""):
        print(text)
        report.append(text)

    WORK.mkdir(parents=True, exist_ok=True)
    names = [c for c in os.environ.get("WASM_PROFILE_CONFIGS", ",".join(CONFIGS)).split(",") if c]
    if not RELEASE.exists():
        die(f"{RELEASE} missing: run `make build` first")
    envoy_bench.build_probe()
    named = build_named()
    wasms = [("release", RELEASE)]
    if BASELINE:
        wasms.append(("baseline", Path(BASELINE).resolve()))
    noop_cfg = WORK / "noop.json"
    noop_cfg.write_text("")  # empty: the probe filter does nothing
    cfgs = {}
    for name in names:
        config, method, path = CONFIGS[name]
        cfgs[name] = WORK / f"{name}.json"
        cfgs[name].write_text(json.dumps(config))
    times = collections.defaultdict(list)
    wasm_self = collections.defaultdict(list)

    def measure(key, wasm, cfg, method, path):
        prof = WORK / "round.cpuprofile"
        out = drive(wasm, cfg, method, path, REQUESTS, prof)
        if out.get("warnings"):
            log(f"{key}: {out['warnings']}")
        times[key].append(out["ns_per_request"])
        wasm_self[key].append(out["ns_per_request"] * wasm_share(prof))

    for r in range(ROUNDS):
        log(f"wasm-profile: round {r + 1}/{ROUNDS}")
        measure("noop", envoy_bench.PROBE_WASM, noop_cfg, "GET", "/")
        for name in names:
            _, method, path = CONFIGS[name]
            for label, wasm in wasms:
                measure((name, label), wasm, cfgs[name], method, path)
    med = statistics.median
    version = subprocess.run([node(), "--version"], capture_output=True, text=True).stdout.strip()
    emit(f"## The wasm side alone (`make wasm-profile`: Node.js {version}, TurboFan, stub host; "
          f"{ROUNDS} interleaved rounds x {REQUESTS} requests)\n")
    emit("*wasm self*: the request's time spent in the module's own code (V8's samples in "
          "wasm functions, as a share of the run, times ns/request): the stub host's JS is "
          "left out, so it is the figure to compare.\n")
    head = "| configuration | ns/req | wasm self ns/req | wasm self ÷ no-op's |"
    rule = "|---|---:|---:|---:|"
    if BASELINE:
        head += " baseline ns/req | baseline wasm self | wasm self ÷ baseline's |"
        rule += "---:|---:|---:|"
    emit(head)
    emit(rule)
    noop = med(wasm_self["noop"])
    emit(f"| no-op filter (the SDK alone) | {med(times['noop']):.0f} | {noop:.0f} | 1.00 |"
          + (" | | |" if BASELINE else ""))
    for name in names:
        rel = med(wasm_self[(name, "release")])
        row = f"| {name} | {med(times[(name, 'release')]):.0f} | {rel:.0f} | {rel / noop:.1f} |"
        if BASELINE:
            base = med(wasm_self[(name, "baseline")])
            row += f" {med(times[(name, 'baseline')]):.0f} | {base:.0f} | {rel / base:.2f} |"
        emit(row)
    for name in names:
        _, method, path = CONFIGS[name]
        profile = WORK / f"{name}.cpuprofile"
        drive(named, cfgs[name], method, path, REQUESTS, profile)
        emit(f"\n### {name}: {method} {path} (the timed requests, sampled every 50 µs)\n")
        emit(summarise(profile, TOP))
    if os.environ.get("WASM_PROFILE_WRITE", "1") != "0":
        label = os.environ.get("WASM_PROFILE_LABEL") or f"wasm side, git {envoy_bench.git_rev()}"
        envoy_bench.write_profile_section(label, "\n".join(report))
        log(f"wasm-profile: section \"{label}\" written to {envoy_bench.OUT}")


if __name__ == "__main__":
    main()
