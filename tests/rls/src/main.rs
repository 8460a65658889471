//! `rls-fixture`: a TEST FIXTURE rate-limit service for idp-ratelimit's
//! fleet-mode tests, not for production (production points the filter at
//! envoyproxy/ratelimit or Limitador). It serves
//! `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit` over gRPC
//! (HTTP/2, 127.0.0.1 only), counting in a real `redis-server` the way
//! envoyproxy/ratelimit's Redis fixed-window cache does (see `limiter.rs`),
//! with limits from an envoyproxy/ratelimit `config.yaml`.
//!
//! ```text
//! rls-fixture --config config.yaml --redis 127.0.0.1:6379 [--port 0] [--port-file PATH]
//! ```
//!
//! The gRPC service glue is written by hand the way tonic-build's generated
//! server does it (a `tower::Service` routing the method path to
//! `tonic::server::Grpc::unary` with a `ProstCodec`), since there is no
//! protoc here; the messages are the filter's own (`idp_ratelimit::rls::proto`).

mod config;
mod limiter;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use idp_ratelimit::rls::proto::{RateLimitRequest, RateLimitResponse, METHOD, SERVICE};
use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::Status;
use tonic_prost::ProstCodec;

use config::RateLimitConfig;
use limiter::Counter;

/// Redis through one multiplexed connection, opened again after an error
/// (so a restarted redis-server is used again).
struct Redis {
    client: redis::Client,
    conn: tokio::sync::Mutex<Option<redis::aio::MultiplexedConnection>>,
}

impl Counter for Redis {
    async fn incr_and_expire(&self, ops: &[(String, u64, i64)]) -> Result<Vec<u64>, String> {
        let mut guard = self.conn.lock().await;
        let mut conn = match guard.as_ref() {
            Some(c) => c.clone(),
            None => {
                let c = self
                    .client
                    .get_multiplexed_async_connection()
                    .await
                    .map_err(|e| format!("redis connect: {e}"))?;
                *guard = Some(c.clone());
                c
            }
        };
        drop(guard);
        let mut pipe = redis::pipe();
        for (key, hits, ttl) in ops {
            pipe.cmd("INCRBY").arg(key).arg(*hits);
            pipe.cmd("EXPIRE").arg(key).arg(*ttl).ignore();
        }
        match pipe.query_async::<Vec<u64>>(&mut conn).await {
            Ok(v) => Ok(v),
            Err(e) => {
                *self.conn.lock().await = None;
                Err(format!("redis: {e}"))
            }
        }
    }
}

struct Rls {
    config: RateLimitConfig,
    redis: Redis,
}

impl Rls {
    async fn should_rate_limit(
        &self,
        request: RateLimitRequest,
    ) -> Result<RateLimitResponse, Status> {
        let now = limiter::unix_now();
        limiter::should_rate_limit(&self.config, &self.redis, &request, now)
            .await
            .map_err(|e| {
                eprintln!("rls-fixture: ShouldRateLimit failed: {e}");
                Status::unknown(e)
            })
    }
}

/// The service, as generated code would name and route it.
#[derive(Clone)]
struct RateLimitServiceServer(Arc<Rls>);

impl NamedService for RateLimitServiceServer {
    const NAME: &'static str = SERVICE;
}

struct ShouldRateLimit(Arc<Rls>);

impl UnaryService<RateLimitRequest> for ShouldRateLimit {
    type Response = RateLimitResponse;
    type Future = BoxFuture<tonic::Response<RateLimitResponse>, Status>;

    fn call(&mut self, request: tonic::Request<RateLimitRequest>) -> Self::Future {
        let rls = self.0.clone();
        Box::pin(async move {
            rls.should_rate_limit(request.into_inner())
                .await
                .map(tonic::Response::new)
        })
    }
}

impl Service<http::Request<Body>> for RateLimitServiceServer {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let rls = self.0.clone();
        let wanted = format!("/{SERVICE}/{METHOD}");
        Box::pin(async move {
            if req.uri().path() != wanted {
                return Ok(
                    Status::unimplemented(format!("no method {}", req.uri().path())).into_http(),
                );
            }
            let codec: ProstCodec<RateLimitResponse, RateLimitRequest> = ProstCodec::default();
            Ok(Grpc::new(codec).unary(ShouldRateLimit(rls), req).await)
        })
    }
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage =
        "usage: rls-fixture --config config.yaml --redis HOST:PORT [--port N] [--port-file PATH]";
    let (Some(config_path), Some(redis_addr)) = (arg(&args, "--config"), arg(&args, "--redis"))
    else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let yaml = std::fs::read_to_string(&config_path).unwrap_or_else(|e| {
        eprintln!("rls-fixture: {config_path}: {e}");
        std::process::exit(2)
    });
    let config = RateLimitConfig::parse(&yaml).unwrap_or_else(|e| {
        eprintln!("rls-fixture: {config_path}: {e}");
        std::process::exit(2)
    });
    let client = redis::Client::open(format!("redis://{redis_addr}/")).unwrap_or_else(|e| {
        eprintln!("rls-fixture: --redis {redis_addr}: {e}");
        std::process::exit(2)
    });
    let port: u16 = arg(&args, "--port")
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .unwrap_or_else(|e| {
            eprintln!("rls-fixture: bind 127.0.0.1:{port}: {e}");
            std::process::exit(1)
        });
    let local = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    if let Some(path) = arg(&args, "--port-file") {
        // Written whole, then renamed: a reader never sees half a number.
        let tmp = format!("{path}.tmp");
        let _ = std::fs::write(&tmp, local.to_string()).and_then(|()| std::fs::rename(&tmp, &path));
    }
    eprintln!("rls-fixture: serving {SERVICE} on 127.0.0.1:{local}, redis {redis_addr}");
    let rls = Arc::new(Rls {
        config,
        redis: Redis {
            client,
            conn: tokio::sync::Mutex::new(None),
        },
    });
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    if let Err(e) = tonic::transport::Server::builder()
        .add_service(RateLimitServiceServer(rls))
        .serve_with_incoming(incoming)
        .await
    {
        eprintln!("rls-fixture: {e}");
        std::process::exit(1);
    }
}
