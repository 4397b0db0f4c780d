//! [`KeywordIndex`]: BM25 with tantivy, one index per tenant (its own directory when persistent),
//! with English or German analysis (lower-casing, stop words, Snowball stemming).
//!
//! A document's chunks are replaced in one tantivy commit, so readers see the old or the new chunks.
//! Query text is analysed and turned into term queries directly: no query syntax, so user input
//! cannot inject operators or fail to parse.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions, Value as _,
};
use tantivy::tokenizer::{
    Language as StemLanguage, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer,
    StopWordFilter, TextAnalyzer,
};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};
use wattos_core::vector_store::{Filter, Hit, sort_hits};
use wattos_core::{Error, RequestContext, Result};

use super::{KeywordChunk, KeywordSearch, Language};

/// tantivy analysis of a [`Language`].
trait Analysis {
    fn tokenizer_name(self) -> &'static str;
    fn analyzer(self) -> TextAnalyzer;
}

impl Analysis for Language {
    fn tokenizer_name(self) -> &'static str {
        match self {
            Self::English => "wattos_en",
            Self::German => "wattos_de",
        }
    }

    fn analyzer(self) -> TextAnalyzer {
        let lang = match self {
            Self::English => StemLanguage::English,
            Self::German => StemLanguage::German,
        };
        let builder = TextAnalyzer::builder(SimpleTokenizer::default())
            .filter(RemoveLongFilter::limit(48))
            .filter(LowerCaser);
        match StopWordFilter::new(lang) {
            Some(stop) => builder.filter(stop).filter(Stemmer::new(lang)).build(),
            None => builder.filter(Stemmer::new(lang)).build(),
        }
    }
}

#[derive(Clone, Copy)]
struct Fields {
    id: Field,
    document_id: Field,
    text: Field,
    metadata: Field,
}

struct TenantIndex {
    index: Index,
    writer: Mutex<IndexWriter>,
    reader: IndexReader,
    fields: Fields,
}

/// Per-tenant BM25 indexes. Cheap to clone.
#[derive(Clone)]
pub struct KeywordIndex {
    inner: Arc<KeywordInner>,
}

struct KeywordInner {
    dir: Option<PathBuf>,
    language: Language,
    tenants: Mutex<HashMap<String, Arc<TenantIndex>>>,
}

impl std::fmt::Debug for KeywordIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeywordIndex")
            .field("dir", &self.inner.dir)
            .field("language", &self.inner.language)
            .finish()
    }
}

fn tantivy_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::unavailable(format!("keyword index: {what}: {e}"))
}

/// Writer heap per tenant (tantivy's minimum is 15 MB).
const WRITER_HEAP: usize = 15_000_000;

impl KeywordIndex {
    /// Indexes kept in memory.
    pub fn in_memory(language: Language) -> Self {
        Self::build(None, language)
    }

    /// Indexes persisted under `dir` (one sub-directory per tenant, opened lazily).
    ///
    /// # Errors
    /// [`wattos_core::ErrorKind::Unavailable`] when the directory cannot be created.
    pub fn open(dir: impl AsRef<Path>, language: Language) -> Result<Self> {
        std::fs::create_dir_all(dir.as_ref()).map_err(|e| tantivy_err("create dir", e))?;
        Ok(Self::build(Some(dir.as_ref().to_path_buf()), language))
    }

