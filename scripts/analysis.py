#!/usr/bin/env python3
"""Quiver's k-means beside scikit-learn's, and its joins and dedup beside their exact
(brute-force) answers, on one dataset (scripts/bench-analysis runs this)."""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from sklearn.cluster import KMeans


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--quiver", required=True)
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--n-init", type=int, default=1)
    ap.add_argument("--seeds", type=int, default=3)
    a = ap.parse_args()

    base = np.fromfile(os.path.join(a.data, "base.f32"), dtype="<f4")
    n = sum(1 for _ in open(os.path.join(a.data, "base.jsonl")))
    x = base.reshape(n, -1).astype(np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)

    store = tempfile.mkdtemp(prefix="bench-cluster-")

    def quiver(*args):
        return subprocess.run(
            [a.quiver, "--store", store, "--json", *args], check=True, capture_output=True, text=True
        ).stdout

    quiver("create", "c", "--dim", str(x.shape[1]))
    quiver("import", "c", os.path.join(a.data, "base.jsonl"), "--vectors", os.path.join(a.data, "base.f32"))
    print(f"{n} vectors × {x.shape[1]}, k {a.k}, n_init {a.n_init}")
    print("| seed | Quiver inertia | s | scikit-learn inertia | s | Quiver / scikit-learn |")
    print("|---:|---:|---:|---:|---:|---:|")
    ratios = []
    for seed in range(a.seeds):
        t = time.perf_counter()
        lines = quiver("cluster", "c", "-k", str(a.k), "--n-init", str(a.n_init), "--seed", str(seed))
        tq = time.perf_counter() - t
        summary = json.loads(lines.strip().splitlines()[-1])
        t = time.perf_counter()
        km = KMeans(n_clusters=a.k, n_init=a.n_init, random_state=seed).fit(x)
        ts = time.perf_counter() - t
        r = summary["inertia"] / km.inertia_
        ratios.append(r)
        print(f"| {seed} | {summary['inertia']:.2f} | {tq:.2f} | {km.inertia_:.2f} | {ts:.2f} | {r:.4f} |")
    print(f"mean ratio {np.mean(ratios):.4f}, worst {max(ratios):.4f}")

    # Joins: the queries as a collection, joined onto the base, HNSW against exact.
    queries = np.fromfile(os.path.join(a.data, "queries.f32"), dtype="<f4").reshape(-1, x.shape[1])
    qfile = os.path.join(store, "queries.jsonl")
    with open(qfile, "w") as f:
        for i, v in enumerate(queries):
            f.write(json.dumps({"id": f"q{i:04}", "vector": [float(t) for t in v]}) + "\n")
    quiver("create", "q", "--dim", str(x.shape[1]))
    quiver("import", "q", qfile)

    def join(*extra):
        t = time.perf_counter()
        out = quiver("join", "q", "c", *extra)
        return [json.loads(line) for line in out.splitlines()], time.perf_counter() - t

    print()
    print("| join | pairs | s | recall against --exact |")
    print("|---|---:|---:|---:|")
    for k in (1, 10):
        approx, ta = join("-k", str(k))
        exact, te = join("-k", str(k), "--exact")
        want, got = {}, {}
        for p in exact:
            want.setdefault(p["left"], set()).add(p["right"])
        for p in approx:
            got.setdefault(p["left"], set()).add(p["right"])
        recall = np.mean([len(got.get(q, set()) & w) / len(w) for q, w in want.items()])
        print(f"| -k {k} (HNSW) | {len(approx)} | {ta:.2f} | {recall:.4f} |")
        print(f"| -k {k} --exact | {len(exact)} | {te:.2f} | 1 |")
    approx, ta = join("--one-to-one")
    exact, te = join("--one-to-one", "--exact")
    same = len({(p["left"], p["right"]) for p in approx} & {(p["left"], p["right"]) for p in exact})
    print(f"| --one-to-one (HNSW) | {len(approx)} | {ta:.2f} | {same / max(len(exact), 1):.4f} of the exact matching's pairs |")
    print(f"| --one-to-one --exact | {len(exact)} | {te:.2f} | 1 |")

    def dedup(*extra):
        t = time.perf_counter()
        out = quiver("dedup", "c", "--max-distance", "0.05", *extra)
        return {tuple(json.loads(line)["ids"]) for line in out.splitlines()}, time.perf_counter() - t

    approx, ta = dedup()
    exact, te = dedup("--exact")
    print(f"| dedup --max-distance 0.05 (HNSW) | {len(approx)} groups | {ta:.2f} | {len(approx & exact) / max(len(exact), 1):.4f} of the exact groups |")
    print(f"| dedup --max-distance 0.05 --exact | {len(exact)} groups | {te:.2f} | 1 |")


if __name__ == "__main__":
    sys.exit(main())
