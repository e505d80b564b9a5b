"""`quiver mcp` driven by the official MCP Python SDK, checked against the CLI.

Run by scripts/test (which installs the `mcp` package into target/mcp-venv):

    target/mcp-venv/bin/python crates/quiver-cli/tests/mcp_client.py QUIVER_BIN MODEL_DIR

Every answer of the server is compared with what `quiver` itself prints for the same store.
Exits non-zero, naming the check, on the first failure.
"""

import asyncio
import hashlib
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time

from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client

QUIVER, MODEL = sys.argv[1], sys.argv[2]
TOPICS = ["work", "family", "health", "travel", "code"]
PHRASES = {
    "work": ["the quarterly report is due on friday", "meeting with the design team about the launch",
             "ask the manager about the budget", "the client wants the contract revised"],
    "family": ["call mum on sunday", "the kids have a school play next week",
               "plan a birthday dinner for grandpa", "pick up my sister from the airport"],
    "health": ["dentist appointment on tuesday", "run five kilometres before work",
               "take the vitamins after breakfast", "the doctor said to sleep more"],
    "travel": ["book the train to lisbon", "renew the passport before july",
               "hotel in kyoto near the station", "pack the charger and adapters"],
    "code": ["the rust build fails on the musl target", "review the pull request about the parser",
             "sqlite wal checkpoint tuning", "the vector index needs a rebuild"],
}
EXPECTED_TOOLS = {"list_collections", "collection_info", "create_collection", "upsert", "search",
                  "get", "update", "delete", "count"}


def check(cond, what):
    if not cond:
        raise SystemExit(f"mcp_client: FAILED: {what}")


def cli(store, *args, ok=True):
    r = subprocess.run([QUIVER, "--store", store, *args, "--json"], capture_output=True, text=True)
    if ok:
        check(r.returncode == 0, f"quiver {' '.join(args)}: exit {r.returncode}: {r.stderr}")
    return r


def cli_lines(store, *args):
    return [json.loads(line) for line in cli(store, *args).stdout.splitlines() if line.strip()]


def store_digest(store):
    """The store's bytes, except SQLite's shared-memory index (rewritten by readers)."""
    h = hashlib.sha256()
    for root, _, files in sorted(os.walk(store)):
        for f in sorted(files):
            if f.endswith("-shm") or f == "LOCK":
                continue
            p = os.path.join(root, f)
            h.update(p.encode())
            h.update(open(p, "rb").read())
    return h.hexdigest()


async def call(s, tool, args):
    """A tool's JSON answer; fails the test on a tool error."""
    r = await s.call_tool(tool, args)
    check(not r.is_error, f"{tool} {json.dumps(args)[:200]}: tool error {r.content[0].text if r.content else ''}")
    return json.loads(r.content[0].text)


async def call_error(s, tool, args):
    """The error text of a call that must fail: a tool error or a JSON-RPC error."""
    try:
        r = await s.call_tool(tool, args)
    except Exception as e:  # the SDK raises on JSON-RPC errors
        return f"jsonrpc: {e}"
    check(r.is_error, f"{tool} {json.dumps(args)[:200]} should have failed, got {r.content[0].text[:200]}")
    return r.content[0].text


def same_hits(mcp_hits, cli_hits, what):
    check([h["id"] for h in mcp_hits] == [h["id"] for h in cli_hits],
          f"{what}: ids differ: mcp {[h['id'] for h in mcp_hits]} cli {[h['id'] for h in cli_hits]}")
    for a, b in zip(mcp_hits, cli_hits):
        for key in ("distance", "score"):
            if key in a or key in b:
                check(abs(a[key] - b[key]) < 1e-5, f"{what}: {key} of {a['id']}: {a[key]} vs {b[key]}")
        check(a.get("metadata") == b.get("metadata"), f"{what}: metadata of {a['id']}")
        check(a.get("text") == b.get("text"), f"{what}: text of {a['id']}")


