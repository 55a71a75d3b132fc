//! FileSend `DiffCopy`: the daemon sends exporter output back to us.
//!
//! One gRPC method carries two message types, chosen by the exporter: `tar`, `docker`
//! and `oci` tarballs arrive as `BytesMessage` chunks; the `local` exporter (and oci /
//! docker into a directory) speaks fsutil `Packet`s with us as the receiver. The
//! generated `FileSend` server traits fix one type each, so this service is a gRPC
//! handler on the same path with a raw-bytes codec, decoding per sink. The sink is
//! picked by metadata `buildkit-attachable-exporter-id` (the exporter's index in the
//! solve request; absent before v0.13, where there is one exporter: index 0).

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use super::AbortOnDrop;
use bollard_buildkit_proto::fsutil::types::Packet;
use bytes::{Buf, BufMut, Bytes};
use futures::StreamExt;
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{http, Body, BoxFuture, BoxStream, Context, Poll, Service, StdError};
use tonic::{Request, Response, Status, Streaming};

use super::export_sink::write_bytes;
pub use super::export_sink::{ExportError, ExportSink};
use crate::buildkit::fsutil::receive::receive;

/// The gRPC path the daemon calls.
pub const DIFF_COPY: &str = "/moby.filesync.v1.FileSend/DiffCopy";
/// Metadata naming the exporter (its index in the solve request's exporters).
pub const EXPORTER_ID: &str = "buildkit-attachable-exporter-id";
/// The largest message we accept (buildkitd's own limit).
const MAX_MESSAGE: usize = 16 << 20;

/// How one exporter's output ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportOutcome {
    /// The exporter's index.
    pub exporter: usize,
    /// Bytes written (tarball bytes, or file content for a directory).
    pub result: Result<u64, ExportError>,
}

/// Serves FileSend for the exporters of one solve. Cheap to clone (shared state).
#[derive(Clone)]
pub struct FileSendService {
    inner: Arc<Inner>,
}

struct Inner {
    sinks: Vec<Option<ExportSink>>,
    outcomes: Mutex<Vec<ExportOutcome>>,
}

impl FileSendService {
    /// One sink per exporter, in the solve request's exporter order.
    pub fn new(sinks: Vec<ExportSink>) -> Self {
        Self::indexed(sinks.into_iter().enumerate())
    }

    /// Sinks at given exporter indexes, for exporter lists where some (an image push)
    /// send nothing back.
    pub fn indexed(sinks: impl IntoIterator<Item = (usize, ExportSink)>) -> Self {
        let mut slots: Vec<Option<ExportSink>> = Vec::new();
        for (i, sink) in sinks {
            if slots.len() <= i {
                slots.resize(i + 1, None);
            }
            slots[i] = Some(sink);
        }
        FileSendService {
            inner: Arc::new(Inner {
                sinks: slots,
                outcomes: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Every export that ended so far, in the order they ended.
    pub fn outcomes(&self) -> Vec<ExportOutcome> {
        self.inner.outcomes.lock().expect("outcomes lock").clone()
    }

    fn record(&self, exporter: usize, result: Result<u64, ExportError>) {
        self.inner
            .outcomes
            .lock()
            .expect("outcomes lock")
            .push(ExportOutcome { exporter, result });
    }

    fn sink(&self, md: &tonic::metadata::MetadataMap) -> Result<(usize, ExportSink), ExportError> {
        let index = match md.get(EXPORTER_ID) {
            None => 0,
            Some(v) => {
                let text = v.to_str().unwrap_or("").trim().to_string();
                text.parse::<usize>()
                    .map_err(|_| ExportError::BadExporterId(text))?
            }
        };
        match self.inner.sinks.get(index) {
            Some(Some(sink)) => Ok((index, sink.clone())),
            _ => Err(ExportError::UnknownExporter {
                index,
                count: self.inner.sinks.iter().flatten().count(),
            }),
        }
    }

    async fn diff_copy(
        self,
        req: Request<Streaming<Bytes>>,
    ) -> Result<Response<BoxStream<Bytes>>, Status> {
        let (index, sink) = self
            .sink(req.metadata())
            .map_err(|e| Status::not_found(e.to_string()))?;
        let incoming = req.into_inner();
        let dest = match sink {
            ExportSink::LocalDir(dest) => dest,
            bytes_sink => {
                // The daemon waits for our end of the stream: answer once all is written.
                let result = write_bytes(&bytes_sink, incoming).await;
                self.record(index, result.clone());
                return match result {
                    Ok(_) => Ok(Response::new(Box::pin(futures::stream::empty()))),
                    Err(e) => Err(Status::unknown(e.to_string())),
                };
            }
        };
        let (out_tx, out_rx) = mpsc::unbounded_channel::<Packet>();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<Result<(), Status>>();
        let packets = incoming.map(|item| {
            item.and_then(|raw| {
                Packet::decode(raw)
                    .map_err(|e| Status::invalid_argument(format!("not an fsutil packet: {e}")))
            })
        });
        // Its own task: the receiver must keep reading even while the daemon is not
        // reading our requests (the response stream is polled only when it can send).
        let this = self.clone();
        let task = tokio::spawn(async move {
            let result = receive(packets, out_tx, &dest).await;
            let result = result.map(|got| got.bytes).map_err(|e| ExportError::Local {
                dest: dest.clone(),
                message: e.to_string(),
            });
            this.record(index, result.clone());
            let _ = done_tx.send(
                result
                    .map(|_| ())
                    .map_err(|e| Status::unknown(e.to_string())),
            );
        });
        let guard = AbortOnDrop(task.abort_handle());
        let out = UnboundedReceiverStream::new(out_rx).map(|p| Ok(Bytes::from(p.encode_to_vec())));
        let end = futures::stream::once(done_rx).filter_map(|r| {
            futures::future::ready(match r {
                Ok(Ok(())) => None,
                Ok(Err(status)) => Some(Err(status)),
                Err(_) => Some(Err(Status::aborted("the export was cancelled"))),
            })
        });
        let stream = out.chain(end).map(move |item| {
            let _keep = &guard;
            item
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

impl tonic::server::NamedService for FileSendService {
    const NAME: &'static str = "moby.filesync.v1.FileSend";
}

impl<B> Service<http::Request<B>> for FileSendService
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            if req.uri().path() != DIFF_COPY {
                return Ok(Status::unimplemented(req.uri().path().to_string()).into_http());
            }
            let mut grpc = tonic::server::Grpc::new(RawCodec)
                .apply_max_message_size_config(Some(MAX_MESSAGE), Some(MAX_MESSAGE));
            Ok(grpc.streaming(DiffCopyCall(this), req).await)
        })
    }
}

struct DiffCopyCall(FileSendService);

impl tonic::server::StreamingService<Bytes> for DiffCopyCall {
    type Response = Bytes;
    type ResponseStream = BoxStream<Bytes>;
    type Future = BoxFuture<Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: Request<Streaming<Bytes>>) -> Self::Future {
        Box::pin(self.0.clone().diff_copy(request))
    }
}

/// Messages as undecoded bytes: decoded per sink by the handler.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

#[cfg(test)]
#[path = "filesend_tests.rs"]
mod tests;
