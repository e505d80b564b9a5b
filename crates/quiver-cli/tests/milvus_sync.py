"""`quiver sync` onto a real Milvus server, and `import --from milvus://` back.

Run by scripts/test after `cargo test`, with the Python of a virtual
environment holding the `milvus` package (the real Milvus standalone
server, 2.3.5) and pymilvus:

    python milvus_sync.py QUIVER_BINARY

It starts one Milvus server on a fresh data directory (default ports:
19530 gRPC, 9091 health) and stops it, with its children, at the end.
Every check reads Milvus through pymilvus with Strong consistency and
compares it with the local store as `quiver export` prints it:

1. a few thousand records synced, then upserts, updates and deletes
   (by id and by filter) synced again: Milvus holds exactly the local
   state (ids, vectors to float precision, text, metadata); `--verify`
   agrees, and finds a difference made behind its back, which `--full`
   repairs;
2. `sync --follow` killed with SIGKILL at random moments while a writer
   process keeps writing, and restarted: after it catches up, both sides
   are equal;
3. Milvus stopped and restarted under `sync --follow`: the sync reports
   the outage, retries with backoff, and converges;
4. `import --from milvus://` into a new store gives the same records;
5. bad targets and credentials on the command line are exit 2.
"""

import json
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

from pymilvus import MilvusClient

# pymilvus logs every failed call; the outage test makes many on purpose.
logging.getLogger("pymilvus").setLevel(logging.CRITICAL)

QUIVER = os.path.abspath(sys.argv[1])
MILVUS_SERVER = os.path.join(os.path.dirname(sys.executable), "milvus-server")
HOST = "127.0.0.1"
PORT = 19530
DIM = 16


def log(*args):
    print("milvus_sync:", *args, flush=True)


# ---- the server ----


