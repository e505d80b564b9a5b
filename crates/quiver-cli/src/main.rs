//! `quiver`: the command line of the Quiver vector store.
//!
//! Exit codes: 0 ok (a closed pipe counts as ok), 1 internal failure or
//! `verify` found damage, 2 bad input or usage, with a one-line message.

mod analyse;
mod commands;
mod demo;
mod edit;
mod feed;
mod hub;
mod import;
#[cfg(feature = "mcp")]
mod mcp;
#[cfg(feature = "milvus")]
mod milvus;
#[cfg(feature = "milvus")]
mod milvus_sync;
mod model;
mod open;
mod output;
mod soak;
mod transfer;
mod vectors;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::output::Failure;

/// `quiver --help`: the commands in groups (a test checks that every
/// command is listed once).
const HELP: &str = "\
{about-with-newline}
{usage-heading} {usage}

Data:
  create       Create a collection (bound to --model, if given)
  list         List collections
  info         Show a collection: counts, settings, model, snapshot, tail, index
  drop         Drop a collection and everything in it
  import       Import records from a JSON Lines file (or - for stdin); each batch is one transaction
  upsert       Insert or replace one record
  update       Change some fields of a record, or merge metadata into every --filter match
  apply        Run a JSON Lines file of upserts, deletes and updates as one transaction
  get          Print records by id, or those matching --filter; one JSON line each
  delete       Delete records by id or by --filter (one transaction); prints how many
  export       Write a collection as JSON Lines that import reads back identically
  backup       Copy the whole store, consistently, while it may be written

Search:
  search       Nearest-neighbour, keyword or hybrid search; one JSON line per query
  count        Count records (matching --filter)
  cluster      k-means clusters of a collection's vectors (sizes, medoids); --into writes them
  join         Each record of LEFT with its nearest in RIGHT, as JSON Lines; --one-to-one matches
  dedup        Groups of near-duplicate records within a collection, as JSON Lines

Maintenance:
  index-field  Index a metadata field so filters on it stay fast on large collections
  verify       Check that the index agrees with the database; exit 1 on damage
  repair       Rebuild the index from the database and snapshot it
  compact      Reclaim space of deleted records
  alter        Change index settings, or bind a model
  flush        Snapshot the index now

Beyond one machine:
  changes      Print the changes after a sequence number as JSON Lines (apply replays them); --follow
  consumers    Change-feed consumers, which keep tombstones: list, --register, --ack, --remove
  sync         Copy a collection onto Milvus and keep it there (--follow), or --verify both sides

Models:
  embed        Embed text lines from stdin with --model; one vector line out per line in
  reembed      Copy a collection into another, embedding each record's text with --model

More:
  mcp          Serve the store to AI agents over the Model Context Protocol (stdio, or --http)
  demo         Build a store from the bundled sample, search it, print recall and timings
  completions  Print a shell completion script (bash, zsh, fish, elvish, powershell)
  man          Print the man page (roff)
  help         Print this message or the help of the given command

Options:
{options}{after-help}";

