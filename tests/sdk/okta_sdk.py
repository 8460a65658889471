"""Okta's official Python SDK (PyPI `okta`) against the filter: usage `okta_sdk.py PORT`.

Run by tests/sdk_e2e.rs against an Envoy whose filter has {"vendor": "okta"} with the bucket
okta.management.users (GET /api/v1/users) overridden to 2 x LIMIT requests per WINDOW seconds,
of which the SDK's one API token may use LIMIT (Okta's default per-principal share, 50%).
Needs OKTA_TESTING_TESTINGDISABLEHTTPSCHECK=true (plain http) and no okta.yaml in the working
directory or in $HOME/.okta (the test runs it with a temporary HOME and cwd).

What the SDK does on a 429 (okta/request_executor.py): it needs `Date` (parsed as
"%a, %d %b %Y %H:%M:%S GMT") and `X-Rate-Limit-Reset` (epoch seconds), sleeps
reset - date + 1 seconds, and resends with X-Okta-Retry-For (the 429's X-Okta-Request-Id) and
X-Okta-Retry-Count, at most rateLimit.maxRetries times. The filter's Reset is the window's end
rounded down, as Okta's is, so that extra second is what carries the retry past the window.

Steps (all on one fixed window, which opens at the first request):
  1. LIMIT calls with the retrying client: admitted.
  2. One call with a client that has maxRetries 0: the SDK hands back the filter's 429 as an
     OktaAPIError (E0000047) without retrying.
  3. One call with the retrying client: 429, a wait of reset - date + 1 s, one retry, success.
With OKTA_SDK_MODE=concurrency (against the `slow` listener of tests/slow_listener, the
concurrency limit overridden to 1), instead: one request held upstream fills the org's place
in flight; a call with maxRetries 0 gets Okta's concurrency 429 (X-Rate-Limit-Limit 0,
Remaining 0); a retrying call gets it too, the SDK logs "Concurrent limit rate exceeded"
(request_executor.py: Limit 0 and Remaining 0 mean Okta's concurrency limit), waits
Reset - Date + 1 s and succeeds once the held request is done.
Every HTTP attempt is recorded at the SDK's transport (HTTPClient.send_request), so the script
sees the real request headers and measures the gap between the 429 and the retry.

The harness's upstream answers 200 "ok\\n", which is not JSON; the header x-upstream-status: 201
selects its 201 "{}" instead, which list_users accepts.

Exits 0 only if every check passed; prints each check and the attempts either way.
"""

import asyncio
import email.utils
import logging
import os
import socket
import sys
import time

os.environ.setdefault("OKTA_TESTING_TESTINGDISABLEHTTPSCHECK", "true")

from okta import http_client  # noqa: E402
from okta.client import Client  # noqa: E402
from okta.errors.okta_api_error import OktaAPIError  # noqa: E402

from sdkcheck import ATTEMPTS, SLACK, check, finish  # noqa: E402

LIMIT = 2  # must match the override in tests/sdk_e2e.rs
WINDOW = 3  # seconds; must match the override in tests/sdk_e2e.rs
PORT = int(sys.argv[1])



_send = http_client.HTTPClient.send_request


async def _recording_send(self, request):
    sent = {k.lower(): v for k, v in {**self._default_headers, **request["headers"]}.items()}
    rec = {"method": request["method"], "url": request["url"], "req": sent,
           "t_sent": time.monotonic(), "wall_sent": time.time()}
    result = await _send(self, request)
    resp = result[1]
    rec["t_done"] = time.monotonic()
    rec["status"] = resp.status if resp is not None else None
    rec["resp"] = {k.lower(): v for k, v in resp.headers.items()} if resp is not None else {}
    rec["error"] = result[3]
    ATTEMPTS.append(rec)
    return result


http_client.HTTPClient.send_request = _recording_send


def client(max_retries, log=False):
    config = {
        "orgUrl": f"http://127.0.0.1:{PORT}",
        "token": "sdk-e2e-token",
        "rateLimit": {"maxRetries": max_retries},
    }
    if log:  # the SDK's own switch; off, its logger is disabled
        config["logging"] = {"enabled": True, "logLevel": logging.INFO}
    c = Client(config)
    c.set_custom_headers({"x-upstream-status": "201"})
    return c


