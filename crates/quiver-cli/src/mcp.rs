//! `quiver mcp`: the store as a Model Context Protocol server, over stdio
//! or streamable HTTP, with the official Rust SDK (rmcp).
//!
//! Every tool runs the library call on tokio's blocking pool, so searches
//! run in parallel and a slow write never stalls the protocol; writes are
//! serialised by the store itself (and with other processes by its writer
//! lock, taken per write, so the CLI keeps working beside the server). A
//! tool that fails answers with an MCP tool error whose text is the CLI's
//! one-line message; a panic in a tool is caught and answered the same
//! way. Logs go to stderr only: stdout carries the protocol.

use std::net::SocketAddr;
use std::sync::Arc;

use quiver::embed::Embedder;
use quiver::{Collection, Filter, Include, Record, ScanOptions, SearchOptions, Store, Update};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ContentBlock, ListResourcesResult, PaginatedRequestParams,
    ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, Resource,
    ResourceContents, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{schemars, tool, tool_handler, tool_router, ErrorData, RoleServer, ServerHandler};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::output::{input, CliResult, Failure};
use crate::{Cli, McpArgs};

/// A filter delete that would remove more than this many records needs `confirm: true`.
const CONFIRM_ABOVE: u64 = 10;
/// Records one `upsert` call may carry.
const MAX_RECORDS: usize = 10_000;
/// Records one `get` page may return (continue with its `next` cursor).
const MAX_PAGE: usize = 1_000;
/// Bytes of one text (a record's, or a query): an agent's memory or a code
/// chunk is far smaller, and the model reads only its first 256 tokens.
const MAX_TEXT: usize = 1 << 20;

