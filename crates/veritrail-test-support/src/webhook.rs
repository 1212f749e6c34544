//! A webhook receiver on a loopback port, for delivery tests: records every request it gets
//! (headers of the Standard Webhooks signature and the body) and can be told to fail the next
//! ones. It checks nothing itself: tests verify signatures with their own code.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use tokio_util::sync::CancellationToken;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct ReceivedWebhook {
    /// `webhook-id`.
    pub id: String,
    /// `webhook-timestamp`.
    pub timestamp: String,
    /// `webhook-signature`.
    pub signature: String,
    /// The exact body.
    pub body: Vec<u8>,
    /// The status it was answered with.
    pub answered: u16,
}

#[derive(Default)]
struct ReceiverState {
    received: Mutex<Vec<ReceivedWebhook>>,
    fail_next: AtomicU64,
}

/// An HTTP endpoint on a loopback port: `POST /hook` answers 204, or 500 while
/// [`WebhookReceiver::fail_next`] has failures left.
pub struct WebhookReceiver {
    /// `http://127.0.0.1:<port>/hook`.
    pub url: String,
    state: Arc<ReceiverState>,
    shutdown: CancellationToken,
    thread: Option<JoinHandle<()>>,
}

impl WebhookReceiver {
    /// Starts the receiver on its own runtime thread.
    pub fn start() -> WebhookReceiver {
        let state = Arc::new(ReceiverState::default());
        let shutdown = CancellationToken::new();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<SocketAddr>();
        let (app_state, token) = (state.clone(), shutdown.clone());
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
            runtime.block_on(async move {
                let app = Router::new().route("/hook", post(receive)).with_state(app_state);
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                ready_tx.send(listener.local_addr().unwrap()).unwrap();
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move { token.cancelled().await })
                    .await
                    .unwrap();
            });
        });
        let addr = ready_rx.recv().expect("the webhook receiver failed to start");
        WebhookReceiver { url: format!("http://{addr}/hook"), state, shutdown, thread: Some(thread) }
    }

    /// Every request so far, in arrival order (failed ones included).
    pub fn received(&self) -> Vec<ReceivedWebhook> {
        self.state.received.lock().unwrap().clone()
    }

    /// The requests from the `start`-th on (to follow a long stream without copying it all).
    pub fn received_from(&self, start: usize) -> Vec<ReceivedWebhook> {
        let received = self.state.received.lock().unwrap();
        received.get(start..).map(<[ReceivedWebhook]>::to_vec).unwrap_or_default()
    }

    /// The requests answered 2xx.
    pub fn accepted(&self) -> Vec<ReceivedWebhook> {
        self.received().into_iter().filter(|r| (200..300).contains(&r.answered)).collect()
    }

    /// The next `count` requests are answered 500.
    pub fn fail_next(&self, count: u64) {
        self.state.fail_next.store(count, Ordering::SeqCst);
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn receive(State(state): State<Arc<ReceiverState>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let failing = state.fail_next.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
    let status = if failing { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::NO_CONTENT };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    state.received.lock().unwrap().push(ReceivedWebhook {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        body: body.to_vec(),
        answered: status.as_u16(),
    });
    status
}
