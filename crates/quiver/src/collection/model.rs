//! The collection's embedding model: binding it, holding it, and text in
//! (records embedded from their text) and out (text queries).

use super::*;
#[cfg(feature = "embed")]
use crate::embed::{Embedder, SentenceEmbedder};

impl Collection {
    /// The model this collection is bound to, if any, as SQLite has it now
    /// (another process may have bound it, or changed its prefixes).
    ///
    /// # Errors
    /// [`Error::Dropped`]; SQLite failures.
    pub fn model(&self) -> Result<Option<ModelBinding>> {
        self.alive()?;
        let cid = self.state.cid;
        let row = self.store.read(|conn| catalogue::by_cid(conn, cid))?;
        let row = row.ok_or_else(|| Error::Dropped {
            name: self.state.name.clone(),
        })?;
        Ok(row.config.embedding)
    }

    /// Bind this collection to a model, or update the binding's source and
    /// prefixes. A collection bound to other weights is refused: its
    /// vectors came from that model (copy it with `reembed` instead).
    /// Takes effect in every process using the store; the index is not
    /// touched.
    ///
    /// # Errors
    /// [`Error::Model`] when the collection is bound to another model;
    /// [`Error::InvalidConfig`] for a bad binding or another dimension;
    /// [`Error::ReadOnly`]; SQLite failures.
    pub fn bind_model(&self, binding: &ModelBinding) -> Result<()> {
        self.alive()?;
        let mut next = self.config();
        next.model = Some(binding.id.clone());
        next.embedding = Some(binding.clone());
        next.validate()?;
        let mut conn = self.store.writer("bind model")?;
        let tx = self.store.write_tx(&mut conn, "bind model")?;
        // As SQLite has it now: another process may have bound it since.
        let mut current = catalogue::by_cid(&tx, self.state.cid)?
            .ok_or_else(|| Error::Dropped {
                name: self.state.name.clone(),
            })?
            .config;
        self.check_same_model(&current, &binding.id, &binding.source)?;
        current.model = Some(binding.id.clone());
        current.embedding = Some(binding.clone());
        current.validate()?;
        catalogue::set_model(&tx, self.state.cid, &current)?;
        tx.commit("bind model")?;
        // Only the model: index settings another process altered meanwhile
        // reach this handle through its next catch-up, which rebuilds.
        let mut config = self.state.config.write_lock();
        config.model = current.model;
        config.embedding = current.embedding;
        Ok(())
    }

    /// Refuse a model `id` (from `source`) other than the one `config` is
    /// bound to; the message names both.
    fn check_same_model(&self, config: &CollectionConfig, id: &str, source: &str) -> Result<()> {
        let bound = config
            .embedding
            .as_ref()
            .map(|b| (b.id.as_str(), b.source.as_str()))
            .or(config.model.as_deref().map(|m| (m, m)));
        if let Some((bound_id, bound_source)) = bound {
            if digest_of(bound_id) != digest_of(id) {
                let from = if bound_source == bound_id {
                    String::new()
                } else {
                    format!(" from {bound_source}")
                };
                return Err(Error::Model {
                    path: source.into(),
                    reason: format!(
                        "is {id}, but collection {:?} is bound to {bound_id}{from}; use that model, or `reembed` into a new collection",
                        self.state.name
                    ),
                });
            }
        }
        Ok(())
    }
}

/// Refuse a text that embeds to nothing meaningful.
#[cfg(feature = "embed")]
pub(crate) fn check_text(id: Option<&str>, text: &str) -> Result<()> {
    if text.trim().is_empty() {
        return Err(Error::InvalidText {
            id: id.map(String::from),
            reason: "an empty or blank text cannot be embedded".into(),
        });
    }
    Ok(())
}

