"""Auth0's official Python SDK (PyPI `auth0-python`) against the filter: usage `auth0_sdk.py PORT`.

Run by tests/sdk_e2e.rs against an Envoy whose filter has {"vendor": "auth0", "plan": "free"}
with the token bucket auth0.self-service.read-users.per-second (GET /api/v2/users) overridden to
LIMIT requests per WINDOW seconds: a burst of LIMIT, then one token every WINDOW / LIMIT s.

The client is the one Auth0's README recommends, `ManagementClient(domain=..., token=...)`, with
its defaults (max_retries 2). It always speaks https to https://{domain}/api/v2, so an httpx
transport sends its requests to http://127.0.0.1:PORT instead (the Host header stays the
domain) and records every attempt. What the SDK does on a 429 (auth0/management/core/
http_client.py): sleeps Retry-After seconds (at most 60), or without it until X-RateLimit-Reset
plus jitter, and resends, up to max_retries times.

Steps:
  1. LIMIT calls: admitted.
  2. One call with request_options max_retries 0: the SDK raises TooManyRequestsError carrying
     the filter's 429 body, without retrying.
  3. One call with the defaults: 429, a wait of Retry-After seconds, one retry, success.

The harness's upstream answers 200 "ok\\n", which is not JSON; the header x-upstream-status: 201
selects its 201 "{}" instead, which users.list accepts.

Exits 0 only if every check passed; prints each check and the attempts either way.
"""

import sys
import time

import httpx
from auth0.management import ManagementClient
from auth0.management.errors import TooManyRequestsError

from sdkcheck import ATTEMPTS, SLACK, check, finish  # noqa: E402

LIMIT = 2  # must match the override in tests/sdk_e2e.rs
WINDOW = 4  # seconds; must match the override in tests/sdk_e2e.rs
DOMAIN = "sdk-e2e.auth0.test"
PORT = int(sys.argv[1])



class ToFilter(httpx.HTTPTransport):
    """Sends https://DOMAIN/... to the filter on http://127.0.0.1:PORT and records each attempt."""

    def handle_request(self, request):
        rec = {"method": request.method, "url": str(request.url),
               "req": {k.lower(): v for k, v in request.headers.items()},
               "t_sent": time.monotonic(), "wall_sent": time.time()}
        request.url = request.url.copy_with(scheme="http", host="127.0.0.1", port=PORT)
        response = super().handle_request(request)
        rec["t_done"] = time.monotonic()
        rec["status"] = response.status_code
        rec["resp"] = {k.lower(): v for k, v in response.headers.items()}
        ATTEMPTS.append(rec)
        return response


def show(label, attempts):
    print(f"  {label}:")
    prev = None
    for a in attempts:
        gap = "" if prev is None else f" (+{a['t_sent'] - prev['t_done']:.3f} s after the previous)"
        keep = ("date", "retry-after", "x-ratelimit-limit", "x-ratelimit-remaining",
                "x-ratelimit-reset")
        resp = {k: a["resp"][k] for k in keep if k in a["resp"]}
        print(f"    {a['method']} {a['url']} (Host {a['req'].get('host')}) -> {a['status']}{gap} {resp}")
        prev = a


def call(c, label, **kwargs):
    start = len(ATTEMPTS)
    t0 = time.monotonic()
    error = None
    try:
        c.users.list(**kwargs)
    except Exception as e:  # noqa: BLE001 - reported and checked below
        error = e
    took = time.monotonic() - t0
    attempts = ATTEMPTS[start:]
    show(f"{label}: {len(attempts)} attempt(s) in {took:.3f} s", attempts)
    return error, attempts, took


def main():
    c = ManagementClient(
        domain=DOMAIN,
        token="sdk-e2e-token",
        headers={"x-upstream-status": "201"},
        httpx_client=httpx.Client(transport=ToFilter(), timeout=10),
    )

    # 1. Take the burst.
    for i in range(LIMIT):
        err, attempts, _ = call(c, f"call {i + 1}")
        check(err is None and [a["status"] for a in attempts] == [201],
              f"call {i + 1} admitted in one attempt (error={err!r})")

    # 2. No retries allowed: the SDK raises TooManyRequestsError with the 429's body.
    err, attempts, _ = call(c, "no-retry call", request_options={"max_retries": 0})
    check([a["status"] for a in attempts] == [429], "no-retry call: one attempt, refused with 429")
    check(isinstance(err, TooManyRequestsError) and err.status_code == 429,
          f"no-retry call: the SDK raised TooManyRequestsError 429 (got {err!r})")
    body = getattr(err, "body", None)
    check(isinstance(body, dict) and body.get("statusCode") == 429
          and body.get("error") == "Too Many Requests" and body.get("errorCode") == "too_many_requests",
          f"no-retry call: the error body is Auth0's 429 body ({body!r})")

    # 3. Default retries: 429, wait Retry-After, retry, success.
    err, attempts, took = call(c, "retrying call")
    statuses = [a["status"] for a in attempts]
    check(err is None, f"retrying call: the SDK succeeded (error={err!r})")
    check(statuses == [429, 201], f"retrying call: attempts were 429 then 201 (got {statuses})")
    if len(attempts) != 2 or statuses[0] != 429:
        return
    first, retry = attempts
    h = first["resp"]
    ra = h.get("retry-after", "")
    reset = h.get("x-ratelimit-reset", "")
    check(ra.isdigit(), f"429 Retry-After {ra!r} is whole seconds")
    check(reset.isdigit(), f"429 X-RateLimit-Reset {reset!r} is integer epoch seconds")
    check(h.get("x-ratelimit-limit") == str(LIMIT) and h.get("x-ratelimit-remaining") == "0",
          f"429 X-RateLimit-Limit/Remaining are {LIMIT}/0")
    if not (ra.isdigit() and reset.isdigit()):
        return
    ra, reset = int(ra), int(reset)
    interval = WINDOW / LIMIT
    check(1 <= ra <= interval + 1, f"Retry-After {ra} s is about one refill interval ({interval:.1f} s)")
    # The next token is due within a second before the (rounded up) reset; Retry-After counts
    # whole seconds from now to that token, so now + Retry-After lands within a second of it.
    due = first["wall_sent"] + ra
    check(abs(due - reset) < 1.5,
          f"Retry-After and X-RateLimit-Reset agree (now + {ra} = {due:.3f} vs {reset})")
    gap = retry["t_sent"] - first["t_done"]
    check(ra - 0.05 <= gap <= ra + SLACK, f"retry sent {gap:.3f} s after the 429 (expected {ra} s)")
    check(took <= ra + SLACK + 1, f"retrying call took {took:.3f} s in all")
    check(retry["req"].get("host") == DOMAIN, f"retry went to the tenant host {DOMAIN}")


main()
finish()
