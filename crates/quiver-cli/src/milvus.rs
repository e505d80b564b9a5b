//! (feature milvus) The Milvus side of `sync` and `import --from`: the
//! target URL, the token, and one collection's client (the official Rust
//! SDK, milvus-sdk-rust, driven from a small tokio runtime so that
//! everything else stays synchronous): the schema Quiver's records map
//! to, upserts, deletes, Strong reads in id order, retries with backoff.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use milvus::v2::prelude::{
    ClientV2, ConnectConfig, CreateCollectionRequest, CreateIndexRequest, DeleteRequest,
    DescribeCollectionRequest, FlushRequest, HasCollectionRequest, IndexParam, IndexType,
    InsertRequest, LoadCollectionRequest, MetricType, QueryRequest, UpsertRequest,
};
use milvus::v2::{ConsistencyLevel, DataType, FieldData, FieldSchema};
use quiver::{CollectionConfig, Metric, Record};
use serde_json::{json, Value};

use crate::output::{input, CliResult, Failure};

/// The remote schema's fields.
pub(crate) const ID: &str = "id";
pub(crate) const VECTOR: &str = "vector";
pub(crate) const TEXT: &str = "text";
pub(crate) const METADATA: &str = "metadata";
/// Bit 0: the record has a text; bit 1: it has metadata (Milvus 2.3 has
/// no NULL, so an absent text is stored as "" and absent metadata as {}).
pub(crate) const PRESENT: &str = "present";
/// Milvus's longest VarChar.
pub(crate) const MAX_TEXT: usize = 65_535;
/// Milvus's largest vector dimension.
pub(crate) const MAX_DIM: usize = 32_768;
/// Ids per query page (Milvus caps offset + limit at 16,384).
pub(crate) const QUERY_PAGE: i64 = 4_000;

/// Whole records per query page: about 2 MiB of them, as the client
/// refuses an answer over 4 MiB (tonic's default) and the SDK cannot
/// raise it.
pub(crate) fn record_page(dim: usize) -> i64 {
    let row = dim * 4 + quiver::MAX_ID_BYTES + 8192;
    ((2 << 20) / row).clamp(1, QUERY_PAGE as usize) as i64
}
/// How long a refusal by a server that answers is retried.
const ANSWERED_RETRY: Duration = Duration::from_secs(120);
/// The environment variable a token may come from.
const TOKEN_ENV: &str = "QUIVER_MILVUS_TOKEN";

/// milvus://HOST:PORT/COLLECTION, parsed.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    host: String,
    port: u16,
    pub(crate) collection: String,
}

impl Target {
    pub(crate) fn parse(url: &str) -> CliResult<Target> {
        let bad = |why: &str| {
            input(format!(
                "{url:?} is not milvus://HOST:PORT/COLLECTION: {why}"
            ))
        };
        let Some(rest) = url.strip_prefix("milvus://") else {
            return bad("it must start with milvus://");
        };
        let Some((addr, collection)) = rest.split_once('/') else {
            return bad("no /COLLECTION");
        };
        let (host, port) = match addr.rsplit_once(':') {
            Some((h, p)) => match p.parse::<u16>() {
                Ok(p) if p > 0 => (h, p),
                _ => return bad("the port must be 1 to 65535"),
            },
            None => (addr, 19530),
        };
        if host.is_empty() || host.contains(['/', '@', '?', '#', ' ']) {
            return bad("a host name or address is needed (credentials go in --token-file)");
        }
        let ok_name = !collection.is_empty()
            && collection.len() <= 255
            && collection
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && collection
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok_name {
            return bad(
                "a Milvus collection name is letters, digits and _, not starting with a digit",
            );
        }
        Ok(Target {
            host: host.to_string(),
            port,
            collection: collection.to_string(),
        })
    }

    pub(crate) fn uri(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }

    /// The name of the sync's change-feed consumer in the local store.
    pub(crate) fn consumer(&self) -> String {
        format!("milvus://{}:{}/{}", self.host, self.port, self.collection)
    }
}

/// The token: from --token-file, else the environment, else none.
pub(crate) fn token(file: Option<&PathBuf>) -> CliResult<Option<String>> {
    if let Some(f) = file {
        let t = std::fs::read_to_string(f)
            .or_else(|e| input(format!("--token-file {}: {e}", f.display())))?;
        let t = t.trim();
        if t.is_empty() {
            return input(format!("--token-file {} is empty", f.display()));
        }
        return Ok(Some(t.to_string()));
    }
    Ok(std::env::var(TOKEN_ENV).ok().filter(|t| !t.is_empty()))
}