    fn build(dir: Option<PathBuf>, language: Language) -> Self {
        Self {
            inner: Arc::new(KeywordInner {
                dir,
                language,
                tenants: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The analyzer language.
    pub fn language(&self) -> Language {
        self.inner.language
    }

    fn schema(language: Language) -> (Schema, Fields) {
        let mut b = Schema::builder();
        let text_opts = TextOptions::default()
            .set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer(language.tokenizer_name())
                    .set_index_option(IndexRecordOption::WithFreqsAndPositions),
            )
            .set_stored();
        let fields = Fields {
            id: b.add_text_field("id", STRING | STORED),
            document_id: b.add_text_field("document_id", STRING | STORED),
            text: b.add_text_field("text", text_opts),
            metadata: b.add_text_field("metadata", STORED),
        };
        (b.build(), fields)
    }

    fn tenant(&self, ctx: &RequestContext) -> Result<Arc<TenantIndex>> {
        let key = ctx.tenant().as_str();
        let mut tenants = self
            .inner
            .tenants
            .lock()
            .map_err(|_| Error::internal("keyword index lock poisoned"))?;
        if let Some(t) = tenants.get(key) {
            return Ok(t.clone());
        }
        let language = self.inner.language;
        let (schema, fields) = Self::schema(language);
        let index = match &self.inner.dir {
            None => Index::create_in_ram(schema),
            Some(dir) => {
                // Hex keeps any tenant id ('.', '..') a safe directory name.
                let path = dir.join(hex::encode(key.as_bytes()));
                std::fs::create_dir_all(&path).map_err(|e| tantivy_err("create tenant dir", e))?;
                let mmap = tantivy::directory::MmapDirectory::open(&path)
                    .map_err(|e| tantivy_err("open dir", e))?;
                Index::open_or_create(mmap, schema).map_err(|e| tantivy_err("open index", e))?
            }
        };
        index
            .tokenizers()
            .register(language.tokenizer_name(), language.analyzer());
        let writer = index
            .writer_with_num_threads(1, WRITER_HEAP)
            .map_err(|e| tantivy_err("open writer", e))?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(|e| tantivy_err("open reader", e))?;
        let t = Arc::new(TenantIndex {
            index,
            writer: Mutex::new(writer),
            reader,
            fields,
        });
        tenants.insert(key.to_owned(), t.clone());
        Ok(t)
    }

    /// Replaces the chunks of each listed document (an empty list deletes it), in one commit.
    ///
    /// # Errors
    /// [`wattos_core::ErrorKind::Unavailable`] when tantivy fails; nothing is committed then.
    pub fn replace_documents(
        &self,
        ctx: &RequestContext,
        docs: &[(String, Vec<KeywordChunk>)],
    ) -> Result<()> {
        let t = self.tenant(ctx)?;
        let mut w = t
            .writer
            .lock()
            .map_err(|_| Error::internal("keyword writer lock poisoned"))?;
        let staged = (|| -> tantivy::Result<()> {
            for (doc_id, chunks) in docs {
                w.delete_term(Term::from_field_text(t.fields.document_id, doc_id));
                for c in chunks {
                    let mut d = TantivyDocument::default();
                    d.add_text(t.fields.id, &c.id);
                    d.add_text(t.fields.document_id, doc_id);
                    d.add_text(t.fields.text, &c.text);
                    d.add_text(
                        t.fields.metadata,
                        Value::Object(c.metadata.clone()).to_string(),
                    );
                    w.add_document(d)?;
                }
            }
            w.commit()?;
            Ok(())
        })();
        if let Err(e) = staged {
            let _ = w.rollback();
            return Err(tantivy_err("commit", e));
        }
        t.reader.reload().map_err(|e| tantivy_err("reload", e))
    }

    /// Deletes every chunk of the given documents, in one commit.
    ///
    /// # Errors
    /// As for [`KeywordIndex::replace_documents`].
    pub fn delete_documents(&self, ctx: &RequestContext, document_ids: &[String]) -> Result<()> {
        let docs: Vec<(String, Vec<KeywordChunk>)> = document_ids
            .iter()
            .map(|d| (d.clone(), Vec::new()))
            .collect();
        self.replace_documents(ctx, &docs)
    }

    /// Indexed chunks of this tenant.
    ///
    /// # Errors
    /// As for [`KeywordIndex::replace_documents`].
    pub fn count(&self, ctx: &RequestContext) -> Result<u64> {
        Ok(self.tenant(ctx)?.reader.searcher().num_docs())
    }

    /// The `top_k` chunks by BM25 for `query`, optionally filtered on metadata (filters are applied
    /// to an over-fetched candidate list). Scores are raw BM25.
    ///
    /// # Errors
    /// As for [`KeywordIndex::replace_documents`]; invalid filters.
    pub fn search(
        &self,
        ctx: &RequestContext,
        query: &str,
        top_k: usize,
        filter: Option<&Filter>,
    ) -> Result<Vec<Hit>> {
        if let Some(f) = filter {
            f.validate()?;
        }
        let t = self.tenant(ctx)?;
        let mut analyzer = t
            .index
            .tokenizers()
            .get(self.inner.language.tokenizer_name())
            .ok_or_else(|| Error::internal("keyword analyzer missing"))?;
        let mut terms = Vec::new();
        let mut stream = analyzer.token_stream(query);
        while let Some(tok) = stream.next() {
            terms.push(Term::from_field_text(t.fields.text, &tok.text));
        }
        terms.sort();
        terms.dedup();
        if terms.is_empty() || top_k == 0 {
            return Ok(Vec::new());
        }
        let clauses: Vec<(Occur, Box<dyn Query>)> = terms
            .into_iter()
            .map(|term| {
                (
                    Occur::Should,
                    Box::new(TermQuery::new(term, IndexRecordOption::WithFreqs)) as Box<dyn Query>,
                )
            })
            .collect();
        let q = BooleanQuery::new(clauses);
        let searcher = t.reader.searcher();
        let limit = if filter.is_some() {
            (top_k * 10).max(200)
        } else {
            top_k
        };
        let top = searcher
            .search(&q, &TopDocs::with_limit(limit))
            .map_err(|e| tantivy_err("search", e))?;
        let mut hits = Vec::with_capacity(top_k);
        for (score, addr) in top {
            let d: TantivyDocument = searcher.doc(addr).map_err(|e| tantivy_err("read doc", e))?;
            let get = |f: Field| {
                d.get_first(f)
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_owned()
            };
            let document_id = get(t.fields.document_id);
            let metadata: Map<String, Value> =
                serde_json::from_str(&get(t.fields.metadata)).unwrap_or_default();
            if filter.is_some_and(|f| !f.matches(&document_id, &metadata)) {
                continue;
            }
            hits.push(Hit {
                id: get(t.fields.id),
                document_id,
                score,
                text: get(t.fields.text),
                metadata,
            });
            if hits.len() == top_k {
                break;
            }
        }
        sort_hits(&mut hits);
        Ok(hits)
    }
}

#[async_trait::async_trait]
impl KeywordSearch for KeywordIndex {
    fn name(&self) -> &str {
        "tantivy-bm25"
    }

    async fn replace_documents(
        &self,
        ctx: &RequestContext,
        docs: &[(String, Vec<KeywordChunk>)],
    ) -> Result<()> {
        KeywordIndex::replace_documents(self, ctx, docs)
    }

    async fn delete_documents(&self, ctx: &RequestContext, document_ids: &[String]) -> Result<()> {
        KeywordIndex::delete_documents(self, ctx, document_ids)
    }

    async fn count(&self, ctx: &RequestContext) -> Result<u64> {
        KeywordIndex::count(self, ctx)
    }

    /// Runs on tokio's blocking pool (inline without a runtime), so a search overlaps with
    /// whatever else the caller awaits, such as the dense half of a hybrid search.
    async fn search(
        &self,
        ctx: &RequestContext,
        query: &str,
        top_k: usize,
        filter: Option<&Filter>,
    ) -> Result<Vec<Hit>> {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return KeywordIndex::search(self, ctx, query, top_k, filter);
        };
        let (index, ctx, query, filter) =
            (self.clone(), ctx.clone(), query.to_owned(), filter.cloned());
        rt.spawn_blocking(move || {
            KeywordIndex::search(&index, &ctx, &query, top_k, filter.as_ref())
        })
        .await
        .map_err(|e| Error::internal(format!("keyword search task failed: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wattos_core::TenantId;

    fn ctx(t: &str) -> RequestContext {
        RequestContext::system(TenantId::new(t).unwrap())
    }

    fn chunk(id: &str, text: &str) -> KeywordChunk {
        KeywordChunk {
            id: id.into(),
            text: text.into(),
            metadata: Map::new(),
        }
    }

    #[test]
    fn english_stemming_and_tenant_isolation() {
        let idx = KeywordIndex::in_memory(Language::English);
        let a = ctx("a");
        idx.replace_documents(
            &a,
            &[(
                "d1".into(),
                vec![
                    chunk("d1#0", "Running shoes for runners"),
                    chunk("d1#1", "Cooking pasta"),
                ],
            )],
        )
        .unwrap();
        let hits = idx.search(&a, "run", 5, None).unwrap();
        assert_eq!(hits[0].id, "d1#0");
        assert!(idx.search(&ctx("b"), "run", 5, None).unwrap().is_empty());
        assert!(
            idx.search(&a, "the AND OR (", 5, None).unwrap().is_empty(),
            "stop words and syntax are harmless"
        );
    }

    #[test]
    fn german_stemming_and_replace() {
        let idx = KeywordIndex::in_memory(Language::German);
        let c = ctx("de");
        idx.replace_documents(
            &c,
            &[(
                "d".into(),
                vec![chunk("d#0", "Die Häuser der Stadt sind alt")],
            )],
        )
        .unwrap();
        assert_eq!(
            idx.search(&c, "Haus", 5, None).unwrap().len(),
            1,
            "Häuser stems like Haus"
        );
        idx.replace_documents(&c, &[("d".into(), vec![chunk("d#0", "Neue Brücken")])])
            .unwrap();
        assert!(idx.search(&c, "Haus", 5, None).unwrap().is_empty());
        assert_eq!(idx.count(&c).unwrap(), 1);
        idx.delete_documents(&c, &["d".into()]).unwrap();
        assert_eq!(idx.count(&c).unwrap(), 0);
    }

    #[test]
    fn persists_and_filters() {
        let dir = tempfile::tempdir().unwrap();
        let c = ctx("..");
        {
            let idx = KeywordIndex::open(dir.path(), Language::English).unwrap();
            let mut m = Map::new();
            m.insert("lang".into(), "en".into());
            idx.replace_documents(
                &c,
                &[(
                    "d".into(),
                    vec![
                        KeywordChunk {
                            id: "d#0".into(),
                            text: "solar power".into(),
                            metadata: m,
                        },
                        chunk("d#1", "solar wind"),
                    ],
                )],
            )
            .unwrap();
        }
        let idx = KeywordIndex::open(dir.path(), Language::English).unwrap();
        let hits = idx
            .search(&c, "solar", 5, Some(&Filter::eq("lang", "en")))
            .unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].id, "d#0");
    }
}
