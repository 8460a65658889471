"""OneLogin's official Python SDK (PyPI `onelogin`) against the filter: usage `onelogin_sdk.py PORT`.

Run by tests/sdk_e2e.rs against an Envoy whose filter has {"vendor": "onelogin"} with the
account bucket onelogin.account (every call under /api/ and /auth/) overridden to LIMIT
requests per WINDOW seconds, a fixed window that opens at the first request.

The SDK has no retry logic of its own: it leaves a 429 to urllib3, whose default Retry(3)
retries a GET on 429 only when the response has Retry-After, after sleeping that many seconds
(onelogin/rest.py, Configuration.retries None = urllib3's default). Every attempt is recorded
at urllib3's HTTPConnectionPool._make_request, below the retry loop.

Steps:
  1. LIMIT calls (UsersV2Api.list_users2, GET /api/2/users): admitted.
  2. One call with Configuration.retries = False: the SDK raises ApiException 429 carrying the
     filter's OneLogin-style body, without retrying.
  3. One call with the defaults. As OneLogin answers (no Retry-After): one 429, no retry, the
     SDK raises; the script waits out the window and calls once more (admitted). With
     ONELOGIN_RETRY_AFTER=1 (the filter's "retry_after": true): 429, a wait of Retry-After
     seconds, one retry, success.
  4. OAuth2Api.get_rate_limit (GET /auth/rate_limit, answered by the filter and not counted):
     the SDK parses it, and it reports the new window (LIMIT, LIMIT - 1 left).

The harness's upstream answers 200 "ok\\n", which is not JSON; the header x-upstream-status: 201
selects its 201 "{}" instead, which list_users2 accepts.

Exits 0 only if every check passed; prints each check and the attempts either way.
"""

import json
import os
import sys
import time

import onelogin
from onelogin.exceptions import ApiException
from urllib3 import connectionpool

from sdkcheck import ATTEMPTS, SLACK, check, finish  # noqa: E402

LIMIT = 2  # must match the override in tests/sdk_e2e.rs
WINDOW = 3  # seconds; must match the override in tests/sdk_e2e.rs
PORT = int(sys.argv[1])
# "1" when the filter runs with "retry_after": true; OneLogin itself sends no Retry-After.
RETRY_AFTER = os.environ.get("ONELOGIN_RETRY_AFTER") == "1"



_make_request = connectionpool.HTTPConnectionPool._make_request


def _recording_make_request(self, conn, method, url, *args, **kwargs):
    headers = kwargs.get("headers") or (args[1] if len(args) > 1 else None) or {}
    rec = {"method": method, "url": url, "req": {k.lower(): v for k, v in headers.items()},
           "t_sent": time.monotonic(), "wall_sent": time.time()}
    response = _make_request(self, conn, method, url, *args, **kwargs)
    rec["t_done"] = time.monotonic()
    rec["status"] = response.status
    rec["resp"] = {k.lower(): v for k, v in response.headers.items()}
    ATTEMPTS.append(rec)
    return response


connectionpool.HTTPConnectionPool._make_request = _recording_make_request


def users_api(retries=None):
    cfg = onelogin.Configuration(host=f"http://127.0.0.1:{PORT}")
    # As the SDK's README does it: onelogin 4.0.1's Configuration(access_token=...) drops the
    # argument (its __init__ sets access_token twice, the second time to None).
    cfg.access_token = "sdk-e2e-token"
    if retries is not None:
        cfg.retries = retries
    api_client = onelogin.ApiClient(cfg)
    api_client.set_default_header("x-upstream-status", "201")
    return onelogin.UsersV2Api(api_client), onelogin.OAuth2Api(api_client)


def show(label, attempts):
    print(f"  {label}:")
    prev = None
    for a in attempts:
        gap = "" if prev is None else f" (+{a['t_sent'] - prev['t_done']:.3f} s after the previous)"
        keep = ("date", "retry-after", "x-ratelimit-limit", "x-ratelimit-remaining",
                "x-ratelimit-reset")
        resp = {k: a["resp"][k] for k in keep if k in a["resp"]}
        auth = a["req"].get("authorization", "(no Authorization)")
        print(f"    {a['method']} {a['url']} [{auth}] -> {a['status']}{gap} {resp}")
        prev = a


def call(fn, label):
    start = len(ATTEMPTS)
    t0 = time.monotonic()
    result, error = None, None
    try:
        result = fn()
    except Exception as e:  # noqa: BLE001 - reported and checked below
        error = e
    took = time.monotonic() - t0
    attempts = ATTEMPTS[start:]
    show(f"{label}: {len(attempts)} attempt(s) in {took:.3f} s", attempts)
    return result, error, attempts, took