/// A Milvus error, and whether trying again may help (a transport or
/// server failure) or not (a request this side built wrong).
pub(crate) struct RemoteError {
    pub(crate) message: String,
    transient: bool,
    /// The server answered (and refused): retried for a while only, as a
    /// restarting server refuses for a moment, but a refusal may be for good.
    answered: bool,
}

impl From<milvus::v2::error::Error> for RemoteError {
    fn from(e: milvus::v2::error::Error) -> Self {
        use milvus::v2::error::Error as E;
        let transient = !matches!(e, E::Validation(_) | E::Conversion(_));
        let answered = matches!(e, E::Server(_) | E::MalformedResponse(_));
        RemoteError {
            message: e.to_string(),
            transient,
            answered,
        }
    }
}

pub(crate) type RemoteResult<T> = Result<T, RemoteError>;

/// The connection to one Milvus collection.
pub(crate) struct Remote {
    rt: tokio::runtime::Runtime,
    client: Option<ClientV2>,
    pub(crate) target: Target,
    token: Option<String>,
    /// Give up on an unreachable server after this long (None: never).
    retry_for: Option<Duration>,
}

impl Remote {
    pub(crate) fn new(
        target: Target,
        token: Option<String>,
        retry_for: Option<Duration>,
    ) -> CliResult<Remote> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Failure::Internal(format!("tokio runtime: {e}")))?;
        Ok(Remote {
            rt,
            client: None,
            target,
            token,
            retry_for,
        })
    }

    /// The runtime and a client, connecting first if need be.
    fn client(&mut self) -> RemoteResult<(&tokio::runtime::Runtime, ClientV2)> {
        if self.client.is_none() {
            let mut config = ConnectConfig::new().uri(self.target.uri());
            if let Some(t) = &self.token {
                config = config.token(t.clone());
            }
            let client = self.rt.block_on(ClientV2::new(&config))?;
            self.client = Some(client);
        }
        Ok((&self.rt, self.client.clone().expect("set above")))
    }

    /// Run `op` until it succeeds, reconnecting with backoff after a
    /// transient failure (and saying so on stderr), until `retry_for`.
    pub(crate) fn retry<T>(
        &mut self,
        what: &str,
        mut op: impl FnMut(&mut Remote) -> RemoteResult<T>,
    ) -> CliResult<T> {
        let started = Instant::now();
        let mut wait = Duration::from_millis(250);
        loop {
            match op(self) {
                Ok(v) => return Ok(v),
                Err(e) if !e.transient => {
                    return Err(Failure::Internal(format!("milvus {what}: {}", e.message)))
                }
                Err(e) => {
                    // Unreachable: as long as allowed (with --follow, for
                    // ever). Refused by a server that answers: two minutes.
                    let limit = match (self.retry_for, e.answered) {
                        (Some(l), true) => Some(l.min(ANSWERED_RETRY)),
                        (None, true) => Some(ANSWERED_RETRY),
                        (l, false) => l,
                    };
                    if limit.is_some_and(|limit| started.elapsed() >= limit) {
                        return Err(Failure::Internal(format!(
                            "milvus at {} still failing after {} s ({what}): {}",
                            self.target.uri(),
                            started.elapsed().as_secs(),
                            e.message
                        )));
                    }
                    eprintln!(
                        "quiver: milvus at {} failed ({what}): {}; retrying in {:.1} s",
                        self.target.uri(),
                        one_line(&e.message),
                        wait.as_secs_f64()
                    );
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(10));
                    // A new connection: the old one may be to a server that
                    // went away, and a restarted one may not have loaded the
                    // collection yet.
                    self.client = None;
                    let _ = self.load();
                }
            }
        }
    }

    pub(crate) fn exists(&mut self) -> RemoteResult<bool> {
        let name = self.target.collection.clone();
        let req = HasCollectionRequest::builder()
            .collection_name(name)
            .build()?;
        let (rt, client) = self.client()?;
        Ok(rt.block_on(client.has_collection(req))?.exists())
    }

    /// The remote collection's description and vector dimension.
    pub(crate) fn describe(&mut self) -> RemoteResult<(String, Option<u32>, Vec<String>)> {
        let name = self.target.collection.clone();
        let req = DescribeCollectionRequest::builder()
            .collection_name(name)
            .build()?;
        let (rt, client) = self.client()?;
        let resp = rt.block_on(client.describe_collection(req))?;
        let desc = resp.description();
        let schema = desc.get_schema();
        let dim = schema
            .get_fields()
            .iter()
            .find(|f| f.get_name() == VECTOR)
            .map(|f| f.get_dimension());
        let fields = schema
            .get_fields()
            .iter()
            .map(|f| f.get_name().to_string())
            .collect();
        Ok((desc.get_description().to_string(), dim, fields))
    }

    /// Create the collection for `config`, index its vectors with HNSW
    /// at the collection's M and ef_construction, and load it.
    pub(crate) fn create(&mut self, local: &str, config: &CollectionConfig) -> RemoteResult<()> {
        let name = self.target.collection.clone();
        let schema = milvus::v2::CollectionSchema::new()
            .description(marker(local, config))
            .add_field(
                FieldSchema::new()
                    .name(ID)
                    .data_type(DataType::VarChar)
                    .max_length(quiver::MAX_ID_BYTES as u32)
                    .primary_key(true)
                    .auto_id(false),
            )
            .add_field(
                FieldSchema::new()
                    .name(VECTOR)
                    .data_type(DataType::FloatVector)
                    .dimension(config.dimension as u32),
            )
            .add_field(
                FieldSchema::new()
                    .name(TEXT)
                    .data_type(DataType::VarChar)
                    .max_length(MAX_TEXT as u32),
            )
            .add_field(FieldSchema::new().name(METADATA).data_type(DataType::Json))
            .add_field(FieldSchema::new().name(PRESENT).data_type(DataType::Int8));
        let req = CreateCollectionRequest::builder()
            .collection_name(name.clone())
            .description(marker(local, config))
            .schema(schema)
            .build()?;
        let index = CreateIndexRequest::builder()
            .collection_name(name.clone())
            .index_params(vec![IndexParam::new()
                .field_name(VECTOR)
                .index_type(IndexType::Hnsw)
                .metric_type(metric_type(config.metric))
                .extra_params(HashMap::from([
                    ("M".to_string(), config.connectivity.to_string()),
                    (
                        "efConstruction".to_string(),
                        config.expansion_add.to_string(),
                    ),
                ]))])
            .build()?;
        let load = LoadCollectionRequest::builder()
            .collection_name(name)
            .build()?;
        let (rt, client) = self.client()?;
        rt.block_on(async {
            client.create_collection(req).await?;
            client.create_index(index).await?;
            client.load_collection(load).await
        })?;
        Ok(())
    }

    /// Load the collection (a no-op when loaded; needed after a restart
    /// of a server that lost its load state).
    pub(crate) fn load(&mut self) -> RemoteResult<()> {
        let name = self.target.collection.clone();
        let load = LoadCollectionRequest::builder()
            .collection_name(name)
            .build()?;
        let (rt, client) = self.client()?;
        rt.block_on(client.load_collection(load))?;
        Ok(())
    }

    /// Seal what was written, so that Milvus indexes it (searches of
    /// unsealed rows use an interim index of much lower recall).
    pub(crate) fn flush(&mut self) -> RemoteResult<()> {
        let name = self.target.collection.clone();
        let req = FlushRequest::builder()
            .collection_names([name])
            .wait_flushed_ms(120_000)
            .build()?;
        let (rt, client) = self.client()?;
        rt.block_on(client.flush(req))?;
        Ok(())
    }

    pub(crate) fn upsert(&mut self, records: &[Record]) -> RemoteResult<()> {
        if records.is_empty() {
            return Ok(());
        }
        let columns = vec![
            FieldData::varchar(ID, records.iter().map(|r| r.id.clone()).collect()),
            FieldData::float_vector(VECTOR, records.iter().map(|r| r.vector.clone()).collect()),
            FieldData::varchar(
                TEXT,
                records
                    .iter()
                    .map(|r| r.text.clone().unwrap_or_default())
                    .collect(),
            ),
            FieldData::json(
                METADATA,
                records
                    .iter()
                    .map(|r| r.metadata.clone().unwrap_or_else(|| json!({})))
                    .collect(),
            ),
            FieldData::int8(
                PRESENT,
                records
                    .iter()
                    .map(|r| i8::from(r.text.is_some()) | (i8::from(r.metadata.is_some()) << 1))
                    .collect(),
            ),
        ];
        let name = self.target.collection.clone();
        let req = UpsertRequest::builder()
            .insert(
                InsertRequest::builder()
                    .collection_name(name)
                    .columns(columns)
                    .build()?,
            )
            .build()?;
        let (rt, client) = self.client()?;
        rt.block_on(client.upsert(req))?;
        Ok(())
    }

    pub(crate) fn delete(&mut self, ids: &[String]) -> RemoteResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let name = self.target.collection.clone();
        let req = DeleteRequest::builder()
            .collection_name(name)
            .filter(ids_filter(ids))
            .build()?;
        let (rt, client) = self.client()?;
        rt.block_on(client.delete(req))?;
        Ok(())
    }

    /// Rows matching `filter` (Strong consistency), at most `limit`.
    fn query(
        &mut self,
        filter: &str,
        fields: &[&str],
        limit: Option<i64>,
    ) -> RemoteResult<Vec<serde_json::Map<String, Value>>> {
        let name = self.target.collection.clone();
        let mut req = QueryRequest::builder()
            .collection_name(name)
            .filter(filter)
            .output_fields(fields.iter().copied())
            .consistency_level(ConsistencyLevel::Strong);
        if let Some(l) = limit {
            req = req.limit(l);
        }
        let req = req.build()?;
        let (rt, client) = self.client()?;
        let resp = rt.block_on(client.query(req))?;
        let rows = resp
            .results()
            .rows()?
            .map(|r| r.to_entity_row().map_err(RemoteError::from))
            .collect::<RemoteResult<Vec<_>>>()?;
        Ok(rows)
    }

    pub(crate) fn count(&mut self) -> RemoteResult<u64> {
        let rows = self.query("", &["count(*)"], None)?;
        Ok(rows
            .first()
            .and_then(|r| r.get("count(*)"))
            .and_then(Value::as_u64)
            .unwrap_or(0))
    }

    /// One page of at most `rows` rows in id order after `after`.
    pub(crate) fn page(
        &mut self,
        after: Option<&str>,
        fields: &[&str],
        rows: i64,
    ) -> RemoteResult<Vec<serde_json::Map<String, Value>>> {
        let filter = match after {
            Some(a) => format!("{ID} > {}", quote(a)),
            None => format!("{ID} >= \"\""),
        };
        let mut page = self.query(&filter, fields, Some(rows))?;
        // Milvus returns a limited query in primary-key order; make sure.
        page.sort_by(|a, b| row_id(a).cmp(row_id(b)));
        Ok(page)
    }

    pub(crate) fn records(&mut self, ids: &[String]) -> RemoteResult<Vec<Record>> {
        let rows = self.query(
            &ids_filter(ids),
            &[ID, VECTOR, TEXT, METADATA, PRESENT],
            None,
        )?;
        rows.iter().map(to_record).collect()
    }
}

