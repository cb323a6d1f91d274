//! The WebSocket transport of `/faye`: each text frame is a batch of Bayeux messages,
//! answered on the same socket. Batches are handled concurrently, so a held
//! `/meta/connect` does not stop a subscribe behind it. A client that does not read its
//! answers fast enough is disconnected (its socket, never the server, pays for it).

use axum::extract::ws::{Message, WebSocket};
use futures::{SinkExt as _, StreamExt as _};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::AppState;

/// Answers waiting for one socket at most; beyond, the client is dropped.
const OUTBOX: usize = 64;

/// Serves one upgraded socket until it closes.
pub(crate) async fn serve(state: AppState, socket: WebSocket) {
    metrics::gauge!("faye_websockets").increment(1.0);
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::channel::<String>(OUTBOX);
    // The writer and the batch tasks belong to this socket, not to the gateway's tasks:
    // they end with it (the writer once the last answer sender drops) and are awaited
    // below, before `serve` returns.
    let writer = tokio::spawn(async move {
        while let Some(text) = rx.recv().await {
            if sink.send(Message::Text(text.into())).await.is_err() {
                return;
            }
        }
        let _ = sink.close().await;
    });
    let tasks = tokio_util::task::TaskTracker::new();
    while let Some(Ok(frame)) = stream.next().await {
        let text = match frame {
            Message::Text(text) => text.to_string(),
            Message::Close(_) => break,
            _ => continue,
        };
        let Ok(messages) = serde_json::from_str::<Value>(&text) else {
            break;
        };
        let (state, answers) = (state.clone(), tx.clone());
        tasks.spawn(async move {
            let replies = super::handle(&state, messages).await;
            if !replies.is_empty() && answers.try_send(Value::Array(replies).to_string()).is_err() {
                metrics::counter!("faye_clients_dropped_total", "reason" => "slow").increment(1);
            }
        });
        if tx.is_closed() || tx.capacity() == 0 {
            break;
        }
    }
    tasks.close();
    drop(tx);
    // Held connects answer within the poll timeout; the writer ends when they have.
    tasks.wait().await;
    let _ = writer.await;
    metrics::gauge!("faye_websockets").decrement(1.0);
}