class Server:
    def __init__(self, data):
        self.data = data
        self.proc = None
        self.log = open(os.path.join(os.path.dirname(data), "milvus.log"), "ab")

    def healthy(self):
        try:
            with urllib.request.urlopen("http://127.0.0.1:9091/healthz", timeout=2) as r:
                return r.read().strip() == b"OK"
        except Exception:
            return False

    def start(self, attempts=5, timeout=45):
        """Start the server and wait for its health check. Milvus 2.3.5's
        embedded etcd sometimes loses its first leader election on a quick
        restart ("etcdserver: leader changed") and the server then never
        becomes healthy: such a start is stopped and tried again (on a
        wiped directory when the server is new)."""
        import shutil
        import socket

        # One Milvus standalone per machine (it locks /run/milvus/standalone.pid).
        with socket.socket() as s:
            busy = s.connect_ex((HOST, PORT)) == 0
        assert not busy and not self.healthy(), f"a Milvus server is already running on port {PORT}: stop it first"
        fresh = not os.path.exists(self.data)
        for attempt in range(1, attempts + 1):
            self.proc = subprocess.Popen(
                [MILVUS_SERVER, "--data", self.data],
                stdout=self.log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            deadline = time.time() + timeout
            while not self.healthy() and time.time() < deadline and self.proc.poll() is None:
                time.sleep(0.5)
            if self.healthy():
                return
            log(f"milvus-server not healthy after {timeout} s (attempt {attempt}); starting it again")
            self.stop()
            if fresh:
                shutil.rmtree(self.data, ignore_errors=True)
        raise AssertionError(f"milvus-server did not become healthy in {attempts} attempts; see milvus.log")

    def stop(self):
        """SIGTERM to the server's process group (the wrapper and the real
        server under it), SIGKILL to whatever is left after 30 s; returns
        once no process of the group is left and the port is free."""
        if self.proc is None:
            return
        pgid = self.proc.pid

        def group_alive():
            try:
                os.killpg(pgid, 0)
                return True
            except ProcessLookupError:
                return False

        for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            if not group_alive():
                break
            os.killpg(pgid, sig)
            deadline = time.time() + wait
            while group_alive() and time.time() < deadline:
                self.proc.poll()  # reap the wrapper
                time.sleep(0.2)
        self.proc.wait()
        self.proc = None
        import socket

        deadline = time.time() + 30
        while time.time() < deadline:
            with socket.socket() as s:
                if s.connect_ex((HOST, PORT)) != 0:
                    break
            time.sleep(0.2)


# ---- the local side ----


def quiver(store, *args, input=None, check=True):
    r = subprocess.run(
        [QUIVER, "--store", store, *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check and r.returncode != 0:
        raise AssertionError(f"quiver {args} exit {r.returncode}: {r.stderr}")
    return r


def local_state(store, name):
    out = quiver(store, "export", name, "--no-settings").stdout
    state = {}
    for line in out.splitlines():
        r = json.loads(line)
        state[r["id"]] = (r["vector"], r.get("text"), r.get("metadata"))
    return state


def remote_state(client, name):
    """Every row, read with Strong consistency, in the local shape."""
    state = {}
    after = None
    while True:
        flt = 'id >= ""' if after is None else f"id > {json.dumps(after)}"
        rows = client.query(
            name,
            filter=flt,
            output_fields=["id", "vector", "text", "metadata", "present"],
            limit=4000,
            consistency_level="Strong",
        )
        if not rows:
            break
        rows.sort(key=lambda r: r["id"].encode())
        for r in rows:
            p = r["present"]
            state[r["id"]] = (
                [float(x) for x in r["vector"]],
                r["text"] if p & 1 else None,
                r["metadata"] if p & 2 else None,
            )
        after = rows[-1]["id"]
        if len(rows) < 4000:
            break
    return state


def same(local, remote, what):
    """Equal ids, text and metadata; vectors equal at float32 precision."""
    assert local.keys() == remote.keys(), (
        f"{what}: ids differ: {len(local.keys() - remote.keys())} only local "
        f"(e.g. {sorted(local.keys() - remote.keys())[:3]}), "
        f"{len(remote.keys() - local.keys())} only in Milvus "
        f"(e.g. {sorted(remote.keys() - local.keys())[:3]})"
    )
    import struct

    def f32(v):
        return struct.pack(f"<{len(v)}f", *v)

    for id_, (v, t, m) in local.items():
        rv, rt, rm = remote[id_]
        assert f32(v) == f32(rv), f"{what}: vector of {id_!r} differs"
        assert t == rt, f"{what}: text of {id_!r}: {t!r} here, {rt!r} in Milvus"
        assert m == rm, f"{what}: metadata of {id_!r}: {m!r} here, {rm!r} in Milvus"


def records(rng, ids, tag):
    lines = []
    for i in ids:
        r = {"id": i, "vector": [rng.uniform(-1, 1) for _ in range(DIM)]}
        if rng.random() < 0.7:
            r["text"] = f"{tag} memory {i} \"quoted\" π {rng.randrange(1000)}"
        if rng.random() < 0.8:
            r["metadata"] = {
                "g": rng.randrange(5),
                "tags": rng.sample(["db", "rust", "go", "ml", "ops"], 2),
                "nested": {"n": rng.randrange(100)},
            }
        lines.append(json.dumps(r))
    return "\n".join(lines) + "\n"


def target(name):
    return f"milvus://{HOST}:{PORT}/{name}"


# ---- the tests ----


def sync_then_edit_then_sync(work, client):
    store = os.path.join(work, "s1")
    rng = random.Random(1)
    quiver(store, "create", "mem", "--dim", str(DIM), "--metric", "cos", "--connectivity", "12")
    ids = [f"m{i}" for i in range(3000)] + ['odd "quote"', "back\\slash", "ünïcode ✓"]
    quiver(store, "import", "mem", "-", input=records(rng, ids, "first"))
    r = quiver(store, "sync", "mem", "--to", target("mem"), "--batch", "700")
    report = json.loads(r.stdout)
    assert report["copied"] == len(ids), report
    same(local_state(store, "mem"), remote_state(client, "mem"), "after the first sync")
    desc = client.describe_collection("mem")
    assert any(f["name"] == "metadata" for f in desc["fields"]), desc
    idx = client.describe_index("mem", index_name=client.list_indexes("mem")[0])
    assert idx["index_type"] == "HNSW" and idx["metric_type"] == "COSINE", idx
    assert str(idx.get("M")) == "12", idx

    # Upserts (new and replacing), updates, deletes by id and by filter.
    quiver(store, "import", "mem", "-", input=records(rng, [f"m{i}" for i in range(2800, 3300)], "second"))
    for i in range(0, 200, 7):
        quiver(store, "update", "mem", "--id", f"m{i}", "--merge", json.dumps({"touched": i}))
    quiver(store, "update", "mem", "--id", "m1", "--text", "a new text")
    quiver(store, "delete", "mem", *[f"m{i}" for i in range(300, 600)])
    quiver(store, "delete", "mem", "--filter", "g = 3 AND nested.n < 30")
    quiver(store, "delete", "mem", 'odd "quote"')
    r = quiver(store, "sync", "mem", "--to", target("mem"))
    report = json.loads(r.stdout)
    assert report["copied"] == 0 and report["deleted"] >= 300 and report["upserted"] >= 400, report
    same(local_state(store, "mem"), remote_state(client, "mem"), "after the second sync")

    # An empty tail is a no-op; --verify agrees.
    report = json.loads(quiver(store, "sync", "mem", "--to", target("mem")).stdout)
    assert report["upserted"] == 0 and report["deleted"] == 0, report
    v = quiver(store, "sync", "mem", "--to", target("mem"), "--verify")
    assert json.loads(v.stdout)["differences"] == [], v.stdout

    # A change behind the sync's back: --verify finds it, --full repairs it.
    client.delete("mem", filter='id in ["m1", "m2"]')
    client.upsert("mem", [{"id": "stray", "vector": [0.5] * DIM, "text": "", "metadata": {}, "present": 0}])
    v = quiver(store, "sync", "mem", "--to", target("mem"), "--verify", check=False)
    diffs = json.loads(v.stdout)["differences"]
    assert v.returncode == 1, v
    assert any("not in Milvus" in d for d in diffs) and any("only in Milvus" in d for d in diffs), diffs
    report = json.loads(quiver(store, "sync", "mem", "--to", target("mem"), "--full").stdout)
    assert report["removed_remote_only"] == 1, report
    same(local_state(store, "mem"), remote_state(client, "mem"), "after --full")
    assert quiver(store, "sync", "mem", "--to", target("mem"), "--verify").returncode == 0

    # And back: the Milvus collection into a new store.
    back = os.path.join(work, "back")
    r = quiver(back, "import", "copy", "--from", target("mem"), "--batch", "500")
    assert json.loads(r.stdout)["imported"] == len(local_state(store, "mem"))
    assert local_state(back, "copy") == local_state(store, "mem"), "import --from differs"
    info = json.loads(quiver(back, "--json", "info", "copy").stdout)
    assert info["config"]["metric"] == "cos" and info["config"]["dimension"] == DIM, info
    log("sync, edit, sync, verify, --full, import --from: equal")
    return store


def writer(store, seconds, seed):
    """A process that keeps writing: imports, updates and deletes."""
    code = f"""
import json, random, subprocess, time
rng = random.Random({seed})
end = time.time() + {seconds}
n = 0
while time.time() < end:
    ids = [f"w{{rng.randrange(800)}}" for _ in range(rng.randrange(1, 30))]
    lines = "\\n".join(json.dumps({{"id": i, "vector": [rng.uniform(-1, 1) for _ in range({DIM})],
        "metadata": {{"g": rng.randrange(5), "n": n}}}}) for i in ids)
    subprocess.run([{QUIVER!r}, "--store", {store!r}, "import", "live", "-"], input=lines,
        text=True, check=True, capture_output=True)
    victims = [f"w{{rng.randrange(800)}}" for _ in range(rng.randrange(0, 10))]
    if victims:
        subprocess.run([{QUIVER!r}, "--store", {store!r}, "delete", "live", *victims],
            check=True, capture_output=True)
    if rng.random() < 0.1:
        subprocess.run([{QUIVER!r}, "--store", {store!r}, "flush", "live"], check=True, capture_output=True)
    n += 1
"""
    return spawn([sys.executable, "-c", code])


CHILDREN = []  # killed at the end, however the test ends


def follow(store, name, stderr):
    return spawn(
        [QUIVER, "--store", store, "sync", name, "--to", target(name), "--follow", "--poll-ms", "50", "--batch", "200"],
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )


def spawn(args, **kw):
    p = subprocess.Popen(args, **kw)
    CHILDREN.append(p)
    return p


def converge(store, name, client, what, timeout=120):
    """Let a one-shot sync finish the tail, then compare."""
    quiver(store, "sync", name, "--to", target(name))
    same(local_state(store, name), remote_state(client, name), what)


def killed_follow_converges(work, client):
    store = os.path.join(work, "s2")
    quiver(store, "create", "live", "--dim", str(DIM), "--metric", "l2")
    rng = random.Random(2)
    quiver(store, "import", "live", "-", input=records(rng, [f"w{i}" for i in range(400)], "base"))
    w = writer(store, 25, seed=3)
    errlog = open(os.path.join(work, "follow.err"), "w")
    kills = 0
    f = follow(store, "live", errlog)
    while w.poll() is None:
        time.sleep(rng.uniform(0.3, 2.5))
        f.send_signal(signal.SIGKILL)
        f.wait()
        kills += 1
        f = follow(store, "live", errlog)
    assert w.returncode == 0, "the writer failed"
    # The follower catches up by itself within seconds of the last commit.
    converges(store, client, "after the kills", 60, 0.5, AssertionError)
    f.send_signal(signal.SIGKILL)
    f.wait()
    v = quiver(store, "sync", "live", "--to", target("live"), "--verify")
    assert json.loads(v.stdout)["differences"] == []
    log(f"sync --follow killed {kills} times during writes: converged")
    return store


def converges(store, client, why, within, pause, waited):
    """Wait up to `within` s for Milvus to hold what the store's "live" holds,
    retrying on the exceptions `waited` (a mismatch, or more)."""
    local = local_state(store, "live")
    deadline = time.time() + within
    while True:
        try:
            same(local, remote_state(client, "live"), why)
            return
        except waited as e:
            assert time.time() < deadline, f"sync --follow did not converge {why}: {e}"
            time.sleep(pause)


def restarted_milvus_converges(work, client, server):
    store = os.path.join(work, "s2")
    errpath = os.path.join(work, "outage.err")
    errlog = open(errpath, "w")
    f = follow(store, "live", errlog)
    time.sleep(1)
    w = writer(store, 8, seed=4)
    time.sleep(2)
    server.stop()
    log("milvus stopped under sync --follow")
    w.wait()
    assert w.returncode == 0
    # Down for a minute: a quicker restart of Milvus 2.3.5 mostly fails its
    # embedded etcd's first election (see Server.start).
    time.sleep(65)
    server.start()
    log("milvus restarted")
    client = MilvusClient(f"http://{HOST}:{PORT}")
    # The server may still be loading: its errors are waited out too.
    converges(store, client, "after the outage", 180, 1, Exception)
    f.send_signal(signal.SIGTERM)
    f.wait()
    errlog.close()
    said = open(errpath).read()
    assert "retrying in" in said, f"the outage was not reported: {said[-2000:]}"
    log("milvus stopped and restarted under sync --follow: reported, retried, converged")
    return client


def bad_input(work):
    store = os.path.join(work, "s1")
    for args, says in [
        (["sync", "mem", "--to", "http://x/y"], "milvus://"),
        (["sync", "mem", "--to", "milvus://h:0/c"], "port"),
        (["sync", "mem", "--to", "milvus://user:pw@h:1/c"], "host"),
        (["sync", "mem", "--to", "milvus://h:1/9bad"], "collection name"),
        (["sync", "nope", "--to", target("x")], "no collection"),
        (["sync", "mem", "--to", target("x"), "--token", "root:Milvus"], "unexpected argument"),
        (["sync", "mem", "--to", target("x"), "--token-file", "/nonexistent"], "--token-file"),
        (["import", "x", "--from", target("no_such_collection")], "has no collection"),
    ]:
        r = quiver(store, *args, check=False)
        assert r.returncode == 2, (args, r.returncode, r.stderr)
        assert says in r.stderr.splitlines()[0], (args, r.stderr)
    log("bad targets and credentials: exit 2")


def main():
    work = tempfile.mkdtemp(prefix="quiver-milvus-")
    server = Server(os.path.join(work, "milvus-data"))
    started = time.time()
    try:
        server.start()
        log(f"milvus-server healthy after {time.time() - started:.1f} s")
        client = MilvusClient(f"http://{HOST}:{PORT}")
        sync_then_edit_then_sync(work, client)
        killed_follow_converges(work, client)
        restarted_milvus_converges(work, client, server)
        bad_input(work)
    finally:
        for p in CHILDREN:
            if p.poll() is None:
                p.kill()
        server.stop()
    log(f"all passed in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
