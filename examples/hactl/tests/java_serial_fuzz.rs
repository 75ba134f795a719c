//! Property/fuzz test of hactl's Java-serialization reader and Flink value decoders:
//! no input makes them panic (or hang). Inputs are random bytes, random bytes after
//! the stream header, and mutations (byte flips, inserts, deletes, truncations,
//! planted lengths and handles) of every value real Flink 2.3 wrote into the fixtures.
//! `HACTL_FUZZ_CASES` sets the number of cases per property (default 100 000); each
//! property prints how many inputs it ran and how many decoded without error.

#![allow(clippy::unwrap_used, dead_code, unreachable_pub)]

#[path = "../src/flink/handles.rs"]
mod handles;
#[path = "../src/flink/java_serial/mod.rs"]
mod java_serial;

use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

fn config() -> Config {
    let cases = std::env::var("HACTL_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// Every Java-serialized value of the fixtures.
fn seeds() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/flink");
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = Vec::new();
    for line in std::fs::read_to_string(dir.join("zookeeper-znodes.jsonl"))
        .unwrap()
        .lines()
    {
        let node: serde_json::Value = serde_json::from_str(line).unwrap();
        let data = b64.decode(node["data"].as_str().unwrap()).unwrap();
        if data.starts_with(&[0xac, 0xed]) {
            out.push(data);
        }
    }
    let cms: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("kubernetes-configmaps.json")).unwrap()).unwrap();
    for cm in cms["items"].as_array().unwrap() {
        for value in cm["data"].as_object().unwrap().values() {
            if let Ok(bytes) = b64.decode(value.as_str().unwrap()) {
                if bytes.starts_with(&[0xac, 0xed]) {
                    out.push(bytes);
                }
            }
        }
    }
    out.push(std::fs::read(dir.join("completedCheckpoint-chk3.bin")).unwrap());
    out
}

/// Runs every decoder on `bytes`; true if the stream reader accepted it.
fn decode_all(bytes: &[u8]) -> bool {
    let ok = java_serial::read_stream(bytes).is_ok();
    let _ = handles::state_handle("fuzz", bytes);
    let _ = handles::zookeeper_leader("fuzz", bytes);
    let _ = handles::checkpoint_pointer("fuzz", bytes);
    let _ = handles::zookeeper_counter("fuzz", bytes);
    ok
}

/// One mutation: (kind, position, value).
fn mutate(seed: &[u8], ops: &[(u8, usize, u32)]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for &(kind, pos, value) in ops {
        let at = if b.is_empty() { 0 } else { pos % (b.len() + 1) };
        match kind % 6 {
            0 if at < b.len() => b[at] = value as u8,
            1 => b.insert(at, value as u8),
            2 if at < b.len() => {
                b.remove(at);
            }
            3 => b.truncate(at),
            4 => {
                // A length or handle: huge, negative, or a plausible handle number.
                let planted = match value % 4 {
                    0 => 0x7fff_ffffu32,
                    1 => 0xffff_ffff,
                    2 => 0x7e_0000 + (value >> 2) % 16,
                    _ => value,
                };
                for (i, byte) in planted.to_be_bytes().iter().enumerate() {
                    if let Some(slot) = b.get_mut(at + i) {
                        *slot = *byte;
                    }
                }
            }
            _ => {
                // Duplicate a slice (repeats type codes and references).
                let end = (at + (value as usize % 64)).min(b.len());
                let slice = b[at.min(end)..end].to_vec();
                let insert_at = (value as usize >> 6) % (b.len() + 1);
                b.splice(insert_at..insert_at, slice);
            }
        }
    }
    b
}

fn report(name: &str, inputs: &AtomicUsize, accepted: &AtomicUsize) {
    eprintln!(
        "{name}: {} inputs, {} read without error, 0 panics",
        inputs.load(Ordering::Relaxed),
        accepted.load(Ordering::Relaxed)
    );
}

#[test]
fn mutated_flink_values_never_panic() {
    let seeds = seeds();
    assert!(seeds.len() == 17, "{} seeds", seeds.len());
    for seed in &seeds {
        assert!(java_serial::read_stream(seed).is_ok(), "every fixture value reads");
    }
    let (inputs, accepted) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let strategy = (
        0..seeds.len(),
        proptest::collection::vec((any::<u8>(), any::<usize>(), any::<u32>()), 1..8),
    );
    TestRunner::new(config())
        .run(&strategy, |(i, ops)| {
            inputs.fetch_add(1, Ordering::Relaxed);
            if decode_all(&mutate(&seeds[i], &ops)) {
                accepted.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        })
        .unwrap();
    report("mutated fixture values", &inputs, &accepted);
}

#[test]
fn random_bytes_never_panic() {
    let (inputs, accepted) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let strategy = (any::<bool>(), proptest::collection::vec(any::<u8>(), 0..512));
    TestRunner::new(config())
        .run(&strategy, |(header, mut bytes)| {
            if header {
                bytes.splice(0..0, [0xac, 0xed, 0x00, 0x05]);
            }
            inputs.fetch_add(1, Ordering::Relaxed);
            if decode_all(&bytes) {
                accepted.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        })
        .unwrap();
    report("random bytes", &inputs, &accepted);
}

#[test]
fn bounded_on_deep_nesting_and_huge_lengths() {
    // 100 000 nested arrays of objects: refused by depth, not by a stack overflow.
    let mut deep = vec![0xac, 0xed, 0x00, 0x05];
    for _ in 0..100_000 {
        deep.extend_from_slice(&[
            0x75, 0x72, 0x00, 0x02, b'[', b'L', 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0, 0, 0x78, 0x70, 0, 0, 0, 1,
        ]);
    }
    let e = java_serial::read_stream(&deep).unwrap_err();
    assert!(e.message.contains("nested deeper than"), "{e}");
    // A 2 GiB string length in a 20-byte stream: an error, no allocation.
    let huge = [
        0xac, 0xed, 0x00, 0x05, 0x7c, 0x00, 0x00, 0x00, 0x00, 0x7f, 0xff, 0xff, 0xff, b'x',
    ];
    let e = java_serial::read_stream(&huge).unwrap_err();
    assert!(e.message.starts_with("truncated"), "{e}");
    // A reference to a handle never assigned.
    let bad_ref = [0xac, 0xed, 0x00, 0x05, 0x71, 0x00, 0x7e, 0x00, 0x09];
    let e = java_serial::read_stream(&bad_ref).unwrap_err();
    assert_eq!(e.to_string(), "reference to unknown handle 0x7e0009 at byte 5");
}

#[test]
fn the_fixture_checkpoint_payload_names_its_checkpoint_directory() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/flink");
    let bytes = std::fs::read(dir.join("completedCheckpoint-chk3.bin")).unwrap();
    assert_eq!(
        handles::checkpoint_pointer("chk3", &bytes).unwrap().as_deref(),
        Some("file:/tmp/flink-checkpoints/5f1ac3e6b9d2c4a7e8f0a1b2c3d4e5f6/chk-3")
    );
}
