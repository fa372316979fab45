//! The worker's attesters ([`Attest`]) on `wattlet_attestation`: the machine's TEE
//! (`--tee auto`: SEV-SNP or TDX) or, by explicit opt-in, the simulated one. The runtime claims
//! are the SHA-256 of this process's executable and of the components it runs (nialm, and the
//! stream operators for forecast items).

use std::path::Path;

use anyhow::Context as _;
use wattlet_attestation::attester::Attester;
use wattlet_attestation::{Evidence, RuntimeClaims, report_data};

use crate::confidential::Attest;

/// The name of the nialm component in the runtime claims.
pub const NIALM_CLAIM: &str = "nialm";
/// The name of the stream operators component (forecast items) in the runtime claims.
pub const STREAM_CLAIM: &str = "stream";

/// The component files a worker runs, as they are measured.
#[derive(Debug, Clone, Copy)]
pub enum Measured<'a> {
    /// `wattlet worker nialm`: the nialm component, and the stream operators for forecast items.
    NialmWorker { nialm: &'a Path, stream: &'a Path },
    /// `wattlet worker stream`: the stream operators' component, or none when they run
    /// compiled into the executable (`--operators native`).
    StreamWorker { stream: Option<&'a Path> },
}

impl<'a> Measured<'a> {
    /// (claim name, file) of each component.
    pub fn components(&self) -> Vec<(&'static str, &'a Path)> {
        match *self {
            Measured::NialmWorker { nialm, stream } => {
                vec![(NIALM_CLAIM, nialm), (STREAM_CLAIM, stream)]
            }
            Measured::StreamWorker { stream } => {
                stream.map(|s| (STREAM_CLAIM, s)).into_iter().collect()
            }
        }
    }
}

struct Tee {
    attester: Attester,
    claims: RuntimeClaims,
}

impl Attest for Tee {
    fn tee(&self) -> wattlet_attestation::Tee {
        self.attester.tee()
    }

    fn report_data(&self, nonce: &[u8], public_key: &[u8]) -> [u8; 64] {
        report_data(nonce, public_key)
    }

    fn evidence(&self, report_data: &[u8; 64]) -> anyhow::Result<Evidence> {
        Ok(self.attester.evidence(*report_data, self.claims.clone())?)
    }
}

/// The claims of this process running `components`.
pub fn claims(components: Measured<'_>) -> anyhow::Result<RuntimeClaims> {
    let components = components.components();
    RuntimeClaims::of_this_host(&components).with_context(|| {
        let files: Vec<String> = components
            .iter()
            .map(|(_, path)| path.display().to_string())
            .collect();
        format!(
            "cannot measure this executable and the components {}",
            files.join(", ")
        )
    })
}

/// The machine's TEE (`--tee auto`); no TEE is an error, never a silent simulation.
pub fn detect(components: Measured<'_>) -> anyhow::Result<Box<dyn Attest>> {
    let attester = Attester::detect().context("--tee auto")?;
    Ok(Box::new(Tee {
        attester,
        claims: claims(components)?,
    }))
}

/// The simulated TEE (`--tee simulated`): evidence that proves nothing.
pub fn simulated(components: Measured<'_>) -> anyhow::Result<Box<dyn Attest>> {
    Ok(Box::new(Tee {
        attester: Attester::simulated(),
        claims: claims(components)?,
    }))
}