def show(label, attempts):
    print(f"  {label}:")
    prev = None
    for a in attempts:
        gap = "" if prev is None else f" (+{a['t_sent'] - prev['t_done']:.3f} s after the previous)"
        keep = ("date", "x-rate-limit-limit", "x-rate-limit-remaining", "x-rate-limit-reset",
                "x-okta-request-id")
        resp = {k: a["resp"][k] for k in keep if k in a["resp"]}
        retry = {k: v for k, v in a["req"].items() if k.startswith("x-okta-retry")}
        scheme = a["req"].get("authorization", "(no Authorization)").split(" ")[0]
        print(f"    {a['method']} {a['url']} [{scheme}] {retry} -> {a['status']}{gap} {resp}")
        prev = a


async def call(c, label):
    start = len(ATTEMPTS)
    t0 = time.monotonic()
    result = await c.list_users()
    took = time.monotonic() - t0
    attempts = ATTEMPTS[start:]
    show(f"{label}: {len(attempts)} attempt(s) in {took:.3f} s", attempts)
    return result, attempts, took


async def main():
    patient = client(max_retries=2)
    impatient = client(max_retries=0)

    # 1. Fill the window.
    for i in range(LIMIT):
        (_, resp, err), attempts, _ = await call(patient, f"call {i + 1}")
        check(err is None and [a["status"] for a in attempts] == [201],
              f"call {i + 1} admitted in one attempt (err={err!r})")

    # 2. No retries allowed: the SDK returns the 429 as an OktaAPIError.
    (_, resp, err), attempts, _ = await call(impatient, "no-retry call")
    check([a["status"] for a in attempts] == [429], "no-retry call: one attempt, refused with 429")
    check(isinstance(err, OktaAPIError) and err.status == 429 and err.error_code == "E0000047",
          f"no-retry call: the SDK reports OktaAPIError 429 E0000047 (got {err!r})")
    if isinstance(err, OktaAPIError):
        rid = attempts[0]["resp"].get("x-okta-request-id") if attempts else None
        check(bool(rid) and len(rid) == 32 and err.error_id != rid
              and str(err.error_id).startswith("oae"),
              f"no-retry call: errorId {err.error_id!r} is an `oae` id, not the "
              f"X-Okta-Request-Id {rid!r} (32 hex digits), as Okta's are")

    # 3. The retrying client: 429, wait, retry, success.
    (_, resp, err), attempts, took = await call(patient, "retrying call")
    statuses = [a["status"] for a in attempts]
    check(err is None, f"retrying call: the SDK succeeded (err={err!r})")
    check(statuses == [429, 201], f"retrying call: attempts were 429 then 201 (got {statuses})")
    if len(attempts) != 2 or statuses[0] != 429:
        return
    first, retry = attempts
    h = first["resp"]
    date_s = h.get("date", "")
    parsed = email.utils.parsedate_to_datetime(date_s) if date_s else None
    check(date_s.endswith(" GMT") and parsed is not None,
          f"429 Date {date_s!r} is an IMF-fixdate in GMT")
    check(h.get("x-rate-limit-reset", "").isdigit(),
          f"429 X-Rate-Limit-Reset {h.get('x-rate-limit-reset')!r} is integer epoch seconds")
    check(h.get("x-rate-limit-limit") == str(LIMIT) and h.get("x-rate-limit-remaining") == "0",
          f"429 X-Rate-Limit-Limit/Remaining are {LIMIT}/0")
    if parsed is None or not h.get("x-rate-limit-reset", "").isdigit():
        return
    date = parsed.timestamp()
    reset = int(h["x-rate-limit-reset"])
    check(abs(date - first["wall_sent"]) <= 2, f"429 Date is the current time ({date_s})")
    expected = reset - date + 1  # what the SDK computes
    check(1 <= expected <= WINDOW + 1,
          f"SDK's computed wait reset - date + 1 = {expected:.0f} s is within a {WINDOW} s window (+1 s)")
    gap = retry["t_sent"] - first["t_done"]
    check(expected - 0.05 <= gap <= expected + SLACK,
          f"retry sent {gap:.3f} s after the 429 (expected {expected:.0f} s)")
    # Reset is the window's end rounded down (as Okta's), so the window really ends before
    # reset + 1; the SDK's extra second gets it there, and the retry is admitted.
    check(retry["wall_sent"] >= reset + 1 - 0.05,
          f"retry sent after the window's true end, before reset + 1 "
          f"({retry['wall_sent']:.3f} >= {reset} + 1)")
    check(took <= expected + SLACK + 1, f"retrying call took {took:.3f} s in all")
    rid = h.get("x-okta-request-id", "")
    check(bool(rid) and retry["req"].get("x-okta-retry-for") == rid,
          f"retry carried X-Okta-Retry-For {retry['req'].get('x-okta-retry-for')!r} = 429's X-Okta-Request-Id {rid!r}")
    check(retry["req"].get("x-okta-retry-count") == "1",
          f"retry carried X-Okta-Retry-Count {retry['req'].get('x-okta-retry-count')!r} = '1'")
    check("x-okta-retry-for" not in first["req"], "first attempt carried no X-Okta-Retry-For")