#[derive(Parser, Debug)]
#[command(
    name = "quiver",
    version,
    about = "An embedded vector store: SQLite truth, usearch speed.",
    help_template = HELP,
    after_help = "Exit codes: 0 ok, 1 internal failure or damage found, 2 bad input or usage, 75 another process held the store's writer past --wait."
)]
pub(crate) struct Cli {
    /// Store directory [default: $QUIVER_STORE, else ./quiver-store].
    #[arg(long, global = true, value_name = "DIR")]
    store: Option<PathBuf>,
    /// Print JSON even on a terminal.
    #[arg(long, global = true)]
    json: bool,
    /// How long a write waits for another process writing the store before
    /// it gives up with exit code 75; 0 fails at once
    /// [default: $QUIVER_WAIT, else 5].
    #[arg(long, global = true, value_name = "SECS")]
    wait: Option<f64>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Create a collection.
    Create(CreateArgs),
    /// List collections.
    List,
    /// Show a collection: counts, settings, snapshot, tail, index.
    Info {
        /// The collection.
        name: String,
    },
    /// Drop a collection and everything in it.
    Drop {
        /// The collection.
        name: String,
    },
    /// Import records from a JSON Lines file; each batch is one transaction.
    Import(ImportArgs),
    /// Insert or replace one record.
    Upsert(UpsertArgs),
    /// Change some fields of a record, or merge metadata into every --filter match.
    Update(edit::UpdateArgs),
    /// Run a JSON Lines file of upserts, deletes and updates as one transaction.
    Apply(edit::ApplyArgs),
    /// Print records by id, or those matching --filter; one JSON line each.
    Get(GetArgs),
    /// Write a collection as JSON Lines that import reads back identically (settings first).
    Export(transfer::ExportArgs),
    /// Copy the whole store, consistently, while it may be written.
    Backup(transfer::BackupArgs),
    /// Print the changes after a sequence number as JSON Lines (`apply` replays them); --follow streams.
    Changes(feed::ChangesArgs),
    /// Change-feed consumers (which keep tombstones): list, --register, --ack, --remove.
    Consumers(feed::ConsumersArgs),
    /// Delete records by id or by --filter (one transaction); prints how many.
    Delete {
        /// The collection.
        name: String,
        /// Ids of the records to delete (or give --filter instead).
        #[arg(conflicts_with = "filter")]
        ids: Vec<String>,
        /// Delete every record matching this filter.
        #[arg(long)]
        filter: Option<String>,
    },
    /// Count records (matching --filter).
    Count {
        /// The collection.
        name: String,
        /// Count only records matching this filter, e.g. "tags CONTAINS 'db'".
        #[arg(long)]
        filter: Option<String>,
    },
    /// Index a metadata field so filters on it stay fast on large collections.
    IndexField {
        /// The collection.
        name: String,
        /// The metadata field: a name, a dotted path (a.b), or a quoted key ("file-path").
        field: String,
    },
    /// Nearest-neighbour search; one JSON line per query.
    Search(SearchArgs),
    /// Check that the index agrees with the database; exit 1 on damage.
    Verify {
        /// The collection.
        name: String,
    },
    /// Rebuild the index from the database and snapshot it.
    Repair {
        /// The collection.
        name: String,
    },
    /// Reclaim space of deleted records (index rebuild past a threshold, SQLite VACUUM).
    Compact {
        /// The collection.
        name: String,
        /// Rebuild the index even below the threshold.
        #[arg(long)]
        force: bool,
    },
    /// Change index settings; rebuilds the index from the database.
    Alter(AlterArgs),
    /// Snapshot the index now.
    Flush {
        /// The collection.
        name: String,
    },
    /// Embed text lines from stdin ({"text": ..} or plain) with --model; one vector line out per line in.
    Embed(model::EmbedArgs),
    /// Copy a collection into another, embedding each record's text with --model (resumable).
    Reembed(model::ReembedArgs),
    /// Build a store from the bundled sample, search it, print recall and timings.
    Demo(demo::DemoArgs),
    /// k-means clusters of a collection's vectors (sizes, medoids); --into writes them.
    Cluster(analyse::ClusterArgs),
    /// Each record of LEFT with its nearest in RIGHT, as JSON Lines; --one-to-one matches.
    Join(analyse::JoinArgs),
    /// Groups of near-duplicate records within a collection, as JSON Lines.
    Dedup(analyse::DedupArgs),
    /// Serve the store to AI agents over the Model Context Protocol (stdio, or --http).
    Mcp(McpArgs),
    /// Copy a collection onto Milvus and keep it there (--follow), or --verify both sides.
    Sync(SyncArgs),
    /// Print a shell completion script: quiver completions bash > /etc/bash_completion.d/quiver.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
        #[command(flatten)]
        no_store: NoStore,
    },
    /// Print the man page (roff): quiver man | man -l -.
    Man {
        #[command(flatten)]
        no_store: NoStore,
    },
    /// The writer of the kill-soak test (random writes forever; not for users).
    #[command(hide = true)]
    DebugSoakWriter(soak::SoakArgs),
}