async def memory_workload(s, store, prefix):
    """Create, upsert 200 memories with tags, search, get, update, delete, count; each checked
    against the CLI. Returns the collection's name."""
    name = f"{prefix}mem"
    info = await call(s, "create_collection", {"name": name, "model": MODEL})
    check(info["config"]["dimension"] == 384, "create_collection: dimension from the model")
    check(info["config"]["embedding"]["dimension"] == 384, "create_collection: bound to the model")
    rng = random.Random(7)
    records = []
    for i in range(200):
        topic = TOPICS[i % len(TOPICS)]
        extra = rng.sample([t for t in TOPICS if t != topic], k=i % 3)
        rec = {"text": f"{rng.choice(PHRASES[topic])} ({i})", "metadata": {"tags": [topic, *extra], "n": i}}
        if i % 10 != 0:  # every tenth gets a generated id
            rec["id"] = f"m{i:03}"
        records.append(rec)
    ids = []
    for b in range(0, 200, 50):
        r = await call(s, "upsert", {"collection": name, "records": records[b:b + 50]})
        check(r["upserted"] == 50 and len(r["ids"]) == 50, "upsert: 50 ids back")
        ids += r["ids"]
    check(len(set(ids)) == 200, "upsert: generated ids are distinct")
    generated = [i for i, r in zip(ids, records) if "id" not in r]
    check(all(len(g) == 32 for g in generated), "upsert: generated ids")
    check(int(cli(store, "count", name).stdout) == 200, "cli count after upsert")
    c = await call(s, "count", {"collection": name})
    check(c["count"] == 200, "count tool")

    # Vector search by text with a filter, against the CLI.
    q, f = "when is the dentist", "tags CONTAINS 'health'"
    r = await call(s, "search", {"collection": name, "text": q, "filter": f, "k": 5})
    check(len(r["hits"]) == 5, "search: 5 hits")
    check(all("health" in h["metadata"]["tags"] for h in r["hits"]), "search: filter held")
    want = cli_lines(store, "search", name, "--text", q, "--filter", f, "-k", "5", "--include", "text,metadata")[0]
    same_hits(r["hits"], want["hits"], "filtered text search")
    check(r["plan"] == want["plan"], "search: same plan")
    # Hybrid and keyword.
    q = "passport for the trip"
    r = await call(s, "search", {"collection": name, "text": q, "mode": "hybrid", "k": 8})
    want = cli_lines(store, "search", name, "--text", q, "--mode", "hybrid", "-k", "8", "--include", "text,metadata")[0]
    same_hits(r["hits"], want["hits"], "hybrid search")
    r = await call(s, "search", {"collection": name, "text": "sqlite checkpoint", "mode": "keyword", "k": 4,
                                 "filter": "n >= 100"})
    want = cli_lines(store, "search", name, "--text", "sqlite checkpoint", "--mode", "keyword", "-k", "4",
                     "--filter", "n >= 100", "--include", "text,metadata")[0]
    same_hits(r["hits"], want["hits"], "keyword search")

    # Get by ids, and a filtered, ordered page with its cursor.
    r = await call(s, "get", {"collection": name, "ids": ["m001", generated[0], "nope"]})
    want = cli_lines(store, "get", name, "m001", generated[0], "nope")
    check(r["records"] == want, "get by ids")
    r = await call(s, "get", {"collection": name, "filter": "tags CONTAINS 'code'", "order_by": "n",
                              "desc": True, "limit": 7})
    want = cli_lines(store, "get", name, "--filter", "tags CONTAINS 'code'", "--order-by", "n", "--desc",
                     "--limit", "7", "--paged")
    check(r["records"] == want[:-1] and r["next"] == want[-1]["next"], "get: filtered page")
    r2 = await call(s, "get", {"collection": name, "filter": "tags CONTAINS 'code'", "order_by": "n",
                               "desc": True, "limit": 7, "after": r["next"]})
    check(r2["records"][0]["metadata"]["n"] < r["records"][-1]["metadata"]["n"], "get: next page")

    # Update: merge a key, then the CLI sees it.
    r = await call(s, "update", {"collection": name, "id": "m001", "merge": {"pinned": True}})
    check(r["updated"] == 1, "update: one record")
    got = cli_lines(store, "get", name, "m001")[0]
    check(got["metadata"]["pinned"] is True and got["metadata"]["n"] == 1, "update merged, seen by the CLI")
    # A new text is re-embedded: the record moves to where its text is.
    await call(s, "update", {"collection": name, "id": "m002", "text": "penguins in antarctica"})
    r = await call(s, "search", {"collection": name, "text": "antarctic penguins", "k": 1})
    check(r["hits"][0]["id"] == "m002", "update: new text re-embedded")

    # Delete by filter: more than 10 matches needs confirm.
    f = "tags CONTAINS 'travel'"
    n = int(cli(store, "count", name, "--filter", f).stdout)
    check(n > 10, "enough travel memories")
    e = await call_error(s, "delete", {"collection": name, "filter": f})
    check("confirm" in e, f"delete without confirm: {e}")
    check(int(cli(store, "count", name, "--filter", f).stdout) == n, "refused delete changed nothing")
    r = await call(s, "delete", {"collection": name, "filter": f, "confirm": True})
    check(r["deleted"] == n, "delete: count")
    check(int(cli(store, "count", name, "--filter", f).stdout) == 0, "deleted, seen by the CLI")
    c = await call(s, "count", {"collection": name})
    check(c["count"] == 200 - n == int(cli(store, "count", name).stdout), "count after delete")
    r = await call(s, "delete", {"collection": name, "ids": ["m001"]})
    check(r["deleted"] == 1, "delete by id")
    return name


