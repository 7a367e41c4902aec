//! `ewii-hub revoke`: a deployment or one SVID.

use super::print_json;
use std::time::SystemTime;

use anyhow::Result;
use clap::Args;
use ewii_hub::Store;
use ewii_hub::state::store::RevocationReason;

pub(crate) const REVOKE_HELP: &str = "\
Takes effect within a fraction of a second on a running hub (it polls the store's revocation
state), also when run from another machine against the same PostgreSQL store. The deployment
comes back only by enrolling again with a new token:
  ewii-hub deployment token --workspace W D
Webhooks registered for the workspace or deployment are told (see `ewii-hub webhook`).

Examples:
  ewii-hub revoke --workspace acme --deployment shop
  ewii-hub revoke --svid 4f1a9c…          # serial as printed by `ewii-client run --check`";

#[derive(Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["deployment", "svid"])))]
pub(crate) struct RevokeArgs {
    /// The deployment's workspace.
    #[arg(long, value_name = "W", requires = "deployment")]
    workspace: Option<String>,
    /// Revoke this deployment: every SVID it was issued, and any SVID of
    /// its SPIFFE ID, until it enrols again.
    #[arg(long, value_name = "D", requires = "workspace")]
    deployment: Option<String>,
    /// Revoke one SVID by serial number (hex).
    #[arg(long, value_name = "SERIAL", conflicts_with = "deployment")]
    svid: Option<String>,
}

pub(crate) async fn revoke(
    store: &Store,
    args: RevokeArgs,
    json: bool,
    now: SystemTime,
) -> Result<()> {
    let revoked = match (&args.workspace, &args.deployment, &args.svid) {
        (Some(w), Some(d), None) => {
            store
                .revoke_deployment(w, d, RevocationReason::Operator, now)
                .await?
        }
        (None, None, Some(serial)) => {
            store
                .revoke_serial(serial, RevocationReason::Operator, now)
                .await?
        }
        _ => anyhow::bail!("give either --workspace W --deployment D, or --svid SERIAL"),
    };
    if json {
        return print_json(&serde_json::to_value(&revoked)?);
    }
    match (&revoked.workspace, &revoked.deployment, &args.svid) {
        (Some(w), Some(d), None) => {
            println!(
                "Revoked deployment '{d}' of workspace '{w}' ({} SVID serial(s), {} unused \
                 enrolment token(s)); its tunnel closes now and every handshake is refused.",
                revoked.serials.len(),
                revoked.tokens_revoked
            );
            println!("To let it back: ewii-hub deployment token --workspace {w} {d}");
        }
        (_, _, Some(serial)) if revoked.serials.is_empty() => {
            println!("SVID {serial} was already revoked; nothing changed.");
        }
        (Some(w), Some(d), Some(_)) => {
            println!(
                "Revoked SVID {} of deployment '{d}' (workspace '{w}').",
                revoked.serials.join(", ")
            );
        }
        _ => println!(
            "Revoked SVID {} (the hub did not issue it: an imported CA's SVID).",
            revoked.serials.join(", ")
        ),
    }
    if revoked.webhooks > 0 {
        println!("{} webhook delivery(ies) queued.", revoked.webhooks);
    }
    Ok(())
}
