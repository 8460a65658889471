// A stub proxy-wasm host in Node.js (V8, as in Envoy): loads a filter .wasm,
// configures it, and drives N requests through proxy_on_context_create ->
// proxy_on_request_headers -> proxy_on_response_headers -> proxy_on_log ->
// proxy_on_done -> proxy_on_delete, with shared data, metrics and header maps
// kept in JS. It prices the wasm side alone: host calls here cost next to
// nothing, so the time is the filter's own code, and `node --cpu-prof` on it
// (bench/wasm_profile.py) names the functions that take it.
//
//   node --no-liftoff bench/wasm_host.mjs FILTER.wasm CONFIG.json METHOD PATH N [PROFILE]
//
// With PROFILE, the timed requests (not the configure, not the warm-up) run
// under V8's sampling profiler and its .cpuprofile is written there.
// Prints one JSON line: {"ns_per_request": ..., "statuses": {...}, ...}.
// A benchmark tool, not a test: nothing here asserts on time.

import { readFileSync, writeFileSync } from "node:fs";
import { WASI } from "node:wasi";

const [wasmPath, configPath, method, path, nArg, profileOut] = process.argv.slice(2);
const N = Number(nArg || 100000);
const config = readFileSync(configPath);
const enc = new TextEncoder();
const dec = new TextDecoder();

let instance;
let memory;
// Views of the filter's memory, renewed only when it grows.
let viewBuffer, u8View, dataView;
function renew() {
  if (viewBuffer !== memory.buffer) {
    viewBuffer = memory.buffer;
    u8View = new Uint8Array(viewBuffer);
    dataView = new DataView(viewBuffer);
  }
}
const u8 = () => { renew(); return u8View; };
const dv = () => { renew(); return dataView; };
const str = (ptr, len) => dec.decode(u8().subarray(ptr, ptr + len));
const bytes = (ptr, len) => u8().slice(ptr, ptr + len);

/** Copies `data` into wasm memory as the host does (the filter's allocator). */
function give(data, ptrOut, sizeOut) {
  const alloc = instance.exports.malloc || instance.exports.proxy_on_memory_allocate;
  const p = data.length === 0 ? 0 : alloc(data.length);
  if (data.length) u8().set(data, p);
  dv().setUint32(ptrOut, p, true);
  dv().setUint32(sizeOut, data.length, true);
}

function serializeMap(pairs) {
  const parts = pairs.map(([k, v]) => [enc.encode(k), enc.encode(v)]);
  let size = 4 + parts.length * 8;
  for (const [k, v] of parts) size += k.length + v.length + 2;
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  view.setUint32(0, parts.length, true);
  let o = 4;
  for (const [k, v] of parts) {
    view.setUint32(o, k.length, true);
    view.setUint32(o + 4, v.length, true);
    o += 8;
  }
  for (const [k, v] of parts) {
    out.set(k, o); o += k.length + 1;
    out.set(v, o); o += v.length + 1;
  }
  return out;
}

const shared = new Map(); // key -> {value: Uint8Array, cas: number}
let casSeq = 1;
const metrics = [];
const statuses = {};
let requestHeaders = [];
let requestMap = new Uint8Array(0);
let responseHeaders = [];
let localReplies = 0;
const logs = [];
let nowNs = 1767225600000000000n;

const OK = 0, NOT_FOUND = 1, CAS_MISMATCH = 8;