async def hostile(s, store, name):
    """Bad requests: errors, the store byte-identical, the server still answering."""
    before = store_digest(store)
    count = (await call(s, "count", {"collection": name}))["count"]
    cases = [
        ("no_such_tool", {}),
        ("search", {"collection": name, "text": "x", "k": "ten"}),
        ("search", {"collection": name, "text": "x", "k": 10**12}),
        ("search", {"collection": name, "text": "x", "k": 0}),
        ("search", {"collection": name, "text": "x", "filter": "tags CONTAINS"}),
        ("search", {"collection": name, "text": "x", "filter": "n >>> 3"}),
        ("search", {"collection": name, "vector": [0.1, 0.2]}),
        ("search", {"collection": "no_such_collection", "text": "x"}),
        ("search", {"collection": name, "text": "x", "mode": "psychic"}),
        ("search", {"collection": name, "text": "x", "surprise": 1}),
        ("count", {"collection": name, "filter": "(((("}),
        ("count", {"collection": 5}),
        ("get", {"collection": name, "ids": "m001"}),
        ("get", {"collection": name, "limit": 0}),
        ("update", {"collection": name, "id": "m005"}),
        ("update", {"collection": name, "id": "m005", "metadata": [1, 2]}),
        ("update", {"collection": name, "id": "m005", "metadata": {"a": 1}, "merge": {"b": 2}}),
        ("get", {"collection": name, "limit": 1001}),
        ("upsert", {"collection": name, "records": []}),
        ("upsert", {"collection": name, "records": [{"id": "v", "vector": [1.0, 2.0]}]}),
        ("upsert", {"collection": name, "records": [{"id": "v"}]}),
        ("upsert", {"collection": name, "records": [{"id": "v", "text": ""}]}),
        ("upsert", {"collection": name, "records": [{"id": "ok", "text": "fine"}, {"id": "bad", "vector": [1.0]}]}),
        ("upsert", {"collection": name, "records": [{"id": f"r{i}", "vector": [0.0]} for i in range(10_001)]}),
        ("upsert", {"collection": name, "records": [{"id": "huge", "text": "word " * 400_000}]}),
        ("delete", {"collection": name}),
        ("delete", {"collection": name, "filter": "n >= 0"}),
        ("create_collection", {"name": "bad name!", "dimension": 3}),
        ("create_collection", {"name": "nodim"}),
        ("create_collection", {"name": name, "dimension": 3}),
        ("create_collection", {"name": "x1", "dimension": 3, "metric": "manhattan"}),
        ("collection_info", {"collection": "nope"}),
    ]
    for tool, args in cases:
        e = await call_error(s, tool, args)
        check(e.strip() and "\n" not in e.strip(), f"{tool}: a one-line message, got {e!r}")
        check((await call(s, "count", {"collection": name}))["count"] == count, f"{tool}: server still answering")
    e = await call_error(s, "search", {"collection": name, "text": "x", "filter": "tags CONTAINS"})
    check("at 13" in e or "at 14" in e, f"bad filter names its position: {e}")
    e = await call_error(s, "search", {"collection": "no_such_collection", "text": "x"})
    check("no_such_collection" in e, f"unknown collection named: {e}")
    e = await call_error(s, "update", {"collection": name, "id": "m005"})
    check("nothing to change" in e, f"an empty update says why: {e}")
    e = await call_error(s, "search", {"collection": name, "vector": [0.1, 0.2]})
    check("384" in e and "2" in e, f"a dimension mismatch names both: {e}")
    check(store_digest(store) == before, "hostile requests left the store byte-identical")


