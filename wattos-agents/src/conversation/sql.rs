//! SQL conversation storage: SQLite (embedded) and Postgres (shared) with the same statements
//! (`$n` placeholders, numbered in order of first use, which both engines accept).

#[cfg(feature = "sqlite")]
use std::path::Path;

use async_trait::async_trait;
use sqlx::Row as _;
use wattos_core::llm::Message;
use wattos_core::{Error, RequestContext, Result};

use super::{
    Conversation, ConversationStore, ListOptions, NewConversation, NewMessage, StoredMessage,
    check_owner, check_title, missing, now_ms,
};
use crate::checkpoint::sql::check_ident;

#[derive(Debug, Clone)]
enum Pool {
    #[cfg(feature = "sqlite")]
    Sqlite(sqlx::SqlitePool),
    #[cfg(feature = "postgres")]
    Postgres(sqlx::PgPool),
}

/// Runs `$body` with `$p` bound to whichever pool this store has (the body is compiled once per
/// engine).
macro_rules! on_pool {
    ($self:ident, $p:ident => $body:expr) => {
        match &$self.pool {
            #[cfg(feature = "sqlite")]
            Pool::Sqlite($p) => $body,
            #[cfg(feature = "postgres")]
            Pool::Postgres($p) => $body,
        }
    };
}

/// Conversations in SQLite or Postgres. Tables: `<prefix>conversations` and
/// `<prefix>conversation_messages` (default prefix `wattos_`).
#[derive(Debug, Clone)]
pub struct SqlConversationStore {
    pool: Pool,
    p: String,
}

fn db_err(op: &'static str) -> impl Fn(sqlx::Error) -> Error {
    move |e| Error::unavailable(format!("conversation store {op} failed: {e}")).with_source(e)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

const CONV_COLS: &str = "id, tenant, owner, title, model, created_ms, updated_ms, message_count, \
                         input_tokens, output_tokens, cost_usd, metadata";

macro_rules! conversation_of {
    ($r:expr) => {{
        let r = $r;
        let metadata: String = r.try_get(11).map_err(db_err("read"))?;
        Conversation {
            id: r.try_get(0).map_err(db_err("read"))?,
            tenant: r.try_get(1).map_err(db_err("read"))?,
            owner: r.try_get(2).map_err(db_err("read"))?,
            title: r.try_get(3).map_err(db_err("read"))?,
            model: r.try_get(4).map_err(db_err("read"))?,
            created_ms: r.try_get(5).map_err(db_err("read"))?,
            updated_ms: r.try_get(6).map_err(db_err("read"))?,
            message_count: to_u64(r.try_get(7).map_err(db_err("read"))?),
            input_tokens: to_u64(r.try_get(8).map_err(db_err("read"))?),
            output_tokens: to_u64(r.try_get(9).map_err(db_err("read"))?),
            cost_usd: r.try_get(10).map_err(db_err("read"))?,
            metadata: serde_json::from_str(&metadata)
                .map_err(|e| Error::internal(format!("corrupt conversation metadata: {e}")))?,
        }
    }};
}

fn schema(p: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {p}conversations (
            tenant TEXT NOT NULL,
            id TEXT NOT NULL,
            owner TEXT NOT NULL,
            title TEXT NOT NULL,
            model TEXT,
            created_ms BIGINT NOT NULL,
            updated_ms BIGINT NOT NULL,
            message_count BIGINT NOT NULL DEFAULT 0,
            input_tokens BIGINT NOT NULL DEFAULT 0,
            output_tokens BIGINT NOT NULL DEFAULT 0,
            cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
            metadata TEXT NOT NULL DEFAULT '{{}}',
            PRIMARY KEY (tenant, id)
        );
        CREATE INDEX IF NOT EXISTS {p}conversations_by_owner
            ON {p}conversations (tenant, owner, updated_ms);
        CREATE TABLE IF NOT EXISTS {p}conversation_messages (
            tenant TEXT NOT NULL,
            conversation TEXT NOT NULL,
            seq BIGINT NOT NULL,
            message TEXT NOT NULL,
            model TEXT,
            input_tokens BIGINT NOT NULL DEFAULT 0,
            output_tokens BIGINT NOT NULL DEFAULT 0,
            cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
            request_id TEXT,
            created_ms BIGINT NOT NULL,
            PRIMARY KEY (tenant, conversation, seq)
        );"
    )
}

