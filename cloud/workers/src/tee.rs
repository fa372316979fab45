//! The worker's attesters ([`Attest`]) on `wattlet_attestation`: the machine's TEE
//! (`--tee auto`: SEV-SNP or TDX) or, by explicit opt-in, the simulated one. The runtime claims
//! are the SHA-256 of this process's executable and of the nialm component it runs.

use std::path::Path;

use anyhow::Context as _;
use wattlet_attestation::attester::Attester;
use wattlet_attestation::{Evidence, RuntimeClaims, report_data};

use crate::confidential::Attest;

/// The name of the nialm component in the runtime claims.
pub const NIALM_CLAIM: &str = "nialm";

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

/// The claims of this process running `component`.
pub fn claims(component: &Path) -> anyhow::Result<RuntimeClaims> {
    RuntimeClaims::of_this_host(&[(NIALM_CLAIM, component)]).with_context(|| {
        format!(
            "cannot measure this executable and the component {}",
            component.display()
        )
    })
}

/// The machine's TEE (`--tee auto`); no TEE is an error, never a silent simulation.
pub fn detect(component: &Path) -> anyhow::Result<Box<dyn Attest>> {
    let attester = Attester::detect().context("--tee auto")?;
    Ok(Box::new(Tee {
        attester,
        claims: claims(component)?,
    }))
}

/// The simulated TEE (`--tee simulated`): evidence that proves nothing.
pub fn simulated(component: &Path) -> anyhow::Result<Box<dyn Attest>> {
    Ok(Box::new(Tee {
        attester: Attester::simulated(),
        claims: claims(component)?,
    }))
}