/// Arguments of `quiver sync`.
#[derive(Args, Debug)]
pub(crate) struct SyncArgs {
    /// The local collection.
    pub name: String,
    /// The target: milvus://HOST:PORT/COLLECTION.
    #[arg(long, value_name = "URL")]
    pub to: String,
    /// After catching up, keep applying new local commits until interrupted.
    #[arg(long, conflicts_with = "verify")]
    pub follow: bool,
    /// Copy the whole collection again (then drop what only Milvus has), as
    /// after a change made on the Milvus side.
    #[arg(long, conflicts_with = "verify")]
    pub full: bool,
    /// Records per remote write.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub batch: u64,
    /// Compare both sides (counts, id sets, a sample of records) instead of syncing; exit 1 on a difference.
    #[arg(long)]
    pub verify: bool,
    /// Records --verify compares field by field.
    #[arg(long, default_value_t = 200)]
    pub sample: usize,
    /// A file holding the Milvus token ("user:password" or an API key);
    /// else $QUIVER_MILVUS_TOKEN; never on the command line.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Without --follow, give up after Milvus was unreachable this long (seconds).
    #[arg(long, default_value_t = 300)]
    pub retry_for: u64,
    /// With --follow, how often to look for new local commits, in milliseconds.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub poll_ms: u64,
}

