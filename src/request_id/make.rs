use std::time::{SystemTime, UNIX_EPOCH};

use http::Request;

use super::RequestId;

/// Makes the id of a request that arrives without a usable one.
///
/// Implemented for closures `FnMut(&Request<B>) -> RequestId`, so a custom maker is
/// usually one line. The default, [`MakeUuidV7`], makes time-ordered UUIDv7 ids.
///
/// ```
/// use tower_ops::request_id::{RequestId, RequestIdLayer};
///
/// let counter = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
/// let layer = RequestIdLayer::new().with_maker(move |_req: &http::Request<()>| {
///     let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
///     RequestId::new(format!("req-{n}")).expect("a valid id")
/// });
/// # let _ = layer;
/// ```
pub trait MakeRequestId<B> {
    /// Returns a new id for `request`.
    fn make_request_id(&mut self, request: &Request<B>) -> RequestId;
}

impl<B, F> MakeRequestId<B> for F
where
    F: FnMut(&Request<B>) -> RequestId,
{
    fn make_request_id(&mut self, request: &Request<B>) -> RequestId {
        self(request)
    }
}

/// The default id maker: UUIDv7 (RFC 9562), time-ordered to the millisecond.
///
/// The 74 random bits come from a per-thread generator seeded from the operating
/// system, so making an id costs a clock read and a few arithmetic operations, not a
/// system call. Ids are unique in practice, not secret: do not use them as tokens.
#[derive(Clone, Copy, Debug, Default)]
pub struct MakeUuidV7;

impl MakeUuidV7 {
    /// Returns a fresh UUIDv7 id without needing a request.
    pub fn generate() -> RequestId {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let random = fastrand::u128(..).to_le_bytes();
        let mut bytes = [0u8; 10];
        bytes.copy_from_slice(&random[..10]);
        let uuid = uuid::Builder::from_unix_timestamp_millis(millis, &bytes).into_uuid();
        let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let text = uuid.hyphenated().encode_lower(&mut buf);
        let value = http::HeaderValue::from_maybe_shared(pooled(text.as_bytes()))
            .expect("uuid text is ASCII");
        RequestId::from_valid(value)
    }
}

/// Bytes of each thread's ids are carved from one shared buffer, so an id
/// costs no allocation of its own and its clones (headers, extensions, the
/// log line) only count references. A buffer is freed once every id cut
/// from it is gone; a long-lived id keeps at most `POOL_CHUNK` bytes alive.
const POOL_CHUNK: usize = 2048;

fn pooled(text: &[u8]) -> bytes::Bytes {
    use std::cell::RefCell;
    thread_local! {
        static POOL: RefCell<bytes::BytesMut> = RefCell::new(bytes::BytesMut::new());
    }
    POOL.with(|pool| {
        let Ok(mut pool) = pool.try_borrow_mut() else {
            return bytes::Bytes::copy_from_slice(text);
        };
        if pool.capacity() < text.len() {
            *pool = bytes::BytesMut::with_capacity(POOL_CHUNK.max(text.len()));
        }
        pool.extend_from_slice(text);
        pool.split().freeze()
    })
}

impl<B> MakeRequestId<B> for MakeUuidV7 {
    #[inline]
    fn make_request_id(&mut self, _request: &Request<B>) -> RequestId {
        Self::generate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_v7_shape_and_order() {
        let a = MakeUuidV7::generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = MakeUuidV7::generate();
        for id in [&a, &b] {
            let parsed = uuid::Uuid::parse_str(id.as_str()).unwrap();
            assert_eq!(parsed.get_version_num(), 7);
            assert_eq!(id.as_str().len(), 36);
        }
        assert!(a.as_str() < b.as_str(), "{a} then {b}");
    }

    #[test]
    fn pooled_ids_stay_intact_across_chunks() {
        let ids: Vec<RequestId> = (0..500).map(|_| MakeUuidV7::generate()).collect();
        let unique: std::collections::HashSet<_> = ids.iter().map(RequestId::as_str).collect();
        assert_eq!(unique.len(), ids.len());
        for id in &ids {
            assert_eq!(id.as_str().len(), 36);
            assert_eq!(id.header_value().as_bytes(), id.as_str().as_bytes());
            uuid::Uuid::parse_str(id.as_str()).unwrap();
        }
    }

    #[test]
    fn uuid_v7_unique_across_threads() {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    (0..10_000)
                        .map(|_| MakeUuidV7::generate().as_str().to_owned())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all = std::collections::HashSet::new();
        for h in handles {
            for id in h.join().unwrap() {
                assert!(all.insert(id));
            }
        }
        assert_eq!(all.len(), 40_000);
    }
}
