//! `veritrail verify` (being written).

/// Arguments of `veritrail verify`.
#[derive(clap::Args, Debug)]
pub struct VerifyArgs {}

/// Runs the verification.
pub fn run(_args: VerifyArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("not available in this build")
}
