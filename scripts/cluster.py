#!/usr/bin/env python3
"""Quiver's k-means beside scikit-learn's on one dataset (scripts/bench-cluster runs this)."""

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


if __name__ == "__main__":
    sys.exit(main())