impl SqlConversationStore {
    /// Opens (creating if needed) a SQLite file and its tables.
    ///
    /// # Errors
    /// Invalid prefix; the file cannot be opened or migrated (`Unavailable`).
    #[cfg(feature = "sqlite")]
    pub async fn open_sqlite(path: impl AsRef<Path>, prefix: &str) -> Result<Self> {
        use std::str::FromStr;
        check_ident("table_prefix", prefix)?;
        let opts = sqlx::sqlite::SqliteConnectOptions::from_str("sqlite://")
            .map_err(db_err("open"))?
            .filename(path.as_ref())
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
            .busy_timeout(std::time::Duration::from_secs(5));
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await
            .map_err(db_err("open"))?;
        sqlx::raw_sql(&schema(prefix))
            .execute(&pool)
            .await
            .map_err(db_err("migrate"))?;
        Ok(Self {
            pool: Pool::Sqlite(pool),
            p: prefix.to_owned(),
        })
    }

    /// Uses a Postgres pool and creates the tables.
    ///
    /// # Errors
    /// Invalid prefix; migration failures (`Unavailable`).
    #[cfg(feature = "postgres")]
    pub async fn postgres(pool: sqlx::PgPool, prefix: &str) -> Result<Self> {
        check_ident("table_prefix", prefix)?;
        // Concurrent first starts race on CREATE TABLE IF NOT EXISTS; serialise them.
        let mut tx = pool.begin().await.map_err(db_err("migrate"))?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(format!("{prefix}conversations"))
            .execute(&mut *tx)
            .await
            .map_err(db_err("migrate"))?;
        sqlx::raw_sql(&schema(prefix))
            .execute(&mut *tx)
            .await
            .map_err(db_err("migrate"))?;
        tx.commit().await.map_err(db_err("migrate"))?;
        Ok(Self {
            pool: Pool::Postgres(pool),
            p: prefix.to_owned(),
        })
    }

    /// Connects to Postgres at `url` (pool of 8) and creates the tables.
    ///
    /// # Errors
    /// As [`SqlConversationStore::postgres`]; connection failures.
    #[cfg(feature = "postgres")]
    pub async fn connect_postgres(url: &str, prefix: &str) -> Result<Self> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(8)
            .connect(url)
            .await
            .map_err(db_err("connect"))?;
        Self::postgres(pool, prefix).await
    }

    /// Fetches the header and checks access.
    async fn checked(&self, ctx: &RequestContext, id: &str) -> Result<Conversation> {
        let p = &self.p;
        let sql = format!("SELECT {CONV_COLS} FROM {p}conversations WHERE tenant = $1 AND id = $2");
        let conv = on_pool!(self, pool => {
            let row = sqlx::query(&sql)
                .bind(ctx.tenant().as_str())
                .bind(id)
                .fetch_optional(pool)
                .await
                .map_err(db_err("get"))?;
            match row {
                Some(r) => Some(conversation_of!(&r)),
                None => None,
            }
        });
        let conv = conv.ok_or_else(|| missing(id))?;
        check_owner(ctx, &conv.owner, id)?;
        Ok(conv)
    }
}

