//! `ewii-image-sign`: cosign-compatible key-based signing of Ewii's
//! images (see the library docs for the format and why not `sigstore`).
#![forbid(unsafe_code)]

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use ewii_image_sign::cosign;
use ewii_image_sign::keys::{SigningKey, VerifyingKey};
use ewii_image_sign::registry::ImageRef;

/// Signs and verifies OCI images in cosign's key-based format
/// (`cosign verify --key cosign.pub IMAGE` accepts the signatures).
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Writes cosign.key (PKCS#8 PEM, 0600; `cosign import-key-pair`
    /// converts it) and cosign.pub (the key customers verify with).
    GenerateKeyPair {
        /// Directory for cosign.key and cosign.pub.
        #[arg(long, default_value = ".")]
        out_dir: PathBuf,
    },
    /// Signs IMAGE's current manifest digest; stores the signature as the
    /// sha256-<digest>.sig tag. Prints the digest signed.
    Sign {
        /// The private key (PEM).
        #[arg(long)]
        key: PathBuf,
        /// host[:port]/repository[:tag|@sha256:…]
        image: String,
    },
    /// Verifies IMAGE's current manifest digest carries a signature by the
    /// key; exits 1 otherwise. Prints the digest verified.
    Verify {
        /// The public key (cosign.pub).
        #[arg(long)]
        key: PathBuf,
        /// host[:port]/repository[:tag|@sha256:…]
        image: String,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    match Cli::parse().command {
        Command::GenerateKeyPair { out_dir } => {
            let (key, pem) = SigningKey::generate()?;
            let private = out_dir.join("cosign.key");
            write_private(&private, &pem)?;
            let public = out_dir.join("cosign.pub");
            std::fs::write(&public, key.verifying_key().to_pem())
                .with_context(|| format!("cannot write {}", public.display()))?;
            println!("{}\n{}", private.display(), public.display());
        }
        Command::Sign { key, image } => {
            let key = SigningKey::read(&key)?;
            let image = ImageRef::parse(&image)?;
            let digest = cosign::sign(&image, &key).await?;
            println!("signed {}@{digest}", image.repository_path());
        }
        Command::Verify { key, image } => {
            let key = VerifyingKey::read(&key)?;
            let image = ImageRef::parse(&image)?;
            let digest = cosign::verify(&image, &key).await?;
            println!("verified {}@{digest}", image.repository_path());
        }
    }
    Ok(())
}

fn write_private(path: &std::path::Path, pem: &str) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {} (it must not exist yet)", path.display()))?;
    f.write_all(pem.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}