#[cfg(feature = "embed")]
impl Collection {
    /// Check that `embedder` may write to and query this collection: the
    /// same weights as the model the collection is bound to (models are
    /// stamped `name@digest`; the digest decides), and the same dimension.
    ///
    /// # Errors
    /// [`Error::Model`] on a different model, naming both;
    /// [`Error::DimensionMismatch`] on a different dimension.
    pub fn check_embedder(&self, embedder: &dyn Embedder) -> Result<()> {
        let config = self.config();
        let binding = embedder.binding();
        self.check_same_model(&config, embedder.id(), &binding.source)?;
        if embedder.dimension() != config.dimension {
            return Err(Error::DimensionMismatch {
                collection: self.state.name.clone(),
                expected: config.dimension,
                got: embedder.dimension(),
                id: None,
            });
        }
        Ok(())
    }

    /// Embed this collection's texts with `embedder` from now on (every
    /// handle of this store), once [`Collection::check_embedder`] passes.
    /// Binds nothing: see [`Collection::bind_embedder`]. In a collection
    /// bound to none, texts get `embedder`'s own prefixes (its binding's).
    ///
    /// # Errors
    /// As [`Collection::check_embedder`].
    pub fn use_embedder(&self, embedder: Arc<dyn Embedder>) -> Result<()> {
        self.check_embedder(&*embedder)?;
        *self.state.embedder.locked() = Some(embedder);
        Ok(())
    }

    /// Bind this collection to `embedder`'s model ([`Collection::bind_model`],
    /// keeping prefixes already set) and use it.
    ///
    /// # Errors
    /// As [`Collection::bind_model`] and [`Collection::check_embedder`].
    pub fn bind_embedder(&self, embedder: Arc<dyn Embedder>) -> Result<()> {
        self.check_embedder(&*embedder)?;
        let mut binding = embedder.binding();
        if let Some(old) = self.model()? {
            if digest_of(&old.id) == digest_of(&binding.id) {
                binding.query_prefix = old.query_prefix;
                binding.document_prefix = old.document_prefix;
            }
        }
        self.bind_model(&binding)?;
        *self.state.embedder.locked() = Some(embedder);
        Ok(())
    }

    /// The model this collection embeds with: the one given to
    /// [`Collection::use_embedder`], else its bound model loaded from the
    /// binding's source directory (checked to be the same weights) and
    /// kept.
    ///
    /// # Errors
    /// [`Error::Model`] when the collection is bound to no model, or its
    /// source is not a directory here (a Hub id: load the model and pass
    /// it to `use_embedder`), or holds other weights.
    pub fn embedder(&self) -> Result<Arc<dyn Embedder>> {
        if let Some(e) = self.state.embedder.locked().clone() {
            return Ok(e);
        }
        let config = self.config();
        let Some(binding) = self.model()? else {
            let hint = config
                .model
                .map(|m| format!(" (its vectors came from {m}, which it does not know where to find: bind it)"))
                .unwrap_or_default();
            return Err(Error::Model {
                path: self.state.name.clone().into(),
                reason: format!("collection is bound to no embedding model{hint}"),
            });
        };
        let dir = std::path::Path::new(&binding.source);
        if !dir.is_dir() {
            return Err(Error::Model {
                path: binding.source.clone().into(),
                reason: format!(
                    "collection {:?} is bound to {}, but this is not a model directory here (if the model moved, bind it again from its new place: the same weights are accepted)",
                    self.state.name, binding.id
                ),
            });
        }
        let loaded: Arc<dyn Embedder> = Arc::new(SentenceEmbedder::load(dir)?);
        self.use_embedder(loaded.clone())?;
        Ok(loaded)
    }

    /// The (query, document) prefixes: the binding's, or for a collection
    /// bound to no model, those of `embedder` (its model's own prompts),
    /// which binding it later keeps.
    fn prefixes(&self, embedder: &dyn Embedder) -> Result<(String, String)> {
        let b = self.model()?.unwrap_or_else(|| embedder.binding());
        Ok((b.query_prefix, b.document_prefix))
    }

