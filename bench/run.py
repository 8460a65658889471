#!/usr/bin/env python3
"""`make bench`: the cost of idp-ratelimit inside Envoy, against Envoy with no
rate-limit filter (the floor) and Envoy's native local_ratelimit (C++).

One run, interleaved: every configuration gets its own Envoy (one worker,
`--concurrency 1`, pinned to one core), all started up front and warmed up;
then each round loads each Envoy in turn (A B C D ... A B C D ...) with the
same fixed number of HTTP/1.1 keep-alive requests from h2load (pinned to the
other core) against a direct_response route. Per measurement:

* Envoy CPU per request: utime+stime of the Envoy process (/proc/<pid>/stat,
  all threads) before and after the load, in clock ticks (getconf CLK_TCK);
* requests per second, as h2load reports it;
* p50/p99 latency, from h2load's per-request log (`--log-file`).

Configurations: the floor (no rate-limit filter), Envoy's local_ratelimit,
idp-ratelimit on Okta (one bucket) and on Auth0 (four buckets), Okta in
fleet mode (one ShouldRateLimit call per request to the test-fixture
rate-limit service tests/rls over a real redis-server, both pinned to the
load generator's core; their CPU is reported apart), and three
that show where the filter's time goes: a no-op Rust proxy-wasm filter (the
cost of any wasm filter), idp-ratelimit on a path no route matches (its fixed
cost), idp-ratelimit with its response headers off, and a custom vendor of
1,000 routes (custom-1000: cost flat in the number of routes?); and two floor
probes (bench/probe-filter), which make only the host calls the filter's
behaviour cannot avoid, as the filter makes them, and nothing else:
floor-counted those of a counted request (one clock read, the request
headers in one proxy_get_header_map_pairs, one shared-data get of a 104-byte
cell and its CAS write, three response-header writes), floor-unmatched that
of an unmatched one (the header map).

Then the medians over rounds and each configuration's ratios to the floor,
and, for idp-ratelimit, the figure issue 13 sets its goals in ("added ÷
no-op added": per round, (configuration - floor) / (noop-wasm - floor) in
Envoy CPU per request, median over rounds; noop-wasm joins every run with a
wasm configuration; the floor probes get it too), in the summary and as a
short table at the end of stdout, beside "added ÷ floor probe's added" (the
same with the configuration's floor probe in place of noop-wasm: okta, auth0,
custom-1000 against floor-counted, okta-unmatched against floor-unmatched,
and their -before ones likewise; how far the filter is from the least any
filter doing its work can cost; both floor probes join every run with an
idp-ratelimit configuration); the buckets each configuration counted (from
its counters);
plus the size of the release .wasm and the host-side cost of one decision
(`cargo run --release --example decision_bench`). The Markdown report goes to
stdout and bench/RESULTS.md; scratch files (configs, logs) to bench/work/.

Plain Python 3 standard library. Knobs (environment):
  BENCH_REQUESTS   requests per measurement (100000; 7 configurations x 5
                   rounds then take about 5 minutes on a quiet 2-core machine)
  BENCH_ROUNDS     interleaved rounds (5)
  BENCH_WARMUP     warm-up requests per Envoy before the first round (20000)
  BENCH_CLIENTS    h2load keep-alive connections (8)
  BENCH_CONFIGS    comma-separated configuration names (default all; the
                   floor always runs, noop-wasm, floor-counted and
                   floor-unmatched with any idp-ratelimit one):
                   floor, native, okta, auth0, okta-fleet, noop-wasm,
                   floor-counted, floor-unmatched, okta-unmatched,
                   okta-unmatched-guarded, okta-guarded (the filter behind
                   the path guard `idp-ratelimit guard` prints, as
                   envoy/envoy.yaml ships it), custom-1000, okta-noheaders,
                   okta-nolog (no access-log filter state)
                   (and the probes, and the -before ones)
  BENCH_BASELINE_WASM  path of an earlier build of the filter: adds
                   okta-before, auth0-before, okta-unmatched-before and
                   custom-1000-before, the same configurations on it, in the
                   same interleaved rounds (their ratios too)
  BENCH_PROFILE    1 (`make profile`): build the filter with `--features
                   profile` (target/profile), run okta, auth0, okta-unmatched
                   and custom-1000 on it (with the floor and noop-wasm; no
                   floor probes), read
                   its idp_ratelimit.profile.* counters from /stats around
                   each round, and write "Where the µs go, per phase" (µs per
                   request per callback, segment of on_http_request_headers
                   and host-call kind; wasm self time) to stdout and as its
                   own section of BENCH_OUT, replacing only the section of the
                   same label (`make bench` keeps these sections)
  BENCH_PROFILE_LABEL  that section's label (default: git <rev>)
  BENCH_PROBES     1 adds probe-time, probe-header, probe-shared,
                   probe-metric, probe-resp_header, probe-property: the price of one host
                   call of each kind (0: off, keeps `make bench` short)
  BENCH_PROBE_CALLS  host calls per request in a probe (32)
  BENCH_ENVOY_CPU, BENCH_LOAD_CPU   cores for Envoy and h2load (1 and 0)
  BENCH_DECISIONS  decisions per decision_bench run (200000; 0 skips it)
  BENCH_OUT        report path (bench/RESULTS.md)

A benchmark, not a test: it asserts nothing about time. It fails only if
something does not work (Envoy does not start, a request is not answered 2xx,
the filter rejects or does not count).
"""

import datetime
import json
import math
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
WORK = BENCH / "work"
WASM = ROOT / "target" / "wasm32-wasip1" / "release" / "idp_ratelimit.wasm"
PROBE_DIR = BENCH / "probe-filter"
PROBE_TARGET = WORK / "probe-target"
PROBE_WASM = PROBE_TARGET / "wasm32-wasip1" / "release" / "probe_filter.wasm"
# BENCH_PROFILE=1 (`make profile`): the filter built with `--features profile`.
PROFILE_TARGET = ROOT / "target" / "profile"
PROFILE_WASM = PROFILE_TARGET / "wasm32-wasip1" / "release" / "idp_ratelimit.wasm"


def env_int(name, default):
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


REQUESTS = env_int("BENCH_REQUESTS", 100_000)
ROUNDS = env_int("BENCH_ROUNDS", 5)
WARMUP = env_int("BENCH_WARMUP", 20_000)
CLIENTS = env_int("BENCH_CLIENTS", 8)
DECISIONS = env_int("BENCH_DECISIONS", 200_000)
ENVOY_CPU = env_int("BENCH_ENVOY_CPU", 1)
LOAD_CPU = env_int("BENCH_LOAD_CPU", 0)
OUT = Path(os.environ.get("BENCH_OUT") or BENCH / "RESULTS.md")
CLK_TCK = int(subprocess.run(["getconf", "CLK_TCK"], capture_output=True,
                             text=True, check=True).stdout.strip())

PROBE_N = env_int("BENCH_PROBE_CALLS", 32)
PROFILE = env_int("BENCH_PROFILE", 0)
PROFILE_CONFIGS = ("okta", "auth0", "okta-unmatched", "custom-1000")
# The .wasm the idp-ratelimit configurations load (PROFILE_WASM under BENCH_PROFILE).
ACTIVE_WASM = [WASM]

RAISED = 1_000_000_000  # far above anything this load can reach in a window

