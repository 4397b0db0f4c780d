//! PostgreSQL full-text search over a [`PgVectorStore`] table (feature `pgvector`): the keyword
//! half of hybrid retrieval for deployments where every instance must see the same index.
//!
//! The text is indexed where it already is: a generated `tsvector` column per language
//! (`tsv_english`, `tsv_german`) with a GIN index, in the vector table itself. The keyword index is
//! therefore written in the same transaction as the vectors and can never disagree with them; the
//! [`KeywordSearch`] write methods have nothing left to do.
//!
//! Query words are OR-ed (any word may match, as in BM25), then stemmed and stop-worded by the
//! language's text search configuration through `websearch_to_tsquery`, which never fails to parse.
//! Ranking is `ts_rank_cd` normalised by document length: not BM25, but an order that fusion can
//! use (reciprocal rank fusion only looks at ranks).

use async_trait::async_trait;
use sqlx::QueryBuilder;
use sqlx::postgres::PgPool;
use wattos_core::vector_store::{Filter, Hit};
use wattos_core::{RequestContext, Result};

use super::pgvector::{PgVectorStore, db_err, hit_from_row, push_filter};
use crate::keyword::{KeywordChunk, KeywordSearch, Language};

/// Words of a query used at most (longer queries are cut; the rest adds little to ranking).
const MAX_QUERY_WORDS: usize = 64;

/// Full-text search over the rows of a [`PgVectorStore`]; see the module docs.
#[derive(Debug, Clone)]
pub struct PgFullText {
    pool: PgPool,
    table: String,
    language: Language,
}

fn config(language: Language) -> &'static str {
    match language {
        Language::English => "english",
        Language::German => "german",
    }
}

impl PgVectorStore {
    /// Full-text search over this store's table in `language`: adds the generated `tsv_<language>`
    /// column and its GIN index if missing (PostgreSQL fills the column for existing rows).
    ///
    /// # Errors
    /// [`wattos_core::ErrorKind::Unavailable`] when the database cannot be reached or altered.
    pub async fn full_text(&self, language: Language) -> Result<PgFullText> {
        let (t, cfg) = (self.table(), config(language));
        let statements = [
            format!(
                "ALTER TABLE {t} ADD COLUMN IF NOT EXISTS tsv_{cfg} tsvector \
                 GENERATED ALWAYS AS (to_tsvector('{cfg}'::regconfig, text)) STORED"
            ),
            format!("CREATE INDEX IF NOT EXISTS {t}_tsv_{cfg} ON {t} USING gin (tsv_{cfg})"),
        ];
        let mut tx = self.pool().begin().await.map_err(|e| db_err("begin", e))?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(t)
            .execute(&mut *tx)
            .await
            .map_err(|e| db_err("lock", e))?;
        for s in statements {
            sqlx::query(&s)
                .execute(&mut *tx)
                .await
                .map_err(|e| db_err("migrate full-text column", e))?;
        }
        tx.commit().await.map_err(|e| db_err("commit", e))?;
        Ok(PgFullText {
            pool: self.pool().clone(),
            table: t.to_owned(),
            language,
        })
    }
}

impl PgFullText {
    /// The text search configuration's language.
    pub fn language(&self) -> Language {
        self.language
    }
}

/// `websearch_to_tsquery` input: the query's words joined by `or` (its OR operator), so any word
/// may match. Punctuation, quotes and `-` are dropped, so no word is read as an operator.
fn any_word(query: &str) -> String {
    query
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty() && !w.eq_ignore_ascii_case("or"))
        .take(MAX_QUERY_WORDS)
        .collect::<Vec<_>>()
        .join(" or ")
}

#[async_trait]
impl KeywordSearch for PgFullText {
    fn name(&self) -> &str {
        "postgres-fulltext"
    }

    /// Nothing to do: the generated column follows the vector store's rows.
    async fn replace_documents(
        &self,
        _ctx: &RequestContext,
        _docs: &[(String, Vec<KeywordChunk>)],
    ) -> Result<()> {
        Ok(())
    }

    /// Nothing to do: the rows go with the vector store's delete.
    async fn delete_documents(
        &self,
        _ctx: &RequestContext,
        _document_ids: &[String],
    ) -> Result<()> {
        Ok(())
    }

