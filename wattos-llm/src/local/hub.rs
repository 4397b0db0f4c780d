//! Model locations: a local path, or a repository on a Hugging Face Hub (feature `hub`).
//!
//! [`ModelRef::parse`] reads what users write in configuration:
//!
//! * an existing file or folder: used as it is;
//! * `hf:owner/name[@revision][/path/in/repo]`, or `owner/name[@revision][/path]` when no such local
//!   path exists: a Hub repository (revision defaults to `main`).
//!
//! [`HubCache`] finds Hub files in the standard local cache layout that `huggingface-cli download`
//! and the Python libraries fill (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
//! `~/.cache/huggingface/hub`: `models--owner--name/refs/<revision>` names a commit,
//! `snapshots/<commit>/<file>` holds the file), so a model downloaded once by any tool loads
//! offline. A file not in the cache is downloaded from the Hub at `HF_ENDPOINT` (with `HF_TOKEN` as
//! bearer token when set) into the same layout; with no endpoint configured, nothing is ever
//! fetched and the error says what to set.
//!
//! ```no_run
//! use wattos_llm::local::{HubCache, MiniLmEmbedder, ModelRef, MINILM_FILES};
//!
//! # async fn run() -> Result<(), wattos_llm::local::LoadError> {
//! let model = ModelRef::parse("sentence-transformers/all-MiniLM-L6-v2")?;
//! let folder = HubCache::from_env().folder(&model, &MINILM_FILES).await?;
//! let embedder = MiniLmEmbedder::load(&folder)?;
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};

use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use super::error::LoadError;

/// Where a local model's files come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelRef {
    /// A file or folder on this machine.
    Local(PathBuf),
    /// A Hub repository.
    Hub {
        /// `owner/name`.
        repo: String,
        /// Branch, tag or commit (`main` unless given).
        revision: String,
        /// A file in the repository (for single-file models such as a GGUF), if given.
        file: Option<String>,
    },
}

fn invalid(spec: &str, reason: &str) -> LoadError {
    LoadError::corrupt(
        Path::new(spec),
        format!("not a model path or Hub id: {reason}"),
    )
}

/// A repository or file name part: letters, digits, `-`, `_`, `.`; not `.` or `..`.
fn plain_segment(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl ModelRef {
    /// Reads a model location (see the module docs).
    ///
    /// # Errors
    /// [`LoadError::CorruptFile`] naming the text when it is neither an existing path nor a
    /// well-formed Hub id (`owner/name`, plain segments, no `..`).
    pub fn parse(spec: &str) -> Result<Self, LoadError> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Err(invalid(spec, "empty"));
        }
        let forced = spec.strip_prefix("hf:");
        if forced.is_none() && Path::new(spec).exists() {
            return Ok(Self::Local(PathBuf::from(spec)));
        }
        let id = forced.unwrap_or(spec);
        let mut parts = id.splitn(3, '/');
        let (Some(owner), Some(name_rev)) = (parts.next(), parts.next()) else {
            return Err(if forced.is_some() {
                invalid(spec, "expected hf:owner/name")
            } else {
                LoadError::MissingFile {
                    path: PathBuf::from(spec),
                }
            });
        };
        let (name, revision) = match name_rev.split_once('@') {
            Some((n, r)) => (n, r),
            None => (name_rev, "main"),
        };
        let file = parts.next().map(str::to_owned);
        let looks_like_id = plain_segment(owner)
            && plain_segment(name)
            && plain_segment(revision)
            && file
                .as_deref()
                .is_none_or(|f| f.split('/').all(plain_segment));
        if !looks_like_id {
            return Err(if forced.is_some() || spec.starts_with(['/', '.', '~']) {
                invalid(spec, "expected a path, or owner/name[@revision][/file]")
            } else {
                LoadError::MissingFile {
                    path: PathBuf::from(spec),
                }
            });
        }
        Ok(Self::Hub {
            repo: format!("{owner}/{name}"),
            revision: revision.to_owned(),
            file,
        })
    }
}

impl std::fmt::Display for ModelRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local(p) => write!(f, "{}", p.display()),
            Self::Hub {
                repo,
                revision,
                file,
            } => {
                write!(f, "hf:{repo}@{revision}")?;
                if let Some(file) = file {
                    write!(f, "/{file}")?;
                }
                Ok(())
            }
        }
    }
}

