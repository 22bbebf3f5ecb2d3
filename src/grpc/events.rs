//! The event-reading RPCs of `membership.v1.MembershipService`: the audit log and the watch
//! stream, which ends with UNAVAILABLE when the server shuts down, and with UNAUTHENTICATED
//! when the token it was opened with expires.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_util::sync::WaitForCancellationFutureOwned;
use tonic::Status;

use super::error::EdgeRefusal;
use super::pb;
use crate::domain::DomainError;
use crate::events::WatchItem;

/// A watch stream: the subscription's items, until the feed shuts down, which ends the stream
/// with UNAVAILABLE so clients reconnect (to another replica) and resume from their cursor.
pub struct WatchStream {
    items: mpsc::Receiver<Result<WatchItem, DomainError>>,
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
    /// When the caller's credential expires, if it does.
    expiry: Option<Pin<Box<tokio::time::Sleep>>>,
    ended: bool,
}

impl WatchStream {
    pub fn new(
        items: mpsc::Receiver<Result<WatchItem, DomainError>>,
        shutdown: tokio_util::sync::CancellationToken,
        credential_expiry: Option<std::time::SystemTime>,
    ) -> Self {
        let expiry = credential_expiry.map(|at| {
            let left = at
                .duration_since(std::time::SystemTime::now())
                .unwrap_or_default();
            Box::pin(tokio::time::sleep(left))
        });
        Self {
            items,
            shutdown: Box::pin(shutdown.cancelled_owned()),
            expiry,
            ended: false,
        }
    }
}

impl Stream for WatchStream {
    type Item = Result<pb::WatchMembershipEventsResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        if self.shutdown.as_mut().poll(cx).is_ready() {
            self.ended = true;
            return Poll::Ready(Some(Err(super::error::edge_status(
                EdgeRefusal::ShuttingDown,
            ))));
        }
        if let Some(expiry) = self.expiry.as_mut()
            && expiry.as_mut().poll(cx).is_ready()
        {
            self.ended = true;
            return Poll::Ready(Some(Err(super::error::edge_status(EdgeRefusal::Auth(
                crate::auth::AuthError::Expired,
            )))));
        }
        match self.items.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                // The subscription only stops on its own when the feed shuts down.
                self.ended = true;
                Poll::Ready(Some(Err(super::error::edge_status(
                    EdgeRefusal::ShuttingDown,
                ))))
            }
            Poll::Ready(Some(Err(error))) => {
                self.ended = true;
                Poll::Ready(Some(Err(super::error::to_status(error))))
            }
            Poll::Ready(Some(Ok(item))) => {
                use pb::watch_membership_events_response::Kind;
                let kind = match item {
                    WatchItem::Event(event) => Kind::Event(super::convert::event(&event)),
                    WatchItem::Progress { cursor } => Kind::Progress(pb::WatchProgress {
                        cursor,
                        time: Some(super::convert::timestamp(crate::domain::now_micros())),
                    }),
                };
                Poll::Ready(Some(Ok(pb::WatchMembershipEventsResponse {
                    kind: Some(kind),
                })))
            }
        }
    }
}