#[async_trait]
impl ConversationStore for SqlConversationStore {
    async fn create(&self, ctx: &RequestContext, new: NewConversation) -> Result<Conversation> {
        let title = check_title(new.title.as_deref().unwrap_or("New conversation"))?;
        let now = now_ms();
        let conv = Conversation {
            id: uuid::Uuid::now_v7().to_string(),
            tenant: ctx.tenant().as_str().to_owned(),
            owner: ctx.principal().subject.clone(),
            title,
            model: new.model,
            created_ms: now,
            updated_ms: now,
            message_count: 0,
            input_tokens: 0,
            output_tokens: 0,
            cost_usd: 0.0,
            metadata: new.metadata,
        };
        let metadata = serde_json::Value::Object(conv.metadata.clone()).to_string();
        let p = &self.p;
        let sql = format!(
            "INSERT INTO {p}conversations (tenant, id, owner, title, model, created_ms, updated_ms, metadata) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        );
        on_pool!(self, pool => {
            sqlx::query(&sql)
                .bind(&conv.tenant)
                .bind(&conv.id)
                .bind(&conv.owner)
                .bind(&conv.title)
                .bind(&conv.model)
                .bind(now)
                .bind(now)
                .bind(&metadata)
                .execute(pool)
                .await
                .map_err(db_err("create"))?;
        });
        Ok(conv)
    }

    async fn get(&self, ctx: &RequestContext, id: &str) -> Result<Conversation> {
        self.checked(ctx, id).await
    }

    async fn list(&self, ctx: &RequestContext, opts: ListOptions) -> Result<Vec<Conversation>> {
        let limit = i64::from(opts.limit.clamp(1, 200));
        let before = opts.before_ms.unwrap_or(i64::MAX);
        let p = &self.p;
        let sql = format!(
            "SELECT {CONV_COLS} FROM {p}conversations \
             WHERE tenant = $1 AND owner = $2 AND updated_ms < $3 \
             ORDER BY updated_ms DESC, id DESC LIMIT $4"
        );
        let out = on_pool!(self, pool => {
            let rows = sqlx::query(&sql)
                .bind(ctx.tenant().as_str())
                .bind(&ctx.principal().subject)
                .bind(before)
                .bind(limit)
                .fetch_all(pool)
                .await
                .map_err(db_err("list"))?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(conversation_of!(r));
            }
            out
        });
        Ok(out)
    }

    async fn rename(&self, ctx: &RequestContext, id: &str, title: &str) -> Result<Conversation> {
        let title = check_title(title)?;
        let mut conv = self.checked(ctx, id).await?;
        let now = now_ms();
        let p = &self.p;
        let sql = format!(
            "UPDATE {p}conversations SET title = $1, updated_ms = $2 WHERE tenant = $3 AND id = $4"
        );
        on_pool!(self, pool => {
            sqlx::query(&sql)
                .bind(&title)
                .bind(now)
                .bind(ctx.tenant().as_str())
                .bind(id)
                .execute(pool)
                .await
                .map_err(db_err("rename"))?;
        });
        conv.title = title;
        conv.updated_ms = now;
        Ok(conv)
    }

