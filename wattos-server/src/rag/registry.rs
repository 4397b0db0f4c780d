//! The collection and document registry: what each tenant has ingested, in SQL.

use sqlx::Row;
use sqlx::any::AnyRow;
use wattos_core::{Result, TenantId};

use crate::appdb::{AppDb, db_err};

/// A collection row.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectionRow {
    /// Name (unique per tenant).
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Unix ms.
    pub created_at_ms: i64,
    /// Documents in it.
    pub document_count: i64,
    /// Chunks in it.
    pub chunk_count: i64,
}

/// A document row.
#[derive(Debug, Clone, PartialEq)]
pub struct DocumentRow {
    /// Document id (unique per collection).
    pub id: String,
    /// Title found by the loader.
    pub title: Option<String>,
    /// Location given at ingest.
    pub location: Option<String>,
    /// Format loaded as.
    pub format: String,
    /// Content hash of the indexed version.
    pub content_hash: String,
    /// Chunks indexed.
    pub chunks: i64,
    /// Source size in bytes.
    pub bytes: i64,
    /// Metadata JSON object.
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Unix ms of the first ingest.
    pub created_at_ms: i64,
    /// Unix ms of the last change.
    pub updated_at_ms: i64,
}

/// Collections and documents per tenant.
#[derive(Debug, Clone)]
pub struct Registry {
    db: AppDb,
    collections: String,
    documents: String,
}

fn document_from_row(row: &AnyRow) -> Result<DocumentRow> {
    let meta: String = row.try_get("metadata").map_err(db_err)?;
    Ok(DocumentRow {
        id: row.try_get("id").map_err(db_err)?,
        title: row.try_get("title").map_err(db_err)?,
        location: row.try_get("location").map_err(db_err)?,
        format: row.try_get("format").map_err(db_err)?,
        content_hash: row.try_get("content_hash").map_err(db_err)?,
        chunks: row.try_get("chunks").map_err(db_err)?,
        bytes: row.try_get("bytes").map_err(db_err)?,
        metadata: serde_json::from_str(&meta).unwrap_or_default(),
        created_at_ms: row.try_get("created_at").map_err(db_err)?,
        updated_at_ms: row.try_get("updated_at").map_err(db_err)?,
    })
}

const DOC_COLS: &str =
    "id, title, location, format, content_hash, chunks, bytes, metadata, created_at, updated_at";

impl Registry {
    /// A registry over `db`'s tables.
    pub fn new(db: AppDb) -> Self {
        Self {
            collections: db.table("rag_collections"),
            documents: db.table("rag_documents"),
            db,
        }
    }

    /// Creates a collection.
    ///
    /// # Errors
    /// `conflict` when it exists.
    pub async fn create_collection(
        &self,
        tenant: &TenantId,
        name: &str,
        description: Option<&str>,
        now_ms: i64,
    ) -> Result<()> {
        sqlx::query(&format!(
            "INSERT INTO {} (tenant_id, name, description, created_at) VALUES ($1, $2, $3, $4)",
            self.collections
        ))
        .bind(tenant.as_str())
        .bind(name)
        .bind(description.map(str::to_owned))
        .bind(now_ms)
        .execute(self.db.pool())
        .await
        .map_err(|e| match db_err(e) {
            err if err.kind() == wattos_core::ErrorKind::Conflict => {
                wattos_core::Error::conflict(format!("collection `{name}` already exists"))
                    .with_field("name")
            }
            err => err,
        })?;
        Ok(())
    }

    async fn counts(&self, tenant: &TenantId, name: &str) -> Result<(i64, i64)> {
        let row = sqlx::query(&format!(
            "SELECT COUNT(*) AS n, CAST(COALESCE(SUM(chunks), 0) AS BIGINT) AS c FROM {} WHERE tenant_id = $1 AND collection = $2",
            self.documents
        ))
        .bind(tenant.as_str())
        .bind(name)
        .fetch_one(self.db.pool())
        .await
        .map_err(db_err)?;
        let n: i64 = row.try_get("n").map_err(db_err)?;
        let c: i64 = row.try_get("c").map_err(db_err)?;
        Ok((n, c))
    }

    /// One collection with its counts; `None` when the tenant has none of that name.
    ///
    /// # Errors
    /// Database failures.
    pub async fn get_collection(
        &self,
        tenant: &TenantId,
        name: &str,
    ) -> Result<Option<CollectionRow>> {
        let row = sqlx::query(&format!(
            "SELECT name, description, created_at FROM {} WHERE tenant_id = $1 AND name = $2",
            self.collections
        ))
        .bind(tenant.as_str())
        .bind(name)
        .fetch_optional(self.db.pool())
        .await
        .map_err(db_err)?;
        let Some(row) = row else { return Ok(None) };
        let (document_count, chunk_count) = self.counts(tenant, name).await?;
        Ok(Some(CollectionRow {
            name: row.try_get("name").map_err(db_err)?,
            description: row.try_get("description").map_err(db_err)?,
            created_at_ms: row.try_get("created_at").map_err(db_err)?,
            document_count,
            chunk_count,
        }))
    }

