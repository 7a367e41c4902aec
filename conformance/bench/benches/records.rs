//! Record layer and replay window micro-benchmarks.
//!
//! Baseline, measured in the same run: raw ChaCha20-Poly1305 (ring) sealing
//! and opening the same payload with no record layer around it. The record
//! layer's cost is reported in BENCHMARKS.md as a ratio to that baseline.
//!
//! Run: `cargo bench -p ewii-bench --bench records`
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{BenchmarkId, Criterion, Throughput, black_box, criterion_group, criterion_main};
use ewii_wire::record::{Direction, Opener, RecordKind, Sealer, TrafficSecret};
use ewii_wire::replay::ReplayWindow;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};

const SIZES: [usize; 3] = [64, 1024, 16 * 1024];

fn raw_key() -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &[9u8; 32]).unwrap())
}

fn nonce(seq: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&seq.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

fn seal_open(c: &mut Criterion) {
    let mut g = c.benchmark_group("seal+open");
    for size in SIZES {
        let payload = vec![0x5au8; size];
        g.throughput(Throughput::Bytes(size as u64));

        g.bench_with_input(
            BenchmarkId::new("baseline: raw chacha20-poly1305", size),
            &payload,
            |b, p| {
                let key = raw_key();
                let mut seq = 0u64;
                b.iter(|| {
                    let mut buf = p.clone();
                    key.seal_in_place_append_tag(nonce(seq), Aad::from(&[0u8; 49]), &mut buf)
                        .unwrap();
                    let out = key
                        .open_in_place(nonce(seq), Aad::from(&[0u8; 49]), &mut buf)
                        .unwrap();
                    seq += 1;
                    black_box(out.len())
                })
            },
        );

        g.bench_with_input(
            BenchmarkId::new("ewii record layer", size),
            &payload,
            |b, p| {
                let mut sealer = Sealer::new(
                    TrafficSecret::new(&[9; 32]),
                    [1; 32],
                    Direction::ClientToHub,
                );
                let mut opener = Opener::new(
                    TrafficSecret::new(&[9; 32]),
                    [1; 32],
                    Direction::ClientToHub,
                );
                b.iter(|| {
                    let record = sealer.seal(RecordKind::Data, p).unwrap();
                    black_box(opener.open(&record).unwrap().1.len())
                })
            },
        );
    }
    g.finish();
}

fn replay_window(c: &mut Criterion) {
    let mut g = c.benchmark_group("replay window");
    g.bench_function("in order", |b| {
        let mut w = ReplayWindow::new();
        let mut seq = 0u64;
        b.iter(|| {
            w.check(seq).unwrap();
            w.accept(seq);
            seq += 1;
        })
    });
    g.bench_function("reordered within 64 (check + accept)", |b| {
        let mut w = ReplayWindow::new();
        let mut i = 0u64;
        b.iter(|| {
            // Blocks of 64 delivered back to front.
            let seq = (i / 64) * 64 + (63 - i % 64);
            w.check(seq).unwrap();
            w.accept(seq);
            i += 1;
        })
    });
    g.bench_function("replay rejected", |b| {
        let mut w = ReplayWindow::new();
        for s in 0..1000 {
            w.accept(s);
        }
        b.iter(|| black_box(w.check(black_box(500)).is_err()))
    });
    g.finish();
}

criterion_group!(benches, seal_open, replay_window);
criterion_main!(benches);