fn check_text(what: &str, text: Option<&str>) -> CliResult<()> {
    match text {
        Some(t) if t.len() > MAX_TEXT => input(format!(
            "{what}: {} bytes of text, at most {MAX_TEXT} a text",
            t.len()
        )),
        _ => Ok(()),
    }
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct CollectionArg {
    /// The collection (default: the server's --collection).
    collection: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct CreateArgs {
    /// Name of the new collection: letters, digits, '_' and '-'.
    name: String,
    /// Embedding model the collection is bound to (a model directory or a Hub id); its
    /// texts and text queries are embedded with it. Gives the dimension.
    model: Option<String>,
    /// Vector dimension, when no model is given (vectors are then supplied by the caller).
    dimension: Option<usize>,
    /// Distance: "cos" (default), "ip" or "l2".
    metric: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RecordArg {
    /// Record id; generated (and returned) when absent. An existing id is replaced.
    id: Option<String>,
    /// Text: stored, searchable by keyword, and embedded with the collection's model when no vector is given.
    text: Option<String>,
    /// The vector, when the caller embeds (length = the collection's dimension).
    vector: Option<Vec<f32>>,
    /// Metadata, a JSON object (e.g. {"tags": ["work"], "source": "chat"}); filters read it.
    metadata: Option<Value>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct UpsertArgs {
    /// The collection (default: the server's --collection).
    collection: Option<String>,
    /// Records to insert or replace, as one transaction.
    records: Vec<RecordArg>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema, Default, PartialEq, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Mode {
    /// Nearest vectors (the text is embedded with the collection's model).
    #[default]
    Vector,
    /// BM25 over the records' text.
    Keyword,
    /// Both, fused by reciprocal rank.
    Hybrid,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct SearchArgs {
    /// The collection (default: the server's --collection).
    collection: Option<String>,
    /// Query text: embedded for vector and hybrid mode, matched by words in keyword and hybrid mode.
    text: Option<String>,
    /// Query vector (vector or hybrid mode), instead of embedding `text`.
    vector: Option<Vec<f32>>,
    /// "vector" (default), "keyword" or "hybrid".
    mode: Option<Mode>,
    /// How many hits (default 10).
    k: Option<usize>,
    /// Only records matching this filter, in Quiver's filter language, e.g.
    /// "tags CONTAINS 'work' AND year >= 2024".
    filter: Option<String>,
    /// Fields to return with each hit: "text", "metadata", "vector" (default: text and metadata).
    include: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct GetArgs {
    /// The collection (default: the server's --collection).
    collection: Option<String>,
    /// Ids of the records to fetch (or give a filter instead).
    ids: Option<Vec<String>>,
    /// Records matching this filter, e.g. "source = 'chat'".
    filter: Option<String>,
    /// Order by this metadata field (default: by id).
    order_by: Option<String>,
    /// Descending order.
    desc: Option<bool>,
    /// The cursor a previous page returned as `next`.
    after: Option<String>,
    /// Records per page (default 100).
    limit: Option<usize>,
    /// Also return each record's vector.
    include_vector: Option<bool>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct UpdateArgs {
    /// The collection (default: the server's --collection).
    collection: Option<String>,
    /// The record to change.
    id: String,
    /// New text (re-embedded with the collection's model when no vector is given).
    text: Option<String>,
    /// New vector.
    vector: Option<Vec<f32>>,
    /// New metadata, replacing the old.
    metadata: Option<Value>,
    /// Keys to merge into the metadata (JSON merge patch: null removes a key).
    merge: Option<Value>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct DeleteArgs {
    /// The collection (default: the server's --collection).
    collection: Option<String>,
    /// Ids of the records to delete.
    ids: Option<Vec<String>>,
    /// Delete every record matching this filter instead.
    filter: Option<String>,
    /// Required when a filter matches more than 10 records.
    confirm: Option<bool>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct CountArgs {
    /// The collection (default: the server's --collection).
    collection: Option<String>,
    /// Count only records matching this filter.
    filter: Option<String>,
}

/// What every tool needs: the store, the default collection, the flags,
/// and the models loaded so far (by source), so that a server loads each
/// model once, not once a call.
struct Ctx {
    store: Store,
    default: Option<String>,
    read_only: bool,
    models: std::sync::Mutex<std::collections::HashMap<String, Arc<dyn Embedder>>>,
    /// Tool calls running at once: more wait (tokio's blocking pool would
    /// otherwise start up to 512 threads).
    permits: tokio::sync::Semaphore,
}

impl Ctx {
    fn collection(&self, name: Option<String>) -> CliResult<Collection> {
        let Some(name) = name.or_else(|| self.default.clone()) else {
            return input("no collection given: pass \"collection\", or start the server with --collection NAME");
        };
        crate::open::collection(&self.store, &name)
    }

    /// The model `source` names, loaded once.
    fn model(&self, source: &str) -> CliResult<Arc<dyn Embedder>> {
        if let Some(m) = self
            .models
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(source)
        {
            return Ok(Arc::clone(m));
        }
        let loaded: Arc<dyn Embedder> = Arc::new(crate::model::load_source(source)?);
        self.models
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(source.to_string(), Arc::clone(&loaded));
        Ok(loaded)
    }

    /// Make `coll` ready to embed text: with its bound model, else with
    /// `$QUIVER_MODEL`'s. Each use is checked against the collection's
    /// current binding (another process may have bound it meanwhile).
    /// Returns the model when the collection is bound to none, for the
    /// write to bind it (`model::bind_new`).
    fn ready(&self, coll: &Collection, why: &str) -> CliResult<Option<Arc<dyn Embedder>>> {
        let bound = coll.model()?;
        let source = match &bound {
            Some(b) => b.source.clone(),
            None => match std::env::var("QUIVER_MODEL") {
                Ok(m) => m,
                Err(_) => {
                    return input(format!(
                        "{why} needs an embedding model, and collection {:?} is bound to none: give vectors, or bind it (quiver alter {} --model DIR), or start the server with $QUIVER_MODEL set",
                        coll.name(),
                        coll.name()
                    ))
                }
            },
        };
        let model = self.model(&source)?;
        coll.use_embedder(Arc::clone(&model))?;
        Ok(bound.is_none().then_some(model))
    }

    fn writable(&self) -> CliResult<()> {
        if self.read_only {
            return input("this server is read-only (started with --read-only)");
        }
        Ok(())
    }
}

#[derive(Clone)]
pub(crate) struct QuiverServer {
    ctx: Arc<Ctx>,
    tool_router: ToolRouter<QuiverServer>,
}

/// A tool's answer: its JSON as text, or the CLI's message as a tool error.
fn answer(r: CliResult<Value>) -> CallToolResult {
    match r {
        Ok(v) => CallToolResult::success(vec![ContentBlock::text(v.to_string())]),
        Err(f) => CallToolResult::error(vec![ContentBlock::text(message(&f))]),
    }
}

fn message(f: &Failure) -> String {
    match f {
        Failure::Input(m) | Failure::Internal(m) | Failure::Busy(m) => m.clone(),
        Failure::BrokenPipe => "output closed".into(),
    }
}

impl QuiverServer {
    /// Run `f` on the blocking pool; a panic becomes a tool error.
    async fn run(
        &self,
        f: impl FnOnce(&Ctx) -> CliResult<Value> + Send + 'static,
    ) -> Result<CallToolResult, ErrorData> {
        let ctx = Arc::clone(&self.ctx);
        let _permit = self.ctx.permits.acquire().await;
        let done = tokio::task::spawn_blocking(move || f(&ctx)).await;
        Ok(match done {
            Ok(r) => answer(r),
            Err(e) => {
                eprintln!("quiver mcp: a tool failed: {e}");
                CallToolResult::error(vec![ContentBlock::text(format!("internal error: {e}"))])
            }
        })
    }
}

fn info_json(coll: &Collection) -> CliResult<Value> {
    let info = coll.info()?;
    serde_json::to_value(&info).map_err(|e| Failure::Internal(e.to_string()))
}

fn parse_filter(text: Option<&str>) -> CliResult<Option<Filter>> {
    crate::open::parse_filter(text)
}

/// A fresh id: 128 random bits from the OS, in hex.
fn new_id() -> CliResult<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| Failure::Internal(format!("reading /dev/urandom: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn upsert(ctx: &Ctx, a: UpsertArgs) -> CliResult<Value> {
    ctx.writable()?;
    if a.records.is_empty() {
        return input("records: give at least one record");
    }
    if a.records.len() > MAX_RECORDS {
        return input(format!(
            "records: at most {MAX_RECORDS} a call, got {}",
            a.records.len()
        ));
    }
    let coll = ctx.collection(a.collection)?;
    let needs_model = a.records.iter().any(|r| r.vector.is_none());
    let unbound = if needs_model {
        ctx.ready(&coll, "a record with text and no vector")?
    } else {
        None
    };
    let mut records = Vec::with_capacity(a.records.len());
    let mut ids = Vec::with_capacity(a.records.len());
    let mut to_embed = Vec::new();
    for (i, r) in a.records.into_iter().enumerate() {
        check_text(&format!("records[{i}]"), r.text.as_deref())?;
        let id = match r.id {
            Some(id) => id,
            None => new_id()?,
        };
        if r.vector.is_none() {
            match &r.text {
                Some(t) => to_embed.push((i, t.clone())),
                None => {
                    return input(format!(
                    "records[{i}]: give a vector, or a text to embed with the collection's model"
                ))
                }
            }
        }
        let mut rec = Record::new(id.clone(), r.vector.unwrap_or_default());
        rec.text = r.text;
        rec.metadata = r.metadata;
        ids.push(id);
        records.push(rec);
    }
    if !to_embed.is_empty() {
        let texts: Vec<String> = to_embed.iter().map(|(_, t)| t.clone()).collect();
        let vectors = crate::model::embed_documents(&coll, &texts)?;
        for ((i, _), v) in to_embed.into_iter().zip(vectors) {
            records[i].vector = v;
        }
    }
    let was_empty = unbound.is_some() && coll.count()? == 0;
    let seq = coll.upsert(&records)?;
    crate::model::bind_new(&coll, unbound, was_empty)?;
    Ok(json!({"upserted": records.len(), "ids": ids, "seq": seq}))
}

fn search(ctx: &Ctx, a: SearchArgs) -> CliResult<Value> {
    let mode = a.mode.unwrap_or_default();
    check_text("text", a.text.as_deref())?;
    let k = a.k.unwrap_or(10);
    if k == 0 || k > quiver::MAX_K {
        return input(format!("k must be 1..={}, got {k}", quiver::MAX_K));
    }
    let mut include = Include {
        text: true,
        metadata: true,
        vector: false,
    };
    if let Some(fields) = &a.include {
        include = Include::default();
        for f in fields {
            match f.as_str() {
                "text" => include.text = true,
                "metadata" => include.metadata = true,
                "vector" => include.vector = true,
                other => {
                    return input(format!(
                        "include: unknown field {other:?} (use text, metadata, vector)"
                    ))
                }
            }
        }
    }
    let mut opts = SearchOptions::new(k).include(include);
    opts.filter = parse_filter(a.filter.as_deref())?;
    let coll = ctx.collection(a.collection)?;
    let r = match (mode, &a.text, a.vector) {
        (Mode::Keyword, Some(t), None) => coll.search_keyword(t, &opts)?,
        (Mode::Keyword, _, _) => return input("keyword mode needs a text, and takes no vector"),
        (Mode::Vector, None, Some(v)) => coll.search(&v, &opts)?,
        (Mode::Vector, Some(_), Some(_)) => {
            return input("vector mode takes a vector or a text to embed, not both")
        }
        (Mode::Hybrid, Some(t), Some(v)) => {
            coll.search_hybrid(&v, t, &opts, &quiver::Fusion::default())?
        }
        (_, Some(t), None) => {
            if let Some(model) = ctx.ready(&coll, "searching by text")? {
                if coll.count()? > 0 {
                    crate::model::unbound_warning(&coll, &*model);
                }
            }
            let v = coll.embed_query(t)?;
            match mode {
                Mode::Hybrid => coll.search_hybrid(&v, t, &opts, &quiver::Fusion::default())?,
                _ => coll.search(&v, &opts)?,
            }
        }
        (Mode::Hybrid, None, _) => return input("hybrid mode needs a text"),
        (Mode::Vector, None, None) => return input("give a text or a vector"),
    };
    Ok(json!({
        "hits": r.hits,
        "plan": r.plan.name(),
        "ef": r.plan.ef(),
        "matches": r.plan.matches(),
    }))
}

fn get(ctx: &Ctx, a: GetArgs) -> CliResult<Value> {
    let coll = ctx.collection(a.collection)?;
    let vector = a.include_vector.unwrap_or(false);
    if let Some(ids) = a.ids {
        if a.filter.is_some() {
            return input("give ids or a filter, not both");
        }
        let mut out = Vec::with_capacity(ids.len());
        for id in &ids {
            out.push(match coll.get(id)? {
                Some(r) => crate::output::record_line(r, vector),
                None => json!({"id": id, "missing": true}),
            });
        }
        return Ok(json!({"records": out}));
    }
    let limit = a.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_PAGE {
        return input(format!("limit must be 1..={MAX_PAGE}, got {limit}"));
    }
    let options = ScanOptions {
        filter: parse_filter(a.filter.as_deref())?,
        order_by: a.order_by,
        desc: a.desc.unwrap_or(false),
        after: a.after,
        limit,
    };
    let page = coll.scan_page(&options)?;
    let records: Vec<Value> = page
        .records
        .into_iter()
        .map(|r| crate::output::record_line(r, vector))
        .collect();
    Ok(json!({"records": records, "next": page.next}))
}

fn update(ctx: &Ctx, a: UpdateArgs) -> CliResult<Value> {
    ctx.writable()?;
    let (metadata, merge) = match (a.metadata, a.merge) {
        (Some(_), Some(_)) => return input("give metadata (replace) or merge (patch), not both"),
        (Some(m), None) => (Some(m), false),
        (None, Some(m)) => (Some(m), true),
        (None, None) => (None, false),
    };
    if metadata.as_ref().is_some_and(|m| !m.is_object()) {
        return input("metadata and merge take a JSON object");
    }
    if metadata.is_none() && a.vector.is_none() && a.text.is_none() {
        return input("nothing to change: give text, vector, metadata or merge");
    }
    check_text("text", a.text.as_deref())?;
    let coll = ctx.collection(a.collection)?;
    let mut u = Update::new(a.id);
    u.vector = a.vector;
    u.text = a.text;
    u.metadata = metadata;
    u.merge = merge;
    if u.vector.is_none() {
        if let Some(t) = &u.text {
            if coll.model()?.is_some() || coll.config().model.is_some() {
                if let Some(model) = ctx.ready(&coll, "a new text")? {
                    // An update changes a record that exists: never a first vector.
                    crate::model::unbound_warning(&coll, &*model);
                }
                u.vector = Some(coll.embed_documents(&[t.as_str()])?.remove(0));
            }
        }
    }
    let report = coll.update(u)?;
    serde_json::to_value(&report).map_err(|e| Failure::Internal(e.to_string()))
}

fn delete(ctx: &Ctx, a: DeleteArgs) -> CliResult<Value> {
    ctx.writable()?;
    let coll = ctx.collection(a.collection)?;
    let n = match (a.ids, a.filter) {
        (Some(_), Some(_)) => return input("give ids or a filter, not both"),
        (Some(ids), None) => coll.delete(&ids)?,
        (None, Some(f)) => {
            let filter = parse_filter(Some(&f))?.expect("a filter text parses to a filter");
            let matching = coll.count_where(&filter)?;
            if matching > CONFIRM_ABOVE && a.confirm != Some(true) {
                return input(format!(
                    "the filter matches {matching} records; deleting more than {CONFIRM_ABOVE} needs \"confirm\": true"
                ));
            }
            coll.delete_where(&filter)?
        }
        (None, None) => return input("give the ids to delete, or a filter"),
    };
    Ok(json!({"deleted": n}))
}

fn count(ctx: &Ctx, a: CountArgs) -> CliResult<Value> {
    let coll = ctx.collection(a.collection)?;
    let n = match parse_filter(a.filter.as_deref())? {
        Some(f) => coll.count_where(&f)?,
        None => coll.count()?,
    };
    Ok(json!({"count": n}))
}

fn create(ctx: &Ctx, a: CreateArgs) -> CliResult<Value> {
    ctx.writable()?;
    let model = a.model.as_deref().map(|m| ctx.model(m)).transpose()?;
    let mut config = match (&model, a.dimension) {
        (Some(m), Some(d)) if d != m.dimension() => {
            return input(format!(
                "dimension {d}, but the model makes {}-d vectors",
                m.dimension()
            ))
        }
        (Some(m), _) => quiver::CollectionConfig::for_embedder(&**m),
        (None, Some(d)) => quiver::CollectionConfig::new(d),
        (None, None) => return input("give a model (its dimension is taken) or a dimension"),
    };
    if let Some(m) = &a.metric {
        config.metric = m.parse()?;
        config.scalar = quiver::Scalar::default_for(config.metric);
    }
    quiver::validate_name(&a.name)?;
    config.validate()?;
    let coll = ctx.store.create_collection(&a.name, &config)?;
    info_json(&coll)
}

#[tool_router]
impl QuiverServer {
    fn new(ctx: Ctx) -> QuiverServer {
        QuiverServer {
            ctx: Arc::new(ctx),
            tool_router: Self::tool_router(),
        }
    }

    #[tool(description = "List the store's collections: name, record count, settings.")]
    async fn list_collections(&self) -> Result<CallToolResult, ErrorData> {
        self.run(|ctx| {
            let all = ctx.store.list_collections()?;
            Ok(Value::Array(
                all.iter()
                    .map(|c| json!({"name": c.name, "count": c.count, "seq": c.seq, "config": c.config}))
                    .collect(),
            ))
        })
        .await
    }

    #[tool(
        description = "A collection's record count, dimension, metric, embedding model, indexed fields and index state."
    )]
    async fn collection_info(
        &self,
        Parameters(a): Parameters<CollectionArg>,
    ) -> Result<CallToolResult, ErrorData> {
        self.run(move |ctx| info_json(&ctx.collection(a.collection)?))
            .await
    }

    #[tool(
        description = "Create a collection, bound to an embedding model (texts are then embedded for you) or of a given vector dimension."
    )]
    async fn create_collection(
        &self,
        Parameters(a): Parameters<CreateArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        self.run(move |ctx| create(ctx, a)).await
    }

    #[tool(
        description = "Insert or replace records (one transaction). Each has an id (generated and returned when absent), a text and/or a vector, and JSON metadata. Text without a vector is embedded with the collection's model."
    )]
    async fn upsert(
        &self,
        Parameters(a): Parameters<UpsertArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        self.run(move |ctx| upsert(ctx, a)).await
    }

    #[tool(
        description = "Search a collection by text or vector. mode: vector (nearest meaning), keyword (BM25 words) or hybrid (both). filter uses Quiver's language, e.g. \"tags CONTAINS 'work' AND stars >= 3\". Returns hits (id, distance or score, text, metadata) and the plan."
    )]
    async fn search(
        &self,
        Parameters(a): Parameters<SearchArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        self.run(move |ctx| search(ctx, a)).await
    }

    #[tool(
        description = "Fetch records by ids, or page through those matching a filter (order_by a metadata field, limit, and the `next` cursor as `after`)."
    )]
    async fn get(&self, Parameters(a): Parameters<GetArgs>) -> Result<CallToolResult, ErrorData> {
        self.run(move |ctx| get(ctx, a)).await
    }

    #[tool(
        description = "Change some fields of one record: text (re-embedded), vector, metadata (replace) or merge (patch metadata keys; null removes one)."
    )]
    async fn update(
        &self,
        Parameters(a): Parameters<UpdateArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        self.run(move |ctx| update(ctx, a)).await
    }

    #[tool(
        description = "Delete records by ids, or every record matching a filter (one transaction). A filter matching more than 10 records needs confirm: true. Returns how many were deleted."
    )]
    async fn delete(
        &self,
        Parameters(a): Parameters<DeleteArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        self.run(move |ctx| delete(ctx, a)).await
    }

    #[tool(description = "Count a collection's records, or those matching a filter.")]
    async fn count(
        &self,
        Parameters(a): Parameters<CountArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        self.run(move |ctx| count(ctx, a)).await
    }
}