/// The local Hub cache, and where to download missing files from (see the module docs).
#[derive(Debug, Clone)]
pub struct HubCache {
    dir: PathBuf,
    endpoint: Option<String>,
    token: Option<String>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl HubCache {
    /// The cache at `dir`, offline (nothing is downloaded until [`Self::with_endpoint`]).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            endpoint: None,
            token: None,
        }
    }

    /// The standard cache (`HF_HUB_CACHE`, `HF_HOME/hub`, `~/.cache/huggingface/hub`), the
    /// endpoint `HF_ENDPOINT` and the token `HF_TOKEN`, from the environment.
    pub fn from_env() -> Self {
        let dir = env("HF_HUB_CACHE")
            .map(PathBuf::from)
            .or_else(|| env("HF_HOME").map(|h| PathBuf::from(h).join("hub")))
            .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface/hub")))
            .unwrap_or_else(|| PathBuf::from(".cache/huggingface/hub"));
        let mut cache = Self::new(dir);
        cache.endpoint = env("HF_ENDPOINT");
        cache.token = env("HF_TOKEN");
        cache
    }

    /// Downloads missing files from the Hub at `url` (scheme and host, e.g. a mirror).
    pub fn with_endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// Sends `token` as bearer token with downloads (gated or private repositories).
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The cache folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn repo_dir(&self, repo: &str) -> PathBuf {
        self.dir
            .join(format!("models--{}", repo.replace('/', "--")))
    }

    /// The commit a revision points to in the cache (a full commit hash is its own commit).
    fn cached_commit(&self, repo: &str, revision: &str) -> Option<String> {
        if revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Some(revision.to_owned());
        }
        let text = std::fs::read_to_string(self.repo_dir(repo).join("refs").join(revision)).ok()?;
        let commit = text.trim();
        plain_segment(commit).then(|| commit.to_owned())
    }

    /// The local path of `model`'s single file: the path itself, or the Hub file the reference
    /// names (`owner/name[@revision]/file`), from the cache or downloaded.
    ///
    /// # Errors
    /// [`LoadError::MissingFile`] when the file is neither local nor cached and the Hub does not
    /// have it (404); [`LoadError::CorruptFile`] when the reference names no file, no endpoint is
    /// configured, or the download fails.
    pub async fn file(&self, model: &ModelRef) -> Result<PathBuf, LoadError> {
        match model {
            ModelRef::Local(p) => Ok(p.clone()),
            ModelRef::Hub {
                repo,
                revision,
                file: Some(file),
            } => self.hub_file(repo, revision, file).await,
            ModelRef::Hub { file: None, .. } => Err(invalid(
                &model.to_string(),
                "name the file in the repository: owner/name[@revision]/file",
            )),
        }
    }

    /// The local folder holding `files` of `model`: the path itself, or the Hub snapshot folder
    /// (a path inside the repository names a sub-folder), every file cached or downloaded.
    ///
    /// # Errors
    /// As for [`Self::file`], for the first file that cannot be had.
    pub async fn folder(&self, model: &ModelRef, files: &[&str]) -> Result<PathBuf, LoadError> {
        let (repo, revision, sub) = match model {
            ModelRef::Local(p) => return Ok(p.clone()),
            ModelRef::Hub {
                repo,
                revision,
                file,
            } => (repo, revision, file),
        };
        let mut folder = None;
        for f in files {
            let in_repo = match sub {
                Some(sub) => format!("{}/{f}", sub.trim_end_matches('/')),
                None => (*f).to_owned(),
            };
            let path = self.hub_file(repo, revision, &in_repo).await?;
            folder = path.parent().map(Path::to_path_buf);
        }
        folder.ok_or_else(|| invalid(&model.to_string(), "no files requested"))
    }

    async fn hub_file(&self, repo: &str, revision: &str, file: &str) -> Result<PathBuf, LoadError> {
        if let Some(commit) = self.cached_commit(repo, revision) {
            let path = self
                .repo_dir(repo)
                .join("snapshots")
                .join(commit)
                .join(file);
            if path.is_file() {
                return Ok(path);
            }
        }
        let display = PathBuf::from(format!("hf:{repo}@{revision}/{file}"));
        let Some(endpoint) = &self.endpoint else {
            return Err(LoadError::CorruptFile {
                path: display,
                reason: format!(
                    "not in the Hub cache at {} and no HF_ENDPOINT to download it from \
                     (set HF_ENDPOINT, or download it there with huggingface-cli)",
                    self.dir.display()
                ),
            });
        };
        self.download(endpoint, repo, revision, file, display).await
    }

    /// `GET {endpoint}/{repo}/resolve/{revision}/{file}` into `snapshots/<commit>/<file>` (the
    /// commit from the `X-Repo-Commit` header, else the revision), recording the revision's
    /// commit under `refs/`. Written to a temporary file and renamed: a failed download leaves
    /// nothing behind.
    async fn download(
        &self,
        endpoint: &str,
        repo: &str,
        revision: &str,
        file: &str,
        display: PathBuf,
    ) -> Result<PathBuf, LoadError> {
        let fail = |reason: String| LoadError::CorruptFile {
            path: display.clone(),
            reason,
        };
        let url = format!(
            "{}/{repo}/resolve/{revision}/{file}",
            endpoint.trim_end_matches('/')
        );
        let client = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(15))
            .build()
            .map_err(|e| fail(format!("http client: {e}")))?;
        let mut request = client.get(&url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| fail(format!("download from {url} failed: {e}")))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(LoadError::MissingFile { path: display });
        }
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(fail(format!(
                "the Hub refused access ({status}); set HF_TOKEN for gated or private repositories"
            )));
        }
        if !status.is_success() {
            return Err(fail(format!("download from {url} answered {status}")));
        }
        let commit = response
            .headers()
            .get("x-repo-commit")
            .and_then(|v| v.to_str().ok())
            .filter(|c| plain_segment(c))
            .unwrap_or(revision)
            .to_owned();
        let repo_dir = self.repo_dir(repo);
        let target = repo_dir.join("snapshots").join(&commit).join(file);
        let parent = target
            .parent()
            .ok_or_else(|| fail("no parent folder".into()))?
            .to_path_buf();
        tokio::fs::create_dir_all(&parent)
            .await
            .map_err(|e| fail(format!("create {}: {e}", parent.display())))?;
        let partial = parent.join(format!(
            ".{}.part-{}",
            file.replace('/', "_"),
            uuid::Uuid::new_v4()
        ));
        let written = async {
            let mut out = tokio::fs::File::create(&partial).await?;
            let mut body = response.bytes_stream();
            while let Some(chunk) = body.next().await {
                out.write_all(&chunk.map_err(std::io::Error::other)?)
                    .await?;
            }
            out.flush().await?;
            out.sync_all().await?;
            tokio::fs::rename(&partial, &target).await
        }
        .await;
        if let Err(e) = written {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(fail(format!("download from {url} failed: {e}")));
        }
        let refs = repo_dir.join("refs");
        if commit != revision && tokio::fs::create_dir_all(&refs).await.is_ok() {
            let _ = tokio::fs::write(refs.join(revision), &commit).await;
        }
        tracing::info!(
            repo,
            revision,
            file,
            commit,
            "downloaded a model file from the Hub"
        );
        Ok(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_paths_and_hub_ids() {
        let here = env!("CARGO_MANIFEST_DIR");
        assert_eq!(ModelRef::parse(here).unwrap(), ModelRef::Local(here.into()));
        assert_eq!(
            ModelRef::parse("sentence-transformers/all-MiniLM-L6-v2").unwrap(),
            ModelRef::Hub {
                repo: "sentence-transformers/all-MiniLM-L6-v2".into(),
                revision: "main".into(),
                file: None
            }
        );
        assert_eq!(
            ModelRef::parse("hf:owner/model-GGUF@v1.0/sub/model.Q8_0.gguf").unwrap(),
            ModelRef::Hub {
                repo: "owner/model-GGUF".into(),
                revision: "v1.0".into(),
                file: Some("sub/model.Q8_0.gguf".into())
            }
        );
        // A relative path that does not exist and is no id is a missing file, not a Hub id.
        assert!(matches!(
            ModelRef::parse("models"),
            Err(LoadError::MissingFile { .. })
        ));
        for bad in [
            "hf:",
            "hf:owner",
            "hf:../x",
            "hf:o/n/../../etc/passwd",
            "hf:o/n@",
            "./x/y",
        ] {
            assert!(ModelRef::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            ModelRef::parse("hf:o/n@v2/f.gguf").unwrap().to_string(),
            "hf:o/n@v2/f.gguf"
        );
    }

    #[tokio::test]
    async fn offline_without_endpoint_names_what_to_set() {
        let dir = tempfile::tempdir().unwrap();
        let cache = HubCache::new(dir.path());
        let model = ModelRef::parse("hf:o/n").unwrap();
        let err = cache.file(&model).await.unwrap_err();
        assert!(err.to_string().contains("name the file"), "{err}");
        let model = ModelRef::parse("hf:o/n/model.gguf").unwrap();
        let err = cache.file(&model).await.unwrap_err();
        assert!(err.to_string().contains("HF_ENDPOINT"), "{err}");
    }
}