async def concurrent(s, store, name):
    """Searches at once over one session, and the CLI writing beside the server."""
    qs = [f"{p} {i}" for i, p in enumerate(sum(PHRASES.values(), []))]
    answers = await asyncio.gather(*[call(s, "search", {"collection": name, "text": q, "k": 3}) for q in qs])
    check(all(len(a["hits"]) == 3 for a in answers), "concurrent searches answered")
    # The CLI writes (embedding with the collection's bound model); the server sees it.
    cli(store, "upsert", name, "--id", "from-cli", "--text", "the giraffe escaped from the zoo",
        "--metadata", '{"tags": ["cli"]}')
    r = await call(s, "search", {"collection": name, "text": "giraffe zoo escape", "k": 1})
    check(r["hits"][0]["id"] == "from-cli", "the server sees the CLI's write")
    # The server writes; a CLI search sees it.
    await call(s, "upsert", {"collection": name, "records": [{"id": "from-mcp", "text": "volcano eruption in iceland"}]})
    got = cli_lines(store, "search", name, "--text", "icelandic volcano", "-k", "1")[0]
    check(got["hits"][0]["id"] == "from-mcp", "the CLI sees the server's write")
    # Writes from both at once.
    procs = [subprocess.Popen([QUIVER, "--store", store, "upsert", name, "--id", f"c{i}", "--text", f"cli note {i}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for i in range(4)]
    await asyncio.gather(*[call(s, "upsert", {"collection": name, "records": [{"id": f"s{i}", "text": f"server note {i}"}]})
                           for i in range(4)])
    for p in procs:
        check(p.wait() == 0, f"a CLI write beside the server: {p.stderr.read()}")
    r = await call(s, "get", {"collection": name, "ids": [f"c{i}" for i in range(4)] + [f"s{i}" for i in range(4)]})
    check(all("missing" not in x for x in r["records"]), "both sides' writes are in")


async def resources(s, name):
    rs = await s.list_resources()
    uris = [r.uri for r in rs.resources]
    check(f"quiver://collections/{name}" in uris, f"resources list the collection: {uris}")
    rr = await s.read_resource(f"quiver://collections/{name}")
    info = json.loads(rr.contents[0].text)
    check(info["name"] == name and info["count"] > 0, "resource holds the collection's info")


async def stdio_run(store):
    params = StdioServerParameters(command=QUIVER, args=["--store", store, "mcp"])
    async with stdio_client(params) as (r, w):
        async with ClientSession(r, w) as s:
            await s.initialize()
            tools = {t.name: t for t in (await s.list_tools()).tools}
            check(set(tools) == EXPECTED_TOOLS, f"tools: {sorted(tools)}")
            for t in tools.values():
                check(t.description and len(t.description) > 20, f"{t.name}: a description")
                check(t.input_schema.get("type") == "object", f"{t.name}: an object schema")
            props = tools["search"].input_schema["properties"]
            check({"text", "vector", "mode", "k", "filter", "include", "collection"} <= set(props),
                  f"search schema: {sorted(props)}")
            check(set(tools["upsert"].input_schema.get("required", [])) == {"records"}, "upsert requires records")
            name = await memory_workload(s, store, "")
            await hostile(s, store, name)
            await concurrent(s, store, name)
            await resources(s, name)
    # --collection makes it the default; --read-only refuses writes and changes nothing.
    before = store_digest(store)
    params = StdioServerParameters(command=QUIVER, args=["--store", store, "mcp", "--collection", name, "--read-only"])
    async with stdio_client(params) as (r, w):
        async with ClientSession(r, w) as s:
            await s.initialize()
            c = await call(s, "count", {})
            check(c["count"] == int(cli(store, "count", name).stdout), "--collection is the default")
            r1 = await call(s, "search", {"text": "giraffe", "k": 1})
            check(r1["hits"][0]["id"] == "from-cli", "a read-only server searches")
            e = await call_error(s, "upsert", {"records": [{"id": "ro", "text": "no"}]})
            check("read-only" in e, f"read-only refuses writes: {e}")
            e = await call_error(s, "delete", {"ids": ["m005"]})
            check("read-only" in e, f"read-only refuses deletes: {e}")
    check(store_digest(store) == before, "a read-only server changed nothing")
    # A default collection that does not exist: the server does not start, and makes no store.
    missing = store + "-missing"
    r = subprocess.run([QUIVER, "--store", missing, "mcp", "--collection", "mem"], capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=30)
    check(r.returncode == 2 and not os.path.exists(missing), f"--collection on no store: {r.returncode} {r.stderr}")
    print("mcp_client: stdio: memory workload, hostile requests, concurrency, resources, --collection, --read-only: ok")


def raw_stdio(store):
    """Lines no SDK would send: not JSON, an unknown method, a call without its params. The
    server answers what has an id with a JSON-RPC error (or a tool error) and keeps serving."""
    p = subprocess.Popen([QUIVER, "--store", store, "mcp"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)

    def send(obj):
        p.stdin.write((obj if isinstance(obj, str) else json.dumps(obj)) + "\n")
        p.stdin.flush()

    def answer(want_id):
        while True:
            line = p.stdout.readline()
            check(line, f"the server closed instead of answering request {want_id}")
            msg = json.loads(line)
            if msg.get("id") == want_id:
                return msg

    send({"jsonrpc": "2.0", "id": 1, "method": "initialize",
          "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}})
    check("result" in answer(1), "raw initialize")
    send({"jsonrpc": "2.0", "method": "notifications/initialized"})
    send("this is not json")
    send('{"jsonrpc": "2.0", "id": 2, "method": ')
    send({"jsonrpc": "2.0", "id": 3, "method": "no/such/method"})
    check("error" in answer(3), "unknown method: a JSON-RPC error")
    send({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "count", "arguments": "nope"}})
    m = answer(4)
    check("error" in m or m["result"].get("isError"), f"bad arguments: an error, got {m}")
    send({"jsonrpc": "2.0", "id": 5, "method": "tools/list"})
    check(len(answer(5)["result"]["tools"]) == len(EXPECTED_TOOLS), "still serving after malformed lines")
    p.stdin.close()
    check(p.wait(timeout=30) == 0, "the server exits cleanly when its input ends")
    print("mcp_client: raw stdio: malformed lines answered or ignored, server still serving: ok")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_http(store, *args):
    port = free_port()
    p = subprocess.Popen([QUIVER, "--store", store, "mcp", "--http", f"127.0.0.1:{port}", *args],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 30
    while time.time() < deadline:
        if p.poll() is not None:
            raise SystemExit(f"mcp_client: FAILED: quiver mcp --http exited: {p.stderr.read()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return p, f"http://127.0.0.1:{port}/mcp"
        except OSError:
            time.sleep(0.1)
    raise SystemExit("mcp_client: FAILED: the HTTP server did not start")


async def http_run(store):
    # Refused: a non-loopback address without --allow-remote, or without a token.
    for extra in ([], ["--allow-remote"]):
        r = subprocess.run([QUIVER, "--store", store, "mcp", "--http", "0.0.0.0:0", *extra],
                           capture_output=True, text=True, timeout=30)
        check(r.returncode == 2 and ("loopback" in r.stderr or "--token-file" in r.stderr),
              f"non-loopback refused ({extra}): {r.returncode} {r.stderr}")
    p, url = start_http(store)
    try:
        async with streamable_http_client(url) as (r, w):
            async with ClientSession(r, w) as s:
                await s.initialize()
                name = await memory_workload(s, store, "http_")
                await hostile(s, store, name)
    finally:
        p.terminate()
        p.wait(timeout=30)
    # With a token: a request without it gets 401, one with it works.
    token_file = os.path.join(store, "..", "token")
    open(token_file, "w").write("s3cret-token-of-sufficient-length\n")
    p, url = start_http(store, "--token-file", token_file)
    try:
        import httpx2 as httpx
        accept = {"Accept": "application/json, text/event-stream"}
        for bad in ({}, {"Authorization": "Bearer wrong-token-of-sufficient-length"},
                    {"Authorization": "s3cret-token-of-sufficient-length"},
                    {"Authorization": "Basic s3cret-token-of-sufficient-length"}):
            r = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"}, headers={**accept, **bad})
            check(r.status_code == 401, f"token {bad}: {r.status_code}")
        client = create_mcp_http_client(headers={"Authorization": "Bearer s3cret-token-of-sufficient-length"})
        async with streamable_http_client(url, http_client=client) as (r, w):
            async with ClientSession(r, w) as s:
                await s.initialize()
                c = await call(s, "count", {"collection": "http_mem"})
                check(c["count"] == int(cli(store, "count", "http_mem").stdout), "count over HTTP with a token")
    finally:
        p.terminate()
        p.wait(timeout=30)
    # --allow-remote: any address, any Host header, but only with the token.
    port = free_port()
    p = subprocess.Popen([QUIVER, "--store", store, "mcp", "--http", f"0.0.0.0:{port}", "--allow-remote",
                          "--token-file", token_file], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
        headers = {"Accept": "application/json, text/event-stream", "Host": f"quiver.example:{port}"}
        deadline, r = time.time() + 30, None
        while time.time() < deadline:
            try:
                r = httpx.post(f"http://127.0.0.1:{port}/mcp", json=init, headers=headers)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        check(r is not None and r.status_code == 401, f"remote without the token: {r and r.status_code}")
        r = httpx.post(f"http://127.0.0.1:{port}/mcp", json=init,
                       headers={**headers, "Authorization": "Bearer s3cret-token-of-sufficient-length"})
        check(r.status_code == 200 and "protocolVersion" in r.text, f"remote with the token: {r.status_code} {r.text[:200]}")
    finally:
        p.terminate()
        p.wait(timeout=30)
    print("mcp_client: http: memory workload, hostile requests, loopback, token and remote rules: ok")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        store = os.path.join(tmp, "store")
        asyncio.run(stdio_run(store))
        raw_stdio(store)
        asyncio.run(http_run(store))


if __name__ == "__main__":
    main()
