//! Object store access: an image is stored at `{app_id}/{key}`, so every lookup is scoped
//! by app.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};

/// Where images live.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    inner: Arc<dyn ObjectStore>,
}

/// A stored image being read: its size and its bytes.
pub(crate) struct Reading {
    pub(crate) size: u64,
    pub(crate) body: BoxStream<'static, object_store::Result<Bytes>>,
}

impl Store {
    /// A store in the local directory `dir`, created when missing.
    pub(crate) async fn local(dir: &Path) -> anyhow::Result<Self> {
        tokio::fs::create_dir_all(dir)
            .await
            .with_context(|| format!("creating media directory {}", dir.display()))?;
        let fs = LocalFileSystem::new_with_prefix(dir)
            .with_context(|| format!("opening media directory {}", dir.display()))?;
        Ok(Store {
            inner: Arc::new(fs),
        })
    }

    fn path(app_id: &str, key: &str) -> ObjectPath {
        ObjectPath::from_iter([app_id, key])
    }

    /// Stores `bytes` as `key` of `app_id`.
    pub(crate) async fn put(
        &self,
        app_id: &str,
        key: &str,
        bytes: Bytes,
    ) -> object_store::Result<()> {
        self.inner
            .put(&Self::path(app_id, key), PutPayload::from_bytes(bytes))
            .await?;
        Ok(())
    }

    /// Opens `key` of `app_id`; `None` when there is no such object.
    pub(crate) async fn get(
        &self,
        app_id: &str,
        key: &str,
    ) -> object_store::Result<Option<Reading>> {
        match self.inner.get(&Self::path(app_id, key)).await {
            Ok(found) => Ok(Some(Reading {
                size: found.meta.size,
                body: found.into_stream(),
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
