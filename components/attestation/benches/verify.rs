//! Evidence verification time per TEE: Intel SGX and TDX sample quotes with their collateral
//! (from `dcap-qvl`), AMD's Milan report with its VCEK (from `sev`), and simulated evidence.
//!
//! `cargo bench -p wattlet-attestation --bench verify`

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use wattlet_attestation::attester::Attester;
use wattlet_attestation::{RuntimeClaims, Tee, verify};

fn bench_verify(c: &mut Criterion) {
    let mut group = c.benchmark_group("verify");

    let sgx = common::sgx();
    let (evidence, now) = (sgx.evidence(Tee::Sgx), sgx.now());
    group.bench_function("sgx", |b| {
        b.iter(|| verify(black_box(&evidence), now).unwrap())
    });

    let tdx = common::tdx();
    let (evidence, now) = (tdx.evidence(Tee::Tdx), tdx.now());
    group.bench_function("tdx", |b| {
        b.iter(|| verify(black_box(&evidence), now).unwrap())
    });

    let evidence = common::snp_evidence();
    group.bench_function("snp", |b| {
        b.iter(|| verify(black_box(&evidence), common::SNP_NOW).unwrap())
    });

    let claims = RuntimeClaims {
        host_sha256: "11".repeat(32),
        components: [("key-broker".to_string(), "22".repeat(32))].into(),
    };
    let evidence = Attester::simulated().evidence([7; 64], claims).unwrap();
    group.bench_function("simulated", |b| {
        b.iter(|| verify(black_box(&evidence), 0).unwrap())
    });

    group.finish();
}

criterion_group!(benches, bench_verify);
criterion_main!(benches);