def main():
    users, oauth = users_api()
    no_retry_users, _ = users_api(retries=False)

    # 1. Fill the window.
    for i in range(LIMIT):
        _, err, attempts, _ = call(users.list_users2, f"call {i + 1}")
        check(err is None and [a["status"] for a in attempts] == [201],
              f"call {i + 1} admitted in one attempt (error={err!r})")

    # 2. No retries allowed: the SDK raises ApiException 429 with the filter's body.
    _, err, attempts, _ = call(no_retry_users.list_users2, "no-retry call")
    check([a["status"] for a in attempts] == [429], "no-retry call: one attempt, refused with 429")
    check(isinstance(err, ApiException) and err.status == 429,
          f"no-retry call: the SDK raised ApiException 429 (got {type(err).__name__}: {err})")
    try:
        body = json.loads(getattr(err, "body", None) or "null")
    except ValueError:
        body = None
    status = body.get("status") if isinstance(body, dict) else None
    check(isinstance(status, dict) and status.get("code") == 429 and status.get("error") is True,
          f"no-retry call: the error body is OneLogin's status envelope ({body!r})")

    if not RETRY_AFTER:
        # 3'. As OneLogin answers: no Retry-After, so urllib3 does not retry; the SDK raises.
        _, err, attempts, _ = call(users.list_users2, "default call, no Retry-After")
        statuses = [a["status"] for a in attempts]
        check(statuses == [429], f"default call: one attempt, 429, no retry (got {statuses})")
        check(isinstance(err, ApiException) and err.status == 429,
              f"default call: the SDK raised ApiException 429 (got {type(err).__name__}: {err})")
        h = attempts[0]["resp"] if attempts else {}
        check("retry-after" not in h, f"the 429 has no Retry-After, as OneLogin's ({h})")
        left = h.get("x-ratelimit-reset", "")
        check(left.isdigit() and 1 <= int(left) <= WINDOW,
              f"429 X-RateLimit-Reset {left!r} is the seconds left of the {WINDOW} s window")
        # The caller waits out the window itself, then calls again.
        time.sleep((int(left) if left.isdigit() else WINDOW) + 0.2)
        _, err, attempts, _ = call(users.list_users2, "call after the window")
        check(err is None and [a["status"] for a in attempts] == [201],
              f"call after the window admitted (error={err!r})")
        status_endpoint(oauth)
        return

    # 3. urllib3's default retry: 429, wait Retry-After, retry, success.
    _, err, attempts, took = call(users.list_users2, "retrying call")
    statuses = [a["status"] for a in attempts]
    check(err is None, f"retrying call: the SDK succeeded (error={err!r})")
    check(statuses == [429, 201], f"retrying call: attempts were 429 then 201 (got {statuses})")
    if len(attempts) == 2 and statuses[0] == 429:
        first, retry = attempts
        h = first["resp"]
        ra = h.get("retry-after", "")
        check(ra.isdigit(), f"429 Retry-After {ra!r} is whole seconds")
        check(h.get("x-ratelimit-limit") == str(LIMIT) and h.get("x-ratelimit-remaining") == "0",
              f"429 X-RateLimit-Limit/Remaining are {LIMIT}/0")
        check(h.get("x-ratelimit-reset") == ra,
              f"429 X-RateLimit-Reset {h.get('x-ratelimit-reset')!r} (seconds left) = Retry-After")
        if ra.isdigit():
            ra = int(ra)
            check(1 <= ra <= WINDOW, f"Retry-After {ra} s is what is left of the {WINDOW} s window")
            gap = retry["t_sent"] - first["t_done"]
            check(ra - 0.05 <= gap <= ra + SLACK,
                  f"retry sent {gap:.3f} s after the 429 (expected {ra} s)")
            check(took <= ra + SLACK + 1, f"retrying call took {took:.3f} s in all")

    status_endpoint(oauth)


def status_endpoint(oauth):
    # 4. The status endpoint, through the SDK's own model.
    rl, err, attempts, _ = call(oauth.get_rate_limit, "get_rate_limit")
    data = getattr(rl, "data", None)
    check(err is None and data is not None, f"get_rate_limit parsed (error={err!r}, result={rl!r})")
    if data is not None:
        check(data.x_rate_limit_limit == LIMIT and data.x_rate_limit_remaining == LIMIT - 1,
              f"get_rate_limit reports the retry's window: limit {data.x_rate_limit_limit}, "
              f"remaining {data.x_rate_limit_remaining} (expected {LIMIT}, {LIMIT - 1})")
        check(data.x_rate_limit_reset is not None and 1 <= data.x_rate_limit_reset <= WINDOW,
              f"get_rate_limit reset {data.x_rate_limit_reset} s is within the {WINDOW} s window")


main()
finish()
