#!/usr/bin/env python3
"""recall@k of `quiver search` output against a ground-truth file.

usage: recall.py RESULTS.jsonl GROUND_TRUTH.jsonl [-k 10]

RESULTS: one line per query, {"hits": [{"id": ..}, ..], ..} (quiver search output).
GROUND_TRUTH: one line per query, {"neighbors": [id, ..], ..}, in the same order.
Prints recall@k, the number of queries, and how many returned fewer than k hits.
"""
import json
import sys


def main():
    args = sys.argv[1:]
    k = 10
    if "-k" in args:
        i = args.index("-k")
        k = int(args[i + 1])
        del args[i : i + 2]
    results, truth = args
    with open(results) as r, open(truth) as t:
        got = [json.loads(line) for line in r if line.strip()]
        want = [json.loads(line) for line in t if line.strip()]
    if len(got) != len(want):
        sys.exit(f"{len(got)} result lines but {len(want)} ground-truth lines")
    total, short = 0.0, 0
    for g, w in zip(got, want):
        ids = [h["id"] for h in g["hits"]][:k]
        short += len(ids) < k
        total += len(set(ids) & set(w["neighbors"][:k])) / k
    print(json.dumps({"recall": round(total / len(got), 5), "queries": len(got), "short": short, "k": k}))


if __name__ == "__main__":
    main()