    /// The tenant's collections, by name.
    ///
    /// # Errors
    /// Database failures.
    pub async fn list_collections(&self, tenant: &TenantId) -> Result<Vec<CollectionRow>> {
        let rows = sqlx::query(&format!(
            "SELECT name, description, created_at FROM {} WHERE tenant_id = $1 ORDER BY name",
            self.collections
        ))
        .bind(tenant.as_str())
        .fetch_all(self.db.pool())
        .await
        .map_err(db_err)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let name: String = row.try_get("name").map_err(db_err)?;
            let (document_count, chunk_count) = self.counts(tenant, &name).await?;
            out.push(CollectionRow {
                name,
                description: row.try_get("description").map_err(db_err)?,
                created_at_ms: row.try_get("created_at").map_err(db_err)?,
                document_count,
                chunk_count,
            });
        }
        Ok(out)
    }

    /// Deletes a collection and its document rows; whether it existed.
    ///
    /// # Errors
    /// Database failures.
    pub async fn delete_collection(&self, tenant: &TenantId, name: &str) -> Result<bool> {
        sqlx::query(&format!(
            "DELETE FROM {} WHERE tenant_id = $1 AND collection = $2",
            self.documents
        ))
        .bind(tenant.as_str())
        .bind(name)
        .execute(self.db.pool())
        .await
        .map_err(db_err)?;
        let done = sqlx::query(&format!(
            "DELETE FROM {} WHERE tenant_id = $1 AND name = $2",
            self.collections
        ))
        .bind(tenant.as_str())
        .bind(name)
        .execute(self.db.pool())
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    /// Inserts or replaces a document row.
    ///
    /// # Errors
    /// Database failures.
    pub async fn upsert_document(
        &self,
        tenant: &TenantId,
        collection: &str,
        doc: &DocumentRow,
    ) -> Result<()> {
        let meta = serde_json::Value::Object(doc.metadata.clone()).to_string();
        sqlx::query(&format!(
            "INSERT INTO {} (tenant_id, collection, {DOC_COLS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (tenant_id, collection, id) DO UPDATE SET
                title = excluded.title, location = excluded.location, format = excluded.format,
                content_hash = excluded.content_hash, chunks = excluded.chunks, bytes = excluded.bytes,
                metadata = excluded.metadata, updated_at = excluded.updated_at",
            self.documents
        ))
        .bind(tenant.as_str())
        .bind(collection)
        .bind(&doc.id)
        .bind(doc.title.clone())
        .bind(doc.location.clone())
        .bind(&doc.format)
        .bind(&doc.content_hash)
        .bind(doc.chunks)
        .bind(doc.bytes)
        .bind(meta)
        .bind(doc.created_at_ms)
        .bind(doc.updated_at_ms)
        .execute(self.db.pool())
        .await
        .map_err(db_err)?;
        Ok(())
    }

    /// Documents of `tenant` in all its collections.
    ///
    /// # Errors
    /// Database failures.
    pub async fn count_tenant_documents(&self, tenant: &TenantId) -> Result<u64> {
        let row = sqlx::query(&format!(
            "SELECT COUNT(*) AS n FROM {} WHERE tenant_id = $1",
            self.documents
        ))
        .bind(tenant.as_str())
        .fetch_one(self.db.pool())
        .await
        .map_err(db_err)?;
        let n: i64 = row.try_get("n").map_err(db_err)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Which of `ids` the collection already has.
    ///
    /// # Errors
    /// Database failures.
    pub async fn existing_ids(
        &self,
        tenant: &TenantId,
        collection: &str,
        ids: &[&str],
    ) -> Result<std::collections::HashSet<String>> {
        let mut found = std::collections::HashSet::new();
        // In chunks, well below either database's limit on bound parameters.
        for chunk in ids.chunks(500) {
            let placeholders: Vec<String> = (3..3 + chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT id FROM {} WHERE tenant_id = $1 AND collection = $2 AND id IN ({})",
                self.documents,
                placeholders.join(", ")
            );
            let mut q = sqlx::query(&sql).bind(tenant.as_str()).bind(collection);
            for id in chunk {
                q = q.bind(*id);
            }
            for row in q.fetch_all(self.db.pool()).await.map_err(db_err)? {
                found.insert(row.try_get::<String, _>("id").map_err(db_err)?);
            }
        }
        Ok(found)
    }

    /// One document row.
    ///
    /// # Errors
    /// Database failures.
    pub async fn get_document(
        &self,
        tenant: &TenantId,
        collection: &str,
        id: &str,
    ) -> Result<Option<DocumentRow>> {
        let row = sqlx::query(&format!(
            "SELECT {DOC_COLS} FROM {} WHERE tenant_id = $1 AND collection = $2 AND id = $3",
            self.documents
        ))
        .bind(tenant.as_str())
        .bind(collection)
        .bind(id)
        .fetch_optional(self.db.pool())
        .await
        .map_err(db_err)?;
        row.as_ref().map(document_from_row).transpose()
    }

    /// Up to `limit` documents with ids after `after`, by id.
    ///
    /// # Errors
    /// Database failures.
    pub async fn list_documents(
        &self,
        tenant: &TenantId,
        collection: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<DocumentRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {DOC_COLS} FROM {} WHERE tenant_id = $1 AND collection = $2 AND id > $3
             ORDER BY id LIMIT $4",
            self.documents
        ))
        .bind(tenant.as_str())
        .bind(collection)
        .bind(after.unwrap_or(""))
        .bind(limit)
        .fetch_all(self.db.pool())
        .await
        .map_err(db_err)?;
        rows.iter().map(document_from_row).collect()
    }

    /// Deletes a document row; whether it existed.
    ///
    /// # Errors
    /// Database failures.
    pub async fn delete_document(
        &self,
        tenant: &TenantId,
        collection: &str,
        id: &str,
    ) -> Result<bool> {
        let done = sqlx::query(&format!(
            "DELETE FROM {} WHERE tenant_id = $1 AND collection = $2 AND id = $3",
            self.documents
        ))
        .bind(tenant.as_str())
        .bind(collection)
        .bind(id)
        .execute(self.db.pool())
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }
}