const env = {
  proxy_log(level, p, n) { if (level >= 3) logs.push(str(p, n)); return OK; },
  proxy_get_log_level(out) { dv().setUint32(out, 2, true); return OK; },
  proxy_get_current_time_nanoseconds(out) { dv().setBigUint64(out, nowNs, true); return OK; },
  proxy_set_tick_period_milliseconds() { return OK; },
  proxy_get_buffer_bytes(type, start, max, ptrOut, sizeOut) {
    if (type !== 7) return NOT_FOUND; // PluginConfiguration
    give(config, ptrOut, sizeOut);
    return OK;
  },
  proxy_get_header_map_pairs(type, ptrOut, sizeOut) {
    give(type === 0 ? requestMap : serializeMap(responseHeaders), ptrOut, sizeOut);
    return OK;
  },
  proxy_get_header_map_value(type, kp, kn, ptrOut, sizeOut) {
    const key = str(kp, kn);
    const map = type === 0 ? requestHeaders : responseHeaders;
    const hit = map.find(([k]) => k === key);
    if (!hit) return NOT_FOUND;
    give(enc.encode(hit[1]), ptrOut, sizeOut);
    return OK;
  },
  proxy_add_header_map_value(type, kp, kn, vp, vn) {
    responseHeaders.push([str(kp, kn), str(vp, vn)]); return OK;
  },
  proxy_replace_header_map_value(type, kp, kn, vp, vn) {
    const key = str(kp, kn);
    responseHeaders = responseHeaders.filter(([k]) => k !== key);
    responseHeaders.push([key, str(vp, vn)]);
    return OK;
  },
  proxy_remove_header_map_value(type, kp, kn) {
    const key = str(kp, kn);
    responseHeaders = responseHeaders.filter(([k]) => k !== key);
    return OK;
  },
  proxy_set_header_map_pairs() { return OK; },
  proxy_get_property(pp, pn, ptrOut, sizeOut) {
    const name = str(pp, pn).split("\0").filter(Boolean).join(".");
    const values = { plugin_name: "idp_ratelimit", "source.address": "127.0.0.1:40000" };
    if (!(name in values)) return NOT_FOUND;
    give(enc.encode(values[name]), ptrOut, sizeOut);
    return OK;
  },
  proxy_set_property() { return OK; },
  proxy_get_shared_data(kp, kn, ptrOut, sizeOut, casOut) {
    const e = shared.get(str(kp, kn));
    if (!e) return NOT_FOUND;
    give(e.value, ptrOut, sizeOut);
    dv().setUint32(casOut, e.cas, true);
    return OK;
  },
  proxy_set_shared_data(kp, kn, vp, vn, cas) {
    const key = str(kp, kn);
    const e = shared.get(key);
    if (cas !== 0 && e && e.cas !== cas) return CAS_MISMATCH;
    shared.set(key, { value: bytes(vp, vn), cas: casSeq++ });
    return OK;
  },
  proxy_define_metric(type, np, nn, idOut) {
    metrics.push(0);
    dv().setUint32(idOut, metrics.length - 1, true);
    return OK;
  },
  proxy_increment_metric(id, by) { metrics[id] += Number(by); return OK; },
  proxy_record_metric(id, v) { metrics[id] = Number(v); return OK; },
  proxy_get_metric(id, out) { dv().setBigUint64(out, BigInt(metrics[id] || 0), true); return OK; },
  proxy_send_local_response(status) { localReplies++; statuses[status] = (statuses[status] || 0) + 1; return OK; },
  proxy_continue_stream() { return OK; },
  proxy_grpc_call() { return NOT_FOUND; },
  proxy_grpc_cancel() { return OK; },
  proxy_http_call() { return NOT_FOUND; },
  proxy_done() { return OK; },
  proxy_set_effective_context() { return OK; },
};

const module = new WebAssembly.Module(readFileSync(wasmPath));
const wasi = new WASI({ version: "preview1", args: [], env: {} });
const imports = { wasi_snapshot_preview1: wasi.wasiImport, env: {} };
for (const imp of WebAssembly.Module.imports(module)) {
  if (imp.module !== "env" || imp.kind !== "function") continue;
  imports.env[imp.name] = env[imp.name] || (() => { throw new Error(`host call ${imp.name} not stubbed`); });
}
instance = new WebAssembly.Instance(module, imports);
memory = instance.exports.memory;
wasi.initialize(instance);
const x = instance.exports;

const ROOT = 1;
x.proxy_on_context_create(ROOT, 0);
if (x.proxy_on_vm_start) x.proxy_on_vm_start(ROOT, 0);
if (!x.proxy_on_configure(ROOT, config.length)) {
  console.error("configure refused:", logs.join("\n"));
  process.exit(1);
}

requestHeaders = [
  [":authority", "127.0.0.1:10000"], [":path", path], [":method", method],
  [":scheme", "http"], ["user-agent", "h2load nghttp2/1.52.0"],
  ["x-forwarded-proto", "http"], ["x-request-id", "4a8e7c4c-2f5e-4b0e-9c1a-0d6c2b7a9e11"],
];
// Serialised once: the host's own cost is not what this measures.
requestMap = serializeMap(requestHeaders);
const upstream = [[":status", "200"], ["content-length", "0"], ["date", "Tue, 01 Dec 2026 00:00:00 GMT"]];

function one(ctx) {
  x.proxy_on_context_create(ctx, ROOT);
  responseHeaders = upstream.slice();
  const action = x.proxy_on_request_headers(ctx, requestHeaders.length, 1);
  if (action === 0) {
    x.proxy_on_response_headers(ctx, responseHeaders.length, 1);
    statuses[200] = (statuses[200] || 0) + 1;
  }
  x.proxy_on_log(ctx);
  x.proxy_on_done(ctx);
  x.proxy_on_delete(ctx);
}

let ctx = 2;
const WARMUP = Math.min(20000, N);
for (let i = 0; i < WARMUP; i++) { nowNs += 20000n; one(ctx++); }
for (const k of Object.keys(statuses)) delete statuses[k];
let session;
if (profileOut) {
  const inspector = await import("node:inspector/promises");
  session = new inspector.Session();
  session.connect();
  await session.post("Profiler.enable");
  await session.post("Profiler.setSamplingInterval", { interval: 50 });
  await session.post("Profiler.start");
}
const start = process.hrtime.bigint();
for (let i = 0; i < N; i++) { nowNs += 20000n; one(ctx++); }
const ns = Number(process.hrtime.bigint() - start) / N;
if (session) {
  const { profile } = await session.post("Profiler.stop");
  writeFileSync(profileOut, JSON.stringify(profile));
}
console.log(JSON.stringify({
  ns_per_request: Math.round(ns), requests: N, statuses, last_response_headers: responseHeaders,
  warnings: logs.slice(0, 5),
}));
