//! The master key (issue 5): from `VERITRAIL_MASTER_KEY` (base64 of 32 bytes; with
//! `VERITRAIL_MASTER_KEY_PREVIOUS` while a rotation completes), otherwise — embedded store only
//! — `master.key` in the data directory, generated with mode 0600 on first start. And
//! `veritrail rotate-master-key` for that key file.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use veritrail_crypto::{MasterKey, MasterKeys};
use veritrail_store::Store;
use veritrail_store_sqlite::{MASTER_KEY_FILE, OpenOptions, PREVIOUS_MASTER_KEY_FILE, SqliteStore, write_key_file};

/// The master keys configured in the environment, if any.
pub fn from_env() -> Result<Option<MasterKeys>> {
    let read = |name: &str| std::env::var(name).ok().filter(|value| !value.trim().is_empty());
    let Some(current) = read("VERITRAIL_MASTER_KEY") else {
        if read("VERITRAIL_MASTER_KEY_PREVIOUS").is_some() {
            bail!("VERITRAIL_MASTER_KEY_PREVIOUS is set but VERITRAIL_MASTER_KEY is not");
        }
        return Ok(None);
    };
    let current = MasterKey::from_base64(&current).context("VERITRAIL_MASTER_KEY")?;
    let previous = match read("VERITRAIL_MASTER_KEY_PREVIOUS") {
        Some(text) => text
            .split(',')
            .map(|key| MasterKey::from_base64(key).context("VERITRAIL_MASTER_KEY_PREVIOUS"))
            .collect::<Result<Vec<_>>>()?,
        None => Vec::new(),
    };
    Ok(Some(MasterKeys::with_previous(current, previous)))
}

/// Opens the embedded store with the environment's master keys, or its key file.
pub fn open_store(data_dir: &Path) -> Result<SqliteStore> {
    let options = OpenOptions { master_keys: from_env()?, ..OpenOptions::default() };
    SqliteStore::open_with(data_dir, options)
        .with_context(|| format!("cannot open data directory {}", data_dir.display()))
}

#[derive(clap::Args, Debug)]
pub struct RotateArgs {
    /// Directory holding the ledger, the index and `master.key`.
    #[arg(long, env = "VERITRAIL_DATA_DIR", default_value = "./veritrail-data")]
    data_dir: PathBuf,
}

/// Rotates the data directory's key file (server stopped): the old key becomes
/// `master.key.previous`, a new `master.key` is written, every data key is re-wrapped under it
/// (sealed records are not touched), and the previous key is deleted. Interrupted at any point,
/// running it again (or starting the server) completes it.
pub async fn rotate(args: &RotateArgs) -> Result<()> {
    if from_env()?.is_some() {
        bail!(
            "the master key comes from VERITRAIL_MASTER_KEY: rotate by restarting with the new key in \
             VERITRAIL_MASTER_KEY and the old one in VERITRAIL_MASTER_KEY_PREVIOUS"
        );
    }
    let dir = &args.data_dir;
    let (current, previous) = (dir.join(MASTER_KEY_FILE), dir.join(PREVIOUS_MASTER_KEY_FILE));
    if !dir.join(veritrail_store_sqlite::LEDGER_FILE).exists() {
        bail!("{} holds no veritrail ledger", dir.display());
    }
    if previous.exists() {
        println!("completing an interrupted rotation");
    } else {
        if !current.exists() {
            bail!("{} has no {MASTER_KEY_FILE} to rotate", dir.display());
        }
        std::fs::rename(&current, &previous).context("cannot set the old master key aside")?;
        std::fs::File::open(dir).and_then(|d| d.sync_all()).context("cannot sync the data directory")?;
    }
    if !current.exists() {
        let key = MasterKey::generate().context("cannot generate a master key")?;
        write_key_file(&current, &key).context("cannot write the new master key")?;
        println!("new master key {} written to {}", key.id(), current.display());
    }
    // Opening with both keys re-wraps every data key under the new one, in one transaction.
    let store = open_store(dir)?;
    let left = store.rewrap_keys().await.context("cannot re-wrap data keys")?;
    store.shutdown().await.context("cannot close the store")?;
    if left != 0 {
        bail!("{left} data keys were still under the old master key; run the rotation again");
    }
    std::fs::remove_file(&previous).context("cannot remove the old master key")?;
    println!("every data key is re-wrapped; the old master key is deleted");
    Ok(())
}
