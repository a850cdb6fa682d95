//! Redaction of a realistic 4 KiB JSON body against a plain `serde_json` parse.

use std::hint::black_box;

use criterion::{BenchmarkGroup, Criterion, Throughput, measurement::WallTime};
use tower_ops::redact::Redactor;

/// An order-service response of about 4 KiB with no secret in it: nested
/// objects, arrays, timestamps, ids, prices, free text.
fn clean_body() -> String {
    let mut items = Vec::new();
    let mut i = 0;
    loop {
        items.push(serde_json::json!({
            "sku": format!("SKU-{:06}", 1000 + i * 37),
            "name": format!("Stainless steel water bottle, {} ml", 500 + i * 250),
            "quantity": i % 4 + 1,
            "unit_price": 19.99 + f64::from(i),
            "currency": "EUR",
            "tags": ["kitchen", "outdoor", "gift"],
            "warehouse": {"id": format!("wh-{}", i % 3), "region": "eu-west-1", "updated_at": "2026-11-21T10:00:00.000Z"},
        }));
        i += 1;
        let body = serde_json::json!({
            "id": "0192f5a4-7c1e-7b3a-9d2e-5f6a7b8c9d0e",
            "status": "confirmed",
            "created_at": "2026-11-21T09:58:12.345Z",
            "customer": {
                "id": 421337,
                "name": "Ada Lovelace",
                "email": "ada@example.org",
                "shipping": {"street": "12 Analytical Row", "city": "London", "postcode": "N1 9GU", "country": "GB"},
            },
            "items": items,
            "totals": {"subtotal": 129.5, "shipping": 4.99, "tax": 25.9, "grand_total": 160.39},
            "notes": "Leave at the door if nobody answers. Fragile: glass inside, please handle with care.",
        })
        .to_string();
        if body.len() >= 4096 {
            return body;
        }
    }
}

pub fn bench(c: &mut Criterion) {
    let body = clean_body();
    let redactor = Redactor::default();
    assert!(redactor.redact_json_str(&body).as_json() == Some(body.as_str()));

    let mut group = c.benchmark_group("redact");
    group.throughput(Throughput::Bytes(body.len() as u64));
    parse_vs_redact(&mut group, "clean_4k", body.as_bytes(), &redactor);

    let pretty =
        serde_json::to_string_pretty(&serde_json::from_str::<serde_json::Value>(&body).unwrap())
            .unwrap();
    let with_secret = body.replacen("\"email\"", "\"password\":\"hunter2\",\"email\"", 1);
    parse_vs_redact(&mut group, "pretty_4k", pretty.as_bytes(), &redactor);
    parse_vs_redact(
        &mut group,
        "one_secret_4k",
        with_secret.as_bytes(),
        &redactor,
    );
    group.finish();
}

fn parse_vs_redact(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    body: &[u8],
    redactor: &Redactor,
) {
    group.bench_function(format!("{name}/serde_json_value"), |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(body)).unwrap())
    });
    group.bench_function(format!("{name}/redactor"), |b| {
        b.iter(|| black_box(redactor.redact_json_bytes(black_box(body))))
    });
}