    async fn delete(&self, ctx: &RequestContext, id: &str) -> Result<()> {
        self.checked(ctx, id).await?;
        let p = &self.p;
        let del_msgs =
            format!("DELETE FROM {p}conversation_messages WHERE tenant = $1 AND conversation = $2");
        let del_conv = format!("DELETE FROM {p}conversations WHERE tenant = $1 AND id = $2");
        on_pool!(self, pool => {
            let mut tx = pool.begin().await.map_err(db_err("delete"))?;
            for sql in [&del_msgs, &del_conv] {
                sqlx::query(sql)
                    .bind(ctx.tenant().as_str())
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err("delete"))?;
            }
            tx.commit().await.map_err(db_err("delete"))?;
        });
        Ok(())
    }

    async fn append(
        &self,
        ctx: &RequestContext,
        id: &str,
        messages: Vec<NewMessage>,
    ) -> Result<Conversation> {
        if messages.is_empty() {
            return Err(Error::invalid_field("messages", "nothing to append"));
        }
        self.checked(ctx, id).await?;
        let n = to_i64(messages.len() as u64);
        let input: u64 = messages
            .iter()
            .filter_map(|m| m.usage)
            .map(|u| u.input_tokens)
            .sum();
        let output: u64 = messages
            .iter()
            .filter_map(|m| m.usage)
            .map(|u| u.output_tokens)
            .sum();
        let cost: f64 = messages.iter().map(|m| m.cost_usd).sum();
        let model = messages.iter().rev().find_map(|m| m.model.clone());
        let encoded = messages
            .iter()
            .map(|m| {
                serde_json::to_string(&m.message)
                    .map_err(|e| Error::invalid_input(format!("cannot encode message: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let now = now_ms();
        let p = &self.p;
        // The UPDATE takes the row lock (Postgres) / write lock (SQLite) first, so concurrent
        // appends get consecutive sequence numbers.
        let upd = format!(
            "UPDATE {p}conversations SET message_count = message_count + $1, \
             input_tokens = input_tokens + $2, output_tokens = output_tokens + $3, \
             cost_usd = cost_usd + $4, model = COALESCE($5, model), updated_ms = $6 \
             WHERE tenant = $7 AND id = $8 RETURNING {CONV_COLS}"
        );
        let ins = format!(
            "INSERT INTO {p}conversation_messages (tenant, conversation, seq, message, model, \
             input_tokens, output_tokens, cost_usd, request_id, created_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        );
        let conv = on_pool!(self, pool => {
            let mut tx = pool.begin().await.map_err(db_err("append"))?;
            let row = sqlx::query(&upd)
                .bind(n)
                .bind(to_i64(input))
                .bind(to_i64(output))
                .bind(cost)
                .bind(&model)
                .bind(now)
                .bind(ctx.tenant().as_str())
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err("append"))?
                .ok_or_else(|| missing(id))?;
            let conv = conversation_of!(&row);
            let first = to_i64(conv.message_count) - n;
            for (i, (m, text)) in messages.iter().zip(&encoded).enumerate() {
                let u = m.usage.unwrap_or_default();
                sqlx::query(&ins)
                    .bind(ctx.tenant().as_str())
                    .bind(id)
                    .bind(first + to_i64(i as u64))
                    .bind(text)
                    .bind(&m.model)
                    .bind(to_i64(u.input_tokens))
                    .bind(to_i64(u.output_tokens))
                    .bind(m.cost_usd)
                    .bind(&m.request_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err("append"))?;
            }
            tx.commit().await.map_err(db_err("append"))?;
            conv
        });
        Ok(conv)
    }

    async fn messages(&self, ctx: &RequestContext, id: &str) -> Result<Vec<StoredMessage>> {
        self.checked(ctx, id).await?;
        let p = &self.p;
        let sql = format!(
            "SELECT seq, message, model, input_tokens, output_tokens, cost_usd, request_id, created_ms \
             FROM {p}conversation_messages WHERE tenant = $1 AND conversation = $2 ORDER BY seq"
        );
        let out = on_pool!(self, pool => {
            let rows = sqlx::query(&sql)
                .bind(ctx.tenant().as_str())
                .bind(id)
                .fetch_all(pool)
                .await
                .map_err(db_err("messages"))?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                let text: String = r.try_get(1).map_err(db_err("read"))?;
                let message: Message = serde_json::from_str(&text)
                    .map_err(|e| Error::internal(format!("corrupt stored message: {e}")))?;
                out.push(StoredMessage {
                    seq: to_u64(r.try_get(0).map_err(db_err("read"))?),
                    message,
                    model: r.try_get(2).map_err(db_err("read"))?,
                    input_tokens: to_u64(r.try_get(3).map_err(db_err("read"))?),
                    output_tokens: to_u64(r.try_get(4).map_err(db_err("read"))?),
                    cost_usd: r.try_get(5).map_err(db_err("read"))?,
                    request_id: r.try_get(6).map_err(db_err("read"))?,
                    created_ms: r.try_get(7).map_err(db_err("read"))?,
                });
            }
            out
        });
        Ok(out)
    }

    async fn purge_before(&self, ctx: &RequestContext, cutoff_ms: i64) -> Result<u64> {
        if ctx.principal().kind != wattos_core::PrincipalKind::System {
            return Err(Error::forbidden(
                "only a system principal may purge conversations",
            ));
        }
        let p = &self.p;
        let del_msgs = format!(
            "DELETE FROM {p}conversation_messages WHERE tenant = $1 AND conversation IN \
             (SELECT id FROM {p}conversations WHERE tenant = $1 AND updated_ms < $2)"
        );
        let del_conv =
            format!("DELETE FROM {p}conversations WHERE tenant = $1 AND updated_ms < $2");
        let n = on_pool!(self, pool => {
            let mut tx = pool.begin().await.map_err(db_err("purge"))?;
            sqlx::query(&del_msgs)
                .bind(ctx.tenant().as_str())
                .bind(cutoff_ms)
                .execute(&mut *tx)
                .await
                .map_err(db_err("purge"))?;
            let n = sqlx::query(&del_conv)
                .bind(ctx.tenant().as_str())
                .bind(cutoff_ms)
                .execute(&mut *tx)
                .await
                .map_err(db_err("purge"))?
                .rows_affected();
            tx.commit().await.map_err(db_err("purge"))?;
            n
        });
        Ok(n)
    }
}