OKTA = {
    "vendor": "okta",
    "plan": "enterprise",
    "overrides": [{"bucket": b, "limit": RAISED} for b in (
        "okta.management.users",
        "okta.management.api-v1",
        "okta.end-user.api-v1",
    )],
}
AUTH0 = {
    "vendor": "auth0",
    "plan": "enterprise-prod",
    "overrides": [{"bucket": b, "limit": RAISED} for b in (
        "auth0.tenant.per-second",
        "auth0.tenant.per-minute",
        "auth0.endpoint.users.per-second",
        "auth0.endpoint.users.per-minute",
        "auth0.spa.current-user",
    )],
}
OKTA_NO_HEADERS = dict(OKTA, headers="none")
OKTA_NO_LOG = dict(OKTA, access_log=False)


def custom_routes(n, hit):
    """A custom vendor with `n` routes (bucket `routes.<i>` each): distinct
    literal prefixes, every third a `{param}` route and every third a `/*`
    subtree; route `hit` (a `{param}` one) has a raised limit."""
    routes = []
    for i in range(n):
        pattern = (f"/c{i}/items", f"/c{i}/items/{{id}}", f"/c{i}/tree/*")[i % 3]
        routes.append({"route": pattern, "limit": RAISED if i == hit else 1000,
                       "window": "minute"})
    return {"vendor": "custom", "routes": routes}


CUSTOM_HIT = 997  # near the end; 997 % 3 == 1: a `{param}` route
CUSTOM_1000 = custom_routes(1000, CUSTOM_HIT)
# A generous timeout: a benchmark on a busy machine must not fall back.
OKTA_FLEET = dict(OKTA, fleet={"cluster": "ratelimit", "timeout_ms": 1000})
RLS_FIXTURE = ROOT / "target" / "rls-fixture" / "release" / "rls-fixture"


def snippet(name, **subst):
    text = (BENCH / name).read_text()
    for key, value in subst.items():
        text = text.replace(f"@{key}@", value)
    return text.rstrip("\n")


def wasm_filter(plugin_config, wasm=None, name="idp_ratelimit"):
    return lambda: snippet("filter-wasm.yaml.in", NAME=name,
                           PLUGIN_CONFIG=json.dumps(plugin_config),
                           WASM=str(wasm or ACTIVE_WASM[0]))


CLI = ROOT / "target" / "release" / "idp-ratelimit"


def build_cli():
    log("bench: building the command line (idp-ratelimit guard)")
    out = subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "idp-ratelimit-cli"],
                         cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0 or not CLI.exists():
        die(f"could not build the command line:\n{out.stdout}\n{out.stderr}")


def guarded_filter(plugin_config):
    """The filter wrapped in the path guard `idp-ratelimit guard` prints for
    `plugin_config` (README, "The path guard"), as envoy/envoy.yaml ships it."""
    def text():
        out = subprocess.run([str(CLI), "guard", json.dumps(plugin_config)],
                             capture_output=True, text=True)
        if out.returncode != 0:
            die(f"idp-ratelimit guard failed:\n{out.stderr}")
        matcher = out.stdout[out.stdout.index("\nxds_matcher:") + 1:]
        wasm = wasm_filter(plugin_config)().split("\n")
        start = next(i for i, line in enumerate(wasm) if "- name: envoy.filters.http.wasm" in line)
        inner = ["                name: envoy.filters.http.wasm", "                typed_config:"]
        inner += ["    " + line for line in wasm[start + 2:]]
        head = [
            "          - name: envoy.filters.http.match_delegate",
            "            typed_config:",
            '              "@type": type.googleapis.com/'
            "envoy.extensions.common.matching.v3.ExtensionWithMatcher",
            "              extension_config:",
        ]
        tail = ["              " + line for line in matcher.rstrip("\n").split("\n")]
        return "\n".join(head + inner + tail)
    return text


class Variant:
    def __init__(self, name, label, filters, path, counted, plugin=None, fleet=False,
                 floor_probe=None):
        self.name = name
        # The floor probe doing the host work this configuration cannot avoid
        # (its "added ÷ floor-probe added"); None where no probe does that work.
        self.floor_probe = floor_probe
        self.fleet = fleet  # needs the rate-limit service's gRPC cluster
        self.label = label
        self.filters = filters  # () -> YAML text for @HTTP_FILTERS@
        self.path = path
        self.counted = counted  # counters (stat names) that must go up
        self.plugin = plugin
        self.proc = None
        self.admin = None
        self.port = None
        self.rounds = []
        self.headers = []


def wasm_counter(bucket):
    return f"wasmcustom.idp_ratelimit.{bucket}.admitted"


VARIANTS = [
    Variant("floor", "Envoy, no rate-limit filter (floor)",
            lambda: "", "/api/v1/users", []),
    Variant("native", "Envoy local_ratelimit (C++), x-ratelimit headers",
            lambda: snippet("filter-local-ratelimit.yaml.in"),
            "/api/v1/users",
            ["bench_local_rate_limit.http_local_rate_limit.ok"]),
    Variant("okta", "idp-ratelimit, Okta enterprise, GET /api/v1/users",
            wasm_filter(OKTA), "/api/v1/users",
            [wasm_counter("okta.management.users")], OKTA, floor_probe="floor-counted"),
    Variant("auth0", "idp-ratelimit, Auth0 enterprise-prod, GET /api/v2/users",
            wasm_filter(AUTH0), "/api/v2/users",
            [wasm_counter(b) for b in (
                "auth0.tenant.per-second", "auth0.tenant.per-minute",
                "auth0.endpoint.users.per-second",
                "auth0.endpoint.users.per-minute")], AUTH0, floor_probe="floor-counted"),
    Variant("okta-fleet",
            "idp-ratelimit, Okta enterprise, GET /api/v1/users, fleet mode (fixture RLS + redis)",
            wasm_filter(OKTA_FLEET), "/api/v1/users",
            [wasm_counter("okta.management.users"), "wasmcustom.idp_ratelimit.rls_calls"],
            OKTA_FLEET, fleet=True),
    Variant("noop-wasm",
            "a no-op Rust proxy-wasm filter (bench/probe-filter): the wasm floor",
            wasm_filter("", PROBE_WASM, "probe"), "/api/v1/users", []),
    Variant("floor-counted",
            "bench/probe-filter making only a counted request's unavoidable host calls "
            "(clock, header map, cell get + CAS, 3 response headers)",
            wasm_filter("floor-counted", PROBE_WASM, "probe"), "/api/v1/users", []),
    Variant("floor-unmatched",
            "bench/probe-filter making only an unmatched request's unavoidable host call "
            "(header map)",
            wasm_filter("floor-unmatched", PROBE_WASM, "probe"), "/bench/unmatched", []),
    Variant("okta-unmatched",
            "idp-ratelimit, Okta enterprise, unmatched path (fixed cost)",
            wasm_filter(OKTA), "/bench/unmatched", [], OKTA, floor_probe="floor-unmatched"),
    Variant("okta-unmatched-guarded",
            "idp-ratelimit behind its path guard (envoy/envoy.yaml), Okta enterprise, "
            "unmatched path: Envoy skips the filter",
            guarded_filter(OKTA), "/bench/unmatched", [], OKTA, floor_probe="floor-unmatched"),
    Variant("okta-guarded",
            "idp-ratelimit behind its path guard, Okta enterprise, GET /api/v1/users",
            guarded_filter(OKTA), "/api/v1/users",
            [wasm_counter("okta.management.users")], OKTA, floor_probe="floor-counted"),
    Variant("custom-1000",
            f"idp-ratelimit, custom vendor with 1,000 routes, GET route {CUSTOM_HIT} (1 bucket)",
            wasm_filter(CUSTOM_1000), f"/c{CUSTOM_HIT}/items/abc123",
            [wasm_counter(f"routes.{CUSTOM_HIT}")], CUSTOM_1000, floor_probe="floor-counted"),
    Variant("okta-noheaders",
            "idp-ratelimit, Okta enterprise, GET /api/v1/users, headers: none",
            wasm_filter(OKTA_NO_HEADERS), "/api/v1/users",
            [wasm_counter("okta.management.users")], OKTA_NO_HEADERS),
    Variant("okta-nolog",
            "idp-ratelimit, Okta enterprise, GET /api/v1/users, access_log: false",
            wasm_filter(OKTA_NO_LOG), "/api/v1/users",
            [wasm_counter("okta.management.users")], OKTA_NO_LOG),
]