pub(crate) fn row_id(row: &serde_json::Map<String, Value>) -> &str {
    row.get(ID).and_then(Value::as_str).unwrap_or("")
}

/// A Milvus row as a record.
pub(crate) fn to_record(row: &serde_json::Map<String, Value>) -> RemoteResult<Record> {
    let bad = |what: &str| RemoteError {
        message: format!(
            "a row without a usable {what}: {}",
            Value::Object(row.clone())
        ),
        transient: false,
        answered: true,
    };
    let id = row.get(ID).and_then(Value::as_str).ok_or_else(|| bad(ID))?;
    let vector = row
        .get(VECTOR)
        .and_then(Value::as_array)
        .ok_or_else(|| bad(VECTOR))?
        .iter()
        .map(|x| x.as_f64().map(|x| x as f32))
        .collect::<Option<Vec<f32>>>()
        .ok_or_else(|| bad(VECTOR))?;
    // A collection not made by `quiver sync` has no "present": a text
    // is present when not empty, metadata when not an empty object.
    let present = row.get(PRESENT).and_then(Value::as_i64);
    let text = row.get(TEXT).and_then(Value::as_str).map(str::to_string);
    let metadata = row.get(METADATA).cloned().filter(|m| !m.is_null());
    let mut r = Record::new(id, vector);
    r.text = match present {
        Some(p) => text.filter(|_| p & 1 != 0),
        None => text.filter(|t| !t.is_empty()),
    };
    r.metadata = match present {
        Some(p) => metadata.filter(|_| p & 2 != 0),
        None => metadata.filter(|m| m.as_object().is_none_or(|o| !o.is_empty())),
    };
    Ok(r)
}

/// A string literal of Milvus's expression language.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn ids_filter(ids: &[String]) -> String {
    let list: Vec<String> = ids.iter().map(|i| quote(i)).collect();
    format!("{ID} in [{}]", list.join(", "))
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn metric_type(m: Metric) -> MetricType {
    match m {
        Metric::Cos => MetricType::Cosine,
        Metric::Ip => MetricType::Ip,
        _ => MetricType::L2,
    }
}

/// The remote collection's description: which local collection it holds.
fn marker(local: &str, config: &CollectionConfig) -> String {
    format!(
        "quiver sync of {local:?} (dimension {}, metric {})",
        config.dimension, config.metric
    )
}
