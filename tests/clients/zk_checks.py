"""What zk_kazoo.py and zk_recipes.py share: counted checks, bounded waits, sections that report
their failure and let the next one run, and the closing summary."""

import sys
import time
import traceback

WAIT = 30.0  # every wait is bounded by this


class State:
    checks = 0
    failures = []
    clients = []
    verbose = False


STATE = State()


class CheckFailed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise CheckFailed(what)
    STATE.checks += 1


def eq(got, want, what):
    check(got == want, f"{what}: got {got!r}, want {want!r}")


def wait_for(pred, what, timeout=WAIT, step=0.02):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            check(True, what)
            return
        time.sleep(step)
    raise CheckFailed(f"{what} (waited {timeout:.0f} s)")


def run_section(name, fn):
    before, t = STATE.checks, time.monotonic()
    try:
        fn()
        print(f"ok   {name}: {STATE.checks - before} checks ({time.monotonic() - t:.1f} s)")
    except Exception as e:  # noqa: BLE001 - reported, then the next section runs
        STATE.failures.append(name)
        what = str(e) if isinstance(e, CheckFailed) else f"{type(e).__name__}: {e}"
        print(f"FAIL {name}: {what}")
        if not isinstance(e, CheckFailed) or STATE.verbose:
            traceback.print_exc()


def finish(script, t0):
    """Stops every client, prints the summary line, exits non-zero on any failure."""
    for c in STATE.clients:
        try:
            c.stop()
            c.close()
        except Exception:  # noqa: BLE001
            pass
    took = time.monotonic() - t0
    if STATE.failures:
        print(f"{script}: {STATE.checks} checks passed, {len(STATE.failures)} FAILED "
              f"({', '.join(STATE.failures)}) in {took:.1f} s")
        sys.exit(1)
    print(f"{script}: {STATE.checks} checks passed ({took:.1f} s)")
