//! The protobuf codec of every generated service and client: tonic-prost's, with a small
//! encode buffer for the watch stream's messages.
//!
//! tonic allocates a call's encode buffer up front (8 KiB by default) and keeps it for as long
//! as the call's response lasts, growing it when a message does not fit. For a unary call that
//! is a moment; for a watch stream it is its whole life, and an idle watch sends only progress
//! messages of a few dozen bytes: the 8 KiB were most of a watcher's memory. Watch responses
//! start from a buffer one event fits in, which grows (and stays grown) only for a stream that
//! receives bigger ones. Every other message keeps tonic's default.

use std::any::TypeId;
use std::marker::PhantomData;

use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstDecoder, ProstEncoder};

use super::pb::WatchMembershipEventsResponse;

/// The encode buffer a watch stream starts with: a progress message is under 40 bytes, and a
/// typical event (a membership's before and after) a few hundred.
const WATCH_BUFFER_BYTES: usize = 512;

/// tonic's default: a batch of ready messages is sent once it reaches this many bytes.
const YIELD_THRESHOLD_BYTES: usize = 32 * 1024;

/// `tonic_prost::ProstCodec`, with the encode buffer chosen by the encoded message's type.
#[derive(Debug, Clone)]
pub struct ProstCodec<T, U> {
    _types: PhantomData<(T, U)>,
}

impl<T, U> Default for ProstCodec<T, U> {
    fn default() -> Self {
        Self {
            _types: PhantomData,
        }
    }
}

/// The buffer settings for encoding messages of type `T`.
fn encode_settings<T: 'static>() -> BufferSettings {
    if TypeId::of::<T>() == TypeId::of::<WatchMembershipEventsResponse>() {
        BufferSettings::new(WATCH_BUFFER_BYTES, YIELD_THRESHOLD_BYTES)
    } else {
        BufferSettings::default()
    }
}

impl<T, U> Codec for ProstCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(encode_settings::<T>())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(BufferSettings::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grpc::pb;

    #[test]
    fn only_watch_responses_start_small() {
        let watch = encode_settings::<pb::WatchMembershipEventsResponse>();
        let list = encode_settings::<pb::ListMembershipsResponse>();
        assert_eq!(
            format!("{watch:?}"),
            format!("{:?}", BufferSettings::new(512, 32 * 1024))
        );
        assert_eq!(
            format!("{list:?}"),
            format!("{:?}", BufferSettings::default())
        );
    }
}
