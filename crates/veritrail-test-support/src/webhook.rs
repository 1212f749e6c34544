//! A webhook receiver on a loopback port, for delivery tests: records every request it gets
//! (headers of the Standard Webhooks signature and the body) and can be told to fail the next
//! ones. It checks nothing itself: tests verify signatures with their own code. Over HTTP, or
//! over HTTPS with a certificate of a [`TestPki`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use veritrail_server::TlsIdentity;

use crate::tls::{ServerThread, TestPki};

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

/// An HTTP(S) endpoint on a loopback port: `POST /hook` answers 204, or 500 while
/// [`WebhookReceiver::fail_next`] has failures left.
pub struct WebhookReceiver {
    /// `http://127.0.0.1:<port>/hook`, or `https://` for [`WebhookReceiver::start_https`].
    pub url: String,
    state: Arc<ReceiverState>,
    _server: ServerThread,
}

impl WebhookReceiver {
    /// Starts an HTTP receiver on its own runtime thread.
    pub fn start() -> WebhookReceiver {
        WebhookReceiver::start_on(None)
    }

    /// Starts an HTTPS receiver with `pki`'s server certificate on its own runtime thread.
    pub fn start_https(pki: &TestPki) -> WebhookReceiver {
        WebhookReceiver::start_on(Some(pki.identity()))
    }

    fn start_on(tls: Option<TlsIdentity>) -> WebhookReceiver {
        let state = Arc::new(ReceiverState::default());
        let scheme = if tls.is_some() { "https" } else { "http" };
        let app = Router::new().route("/hook", post(receive)).with_state(state.clone());
        let server = ServerThread::start(app, tls);
        WebhookReceiver { url: format!("{scheme}://{}/hook", server.addr), state, _server: server }
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
