#!/usr/bin/env python3
"""p50/p99 of "took_us" in `quiver search --timings` output, and short results.

usage: latency.py RESULTS.jsonl [-k 10]
"""
import json
import sys

k = 10
args = sys.argv[1:]
if "-k" in args:
    i = args.index("-k")
    k = int(args[i + 1])
    del args[i : i + 2]
rows = [json.loads(l) for l in open(args[0]) if l.strip()]
took = sorted(r["took_us"] for r in rows)
pick = lambda q: took[min(len(took) - 1, int(q * len(took)))]
plans = {}
for r in rows:
    plans[r["plan"]] = plans.get(r["plan"], 0) + 1
print(json.dumps({"queries": len(rows), "p50_us": round(pick(0.5), 1), "p99_us": round(pick(0.99), 1),
                  "short": sum(len(r["hits"]) < k for r in rows), "plans": plans}))