# BENCH_BASELINE_WASM=<path>: also measure an earlier build of the filter in the
# same run (before/after comparisons of an optimisation).
BASELINE_WASM = os.environ.get("BENCH_BASELINE_WASM")
if BASELINE_WASM:
    VARIANTS += [
        Variant("okta-before", f"the same as okta, with {BASELINE_WASM}",
                wasm_filter(OKTA, Path(BASELINE_WASM).resolve()), "/api/v1/users",
                [wasm_counter("okta.management.users")], OKTA, floor_probe="floor-counted"),
        Variant("auth0-before", f"the same as auth0, with {BASELINE_WASM}",
                wasm_filter(AUTH0, Path(BASELINE_WASM).resolve()), "/api/v2/users",
                [wasm_counter(b) for b in (
                    "auth0.tenant.per-second", "auth0.tenant.per-minute",
                    "auth0.endpoint.users.per-second",
                    "auth0.endpoint.users.per-minute")], AUTH0, floor_probe="floor-counted"),
        Variant("okta-unmatched-before", f"the same as okta-unmatched, with {BASELINE_WASM}",
                wasm_filter(OKTA, Path(BASELINE_WASM).resolve()), "/bench/unmatched", [],
                OKTA, floor_probe="floor-unmatched"),
        Variant("custom-1000-before", f"the same as custom-1000, with {BASELINE_WASM}",
                wasm_filter(CUSTOM_1000, Path(BASELINE_WASM).resolve()),
                f"/c{CUSTOM_HIT}/items/abc123", [wasm_counter(f"routes.{CUSTOM_HIT}")],
                CUSTOM_1000, floor_probe="floor-counted"),
    ]

PROBE_CALLS = ("time", "header", "shared", "metric", "resp_header", "property")
if env_int("BENCH_PROBES", 0):
    VARIANTS += [
        Variant(f"probe-{call}",
                f"bench/probe-filter making {PROBE_N} `{call}` host calls per request",
                wasm_filter(f"{call}:{PROBE_N}", PROBE_WASM, "probe"),
                "/api/v1/users", [])
        for call in PROBE_CALLS]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def die(msg):
    log(f"bench: {msg}")
    sys.exit(1)


def pin(cpu):
    """preexec_fn pinning the child to `cpu` (when the machine has it)."""
    if cpu is None or cpu not in os.sched_getaffinity(0):
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


def ensure_h2load():
    path = shutil.which("h2load")
    if path:
        return path
    log("bench: h2load missing; installing nghttp2-client with apt-get")
    try:
        subprocess.run(["apt-get", "update"], check=True)
        subprocess.run(["apt-get", "install", "-y", "nghttp2-client"],
                       check=True, env=dict(os.environ,
                                            DEBIAN_FRONTEND="noninteractive"))
    except (OSError, subprocess.CalledProcessError) as e:
        die(f"could not install nghttp2-client ({e}); "
            "install h2load (Debian: nghttp2-client) and run again")
    return shutil.which("h2load") or die("h2load still not on PATH")


def envoy_bin():
    path = Path(os.environ.get("ENVOY_BIN") or ROOT / ".venv" / "bin" / "envoy")
    if not os.access(path, os.X_OK):
        die(f"no Envoy at {path}; run `make envoy`")
    return str(path)


def first_line(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True)
    lines = (out.stdout + out.stderr).strip().splitlines()
    return lines[0].strip() if lines else "?"


def machine():
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) // 1024} MiB"
    except OSError:
        pass
    return model, os.cpu_count(), mem, f"{platform.system()} {platform.release()}"


def loadavg():
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def git_rev():
    out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT,
                         capture_output=True, text=True)
    return out.stdout.strip() or "?"


def http_get(url, timeout=2.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read().decode("utf-8", "replace"), dict(r.getheaders())


def start(variant, envoy):
    name = variant.name
    cfg = WORK / f"{name}.yaml"
    text = (BENCH / "envoy.yaml.in").read_text().replace(
        "@HTTP_FILTERS@", variant.filters()).replace(
        "@CLUSTERS@", json.dumps([FLEET.cluster()] if variant.fleet else []))
    cfg.write_text("\n".join(line for line in text.splitlines()) + "\n")
    admin_file = WORK / f"{name}.admin"
    if admin_file.exists():
        admin_file.unlink()
    logf = open(WORK / f"{name}.log", "w")
    variant.log_path = WORK / f"{name}.log"
    variant.proc = subprocess.Popen(
        [envoy, "-c", str(cfg), "--concurrency", "1", "--disable-hot-restart",
         "--use-dynamic-base-id", "--log-level", "warn",
         "--admin-address-path", str(admin_file)],
        cwd=ROOT, stdout=logf, stderr=subprocess.STDOUT,
        preexec_fn=pin(ENVOY_CPU))
    logf.close()


def wait_ready(variant):
    admin_file = WORK / f"{variant.name}.admin"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if variant.proc.poll() is not None:
            tail = variant.log_path.read_text()[-3000:]
            die(f"Envoy for {variant.name} exited with {variant.proc.returncode}:\n{tail}")
        if admin_file.exists() and admin_file.read_text().strip():
            variant.admin = "http://" + admin_file.read_text().strip()
            try:
                status, _, _ = http_get(variant.admin + "/ready")
                if status == 200:
                    break
            except (urllib.error.URLError, OSError):
                pass
        time.sleep(0.05)
    else:
        die(f"Envoy for {variant.name} not ready after 60 s")
    _, body, _ = http_get(variant.admin + "/listeners?format=json")
    for listener in json.loads(body).get("listener_statuses", []):
        if listener.get("name") == "bench":
            variant.port = listener["local_address"]["socket_address"]["port_value"]
    if not variant.port:
        die(f"no listener port for {variant.name}: {body}")


def stop_all(variants):
    for v in variants:
        if v.proc and v.proc.poll() is None:
            v.proc.terminate()
    for v in variants:
        if v.proc:
            try:
                v.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                v.proc.kill()
                v.proc.wait()


def cpu_ticks(pid):
    """(utime, stime) of the whole process, in clock ticks."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    # fields[0] is field 3 (state): utime is field 14, stime field 15.
    return int(fields[11]), int(fields[12])


def rss_mib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(sorted_values, p):
    """Nearest rank."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def load(variant, h2load, n, log_file=None):
    cmd = [h2load, "--h1", "-n", str(n), "-c", str(CLIENTS), "-t", "1",
           f"http://127.0.0.1:{variant.port}{variant.path}"]
    if log_file:
        cmd.append(f"--log-file={log_file}")
    pid = variant.proc.pid
    client_before = children_cpu()
    fleet_before = FLEET.cpu_ticks() if variant.fleet else 0
    before = cpu_ticks(pid)
    t0 = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True,
                         preexec_fn=pin(LOAD_CPU))
    wall = time.monotonic() - t0
    after = cpu_ticks(pid)
    fleet_ticks = FLEET.cpu_ticks() - fleet_before if variant.fleet else 0
    user, system = after[0] - before[0], after[1] - before[1]
    client_cpu = children_cpu() - client_before
    text = out.stdout + out.stderr
    if out.returncode != 0:
        die(f"h2load failed on {variant.name}:\n{text}")
    req = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, "
                    r"(\d+) succeeded, (\d+) failed, (\d+) errored", text)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    rps = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", text)
    if not (req and codes and rps):
        die(f"could not read h2load's summary for {variant.name}:\n{text}")
    if int(req.group(4)) != n or int(codes.group(1)) != n:
        die(f"{variant.name}: not every request was answered 2xx:\n{text}")
    result = {
        "requests": n,
        "cpu_ticks": user + system,
        "user_ticks": user,
        "sys_ticks": system,
        "cpu_us_per_req": (user + system) * 1e6 / CLK_TCK / n,
        "user_us_per_req": user * 1e6 / CLK_TCK / n,
        "sys_us_per_req": system * 1e6 / CLK_TCK / n,
        "rps": float(rps.group(1)),
        "wall_s": wall,
        "envoy_util": (user + system) / CLK_TCK / wall,
        "client_util": client_cpu / wall,
        "fleet_us_per_req": fleet_ticks * 1e6 / CLK_TCK / n,
    }
    if log_file:
        lat = []
        with open(log_file) as f:
            for line in f:
                cols = line.split("\t")
                if len(cols) >= 3:
                    lat.append(int(cols[2]))
        lat.sort()
        if len(lat) != n:
            die(f"{variant.name}: h2load logged {len(lat)} requests, expected {n}")
        result["p50_us"] = percentile(lat, 50)
        result["p99_us"] = percentile(lat, 99)
        os.unlink(log_file)
    return result


