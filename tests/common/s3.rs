//! A real S3-compatible server on 127.0.0.1 for the object-storage tests: `s3s-fs` (the
//! file-system backend of the `s3s` S3 service crate) behind SigV4 authentication, serving
//! buckets as directories of a temp dir, so a test can see and tamper with the stored
//! objects. It verifies `x-amz-checksum-sha256` on PUT and honours `If-None-Match: *`.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

pub const ACCESS_KEY: &str = "clerk-test-access";
pub const SECRET_KEY: &str = "clerk-test-secret-0123456789";

pub struct S3Server {
    pub port: u16,
    root: PathBuf,
    _dir: Option<tempfile::TempDir>,
    accept: tokio::task::JoinHandle<()>,
    connections: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl S3Server {
    /// A server with `bucket` created, on a free port.
    pub async fn start(bucket: &str) -> S3Server {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(bucket)).unwrap();
        let mut s = S3Server::serve(dir.path(), 0).await;
        s._dir = Some(dir);
        s
    }

    /// Serves `root` on `port` (0: any).
    pub async fn serve(root: &Path, port: u16) -> S3Server {
        let fs = s3s_fs::FileSystem::new(root).expect("s3s-fs root");
        let mut builder = s3s::service::S3ServiceBuilder::new(fs);
        builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>> =
            Default::default();
        let conns = connections.clone();
        let accept = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let service = service.clone();
                let task = tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
                conns.lock().unwrap().push(task.abort_handle());
            }
        });
        S3Server {
            port,
            root: root.to_owned(),
            _dir: None,
            accept,
            connections,
        }
    }

    /// Stops: the listener closes and every open connection is dropped.
    pub fn stop(&self) {
        self.accept.abort();
        for c in self.connections.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The file holding an object.
    pub fn object_path(&self, bucket: &str, key: &str) -> PathBuf {
        self.root.join(bucket).join(key)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}
