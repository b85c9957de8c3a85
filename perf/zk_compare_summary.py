#!/usr/bin/env python3
"""The summary of a perf/compare-zk.sh run: the Braid/ZooKeeper table, ratios, JSON and plots.

perf/zk_compare_summary.py OUT ROOT "SYSTEMS" "WORKLOADS" NAME

Reads OUT/SYSTEM-WORKLOAD.json (`braid bench zk --json`, and perf/zk_failover.py for the
failover workload), prints the table, writes perf/out/NAME.json and
perf/baselines/NAME-DATE.json, and plots each workload's latency curves (perf/plot-latency.py).
Run by perf/compare-zk.sh; runs again by hand on a finished run's files.
"""
import datetime, json, os, subprocess, sys
out, root, systems, workloads, name = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4].split(), sys.argv[5]
runs = {}
failover = {}
for s in systems:
    path = os.path.join(out, f"{s}-failover.json")
    if "failover" in workloads and os.path.exists(path):
        failover[s] = json.load(open(path))
workloads = [w for w in workloads if w != "failover"]
for s in systems:
    for w in workloads:
        path = os.path.join(out, f"{s}-{w}.json")
        if os.path.exists(path):
            runs[(s, w)] = json.load(open(path))

def figures(r):
    lat = r["latency_us"]
    f = {"writes_per_s": round(r["writes_per_s"]), "reads_per_s": round(r["reads_per_s"]),
         "p50_us": lat["p50"], "p99_us": lat["p99"], "p999_us": lat["p999"], "errors": r["errors"]}
    if r["watch"]["watchers"]:
        f["events_per_s"] = round(r["watch"]["events_per_s"])
        f["event_p99_us"] = r["watch"]["latency_us"]["p99"]
    if "disk" in r:
        f["disk"] = r["disk"]
    return f

summary = {"date": datetime.date.today().isoformat(), "machine": {
    "nproc": os.cpu_count(), "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30)},
    "config": next(iter(runs.values()))["config"] if runs else {}, "runs": {}, "ratios": {}}
if failover:
    summary["failover"] = {s: f["outage_ms"] | {"kills": f["kills"], "clients": f["clients"]} for s, f in failover.items()}
for (s, w), r in runs.items():
    summary["runs"][f"{s} {w}"] = figures(r)
rows = []
for n in ("1", "3"):
    for w in workloads:
        z, b = runs.get(("zk" + n, w)), runs.get(("braid" + n, w))
        if not (z and b):
            continue
        fz, fb = figures(z), figures(b)
        ratio = {}
        for k in ("writes_per_s", "reads_per_s", "p50_us", "p99_us", "p999_us"):
            ratio[k] = round(fb[k] / fz[k], 2) if fz[k] else None
        summary["ratios"][f"{n} {w}"] = ratio
        rows.append((n, w, fz, fb, ratio))

def cell(v):
    return "-" if v is None else f"{v:g}"
if rows:
    print()
    print(f"{'servers':>7} {'workload':<8} | {'writes/s ZK':>11} {'Braid':>7} {'x':>5} | {'reads/s ZK':>10} {'Braid':>7} {'x':>5} |"
          f" {'p50 us ZK':>9} {'Braid':>6} | {'p99 us ZK':>9} {'Braid':>6} {'x':>5} | {'p999 us ZK':>10} {'Braid':>6}")
for n, w, fz, fb, ratio in rows:
    print(f"{n:>7} {w:<8} | {fz['writes_per_s']:>11} {fb['writes_per_s']:>7} {cell(ratio['writes_per_s']):>5} |"
          f" {fz['reads_per_s']:>10} {fb['reads_per_s']:>7} {cell(ratio['reads_per_s']):>5} |"
          f" {fz['p50_us']:>9} {fb['p50_us']:>6} | {fz['p99_us']:>9} {fb['p99_us']:>6} {cell(ratio['p99_us']):>5} |"
          f" {fz['p999_us']:>10} {fb['p999_us']:>6}")
for s, f in failover.items():
    o = f["outage_ms"]
    print(f"{s} failover: {f['kills']} leader kills, {f['clients']} clients: outage p50 {o['p50']} ms, max {o['max']} ms,"
          f" worst client per kill {o['worst_client_per_kill']} ms")
if "zk3" in failover and "braid3" in failover:
    z, b = failover["zk3"]["outage_ms"], failover["braid3"]["outage_ms"]
    summary["ratios"]["3 failover"] = {"outage_p50": round(b["p50"] / z["p50"], 2) if z["p50"] else None,
                                       "worst_client_median": round(b["worst_client_median"] / z["worst_client_median"], 2)
                                       if z["worst_client_median"] else None}
    print(f"failover Braid/ZK: {summary['ratios']['3 failover']}")
for (s, w), r in sorted(runs.items()):
    if r["errors"]:
        print(f"{s} {w}: {r['errors']} errors: " + json.dumps({k: v['error_codes'] for k, v in r['by_op'].items()}))
path = os.path.join(root, f"perf/out/{name}.json")
json.dump(summary, open(path, "w"), indent=2)
base = os.path.join(root, "perf/baselines", f"{name}-{summary['date']}.json")
json.dump(summary, open(base, "w"), indent=2)
print(f"\nJSON: {path}\nbaseline: {base}")
titles = {"set": "setData as fast as answered", "create": "create as fast as answered",
          "read": "getData 9 : setData 1", "rate": "setData at a fixed rate (equal load)",
          "watch": "setData at a fixed rate, watchers"}
for w in workloads:
    curves = [os.path.join(out, f"{s}-{w}.json") for n in "13" for s in ("zk" + n, "braid" + n) if (s, w) in runs]
    if curves:
        svg = os.path.join(out, f"latency-{w}.svg")
        subprocess.run([sys.executable, os.path.join(root, "perf/plot-latency.py"), "--title",
                        f"{titles.get(w, w)}: latency by percentile", "--out", svg, *curves], check=True)
        print(f"plot: {svg}")