def stats(variant):
    _, body, _ = http_get(variant.admin + "/stats")
    out = {}
    for line in body.splitlines():
        name, _, value = line.partition(": ")
        if ("rate_limit" in name or name.startswith("wasmcustom.")
                or name.startswith("wasm.")):
            try:
                out[name] = int(value)
            except ValueError:
                pass
    return out


def check_counters(variant):
    s = stats(variant)
    bad = {k: v for k, v in s.items()
           if v and (k.endswith(".rejected") or k.endswith(".shadow_rejected")
                     or k.endswith(".rate_limited") or k.endswith("store_errors")
                     or k.endswith("config_failures") or k.endswith("rls_failures")
                     or k.endswith("rls_fallbacks"))}
    if bad:
        die(f"{variant.name}: requests were limited or failed: {bad}")
    for counter in variant.counted:
        if s.get(counter, 0) < REQUESTS:
            die(f"{variant.name}: counter {counter} is {s.get(counter)}, "
                f"the filter did not count the load")
    if variant.name.startswith("okta-unmatched"):
        counted = {k: v for k, v in s.items() if k.endswith(".admitted") and v}
        if counted:
            die(f"okta-unmatched: the path matched a bucket after all: {counted}")
    variant.stats = {k: v for k, v in s.items() if v}


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Fleet:
    """redis-server and the test-fixture rate-limit service for okta-fleet."""

    def __init__(self):
        self.procs = []
        self.rls_port = None

    def cluster(self):
        addr = {"socket_address": {"address": "127.0.0.1", "port_value": self.rls_port}}
        return {"name": "ratelimit", "type": "STATIC", "connect_timeout": "0.25s",
                "typed_extension_protocol_options": {
                    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                        "explicit_http_config": {"http2_protocol_options": {}}}},
                "load_assignment": {"cluster_name": "ratelimit", "endpoints": [
                    {"lb_endpoints": [{"endpoint": {"address": addr}}]}]}}

    def start(self):
        redis = os.environ.get("REDIS_SERVER") or shutil.which("redis-server")
        if not redis:
            die("okta-fleet needs redis-server (`make redis-server`, or REDIS_SERVER=<path>)")
        log("bench: building the fixture rate-limit service and its config")
        out = subprocess.run(["make", "--no-print-directory", "rls-fixture"], cwd=ROOT,
                             capture_output=True, text=True)
        if out.returncode != 0 or not RLS_FIXTURE.exists():
            die(f"could not build tests/rls:\n{out.stdout}\n{out.stderr}")
        plugin = WORK / "okta-fleet.plugin.json"
        plugin.write_text(json.dumps(OKTA_FLEET))
        out = subprocess.run(["cargo", "run", "--release", "--quiet", "-p", "idp-ratelimit-cli",
                              "--", "rls-config", str(plugin), "--server", "envoy-ratelimit"],
                             cwd=ROOT, capture_output=True, text=True)
        if out.returncode != 0:
            die(f"idp-ratelimit rls-config failed:\n{out.stderr}")
        (WORK / "okta-fleet.config.yaml").write_text(out.stdout)
        redis_port, self.rls_port = free_port(), free_port()
        self.procs.append(subprocess.Popen(
            [redis, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=pin(LOAD_CPU)))
        self.procs.append(subprocess.Popen(
            [str(RLS_FIXTURE), "--config", str(WORK / "okta-fleet.config.yaml"),
             "--redis", f"127.0.0.1:{redis_port}", "--port", str(self.rls_port)],
            stdout=subprocess.DEVNULL, stderr=open(WORK / "rls.log", "w"),
            preexec_fn=pin(LOAD_CPU)))
        import socket
        deadline = time.monotonic() + 20
        for port in (redis_port, self.rls_port):
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), 0.2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        die(f"fleet service on {port} not listening")
                    time.sleep(0.05)

    def cpu_ticks(self):
        return sum(sum(cpu_ticks(p.pid)) for p in self.procs if p.poll() is None)

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                p.wait()


FLEET = Fleet()


def sample_headers(variant):
    url = f"http://127.0.0.1:{variant.port}{variant.path}"
    _, _, headers = http_get(url)
    variant.headers = sorted(f"{k.lower()}: {v}" for k, v in headers.items()
                             if "rate" in k.lower())