/// Arguments of `quiver mcp`.
#[derive(Args, Debug)]
pub(crate) struct McpArgs {
    /// The collection tools use when a request names none (an agent's memory is one collection).
    #[arg(long)]
    pub collection: Option<String>,
    /// Open the store read-only: the write tools answer with an error.
    #[arg(long)]
    pub read_only: bool,
    /// Serve the streamable HTTP transport at this address (e.g. 127.0.0.1:8765) instead of stdio.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<std::net::SocketAddr>,
    /// Allow --http on an address other than loopback (needs --token-file).
    #[arg(long)]
    pub allow_remote: bool,
    /// A file holding the bearer token HTTP clients must send (Authorization: Bearer TOKEN).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

/// `--ttl` / `--expires-at`, on the commands that write records.
#[derive(Args, Debug, Default)]
pub(crate) struct ExpiryArg {
    /// Expire the record(s) this long from now: 90s, 15m, 12h, 30d, 2w.
    #[arg(long, value_name = "DURATION", conflicts_with = "expires_at")]
    pub ttl: Option<String>,
    /// Expire the record(s) at this RFC 3339 time (2026-12-31T23:59:59Z).
    #[arg(long, value_name = "TIME")]
    pub expires_at: Option<String>,
}

impl ExpiryArg {
    /// The expiry asked for, Unix milliseconds (`None`: not given).
    pub(crate) fn resolve(&self) -> output::CliResult<Option<i64>> {
        if let Some(ttl) = &self.ttl {
            let Some(d) = quiver::clock::parse_ttl(ttl) else {
                return output::input(format!(
                    "--ttl {ttl:?}: give a number and a unit (ms, s, m, h, d, w), such as 30d"
                ));
            };
            let now = quiver::clock::to_ms(std::time::SystemTime::now());
            return Ok(Some(now.saturating_add(d.as_millis() as i64)));
        }
        match &self.expires_at {
            Some(t) => match quiver::clock::parse_rfc3339(t) {
                Some(ms) => Ok(Some(ms)),
                None => output::input(format!(
                    "--expires-at {t:?} is not an RFC 3339 time such as 2026-12-31T23:59:59Z"
                )),
            },
            None => Ok(None),
        }
    }
}

/// `--model`, on the commands that embed text.
#[derive(Args, Debug, Default)]
pub(crate) struct ModelArg {
    /// Embedding model: a directory (config.json, tokenizer.json,
    /// model.safetensors) or a Hugging Face Hub id (owner/name)
    /// [default: the collection's own model, else $QUIVER_MODEL].
    #[arg(long, value_name = "DIR|OWNER/NAME")]
    pub model: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub(crate) struct CreateArgs {
    /// The collection.
    pub name: String,
    #[command(flatten)]
    pub model: ModelArg,
    /// Vector dimension (taken from --model when given).
    #[arg(long)]
    pub dim: Option<usize>,
    /// Distance: cos, ip, l2, pearson, divergence (distributions), haversine ([lat, lon] in
    /// degrees, --dim 2), or hamming and jaccard (sign bits, with b1).
    #[arg(long, default_value = "cos")]
    pub metric: String,
    /// Index storage: f32, f16, bf16, i8, b1. The database always keeps f32
    /// [default: bf16 for cos and ip, f32 for l2, b1 for hamming].
    #[arg(long)]
    pub scalar: Option<String>,
    /// HNSW edges per node (M).
    #[arg(long, default_value_t = 16)]
    pub connectivity: usize,
    /// HNSW ef at insert time.
    #[arg(long, default_value_t = 128)]
    pub expansion_add: usize,
    /// Default HNSW ef at search time.
    #[arg(long, default_value_t = quiver::DEFAULT_EXPANSION_SEARCH)]
    pub expansion_search: usize,
    /// Keyword search's tokenizer: unicode61, or porter (English stemming:
    /// "databases" finds "Database"). Fixed for the collection's life.
    #[arg(long, default_value = "unicode61")]
    pub tokenizer: String,
    /// Put before every text query the model embeds (E5: "query: ")
    /// [default: the model's own query prompt, if it has one].
    #[arg(long, allow_hyphen_values = true)]
    pub query_prefix: Option<String>,
    /// Put before every record text the model embeds (E5: "passage: ")
    /// [default: the model's own document prompt, if it has one].
    #[arg(long, allow_hyphen_values = true)]
    pub document_prefix: Option<String>,
}

#[derive(Args, Debug)]
pub(crate) struct ImportArgs {
    /// The collection.
    pub name: String,
    #[command(flatten)]
    pub model: ModelArg,
    /// JSON Lines: {"id": .., "vector": [..]?, "text": ..?, "metadata": {..}?,
    /// "expires_at": RFC 3339 or Unix ms?}.
    #[arg(required_unless_present = "from")]
    pub file: Option<PathBuf>,
    /// Import a Milvus collection instead: milvus://HOST:PORT/COLLECTION.
    #[arg(long, value_name = "URL", conflicts_with_all = ["file", "vectors", "report_commits"])]
    pub from: Option<String>,
    /// With --from: a file holding the Milvus token; else $QUIVER_MILVUS_TOKEN.
    #[arg(long, value_name = "FILE", requires = "from")]
    pub token_file: Option<PathBuf>,
    /// Raw little-endian f32 file (lines × dim); row i is the vector of line i.
    #[arg(long, value_name = "FILE.f32")]
    pub vectors: Option<PathBuf>,
    /// The expiry of lines that give no "expires_at" of their own.
    #[command(flatten)]
    pub expiry: ExpiryArg,
    /// Records per transaction.
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Print {"committed": N} on stdout after each committed batch.
    #[arg(long)]
    pub report_commits: bool,
}

#[derive(Args, Debug)]
pub(crate) struct GetArgs {
    /// The collection.
    pub name: String,
    /// Ids to print; without ids, scan (in id order unless --order-by).
    pub ids: Vec<String>,
    /// Scan only records matching this filter.
    #[arg(long, conflicts_with = "ids")]
    pub filter: Option<String>,
    /// Most records a scan prints (a scan that stops here says so on
    /// stderr, with the cursor to continue from).
    #[arg(long, default_value_t = 100, conflicts_with = "ids")]
    pub limit: usize,
    /// Continue a scan after this cursor (for id order, any id).
    #[arg(long, conflicts_with = "ids", allow_hyphen_values = true)]
    pub after: Option<String>,
    /// Order a scan by this metadata field (ties by id; records without it last).
    #[arg(long, conflicts_with = "ids")]
    pub order_by: Option<String>,
    /// Descending.
    #[arg(long, conflicts_with = "ids")]
    pub desc: bool,
    /// End a scan with a line {"next": CURSOR}, or {"next": null} after the last page.
    #[arg(long, conflicts_with = "ids")]
    pub paged: bool,
    /// Fields to print besides id, text and metadata: vector.
    #[arg(long, value_delimiter = ',')]
    pub include: Vec<String>,
}

#[derive(Args, Debug)]
pub(crate) struct UpsertArgs {
    /// The collection.
    pub name: String,
    #[command(flatten)]
    pub model: ModelArg,
    /// The record's id.
    #[arg(long)]
    pub id: String,
    /// The vector as a JSON array (embedded from --text with --model when absent).
    #[arg(long, required_unless_present = "text")]
    pub vector: Option<String>,
    /// The record's text: stored, searched by keyword, and embedded with
    /// the collection's model when no --vector is given.
    #[arg(long, allow_hyphen_values = true)]
    pub text: Option<String>,
    /// A JSON object.
    #[arg(long)]
    pub metadata: Option<String>,
    #[command(flatten)]
    pub expiry: ExpiryArg,
}

/// What `search` ranks by.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Nearest neighbours of a vector (given, or embedded from the text).
    Vector,
    /// BM25 over the records' text.
    Keyword,
    /// Both lists, fused by reciprocal rank.
    Hybrid,
}

#[derive(Args, Debug)]
pub(crate) struct SearchArgs {
    /// The collection.
    pub name: String,
    #[command(flatten)]
    pub model: ModelArg,
    /// vector (nearest neighbours), keyword (BM25 over text) or hybrid (both, fused).
    #[arg(long, value_enum, default_value_t = Mode::Vector)]
    pub mode: Mode,
    /// One query vector as a JSON array.
    #[arg(long, conflicts_with = "queries")]
    pub vector: Option<String>,
    /// One query text: BM25 in keyword mode; embedded with --model in vector mode
    /// (and in hybrid mode when no vector is given).
    #[arg(long, conflicts_with = "query_texts", allow_hyphen_values = true)]
    pub text: Option<String>,
    /// JSON Lines of {"text": ..}, one per query (with --queries in hybrid mode: row i goes with line i);
    /// `-` reads stdin.
    #[arg(long, value_name = "FILE.jsonl")]
    pub query_texts: Option<PathBuf>,
    /// Only records matching this filter, e.g. "lang = 'go' AND stars >= 10".
    #[arg(long)]
    pub filter: Option<String>,
    /// Hybrid: the k of reciprocal rank fusion.
    #[arg(long, default_value_t = 60.0, allow_negative_numbers = true)]
    pub rrf_k: f32,
    /// Hybrid: weight of the vector list.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub vector_weight: f32,
    /// Hybrid: weight of the keyword list.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub keyword_weight: f32,
    /// Raw little-endian f32 file of query vectors (N × dim). `-` reads
    /// them from stdin and answers each as it arrives (one line, flushed):
    /// a long-lived search process fed through a pipe.
    #[arg(long, value_name = "FILE.f32")]
    pub queries: Option<PathBuf>,
    /// Hits per query.
    #[arg(short, long, default_value_t = 10)]
    pub k: usize,
    /// HNSW candidate list size for these queries.
    #[arg(long)]
    pub ef: Option<usize>,
    /// Brute force: exact results.
    #[arg(long)]
    pub exact: bool,
    /// Fields to add to each hit: text, metadata, vector (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub include: Vec<String>,
    /// Add each query's own wall time in microseconds ("took_us") to its line.
    #[arg(long)]
    pub timings: bool,
}

#[derive(Args, Debug)]
pub(crate) struct AlterArgs {
    /// The collection.
    pub name: String,
    #[command(flatten)]
    pub model: ModelArg,
    /// New distance: cos, ip, l2, pearson, divergence, haversine, or hamming and jaccard with b1.
    /// Rebuilds the index.
    #[arg(long)]
    pub metric: Option<String>,
    /// New index storage: f32, f16, bf16, i8, b1. Rebuilds the index.
    #[arg(long)]
    pub scalar: Option<String>,
    /// New HNSW edges per node (M). Rebuilds the index.
    #[arg(long)]
    pub connectivity: Option<usize>,
    /// New HNSW ef at insert time. Rebuilds the index.
    #[arg(long)]
    pub expansion_add: Option<usize>,
    /// New default HNSW ef at search time.
    #[arg(long)]
    pub expansion_search: Option<usize>,
    /// New query prefix of the bound model (see create).
    #[arg(long, allow_hyphen_values = true)]
    pub query_prefix: Option<String>,
    /// New document prefix of the bound model (see create).
    #[arg(long, allow_hyphen_values = true)]
    pub document_prefix: Option<String>,
}

impl Cli {
    /// The `--model` of the command, if it takes one.
    pub(crate) fn model(&self) -> Option<&PathBuf> {
        let arg = match &self.command {
            Command::Create(a) => &a.model,
            Command::Import(a) => &a.model,
            Command::Upsert(a) => &a.model,
            Command::Search(a) => &a.model,
            Command::Alter(a) => &a.model,
            Command::Update(a) => &a.model,
            Command::Apply(a) => &a.model,
            Command::Embed(a) => &a.model,
            Command::Reembed(a) => &a.model,
            _ => return None,
        };
        arg.model.as_ref()
    }

