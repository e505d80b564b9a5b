"""Quiver beside faiss HNSW and hnswlib, query by query interleaved on one thread.

Run by scripts/bench-peers, which installs the packages and builds `quiver`. For every ef, each
query goes to every engine in turn (the order rotates from query to query), so all engines see the
same moment of the machine. Quiver answers through `quiver search --queries -`, a long-lived
process fed through a pipe; its latency is the library call's own time inside that process
(`took_us`). faiss and hnswlib latencies are the Python call's wall time, which includes the
binding's overhead; the table prints that overhead, measured on a one-vector index.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

K = 10
M = 16
# The cores this process may use (taskset counts; os.cpu_count() would not).
CORES = len(os.sched_getaffinity(0))
EF_CONSTRUCTION = 128


def parse():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--quiver", required=True)
    p.add_argument("--efs", default="64,96,128,192,256")
    p.add_argument("--queries", type=int, default=0, help="use the first N queries (0: all)")
    p.add_argument("--markdown")
    p.add_argument("--plot")
    p.add_argument("--json")
    return p.parse_args()


def load(data, nq):
    ids = [json.loads(line)["id"] for line in open(os.path.join(data, "base.jsonl"))]
    base = np.fromfile(os.path.join(data, "base.f32"), dtype="<f4")
    dim = base.size // len(ids)
    base = base.reshape(len(ids), dim)
    queries = np.fromfile(os.path.join(data, "queries.f32"), dtype="<f4").reshape(-1, dim)
    truth = [json.loads(line)["neighbors"][:K] for line in open(os.path.join(data, "queries.gt.jsonl"))]
    if nq:
        queries, truth = queries[:nq], truth[:nq]
    return ids, base, queries, truth


def unit(x):
    n = np.linalg.norm(x, axis=1, keepdims=True)
    n[n == 0] = 1
    return (x / n).astype("float32")


class Quiver:
    """One collection in its own store; one search process per ef."""

    def __init__(self, exe, data, dim, label, create_args):
        self.exe, self.label = exe, label
        self.store = tempfile.mkdtemp(prefix="quiver-peers-")
        run = lambda *a: subprocess.run([exe, "--store", self.store, *a], check=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        run("create", "peers", "--dim", str(dim), *create_args)
        t = time.perf_counter()
        run("import", "peers", os.path.join(data, "base.jsonl"), "--vectors", os.path.join(data, "base.f32"))
        self.build_s = time.perf_counter() - t
        info = json.loads(run("info", "peers", "--json").stdout)
        self.config = info["config"]
        self.proc = None

    def start(self, ef):
        self.stop()
        self.proc = subprocess.Popen(
            [self.exe, "--store", self.store, "search", "peers", "--queries", "-", "-k", str(K),
             "--ef", str(ef), "--timings", "--json"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def query(self, q):
        self.proc.stdin.write(q.tobytes())
        self.proc.stdin.flush()
        line = json.loads(self.proc.stdout.readline())
        return [h["id"] for h in line["hits"]], line["took_us"]

    def stop(self):
        if self.proc:
            self.proc.stdin.close()
            self.proc.wait()
            self.proc = None

    def close(self):
        self.stop()
        shutil.rmtree(self.store, ignore_errors=True)


class Faiss:
    label = "faiss HNSW (IP)"

    def __init__(self, base):
        import faiss
        self.faiss = faiss
        faiss.omp_set_num_threads(CORES)
        self.index = faiss.IndexHNSWFlat(base.shape[1], M, faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = EF_CONSTRUCTION
        t = time.perf_counter()
        self.index.add(base)
        self.build_s = time.perf_counter() - t
        faiss.omp_set_num_threads(1)
        one = faiss.IndexHNSWFlat(base.shape[1], M, faiss.METRIC_INNER_PRODUCT)
        one.add(base[:1])
        self.overhead_us = overhead(lambda q: one.search(q, 1), base[:1])

    def start(self, ef):
        self.index.hnsw.efSearch = ef

    def query(self, q):
        t = time.perf_counter_ns()
        _, labels = self.index.search(q[None, :], K)
        return labels[0], (time.perf_counter_ns() - t) / 1000


class Hnswlib:
    label = "hnswlib (ip)"

    def __init__(self, base):
        import hnswlib
        self.index = hnswlib.Index(space="ip", dim=base.shape[1])
        self.index.init_index(max_elements=len(base), ef_construction=EF_CONSTRUCTION, M=M, random_seed=1)
        t = time.perf_counter()
        self.index.add_items(base, np.arange(len(base)), num_threads=CORES)
        self.build_s = time.perf_counter() - t
        self.index.set_num_threads(1)
        one = hnswlib.Index(space="ip", dim=base.shape[1])
        one.init_index(max_elements=1, ef_construction=EF_CONSTRUCTION, M=M)
        one.add_items(base[:1], [0])
        self.overhead_us = overhead(lambda q: one.knn_query(q, k=1, num_threads=1), base[:1])

    def start(self, ef):
        self.index.set_ef(ef)

    def query(self, q):
        t = time.perf_counter_ns()
        labels, _ = self.index.knn_query(q[None, :], k=K, num_threads=1)
        return labels[0], (time.perf_counter_ns() - t) / 1000


def overhead(call, q):
    """Median wall time of a call that does almost nothing: the binding's cost per query."""
    times = []
    for _ in range(2000):
        t = time.perf_counter_ns()
        call(q)
        times.append((time.perf_counter_ns() - t) / 1000)
    return statistics.median(times)


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main():
    a = parse()
    efs = [int(e) for e in a.efs.split(",")]
    ids, base, queries, truth = load(a.data, a.queries)
    dim = base.shape[1]
    ubase, uqueries = unit(base), unit(queries)
    print(f"dataset {os.path.basename(a.data.rstrip('/'))}: {len(ids)} × {dim}, {len(queries)} queries, "
          f"k {K}, M {M}, ef_construction {EF_CONSTRUCTION}; builds on {CORES} threads, searches on one",
          file=sys.stderr)

    engines = []
    try:
        q_default = Quiver(a.quiver, a.data, dim, "Quiver (defaults)", [])
        engines.append(q_default)
        engines.append(Quiver(a.quiver, a.data, dim, "Quiver --scalar f32", ["--scalar", "f32"]))
        peers = [Faiss(ubase)]
        try:
            peers.append(Hnswlib(ubase))
        except ImportError:
            print("hnswlib is not installed: left out", file=sys.stderr)
        engines.extend(peers)
        for e in engines:
            extra = f" (config {e.config['scalar']}, default ef {e.config['expansion_search']})" if isinstance(e, Quiver) else ""
            print(f"build {e.label}: {e.build_s:.2f} s{extra}", file=sys.stderr)

        results = []  # (engine label, ef, recall, p50, p99)
        for ef in efs:
            for e in engines:
                e.start(ef)
                # Untimed: a fresh search process's first query pays for opening the store.
                e.query(uqueries[0] if not isinstance(e, Quiver) else queries[0])
            lat = {e.label: [] for e in engines}
            hits = {e.label: 0 for e in engines}
            for i, q in enumerate(queries):
                want = set(truth[i])
                order = engines[i % len(engines):] + engines[:i % len(engines)]
                for e in order:
                    got, us = e.query(uqueries[i] if not isinstance(e, Quiver) else q)
                    if not isinstance(e, Quiver):
                        got = [ids[j] for j in got if j >= 0]
                    lat[e.label].append(us)
                    hits[e.label] += len(want.intersection(got[:K]))
            for e in engines:
                r = hits[e.label] / (K * len(queries))
                results.append((e.label, ef, r, statistics.median(lat[e.label]), percentile(lat[e.label], 99)))
                print(f"ef {ef:4} {e.label:22} recall@10 {r:.4f}  p50 {results[-1][3]:7.1f} µs  "
                      f"p99 {results[-1][4]:7.1f} µs", file=sys.stderr)
    finally:
        for e in engines:
            if isinstance(e, Quiver):
                e.close()

    labels = [e.label for e in engines]
    lines = []
    lines.append(f"Dataset {os.path.basename(a.data.rstrip('/'))} ({len(ids)} × {dim}), {len(queries)} queries, "
                 f"k {K}, M {M}, ef_construction {EF_CONSTRUCTION}; one query at a time on one thread, "
                 f"the engines interleaved query by query.")
    lines.append("")
    head = "| ef | " + " | ".join(f"{l} recall@10 | {l} p50 µs" for l in labels) + " |"
    lines.append(head)
    lines.append("|---|" + "---|---|" * len(labels))
    by = {(l, ef): (r, p50, p99) for l, ef, r, p50, p99 in results}
    for ef in efs:
        lines.append(f"| {ef} | " + " | ".join(f"{by[(l, ef)][0]:.4f} | {by[(l, ef)][1]:.0f}" for l in labels) + " |")
    lines.append("")
    lines.append("At recall@10 ≥ 0.99 (the smallest ef of the list that reaches it):")
    lines.append("")
    lines.append("| engine | ef | recall@10 | p50 µs | p50 / faiss |")
    lines.append("|---|---|---|---|---|")
    first = {}
    for l in labels:
        ok = [ef for ef in efs if by[(l, ef)][0] >= 0.99]
        first[l] = ok[0] if ok else None
    fa = first.get(Faiss.label)
    for l in labels:
        ef = first[l]
        if ef is None:
            lines.append(f"| {l} | none reaches 0.99 | | | |")
            continue
        ratio = f"**{by[(l, ef)][1] / by[(Faiss.label, fa)][1]:.2f}**" if fa else "n/a"
        lines.append(f"| {l} | {ef} | {by[(l, ef)][0]:.4f} | {by[(l, ef)][1]:.0f} | {ratio} |")
    # A search with no --ef runs at the collection's own expansion_search.
    for e in engines:
        if isinstance(e, Quiver) and e.config["expansion_search"] in efs:
            ef = e.config["expansion_search"]
            ratio = f"**{by[(e.label, ef)][1] / by[(Faiss.label, fa)][1]:.2f}**" if fa else "n/a"
            lines.append(f"| {e.label}, searched with no --ef | {ef} (its default) | {by[(e.label, ef)][0]:.4f} "
                         f"| {by[(e.label, ef)][1]:.0f} | {ratio} |")
    lines.append("")
    for e in engines:
        if hasattr(e, "overhead_us"):
            lines.append(f"- {e.label}: the Python call itself (a one-vector index) costs {e.overhead_us:.1f} µs "
                         "of each of its latencies.")
    for e in engines:
        lines.append(f"- build {e.label}: {e.build_s:.2f} s"
                     + (" (durable import: each batch committed, indexed; snapshot written)" if isinstance(e, Quiver) else ""))
    text = "\n".join(lines)
    print(text)
    if a.markdown:
        open(a.markdown, "w").write(text + "\n")
    if a.json:
        json.dump([dict(engine=l, ef=ef, recall=r, p50_us=p50, p99_us=p99) for l, ef, r, p50, p99 in results],
                  open(a.json, "w"), indent=1)
    if a.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for l in labels:
            xs = [by[(l, ef)][0] for ef in efs]
            ys = [by[(l, ef)][1] for ef in efs]
            ax.plot(xs, ys, marker="o", label=l)
            for ef, x, y in zip(efs, xs, ys):
                ax.annotate(str(ef), (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7)
        ax.axvline(0.99, color="grey", lw=0.8, ls="--")
        ax.set_xlabel("recall@10")
        ax.set_ylabel("p50 latency, µs (one thread)")
        ax.set_title(f"{os.path.basename(a.data.rstrip('/'))}: recall against latency (labels: ef)")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(a.plot)


if __name__ == "__main__":
    main()