    async fn count(&self, ctx: &RequestContext) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM {} WHERE tenant = $1",
            self.table
        ))
        .bind(ctx.tenant().as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| db_err("count", e))?;
        Ok(n.max(0) as u64)
    }

    async fn search(
        &self,
        ctx: &RequestContext,
        query: &str,
        top_k: usize,
        filter: Option<&Filter>,
    ) -> Result<Vec<Hit>> {
        if let Some(f) = filter {
            f.validate()?;
        }
        let words = any_word(query);
        if words.is_empty() || top_k == 0 {
            return Ok(Vec::new());
        }
        let (t, cfg) = (&self.table, config(self.language));
        let mut qb = QueryBuilder::new(format!(
            "SELECT id, document_id, text, metadata, ts_rank_cd(tsv_{cfg}, q, 1)::float8 AS score \
             FROM {t}, websearch_to_tsquery('{cfg}'::regconfig, "
        ));
        qb.push_bind(words);
        qb.push(format!(") AS q WHERE tsv_{cfg} @@ q AND tenant = "));
        qb.push_bind(ctx.tenant().as_str().to_owned());
        if let Some(f) = filter {
            qb.push(" AND ");
            push_filter(&mut qb, f);
        }
        qb.push(" ORDER BY score DESC, id LIMIT ");
        qb.push_bind(i64::try_from(top_k).unwrap_or(i64::MAX));
        let rows = qb
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(|e| db_err("full-text search", e))?;
        rows.iter().map(hit_from_row).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;
    use wattos_core::TenantId;
    use wattos_core::test_utils::embed::HashingEmbedder;

    use super::*;
    use crate::document::Document;
    use crate::retrieve::{SearchMode, SearchRequest};
    use crate::{Rag, RagBuilder};

    fn ctx(tenant: &str) -> RequestContext {
        RequestContext::system(TenantId::new(tenant).unwrap())
    }

    async fn ingest(rag: &Rag, ctx: &RequestContext, id: &str, text: &str, lang: &str) {
        let doc = Document::text(id, text).with_meta("lang", lang);
        let report = rag
            .pipeline()
            .ingest_documents(ctx, vec![doc])
            .await
            .unwrap();
        assert_eq!(report.indexed(), 1, "{report:?}");
    }

    async fn keyword(rag: &Rag, ctx: &RequestContext, req: SearchRequest) -> Vec<String> {
        let req = SearchRequest {
            mode: SearchMode::Keyword,
            ..req
        };
        let hits = rag.search(ctx, &req).await.unwrap();
        hits.into_iter().map(|h| h.document_id).collect()
    }

    /// A full stack on the wheel's PostgreSQL: keyword and hybrid search over the vector table,
    /// stemmed, tenant-scoped, filtered, following replacements and deletes.
    #[tokio::test]
    async fn full_text_search_follows_the_vector_rows() {
        let url = super::super::pgvector::tests::pg_url();
        let table = format!("wattos_fts_{}", std::process::id());
        let store = PgVectorStore::connect(&url, &table, 64).await.unwrap();
        let english = store.full_text(Language::English).await.unwrap();
        let german = store.full_text(Language::German).await.unwrap();
        let build = |kw: PgFullText| {
            RagBuilder::new(HashingEmbedder::shared(64))
                .vector_store(Arc::new(store.clone()))
                .keyword_index(kw)
                .without_query_cache()
                .build()
                .unwrap()
        };
        let (rag, rag_de) = (build(english.clone()), build(german));
        let (a, b) = (ctx("acme"), ctx("globex"));

        ingest(
            &rag,
            &a,
            "pay",
            "Invoices are paid within thirty days.",
            "en",
        )
        .await;
        ingest(
            &rag,
            &a,
            "ship",
            "Parcels ship from the warehouse daily.",
            "en",
        )
        .await;
        ingest(
            &rag,
            &b,
            "other",
            "Invoices of another tenant are paid too.",
            "en",
        )
        .await;
        ingest(
            &rag,
            &a,
            "de",
            "Die Rechnungen werden monatlich bezahlt.",
            "de",
        )
        .await;

        // Stemming: "paying invoice" matches "Invoices are paid"; any word may match.
        assert_eq!(
            keyword(&rag, &a, SearchRequest::new("paying invoice", 5)).await,
            ["pay"]
        );
        let either = keyword(&rag, &a, SearchRequest::new("invoice warehouse", 5)).await;
        assert_eq!(either.len(), 2, "{either:?}");
        // German configuration on the same rows.
        assert_eq!(
            keyword(&rag_de, &a, SearchRequest::new("Rechnung", 5)).await,
            ["de"]
        );
        // Tenants never see each other's rows.
        assert_eq!(
            keyword(&rag, &b, SearchRequest::new("invoices", 5)).await,
            ["other"]
        );
        assert_eq!(english.count(&a).await.unwrap(), 3);
        // Metadata filters apply.
        let mut filtered = SearchRequest::new("invoices Rechnungen", 5);
        filtered.filter = Some(Filter::Eq {
            key: "lang".into(),
            value: json!("de"),
        });
        // Both words match documents; the filter keeps only the German one.
        assert_eq!(keyword(&rag, &a, filtered).await, ["de"]);
        // Queries are words, never syntax: operators, quotes and stop words are harmless.
        for q in [
            "'); DROP TABLE x; --",
            "\"paid\" -invoices | & !",
            "the and of",
            "",
        ] {
            let hits = english.search(&a, q, 5, None).await;
            assert!(hits.is_ok(), "{q:?}: {hits:?}");
        }
        let quoted = english
            .search(&a, "\"paid\" -invoices", 5, None)
            .await
            .unwrap();
        assert_eq!(quoted[0].document_id, "pay", "a leading - is no negation");
        // Hybrid works on the shared index.
        let hybrid = rag
            .search(&a, &SearchRequest::new("when are invoices paid", 3))
            .await
            .unwrap();
        assert_eq!(hybrid[0].document_id, "pay");

        // Replacing a document replaces what the keyword search finds; deleting removes it.
        ingest(&rag, &a, "pay", "Bills are settled by bank transfer.", "en").await;
        assert!(
            keyword(&rag, &a, SearchRequest::new("invoices", 5))
                .await
                .is_empty()
        );
        assert_eq!(
            keyword(&rag, &a, SearchRequest::new("transfer", 5)).await,
            ["pay"]
        );
        rag.delete(&a, &["pay".to_owned()]).await.unwrap();
        assert!(
            keyword(&rag, &a, SearchRequest::new("transfer", 5))
                .await
                .is_empty()
        );

        sqlx::query(&format!("DROP TABLE {table}"))
            .execute(store.pool())
            .await
            .unwrap();
    }

    #[test]
    fn query_words_are_ored_and_operators_dropped() {
        assert_eq!(any_word("paying invoices"), "paying or invoices");
        assert_eq!(
            any_word("\"a\" -b OR c; DROP TABLE x"),
            "a or b or c or DROP or TABLE or x"
        );
        assert_eq!(any_word(" ,.;'\" "), "");
        assert_eq!(
            any_word("Rechnungen über 100€"),
            "Rechnungen or über or 100"
        );
    }
}
