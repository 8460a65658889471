"""What the three SDK scripts share: the attempt log, checks, and the exit report.

Each script hooks its SDK's transport to append one dict per HTTP attempt to
ATTEMPTS, calls check() for every assertion, and ends with finish().
"""
import sys

SLACK = 1.5  # seconds a loaded machine may add to a wait
ATTEMPTS = []  # one dict per HTTP request the SDK sent
FAILED = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        FAILED.append(what)
    return ok


def finish():
    print(f"{len(ATTEMPTS)} HTTP attempts; {len(FAILED)} check(s) failed")
    sys.exit(1 if FAILED else 0)
