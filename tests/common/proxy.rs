//! A TCP proxy in front of a test server, which a test can cut: the listener closes and
//! every connection through it is dropped, so the server behind it becomes unreachable
//! (connection refused) in the middle of a run, as when a seller center goes down.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub struct Proxy {
    port: u16,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and forwards every connection to `target`.
    pub async fn start(target: u16) -> Proxy {
        Proxy::start_on(0, target).await
    }

    /// Listens on `port` of 127.0.0.1 (0: a free one; a cut proxy's port to restore it) and
    /// forwards every connection to `target`.
    pub async fn start_on(port: u16, target: u16) -> Proxy {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let conns = tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", target)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                conns.lock().unwrap().push(task);
            }
        });
        tasks.lock().unwrap().push(accept);
        Proxy { port, tasks }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// After `delay`, closes the listener and drops every connection.
    pub fn cut_after(&self, delay: Duration) -> JoinHandle<()> {
        let tasks = self.tasks.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            for t in tasks.lock().unwrap().drain(..) {
                t.abort();
            }
        })
    }
}