class Captured(logging.Handler):
    """The SDK's own log records (logger okta.request_executor's LOGGER_NAME)."""

    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


HOLD_MS = 1500  # the held request's time upstream; must stay below the SDK's 2 s wait


def hold_one_in_flight():
    """One request held upstream HOLD_MS (the fault filter's header), filling the org's only
    place in flight (the test overrides okta.concurrency to 1)."""
    s = socket.create_connection(("127.0.0.1", PORT))
    s.sendall((f"GET /api/v1/users HTTP/1.1\r\nHost: 127.0.0.1:{PORT}\r\n"
               f"x-envoy-fault-delay-request: {HOLD_MS}\r\nx-upstream-status: 201\r\n\r\n")
              .encode())
    return s


async def concurrency():
    """Okta's concurrency 429 (Limit 0, Remaining 0): the SDK recognises it, and with retries it
    waits Reset - Date + 1 and gets through once the held request is done."""
    from okta.request_executor import LOGGER_NAME
    captured = Captured()
    sdk_log = logging.getLogger(LOGGER_NAME)
    sdk_log.addHandler(captured)
    sdk_log.setLevel(logging.DEBUG)
    patient = client(max_retries=2, log=True)
    impatient = client(max_retries=0, log=True)
    held = hold_one_in_flight()
    time.sleep(0.2)  # the held request is counted before the SDK's calls

    (_, resp, err), attempts, _ = await call(impatient, "no-retry call, one in flight")
    check([a["status"] for a in attempts] == [429], "no-retry call: refused with 429")
    check(isinstance(err, OktaAPIError) and err.error_code == "E0000047",
          f"no-retry call: OktaAPIError E0000047 (got {err!r})")
    h = attempts[0]["resp"] if attempts else {}
    check(h.get("x-rate-limit-limit") == "0" and h.get("x-rate-limit-remaining") == "0",
          f"the concurrency 429 has X-Rate-Limit-Limit/Remaining 0/0 ({h})")
    # (The SDK looks at Limit/Remaining only on its way to a retry, so it logs nothing here.)

    (_, resp, err), attempts, took = await call(patient, "retrying call, one in flight")
    statuses = [a["status"] for a in attempts]
    check(err is None and statuses == [429, 201],
          f"retrying call: 429 then 201 once the held request ended (got {statuses}, err={err!r})")
    check("Concurrent limit rate exceeded" in captured.messages,
          f"the SDK recognised Okta's concurrency 429 (it logged {captured.messages})")
    if len(attempts) == 2:
        first = attempts[0]["resp"]
        date = email.utils.parsedate_to_datetime(first.get("date", "")).timestamp()
        reset = int(first.get("x-rate-limit-reset", "0"))
        expected = reset - date + 1
        check(1 <= expected <= 3, f"estimated Reset {reset} is just after Date ({expected:.0f} s wait)")
        gap = attempts[1]["t_sent"] - attempts[0]["t_done"]
        check(expected - 0.05 <= gap <= expected + SLACK, f"retry after {gap:.3f} s")
    held.settimeout(10)
    check(held.recv(64).startswith(b"HTTP/1.1 201"), "the held request itself completed")
    held.close()


asyncio.run(concurrency() if os.environ.get("OKTA_SDK_MODE") == "concurrency" else main())
finish()