    pub(crate) fn store_dir(&self) -> PathBuf {
        self.store
            .clone()
            .or_else(|| std::env::var_os("QUIVER_STORE").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("quiver-store"))
    }

    /// The busy timeout from `--wait` or `$QUIVER_WAIT` (seconds), if set.
    pub(crate) fn wait(&self) -> Result<Option<std::time::Duration>, Failure> {
        let (text, from) = match (self.wait, std::env::var("QUIVER_WAIT")) {
            (Some(secs), _) => (secs.to_string(), "--wait"),
            (None, Ok(v)) => (v, "QUIVER_WAIT"),
            (None, Err(_)) => return Ok(None),
        };
        match text.trim().parse::<f64>() {
            Ok(secs) if secs.is_finite() && (0.0..=86_400.0).contains(&secs) => {
                Ok(Some(std::time::Duration::from_secs_f64(secs)))
            }
            _ => Err(Failure::Input(format!(
                "{from} must be a number of seconds from 0 to 86400, got {text:?}"
            ))),
        }
    }
}

/// The command line's definition.
pub(crate) fn command() -> clap::Command {
    use clap::CommandFactory;
    Cli::command()
}

/// `--store` and `--wait` on a command that opens no store: accepted (as
/// everywhere) but left out of its help.
#[derive(Args, Debug, Default)]
pub(crate) struct NoStore {
    /// Ignored: this command opens no store.
    #[arg(long, hide = true, value_name = "DIR")]
    store: Option<PathBuf>,
    /// Ignored: this command writes no store.
    #[arg(long, hide = true, value_name = "SECS")]
    wait: Option<f64>,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // The message on the first line, whole (what scripts read),
            // then clap's usage block as it is (what people read).
            let text = e.render().to_string();
            let is_message =
                |l: &&str| !l.starts_with("Usage:") && !l.starts_with("For more information");
            let message: Vec<&str> = text
                .lines()
                .take_while(is_message)
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            eprintln!(
                "quiver: {}",
                message.join(" ").trim_start_matches("error: ")
            );
            for line in text.lines().skip_while(is_message) {
                eprintln!("{line}");
            }
            return ExitCode::from(2);
        }
    };
    // Lives as long as the process: the MCP server's tools borrow it.
    let cli: &'static Cli = Box::leak(Box::new(cli));
    match commands::run(cli) {
        Ok(code) => code,
        Err(Failure::BrokenPipe) => ExitCode::SUCCESS,
        Err(Failure::Input(msg)) => {
            eprintln!("quiver: {}", one_line(&msg));
            ExitCode::from(2)
        }
        Err(Failure::Internal(msg)) => {
            eprintln!("quiver: {}", one_line(&msg));
            ExitCode::from(1)
        }
        Err(Failure::Busy(msg)) => {
            eprintln!("quiver: {}", one_line(&msg));
            ExitCode::from(output::EXIT_BUSY)
        }
    }
}

fn one_line(msg: &str) -> String {
    msg.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {

    /// `--help` lists every command, once.
    #[test]
    fn help_lists_every_command_once() {
        let cmd = super::command();
        for sub in cmd.get_subcommands().filter(|c| !c.is_hide_set()) {
            let name = sub.get_name();
            let listed = super::HELP
                .lines()
                .filter(|l| l.split_whitespace().next() == Some(name))
                .count();
            assert_eq!(listed, 1, "{name} listed {listed} times in --help");
        }
    }

    /// Every argument of every subcommand says what it is for.
    #[test]
    fn every_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if arg.get_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() {
                    missing.push(format!("{path} {} (no about)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::command(), "quiver", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:#?}");
    }
}