def build_probe():
    log("bench: building the no-op/probe proxy-wasm filter (bench/probe-filter)")
    out = subprocess.run(
        ["cargo", "build", "--release", "--quiet", "--target", "wasm32-wasip1",
         "--manifest-path", str(PROBE_DIR / "Cargo.toml"),
         "--target-dir", str(PROBE_TARGET)],
        cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0 or not PROBE_WASM.exists():
        die(f"could not build bench/probe-filter:\n{out.stdout}\n{out.stderr}")


def decision_bench():
    if DECISIONS <= 0:
        return None
    log(f"bench: decision_bench ({DECISIONS} decisions x 7 runs per case)")
    out = subprocess.run(
        ["cargo", "run", "--release", "--quiet", "--example", "decision_bench",
         "--", str(DECISIONS), "7"],
        cwd=ROOT, capture_output=True, text=True, preexec_fn=pin(ENVOY_CPU))
    if out.returncode != 0:
        die(f"decision_bench failed:\n{out.stdout}\n{out.stderr}")
    if out.stderr.strip():
        log(out.stderr.strip())
    return out.stdout.strip()


def med(values):
    return statistics.median(values) if values else float("nan")


def fmt(x, digits=1):
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


FLOOR_PROBES = ("floor-counted", "floor-unmatched")


def same_round_ratio(v, ref, variants):
    """What `v` adds to the floor's Envoy CPU per request as a multiple of
    what `ref` adds: per round, (v - floor) / (ref - floor), then the median
    over rounds."""
    floor = variants[0]
    values = []
    for r, f, n in zip(v.rounds, floor.rounds, ref.rounds):
        ref_added = n["cpu_us_per_req"] - f["cpu_us_per_req"]
        if ref_added > 0:
            values.append((r["cpu_us_per_req"] - f["cpu_us_per_req"]) / ref_added)
    return med(values) if values else float("nan")


def added_ratio(v, variants):
    """What an idp-ratelimit configuration (or a floor probe) adds to the
    floor, as a multiple of what the no-op wasm filter adds. None for any
    other configuration (or when noop-wasm did not run)."""
    noop = next((n for n in variants if n.name == "noop-wasm"), None)
    if (v.plugin is None and v.name not in FLOOR_PROBES) or noop is None:
        return None
    return same_round_ratio(v, noop, variants)


def floor_probe_ratio(v, variants):
    """What an idp-ratelimit configuration adds to the floor, as a multiple of
    what its floor probe adds (the least any filter doing its host work can
    cost): None where it has none, or the probe did not run."""
    probe = next((n for n in variants if n.name == v.floor_probe), None)
    if v.floor_probe is None or probe is None:
        return None
    return same_round_ratio(v, probe, variants)


def fmt_ratio(x):
    return "—" if x is None else fmt(x, 2)


def fmt_floor_ratio(v, variants):
    """"2.10 (floor-counted)", or — where the configuration has no floor probe."""
    x = floor_probe_ratio(v, variants)
    return "—" if x is None else f"{fmt(x, 2)} ({v.floor_probe})"


def buckets_counted(v):
    """(bucket, admitted) for each bucket the configuration counted in."""
    prefix, suffix = "wasmcustom.idp_ratelimit.", ".admitted"
    return [(k[len(prefix):-len(suffix)], n) for k, n in sorted(v.stats.items())
            if k.startswith(prefix) and k.endswith(suffix) and n]


def ratio_table(variants):
    """The short table `make bench` ends its output with."""
    lines = ["| configuration | Envoy CPU µs/req | added µs/req | added ÷ no-op added "
             "| added ÷ floor probe's added |",
             "|---|---:|---:|---:|---:|"]
    floor = med([r["cpu_us_per_req"] for r in variants[0].rounds])
    for v in variants:
        cpu = med([r["cpu_us_per_req"] for r in v.rounds])
        lines.append(f"| {v.name} | {fmt(cpu, 2)} | {fmt(cpu - floor, 2)} "
                     f"| {fmt_ratio(added_ratio(v, variants))} "
                     f"| {fmt_floor_ratio(v, variants)} |")
    return "\n".join(lines)


def report(variants, info, decisions):
    floor = variants[0]
    rounds = len(floor.rounds)

    def metric(v, key):
        return med([r[key] for r in v.rounds])

    def ratio(v, key):
        # Median over rounds of the ratio to the floor of the same round.
        return med([r[key] / f[key] for r, f in zip(v.rounds, floor.rounds)])

    lines = []
    add = lines.append
    add("# idp-ratelimit: cost inside Envoy")
    add("")
    add(f"Generated by `make bench` (bench/run.py) on {info['date']}.")
    add("")
    add("| | |")
    add("|---|---|")
    add(f"| CPU | {info['cpu']} ({info['cores']} cores), {info['mem']} RAM |")
    add(f"| OS | {info['os']} |")
    add(f"| Load average | {info['load_before']} before, {info['load_after']} after |")
    add(f"| Envoy | `{info['envoy']}` |")
    add(f"| Load generator | `{info['h2load']}` |")
    add(f"| Filter | `{info['wasm_path']}`: {info['wasm_bytes']} bytes "
        f"({info['wasm_bytes'] / 1024:.0f} KiB), git {info['git']} |")
    if info["probe_bytes"]:
        add(f"| No-op/probe filter | bench/probe-filter: {info['probe_bytes']} bytes "
            f"({info['probe_bytes'] / 1024:.0f} KiB) |")
    add(f"| Parameters | {rounds} interleaved rounds x {REQUESTS} requests per "
        f"configuration (after {WARMUP} warm-up requests each); h2load --h1, "
        f"{CLIENTS} keep-alive connections, 1 thread, pinned to CPU {LOAD_CPU}; "
        f"Envoy --concurrency 1 pinned to CPU {ENVOY_CPU}; direct_response "
        f"route; clock tick {1e6 / CLK_TCK:.0f} µs |")
    add("")
    add("## Summary (medians over rounds)")
    add("")
    add("| # | configuration | Envoy CPU µs/req | × floor | added ÷ no-op added "
        "| added ÷ floor probe's added | req/s "
        "| × floor | p50 µs | × floor | p99 µs | × floor |")
    add("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for i, v in enumerate(variants, 1):
        add(f"| {i} | {v.label} | {fmt(metric(v, 'cpu_us_per_req'), 2)} "
            f"| {fmt(ratio(v, 'cpu_us_per_req'), 2)} "
            f"| {fmt_ratio(added_ratio(v, variants))} "
            f"| {fmt_floor_ratio(v, variants)} | {fmt(metric(v, 'rps'), 0)} "
            f"| {fmt(ratio(v, 'rps'), 2)} | {fmt(metric(v, 'p50_us'), 0)} "
            f"| {fmt(ratio(v, 'p50_us'), 2)} | {fmt(metric(v, 'p99_us'), 0)} "
            f"| {fmt(ratio(v, 'p99_us'), 2)} |")
    add("")
    add("Ratios are the median over rounds of each round's value divided by the "
        "floor's value in the same round (so they can differ slightly from the "
        "ratio of the medians). *Added ÷ no-op added* is the issue-13 figure "
        "that travels between machines: per round, (configuration − floor) ÷ "
        "(noop-wasm − floor) in Envoy CPU per request, then the median over "
        "rounds (idp-ratelimit configurations and the floor probes only). "
        "*Added ÷ floor probe's added* is the same with, in place of noop-wasm, "
        "the floor probe doing the host work the configuration cannot avoid "
        "(bench/probe-filter, no other work): floor-counted for a counted "
        "request (one clock read, the request headers in one "
        "`proxy_get_header_map_pairs`, one shared-data get of a 104-byte cell "
        "and its CAS write, three response-header writes), floor-unmatched "
        "for a path no route matches (the header map only); how far the "
        "filter is from the least any filter doing that work can cost. "
        "Latency is h2load's per-request time (request "
        "sent to response complete) from `--log-file`, nearest-rank "
        "percentiles over all requests of a round. The load is closed-loop: "
        f"while Envoy saturates its core ({CLIENTS} connections always have a "
        "request waiting), p50 is mostly queueing and tracks "
        f"{CLIENTS} / req/s, and req/s tracks 1 / (CPU per request).")
    add("")
    util = med([r["envoy_util"] for v in variants for r in v.rounds])
    if util < 0.9:
        add(f"**Caution: noisy run.** Envoy was busy only {util:.0%} of the wall "
            "time of a load (median over all measurements, 'Envoy util' below), "
            "so something else held its core or the load generator's (load "
            f"average {info['load_before']} before, {info['load_after']} after). "
            "Requests per second and latency then measure the machine more "
            "than the filter (p99 near the scheduler's time slice, ~5 ms); CPU "
            "per request still compares configurations, with more spread.")
        add("")
    base = metric(floor, "cpu_us_per_req")
    add("Envoy CPU per request, split into user and kernel time, and what each "
        "configuration adds over the floor (differences of medians):")
    add("")
    add("| configuration | user µs/req | kernel µs/req | added µs/req | added user µs/req |")
    add("|---|---:|---:|---:|---:|")
    base_user = metric(floor, "user_us_per_req")
    for v in variants:
        add(f"| {v.name} | {fmt(metric(v, 'user_us_per_req'), 2)} "
            f"| {fmt(metric(v, 'sys_us_per_req'), 2)} "
            f"| {fmt(metric(v, 'cpu_us_per_req') - base, 2)} "
            f"| {fmt(metric(v, 'user_us_per_req') - base_user, 2)} |")
    add("")
    noop = next((v for v in variants if v.name == "noop-wasm"), None)
    probes = [v for v in variants if v.name.startswith("probe-")]
    if noop and probes:
        add("## Price of one host call (probe filter)")
        add("")
        add(f"Each probe configuration makes {PROBE_N} host calls of one kind per "
            "request in an otherwise no-op filter; the price of one call is its "
            f"Envoy CPU per request minus noop-wasm's, divided by {PROBE_N} "
            "(median over rounds of the same-round difference).")
        add("")
        add("| host call | µs per call |")
        add("|---|---:|")
        for v in probes:
            price = med([(r["cpu_us_per_req"] - n["cpu_us_per_req"]) / PROBE_N
                         for r, n in zip(v.rounds, noop.rounds)])
            add(f"| {v.name.removeprefix('probe-')} | {fmt(price, 2)} |")
        add("")
    if decisions:
        add("## Host-side cost of one decision (no Envoy, no wasm)")
        add("")
        add("`cargo run --release --example decision_bench`: `Engine::decide` "
            "(path normalisation, route match, bucket arithmetic, response "
            "headers) over the in-process `MemoryStore` (a Mutex'd HashMap "
            "that clones values: not Envoy's shared data), same configurations "
            "and paths as above, native code on the host.")
        add("")
        lines.extend(decisions.splitlines()[2:])
        add("")
    add("## Configurations")
    add("")
    for i, v in enumerate(variants, 1):
        add(f"{i}. **{v.name}**: {v.label}; request `GET {v.path}`.")
        if v.plugin is not None:
            add(f"   Plugin config: `{json.dumps(v.plugin)}`")
        add(f"   Rate-limit response headers seen: "
            f"{'; '.join(f'`{h}`' for h in v.headers) or '(none)'}")
    add("")
    add("Envoy configs: bench/envoy.yaml.in with bench/filter-local-ratelimit.yaml.in "
        "or bench/filter-wasm.yaml.in (rendered to bench/work/<name>.yaml).")
    add("")
    add("## Raw numbers per round")
    add("")
    add("Envoy util = Envoy CPU time / wall time of the load (1.0 = its core "
        "saturated); h2load util likewise for the load generator.")
    add("")
    add("| round | configuration | Envoy CPU ticks (user+sys) | CPU µs/req | req/s "
        "| p50 µs | p99 µs | wall s | Envoy util | h2load util |")
    add("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in range(rounds):
        for v in variants:
            x = v.rounds[r]
            add(f"| {r + 1} | {v.name} | {x['cpu_ticks']} ({x['user_ticks']}+{x['sys_ticks']}) | {fmt(x['cpu_us_per_req'], 2)} "
                f"| {fmt(x['rps'], 0)} | {x['p50_us']} | {x['p99_us']} "
                f"| {fmt(x['wall_s'], 2)} | {fmt(x['envoy_util'], 2)} "
                f"| {fmt(x['client_util'], 2)} |")
    add("")
    fleet = next((v for v in variants if v.fleet and v.rounds), None)
    local = next((v for v in variants if v.name == "okta" and v.rounds), None)
    if fleet and local:
        def vs(key):
            return med([f[key] - o[key] for f, o in zip(fleet.rounds, local.rounds)])
        add("## Fleet mode against local mode")
        add("")
        add("okta-fleet against okta (the same policy counted in this Envoy's shared "
            "data), medians over rounds of the per-round difference. The rate-limit "
            "service is the test fixture (tests/rls) over redis-server, both pinned "
            f"to CPU {LOAD_CPU} with h2load, so they compete with the load generator; "
            "a production envoyproxy/ratelimit or Limitador on its own host has other "
            "numbers.")
        add("")
        add("| | okta (local) | okta-fleet | added |")
        add("|---|---:|---:|---:|")
        for key, label, digits in (("p50_us", "p50 latency µs", 0),
                                   ("p99_us", "p99 latency µs", 0),
                                   ("cpu_us_per_req", "Envoy CPU µs/req", 2),
                                   ("rps", "req/s", 0)):
            add(f"| {label} | {fmt(metric(local, key), digits)} | "
                f"{fmt(metric(fleet, key), digits)} | {fmt(vs(key), digits)} |")
        add(f"| fixture RLS + redis CPU µs/req | | "
            f"{fmt(metric(fleet, 'fleet_us_per_req'), 2)} | |")
        add("")
    add("## Buckets counted")
    add("")
    add("Each idp-ratelimit configuration's `<bucket>.admitted` counters after the "
        "run (warm-up, header sample and rounds: "
        f"{WARMUP + 1 + rounds * REQUESTS} requests each), so whether the cost is "
        "flat in the number of buckets a request counts in can be read off the "
        "summary.")
    add("")
    add("| configuration | buckets counted | admitted |")
    add("|---|---:|---|")
    for v in variants:
        if v.plugin is None:
            continue
        counted = buckets_counted(v)
        add(f"| {v.name} | {len(counted)} | "
            f"{', '.join(f'`{b}` {n}' for b, n in counted) or '(none)'} |")
    add("")
    add("Envoy RSS after the run and non-zero rate-limit counters:")
    add("")
    for v in variants:
        counters = ", ".join(f"`{k}` {n}" for k, n in sorted(v.stats.items())
                             if k.startswith("wasmcustom.") or "rate_limit" in k)
        add(f"- {v.name}: {fmt(v.rss, 0)} MiB; {counters or 'no counters'}")
    add("")
    return "\n".join(lines)


# The profile build's sections of bench/RESULTS.md, one per label (git rev):
# `make bench` keeps them when it rewrites the file, `make profile` replaces
# only its own.
PROFILE_SECTION = re.compile(r"<!-- profile: (.*?) -->\n.*?<!-- /profile: \1 -->\n", re.S)


def kept_profile_sections():
    old = OUT.read_text() if OUT.exists() else ""
    return "".join("\n" + m.group(0) for m in PROFILE_SECTION.finditer(old))


def write_profile_section(label, body):
    old = OUT.read_text() if OUT.exists() else "# idp-ratelimit: cost inside Envoy\n"
    block = f"<!-- profile: {label} -->\n{body.rstrip()}\n<!-- /profile: {label} -->\n"
    kept = [m for m in PROFILE_SECTION.finditer(old) if m.group(1) == label]
    if kept:
        m = kept[0]
        new = old[:m.start()] + block + old[m.end():]
    else:
        new = old.rstrip("\n") + "\n\n" + block
    OUT.write_text(new)


def build_profile_wasm():
    log("bench: building the profile .wasm (--features profile, target/profile)")
    out = subprocess.run(
        ["cargo", "build", "--release", "--quiet", "--target", "wasm32-wasip1",
         "-p", "idp-ratelimit", "--lib", "--features", "profile",
         "--target-dir", str(PROFILE_TARGET)],
        cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0 or not PROFILE_WASM.exists():
        die(f"could not build the profile .wasm:\n{out.stdout}\n{out.stderr}")


PROFILE_PREFIX = "wasmcustom.idp_ratelimit.profile."
PROFILE_CALLBACKS = ("create_http_context", "on_http_request_headers",
                     "on_http_response_headers", "on_log", "on_done")
PROFILE_SEGMENTS = (("read_and_route", "start → Routed: clock, :method, :path, normalise, route"),
                    ("count", "Routed → Counted: scope keys, the shared-data transactions"),
                    ("respond", "Counted → Decided: the verdict and its response headers"),
                    ("apply", "Decided → return: metrics, peaks, access-log property"))
PROFILE_HOSTS = ("request_header_first", "request_header", "property", "clock", "shared_data_get", "shared_data_set",
                 "metric", "set_property", "response_header_read", "response_header_write",
                 "send_http_response")


def profile_snapshot(variant):
    return {k[len(PROFILE_PREFIX):]: n for k, n in stats(variant).items()
            if k.startswith(PROFILE_PREFIX)}


def profile_numbers(before, after, n):
    """µs per request from the profile counters between two snapshots, with
    the profiler's own clock reads taken out: each timed window is charged
    one read's price for its bounds and one per read inside it."""
    def g(key):
        return after.get(key, 0) - before.get(key, 0)
    # A timed clock call spans two reads' worth (the tail of the read before
    # it, itself, the head of the read after): half its interval is the price
    # of one read where the filter really reads it. The tick's back-to-back
    # reads (colder) only when the filter made no clock call.
    if g("host.clock.calls"):
        clock_ns = g("host.clock.ns") / g("host.clock.calls") / 2
    else:
        clock_ns = g("clock.ns") / g("clock.calls") if g("clock.calls") else 0.0

    # The profiler's wasm-side work per timed host call, mark or window start.
    bookkeeping_ns = (g("bookkeeping.ns") / g("bookkeeping.calls")
                      if g("bookkeeping.calls") else 0.0)

    def window(group, name):
        ns, calls, host_ns, host_calls, reads = (
            g(f"{group}.{name}.{f}") for f in ("ns", "calls", "host_ns", "host_calls", "reads"))
        units = reads - host_calls + calls
        total = ns - (reads + calls) * clock_ns - units * bookkeeping_ns
        host = host_ns - host_calls * clock_ns
        return {"total": total / n / 1e3, "host": host / n / 1e3,
                "self": (total - host) / n / 1e3, "calls": calls / n,
                "host_calls": host_calls / n, "reads": (reads + 2 * calls) / n,
                "overhead": ((reads + 2 * calls) * clock_ns + units * bookkeeping_ns) / n / 1e3}

    hosts = {}
    for kind in PROFILE_HOSTS:
        ns, calls = g(f"host.{kind}.ns"), g(f"host.{kind}.calls")
        true = ns - calls * clock_ns
        hosts[kind] = {"us": true / n / 1e3, "calls": calls / n,
                       "ns_per_call": true / calls if calls else float("nan")}
    callbacks = {c: window("callback", c) for c in PROFILE_CALLBACKS}
    return {
        "clock_ns": clock_ns,
        "bookkeeping_ns": bookkeeping_ns,
        "clock_tick_ns": g("clock.ns") / g("clock.calls") if g("clock.calls") else float("nan"),
        "callbacks": callbacks,
        "segments": {name: window("segment", name) for name, _ in PROFILE_SEGMENTS},
        "hosts": hosts,
        "reads": sum(c["reads"] for c in callbacks.values()),
        "overhead": sum(c["overhead"] for c in callbacks.values()),
    }


def median_tree(trees):
    """The median over rounds of every number in a nest of dicts."""
    first = trees[0]
    if isinstance(first, dict):
        return {k: median_tree([t[k] for t in trees]) for k in first}
    return med(trees)


def profile_report(variants, profiled, info):
    floor = variants[0]
    noop = next(v for v in variants if v.name == "noop-wasm")

    def cpu(v):
        return med([r["cpu_us_per_req"] for r in v.rounds])

    def added(v):
        # Median over rounds of the same-round difference to the floor.
        return med([r["cpu_us_per_req"] - f["cpu_us_per_req"]
                    for r, f in zip(v.rounds, floor.rounds)])

    noop_added = added(noop)
    cols = [v for v in variants if v.name in profiled]
    nums = {v.name: profiled[v.name] for v in cols}
    lines = []
    add = lines.append
    add(f"## Where the µs go, per phase ({info['label']})")
    add("")
    add(f"`make profile` (BENCH_PROFILE=1 bench/run.py) on {info['date']}: the filter built "
        f"with `--features profile` ({info['wasm_bytes']} bytes), {len(floor.rounds)} "
        f"interleaved rounds × {REQUESTS} requests per configuration, Envoy "
        "`--concurrency 1`, load as in the summary above (same machine, load average "
        f"{info['load_before']} before). Wasm-side timers read the host's nanosecond clock "
        "(`proxy_get_current_time_nanoseconds`) around each callback, each host call the "
        "glue makes and the `Phase` marks of `Engine::decide` (src/profile.rs); the sums are "
        "exported as `idp_ratelimit.profile.*` counters and read from /stats around each "
        "round; medians over rounds of µs per request. The profiler's own clock reads "
        f"({fmt(nums[cols[0].name]['clock_ns'], 0)} ns each in {cols[0].name}'s callbacks: "
        "half a timed clock call; "
        f"{fmt(nums[cols[0].name]['clock_tick_ns'], 0)} ns back to back on the tick) are "
        "taken out of every figure, and so is its bookkeeping per timed call "
        f"({fmt(nums[cols[0].name]['bookkeeping_ns'], 0)} ns, timed on the tick). "
        "*Wasm self* = a window's time minus the host calls "
        "inside it. The timers are wall clock: time the worker spends preempted inside a "
        "callback counts in it, so a busy machine inflates them (Envoy util in the log).")
    add("")
    add("| µs per request | " + " | ".join(v.name for v in cols) + " |")
    add("|---|" + "---:|" * len(cols))

    def row(label, f):
        add(f"| {label} | " + " | ".join(f(nums[v.name], v) for v in cols) + " |")

    def est_added(x, v):
        return added(v) - x["overhead"]

    def in_callbacks(x, key):
        return sum(c[key] for c in x["callbacks"].values())

    row("Envoy CPU, profile build", lambda x, v: fmt(cpu(v), 2))
    row("added over the floor (same-round difference), less the profiler's own work",
        lambda x, v: fmt(est_added(x, v), 2))
    row(f"… of which any wasm filter's (noop-wasm added, {fmt(noop_added, 2)})",
        lambda x, v: fmt(noop_added, 2))
    row("… in the filter's callbacks", lambda x, v: f"**{fmt(in_callbacks(x, 'total'), 2)}**")
    row("… … host calls", lambda x, v: fmt(in_callbacks(x, "host"), 2))
    row("… … wasm self", lambda x, v: f"**{fmt(in_callbacks(x, 'self'), 2)}**")
    row("… rest (outside the callbacks: VM entries, SDK dispatch, Envoy's side, beyond the no-op's)",
        lambda x, v: fmt(est_added(x, v) - noop_added - in_callbacks(x, "total"), 2))
    row("on_http_request_headers: total", lambda x, v: fmt(x["callbacks"]["on_http_request_headers"]["total"], 2))
    row("… host calls (calls/req)",
        lambda x, v: f"{fmt(x['callbacks']['on_http_request_headers']['host'], 2)} "
                     f"({fmt(x['callbacks']['on_http_request_headers']['host_calls'], 1)})")
    row("… wasm self", lambda x, v: fmt(x["callbacks"]["on_http_request_headers"]["self"], 2))
    for name, what in PROFILE_SEGMENTS:
        row(f"… `{name}` ({what}): total / self",
            lambda x, v, name=name: f"{fmt(x['segments'][name]['total'], 2)} / "
                                    f"{fmt(x['segments'][name]['self'], 2)}")
    for cb in PROFILE_CALLBACKS:
        if cb == "on_http_request_headers":
            continue
        row(f"{cb}: total / self (calls/req)",
            lambda x, v, cb=cb: f"{fmt(x['callbacks'][cb]['total'], 2)} / "
                                f"{fmt(x['callbacks'][cb]['self'], 2)} "
                                f"({fmt(x['callbacks'][cb]['calls'], 1)})")
    for kind in PROFILE_HOSTS:
        if all(nums[v.name]["hosts"][kind]["calls"] == 0 for v in cols):
            continue
        row(f"host `{kind}`: µs (calls × ns each)",
            lambda x, v, kind=kind: "—" if not x["hosts"][kind]["calls"] else
            f"{fmt(x['hosts'][kind]['us'], 2)} ({fmt(x['hosts'][kind]['calls'], 1)} × "
            f"{fmt(x['hosts'][kind]['ns_per_call'], 0)})")
    row("profiler: clock reads per request; its own µs per request (taken out above)",
        lambda x, v: f"{fmt(x['reads'], 1)}; {fmt(x['overhead'], 2)}")
    add("")
    add("Not timed: the SDK's dispatch around each callback, `proxy_on_context_create` "
        "and `proxy_on_delete` themselves (the context's allocation and drop), and "
        "V8's entry into the VM; those are in the *rest* row, with whatever Envoy does "
        "for the filter outside its host calls. Host-call times are as the wasm code sees "
        "them (the call's whole round trip through V8 and Envoy); `request_header_first` is "
        "each callback's first request-header read, `request_header` the later ones.")
    add("")
    return "\n".join(lines)


def main():
    WORK.mkdir(parents=True, exist_ok=True)
    if PROFILE:
        build_profile_wasm()
        ACTIVE_WASM[0] = PROFILE_WASM
    elif not WASM.exists():
        die(f"{WASM} missing; run `make build`")
    envoy = envoy_bin()
    h2load = ensure_h2load()
    wanted = [s.strip() for s in os.environ.get("BENCH_CONFIGS", "").split(",") if s.strip()]
    unknown = set(wanted) - {v.name for v in VARIANTS}
    if unknown:
        die(f"unknown BENCH_CONFIGS {sorted(unknown)}; "
            f"known: {', '.join(v.name for v in VARIANTS)}")
    if PROFILE:
        wanted = [w for w in wanted or PROFILE_CONFIGS
                  if w in PROFILE_CONFIGS or w in ("floor", "noop-wasm")]
    elif BASELINE_WASM and wanted:
        # Each configuration named runs on the baseline build too.
        known = {v.name for v in VARIANTS}
        wanted += [f"{w}-before" for w in wanted if f"{w}-before" in known]
    variants = [v for v in VARIANTS if v.name == "floor" or not wanted or v.name in wanted]
    # The ratios need their references in the same run: the floor probes
    # join any idp-ratelimit configuration (not under BENCH_PROFILE, whose
    # report does not use them) ...
    if not PROFILE and any(v.plugin is not None for v in variants):
        variants += [v for v in VARIANTS if v.name in FLOOR_PROBES and v not in variants]
    # ... and the no-op filter (added ÷ no-op added).
    if any(v.plugin is not None or v.name in FLOOR_PROBES for v in variants) and not any(
            v.name == "noop-wasm" for v in variants):
        variants += [v for v in VARIANTS if v.name == "noop-wasm"]

    if any(v.name == "noop-wasm" or v.name.startswith("probe-") or v.name in FLOOR_PROBES
           for v in variants):
        build_probe()
    if any(v.name.endswith("-guarded") for v in variants):
        build_cli()
    if any(v.name.startswith("probe-") for v in variants) and not any(
            v.name == "noop-wasm" for v in variants):
        die("the probe-* configurations are priced against noop-wasm: run it too")
    model, cores, mem, osname = machine()
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": model, "cores": cores, "mem": mem, "os": osname,
        "envoy": first_line([envoy, "--version"]).replace(f"{envoy}  ", "envoy "),
        "h2load": first_line([h2load, "--version"]),
        "wasm_path": WASM.relative_to(ROOT), "wasm_bytes": WASM.stat().st_size,
        "git": git_rev(),
        "probe_bytes": PROBE_WASM.stat().st_size if PROBE_WASM.exists() else None,
        "load_before": loadavg(),
    }
    if PROFILE:
        info["label"] = os.environ.get("BENCH_PROFILE_LABEL") or f"git {info['git']}"
        info["wasm_bytes"] = PROFILE_WASM.stat().st_size
    decisions = None if PROFILE else decision_bench()
    if decisions:
        print(decisions, flush=True)
        print(flush=True)

    t_start = time.monotonic()
    try:
        if any(v.fleet for v in variants):
            FLEET.start()
        for v in variants:
            start(v, envoy)
        for v in variants:
            wait_ready(v)
            sample_headers(v)
            log(f"bench: {v.name}: Envoy pid {v.proc.pid} on :{v.port}; warming up")
            if WARMUP > 0:
                load(v, h2load, WARMUP)
        # The profile counters are flushed on the 1 s tick: a snapshot taken
        # as a configuration's round starts holds all of its previous round
        # (the other configurations' loads ran in between).
        profiled = [v for v in variants if v.plugin is not None] if PROFILE else []
        snapshots = {v.name: [] for v in profiled}
        if profiled:
            time.sleep(1.5)
        for r in range(ROUNDS):
            for v in variants:
                if v.name in snapshots:
                    snapshots[v.name].append(profile_snapshot(v))
                res = load(v, h2load, REQUESTS, WORK / f"{v.name}.h2load.tsv")
                v.rounds.append(res)
                log(f"bench: round {r + 1}/{ROUNDS} {v.name:15} "
                    f"{res['cpu_us_per_req']:6.2f} µs/req {res['rps']:8.0f} req/s "
                    f"p50 {res['p50_us']} µs p99 {res['p99_us']} µs "
                    f"(Envoy util {res['envoy_util']:.2f}, h2load {res['client_util']:.2f})")
        if profiled:
            time.sleep(1.5)
            profiled = {}
            for name, snaps in snapshots.items():
                v = next(x for x in variants if x.name == name)
                snaps.append(profile_snapshot(v))
                profiled[name] = median_tree([profile_numbers(a, b, REQUESTS)
                                              for a, b in zip(snaps, snaps[1:])])
        for v in variants:
            check_counters(v)
            v.rss = rss_mib(v.proc.pid)
    finally:
        stop_all(variants)
        FLEET.stop()
    log(f"bench: Envoy part took {time.monotonic() - t_start:.0f} s")
    info["load_after"] = loadavg()

    if PROFILE:
        text = profile_report(variants, profiled, info)
        write_profile_section(info["label"], text)
        print(text)
        log(f"bench: profile section written to {OUT}")
        return
    text = report(variants, info, decisions)
    OUT.write_text(text + kept_profile_sections())
    print(text)
    print("Added cost over the floor, as a multiple of the no-op wasm filter's "
          "and of the configuration's floor probe's (median over rounds):")
    print(ratio_table(variants))
    log(f"bench: written to {OUT.relative_to(ROOT) if OUT.is_relative_to(ROOT) else OUT}")


if __name__ == "__main__":
    main()
