//! The bridge from blocking PKCS#11 calls to signerd's async gRPC admin API.
//!
//! The library owns one I/O thread running a current-thread tokio runtime. A host thread that
//! calls into the shim spawns its RPC onto that runtime and waits for the answer on a plain
//! channel: it never calls `block_on` itself, so nothing deadlocks when many host threads call
//! at once, when the host runs its own tokio runtime, or when the host calls from inside one.
//! `C_Finalize` stops the runtime and joins the thread, so after it no shim code runs (the
//! notary CLI `dlclose`s the library after every operation).
//!
//! The calls themselves are [`signerd_client`]'s: it reconnects after a connection failure
//! and retries within the call's deadline (calls that change the token only when the request
//! cannot have reached signerd); [`Error::from_client`] says what its answer means here.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use signerd_client::{Call, Client, Options};

use crate::config::Config;
use crate::error::Error;

// === impl Bridge ===

/// The I/O thread, its runtime and the connection to signerd.
pub struct Bridge {
    handle: tokio::runtime::Handle,
    stop: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    client: Client,
    timeout: Duration,
}

impl Bridge {
    /// Starts the I/O thread. Nothing connects yet: the first call does.
    pub fn start(config: &Config) -> Result<Bridge, Error> {
        let (handle_tx, handle_rx) = std::sync::mpsc::sync_channel(1);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("signerd-shim-io".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = handle_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = handle_tx.send(Ok(runtime.handle().clone()));
                // Runs every spawned RPC until C_Finalize; then the runtime drops, which
                // cancels what is left and closes the connection.
                runtime.block_on(async {
                    let _ = stop_rx.await;
                });
            })
            .map_err(|e| Error::General(format!("cannot start the I/O thread: {e}")))?;
        let handle = match handle_rx.recv() {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(Error::General(format!(
                    "cannot start the async runtime: {e}"
                )));
            }
            Err(_) => {
                let _ = thread.join();
                return Err(Error::General("the I/O thread died at start".into()));
            }
        };
        // A relative socket path means relative to where the host started (Client::new).
        let client = Client::new(
            config.endpoint.clone(),
            Options {
                deadline: config.timeout,
                socket_peer: config.socket_peer,
                ..Options::default()
            },
        );
        Ok(Bridge {
            handle,
            stop: Mutex::new(Some(stop_tx)),
            thread: Mutex::new(Some(thread)),
            client,
            timeout: config.timeout,
        })
    }

    /// Stops the runtime and joins the I/O thread. Idempotent.
    pub fn shutdown(&self) {
        if let Ok(mut stop) = self.stop.lock() {
            if let Some(tx) = stop.take() {
                let _ = tx.send(());
            }
        }
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread {
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }

    /// Where signerd is, for messages.
    pub fn describe(&self) -> String {
        self.client.describe()
    }

    /// Sends `request` to its admin RPC and waits for the answer: the blocking entry point
    /// for PKCS#11 functions.
    pub fn call<C: Call>(&self, request: C) -> Result<C::Response, Error> {
        let client = self.client.clone();
        self.run(async move {
            client
                .call(request)
                .await
                .map_err(|e| Error::from_client(C::RPC, e))
        })
    }

    /// Runs `future` on the I/O thread and waits for it.
    fn run<T: Send + 'static>(
        &self,
        future: impl Future<Output = Result<T, Error>> + Send + 'static,
    ) -> Result<T, Error> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let _ = tx.send(future.await);
        });
        // The call has its own deadline; this one only guards against a stuck runtime.
        match rx.recv_timeout(self.timeout + Duration::from_secs(5)) {
            Ok(result) => result,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(Error::DeviceError(
                "the shim's I/O thread did not answer in time".into(),
            )),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(Error::DeviceError(
                "the shim is shutting down (C_Finalize)".into(),
            )),
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.shutdown();
    }
}