const RESOURCE_PREFIX: &str = "quiver://collections/";

#[tool_handler(router = self.tool_router)]
impl ServerHandler for QuiverServer {
    fn get_info(&self) -> ServerConfig {
        let default = match &self.ctx.default {
            Some(c) => format!(" Tools default to the collection {c:?}."),
            None => String::new(),
        };
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .build(),
        )
        .with_instructions(format!(
            "A Quiver vector store: durable, searchable records (id, text, vector, JSON metadata) in named collections. Remember with upsert, recall with search (text queries are embedded with the collection's model), filter on metadata with Quiver's filter language.{default}"
        ))
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let ctx = Arc::clone(&self.ctx);
        let names = tokio::task::spawn_blocking(move || ctx.store.list_collections())
            .await
            .map_err(|e| ErrorData::internal_error(e.to_string(), None))?
            .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        Ok(ListResourcesResult::with_all_items(
            names
                .iter()
                .map(|c| {
                    Resource::new(format!("{RESOURCE_PREFIX}{}", c.name), c.name.clone())
                        .with_description(format!(
                            "collection {}: {} records, {}-d {}",
                            c.name, c.count, c.config.dimension, c.config.metric
                        ))
                        .with_mime_type("application/json")
                })
                .collect(),
        ))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let Some(name) = request
            .uri
            .strip_prefix(RESOURCE_PREFIX)
            .map(str::to_string)
        else {
            return Err(ErrorData::resource_not_found(
                format!("no resource {}", request.uri),
                None,
            ));
        };
        let ctx = Arc::clone(&self.ctx);
        let info = tokio::task::spawn_blocking(move || info_json(&ctx.collection(Some(name))?))
            .await
            .map_err(|e| ErrorData::internal_error(e.to_string(), None))?
            .map_err(|f| ErrorData::resource_not_found(message(&f), None))?;
        Ok(
            ReadResourceResult::new(vec![ResourceContents::text(info.to_string(), request.uri)
                .with_mime_type("application/json")])
            .into(),
        )
    }
}