    /// Embed documents with the collection's model, its document prefix
    /// put before each (see [`Collection::use_embedder`] for a collection
    /// bound to none).
    ///
    /// # Errors
    /// [`Error::InvalidText`] for a blank text; as [`Collection::embedder`].
    pub fn embed_documents(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        self.embed_prefixed(texts, |(_, document)| document)
    }

    /// Embed a query with the collection's model, its query prefix first.
    ///
    /// # Errors
    /// As [`Collection::embed_documents`].
    pub fn embed_query(&self, text: &str) -> Result<Vec<f32>> {
        let mut v = self.embed_queries(&[text])?;
        v.pop().ok_or_else(|| Error::Model {
            path: self.state.name.clone().into(),
            reason: "the model returned no vector".into(),
        })
    }

    /// [`Collection::embed_query`] for several queries at once.
    ///
    /// # Errors
    /// As [`Collection::embed_documents`].
    pub fn embed_queries(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        self.embed_prefixed(texts, |(query, _)| query)
    }

    /// Embed `texts`, none blank, each after the prefix `pick` takes from
    /// the (query, document) prefixes.
    fn embed_prefixed(
        &self,
        texts: &[&str],
        pick: fn((String, String)) -> String,
    ) -> Result<Vec<Vec<f32>>> {
        for t in texts {
            check_text(None, t)?;
        }
        let embedder = self.embedder()?;
        let prefix = pick(self.prefixes(&*embedder)?);
        if prefix.is_empty() {
            return embedder.embed(texts);
        }
        let with: Vec<String> = texts.iter().map(|t| format!("{prefix}{t}")).collect();
        let refs: Vec<&str> = with.iter().map(String::as_str).collect();
        embedder.embed(&refs)
    }

    /// Insert or replace records whose vectors are embedded from their text
    /// with the collection's model ([`Collection::embed_documents`]), in
    /// one transaction, as [`Collection::upsert`]. Every record needs a
    /// text and no vector.
    ///
    /// # Errors
    /// [`Error::InvalidText`] for a record without text or with a blank
    /// one, [`Error::InvalidVector`] for one with a vector (nothing
    /// written); as [`Collection::embedder`] and [`Collection::upsert`].
    pub fn upsert_texts(&self, records: &[Record]) -> Result<u64> {
        let mut texts = Vec::with_capacity(records.len());
        for r in records {
            let text = r.text.as_deref().unwrap_or("");
            check_text(Some(&r.id), text)?;
            if !r.vector.is_empty() {
                return Err(Error::InvalidVector {
                    id: Some(r.id.clone()),
                    reason: "upsert_texts embeds the text: give no vector (or use upsert)".into(),
                });
            }
            texts.push(text);
        }
        let vectors = self.embed_documents(&texts)?;
        let records: Vec<Record> = records
            .iter()
            .zip(vectors)
            .map(|(r, vector)| Record {
                vector,
                ..r.clone()
            })
            .collect();
        self.upsert(&records)
    }

    /// The `k` nearest records to `text` embedded with the collection's
    /// model ([`Collection::embed_query`]): semantic search. For words
    /// matched as words, see [`Collection::search_keyword`].
    ///
    /// # Errors
    /// As [`Collection::embed_query`] and [`Collection::search`].
    pub fn query_text(&self, text: &str, options: &SearchOptions) -> Result<SearchResult> {
        let query = self.embed_query(text)?;
        self.search(&query, options)
    }

    /// Hybrid search for `text`: its embedding's nearest records and its
    /// keyword matches, fused ([`Collection::search_hybrid`]).
    ///
    /// # Errors
    /// As [`Collection::embed_query`] and [`Collection::search_hybrid`].
    pub fn query_hybrid(
        &self,
        text: &str,
        options: &SearchOptions,
        fusion: &Fusion,
    ) -> Result<SearchResult> {
        let query = self.embed_query(text)?;
        self.search_hybrid(&query, text, options, fusion)
    }
}