/// `quiver mcp`.
pub(crate) fn serve(cli: &'static Cli, a: &'static McpArgs) -> CliResult<()> {
    if let Some(addr) = a.http {
        if !addr.ip().is_loopback() && !a.allow_remote {
            return input(format!(
                "refusing to serve MCP on {addr}, which is not a loopback address: give --allow-remote and --token-file FILE"
            ));
        }
        if !addr.ip().is_loopback() && a.token_file.is_none() {
            return input(
                "--allow-remote needs --token-file FILE: remote clients must send its bearer token",
            );
        }
    } else if a.allow_remote || a.token_file.is_some() {
        return input("--allow-remote and --token-file go with --http ADDR");
    }
    let token = match &a.token_file {
        Some(p) => {
            let t = std::fs::read_to_string(p)
                .or_else(|e| input(format!("--token-file {}: {e}", p.display())))?;
            let t = t.trim().to_string();
            if t.len() < 16 {
                return input(format!(
                    "--token-file {}: the token must be at least 16 characters",
                    p.display()
                ));
            }
            Some(t)
        }
        None => None,
    };
    // A store is made only for a server with no default collection (its
    // agent starts with create_collection); a named collection must exist.
    let store = if a.read_only {
        crate::open::open_read(cli)?
    } else {
        crate::open::open_write(cli, a.collection.is_none())?
    };
    if let Some(name) = &a.collection {
        crate::open::collection(&store, name)?;
    }
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let ctx = Ctx {
        store,
        default: a.collection.clone(),
        read_only: a.read_only,
        models: Default::default(),
        permits: tokio::sync::Semaphore::new(cores * 4),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Internal(format!("starting the async runtime: {e}")))?;
    runtime.block_on(async move {
        match a.http {
            None => serve_stdio(ctx).await,
            Some(addr) => serve_http(ctx, addr, token, a.allow_remote).await,
        }
    })
}

async fn serve_stdio(ctx: Ctx) -> CliResult<()> {
    use rmcp::ServiceExt;
    let server = QuiverServer::new(ctx);
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| Failure::Internal(format!("MCP over stdio: {e}")))?;
    running
        .waiting()
        .await
        .map_err(|e| Failure::Internal(format!("MCP over stdio: {e}")))?;
    Ok(())
}

async fn serve_http(
    ctx: Ctx,
    addr: SocketAddr,
    token: Option<String>,
    remote: bool,
) -> CliResult<()> {
    use rmcp::transport::streamable_http_server::{
        session::local::LocalSessionManager, StreamableHttpServerConfig, StreamableHttpService,
    };
    let server = QuiverServer::new(ctx);
    let stop = tokio_util::sync::CancellationToken::new();
    let mut config =
        StreamableHttpServerConfig::default().with_cancellation_token(stop.child_token());
    if remote {
        // rmcp accepts only loopback Host headers by default (against DNS
        // rebinding); a remote server is reached by other names, and every
        // request must carry the token instead.
        config = config.disable_allowed_hosts();
    }
    let service: StreamableHttpService<QuiverServer, LocalSessionManager> =
        StreamableHttpService::new(move || Ok(server.clone()), Default::default(), config);
    let mut router = axum::Router::new().nest_service("/mcp", service);
    if let Some(token) = token {
        let want = Arc::new(format!("Bearer {token}"));
        router = router.layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let want = Arc::clone(&want);
                async move {
                    let ok = req
                        .headers()
                        .get(axum::http::header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|v| constant_time_eq(v.as_bytes(), want.as_bytes()));
                    if ok {
                        next.run(req).await
                    } else {
                        axum::response::IntoResponse::into_response((
                            axum::http::StatusCode::UNAUTHORIZED,
                            "missing or wrong bearer token\n",
                        ))
                    }
                }
            },
        ));
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .or_else(|e| input(format!("--http {addr}: {e}")))?;
    let bound = listener.local_addr().map_err(Failure::from)?;
    eprintln!("quiver mcp: serving MCP over streamable HTTP at http://{bound}/mcp");
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            let _ = tokio::signal::ctrl_c().await;
            // Ends the open event streams too, which graceful shutdown waits for.
            stop.cancel();
        })
        .await
        .map_err(|e| Failure::Internal(format!("MCP over HTTP: {e}")))
}

/// Compare without stopping at the first difference (the token is a secret).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
